//! What must be durable (DESIGN §4, "Persistence"): the records a store keeps of every job,
//! the changes of each step ([`Changes`], taken after every coordinator turn and committed
//! before its commands leave), and [`JobMaster::restore`], which rebuilds the core from those
//! records after a restart, with every attempt that was on an executor RECONCILING.
//!
//! Kept: what executors cannot tell a new JobMaster — the job's lifecycle, per task the
//! current attempt number, version and transitions (finished tasks included), where finished
//! producers' partitions are, the restart strategy's state, pending restarts, the exception
//! history, the counters, and the retained completed checkpoints with the checkpoint id
//! counter. Not kept: checkpoints in progress (aborted by a takeover), executors and their slots (they register again), the
//! slot queue and timers (rebuilt), earlier attempts' logs, quarantines.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::checkpoints::JobCheckpoints;
use super::job::{PendingRestart, Recovery, Task};
use super::{CoreConfig, Counters, Job, JobMaster, PartitionHost, Timer};
use crate::core::attempt::{AttemptLog, AttemptState};
use crate::core::checkpoint::CompletedCheckpoint;
use crate::core::event::Command;
use crate::core::graph::{ExecutionGraph, PartitionId, TaskId};
use crate::core::history::ExceptionHistory;
use crate::core::job_state::{JobState, JobStateLog};
use crate::core::readiness::Readiness;
use crate::core::region::{RegionId, Regions};
use crate::core::restart::RestartBackoff;
use crate::core::restart_budget::RegionRestarts;
use crate::core::spec::JobSpec;
use crate::core::{ExecutorId, JobId, Millis};

/// A job's own record (its tasks and partitions are separate records).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub state: JobStateLog,
    pub cause: Option<String>,
    pub backoff: RestartBackoff,
    pub restarts: Vec<(u64, PendingRestart)>,
    pub next_restart: u64,
    pub history: ExceptionHistory,
    pub counters: Counters,
    pub down_since: Vec<Option<Millis>>,
    pub region_restarts: RegionRestarts,
    /// The retained completed checkpoints, oldest first (empty without `[checkpoint]`; absent
    /// in the records of older stores).
    #[serde(default)]
    pub checkpoints: Vec<CompletedCheckpoint>,
    /// The id the next checkpoint takes (0: none triggered yet, or an older store).
    #[serde(default)]
    pub next_checkpoint: u64,
}

/// One task's record: its current attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub attempt: u32,
    pub version: u64,
    pub executor: Option<ExecutorId>,
    pub awaiting_restart: bool,
    pub log: AttemptLog,
}

/// What changed in one step and must be durable before its commands are carried out.
#[derive(Debug, Default)]
pub struct Changes {
    pub jobs: Vec<JobRecord>,
    pub tasks: Vec<(JobId, TaskId, TaskRecord)>,
    /// Where a partition now is; [`PartitionHost::Unavailable`] deletes its record.
    pub partitions: Vec<(JobId, PartitionId, PartitionHost)>,
    /// Jobs forgotten (retention): every record of theirs goes.
    pub dropped: Vec<JobId>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
            && self.tasks.is_empty()
            && self.partitions.is_empty()
            && self.dropped.is_empty()
    }
}

/// A job as a store loaded it: the spec it was submitted with and its records.
#[derive(Debug, Clone)]
pub struct StoredJob {
    pub spec: JobSpec,
    pub record: JobRecord,
    pub tasks: Vec<(TaskId, TaskRecord)>,
    pub partitions: Vec<(PartitionId, PartitionHost)>,
}

/// A stored job that does not fit its spec (a damaged or foreign store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job}: {message}")]
pub struct RestoreError {
    pub job: JobId,
    pub message: String,
}

/// Per job: what changed since the last [`JobMaster::take_changes`].
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    pub(crate) job: bool,
    pub(crate) tasks: BTreeSet<TaskId>,
    pub(crate) partitions: BTreeSet<PartitionId>,
}

impl Dirty {
    fn is_empty(&self) -> bool {
        !self.job && self.tasks.is_empty() && self.partitions.is_empty()
    }
}

