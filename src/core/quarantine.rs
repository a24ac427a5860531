//! Quarantine of flapping executors (Spark's `excludeOnFailure`, Flink's blocklist): an
//! executor on which attempts keep failing, or that keeps getting lost, takes no new
//! placements for a cool-down. The attempts it already runs keep running.
//!
//! Counting, per executor id ([`QuarantineConfig`], `scheduler.quarantine.*`):
//! - a **task failure** is a FAILED report of the attempt that runs on the executor, with class
//!   `recoverable` — failed deploys included (the shell reports them so). Failures count per
//!   distinct task (Spark counts failed tasks, not attempts): a task that fails again on the
//!   same executor adds nothing, and a task that has failed on two different executors within
//!   the window is taken to be at fault itself — its failures stop counting against any
//!   executor (a broken command must not quarantine the cluster). Not counted:
//!   `non-recoverable` (the job fails; its own fault), `partition-lost` (the input's host is
//!   at fault, not this one), cancellations (also an attempt that fails while being
//!   cancelled), failures caused by an executor loss, slot request timeouts, attempts missing
//!   from a heartbeat, and task drills (InjectFailure on a task).
//! - a **loss** is the executor being declared lost (heartbeat timeout, stream closed, RPC
//!   failures, a cancel never confirmed, registering again with a new session, and a drill
//!   that drops the executor, which is a real loss). Losses are
//!   counted by id, so the quarantine outlives the session: a lost executor that registers
//!   again while quarantined stays quarantined.
//!
//! `max_task_failures` failures (or `max_losses` losses) within `window_ms` quarantine the
//! executor until `now + duration_ms`; its counts start afresh. A timer ends the quarantine,
//! [`crate::core::Event::ReleaseExecutor`] ends it early.
//!
//! Safety: quarantine never leaves the JobMaster without an executor to place on. An executor
//! is not quarantined when no other registered executor would remain out of quarantine
//! ([`Notice::QuarantineSkipped`] says so); and when the last executor out of quarantine is
//! lost, the quarantined ones that are registered are released at once.

use std::collections::{BTreeMap, VecDeque};

use super::duration::format_millis;
use super::event::{Command, Notice, TimerId};
use super::graph::TaskId;
use super::jobmaster::{JobMaster, Timer};
use super::{ExecutorId, JobId, Millis};

/// When an executor is quarantined, and for how long. A count of 0 disables its trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineConfig {
    /// Task failures on one executor within `window_ms` that quarantine it (Spark:
    /// `spark.excludeOnFailure.application.maxFailedTasksPerExecutor` = 2).
    pub max_task_failures: u32,
    /// Losses of one executor within `window_ms` that quarantine it.
    pub max_losses: u32,
    /// How far back failures and losses count.
    pub window_ms: Millis,
    /// How long a quarantine lasts (Spark: `spark.excludeOnFailure.timeout` = 1h).
    pub duration_ms: Millis,
}

impl QuarantineConfig {
    /// Never quarantines.
    pub const OFF: QuarantineConfig = QuarantineConfig {
        max_task_failures: 0,
        max_losses: 0,
        window_ms: 3_600_000,
        duration_ms: 3_600_000,
    };
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            max_task_failures: 2,
            max_losses: 2,
            window_ms: 3_600_000,
            duration_ms: 3_600_000,
        }
    }
}

/// An executor's quarantine, as queries show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    /// When it ends (unless released earlier).
    pub until: Millis,
    /// Why, e.g. "2 task failures within 1h".
    pub reason: String,
}

/// What counts towards a quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strike {
    /// A failure of this task's attempt on the executor.
    TaskFailure(JobId, TaskId),
    Loss,
}

#[derive(Default)]
struct Record {
    /// When, and which task: one entry per distinct task.
    failures: VecDeque<(Millis, JobId, TaskId)>,
    losses: VecDeque<Millis>,
    active: Option<(Quarantine, TimerId)>,
}

impl Record {
    fn is_empty(&self) -> bool {
        self.active.is_none() && self.failures.is_empty() && self.losses.is_empty()
    }

    fn prune(&mut self, now: Millis, window: Millis) {
        self.failures
            .retain(|&(t, ..)| now.saturating_sub(t) < window);
        self.losses.retain(|&t| now.saturating_sub(t) < window);
    }
}

/// The bookkeeping: recent strikes and active quarantines, per executor id (registered or
/// not). Only executors with a recent strike or an active quarantine have a record.
#[derive(Default)]
pub(crate) struct Quarantines {
    records: BTreeMap<ExecutorId, Record>,
    /// Recent failures per task: when, and on which executor.
    by_task: BTreeMap<(JobId, TaskId), Vec<(Millis, ExecutorId)>>,
    active: usize,
}

impl Quarantines {
    pub(crate) fn new() -> Quarantines {
        Quarantines::default()
    }

