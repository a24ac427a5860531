//! The JobMaster core: `handle(event, now) -> commands` (DESIGN §3, "The shape of the core").
//!
//! It owns every job's runtime state (attempts, partitions, pending restarts, exception history,
//! counters) and the executors' slots. It schedules regions when their blocking/persistent
//! inputs are available, turns failures into restart sets, cancels only what must stop, waits
//! for the cancels and the backoff, and redeploys. Deterministic: no clock (time is `now`), no
//! I/O, randomness only from the configured seed, and every map it iterates is ordered.
//!
//! This module owns the [`JobMaster`] itself, its public types, event dispatch and a job's
//! lifecycle (submit, cancel, wind-down). The rest is split by concept: `job` (one job's
//! runtime state and bookkeeping), `query` (read-only accessors and dry runs), `reconcile`
//! (executors registering, lost, heartbeats), `reports` (task and partition reports),
//! `failover` (failures to restart sets to restarts), `timers`, `checkpoints` (each job's
//! checkpoint coordinator); beside this folder,
//! `core::placement` (slots and scheduling), `core::readiness` (region input readiness),
//! `core::quarantine` (flapping executors) and `core::restart_budget` (per-region budgets).

mod checkpoints;
mod durable;
mod failover;
mod job;
mod query;
mod reconcile;
mod recovery;
mod reports;
mod timers;

pub use durable::{Changes, JobRecord, RestoreError, StoredJob, TaskRecord};

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::attempt::AttemptState;
use super::checkpoint::AbortReason;
use super::event::{Command, Event};
use super::graph::{ExecutionGraph, PartitionId, TaskId};
use super::history::{DEFAULT_HISTORY_SIZE, ExceptionHistory};
use super::job_state::{JobState, JobStateLog};
use super::placement::{PlacementPolicy, Slots};
use super::quarantine::{QuarantineConfig, Quarantines};
use super::readiness::Readiness;
use super::region::{RegionId, Regions};
use super::restart::RestartBackoff;
use super::restart_budget::{RegionRestarts, RestartBudgetConfig};
use super::spec::JobSpec;
use super::{ExecutorId, JobId, Millis};

use checkpoints::JobCheckpoints;
pub(crate) use job::Job;
use job::Task;
pub(crate) use timers::Timer;
use timers::Timers;

/// Heartbeats in a row that may leave out an attempt its executor never listed before it
/// counts as missing (see [`JobMaster::heartbeat`]).
pub const UNSEEN_HEARTBEATS: u8 = 2;

/// Settings of the core; the shell reads them from its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// A region that waits longer than this for free slots fails (recoverable).
    pub slot_request_timeout_ms: Millis,
    /// A cancel not confirmed within this time declares the executor lost.
    pub cancel_timeout_ms: Millis,
    /// Root failures kept per job.
    pub exception_history_size: usize,
    /// Previous attempts kept per task (their state transitions).
    pub attempt_history_size: usize,
    /// Seed for the restart strategies' jitter.
    pub seed: u64,
    /// How long after an attempt left DEPLOYING heartbeats that never listed it may keep
    /// leaving it out (they may have been taken before it arrived and be late under load).
    /// The daemon sets it to its heartbeat timeout.
    pub unseen_grace_ms: Millis,
    /// The placement policy of jobs whose spec names none.
    pub placement: PlacementPolicy,
    /// The label key of the failure domain a region is kept inside (e.g. `zone`), for jobs
    /// whose spec names none; `None` (or empty): no domain.
    pub placement_domain: Option<String>,
    /// When flapping executors are quarantined (`scheduler.quarantine.*`).
    pub quarantine: QuarantineConfig,
    /// How often one region may restart (`scheduler.region-restart-budget.*`).
    pub region_restart_budget: RestartBudgetConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            slot_request_timeout_ms: 300_000,
            cancel_timeout_ms: 30_000,
            exception_history_size: DEFAULT_HISTORY_SIZE,
            attempt_history_size: 16,
            seed: 0,
            unseen_grace_ms: 4_000,
            placement: PlacementPolicy::default(),
            placement_domain: None,
            quarantine: QuarantineConfig::default(),
            region_restart_budget: RestartBudgetConfig::default(),
        }
    }
}