impl Job {
    fn record(&self) -> JobRecord {
        JobRecord {
            id: self.id,
            state: self.state.clone(),
            cause: self.cause.clone(),
            backoff: self.backoff.clone(),
            restarts: self.restarts.iter().map(|(k, r)| (*k, r.clone())).collect(),
            next_restart: self.next_restart,
            history: self.history.clone(),
            counters: self.counters.clone(),
            down_since: self.down_since.clone(),
            region_restarts: self.region_restarts.clone(),
            checkpoints: self.checkpoints.as_ref().map_or_else(Vec::new, |c| {
                c.coordinator.retained_checkpoints().cloned().collect()
            }),
            next_checkpoint: self
                .checkpoints
                .as_ref()
                .map_or(0, |c| c.coordinator.next_id().0),
        }
    }

    fn task_record(&self, t: TaskId) -> TaskRecord {
        let task = &self.tasks[t.index()];
        TaskRecord {
            attempt: task.attempt,
            version: task.version,
            executor: task.executor.clone(),
            awaiting_restart: task.awaiting_restart,
            log: task.log.clone(),
        }
    }
}

impl JobMaster {
    /// Everything that changed since the last call, to be committed before the commands of
    /// the same steps are carried out.
    pub fn take_changes(&mut self) -> Changes {
        let mut changes = Changes {
            dropped: std::mem::take(&mut self.dropped),
            ..Changes::default()
        };
        for job in self.jobs.values_mut() {
            if job.dirty.is_empty() {
                continue;
            }
            let dirty = std::mem::take(&mut job.dirty);
            if dirty.job {
                changes.jobs.push(job.record());
            }
            changes.tasks.extend(
                dirty
                    .tasks
                    .into_iter()
                    .map(|t| (job.id, t, job.task_record(t))),
            );
            changes.partitions.extend(
                dirty
                    .partitions
                    .into_iter()
                    .map(|p| (job.id, p, job.hosts[p.0 as usize].clone())),
            );
        }
        changes
    }

