//! Executors coming and going, and reconciliation: registration, executor loss (one failover
//! per job over everything it ran and hosted), and heartbeats compared with what the core
//! expects each executor to run.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::core::attempt::{AttemptId, AttemptState};
use crate::core::event::{Command, Failure, FailureClass, Holdings, Notice};
use crate::core::graph::{PartitionId, TaskId};
use crate::core::quarantine::Strike;
use crate::core::{ExecutorId, JobId, Millis};

use super::{CoreError, Executor, JobMaster, PartitionHost, UNSEEN_HEARTBEATS};

impl JobMaster {
    pub(super) fn register_executor(
        &mut self,
        id: ExecutorId,
        slots: u32,
        labels: BTreeMap<String, String>,
        holds: Holdings,
        now: Millis,
    ) -> Result<(), CoreError> {
        if slots == 0 {
            return Err(CoreError::NoSlots);
        }
        if self.executors.contains_key(&id) {
            self.lose_executor(&id, "executor registered again with a new session", now);
        }
        self.slots.add_executor(id.clone(), slots, labels);
        self.executors.insert(
            id.clone(),
            Executor {
                partitions: BTreeSet::new(),
            },
        );
        self.out.push(Command::Notify(Notice::ExecutorRegistered {
            executor: id.clone(),
            slots,
        }));
        self.exclude_if_quarantined(&id);
        self.keep_one_usable();
        self.adopt(&id, holds, now);
        Ok(())
    }

    /// One executor loss is one failover per job over all its tasks and partitions.
    pub(super) fn lose_executor(&mut self, id: &ExecutorId, reason: &str, now: Millis) {
        let Some(executor) = self.executors.remove(id) else {
            return;
        };
        let attempts = self.slots.remove_executor(id);
        self.out.push(Command::Notify(Notice::ExecutorLost {
            executor: id.clone(),
            reason: reason.to_owned(),
        }));
        self.strike_executor(id, Strike::Loss, now);
        self.keep_one_usable();
        let mut per_job: BTreeMap<JobId, (Vec<TaskId>, Vec<PartitionId>)> = BTreeMap::new();
        for a in &attempts {
            per_job.entry(a.job).or_default().0.push(a.task);
        }
        for (job, p) in &executor.partitions {
            per_job.entry(*job).or_default().1.push(*p);
        }
        for (job_id, (tasks, partitions)) in per_job {
            let Some(job) = self.jobs.get_mut(&job_id) else {
                continue;
            };
            let mut lost_needed = Vec::new();
            for p in partitions {
                job.set_host(p, PartitionHost::Unavailable);
                if job.has_unfinished_consumer(p) {
                    lost_needed.push(p);
                }
            }
            let mut failures = Vec::new();
            for t in tasks {
                let task = &mut job.tasks[t.index()];
                // Its slot is gone with the executor.
                task.executor = None;
                job.dirty.tasks.insert(t);
                match task.log.state() {
                    AttemptState::Canceling => {
                        job.set_attempt_state(t, AttemptState::Canceled, now, &mut self.out);
                    }
                    s if !s.is_terminal() => {
                        job.tasks[t.index()].avoid = Some(id.clone());
                        failures.push((
                            t,
                            Some(id.clone()),
                            Failure::new(
                                FailureClass::ExecutorLost,
                                format!("executor {id} lost: {reason}"),
                            ),
                        ));
                    }
                    _ => {}
                }
            }
            self.failover(job_id, failures, lost_needed, now);
            self.check_wound_down(job_id, now);
            self.check_restarts(job_id, now);
        }
    }

    /// Reconciles an executor's view with ours: attempts it holds that we do not expect there
    /// are cancelled; attempts we expect there that it no longer holds have failed (or, when
    /// canceling, are done).
    ///
    /// A heartbeat is a snapshot taken before it travels, so an attempt deployed meanwhile may
    /// be absent from it without being lost. An attempt therefore counts as missing once a
    /// heartbeat listed it before, or — for one the executor never listed — once
    /// [`UNSEEN_HEARTBEATS`] heartbeats in a row left it out while it was past deploying and
    /// `unseen_grace_ms` passed since it left deploying.
    pub(super) fn heartbeat(
        &mut self,
        id: &ExecutorId,
        reported: &[AttemptId],
        now: Millis,
    ) -> Result<(), CoreError> {
        let Some(expected_here) = self.slots.attempts(id) else {
            return Err(CoreError::UnknownExecutor(id.clone()));
        };
        let reported: HashSet<AttemptId> = reported.iter().copied().collect();
        // Unknown to us (or not current, or expected elsewhere): cancel it.
        let mut cancel = Vec::new();
        for a in &reported {
            let expected = expected_here.contains(a)
                && self.jobs.get(&a.job).is_some_and(|j| {
                    j.tasks
                        .get(a.task.index())
                        .is_some_and(|t| t.attempt == a.attempt)
                });
            if !expected {
                cancel.push(*a);
            }
        }
        // Expected there but missing: failed (or, when cancelling, done).
        let mut missing: Vec<AttemptId> = Vec::new();
        for a in expected_here {
            let task = &mut self
                .jobs
                .get_mut(&a.job)
                .expect("attempts belong to live jobs")
                .tasks[a.task.index()];
            if reported.contains(a) {
                task.seen = true;
                task.unseen = 0;
                continue;
            }
            // DEPLOYING may still be in flight; SCHEDULED holds only a slot.
            if !matches!(
                task.log.state(),
                AttemptState::Initializing | AttemptState::Running | AttemptState::Canceling
            ) {
                continue;
            }
            if !task.seen {
                task.unseen = task.unseen.saturating_add(1);
                let arrived = task
                    .log
                    .transitions()
                    .iter()
                    .skip_while(|(s, _)| *s != AttemptState::Deploying)
                    .nth(1)
                    .map_or(now, |&(_, at)| at);
                if task.unseen < UNSEEN_HEARTBEATS
                    || now.saturating_sub(arrived) < self.config.unseen_grace_ms
                {
                    continue;
                }
            }
            missing.push(*a);
        }
        for a in cancel {
            self.out.push(Command::Cancel {
                attempt: a,
                executor: id.clone(),
            });
        }
        for a in missing {
            let state = self.jobs[&a.job].tasks[a.task.index()].log.state();
            if state == AttemptState::Canceling {
                self.finish_cancel(a.job, a.task, now);
            } else {
                self.fail_attempt(
                    a.job,
                    a.task,
                    Failure::recoverable(format!(
                        "attempt {} is unexpectedly no longer running on executor {id}",
                        a.attempt
                    )),
                    now,
                );
            }
        }
        Ok(())
    }
}
