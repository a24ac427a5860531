//! Reconciliation after a JobMaster restart (DESIGN §3 and §4): executors re-register listing
//! the attempts they still run and the partitions they host. The current attempt of a task,
//! on the executor the store recorded, is adopted — no cancel, no redeploy, the same attempt
//! number; anything else is cancelled or released. A job leaves RECONCILING once nothing it
//! waits for is unreported, or at `recovery.reconcile-timeout`; then whatever nobody reported
//! fails over, as one failover per job.

use std::collections::BTreeSet;

use crate::core::attempt::{AttemptId, AttemptState};
use crate::core::event::{Command, Failure, FailureClass, Holdings};
use crate::core::graph::{PartitionId, TaskId};
use crate::core::job_state::JobState;
use crate::core::{ExecutorId, JobId, Millis};

use super::durable::waiting_regions;
use super::{JobMaster, PartitionHost};

impl JobMaster {
    /// Adopts or refuses what a (re-)registering executor holds.
    pub(super) fn adopt(&mut self, id: &ExecutorId, holds: Holdings, now: Millis) {
        let mut touched = BTreeSet::new();
        for (a, reported) in holds.attempts {
            let adoptable = self.jobs.get(&a.job).is_some_and(|job| {
                job.recovery.is_some()
                    && job.tasks.get(a.task.index()).is_some_and(|t| {
                        t.attempt == a.attempt
                            && t.log.state() == AttemptState::Reconciling
                            && t.executor.as_ref() == Some(id)
                    })
            });
            if !adoptable {
                // Unknown, stale, or not where the store says it runs: it must not run.
                if !reported.is_terminal() {
                    self.out.push(Command::Cancel {
                        attempt: a,
                        executor: id.clone(),
                    });
                }
                continue;
            }
            touched.insert(a.job);
            self.adopt_attempt(id, a, reported, now);
        }
        for (job_id, p, attempt) in holds.partitions {
            let Some(job) = self.jobs.get_mut(&job_id) else {
                continue;
            };
            if p.0 as usize >= job.hosts.len() {
                continue;
            }
            let producer = job.graph.producer_of(p);
            let expected = job
                .recovery
                .as_ref()
                .is_some_and(|r| r.unconfirmed.contains(&p))
                && job.hosts[p.0 as usize] == PartitionHost::Executor(id.clone())
                && job.tasks[producer.index()].attempt == attempt;
            if expected {
                if let Some(r) = job.recovery.as_mut() {
                    r.unconfirmed.remove(&p);
                }
                if let Some(e) = self.executors.get_mut(id) {
                    e.partitions.insert((job_id, p));
                }
                touched.insert(job_id);
            } else if job.hosts[p.0 as usize] != PartitionHost::Executor(id.clone()) {
                self.out.push(Command::ReleasePartitions {
                    job: job_id,
                    executor: Some(id.clone()),
                    partitions: vec![p],
                    attempts: vec![attempt],
                });
            }
        }
        // What the store placed on this executor and it did not list is gone.
        let ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.recovery.is_some())
            .map(|(k, _)| *k)
            .collect();
        for job_id in ids {
            let job = self.jobs.get_mut(&job_id).expect("listed");
            let here = PartitionHost::Executor(id.clone());
            let gone_partitions: Vec<PartitionId> = job
                .recovery
                .as_ref()
                .map(|r| {
                    r.unconfirmed
                        .iter()
                        .copied()
                        .filter(|p| job.hosts[p.0 as usize] == here)
                        .collect()
                })
                .unwrap_or_default();
            let gone_tasks: Vec<TaskId> = job
                .graph
                .tasks()
                .filter(|t| {
                    let task = &job.tasks[t.index()];
                    task.log.state() == AttemptState::Reconciling
                        && task.executor.as_ref() == Some(id)
                })
                .collect();
            if gone_partitions.is_empty() && gone_tasks.is_empty() {
                continue;
            }
            touched.insert(job_id);
            for p in gone_partitions {
                self.partition_gone(job_id, p);
            }
            for t in gone_tasks {
                self.reconciled_missing(job_id, t, now);
            }
        }
        for job in touched {
            self.check_reconciled(job, now);
        }
    }

    /// Adopts the current attempt `a` of a RECONCILING task, in the state its executor reports.
    fn adopt_attempt(
        &mut self,
        id: &ExecutorId,
        a: AttemptId,
        reported: AttemptState,
        now: Millis,
    ) {
        let job = self.jobs.get_mut(&a.job).expect("checked");
        let t = a.task;
        let stop = job.tasks[t.index()].reconcile_stop;
        job.counters.adopted += 1;
        job.dirty.job = true;
        match reported {
            AttemptState::Finished if !stop => {
                job.set_attempt_state(t, AttemptState::Finished, now, &mut self.out);
                self.finish_task(a.job, t, id, now);
            }
            s if s.is_terminal() => {
                // It ended while the JobMaster was away: an attempt to stop is simply done,
                // any other failed over with the job's reconciliation.
                job.tasks[t.index()].reconcile_stop = false;
                if stop {
                    job.set_attempt_state(t, AttemptState::Canceled, now, &mut self.out);
                } else {
                    job.set_attempt_state(t, AttemptState::Failed, now, &mut self.out);
                    if let Some(r) = job.recovery.as_mut() {
                        r.failed.push((t, Some(id.clone())));
                    }
                }
            }
            _ => {
                if !self.slots.adopt(id, a) {
                    // More attempts than slots: it must not run.
                    job.set_attempt_state(t, AttemptState::Failed, now, &mut self.out);
                    if let Some(r) = job.recovery.as_mut() {
                        r.failed.push((t, Some(id.clone())));
                    }
                    self.out.push(Command::Cancel {
                        attempt: a,
                        executor: id.clone(),
                    });
                    return;
                }
                let task = &mut job.tasks[t.index()];
                task.seen = true;
                task.unseen = 0;
                let state = match reported {
                    AttemptState::Deploying | AttemptState::Initializing => {
                        AttemptState::Initializing
                    }
                    _ => AttemptState::Running,
                };
                job.set_attempt_state(t, state, now, &mut self.out);
                if stop {
                    job.tasks[t.index()].reconcile_stop = false;
                    self.stop_task(a.job, t, now);
                }
            }
        }
    }

    /// A partition the store recorded on an executor that came back without it.
    fn partition_gone(&mut self, job_id: JobId, p: PartitionId) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        job.set_host(p, PartitionHost::Unavailable);
        let needed = job.has_unfinished_consumer(p);
        if let Some(r) = job.recovery.as_mut() {
            r.unconfirmed.remove(&p);
            if needed {
                r.lost.push(p);
            }
        }
    }

    /// A RECONCILING attempt its executor does not run (any more).
    fn reconciled_missing(&mut self, job_id: JobId, t: TaskId, now: Millis) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        let task = &mut job.tasks[t.index()];
        let stop = std::mem::take(&mut task.reconcile_stop);
        let executor = task.executor.take();
        if stop {
            job.set_attempt_state(t, AttemptState::Canceled, now, &mut self.out);
        } else {
            job.set_attempt_state(t, AttemptState::Failed, now, &mut self.out);
            if let Some(r) = job.recovery.as_mut() {
                r.failed.push((t, executor));
            }
        }
    }

    /// Reconciliation is over for every job still reconciling: what nobody reported is gone.
    pub(super) fn reconcile_timeout(&mut self, now: Millis) {
        let ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.recovery.is_some())
            .map(|(k, _)| *k)
            .collect();
        for id in ids {
            let job = self.jobs.get_mut(&id).expect("listed");
            let unreported: Vec<TaskId> = job
                .graph
                .tasks()
                .filter(|t| job.tasks[t.index()].log.state() == AttemptState::Reconciling)
                .collect();
            let unconfirmed: Vec<PartitionId> = job
                .recovery
                .as_ref()
                .map(|r| r.unconfirmed.iter().copied().collect())
                .unwrap_or_default();
            for p in unconfirmed {
                self.partition_gone(id, p);
            }
            for t in unreported {
                self.reconciled_missing(id, t, now);
            }
            self.check_reconciled(id, now);
        }
    }

    /// Ends the job's reconciliation once nothing it waits for is unreported: it resumes its
    /// state, fails over what was found gone (one failover), and places its waiting tasks.
    pub(super) fn check_reconciled(&mut self, id: JobId, now: Millis) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(recovery) = job.recovery.as_ref() else {
            return;
        };
        let waiting = !recovery.unconfirmed.is_empty()
            || job
                .tasks
                .iter()
                .any(|t| t.log.state() == AttemptState::Reconciling);
        if waiting {
            return;
        }
        let recovery = job.recovery.take().expect("checked");
        job.counters.recoveries += 1;
        if job.state.state() == JobState::Reconciling {
            job.set_state(
                recovery.resume.unwrap_or(JobState::Running),
                now,
                None,
                &mut self.out,
            );
        }
        // Every task finished while the JobMaster was away.
        if job.finished == job.tasks.len()
            && job.restarts.is_empty()
            && recovery.failed.is_empty()
            && job.state.state() == JobState::Running
        {
            job.set_state(JobState::Finished, now, None, &mut self.out);
            job.release_all_partitions(&mut self.executors, &mut self.out);
            return;
        }
        let failures = recovery
            .failed
            .into_iter()
            .map(|(t, executor)| {
                let message = match &executor {
                    Some(e) => format!(
                        "executor {e} no longer runs the attempt after the JobMaster restarted"
                    ),
                    None => {
                        "no executor reported the attempt after the JobMaster restarted".to_owned()
                    }
                };
                (
                    t,
                    executor,
                    Failure::new(FailureClass::ExecutorLost, message),
                )
            })
            .collect();
        self.failover(id, failures, recovery.lost, now);
        self.check_wound_down(id, now);
        self.check_restarts(id, now);
        if let Some(job) = self.jobs.get(&id) {
            for r in waiting_regions(job) {
                self.enqueue(id, r, now);
            }
        }
    }

    /// Is any job still reconciling?
    pub fn reconciling(&self) -> bool {
        self.jobs.values().any(|j| j.recovery.is_some())
    }
}