    /// Records a strike; returns the reason when it reaches its threshold (the counts then
    /// start afresh). Nothing is counted while the executor is quarantined.
    pub(crate) fn strike(
        &mut self,
        id: &ExecutorId,
        strike: Strike,
        now: Millis,
        config: &QuarantineConfig,
    ) -> Option<String> {
        let limit = match strike {
            Strike::TaskFailure(..) => config.max_task_failures,
            Strike::Loss => config.max_losses,
        };
        if limit == 0 {
            return None;
        }
        if !self.records.contains_key(id) {
            // A new record: drop the ones whose strikes have all expired.
            self.records.retain(|_, r| {
                r.prune(now, config.window_ms);
                !r.is_empty()
            });
        }
        if let Strike::TaskFailure(job, task) = strike
            && !self.task_failure_counts(id, job, task, now, config.window_ms)
        {
            return None;
        }
        let record = self.records.entry(id.clone()).or_default();
        if record.active.is_some() {
            return None;
        }
        match strike {
            Strike::TaskFailure(job, task) => record.failures.push_back((now, job, task)),
            Strike::Loss => record.losses.push_back(now),
        }
        record.prune(now, config.window_ms);
        let count = match strike {
            Strike::TaskFailure(..) => record.failures.len(),
            Strike::Loss => record.losses.len(),
        };
        if count < limit as usize {
            return None;
        }
        record.failures.clear();
        record.losses.clear();
        let window = format_millis(config.window_ms);
        let s = if limit == 1 { "" } else { "s" };
        Some(match strike {
            Strike::TaskFailure(..) => format!("{limit} task failure{s} within {window}"),
            Strike::Loss => format!("lost {limit} time{s} within {window}"),
        })
    }

    /// Records a failure of `task` on `id`; whether it counts against the executor: not when
    /// the task already failed there (one strike per task), nor when the task has now failed
    /// on two executors (then it is the task's fault, and its earlier strikes are withdrawn).
    fn task_failure_counts(
        &mut self,
        id: &ExecutorId,
        job: JobId,
        task: TaskId,
        now: Millis,
        window: Millis,
    ) -> bool {
        self.by_task.retain(|_, failures| {
            failures.retain(|(t, _)| now.saturating_sub(*t) < window);
            !failures.is_empty()
        });
        let failures = self.by_task.entry((job, task)).or_default();
        let here = failures.iter().any(|(_, e)| e == id);
        let elsewhere = failures.iter().any(|(_, e)| e != id);
        failures.push((now, id.clone()));
        if elsewhere {
            for record in self.records.values_mut() {
                record.failures.retain(|&(_, j, t)| (j, t) != (job, task));
            }
        }
        !here && !elsewhere
    }

    pub(crate) fn start(&mut self, id: &ExecutorId, quarantine: Quarantine, timer: TimerId) {
        let record = self.records.entry(id.clone()).or_default();
        if record.active.replace((quarantine, timer)).is_none() {
            self.active += 1;
        }
    }

    /// Ends the quarantine (if any) and forgets the executor's strikes; returns the timer of
    /// an active quarantine.
    pub(crate) fn end(&mut self, id: &ExecutorId) -> Option<TimerId> {
        let record = self.records.remove(id)?;
        let (_, timer) = record.active?;
        self.active -= 1;
        Some(timer)
    }

    pub(crate) fn get(&self, id: &ExecutorId) -> Option<&Quarantine> {
        self.records.get(id)?.active.as_ref().map(|(q, _)| q)
    }

    /// Is there a record (a recent strike or a quarantine) of this id?
    pub(crate) fn knows(&self, id: &ExecutorId) -> bool {
        self.records.contains_key(id)
    }

    /// Quarantined executor ids (registered or not), by id.
    pub(crate) fn quarantined(&self) -> impl Iterator<Item = (&ExecutorId, &Quarantine)> + '_ {
        self.records
            .iter()
            .filter_map(|(id, r)| r.active.as_ref().map(|(q, _)| (id, q)))
    }

    pub(crate) fn active_count(&self) -> usize {
        self.active
    }
}

impl JobMaster {
    /// Counts a strike against `executor` and quarantines it when that reaches a threshold.
    pub(crate) fn strike_executor(&mut self, executor: &ExecutorId, strike: Strike, now: Millis) {
        let Some(reason) = self
            .quarantines
            .strike(executor, strike, now, &self.config.quarantine)
        else {
            return;
        };
        let others_usable = self
            .executors
            .keys()
            .any(|e| e != executor && !self.slots.is_excluded(e));
        if !others_usable {
            self.out.push(Command::Notify(Notice::QuarantineSkipped {
                executor: executor.clone(),
                reason: format!(
                    "{reason}, but no other executor would be left out of quarantine to place \
                     tasks on"
                ),
            }));
            return;
        }
        let until = now + self.config.quarantine.duration_ms;
        let timer = self.timers.set(
            until,
            Timer::QuarantineEnds {
                executor: executor.clone(),
            },
            &mut self.out,
        );
        self.quarantines.start(
            executor,
            Quarantine {
                until,
                reason: reason.clone(),
            },
            timer,
        );
        self.slots.set_excluded(executor, true);
        self.out.push(Command::Notify(Notice::ExecutorQuarantined {
            executor: executor.clone(),
            until,
            reason,
        }));
    }