    /// The records of everything, as a store that missed no change holds them (tests compare
    /// it with what [`JobMaster::take_changes`] accumulated).
    pub fn all_records(&self) -> Changes {
        let mut all = Changes::default();
        for job in self.jobs.values() {
            all.jobs.push(job.record());
            all.tasks
                .extend(job.graph.tasks().map(|t| (job.id, t, job.task_record(t))));
            all.partitions.extend(
                job.hosts
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| **h != PartitionHost::Unavailable)
                    .map(|(p, h)| (job.id, PartitionId(p as u32), h.clone())),
            );
        }
        all
    }

    /// Rebuilds the core after a restart from `stored` jobs at `now`. Ended jobs stay ended.
    /// In every other job, attempts that were on an executor are RECONCILING: their executor
    /// re-registering with them adopts them; at `now + reconcile_timeout_ms` the ones nobody
    /// reported fail over (one failover per job), and partitions nobody reported are lost.
    /// Returns the commands to carry out (timers, notices).
    pub fn restore(
        config: CoreConfig,
        stored: Vec<StoredJob>,
        now: Millis,
        reconcile_timeout_ms: Millis,
    ) -> Result<(JobMaster, Vec<Command>), RestoreError> {
        let mut jm = JobMaster::new(config);
        let mut reconciling = false;
        for s in stored {
            let id = s.record.id;
            let job = jm.restore_job(s, now)?;
            reconciling |= job.recovery.is_some();
            for at in job.restarts.values().map(|r| r.ready_at) {
                jm.timers
                    .set(at.max(now), Timer::RestartDue { job: id }, &mut jm.out);
            }
            jm.jobs.insert(id, job);
        }
        if reconciling {
            jm.timers.set(
                now + reconcile_timeout_ms,
                Timer::ReconcileTimeout,
                &mut jm.out,
            );
        }
        // Jobs with nothing to wait for (every task finished or never deployed) go on now.
        let ids: Vec<JobId> = jm.jobs.keys().copied().collect();
        for id in ids {
            jm.check_reconciled(id, now);
        }
        let commands = std::mem::take(&mut jm.out);
        Ok((jm, commands))
    }

    fn restore_job(&mut self, s: StoredJob, now: Millis) -> Result<Job, RestoreError> {
        let id = s.record.id;
        let bad = |message: String| RestoreError { job: id, message };
        let graph = ExecutionGraph::build(&s.spec);
        let regions = Regions::compute(&graph);
        let readiness = Readiness::new(&graph, &regions);
        let n = graph.task_count();
        let region_count = regions.len();
        let r = s.record;
        if r.down_since.len() != region_count || r.counters.region_restarts.len() != region_count {
            return Err(bad(format!(
                "the record has counters for {} regions, the spec makes {region_count}",
                r.down_since.len()
            )));
        }
        let state = r.state.state();
        let ended = state.is_terminal();
        let mut tasks: Vec<Task> = (0..n).map(|_| Task::new(now)).collect();
        for (t, record) in s.tasks {
            let Some(task) = tasks.get_mut(t.index()) else {
                return Err(bad(format!("a record for task {} of {n}", t.0)));
            };
            task.attempt = record.attempt;
            task.version = record.version;
            task.awaiting_restart = record.awaiting_restart;
            task.seen = true;
            let recorded = record.log.state();
            match recorded {
                // Never sent to an executor: placed again.
                AttemptState::Created | AttemptState::Scheduled => {
                    task.log = AttemptLog::new(now);
                }
                s if s.is_on_executor() && !ended => {
                    task.executor = record.executor;
                    task.reconcile_stop = recorded == AttemptState::Canceling;
                    let transitions = record
                        .log
                        .transitions()
                        .iter()
                        .copied()
                        .filter(|(s, _)| *s != AttemptState::Reconciling)
                        .collect();
                    task.log = AttemptLog::reconciling(transitions, now);
                }
                _ => {
                    task.executor = record.executor;
                    task.log = record.log;
                }
            }
        }
        let mut job = Job {
            id,
            failover: s.spec.failover,
            placement: s.spec.placement.unwrap_or(self.config.placement),
            placement_domain: s
                .spec
                .placement_domain
                .as_ref()
                .or(self.config.placement_domain.as_ref())
                .filter(|key| !key.is_empty())
                .cloned(),
            state: r.state,
            cause: r.cause,
            hosts: vec![PartitionHost::Unavailable; graph.partition_count()],
            readiness,
            pending: vec![BTreeSet::new(); region_count],
            queued: vec![None; region_count],
            backoff: r.backoff,
            restarts: r.restarts.into_iter().collect::<BTreeMap<_, _>>(),
            next_restart: r.next_restart,
            history: r.history,
            counters: r.counters,
            down_since: r.down_since,
            region_restarts: r.region_restarts,
            finished: 0,
            live: 0,
            tasks,
            graph,
            regions,
            dirty: Dirty::default(),
            recovery: None,
            checkpoints: None,
        };
        if let Some(config) = s.spec.checkpoint.clone() {
            // Checkpoints in progress when the JobMaster stopped are not restored: aborted.
            let (checkpoints, discard) =
                JobCheckpoints::resume(config, r.checkpoints, r.next_checkpoint);
            job.checkpoints = Some(checkpoints);
            if !discard.is_empty() {
                self.out.push(Command::DiscardCheckpoints {
                    job: id,
                    ids: discard,
                });
            }
        }
        for (i, task) in job.tasks.iter().enumerate() {
            let state = task.log.state();
            if state == AttemptState::Finished {
                job.finished += 1;
            }
            if !state.is_terminal() {
                job.live += 1;
            }
            if state == AttemptState::Created && !ended {
                let t = TaskId(i as u32);
                job.pending[job.regions.region_of(t).index()].insert(t);
            }
        }
        let mut unconfirmed = BTreeSet::new();
        if !ended {
            for (p, host) in s.partitions {
                if p.0 as usize >= job.hosts.len() {
                    return Err(bad(format!("a record for partition {}", p.0)));
                }
                if matches!(host, PartitionHost::Executor(_)) {
                    unconfirmed.insert(p);
                }
                job.set_host(p, host);
            }
        }
        if !ended {
            // A JobMaster that stopped while reconciling resumes what the job was before.
            let before = job
                .state
                .transitions()
                .iter()
                .rev()
                .map(|&(s, _)| s)
                .find(|&s| s != JobState::Reconciling)
                .unwrap_or(JobState::Running);
            let resume = match before {
                JobState::Failing | JobState::Cancelling => None,
                JobState::Restarting => Some(JobState::Restarting),
                _ => Some(JobState::Running),
            };
            if resume.is_some() && state != JobState::Reconciling {
                job.set_state(JobState::Reconciling, now, None, &mut self.out);
            }
            job.recovery = Some(Recovery {
                resume,
                unconfirmed,
                failed: Vec::new(),
                lost: Vec::new(),
            });
        }
        // Restored as stored: nothing to write back yet.
        job.dirty = Dirty::default();
        Ok(job)
    }
}

/// Regions of `job` with tasks waiting to be placed.
pub(super) fn waiting_regions(job: &Job) -> Vec<RegionId> {
    job.regions
        .ids()
        .filter(|r| !job.pending[r.index()].is_empty())
        .collect()
}
