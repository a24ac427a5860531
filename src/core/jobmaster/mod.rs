//! The JobMaster core: `handle(event, now) -> commands` (DESIGN §3, "The shape of the core").
//!
//! It owns every job's runtime state (attempts, partitions, pending restarts, exception history,
//! counters) and the executors' slots. It schedules regions when their blocking/persistent
//! inputs are available, turns failures into restart sets, cancels only what must stop, waits
//! for the cancels and the backoff, and redeploys. Deterministic: no clock (time is `now`), no
//! I/O, randomness only from the configured seed, and every map it iterates is ordered.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use super::attempt::{AttemptId, AttemptLog, AttemptState};
use super::event::{Command, Event, Failure, FailureClass, Notice, TimerId};
use super::graph::{ExecutionGraph, GroupId, PartitionId, TaskId};
use super::history::{DEFAULT_HISTORY_SIZE, ExceptionEntry, ExceptionHistory, FailureRecord};
use super::job_state::{JobState, JobStateLog};
use super::region::{RegionId, Regions};
use super::restart::{BackoffDecision, RestartBackoff};
use super::restart_set::{RestartSet, compute_restart_set_live};
use super::spec::{Exchange, FailoverStrategy, JobSpec};

/// Heartbeats in a row that may leave out an attempt its executor never listed before it
/// counts as missing (see [`JobMaster::heartbeat`]).
pub const UNSEEN_HEARTBEATS: u8 = 2;
use super::{ExecutorId, JobId, Millis};

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
}

/// A refused event, with any commands that must still be carried out.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub error: CoreError,
    pub commands: Vec<Command>,
}

/// Counters for metrics, per job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionHost {
    Unavailable,
    Executor(ExecutorId),
    Persistent,
}

struct Task {
    attempt: u32,
    log: AttemptLog,
    executor: Option<ExecutorId>,
    /// Bumped by every restart decision that includes the task.
    version: u64,
    /// The executor of the task's last failure, avoided by its redeploy when possible.
    avoid: Option<ExecutorId>,
    /// A pending restart will replace the current attempt (even a FINISHED one).
    awaiting_restart: bool,
    /// The current attempt was listed in a heartbeat of its executor.
    seen: bool,
    /// Heartbeats of its executor that did not list the current attempt while it was
    /// initializing, running or canceling, before it was ever listed.
    unseen: u8,
    /// Earlier attempts: (attempt, its log, executor).
    previous: VecDeque<(u32, AttemptLog, Option<ExecutorId>)>,
}

struct PendingRestart {
    ready_at: Millis,
    tasks: Vec<(TaskId, u64)>,
}

/// Region readiness: how many of its external input groups are not complete.
struct Readiness {
    /// Per group (reconsumable edges only): unavailable partitions. Used for "pure" groups,
    /// whose producers share a region with none of their consumers.
    group_missing: Vec<u32>,
    /// Per group: is it mixed (some producer inside some consumer's region)?
    group_mixed: Vec<bool>,
    /// Distinct consumer regions of each reconsumable group (CSR).
    group_regions_off: Vec<u32>,
    group_regions: Vec<RegionId>,
    /// For mixed groups: unavailable partitions produced outside the consumer region.
    mixed_missing: HashMap<(GroupId, RegionId), u32>,
    /// Per region: external groups (or mixed pairs) still missing a partition.
    waiting: Vec<u32>,
}

struct Job {
    id: JobId,
    graph: ExecutionGraph,
    regions: Regions,
    failover: FailoverStrategy,
    state: JobStateLog,
    cause: Option<String>,
    tasks: Vec<Task>,
    hosts: Vec<PartitionHost>,
    readiness: Readiness,
    /// Per region: tasks waiting to be scheduled (CREATED, current attempt).
    pending: Vec<BTreeSet<TaskId>>,
    /// Per region: ticket while queued for slots.
    queued: Vec<Option<(u64, TimerId)>>,
    backoff: RestartBackoff,
    restarts: BTreeMap<u64, PendingRestart>,
    next_restart: u64,
    history: ExceptionHistory,
    counters: Counters,
    /// Per region: when a failover stopped it, until it runs again.
    down_since: Vec<Option<Millis>>,
    /// Tasks whose current attempt finished.
    finished: usize,
    /// Tasks whose current attempt is not terminal.
    live: usize,
}

struct Executor {
    slots: u32,
    used: u32,
    attempts: BTreeSet<AttemptId>,
    partitions: BTreeSet<(JobId, PartitionId)>,
}

enum Timer {
    RestartDue {
        job: JobId,
    },
    CancelTimeout {
        attempt: AttemptId,
        executor: ExecutorId,
    },
    SlotTimeout {
        job: JobId,
        region: RegionId,
        ticket: u64,
    },
}