/// Why an event was refused. Nothing changed, except that `Rejected::commands` may still need
/// carrying out (e.g. cancel a stale attempt).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("job {0} does not exist")]
    UnknownJob(JobId),
    #[error("job {0} already exists")]
    DuplicateJob(JobId),
    #[error("job {job} has no task {task}")]
    UnknownTask { job: JobId, task: u32 },
    #[error("executor {0} is not registered")]
    UnknownExecutor(ExecutorId),
    #[error("attempt {attempt} of task {task} is stale: the current attempt is {current}")]
    StaleAttempt {
        task: String,
        attempt: u32,
        current: u32,
    },
    #[error("attempt {attempt} of task {task} does not run on executor {executor}")]
    WrongExecutor {
        task: String,
        attempt: u32,
        executor: ExecutorId,
    },
    #[error("task {task} cannot report {reported} while {state}")]
    IllegalReport {
        task: String,
        state: AttemptState,
        reported: AttemptState,
    },
    #[error("job {job} is {state}: {action} is not possible")]
    JobNotActive {
        job: JobId,
        state: JobState,
        action: &'static str,
    },
    #[error("task {task} is {state}: only a deployed or waiting task can be failed")]
    TaskNotFailable { task: String, state: AttemptState },
    #[error("an executor must offer at least one slot")]
    NoSlots,
    #[error("job {job} is {state}: only an ended job can be dropped")]
    JobNotEnded { job: JobId, state: JobState },
    #[error("job {0} has no [checkpoint] table in its spec: checkpointing is off")]
    CheckpointsOff(JobId),
    #[error("job {job} cannot start a checkpoint now: {reason}")]
    CheckpointRefused {
        job: JobId,
        reason: crate::core::checkpoint::TriggerRefused,
    },
}

/// A refused event, with any commands that must still be carried out.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub error: CoreError,
    pub commands: Vec<Command>,
}

/// Counters for metrics, per job.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Failover decisions (every failure handled with a restart, merged ones included).
    pub failovers: u64,
    /// Restarts counted by the restart strategy (merged failures excluded).
    pub restarts: u64,
    /// Failovers whose restart set was every task.
    pub full_restarts: u64,
    /// Tasks restarted, summed over failovers.
    pub tasks_restarted: u64,
    /// Size of each failover's restart set, most recent last (bounded to 1,024 entries).
    pub recent_restart_sizes: VecDeque<u32>,
    /// Per region: how often it was in a restart set.
    pub region_restarts: Vec<u64>,
    /// Per region: total time from a failover decision stopping it to all its tasks running
    /// (or finished) again.
    pub region_downtime_ms: Vec<Millis>,
    /// Attempts a restarted JobMaster adopted from executors (not restarted).
    #[serde(default)]
    pub adopted: u64,
    /// Times a restarted JobMaster loaded the job from its store.
    #[serde(default)]
    pub recoveries: u64,
}

/// Read-only view of one task for callers (GetJob, the simulator's summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub task: TaskId,
    pub name: String,
    pub attempt: u32,
    pub state: AttemptState,
    pub executor: Option<ExecutorId>,
    pub region: RegionId,
    pub transitions: Vec<(AttemptState, Millis)>,
}

/// An earlier attempt of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastAttempt {
    pub attempt: u32,
    pub transitions: Vec<(AttemptState, Millis)>,
    pub executor: Option<ExecutorId>,
}

/// Where a finished producer's result partition lives.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PartitionHost {
    Unavailable,
    Executor(ExecutorId),
    Persistent,
}

/// A registered executor, as far as the jobs are concerned: the partitions it hosts. Its slots
/// and the attempts holding them are in [`Slots`].
pub(crate) struct Executor {
    pub(crate) partitions: BTreeSet<(JobId, PartitionId)>,
}

/// The JobMaster core. Feed it events with [`JobMaster::handle`].
pub struct JobMaster {
    pub(in crate::core) config: CoreConfig,
    pub(in crate::core) jobs: BTreeMap<JobId, Job>,
    pub(in crate::core) executors: BTreeMap<ExecutorId, Executor>,
    /// The executors' slots and the placement index over them.
    pub(in crate::core) slots: Slots,
    pub(in crate::core) timers: Timers,
    /// Strikes against executors and their quarantines.
    pub(in crate::core) quarantines: Quarantines,
    /// Regions waiting for slots, in arrival order, with their queue ticket.
    pub(in crate::core) slot_queue: VecDeque<(JobId, RegionId, u64)>,
    pub(in crate::core) next_ticket: u64,
    pub(in crate::core) out: Vec<Command>,
    /// Jobs dropped since the store last took the changes.
    pub(in crate::core) dropped: Vec<JobId>,
}