    /// Ends `executor`'s quarantine (if any) and forgets its strikes; the notice carries
    /// `reason` when there was a quarantine to end.
    pub(crate) fn release_quarantine(&mut self, executor: &ExecutorId, reason: &str) {
        if let Some(timer) = self.quarantines.end(executor) {
            self.timers.cancel(timer, &mut self.out);
            self.slots.set_excluded(executor, false);
            self.out.push(Command::Notify(Notice::ExecutorReleased {
                executor: executor.clone(),
                reason: reason.to_owned(),
            }));
        }
    }

    /// Releases quarantined executors, most free slots first, until `need` slots are free for
    /// placement, if their slots make it enough: a region that the cluster has room for never
    /// waits for a quarantine to end. Returns whether `need` slots are free now.
    pub(crate) fn release_quarantines_for(&mut self, need: u64) -> bool {
        let mut free = self.slots.free_slots();
        if free >= need {
            return true;
        }
        let mut held: Vec<(std::cmp::Reverse<u32>, ExecutorId)> = self
            .quarantines
            .quarantined()
            .filter_map(|(id, _)| {
                let f = self.slots.free_of(id)?;
                (f > 0).then(|| (std::cmp::Reverse(f), id.clone()))
            })
            .collect();
        if free + held.iter().map(|(f, _)| u64::from(f.0)).sum::<u64>() < need {
            return false;
        }
        held.sort();
        for (f, id) in held {
            if free >= need {
                break;
            }
            self.release_quarantine(
                &id,
                "released early: a region waiting for slots fits only with its slots",
            );
            free += u64::from(f.0);
        }
        true
    }

    /// A quarantined executor that registers again stays out of placement.
    pub(crate) fn exclude_if_quarantined(&mut self, executor: &ExecutorId) {
        if self.quarantines.get(executor).is_some() {
            self.slots.set_excluded(executor, true);
        }
    }

    /// When every registered executor is quarantined, releases them all: quarantine must not
    /// stop a JobMaster that has executors from placing anything.
    pub(crate) fn keep_one_usable(&mut self) {
        if self.quarantines.active_count() == 0
            || self.executors.is_empty()
            || self.executors.keys().any(|e| !self.slots.is_excluded(e))
        {
            return;
        }
        let stuck: Vec<ExecutorId> = self.executors.keys().cloned().collect();
        for e in stuck {
            self.release_quarantine(
                &e,
                "released early: no other registered executor is out of quarantine",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure of task `n` of job 1.
    fn failure(n: u32) -> Strike {
        Strike::TaskFailure(JobId(1), TaskId(n))
    }

    #[test]
    fn strikes_count_within_the_window_and_reset_after_a_trigger() {
        let config = QuarantineConfig {
            max_task_failures: 2,
            max_losses: 3,
            window_ms: 1_000,
            duration_ms: 5_000,
        };
        let mut q = Quarantines::new();
        let e = ExecutorId::from("e");
        assert_eq!(q.strike(&e, failure(0), 0, &config), None);
        // The first failure expired: still one in the window.
        assert_eq!(q.strike(&e, failure(1), 1_000, &config), None);
        assert_eq!(
            q.strike(&e, failure(2), 1_500, &config).as_deref(),
            Some("2 task failures within 1s")
        );
        assert_eq!(q.strike(&e, failure(3), 1_600, &config), None);
        assert_eq!(q.strike(&e, Strike::Loss, 1_700, &config), None);
        assert_eq!(q.strike(&e, Strike::Loss, 1_800, &config), None);
        assert_eq!(
            q.strike(&e, Strike::Loss, 1_900, &config).as_deref(),
            Some("lost 3 times within 1s")
        );
        let off = QuarantineConfig::OFF;
        for t in 0..10 {
            assert_eq!(q.strike(&e, failure(t as u32), t, &off), None);
        }
    }

    #[test]
    fn a_task_counts_once_per_executor_and_not_at_all_once_it_failed_on_two() {
        let config = QuarantineConfig {
            max_task_failures: 2,
            ..QuarantineConfig::default()
        };
        let mut q = Quarantines::new();
        let (a, b) = (ExecutorId::from("a"), ExecutorId::from("b"));
        // The same task failing again on a is one strike.
        assert_eq!(q.strike(&a, failure(0), 0, &config), None);
        assert_eq!(q.strike(&a, failure(0), 10, &config), None);
        // It now fails on b too: the task is at fault; its strike on a is withdrawn.
        assert_eq!(q.strike(&b, failure(0), 20, &config), None);
        assert_eq!(
            q.strike(&a, failure(1), 30, &config),
            None,
            "one strike on a"
        );
        // Two distinct tasks failing on b quarantine it.
        assert_eq!(
            q.strike(&b, failure(2), 40, &config).as_deref(),
            None,
            "task 0's failure on b did not count"
        );
        assert_eq!(
            q.strike(&b, failure(3), 50, &config).as_deref(),
            Some("2 task failures within 1h")
        );
    }
}
