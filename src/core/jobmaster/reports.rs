//! What executors and operators report about tasks and partitions: attempt state changes
//! (with fencing of stale or misplaced reports), finished tasks and the partitions they
//! produced, lost partitions, and injected failures.

use std::collections::BTreeSet;

use crate::core::attempt::{AttemptId, AttemptState};
use crate::core::event::{Command, Failure, FailureClass};
use crate::core::graph::{PartitionId, TaskId};
use crate::core::job_state::JobState;
use crate::core::quarantine::Strike;
use crate::core::region::RegionId;
use crate::core::spec::{Exchange, FailoverStrategy};
use crate::core::{ExecutorId, JobId, Millis};

use super::{CoreError, JobMaster, PartitionHost};

impl JobMaster {
    pub(super) fn task_state_changed(
        &mut self,
        executor: &ExecutorId,
        a: AttemptId,
        reported: AttemptState,
        failure: Option<Failure>,
        now: Millis,
    ) -> Result<(), CoreError> {
        let job = self
            .jobs
            .get_mut(&a.job)
            .ok_or(CoreError::UnknownJob(a.job))?;
        let task = job
            .tasks
            .get(a.task.index())
            .ok_or(CoreError::UnknownTask {
                job: a.job,
                task: a.task.0,
            })?;
        let name = job.graph.task_name(a.task).to_string();
        let cancel_it = Command::Cancel {
            attempt: a,
            executor: executor.clone(),
        };
        if task.attempt != a.attempt {
            if !reported.is_terminal() {
                self.out.push(cancel_it);
            }
            return Err(CoreError::StaleAttempt {
                task: name,
                attempt: a.attempt,
                current: task.attempt,
            });
        }
        if task.executor.as_ref() != Some(executor) {
            if !reported.is_terminal() {
                self.out.push(cancel_it);
            }
            return Err(CoreError::WrongExecutor {
                task: name,
                attempt: a.attempt,
                executor: executor.clone(),
            });
        }
        let state = task.log.state();
        if state == reported {
            return Ok(()); // a repeated report (retries are allowed to deliver twice)
        }
        match reported {
            AttemptState::Initializing | AttemptState::Running | AttemptState::Finished => {
                if state == AttemptState::Canceling {
                    // Late progress of an attempt being cancelled; a finished one is simply
                    // gone (its output is not wanted any more).
                    if reported == AttemptState::Finished {
                        self.finish_cancel(a.job, a.task, now);
                    }
                    return Ok(());
                }
                let path = state
                    .forward_path(reported)
                    .ok_or(CoreError::IllegalReport {
                        task: name,
                        state,
                        reported,
                    })?;
                for &s in path {
                    job.set_attempt_state(a.task, s, now, &mut self.out);
                }
                if reported == AttemptState::Finished {
                    self.finish_task(a.job, a.task, executor, now);
                } else {
                    job.note_region_up(job.regions.region_of(a.task), now);
                }
            }
            AttemptState::Canceled => match state {
                AttemptState::Canceling => self.finish_cancel(a.job, a.task, now),
                s if s.is_terminal() => {}
                _ => self.fail_attempt(
                    a.job,
                    a.task,
                    Failure::recoverable("the executor canceled the task on its own"),
                    now,
                ),
            },
            AttemptState::Failed => match state {
                // A task we are cancelling that fails instead is simply gone (Flink does the
                // same): it must not start another failover.
                AttemptState::Canceling => self.finish_cancel(a.job, a.task, now),
                s if s.is_terminal() => {}
                _ => {
                    let failure = failure.unwrap_or_else(|| Failure::recoverable("task failed"));
                    // Attributable to the executor (see `core::quarantine`): counted first, so
                    // that the restart this failure causes already avoids a quarantined one.
                    if failure.class == FailureClass::Recoverable {
                        self.strike_executor(executor, Strike::TaskFailure(a.job, a.task), now);
                    }
                    self.fail_attempt(a.job, a.task, failure, now);
                }
            },
            other => {
                return Err(CoreError::IllegalReport {
                    task: name,
                    state,
                    reported: other,
                });
            }
        }
        Ok(())
    }

