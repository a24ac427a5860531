//! The job state machine (DESIGN §3): CREATED → RUNNING ⇄ RESTARTING → FINISHED |
//! FAILING → FAILED | CANCELLING → CANCELED, and RECONCILING after a JobMaster restart. The
//! table lives in [`JobState::can_become`].

use std::fmt;

use super::Millis;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum JobState {
    Created,
    Running,
    /// A restart of every task is pending: cancelling them or waiting out the backoff. A
    /// regional failover leaves the job RUNNING (as in Flink).
    Restarting,
    Finished,
    Failing,
    Failed,
    Cancelling,
    Canceled,
    /// Loaded from the store by a restarted JobMaster: waiting for executors to report the
    /// attempts they still run (adopted) until `recovery.reconcile-timeout`.
    Reconciling,
}

use JobState::*;

impl JobState {
    pub const ALL: [JobState; 9] = [
        Created,
        Running,
        Restarting,
        Finished,
        Failing,
        Failed,
        Cancelling,
        Canceled,
        Reconciling,
    ];

    /// The transition table.
    pub fn can_become(self, next: JobState) -> bool {
        matches!(
            (self, next),
            (Created, Running | Failing | Cancelling | Reconciling)
                | (
                    Running,
                    Restarting | Finished | Failing | Cancelling | Reconciling
                )
                | (Restarting, Running | Failing | Cancelling | Reconciling)
                | (
                    Reconciling,
                    Running | Restarting | Finished | Failing | Cancelling
                )
                | (Failing, Failed)
                | (Cancelling, Canceled)
        )
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Finished | Failed | Canceled)
    }

    /// Still executing or about to: not terminal and not winding down.
    pub fn is_active(self) -> bool {
        matches!(self, Created | Running | Restarting | Reconciling)
    }

    pub fn name(self) -> &'static str {
        match self {
            Created => "CREATED",
            Running => "RUNNING",
            Restarting => "RESTARTING",
            Finished => "FINISHED",
            Failing => "FAILING",
            Failed => "FAILED",
            Cancelling => "CANCELLING",
            Canceled => "CANCELED",
            Reconciling => "RECONCILING",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An illegal job transition; the state is left unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal job transition {from} -> {to}")]
pub struct IllegalJobTransition {
    pub from: JobState,
    pub to: JobState,
}

/// The job's state with every transition and its time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobStateLog {
    state: JobState,
    transitions: Vec<(JobState, Millis)>,
}

impl JobStateLog {
    pub fn new(now: Millis) -> JobStateLog {
        JobStateLog {
            state: Created,
            transitions: vec![(Created, now)],
        }
    }

    pub fn state(&self) -> JobState {
        self.state
    }

    pub fn transitions(&self) -> &[(JobState, Millis)] {
        &self.transitions
    }

    pub fn transition(&mut self, next: JobState, now: Millis) -> Result<(), IllegalJobTransition> {
        if !self.state.can_become(next) {
            return Err(IllegalJobTransition {
                from: self.state,
                to: next,
            });
        }
        self.state = next;
        self.transitions.push((next, now));
        Ok(())
    }

    /// Total time spent in `state` up to `now`.
    pub fn time_in(&self, state: JobState, now: Millis) -> Millis {
        let mut total = 0;
        for (i, &(s, since)) in self.transitions.iter().enumerate() {
            if s == state {
                let until = self.transitions.get(i + 1).map_or(now, |&(_, t)| t);
                total += until.saturating_sub(since);
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_job_states_are_final() {
        for from in [Finished, Failed, Canceled] {
            for to in JobState::ALL {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn running_and_restarting_alternate() {
        let mut log = JobStateLog::new(0);
        log.transition(Running, 1).unwrap();
        log.transition(Restarting, 10).unwrap();
        log.transition(Running, 25).unwrap();
        log.transition(Restarting, 40).unwrap();
        assert_eq!(log.time_in(Restarting, 50), 15 + 10);
        assert!(log.transition(Canceled, 51).is_err());
        assert_eq!(log.state(), Restarting);
    }
}