impl JobMaster {
    pub fn new(config: CoreConfig) -> JobMaster {
        JobMaster {
            config,
            jobs: BTreeMap::new(),
            executors: BTreeMap::new(),
            slots: Slots::new(),
            timers: Timers::new(),
            quarantines: Quarantines::new(),
            slot_queue: VecDeque::new(),
            next_ticket: 0,
            out: Vec::new(),
            dropped: Vec::new(),
        }
    }

    /// Handles one event at time `now` and returns what the shell must do.
    pub fn handle(&mut self, event: Event, now: Millis) -> Result<Vec<Command>, Rejected> {
        self.out.clear();
        let result = match event {
            Event::SubmitJob { job, spec } => self.submit(job, &spec, now),
            Event::CancelJob { job } => self.cancel_job(job, now),
            Event::DropJob { job } => self.drop_job(job),
            Event::ExecutorRegistered {
                executor,
                slots,
                labels,
                holds,
            } => self.register_executor(executor, slots, labels, holds, now),
            Event::ExecutorLost { executor, reason } => {
                if self.executors.contains_key(&executor) {
                    self.lose_executor(&executor, &reason, now);
                    Ok(())
                } else {
                    Err(CoreError::UnknownExecutor(executor))
                }
            }
            Event::Heartbeat { executor, attempts } => self.heartbeat(&executor, &attempts, now),
            Event::TaskStateChanged {
                executor,
                attempt,
                state,
                failure,
            } => self.task_state_changed(&executor, attempt, state, failure, now),
            Event::PartitionLost { job, partition } => self.partition_lost(job, partition, now),
            Event::InjectFailure { job, task, failure } => {
                self.inject_failure(job, task, failure, now)
            }
            Event::TimerFired { timer } => {
                self.timer_fired(timer, now);
                Ok(())
            }
            Event::CheckpointAcknowledged {
                attempt,
                checkpoint,
                size_bytes,
            } => self.checkpoint_acknowledged(attempt, checkpoint, size_bytes, now),
            Event::CheckpointDeclined {
                attempt,
                checkpoint,
                reason,
                task_gone,
            } => self.checkpoint_declined(attempt, checkpoint, reason, task_gone, now),
            Event::CheckpointPersisted { job, checkpoint } => {
                self.checkpoint_persisted(job, checkpoint, None, now)
            }
            Event::CheckpointPersistFailed {
                job,
                checkpoint,
                reason,
            } => self.checkpoint_persisted(job, checkpoint, Some(reason), now),
            Event::TriggerCheckpoint { job } => self.trigger_checkpoint_now(job, now),
            Event::ReleaseExecutor { executor } => {
                if self.executors.contains_key(&executor) || self.quarantines.knows(&executor) {
                    self.release_quarantine(&executor, "released by an operator");
                    Ok(())
                } else {
                    Err(CoreError::UnknownExecutor(executor))
                }
            }
        };
        // Before scheduling: a checkpoint failure may fail the job over, whose restart (with
        // no delay) is placed in this same turn.
        self.sync_checkpoints(now);
        self.schedule(now);
        #[cfg(debug_assertions)]
        self.check_slot_index();
        let commands = std::mem::take(&mut self.out);
        match result {
            Ok(()) => Ok(commands),
            Err(error) => Err(Rejected { error, commands }),
        }
    }

    // ----- jobs ---------------------------------------------------------------------------