/// The JobMaster core. Feed it events with [`JobMaster::handle`].
pub struct JobMaster {
    config: CoreConfig,
    jobs: BTreeMap<JobId, Job>,
    executors: BTreeMap<ExecutorId, Executor>,
    timers: HashMap<TimerId, Timer>,
    next_timer: u64,
    slot_queue: VecDeque<(JobId, RegionId, u64)>,
    next_ticket: u64,
    /// Executors with a free slot, most free slots first, then by id: placement's index.
    by_free: BTreeSet<(Reverse<u32>, ExecutorId)>,
    /// Free slots over all executors.
    free_slots: u64,
    out: Vec<Command>,
}

impl JobMaster {
    pub fn new(config: CoreConfig) -> JobMaster {
        JobMaster {
            config,
            jobs: BTreeMap::new(),
            executors: BTreeMap::new(),
            timers: HashMap::new(),
            next_timer: 0,
            slot_queue: VecDeque::new(),
            next_ticket: 0,
            by_free: BTreeSet::new(),
            free_slots: 0,
            out: Vec::new(),
        }
    }

    /// Handles one event at time `now` and returns what the shell must do.
    pub fn handle(&mut self, event: Event, now: Millis) -> Result<Vec<Command>, Rejected> {
        self.out.clear();
        let result = match event {
            Event::SubmitJob { job, spec } => self.submit(job, &spec, now),
            Event::CancelJob { job } => self.cancel_job(job, now),
            Event::ExecutorRegistered { executor, slots } => {
                self.register_executor(executor, slots, now)
            }
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
        };
        self.schedule(now);
        #[cfg(debug_assertions)]
        self.check_slot_index();
        let commands = std::mem::take(&mut self.out);
        match result {
            Ok(()) => Ok(commands),
            Err(error) => Err(Rejected { error, commands }),
        }
    }

