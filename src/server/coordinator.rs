//! The coordinator: the one task that owns the JobMaster core.
//!
//! gRPC handlers validate their input and send a [`Request`] here; the coordinator turns it
//! into core events, and the core's commands into orders for executors, timers, and watch
//! events. Orders go to the executor's [`Dispatcher`] (one queue and one sending task per
//! executor, see `dispatcher.rs`): the coordinator never awaits an executor, so a slow or dead
//! one never stalls the loop. Being the only writer, it needs no locks; handlers await its
//! replies.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use super::Shared;
use super::committer::{Committer, Done};
use super::dispatcher::{Dispatcher, Order};
use super::error::ApiError;
use super::metrics::Metrics;
use super::read_model::Views;
use super::retention::Retention;
use super::timers::Timers;
use crate::api::convert;
use crate::api::v1::{AttemptRef, CheckpointAnswer, PartitionRef, WatchEvent};
use crate::core::duration::format_millis;
use crate::core::{
    AttemptState, Command, Event, ExecutorId, Failure, FailureClass, JobId, JobMaster, JobSpec,
    Labels, Notice, PartitionId, TaskId, UnknownName,
};
use crate::log_text::Escaped;
use crate::store::{Store, StoreError};

mod checkpoints;
mod deploy;
mod durability;
mod executors;
mod job_release;

use deploy::InputCache;

/// One validated state report of an executor: an UpdateTaskState call, or one update of an
/// UpdateTaskStates batch.
pub(crate) struct Report {
    pub(crate) attempt: AttemptRef,
    pub(crate) state: AttemptState,
    pub(crate) failure: Option<Failure>,
    pub(crate) missing_partition: Option<PartitionRef>,
    /// Set for an answer to a checkpoint trigger, which reports no state change (the fields
    /// above are then unused).
    pub(crate) checkpoint: Option<CheckpointAnswer>,
}

impl Report {
    /// A task's answer to a checkpoint trigger.
    pub(crate) fn checkpoint(attempt: AttemptRef, answer: CheckpointAnswer) -> Report {
        Report {
            attempt,
            state: AttemptState::Running,
            failure: None,
            missing_partition: None,
            checkpoint: Some(answer),
        }
    }
}

/// What handlers ask of the coordinator.
pub(crate) enum Request {
    /// A core event; the reply carries the core's verdict.
    Core {
        event: Event,
        reply: Option<oneshot::Sender<Result<(), ApiError>>>,
    },
    /// A new job from a validated spec; replies with its id.
    Submit {
        spec: JobSpec,
        reply: oneshot::Sender<Result<JobId, ApiError>>,
    },
    Register {
        executor: ExecutorId,
        address: String,
        slots: u32,
        session: String,
        free_disk: u64,
        /// Its labels (`zone = "a"`), for failure-domain placement.
        labels: Labels,
        /// What it still holds (attempts with their last reported state, partitions).
        holds: (Vec<(AttemptRef, AttemptState)>, Vec<PartitionRef>),
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    /// An executor is gone. With `session`, only if that session is still the current one.
    Lose {
        executor: ExecutorId,
        session: Option<String>,
        reason: String,
        /// When the loss became evident (the last heartbeat, the stream closing, ...).
        evidence: Instant,
    },
    /// A heartbeat of `session`; ignored when that session is no longer the executor's
    /// current one (it was read before a loss and a new registration).
    Heartbeat {
        executor: ExecutorId,
        session: String,
        attempts: Vec<AttemptRef>,
    },
    /// An executor's reports (an UpdateTaskStates batch, or one UpdateTaskState), applied in
    /// order within one turn, so the orders they cause together leave together. The reply has
    /// one verdict per report.
    Reports {
        executor: ExecutorId,
        reports: Vec<Report>,
        reply: oneshot::Sender<Result<Vec<Result<(), ApiError>>, ApiError>>,
    },
    /// Anything else that needs the core: runs on the coordinator, and returns its reply,
    /// sent once the turn's changes are published.
    With(Box<dyn FnOnce(&mut Coordinator) -> Answer + Send>),
}

/// Sends a request's reply (after the turn is published).
pub(crate) type Answer = Box<dyn FnOnce() + Send>;

/// The reply `result` to `reply`, to be sent later.
pub(crate) fn answer<T: Send + 'static>(reply: oneshot::Sender<T>, result: T) -> Answer {
    Box::new(move || {
        let _ = reply.send(result);
    })
}