    fn submit(&mut self, id: JobId, spec: &JobSpec, now: Millis) -> Result<(), CoreError> {
        if self.jobs.contains_key(&id) {
            return Err(CoreError::DuplicateJob(id));
        }
        let graph = ExecutionGraph::build(spec);
        let regions = Regions::compute(&graph);
        let readiness = Readiness::new(&graph, &regions);
        let n = graph.task_count();
        let region_count = regions.len();
        let mut job = Job {
            id,
            failover: spec.failover,
            placement: spec.placement.unwrap_or(self.config.placement),
            placement_domain: spec
                .placement_domain
                .as_ref()
                .or(self.config.placement_domain.as_ref())
                .filter(|key| !key.is_empty())
                .cloned(),
            state: JobStateLog::new(now),
            cause: None,
            tasks: (0..n).map(|_| Task::new(now)).collect(),
            hosts: vec![PartitionHost::Unavailable; graph.partition_count()],
            readiness,
            pending: regions
                .ids()
                .map(|r| regions.tasks(r).iter().copied().collect())
                .collect(),
            queued: vec![None; region_count],
            backoff: RestartBackoff::new(&spec.restart, self.config.seed ^ id.0),
            restarts: BTreeMap::new(),
            next_restart: 0,
            history: ExceptionHistory::new(self.config.exception_history_size),
            counters: Counters {
                region_restarts: vec![0; region_count],
                region_downtime_ms: vec![0; region_count],
                ..Counters::default()
            },
            down_since: vec![None; region_count],
            region_restarts: RegionRestarts::default(),
            finished: 0,
            live: n,
            graph,
            regions,
            dirty: durable::Dirty {
                job: true,
                ..durable::Dirty::default()
            },
            recovery: None,
            checkpoints: spec.checkpoint.clone().map(JobCheckpoints::new),
        };
        // Every task's first record is written with the job.
        job.dirty.tasks.extend(job.graph.tasks());
        job.set_state(JobState::Running, now, None, &mut self.out);
        let ready: Vec<RegionId> = job
            .regions
            .ids()
            .filter(|&r| job.readiness.is_ready(r))
            .collect();
        self.jobs.insert(id, job);
        for r in ready {
            self.enqueue(id, r, now);
        }
        Ok(())
    }

    fn cancel_job(&mut self, id: JobId, now: Millis) -> Result<(), CoreError> {
        let job = self.jobs.get(&id).ok_or(CoreError::UnknownJob(id))?;
        let state = job.state.state();
        // Cancelling again (a retried call, or a second operator) is not an error.
        if matches!(state, JobState::Cancelling | JobState::Canceled) {
            return Ok(());
        }
        if !job.state.state().is_active() {
            return Err(CoreError::JobNotActive {
                job: id,
                state,
                action: "cancel",
            });
        }
        self.wind_down(id, JobState::Cancelling, None, now);
        Ok(())
    }

    /// Forgets an ended job. Its attempts are terminal and its partitions released already;
    /// whatever still refers to it (a slot, a hosted partition, a queued region) goes too.
    fn drop_job(&mut self, id: JobId) -> Result<(), CoreError> {
        let job = self.jobs.get(&id).ok_or(CoreError::UnknownJob(id))?;
        let state = job.state.state();
        if !state.is_terminal() {
            return Err(CoreError::JobNotEnded { job: id, state });
        }
        for t in job.graph.tasks() {
            self.slots.free_slot(job, t);
        }
        for e in self.executors.values_mut() {
            e.partitions.retain(|(j, _)| *j != id);
        }
        self.slot_queue.retain(|(j, _, _)| *j != id);
        self.jobs.remove(&id);
        self.dropped.push(id);
        Ok(())
    }

    /// Moves the job to FAILING or CANCELLING and stops every task.
    fn wind_down(&mut self, id: JobId, to: JobState, cause: Option<String>, now: Millis) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !job.state.state().can_become(to) {
            return;
        }
        self.abort_checkpoints(id, AbortReason::JobStopped, now);
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.cause = cause.clone();
        job.restarts.clear();
        for r in 0..job.queued.len() {
            if let Some((_, timer)) = job.queued[r].take() {
                self.timers.remove(timer);
                self.out.push(Command::CancelTimer { timer });
            }
            job.pending[r].clear();
        }
        self.slot_queue.retain(|(j, _, _)| *j != id);
        job.set_state(to, now, cause, &mut self.out);
        let tasks: Vec<TaskId> = job.graph.tasks().collect();
        for t in tasks {
            self.stop_task(id, t, now);
        }
        self.check_wound_down(id, now);
    }

    /// When a FAILING/CANCELLING job has no live attempt left, it reaches FAILED/CANCELED.
    fn check_wound_down(&mut self, id: JobId, now: Millis) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let next = match job.state.state() {
            JobState::Failing => JobState::Failed,
            JobState::Cancelling => JobState::Canceled,
            _ => return,
        };
        if job.live > 0 {
            return;
        }
        let cause = job.cause.clone();
        job.set_state(next, now, cause, &mut self.out);
        job.release_all_partitions(&mut self.executors, &mut self.out);
    }
}