    // ----- queries ------------------------------------------------------------------------

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    pub fn job_ids(&self) -> impl Iterator<Item = JobId> + '_ {
        self.jobs.keys().copied()
    }

    /// The job's name, or "" for an unknown job.
    pub fn job_name(&self, job: JobId) -> &str {
        self.jobs.get(&job).map_or("", |j| j.graph.name())
    }

    pub fn job_state(&self, job: JobId) -> Option<JobState> {
        self.jobs.get(&job).map(|j| j.state.state())
    }

    /// Why the job failed, when it did.
    pub fn job_cause(&self, job: JobId) -> Option<&str> {
        self.jobs.get(&job).and_then(|j| j.cause.as_deref())
    }

    pub fn job_transitions(&self, job: JobId) -> Option<&[(JobState, Millis)]> {
        self.jobs.get(&job).map(|j| j.state.transitions())
    }

    pub fn graph(&self, job: JobId) -> Option<&ExecutionGraph> {
        self.jobs.get(&job).map(|j| &j.graph)
    }

    pub fn regions(&self, job: JobId) -> Option<&Regions> {
        self.jobs.get(&job).map(|j| &j.regions)
    }

    pub fn failover_strategy(&self, job: JobId) -> Option<FailoverStrategy> {
        self.jobs.get(&job).map(|j| j.failover)
    }

    pub fn tasks(&self, job: JobId) -> Option<Vec<TaskView>> {
        let j = self.jobs.get(&job)?;
        Some(j.graph.tasks().map(|t| j.task_view(t)).collect())
    }

    /// A task's current attempt number and executor, without building a [`TaskView`] (for
    /// hot paths such as task descriptors).
    pub fn task_placement(&self, job: JobId, task: TaskId) -> Option<(u32, Option<&ExecutorId>)> {
        let t = self.jobs.get(&job)?.tasks.get(task.index())?;
        Some((t.attempt, t.executor.as_ref()))
    }

    pub fn task(&self, job: JobId, task: TaskId) -> Option<TaskView> {
        let j = self.jobs.get(&job)?;
        (task.index() < j.tasks.len()).then(|| j.task_view(task))
    }

    /// Previous attempts of a task, oldest first (at most `attempt_history_size`).
    pub fn previous_attempts(&self, job: JobId, task: TaskId) -> Option<Vec<PastAttempt>> {
        let t = self.jobs.get(&job)?.tasks.get(task.index())?;
        Some(
            t.previous
                .iter()
                .map(|(attempt, log, executor)| PastAttempt {
                    attempt: *attempt,
                    transitions: log.transitions().to_vec(),
                    executor: executor.clone(),
                })
                .collect(),
        )
    }

    pub fn exception_history(&self, job: JobId) -> Option<&ExceptionHistory> {
        self.jobs.get(&job).map(|j| &j.history)
    }

    pub fn counters(&self, job: JobId) -> Option<&Counters> {
        self.jobs.get(&job).map(|j| &j.counters)
    }

    /// Per region: total downtime up to `now`, including a window still open.
    pub fn region_downtime_ms(&self, job: JobId, now: Millis) -> Option<Vec<Millis>> {
        let j = self.jobs.get(&job)?;
        Some(
            j.counters
                .region_downtime_ms
                .iter()
                .zip(&j.down_since)
                .map(|(&total, since)| total + since.map_or(0, |s| now.saturating_sub(s)))
                .collect(),
        )
    }

    /// Time the job spent RESTARTING up to `now`.
    pub fn restarting_ms(&self, job: JobId, now: Millis) -> Option<Millis> {
        self.jobs
            .get(&job)
            .map(|j| j.state.time_in(JobState::Restarting, now))
    }

    /// Is partition `p` of `job` available for consumers?
    pub fn partition_available(&self, job: JobId, p: PartitionId) -> Option<bool> {
        let j = self.jobs.get(&job)?;
        j.hosts
            .get(p.0 as usize)
            .map(|h| *h != PartitionHost::Unavailable)
    }

    /// Where partition `p` of `job` lives now.
    pub fn partition_host(&self, job: JobId, p: PartitionId) -> Option<&PartitionHost> {
        self.jobs.get(&job)?.hosts.get(p.0 as usize)
    }

    /// Dry run: the restart set if `task` failed now, from the job's live state.
    pub fn explain_task_failure(&self, job: JobId, task: TaskId) -> Option<RestartSet> {
        let j = self.jobs.get(&job)?;
        if task.index() >= j.tasks.len() {
            return None;
        }
        Some(j.restart_set(&[task], &[], None))
    }

    /// Dry run: the restart set if `executor` were lost now: its non-terminal attempts fail and
    /// its blocking partitions that unfinished consumers need are lost.
    pub fn explain_executor_loss(&self, job: JobId, executor: &ExecutorId) -> Option<RestartSet> {
        let j = self.jobs.get(&job)?;
        let e = self.executors.get(executor)?;
        let failed: Vec<TaskId> = e
            .attempts
            .iter()
            .filter(|a| a.job == job)
            .map(|a| a.task)
            .filter(|t| {
                let s = j.tasks[t.index()].log.state();
                !s.is_terminal() && s != AttemptState::Canceling
            })
            .collect();
        let lost: Vec<PartitionId> = e
            .partitions
            .iter()
            .filter(|(jid, p)| *jid == job && j.has_unfinished_consumer(*p))
            .map(|(_, p)| *p)
            .collect();
        Some(j.restart_set(&failed, &lost, Some(executor)))
    }

    /// Registered executors with (slots, free slots, hosted partitions).
    pub fn executors(&self) -> impl Iterator<Item = (&ExecutorId, u32, u32, usize)> + '_ {
        self.executors
            .iter()
            .map(|(id, e)| (id, e.slots, e.slots - e.used, e.partitions.len()))
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
            state: JobStateLog::new(now),
            cause: None,
            tasks: (0..n)
                .map(|_| Task {
                    attempt: 0,
                    log: AttemptLog::new(now),
                    executor: None,
                    version: 0,
                    avoid: None,
                    awaiting_restart: false,
                    seen: false,
                    unseen: 0,
                    previous: VecDeque::new(),
                })
                .collect(),
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
            finished: 0,
            live: n,
            graph,
            regions,
        };
        let _ = job.state.transition(JobState::Running, now);
        self.out.push(Command::Notify(Notice::JobState {
            job: id,
            state: JobState::Running,
            cause: None,
        }));
        let ready: Vec<RegionId> = job
            .regions
            .ids()
            .filter(|r| job.readiness.waiting[r.index()] == 0)
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

    /// Moves the job to FAILING or CANCELLING and stops every task.
    fn wind_down(&mut self, id: JobId, to: JobState, cause: Option<String>, now: Millis) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.state.transition(to, now).is_err() {
            return;
        }
        job.cause = cause.clone();
        job.restarts.clear();
        for r in 0..job.queued.len() {
            if let Some((_, timer)) = job.queued[r].take() {
                self.timers.remove(&timer);
                self.out.push(Command::CancelTimer { timer });
            }
            job.pending[r].clear();
        }
        self.slot_queue.retain(|(j, _, _)| *j != id);
        self.out.push(Command::Notify(Notice::JobState {
            job: id,
            state: to,
            cause,
        }));
        let tasks: Vec<TaskId> = self.jobs[&id].graph.tasks().collect();
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
        let _ = job.state.transition(next, now);
        let cause = job.cause.clone();
        self.out.push(Command::Notify(Notice::JobState {
            job: id,
            state: next,
            cause,
        }));
        self.release_all_partitions(id);
    }

    fn release_all_partitions(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let mut by_host: BTreeMap<Option<ExecutorId>, Vec<PartitionId>> = BTreeMap::new();
        for (i, host) in job.hosts.iter_mut().enumerate() {
            match std::mem::replace(host, PartitionHost::Unavailable) {
                PartitionHost::Unavailable => {}
                PartitionHost::Executor(e) => by_host
                    .entry(Some(e))
                    .or_default()
                    .push(PartitionId(i as u32)),
                PartitionHost::Persistent => {
                    by_host.entry(None).or_default().push(PartitionId(i as u32))
                }
            }
        }
        self.release(id, by_host);
    }

    /// Forgets where released partitions were hosted and tells the shell to delete them.
    fn release(&mut self, id: JobId, by_host: BTreeMap<Option<ExecutorId>, Vec<PartitionId>>) {
        for (executor, partitions) in by_host {
            if let Some(e) = executor.as_ref().and_then(|e| self.executors.get_mut(e)) {
                for p in &partitions {
                    e.partitions.remove(&(id, *p));
                }
            }
            let attempts = match self.jobs.get(&id) {
                Some(job) => partitions
                    .iter()
                    .map(|&p| job.tasks[job.graph.producer_of(p).index()].attempt)
                    .collect(),
                None => Vec::new(),
            };
            self.out.push(Command::ReleasePartitions {
                job: id,
                executor,
                partitions,
                attempts,
            });
        }
    }

    // ----- executors ----------------------------------------------------------------------

    fn register_executor(
        &mut self,
        id: ExecutorId,
        slots: u32,
        now: Millis,
    ) -> Result<(), CoreError> {
        if slots == 0 {
            return Err(CoreError::NoSlots);
        }
        if self.executors.contains_key(&id) {
            self.lose_executor(&id, "executor registered again with a new session", now);
        }
        self.by_free.insert((Reverse(slots), id.clone()));
        self.free_slots += u64::from(slots);
        self.executors.insert(
            id.clone(),
            Executor {
                slots,
                used: 0,
                attempts: BTreeSet::new(),
                partitions: BTreeSet::new(),
            },
        );
        self.out.push(Command::Notify(Notice::ExecutorRegistered {
            executor: id,
            slots,
        }));
        Ok(())
    }

    /// One executor loss is one failover per job over all its tasks and partitions.
    fn lose_executor(&mut self, id: &ExecutorId, reason: &str, now: Millis) {
        let Some(executor) = self.executors.remove(id) else {
            return;
        };
        let free = executor.slots - executor.used;
        self.by_free.remove(&(Reverse(free), id.clone()));
        self.free_slots -= u64::from(free);
        self.out.push(Command::Notify(Notice::ExecutorLost {
            executor: id.clone(),
            reason: reason.to_owned(),
        }));
        let mut per_job: BTreeMap<JobId, (Vec<TaskId>, Vec<PartitionId>)> = BTreeMap::new();
        for a in &executor.attempts {
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
    fn heartbeat(
        &mut self,
        id: &ExecutorId,
        reported: &[AttemptId],
        now: Millis,
    ) -> Result<(), CoreError> {
        let Some(executor) = self.executors.get(id) else {
            return Err(CoreError::UnknownExecutor(id.clone()));
        };
        let reported: HashSet<AttemptId> = reported.iter().copied().collect();
        // Unknown to us (or not current, or expected elsewhere): cancel it.
        let mut cancel = Vec::new();
        for a in &reported {
            let expected = executor.attempts.contains(a)
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
        for a in &executor.attempts {
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

    // ----- task reports -------------------------------------------------------------------

    fn task_state_changed(
        &mut self,
        executor: &ExecutorId,
        a: AttemptId,
        reported: AttemptState,
        failure: Option<Failure>,
        now: Millis,
    ) -> Result<(), CoreError> {
        let job = self.jobs.get(&a.job).ok_or(CoreError::UnknownJob(a.job))?;
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
                let job = self.jobs.get_mut(&a.job).expect("checked above");
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
                _ => self.fail_attempt(
                    a.job,
                    a.task,
                    failure.unwrap_or_else(|| Failure::recoverable("task failed")),
                    now,
                ),
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

    fn finish_task(&mut self, id: JobId, t: TaskId, executor: &ExecutorId, now: Millis) {
        self.free_slot(id, t);
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
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
            let _ = job.state.transition(JobState::Finished, now);
            self.out.push(Command::Notify(Notice::JobState {
                job: id,
                state: JobState::Finished,
                cause: None,
            }));
            self.release_all_partitions(id);
        }
    }

    fn partition_lost(&mut self, id: JobId, p: PartitionId, now: Millis) -> Result<(), CoreError> {
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

    fn inject_failure(
        &mut self,
        id: JobId,
        t: TaskId,
        failure: Failure,
        now: Millis,
    ) -> Result<(), CoreError> {
        let job = self.jobs.get(&id).ok_or(CoreError::UnknownJob(id))?;
        let task = job
            .tasks
            .get(t.index())
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
            self.jobs.get_mut(&id).expect("exists").tasks[t.index()].avoid =
                self.jobs[&id].tasks[t.index()].executor.clone();
            self.stop_task(id, t, now);
        }
        self.fail_attempt(id, t, failure, now);
        Ok(())
    }

    /// The current attempt of `t` failed: mark it and fail over.
    fn fail_attempt(&mut self, id: JobId, t: TaskId, failure: Failure, now: Millis) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let executor = job.tasks[t.index()].executor.clone();
        if let Some(e) = &executor {
            self.jobs.get_mut(&id).expect("exists").tasks[t.index()].avoid = Some(e.clone());
        }
        // A consumer missing an input: the partition is gone, so the failed consumer's restart
        // set pulls its producer in (rule 2).
        if failure.class == FailureClass::PartitionLost
            && let Some(p) = failure.partition
        {
            let job = self.jobs.get_mut(&id).expect("exists");
            if (p.0 as usize) < job.hosts.len() {
                if let PartitionHost::Executor(e) = &job.hosts[p.0 as usize]
                    && let Some(ex) = self.executors.get_mut(e)
                {
                    ex.partitions.remove(&(id, p));
                }
                job.set_host(p, PartitionHost::Unavailable);
            }
        }
        self.failover(id, vec![(t, executor, failure)], Vec::new(), now);
    }

    // ----- failover -----------------------------------------------------------------------

    /// Marks `failures` failed and decides: fail the job, or restart a set of tasks.
    fn failover(
        &mut self,
        id: JobId,
        failures: Vec<(TaskId, Option<ExecutorId>, Failure)>,
        lost_outputs: Vec<PartitionId>,
        now: Millis,
    ) {
        if failures.is_empty() && lost_outputs.is_empty() {
            return;
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let records: Vec<FailureRecord> = failures
            .iter()
            .map(|(t, e, f)| FailureRecord {
                time: now,
                attempt: Some(AttemptId {
                    job: id,
                    task: *t,
                    attempt: job.tasks[t.index()].attempt,
                }),
                executor: e.clone(),
                class: f.class,
                message: f.message.clone(),
            })
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
            self.free_slot(id, t);
        }
        let job = self.jobs.get_mut(&id).expect("exists");
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
        let set = job.restart_set(&failed, &lost_outputs, None);
        // Tasks that never left CREATED need no cancel and no new attempt: they simply wait
        // for their (re-produced) inputs and a slot, as they already were.
        let tasks: Vec<TaskId> = set
            .tasks
            .into_iter()
            .filter(|t| job.tasks[t.index()].log.state() != AttemptState::Created)
            .collect();
        let mut regions: Vec<RegionId> = tasks.iter().map(|&t| job.regions.region_of(t)).collect();
        regions.dedup();
        regions.sort_unstable();
        regions.dedup();

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
        let outcome = format!("restart {} tasks in {delay} ms", tasks.len());
        match (merged, job.history.latest_mut()) {
            (true, Some(latest)) => {
                latest.concurrent.extend(records.iter().cloned());
                let mut all: BTreeSet<TaskId> = latest.restarted.iter().copied().collect();
                all.extend(tasks.iter().copied());
                latest.restarted = all.into_iter().collect();
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
        self.release(id, release);

        let job = self.jobs.get_mut(&id).expect("exists");
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
        if job.state.state() == JobState::Running {
            let _ = job.state.transition(JobState::Restarting, now);
            self.out.push(Command::Notify(Notice::JobState {
                job: id,
                state: JobState::Restarting,
                cause: Some(root.message.clone()),
            }));
        }
        self.out.push(Command::Notify(Notice::RestartScheduled {
            job: id,
            tasks: tasks.clone(),
            regions: regions.len(),
            delay_ms: delay,
            merged,
            cause: root.message.clone(),
        }));
        for &t in &tasks {
            self.stop_task(id, t, now);
        }
        self.set_timer(ready_at, Timer::RestartDue { job: id });
        self.check_restarts(id, now);
    }

    /// Stops a task's current attempt: cancel on its executor, or drop it if not deployed.
    fn stop_task(&mut self, id: JobId, t: TaskId, now: Millis) {
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
                self.free_slot(id, t);
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
                    self.set_timer(at, Timer::CancelTimeout { attempt, executor });
                }
            }
            AttemptState::Reconciling => {
                job.set_attempt_state(t, AttemptState::Failed, now, &mut self.out);
                self.free_slot(id, t);
            }
            _ => {}
        }
    }

    fn finish_cancel(&mut self, id: JobId, t: TaskId, now: Millis) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.set_attempt_state(t, AttemptState::Canceled, now, &mut self.out);
        self.free_slot(id, t);
        self.check_wound_down(id, now);
        self.check_restarts(id, now);
    }

    /// Fires every pending restart that is due and whose tasks have all stopped.
    fn check_restarts(&mut self, id: JobId, now: Millis) {
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
            let _ = job.state.transition(JobState::Running, now);
            self.out.push(Command::Notify(Notice::JobState {
                job: id,
                state: JobState::Running,
                cause: None,
            }));
        }
        for r in touched {
            self.enqueue(id, r, now);
        }
    }

    // ----- scheduling ---------------------------------------------------------------------

    /// Queues a region whose inputs are ready for slots (if it has tasks waiting).
    fn enqueue(&mut self, id: JobId, r: RegionId, now: Millis) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.pending[r.index()].is_empty()
            || job.queued[r.index()].is_some()
            || !job.state.state().is_active()
            || !job.pending_ready(r)
        {
            return;
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.slot_queue.push_back((id, r, ticket));
        let at = now + self.config.slot_request_timeout_ms;
        let timer = self.set_timer(
            at,
            Timer::SlotTimeout {
                job: id,
                region: r,
                ticket,
            },
        );
        let job = self.jobs.get_mut(&id).expect("exists");
        job.queued[r.index()] = Some((ticket, timer));
    }

    /// Places queued regions whose tasks all fit in the free slots, first come first served
    /// (a region that does not fit yet lets smaller ones behind it pass).
    fn schedule(&mut self, now: Millis) {
        if self.slot_queue.is_empty() {
            return;
        }
        let mut free = self.free_slots;
        let mut keep = VecDeque::new();
        while let Some((id, r, ticket)) = self.slot_queue.pop_front() {
            let Some(job) = self.jobs.get(&id) else {
                continue;
            };
            let Some((queued, timer)) = job.queued[r.index()] else {
                continue;
            };
            if queued != ticket {
                continue;
            }
            let need = job.pending[r.index()].len() as u64;
            // Empty, or its inputs were lost again while it waited: it is queued anew when ready.
            if need == 0 || !job.pending_ready(r) {
                self.jobs.get_mut(&id).expect("exists").queued[r.index()] = None;
                self.cancel_timer(timer);
                continue;
            }
            if need > free {
                keep.push_back((id, r, ticket));
                continue;
            }
            free -= need;
            self.cancel_timer(timer);
            let job = self.jobs.get_mut(&id).expect("exists");
            job.queued[r.index()] = None;
            let tasks: Vec<TaskId> = std::mem::take(&mut job.pending[r.index()])
                .into_iter()
                .collect();
            for t in tasks {
                self.deploy(id, t, now);
            }
        }
        self.slot_queue = keep;
    }

    /// Puts a task on the executor with the most free slots, avoiding the one it last failed
    /// on when another has room; ties go to the smallest executor id.
    fn deploy(&mut self, id: JobId, t: TaskId, now: Millis) {
        let job = self.jobs.get_mut(&id).expect("exists");
        let avoid = job.tasks[t.index()].avoid.as_ref();
        let mut best = self.by_free.iter().map(|(_, e)| e);
        let executor = match best.next() {
            Some(first) if Some(first) == avoid => best.next().unwrap_or(first),
            Some(first) => first,
            None => return, // cannot happen: `schedule` counted the free slots
        }
        .clone();
        let task = &mut job.tasks[t.index()];
        let attempt = AttemptId {
            job: id,
            task: t,
            attempt: task.attempt,
        };
        task.executor = Some(executor.clone());
        let ex = self.executors.get_mut(&executor).expect("picked");
        let free = ex.slots - ex.used;
        ex.used += 1;
        ex.attempts.insert(attempt);
        self.by_free.remove(&(Reverse(free), executor.clone()));
        if free > 1 {
            self.by_free.insert((Reverse(free - 1), executor.clone()));
        }
        self.free_slots -= 1;
        job.set_attempt_state(t, AttemptState::Scheduled, now, &mut self.out);
        job.set_attempt_state(t, AttemptState::Deploying, now, &mut self.out);
        self.out.push(Command::Deploy { attempt, executor });
    }

    fn free_slot(&mut self, id: JobId, t: TaskId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let task = &mut job.tasks[t.index()];
        let attempt = AttemptId {
            job: id,
            task: t,
            attempt: task.attempt,
        };
        if let Some(e) = &task.executor
            && let Some(ex) = self.executors.get_mut(e)
            && ex.attempts.remove(&attempt)
        {
            let free = ex.slots - ex.used;
            ex.used -= 1;
            if free > 0 {
                self.by_free.remove(&(Reverse(free), e.clone()));
            }
            self.by_free.insert((Reverse(free + 1), e.clone()));
            self.free_slots += 1;
        }
    }

    /// Debug builds: the placement index agrees with the executors' slot counts.
    #[cfg(debug_assertions)]
    fn check_slot_index(&self) {
        let expected: BTreeSet<(Reverse<u32>, ExecutorId)> = self
            .executors
            .iter()
            .filter(|(_, e)| e.used < e.slots)
            .map(|(id, e)| (Reverse(e.slots - e.used), id.clone()))
            .collect();
        debug_assert_eq!(self.by_free, expected, "placement index");
        let free: u64 = self
            .executors
            .values()
            .map(|e| u64::from(e.slots - e.used))
            .sum();
        debug_assert_eq!(self.free_slots, free, "free slot count");
    }

    // ----- timers -------------------------------------------------------------------------

    fn set_timer(&mut self, at: Millis, timer: Timer) -> TimerId {
        let id = TimerId(self.next_timer);
        self.next_timer += 1;
        self.timers.insert(id, timer);
        self.out.push(Command::SetTimer { timer: id, at });
        id
    }

    /// Forgets a timer that is no longer needed and tells the shell.
    fn cancel_timer(&mut self, timer: TimerId) {
        if self.timers.remove(&timer).is_some() {
            self.out.push(Command::CancelTimer { timer });
        }
    }

    fn timer_fired(&mut self, id: TimerId, now: Millis) {
        let Some(timer) = self.timers.remove(&id) else {
            return;
        };
        match timer {
            Timer::RestartDue { job } => self.check_restarts(job, now),
            Timer::CancelTimeout { attempt, executor } => {
                let still_canceling = self.jobs.get(&attempt.job).is_some_and(|j| {
                    let t = &j.tasks[attempt.task.index()];
                    t.attempt == attempt.attempt && t.log.state() == AttemptState::Canceling
                });
                if still_canceling && self.executors.contains_key(&executor) {
                    let name = self.jobs[&attempt.job]
                        .graph
                        .task_name(attempt.task)
                        .to_string();
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
                let free = self.free_slots;
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

fn old_was_finished(previous: &VecDeque<(u32, AttemptLog, Option<ExecutorId>)>) -> bool {
    previous
        .back()
        .is_some_and(|(_, log, _)| log.state() == AttemptState::Finished)
}

impl Job {
    /// The restart set for `failed` and `lost` under the job's strategy, with live
    /// availability; partitions on `gone` count as unavailable.
    fn restart_set(
        &self,
        failed: &[TaskId],
        lost: &[PartitionId],
        gone: Option<&ExecutorId>,
    ) -> RestartSet {
        compute_restart_set_live(
            &self.graph,
            &self.regions,
            self.failover,
            failed,
            lost,
            |p| match &self.hosts[p.0 as usize] {
                PartitionHost::Unavailable => false,
                PartitionHost::Executor(e) => Some(e) != gone,
                PartitionHost::Persistent => true,
            },
            |t| self.tasks[t.index()].log.state() != AttemptState::Created,
        )
    }

    fn task_view(&self, t: TaskId) -> TaskView {
        let task = &self.tasks[t.index()];
        TaskView {
            task: t,
            name: self.graph.task_name(t).to_string(),
            attempt: task.attempt,
            state: task.log.state(),
            executor: task.executor.clone(),
            region: self.regions.region_of(t),
            transitions: task.log.transitions().to_vec(),
        }
    }

    /// Applies a transition the core itself decided; they are legal by construction, and an
    /// illegal one is dropped rather than corrupting the state.
    fn set_attempt_state(
        &mut self,
        t: TaskId,
        state: AttemptState,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let task = &mut self.tasks[t.index()];
        let was_terminal = task.log.state().is_terminal();
        if task.log.transition(state, now).is_ok() {
            if !was_terminal && state.is_terminal() {
                self.live -= 1;
            }
            out.push(Command::Notify(Notice::TaskState {
                attempt: AttemptId {
                    job: self.id,
                    task: t,
                    attempt: task.attempt,
                },
                state,
                executor: task.executor.clone(),
            }));
        }
    }

    /// Can the waiting tasks of region `r` start? When the whole region waits, its external
    /// inputs must all be available (the counters say so in O(1)). When only some of its tasks
    /// wait (the `individual` strategy restarts single tasks), only *their* external inputs
    /// count: a finished region-mate's lost input must not hold them back.
    fn pending_ready(&self, r: RegionId) -> bool {
        if self.readiness.waiting[r.index()] == 0 {
            return true;
        }
        let pending = &self.pending[r.index()];
        if pending.len() == self.regions.tasks(r).len() {
            return false;
        }
        pending.iter().all(|&t| {
            self.graph.consumed_groups(t).all(|g| {
                let group = self.graph.group(g);
                !group.exchange.is_reconsumable()
                    || group.partitions_with_producers().all(|(p, producer)| {
                        self.regions.region_of(producer) == r
                            || self.hosts[p.0 as usize] != PartitionHost::Unavailable
                    })
            })
        })
    }

    /// Does any consumer of `p` still need it (not finished, or about to run again)?
    fn has_unfinished_consumer(&self, p: PartitionId) -> bool {
        let producer = self.graph.producer_of(p);
        let edge = self.graph.edge_of_partition(p);
        self.graph
            .produced_groups(producer)
            .map(|g| self.graph.group(g))
            .filter(|g| g.edge == edge)
            .any(|g| {
                g.consumer_tasks().any(|c| {
                    let t = &self.tasks[c.index()];
                    t.awaiting_restart || t.log.state() != AttemptState::Finished
                })
            })
    }

    /// Records where partition `p` lives and returns regions whose inputs just became ready.
    fn set_host(&mut self, p: PartitionId, host: PartitionHost) -> Vec<RegionId> {
        let was = self.hosts[p.0 as usize] != PartitionHost::Unavailable;
        let now_available = host != PartitionHost::Unavailable;
        self.hosts[p.0 as usize] = host;
        if was == now_available || !self.graph.exchange_of(p).is_reconsumable() {
            return Vec::new();
        }
        self.readiness
            .partition_changed(&self.graph, &self.regions, p, now_available)
    }

    /// A region's tasks all run (or finished) again: close its downtime window.
    fn note_region_up(&mut self, r: RegionId, now: Millis) {
        let Some(since) = self.down_since[r.index()] else {
            return;
        };
        let up = self.regions.tasks(r).iter().all(|t| {
            matches!(
                self.tasks[t.index()].log.state(),
                AttemptState::Running | AttemptState::Finished
            )
        });
        if up {
            self.counters.region_downtime_ms[r.index()] += now.saturating_sub(since);
            self.down_since[r.index()] = None;
        }
    }
}

impl Readiness {
    fn new(graph: &ExecutionGraph, regions: &Regions) -> Readiness {
        let groups = graph.group_count();
        let mut group_missing = vec![0u32; groups];
        let mut group_mixed = vec![false; groups];
        let mut group_regions_off = vec![0u32; groups + 1];
        let mut group_regions = Vec::new();
        let mut mixed_missing = HashMap::new();
        let mut waiting = vec![0u32; regions.len()];
        // Stamp per region, to deduplicate consumer regions of one group.
        let mut stamp = vec![u32::MAX; regions.len()];
        for edge in graph.edges() {
            for g in edge.groups() {
                let gi = g.0 as usize;
                if edge.exchange.is_reconsumable() {
                    let group = graph.group(g);
                    let start = group_regions.len();
                    for c in group.consumer_tasks() {
                        let r = regions.region_of(c);
                        if stamp[r.index()] != g.0 {
                            stamp[r.index()] = g.0;
                            group_regions.push(r);
                        }
                    }
                    let mixed = group
                        .producer_tasks()
                        .any(|p| stamp[regions.region_of(p).index()] == g.0);
                    group_mixed[gi] = mixed;
                    group_missing[gi] = group.producers.len() as u32;
                    for &r in &group_regions[start..] {
                        if mixed {
                            let outside = group
                                .producer_tasks()
                                .filter(|&p| regions.region_of(p) != r)
                                .count() as u32;
                            if outside > 0 {
                                mixed_missing.insert((g, r), outside);
                                waiting[r.index()] += 1;
                            }
                        } else {
                            waiting[r.index()] += 1;
                        }
                    }
                }
                group_regions_off[gi + 1] = group_regions.len() as u32;
            }
        }
        Readiness {
            group_missing,
            group_mixed,
            group_regions_off,
            group_regions,
            mixed_missing,
            waiting,
        }
    }

    fn consumer_regions(&self, g: GroupId) -> &[RegionId] {
        let gi = g.0 as usize;
        &self.group_regions
            [self.group_regions_off[gi] as usize..self.group_regions_off[gi + 1] as usize]
    }

    /// Partition `p` became available (or unavailable); returns regions now ready.
    fn partition_changed(
        &mut self,
        graph: &ExecutionGraph,
        regions: &Regions,
        p: PartitionId,
        available: bool,
    ) -> Vec<RegionId> {
        let producer = graph.producer_of(p);
        let edge = graph.edge_of_partition(p);
        let Some(g) = graph
            .produced_groups(producer)
            .find(|&g| graph.group(g).edge == edge)
        else {
            return Vec::new();
        };
        let gi = g.0 as usize;
        let mut ready = Vec::new();
        if !self.group_mixed[gi] {
            let before = self.group_missing[gi];
            if available {
                self.group_missing[gi] -= 1;
            } else {
                self.group_missing[gi] += 1;
            }
            let after = self.group_missing[gi];
            if (before == 0) != (after == 0) {
                let rs: Vec<RegionId> = self.consumer_regions(g).to_vec();
                for r in rs {
                    if after == 0 {
                        self.waiting[r.index()] -= 1;
                        if self.waiting[r.index()] == 0 {
                            ready.push(r);
                        }
                    } else {
                        self.waiting[r.index()] += 1;
                    }
                }
            }
        } else {
            let pr = regions.region_of(producer);
            let rs: Vec<RegionId> = self.consumer_regions(g).to_vec();
            for r in rs {
                if r == pr {
                    continue;
                }
                let Some(m) = self.mixed_missing.get_mut(&(g, r)) else {
                    continue;
                };
                let before = *m;
                if available {
                    *m -= 1;
                } else {
                    *m += 1;
                }
                if (before == 0) != (*m == 0) {
                    if *m == 0 {
                        self.waiting[r.index()] -= 1;
                        if self.waiting[r.index()] == 0 {
                            ready.push(r);
                        }
                    } else {
                        self.waiting[r.index()] += 1;
                    }
                }
            }
        }
        ready
    }
}