pub(crate) struct Coordinator {
    pub(crate) core: JobMaster,
    pub(crate) shared: Arc<Shared>,
    pub(crate) specs: HashMap<JobId, Arc<JobSpec>>,
    next_job: u64,
    /// One per registered executor: where its orders go.
    dispatchers: HashMap<ExecutorId, Dispatcher>,
    /// Executors whose dispatcher holds orders of the turn being served.
    unflushed: Vec<ExecutorId>,
    pub(crate) metrics: Metrics,
    /// When the evidence of the fault being handled arrived (for detection-time metrics).
    evidence: Option<Instant>,
    /// One span per job, parent of its failover spans.
    job_spans: HashMap<JobId, tracing::Span>,
    /// Open failover spans, closed when the failover's tasks run again.
    failover_spans: HashMap<JobId, Vec<(tracing::Span, BTreeSet<TaskId>, Instant)>>,
    /// Delivers the core's timers.
    timers: Timers,
    /// Per executor id, its last session declared lost (refused if it registers again).
    lost_sessions: HashMap<ExecutorId, String>,
    /// The read model's writer side: updated from notices, published after each turn.
    pub(crate) views: Views,
    /// Quotas and the retention of ended jobs.
    retention: Retention,
    /// Where decisions are made durable, once per turn, off the coordinator.
    committer: Committer,
    /// The last commit known done.
    committed: u64,
    /// Ended turns whose orders and answers wait for a commit, oldest first.
    held: VecDeque<Held>,
    /// Specs of the jobs accepted in this turn, committed with it (as JSON).
    new_specs: Vec<(JobId, String)>,
    /// Since when a restarted JobMaster reconciles (`None`: not reconciling).
    recovering: Option<Instant>,
    /// The turn must reach the disk before it ends: it sends orders, answers an operator's
    /// call, or records what executors cannot tell again (a FINISHED or FAILED report). Turns
    /// without (RUNNING and CANCELED reports, heartbeats) commit without waiting for the disk;
    /// the next synced commit, or the retention tick within a second, takes them along.
    sync: bool,
    /// Commits since the last synced one.
    unsynced: bool,
    /// The once-a-second flush of unsynced commits is due.
    flush_due: bool,
    /// Events the shell feeds after the one being fed, in the same turn (a checkpoint's
    /// metadata written: [`Event::CheckpointPersisted`]).
    follow_ups: VecDeque<Event>,
}

/// An ended turn waiting for its commit: its orders (held by these executors' dispatchers)
/// and its answers.
struct Held {
    /// The commit it waits for: its own, or the last one before it.
    after: u64,
    executors: Vec<ExecutorId>,
    answers: Vec<Answer>,
}

/// Ended turns held at most while commits run; the coordinator serves no new requests
/// beyond (the writer thread commits them all together next).
const MAX_HELD: usize = 64;

/// Requests served in one turn at most: whatever is queued when a turn starts joins it (one
/// commit, one flush), up to this many.
const MAX_TURN: usize = 256;

impl Coordinator {
    pub(crate) fn new(core: JobMaster, shared: Arc<Shared>, store: Box<dyn Store>) -> Coordinator {
        let metrics = Metrics::default();
        Coordinator {
            committer: Committer::spawn(store, shared.clone(), metrics.commits.clone()),
            committed: 0,
            held: VecDeque::new(),
            new_specs: Vec::new(),
            recovering: None,
            sync: false,
            unsynced: false,
            flush_due: false,
            follow_ups: VecDeque::new(),
            core,
            next_job: 0,
            specs: HashMap::new(),
            dispatchers: HashMap::new(),
            unflushed: Vec::new(),
            metrics,
            evidence: None,
            job_spans: HashMap::new(),
            failover_spans: HashMap::new(),
            timers: Timers::spawn(shared.tx.clone()),
            lost_sessions: HashMap::new(),
            views: Views::new(shared.read.clone(), shared.origin_unix_ms),
            retention: Retention::new(
                &shared.settings.jobs,
                &shared.settings.store.retain_ended_jobs,
            ),
            shared,
        }
    }

