//! Attempts and their state machine (DESIGN §3).
//!
//! An attempt is one execution of a task. Its legal transitions are written down once, in
//! [`AttemptState::can_become`]; everything else that moves an attempt goes through
//! [`AttemptLog::transition`], which refuses the rest and records each change with its time.

use std::fmt;

use super::graph::TaskId;
use super::{JobId, Millis};

/// Identifies one attempt: `(job, task, attempt number)`; the task stands for `(vertex, subtask)`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct AttemptId {
    pub job: JobId,
    pub task: TaskId,
    pub attempt: u32,
}

/// The state of one attempt.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum AttemptState {
    Created,
    Scheduled,
    Deploying,
    Initializing,
    Running,
    Finished,
    Canceling,
    Canceled,
    Failed,
    /// After a JobMaster restart, until the executor reports the attempt's real state.
    Reconciling,
}

use AttemptState::*;

impl AttemptState {
    pub const ALL: [AttemptState; 10] = [
        Created,
        Scheduled,
        Deploying,
        Initializing,
        Running,
        Finished,
        Canceling,
        Canceled,
        Failed,
        Reconciling,
    ];

    /// The transition table.
    pub fn can_become(self, next: AttemptState) -> bool {
        matches!(
            (self, next),
            (Created, Scheduled | Canceled | Failed | Reconciling)
                | (Scheduled, Deploying | Canceled | Failed)
                | (Deploying, Initializing | Canceling | Failed)
                | (Initializing, Running | Canceling | Failed)
                | (Running, Finished | Canceling | Failed)
                | (Canceling, Canceled | Failed)
                | (
                    Reconciling,
                    Initializing | Running | Finished | Canceling | Canceled | Failed
                )
        )
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Finished | Canceled | Failed)
    }

    /// Deployed to an executor and not yet terminal: the executor holds it.
    pub fn is_on_executor(self) -> bool {
        matches!(
            self,
            Deploying | Initializing | Running | Canceling | Reconciling
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Created => "CREATED",
            Scheduled => "SCHEDULED",
            Deploying => "DEPLOYING",
            Initializing => "INITIALIZING",
            Running => "RUNNING",
            Finished => "FINISHED",
            Canceling => "CANCELING",
            Canceled => "CANCELED",
            Failed => "FAILED",
            Reconciling => "RECONCILING",
        }
    }

    /// The forward path an executor's report may skip over (reports can be coalesced: a short
    /// task may report FINISHED before its RUNNING report was seen).
    pub(crate) fn forward_path(self, reported: AttemptState) -> Option<&'static [AttemptState]> {
        const PATH: [AttemptState; 4] = [Deploying, Initializing, Running, Finished];
        let from = PATH.iter().position(|&s| s == self)?;
        let to = PATH.iter().position(|&s| s == reported)?;
        (to > from).then(|| &PATH[from + 1..=to])
    }
}

impl fmt::Display for AttemptState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An illegal transition; the state is left unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal attempt transition {from} -> {to}")]
pub struct IllegalTransition {
    pub from: AttemptState,
    pub to: AttemptState,
}

/// The current state of an attempt and every transition it made, with times.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttemptLog {
    state: AttemptState,
    transitions: Vec<(AttemptState, Millis)>,
}

impl AttemptLog {
    /// A new attempt, CREATED at `now`.
    pub fn new(now: Millis) -> AttemptLog {
        AttemptLog {
            state: Created,
            transitions: vec![(Created, now)],
        }
    }

    pub fn state(&self) -> AttemptState {
        self.state
    }

    /// `(state, time entered)` in order, starting with CREATED.
    pub fn transitions(&self) -> &[(AttemptState, Millis)] {
        &self.transitions
    }

    /// When the attempt entered its current state.
    pub fn since(&self) -> Millis {
        self.transitions.last().map_or(0, |&(_, t)| t)
    }

    /// The log of an attempt a restarted JobMaster loaded from its store: its recorded
    /// transitions, then RECONCILING at `now` until its executor reports it (or nobody does).
    /// The one move the table does not list: a JobMaster restart interrupts any state.
    pub fn reconciling(mut transitions: Vec<(AttemptState, Millis)>, now: Millis) -> AttemptLog {
        transitions.push((Reconciling, now));
        AttemptLog {
            state: Reconciling,
            transitions,
        }
    }

    /// A log as a store recorded it: `state` and its transitions (no check: the store decides
    /// whether what it read is plausible).
    pub(crate) fn from_parts(
        state: AttemptState,
        transitions: Vec<(AttemptState, Millis)>,
    ) -> AttemptLog {
        AttemptLog { state, transitions }
    }

    /// Moves to `next` if the table allows it.
    pub fn transition(&mut self, next: AttemptState, now: Millis) -> Result<(), IllegalTransition> {
        if !self.state.can_become(next) {
            return Err(IllegalTransition {
                from: self.state,
                to: next,
            });
        }
        self.state = next;
        self.transitions.push((next, now));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_have_no_way_out() {
        for from in [Finished, Canceled, Failed] {
            for to in AttemptState::ALL {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn every_non_terminal_state_can_fail() {
        for from in AttemptState::ALL.into_iter().filter(|s| !s.is_terminal()) {
            assert!(from.can_become(Failed), "{from}");
        }
    }

    #[test]
    fn cancel_needs_a_round_trip_only_once_deployed() {
        assert!(Created.can_become(Canceled) && Scheduled.can_become(Canceled));
        for s in [Deploying, Initializing, Running] {
            assert!(!s.can_become(Canceled) && s.can_become(Canceling), "{s}");
        }
    }

    #[test]
    fn illegal_transition_is_refused_and_changes_nothing() {
        let mut log = AttemptLog::new(5);
        assert_eq!(
            log.transition(Running, 6),
            Err(IllegalTransition {
                from: Created,
                to: Running
            })
        );
        assert_eq!(log.state(), Created);
        log.transition(Scheduled, 7).unwrap();
        log.transition(Deploying, 8).unwrap();
        assert_eq!(
            log.transitions(),
            &[(Created, 5), (Scheduled, 7), (Deploying, 8)]
        );
    }

    #[test]
    fn forward_path_lists_the_skipped_states() {
        assert_eq!(
            Deploying.forward_path(Finished),
            Some(&[Initializing, Running, Finished][..])
        );
        assert_eq!(Running.forward_path(Running), None);
        assert_eq!(Running.forward_path(Initializing), None);
        assert_eq!(Canceling.forward_path(Finished), None);
    }
}