    pub(super) fn finish_task(&mut self, id: JobId, t: TaskId, executor: &ExecutorId, now: Millis) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        self.slots.free_slot(job, t);
        job.finished += 1;
        let produced: Vec<PartitionId> = job.graph.produced_partitions(t).collect();
        let mut ready = Vec::new();
        for p in produced {
            let host = match job.graph.exchange_of(p) {
                Exchange::Pipelined => continue,
                Exchange::Persistent => PartitionHost::Persistent,
                Exchange::Blocking => PartitionHost::Executor(executor.clone()),
            };
            if let PartitionHost::Executor(e) = &host
                && let Some(ex) = self.executors.get_mut(e)
            {
                ex.partitions.insert((id, p));
            }
            ready.extend(job.set_host(p, host));
        }
        if job.failover == FailoverStrategy::Individual {
            // Partially restarted regions may wait on just these outputs.
            let consumers: BTreeSet<RegionId> = job
                .graph
                .produced_groups(t)
                .flat_map(|g| job.graph.group(g).consumer_tasks())
                .map(|c| job.regions.region_of(c))
                .filter(|r| !job.pending[r.index()].is_empty())
                .collect();
            ready.extend(consumers);
        }
        for r in ready {
            self.enqueue(id, r, now);
        }
        let job = self.jobs.get_mut(&id).expect("job exists");
        job.note_region_up(job.regions.region_of(t), now);
        if job.finished == job.tasks.len()
            && job.restarts.is_empty()
            && job.state.state() == JobState::Running
        {
            job.set_state(JobState::Finished, now, None, &mut self.out);
            job.release_all_partitions(&mut self.executors, &mut self.out);
        }
    }

    pub(super) fn partition_lost(
        &mut self,
        id: JobId,
        p: PartitionId,
        now: Millis,
    ) -> Result<(), CoreError> {
        let job = self.jobs.get_mut(&id).ok_or(CoreError::UnknownJob(id))?;
        if p.0 as usize >= job.hosts.len() {
            return Err(CoreError::UnknownTask { job: id, task: p.0 });
        }
        if let PartitionHost::Executor(e) = &job.hosts[p.0 as usize]
            && let Some(ex) = self.executors.get_mut(e)
        {
            ex.partitions.remove(&(id, p));
        }
        let was_available = job.hosts[p.0 as usize] != PartitionHost::Unavailable;
        job.set_host(p, PartitionHost::Unavailable);
        if was_available && job.state.state().is_active() && job.has_unfinished_consumer(p) {
            self.failover(id, Vec::new(), vec![p], now);
        }
        Ok(())
    }

    pub(super) fn inject_failure(
        &mut self,
        id: JobId,
        t: TaskId,
        failure: Failure,
        now: Millis,
    ) -> Result<(), CoreError> {
        let job = self.jobs.get_mut(&id).ok_or(CoreError::UnknownJob(id))?;
        let task = job
            .tasks
            .get_mut(t.index())
            .ok_or(CoreError::UnknownTask { job: id, task: t.0 })?;
        if !job.state.state().is_active() {
            return Err(CoreError::JobNotActive {
                job: id,
                state: job.state.state(),
                action: "inject a failure",
            });
        }
        let state = task.log.state();
        if state.is_terminal() || state == AttemptState::Canceling {
            return Err(CoreError::TaskNotFailable {
                task: job.graph.task_name(t).to_string(),
                state,
            });
        }
        if state.is_on_executor() {
            // The process is alive: stop it first, so that the redeploy never runs beside it.
            task.avoid = task.executor.clone();
            self.stop_task(id, t, now);
        }
        self.fail_attempt(id, t, failure, now);
        Ok(())
    }
}