    /// Serves requests until every sender is gone, or the store fails (the process then
    /// ends: it must not act on decisions it could not make durable).
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Request>) -> Result<(), StoreError> {
        let mut done = self.committer.take_done();
        // Ended jobs leave once a second (beyond the retained count or age), off the turns that
        // serve requests.
        let mut retention = tokio::time::interval(Duration::from_secs(1));
        retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Restored jobs' notices and timers are out; whatever they changed is stored.
        self.end_turn(Vec::new())?;
        loop {
            tokio::select! {
                outcome = done.recv() => self.committed(outcome)?,
                request = rx.recv(), if self.held.len() < MAX_HELD => match request {
                    Some(request) => {
                        let mut answers: Vec<Answer> = self.serve(request).into_iter().collect();
                        // Group commit: what queued up meanwhile joins this turn.
                        for _ in 1..MAX_TURN {
                            let Ok(request) = rx.try_recv() else { break };
                            answers.extend(self.serve(request));
                        }
                        self.end_turn(answers)?;
                    }
                    None => break,
                },
                _ = retention.tick() => {
                    self.drop_due_jobs();
                    self.retention.trim_if_dropped();
                    // Progress committed without a sync is on disk within a second.
                    self.flush_due = self.unsynced;
                    self.end_turn(Vec::new())?;
                }
            }
        }
        // What was decided before the last sender left still goes out once it is stored.
        while !self.held.is_empty() {
            self.committed(done.recv().await)?;
        }
        debug!("coordinator stopped");
        Ok(())
    }

    /// Ends a turn: its changes go to the store (write-ahead) and readers see them; its orders
    /// leave together, and only then its callers hear back, once that commit and every one
    /// before it are done — a client that reads after its call returned reads what the call
    /// did, and what it was told is durable. The coordinator serves on meanwhile.
    fn end_turn(&mut self, answers: Vec<Answer>) -> Result<(), StoreError> {
        let after = self.commit()?;
        let now = self.shared.now();
        self.views.publish(&self.core, &self.metrics, now);
        let executors = std::mem::take(&mut self.unflushed);
        for executor in &executors {
            if let Some(d) = self.dispatchers.get_mut(executor) {
                d.seal(after);
            }
        }
        if !(executors.is_empty() && answers.is_empty()) {
            self.held.push_back(Held {
                after,
                executors,
                answers,
            });
        }
        self.let_out();
        self.note_reconciled();
        Ok(())
    }

    /// The writer thread reports commits done (or failed: the coordinator stops).
    fn committed(&mut self, outcome: Option<Done>) -> Result<(), StoreError> {
        let done = outcome.ok_or_else(|| StoreError::Write {
            file: Default::default(),
            message: "the store's thread stopped".into(),
        })?;
        done.result?;
        self.committed = done.upto;
        self.let_out();
        Ok(())
    }

    /// Lets out the orders and answers of every held turn whose commit is done, in order.
    fn let_out(&mut self) {
        while self.held.front().is_some_and(|h| h.after <= self.committed) {
            let turn = self.held.pop_front().expect("a front");
            for executor in &turn.executors {
                // Gone since: its orders have nowhere to go (the core hears of the loss).
                if let Some(d) = self.dispatchers.get_mut(executor) {
                    d.release(self.committed);
                }
            }
            for answer in turn.answers {
                answer();
            }
        }
    }

    /// Serves one request; its reply is sent when the turn ends.
    fn serve(&mut self, request: Request) -> Option<Answer> {
        // By default the evidence of a fault is the request that reports it.
        self.evidence = Some(Instant::now());
        // What executors can tell a restarted JobMaster again need not wait for the disk
        // (orders the turn sends make it wait anyway, see `order`).
        self.sync |= match &request {
            Request::Heartbeat { .. } | Request::Lose { .. } => false,
            Request::Reports { reports, .. } => reports
                .iter()
                .any(|r| matches!(r.state, AttemptState::Finished | AttemptState::Failed)),
            _ => true,
        };
        let answer: Option<Answer> = match request {
            Request::Core { event, reply } => {
                let result = self.feed(event);
                reply.map(|reply| answer(reply, result))
            }
            Request::Submit { spec, reply } => {
                let result = self.submit(spec);
                Some(answer(reply, result))
            }
            Request::Register {
                executor,
                address,
                slots,
                session,
                free_disk,
                labels,
                holds,
                reply,
            } => {
                let result =
                    self.register(executor, address, slots, session, free_disk, labels, holds);
                Some(answer(reply, result))
            }
            Request::Lose {
                executor,
                session,
                reason,
                evidence,
            } => {
                self.evidence = Some(evidence);
                self.lose(&executor, session.as_deref(), &reason);
                None
            }
            Request::Heartbeat {
                executor,
                session,
                attempts,
            } => {
                let current = self
                    .shared
                    .executors
                    .get(&executor)
                    .is_some_and(|s| s.session == session);
                if current {
                    self.heartbeat(executor, &attempts);
                }
                None
            }
            Request::Reports {
                executor,
                reports,
                reply,
            } => {
                let results = self.reports(&executor, reports);
                Some(answer(reply, Ok(results)))
            }
            Request::With(f) => Some(f(self)),
        };
        answer
    }

    /// A new job, within the quotas (ended jobs are dropped first to make room).
    fn submit(&mut self, spec: JobSpec) -> Result<JobId, ApiError> {
        let tasks: u64 = spec.vertices.iter().map(|v| u64::from(v.parallelism)).sum();
        for job in self.retention.admit(tasks)? {
            self.drop_job(job, "room for a new job");
        }
        self.next_job += 1;
        // Epoch in the high bits: ids stay unique across JobMaster restarts.
        let job = JobId((self.shared.epoch << 20) | (self.next_job & 0xF_FFFF));
        let name = spec.name.clone();
        let json = spec.to_json();
        self.specs.insert(job, Arc::new(spec.clone()));
        let result = self.feed(Event::SubmitJob { job, spec }).map(|()| job);
        if result.is_ok() {
            self.new_specs.push((job, json));
            let now = self.shared.now();
            self.views.add(&self.core, job, now);
            self.retention.added(job, tasks);
            let span = tracing::info_span!("job", job = %job, name = %Escaped(&name));
            span.in_scope(|| info!("job submitted"));
            self.job_spans.insert(job, span);
        } else {
            self.specs.remove(&job);
        }
        result
    }

    /// Drops the ended jobs whose retention is over.
    fn drop_due_jobs(&mut self) {
        for job in self.retention.due(Instant::now()) {
            self.drop_job(
                job,
                "retention over (jobs.retain-ended, store.retain-ended-jobs)",
            );
        }
    }

    /// Forgets an ended job: the core's state, its spec, metrics and read model.
    fn drop_job(&mut self, job: JobId, why: &str) {
        if let Err(e) = self.feed(Event::DropJob { job }) {
            warn!(job = %job, error = %e, "ended job not dropped");
            return;
        }
        self.specs.remove(&job);
        self.metrics.jobs.remove(&job);
        self.views.remove(job);
        self.job_spans.remove(&job);
        self.failover_spans.remove(&job);
        self.retention.dropped(job);
        info!(job = %job, reason = why, "ended job dropped");
    }

    /// Queues an order for an executor (dropped if it is not registered: a lost executor's
    /// orders have nowhere to go, and the core learns of the loss separately).
    fn order(&mut self, executor: &ExecutorId, order: Order) {
        // An order leaves only after the decision behind it is on disk.
        self.sync = true;
        if let Some(d) = self.dispatchers.get_mut(executor)
            && d.push(order)
        {
            self.unflushed.push(executor.clone());
        }
    }

    /// Feeds one event to the core and carries out its commands, also when it refused.
    pub(crate) fn feed(&mut self, event: Event) -> Result<(), ApiError> {
        let result = self.feed_one(event);
        while let Some(next) = self.follow_ups.pop_front() {
            if let Err(e) = self.feed_one(next) {
                debug!(error = %e, "follow-up event refused");
            }
        }
        result
    }

    fn feed_one(&mut self, event: Event) -> Result<(), ApiError> {
        let now = self.shared.now();
        match self.core.handle(event, now) {
            Ok(commands) => {
                self.carry_out(commands);
                Ok(())
            }
            Err(rejected) => {
                self.carry_out(rejected.commands);
                Err(rejected.error.into())
            }
        }
    }

    fn heartbeat(&mut self, executor: ExecutorId, refs: &[AttemptRef]) {
        let mut attempts = Vec::with_capacity(refs.len());
        for r in refs {
            match convert::attempt_id(&self.core, r) {
                Some(a) => attempts.push(a),
                // An attempt of a job or task we do not know: it must not run.
                None => self.send_cancel(&executor, r.clone()),
            }
        }
        let _ = self.feed(Event::Heartbeat { executor, attempts });
    }

    /// Feeds a batch of reports to the core one by one, in order; a refused report does not
    /// stop the ones after it. The caller's flush hands every resulting order over at once.
    fn reports(
        &mut self,
        executor: &ExecutorId,
        reports: Vec<Report>,
    ) -> Vec<Result<(), ApiError>> {
        let count = reports.len();
        let results: Vec<Result<(), ApiError>> = reports
            .into_iter()
            .map(|r| match r.checkpoint {
                Some(answer) => self.checkpoint_answer(&r.attempt, answer),
                None => self.report(
                    executor.clone(),
                    &r.attempt,
                    r.state,
                    r.failure,
                    r.missing_partition,
                ),
            })
            .collect();
        let refused = results.iter().filter(|r| r.is_err()).count();
        debug!(executor = %Escaped(&executor.0), reports = count, refused, "reports applied");
        results
    }

    fn report(
        &mut self,
        executor: ExecutorId,
        attempt: &AttemptRef,
        state: AttemptState,
        failure: Option<Failure>,
        missing: Option<PartitionRef>,
    ) -> Result<(), ApiError> {
        let Some(id) = convert::attempt_id(&self.core, attempt) else {
            return Err(ApiError::NotFound(format!(
                "no task {}#{} in job {:?}",
                attempt.vertex, attempt.subtask, attempt.job_id
            )));
        };
        let failure = failure.map(|mut f| {
            // A partition of another job is not this attempt's input.
            if let Some(p) = missing
                .as_ref()
                .filter(|p| p.job_id == attempt.job_id)
                .and_then(|p| convert::partition_id(&self.core, p))
            {
                f.partition = Some(p);
            }
            f
        });
        self.feed(Event::TaskStateChanged {
            executor,
            attempt: id,
            state,
            failure,
        })
    }

    fn carry_out(&mut self, commands: Vec<Command>) {
        let mut inputs = InputCache::new();
        // Jobs that ended in this step: told to executors after the step's partition releases.
        let mut ended = Vec::new();
        for command in commands {
            match command {
                Command::Deploy {
                    attempt,
                    executor,
                    restore,
                } => self.deploy(attempt, executor, restore, &mut inputs),
                Command::TriggerCheckpoint {
                    job,
                    checkpoint,
                    attempts,
                } => self.trigger_checkpoint(job, checkpoint, attempts),
                Command::NotifyCheckpoint {
                    job,
                    checkpoint,
                    attempts,
                    complete,
                } => self.notify_checkpoint(job, checkpoint, attempts, complete),
                Command::PersistCheckpoint { job, checkpoint } => {
                    self.persist_checkpoint(job, checkpoint)
                }
                Command::DiscardCheckpoints { job, ids } => self.discard_checkpoints(job, ids),
                Command::Cancel { attempt, executor } => {
                    let r = convert::attempt_ref(&self.core, attempt);
                    self.send_cancel(&executor, r);
                }
                Command::ReleasePartitions {
                    job,
                    executor,
                    partitions,
                    attempts,
                } => self.release(job, executor, &partitions, &attempts),
                Command::SetTimer { timer, at } => {
                    let deadline = self.shared.instant_of(at);
                    self.timers.set(timer, deadline);
                }
                Command::CancelTimer { timer } => self.timers.cancel(timer),
                Command::Notify(notice) => {
                    ended.extend(Self::ended_job(&notice));
                    self.notify(notice)
                }
            }
        }
        for job in ended {
            self.release_job(job);
        }
    }

    fn send_cancel(&mut self, executor: &ExecutorId, attempt: AttemptRef) {
        self.order(executor, Order::Cancel(attempt));
    }

    fn release(
        &mut self,
        job: JobId,
        executor: Option<ExecutorId>,
        partitions: &[PartitionId],
        attempts: &[u32],
    ) {
        // Persistent partitions live on storage every executor mounts (`--persistent-dir`) and
        // outlive their producer's executor: any live executor can delete them.
        let executor = match executor {
            Some(e) => e,
            None => match self.dispatchers.keys().min() {
                Some(e) => e.clone(),
                None => {
                    warn!(job = %job, partitions = partitions.len(),
                          "no executor to delete persistent partitions; they stay on storage");
                    return;
                }
            },
        };
        if !self.dispatchers.contains_key(&executor) {
            return;
        }
        let Some(graph) = self.core.graph(job) else {
            return;
        };
        let refs: Vec<PartitionRef> = partitions
            .iter()
            .zip(attempts)
            .map(|(&p, &attempt)| convert::partition_ref(graph, job, p, attempt))
            .collect();
        self.order(&executor, Order::Release(refs));
    }

    /// Updates metrics, spans and the registry for a notice, and sends it to watchers (the
    /// event is only built when someone watches).
    fn notify(&mut self, notice: Notice) {
        let now = self.shared.now();
        let watching = self.shared.events.receiver_count() > 0;
        let name = |job: JobId, t: TaskId| {
            self.core
                .graph(job)
                .map(|g| g.task_name(t).to_string())
                .unwrap_or_default()
        };
        let kind = notice.kind();
        let skipped = matches!(notice, Notice::QuarantineSkipped { .. });
        let event = match notice {
            Notice::JobState { job, state, cause } => {
                let span = self
                    .job_spans
                    .get(&job)
                    .cloned()
                    .unwrap_or_else(tracing::Span::none);
                span.in_scope(|| info!(job = %job, state = %state, cause = cause.as_deref().unwrap_or(""), "job state"));
                self.views.job_changed(job);
                if state.is_terminal() {
                    self.metrics.job_ended(job);
                    self.retention.ended(job, Instant::now());
                    self.failover_spans.remove(&job);
                    self.job_spans.remove(&job);
                }
                watching.then(|| WatchEvent {
                    time_ms: now,
                    kind: kind.into(),
                    job_id: job.to_string(),
                    state: state.name().into(),
                    detail: cause.unwrap_or_default(),
                    ..WatchEvent::default()
                })
            }
            Notice::TaskState {
                attempt,
                state,
                executor,
            } => {
                debug!(job = %attempt.job, task = %Escaped(&name(attempt.job, attempt.task)), attempt = attempt.attempt, state = %state, "task state");
                self.views
                    .task_state(attempt, state, executor.as_ref(), now);
                if matches!(state, AttemptState::Running | AttemptState::Finished) {
                    let at = Instant::now();
                    self.metrics.task_up(attempt.job, attempt.task, at);
                    if let Some(spans) = self.failover_spans.get_mut(&attempt.job) {
                        spans.retain_mut(|(span, waiting, decided)| {
                            waiting.remove(&attempt.task);
                            if waiting.is_empty() {
                                let ms = at.saturating_duration_since(*decided).as_millis() as u64;
                                span.record("recovery_ms", ms);
                                span.in_scope(|| info!(recovery_ms = ms, "failover recovered"));
                            }
                            !waiting.is_empty()
                        });
                    }
                }
                watching.then(|| WatchEvent {
                    time_ms: now,
                    kind: kind.into(),
                    job_id: attempt.job.to_string(),
                    task: name(attempt.job, attempt.task),
                    attempt: attempt.attempt,
                    executor: executor.map(|e| e.0).unwrap_or_default(),
                    state: state.name().into(),
                    ..WatchEvent::default()
                })
            }
            Notice::RestartScheduled {
                job,
                tasks,
                regions,
                delay_ms,
                merged,
                cause,
            } => {
                let parent = self
                    .job_spans
                    .get(&job)
                    .cloned()
                    .unwrap_or_else(tracing::Span::none);
                let span = tracing::info_span!(parent: &parent, "failover", job = %job, cause = %Escaped(&cause),
                    tasks = tasks.len(), regions, delay_ms, merged, recovery_ms = tracing::field::Empty);
                span.in_scope(|| info!("restart scheduled"));
                self.views.restart_scheduled(job, &tasks);
                let decided = Instant::now();
                self.metrics.failover(
                    job,
                    decided,
                    now,
                    self.evidence,
                    &tasks,
                    regions,
                    delay_ms,
                    merged,
                    &cause,
                );
                if !tasks.is_empty() {
                    self.failover_spans.entry(job).or_default().push((
                        span,
                        tasks.iter().copied().collect(),
                        decided,
                    ));
                }
                watching.then(|| WatchEvent {
                    time_ms: now,
                    kind: kind.into(),
                    job_id: job.to_string(),
                    tasks: tasks.iter().map(|&t| name(job, t)).collect(),
                    delay_ms,
                    merged,
                    detail: cause,
                    ..WatchEvent::default()
                })
            }
            Notice::ExecutorRegistered { executor, slots } => watching.then(|| WatchEvent {
                time_ms: now,
                kind: kind.into(),
                executor: executor.0,
                detail: format!("{slots} slots"),
                ..WatchEvent::default()
            }),
            Notice::ExecutorLost { executor, reason } => {
                // Also when the core decided the loss itself (a cancel never confirmed): the
                // executor leaves the registry (its heartbeats are answered `reregister`) and
                // its dispatcher stops. A loss decided by the shell removed them already.
                if self.shared.executors.contains_key(&executor) {
                    warn!(executor = %Escaped(&executor.0), reason = %Escaped(&reason), "executor lost");
                }
                self.forget(&executor);
                watching.then(|| WatchEvent {
                    time_ms: now,
                    kind: kind.into(),
                    executor: executor.0,
                    detail: reason,
                    ..WatchEvent::default()
                })
            }
            Notice::ExecutorQuarantined {
                executor,
                until,
                reason,
            } => {
                let remaining_ms = until.saturating_sub(now);
                warn!(executor = %Escaped(&executor.0), reason = %Escaped(&reason), remaining_ms, "executor quarantined: no new placements on it");
                watching.then(|| WatchEvent {
                    time_ms: now,
                    kind: kind.into(),
                    executor: executor.0,
                    detail: format!(
                        "{reason}; no new placements for {}",
                        format_millis(remaining_ms)
                    ),
                    ..WatchEvent::default()
                })
            }
            Notice::ExecutorReleased { executor, reason }
            | Notice::QuarantineSkipped { executor, reason } => {
                if skipped {
                    warn!(executor = %Escaped(&executor.0), reason = %Escaped(&reason), "executor not quarantined");
                } else {
                    info!(executor = %Escaped(&executor.0), reason = %Escaped(&reason), "executor released from quarantine");
                }
                watching.then(|| WatchEvent {
                    time_ms: now,
                    kind: kind.into(),
                    executor: executor.0,
                    detail: reason,
                    ..WatchEvent::default()
                })
            }
            Notice::InternalError { job, message } => {
                error!(job = %job, message = %Escaped(&message), "internal error in the core");
                watching.then(|| WatchEvent {
                    time_ms: now,
                    kind: kind.into(),
                    job_id: job.to_string(),
                    detail: message,
                    ..WatchEvent::default()
                })
            }
        };
        // A watcher may have gone meanwhile: that is fine.
        if let Some(event) = event {
            let _ = self.shared.events.send(event);
        }
    }

    /// Builds an attempt failure from the wire's class name.
    pub(crate) fn failure(class: &str, message: &str) -> Result<Failure, ApiError> {
        let class = if class.is_empty() {
            FailureClass::Recoverable
        } else {
            class.parse().map_err(|e: UnknownName| {
                ApiError::InvalidArgument(format!(
                    "failure_class {:?} is unknown; expected {}",
                    e.name, e.expected
                ))
            })?
        };
        Ok(Failure::new(
            class,
            if message.is_empty() {
                "task failed".to_owned()
            } else {
                truncate_message(message)
            },
        ))
    }
}

/// Longest failure message kept (exception history, events, logs); the rest is cut.
pub(crate) const MAX_FAILURE_MESSAGE_BYTES: usize = 8 * 1024;

/// `message`, cut at [`MAX_FAILURE_MESSAGE_BYTES`] (on a character boundary) with a note
/// of how much was cut.
fn truncate_message(message: &str) -> String {
    if message.len() <= MAX_FAILURE_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_FAILURE_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… ({} more bytes cut)",
        &message[..end],
        message.len() - end
    )
}

/// Errors that say the executor could not be reached (as opposed to refusing the request).
pub(crate) fn is_transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
    )
}
