//! Failover: a failed attempt becomes a restart set (or fails the job), the set's tasks are
//! stopped, and once every one of them is gone and the backoff has passed, the restart fires
//! and their new attempts wait for inputs and slots.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::core::attempt::{AttemptId, AttemptLog, AttemptState};
use crate::core::checkpoint::AbortReason;
use crate::core::event::{Command, Failure, FailureClass, Notice};
use crate::core::graph::{PartitionId, TaskId};
use crate::core::history::{ExceptionEntry, FailureRecord};
use crate::core::job_state::JobState;
use crate::core::region::RegionId;
use crate::core::restart::BackoffDecision;
use crate::core::{ExecutorId, JobId, Millis};

use super::job::PendingRestart;
use super::{JobMaster, PartitionHost, Timer};

impl JobMaster {
    /// The current attempt of `t` failed: mark it and fail over.
    pub(super) fn fail_attempt(&mut self, id: JobId, t: TaskId, failure: Failure, now: Millis) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let executor = job.tasks[t.index()].executor.clone();
        if let Some(e) = &executor {
            job.tasks[t.index()].avoid = Some(e.clone());
        }
        // A consumer missing an input: the partition is gone, so the failed consumer's restart
        // set pulls its producer in (rule 2).
        // Only a partition that feeds this task counts: an executor cannot mark any partition
        // of the job unavailable by naming it in a failure.
        if failure.class == FailureClass::PartitionLost
            && let Some(p) = failure.partition
            && (p.0 as usize) < job.hosts.len()
            && job
                .graph
                .partition_to(job.graph.producer_of(p), job.graph.vertex_of(t))
                == Some(p)
        {
            if let PartitionHost::Executor(e) = &job.hosts[p.0 as usize]
                && let Some(ex) = self.executors.get_mut(e)
            {
                ex.partitions.remove(&(id, p));
            }
            job.set_host(p, PartitionHost::Unavailable);
        }
        self.failover(id, vec![(t, executor, failure)], Vec::new(), now);
    }

    /// Marks `failures` failed and decides: fail the job, or restart a set of tasks.
    pub(super) fn failover(
        &mut self,
        id: JobId,
        failures: Vec<(TaskId, Option<ExecutorId>, Failure)>,
        lost_outputs: Vec<PartitionId>,
        now: Millis,
    ) {
        self.failover_with(id, failures, lost_outputs, None, now);
    }

    /// A failure of the job as a whole, not of one task (too many checkpoint failures): every
    /// task restarts, whatever the failover strategy, if the restart strategy allows it.
    pub(super) fn global_failover(&mut self, id: JobId, cause: String, now: Millis) {
        self.failover_with(id, Vec::new(), Vec::new(), Some(cause), now);
    }

    fn failover_with(
        &mut self,
        id: JobId,
        failures: Vec<(TaskId, Option<ExecutorId>, Failure)>,
        lost_outputs: Vec<PartitionId>,
        global: Option<String>,
        now: Millis,
    ) {
        if failures.is_empty() && lost_outputs.is_empty() && global.is_none() {
            return;
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        // Counters, history, the backoff and the restarts all change below.
        job.dirty.job = true;
        let global_record = global.as_ref().map(|message| FailureRecord {
            time: now,
            attempt: None,
            executor: None,
            class: FailureClass::Recoverable,
            message: message.clone(),
        });
        let records: Vec<FailureRecord> = global_record
            .into_iter()
            .chain(failures.iter().map(|(t, e, f)| FailureRecord {
                time: now,
                attempt: Some(AttemptId {
                    job: id,
                    task: *t,
                    attempt: job.tasks[t.index()].attempt,
                }),
                executor: e.clone(),
                class: f.class,
                message: f.message.clone(),
            }))
            .chain(lost_outputs.iter().map(|p| FailureRecord {
                time: now,
                attempt: None,
                executor: None,
                class: FailureClass::PartitionLost,
                message: format!(
                    "partition {} lost while consumers still need it",
                    job.graph.partition_name(*p)
                ),
            }))
            .collect();
        // An attempt already being cancelled (an injected failure of a live process) stays
        // CANCELING: the restart waits until its process is really gone.
        let mut marked = Vec::new();
        for (t, _, _) in &failures {
            let state = job.tasks[t.index()].log.state();
            if !state.is_terminal() && state != AttemptState::Canceling {
                job.set_attempt_state(*t, AttemptState::Failed, now, &mut self.out);
                marked.push(*t);
            }
        }
        for t in marked {
            self.slots.free_slot(job, t);
        }
        if !job.state.state().is_active() {
            self.check_wound_down(id, now);
            return;
        }
        let root = records[0].clone();
        let give_up = match failures
            .iter()
            .find(|(_, _, f)| f.class == FailureClass::NonRecoverable)
        {
            Some((_, _, f)) => Err(format!("non-recoverable failure: {}", f.message)),
            None => match job.backoff.on_failure(now) {
                BackoffDecision::Restart { delay_ms, merged } => Ok((delay_ms, merged)),
                BackoffDecision::GiveUp { reason } => {
                    Err(format!("{reason}; last failure: {}", root.message))
                }
            },
        };
        let (delay, merged) = match give_up {
            Ok(restart) => restart,
            Err(cause) => {
                job.history.push(ExceptionEntry {
                    root,
                    concurrent: records[1..].to_vec(),
                    restarted: Vec::new(),
                    outcome: format!("job failed: {cause}"),
                });
                self.wind_down(id, JobState::Failing, Some(cause), now);
                return;
            }
        };

        let failed: Vec<TaskId> = failures.iter().map(|(t, _, _)| *t).collect();
        let set_tasks: Vec<TaskId> = if global.is_some() {
            job.graph.tasks().collect()
        } else {
            job.restart_set(&failed, &lost_outputs, &[]).tasks
        };
        // Tasks that never left CREATED need no cancel and no new attempt: they simply wait
        // for their (re-produced) inputs and a slot, as they already were.
        let tasks: Vec<TaskId> = set_tasks
            .into_iter()
            .filter(|t| job.tasks[t.index()].log.state() != AttemptState::Created)
            .collect();
        let mut regions: Vec<RegionId> = tasks.iter().map(|&t| job.regions.region_of(t)).collect();
        regions.dedup();
        regions.sort_unstable();
        regions.dedup();

        // The regions' restart budgets, whatever the strategy allows. A region already
        // awaiting a restart that this failure merely joins does not restart again.
        let mut anew: Vec<RegionId> = tasks
            .iter()
            .filter(|t| !job.tasks[t.index()].awaiting_restart)
            .map(|&t| job.regions.region_of(t))
            .collect();
        anew.sort_unstable();
        anew.dedup();
        if let Some(over) =
            job.region_restarts
                .record(anew, now, &self.config.region_restart_budget)
        {
            let cause = format!("{over}; last failure: {}", root.message);
            job.history.push(ExceptionEntry {
                root,
                concurrent: records[1..].to_vec(),
                restarted: Vec::new(),
                outcome: format!("job failed: {cause}"),
            });
            self.wind_down(id, JobState::Failing, Some(cause), now);
            return;
        }

        // Counters and history.
        job.counters.failovers += 1;
        if !merged {
            job.counters.restarts += 1;
        }
        if tasks.len() == job.tasks.len() {
            job.counters.full_restarts += 1;
        }
        job.counters.tasks_restarted += tasks.len() as u64;
        if job.counters.recent_restart_sizes.len() == 1024 {
            job.counters.recent_restart_sizes.pop_front();
        }
        job.counters
            .recent_restart_sizes
            .push_back(tasks.len() as u32);
        for r in &regions {
            job.counters.region_restarts[r.index()] += 1;
            job.down_since[r.index()].get_or_insert(now);
        }
        let outcome = restart_outcome(tasks.len(), delay);
        match (merged, job.history.latest_mut()) {
            (true, Some(latest)) => {
                latest.concurrent.extend(records.iter().cloned());
                let mut all: BTreeSet<TaskId> = latest.restarted.iter().copied().collect();
                all.extend(tasks.iter().copied());
                latest.restarted = all.into_iter().collect();
                // The entry tells the restart as it now is (merged failures add tasks).
                latest.outcome = restart_outcome(latest.restarted.len(), delay);
            }
            _ => job.history.push(ExceptionEntry {
                root: root.clone(),
                concurrent: records[1..].to_vec(),
                restarted: tasks.clone(),
                outcome,
            }),
        }

        // Bump versions, make outputs unavailable, drop pending scheduling.
        let mut versions = Vec::with_capacity(tasks.len());
        let mut release: BTreeMap<Option<ExecutorId>, Vec<PartitionId>> = BTreeMap::new();
        for &t in &tasks {
            let task = &mut job.tasks[t.index()];
            task.version += 1;
            task.awaiting_restart = true;
            job.dirty.tasks.insert(t);
            versions.push((t, task.version));
            let produced: Vec<PartitionId> = job.graph.produced_partitions(t).collect();
            for p in produced {
                match job.hosts[p.0 as usize].clone() {
                    PartitionHost::Unavailable => continue,
                    PartitionHost::Executor(e) => release.entry(Some(e)).or_default().push(p),
                    PartitionHost::Persistent => release.entry(None).or_default().push(p),
                }
                // Consumers wait for the new output; none is ready because of this.
                job.set_host(p, PartitionHost::Unavailable);
            }
            job.pending[job.regions.region_of(t).index()].remove(&t);
        }
        job.release(release, &mut self.executors, &mut self.out);

        let restart = job.next_restart;
        job.next_restart += 1;
        // A merged failure joins the pending restart's moment (the backoff said how long is left).
        let ready_at = now + delay;
        job.restarts.insert(
            restart,
            PendingRestart {
                ready_at,
                tasks: versions,
            },
        );
        // As in Flink: a regional failover leaves the job RUNNING (its other regions keep
        // running; the restarting tasks show their own states); only a restart of every task
        // makes the job RESTARTING.
        if job.state.state() == JobState::Running && tasks.len() == job.tasks.len() {
            job.set_state(
                JobState::Restarting,
                now,
                Some(root.message.clone()),
                &mut self.out,
            );
        }
        self.out.push(Command::Notify(Notice::RestartScheduled {
            job: id,
            tasks: tasks.clone(),
            regions: regions.len(),
            delay_ms: delay,
            merged,
            cause: root.message.clone(),
        }));
        // Restarted tasks restore from the latest *completed* checkpoint: none in progress
        // may complete now.
        self.abort_checkpoints(id, AbortReason::Failover, now);
        for &t in &tasks {
            self.stop_task(id, t, now);
        }
        self.timers
            .set(ready_at, Timer::RestartDue { job: id }, &mut self.out);
        self.check_restarts(id, now);
    }

    /// Stops a task's current attempt: cancel on its executor, or drop it if not deployed.
    pub(super) fn stop_task(&mut self, id: JobId, t: TaskId, now: Millis) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let region = job.regions.region_of(t);
        job.pending[region.index()].remove(&t);
        let task = &job.tasks[t.index()];
        let attempt = AttemptId {
            job: id,
            task: t,
            attempt: task.attempt,
        };
        match task.log.state() {
            AttemptState::Created | AttemptState::Scheduled => {
                job.set_attempt_state(t, AttemptState::Canceled, now, &mut self.out);
                self.slots.free_slot(job, t);
            }
            AttemptState::Deploying | AttemptState::Initializing | AttemptState::Running => {
                let executor = task.executor.clone();
                job.set_attempt_state(t, AttemptState::Canceling, now, &mut self.out);
                if let Some(executor) = executor {
                    self.out.push(Command::Cancel {
                        attempt,
                        executor: executor.clone(),
                    });
                    let at = now + self.config.cancel_timeout_ms;
                    self.timers.set(
                        at,
                        Timer::CancelTimeout { attempt, executor },
                        &mut self.out,
                    );
                }
            }
            // Its executor may still run it: cancelled when it reports it, done when
            // reconciliation ends without it.
            AttemptState::Reconciling => {
                job.tasks[t.index()].reconcile_stop = true;
            }
            _ => {}
        }
    }

    pub(super) fn finish_cancel(&mut self, id: JobId, t: TaskId, now: Millis) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.set_attempt_state(t, AttemptState::Canceled, now, &mut self.out);
        self.slots.free_slot(job, t);
        self.check_wound_down(id, now);
        self.check_restarts(id, now);
    }

    /// Fires every pending restart that is due and whose tasks have all stopped.
    pub(super) fn check_restarts(&mut self, id: JobId, now: Millis) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !job.state.state().is_active() {
            return;
        }
        let due: Vec<u64> = job
            .restarts
            .iter()
            .filter(|(_, r)| {
                r.ready_at <= now
                    && r.tasks.iter().all(|(t, v)| {
                        let task = &job.tasks[t.index()];
                        task.version != *v || task.log.state().is_terminal()
                    })
            })
            .map(|(k, _)| *k)
            .collect();
        let mut touched = BTreeSet::new();
        for k in due {
            let restart = job.restarts.remove(&k).expect("listed");
            job.dirty.job = true;
            for (t, v) in restart.tasks {
                let task = &mut job.tasks[t.index()];
                if task.version != v {
                    continue; // a later failover took this task over
                }
                task.awaiting_restart = false;
                let old = std::mem::replace(&mut task.log, AttemptLog::new(now));
                if task.previous.len() == self.config.attempt_history_size.max(1) {
                    task.previous.pop_front();
                }
                let old_executor = task.executor.take();
                task.previous.push_back((task.attempt, old, old_executor));
                task.attempt += 1;
                job.dirty.tasks.insert(t);
                task.seen = false;
                task.unseen = 0;
                if old_was_finished(&task.previous) {
                    job.finished -= 1;
                }
                job.live += 1;
                let region = job.regions.region_of(t);
                job.pending[region.index()].insert(t);
                touched.insert(region);
                self.out.push(Command::Notify(Notice::TaskState {
                    attempt: AttemptId {
                        job: id,
                        task: t,
                        attempt: job.tasks[t.index()].attempt,
                    },
                    state: AttemptState::Created,
                    executor: None,
                }));
            }
        }
        if job.restarts.is_empty() && job.state.state() == JobState::Restarting {
            job.set_state(JobState::Running, now, None, &mut self.out);
        }
        for r in touched {
            self.enqueue(id, r, now);
        }
    }
}

fn old_was_finished(previous: &VecDeque<(u32, AttemptLog, Option<ExecutorId>)>) -> bool {
    previous
        .back()
        .is_some_and(|(_, log, _)| log.state() == AttemptState::Finished)
}

/// An exception-history outcome: "restart 1 task after 500 ms", "restart 3 tasks after 0 ms".
fn restart_outcome(tasks: usize, delay_ms: Millis) -> String {
    let plural = if tasks == 1 { "" } else { "s" };
    format!("restart {tasks} task{plural} after {delay_ms} ms")
}
