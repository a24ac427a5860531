//! Timers: the restart backoff, cancel timeouts, slot request timeouts, quarantine ends and
//! checkpoint ticks. The core asks the
//! shell for them with [`Command::SetTimer`] and acts when [`Event::TimerFired`] comes back.
//!
//! [`Event::TimerFired`]: crate::core::Event::TimerFired

use std::collections::HashMap;

use crate::core::attempt::{AttemptId, AttemptState};
use crate::core::duration::format_millis;
use crate::core::event::{Command, Failure, TimerId};
use crate::core::graph::TaskId;
use crate::core::region::RegionId;
use crate::core::{ExecutorId, JobId, Millis};

use super::JobMaster;

/// What a timer is for.
pub(crate) enum Timer {
    /// A pending restart of `job` may be due.
    RestartDue { job: JobId },
    /// A cancel not confirmed by now declares the executor lost.
    CancelTimeout {
        attempt: AttemptId,
        executor: ExecutorId,
    },
    /// A region queued for slots under `ticket` waited too long.
    SlotTimeout {
        job: JobId,
        region: RegionId,
        ticket: u64,
    },
    /// An executor's quarantine is over.
    QuarantineEnds { executor: ExecutorId },
    /// A restarted JobMaster stops waiting for executors to report what they run.
    ReconcileTimeout,
    /// `job`'s checkpoint coordinator may trigger or time out a checkpoint.
    CheckpointTick { job: JobId },
}

/// The timers set and not yet fired or cancelled.
pub(crate) struct Timers {
    pending: HashMap<TimerId, Timer>,
    next: u64,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            pending: HashMap::new(),
            next: 0,
        }
    }

    /// Sets a timer due at `at` and asks the shell for it.
    pub(crate) fn set(&mut self, at: Millis, timer: Timer, out: &mut Vec<Command>) -> TimerId {
        let id = TimerId(self.next);
        self.next += 1;
        self.pending.insert(id, timer);
        out.push(Command::SetTimer { timer: id, at });
        id
    }

    /// Forgets a timer that is no longer needed and tells the shell.
    pub(crate) fn cancel(&mut self, timer: TimerId, out: &mut Vec<Command>) {
        if self.pending.remove(&timer).is_some() {
            out.push(Command::CancelTimer { timer });
        }
    }

    /// Forgets a timer (fired, or no longer needed) and returns what it was for.
    pub(crate) fn remove(&mut self, timer: TimerId) -> Option<Timer> {
        self.pending.remove(&timer)
    }
}

impl JobMaster {
    pub(super) fn timer_fired(&mut self, id: TimerId, now: Millis) {
        let Some(timer) = self.timers.remove(id) else {
            return;
        };
        match timer {
            Timer::RestartDue { job } => self.check_restarts(job, now),
            Timer::ReconcileTimeout => self.reconcile_timeout(now),
            // `handle` ticks the coordinator after every event.
            Timer::CheckpointTick { job } => self.checkpoint_timer_fired(job, id),
            Timer::QuarantineEnds { executor } => {
                // The timer is gone already: releasing cancels nothing.
                let reason = format!(
                    "cool-down of {} ended",
                    format_millis(self.config.quarantine.duration_ms)
                );
                self.release_quarantine(&executor, &reason);
            }
            Timer::CancelTimeout { attempt, executor } => {
                // The task's name, while its attempt is still canceling.
                let still_canceling = self.jobs.get(&attempt.job).and_then(|j| {
                    let t = &j.tasks[attempt.task.index()];
                    (t.attempt == attempt.attempt && t.log.state() == AttemptState::Canceling)
                        .then(|| j.graph.task_name(attempt.task).to_string())
                });
                if let Some(name) = still_canceling
                    && self.executors.contains_key(&executor)
                {
                    self.lose_executor(
                        &executor,
                        &format!("cancel of {name} attempt {} timed out", attempt.attempt),
                        now,
                    );
                }
            }
            Timer::SlotTimeout {
                job,
                region,
                ticket,
            } => {
                let Some(j) = self.jobs.get_mut(&job) else {
                    return;
                };
                if j.queued[region.index()].map(|(t, _)| t) != Some(ticket) {
                    return;
                }
                j.queued[region.index()] = None;
                let waiting: Vec<TaskId> = std::mem::take(&mut j.pending[region.index()])
                    .into_iter()
                    .collect();
                let free = self.slots.free_slots();
                let message = format!(
                    "no free slots for {} tasks of region {} within {} ms ({free} free)",
                    waiting.len(),
                    region.0,
                    self.config.slot_request_timeout_ms
                );
                let failures = waiting
                    .into_iter()
                    .map(|t| (t, None, Failure::recoverable(message.clone())))
                    .collect();
                self.failover(job, failures, Vec::new(), now);
            }
        }
    }
}
