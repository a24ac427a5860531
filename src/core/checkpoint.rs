//! The checkpoints of one job: Flink's `CheckpointCoordinator` as a pure state machine.
//!
//! A checkpoint goes trigger → acknowledge (every participant) → persist → complete → notify.
//! The coordinator never does any of it itself: each call takes `now` and returns
//! [`CheckpointAction`]s for the shell to carry out (send the trigger, write the metadata to the
//! store, tell the tasks, delete old checkpoints, fail the job). Completion is never notified
//! before the shell has reported the metadata durable ([`CheckpointCoordinator::persisted`]),
//! so a task never commits side effects of a checkpoint a restarted JobMaster would not know.
//!
//! Participants (FLIP-147): the caller passes the tasks that take part in each new checkpoint —
//! the job's tasks that have not FINISHED. A finished task neither acknowledges nor restores.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use super::Millis;
use super::graph::TaskId;
use super::spec::CheckpointConfig;

/// A checkpoint, by its number within the job: 1, 2, 3…, never reused.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct CheckpointId(pub u64);

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chk-{}", self.0)
    }
}

/// A checkpoint every participant acknowledged: the metadata the store keeps, and what a
/// restarted task restores from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CompletedCheckpoint {
    pub id: CheckpointId,
    pub trigger_time: Millis,
    /// When the last acknowledgement arrived.
    pub completion_time: Millis,
    /// Sum of the sizes the participants reported.
    pub size_bytes: u64,
    /// The participants, sorted.
    pub tasks: Vec<TaskId>,
}

impl CompletedCheckpoint {
    /// True if `task` took part (and so has state in this checkpoint).
    pub fn includes(&self, task: TaskId) -> bool {
        self.tasks.binary_search(&task).is_ok()
    }
}

/// Why a checkpoint was aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortReason {
    /// Not complete within `checkpoint.timeout` of its trigger. A checkpoint failure.
    Timeout,
    /// A participant could not take its snapshot. A checkpoint failure.
    Declined { task: TaskId, reason: String },
    /// The store could not write the metadata. A checkpoint failure.
    PersistFailed { reason: String },
    /// Participants are restarting (a regional failover or a full restart). Not a checkpoint
    /// failure, as in Flink.
    Failover,
    /// The job stopped (cancelled, failed, finished, suspended). Not a checkpoint failure.
    JobStopped,
    /// A later checkpoint completed first. Not a checkpoint failure.
    Subsumed,
    /// A participant does not run any more (it ended, or its executor is gone) and could not
    /// answer. Not a checkpoint failure (Flink's "task not ready"): the failover that follows
    /// restarts it, and the next checkpoint includes it again.
    TaskGone { task: TaskId, reason: String },
}

impl AbortReason {
    /// True for the reasons that count towards `checkpoint.tolerable-failures`.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            AbortReason::Timeout | AbortReason::Declined { .. } | AbortReason::PersistFailed { .. }
        )
    }
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbortReason::Timeout => f.write_str("timed out"),
            AbortReason::Declined { task, reason } => {
                write!(f, "declined by task {}: {reason}", task.0)
            }
            AbortReason::PersistFailed { reason } => write!(f, "could not be persisted: {reason}"),
            AbortReason::Failover => f.write_str("aborted by a failover"),
            AbortReason::JobStopped => f.write_str("aborted: the job stopped"),
            AbortReason::Subsumed => f.write_str("subsumed by a later checkpoint"),
            AbortReason::TaskGone { task, reason } => {
                write!(f, "task {} is not running: {reason}", task.0)
            }
        }
    }
}

/// Why [`CheckpointCoordinator::trigger_now`] did not trigger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerRefused {
    #[error("the job and every task that is not finished must be RUNNING")]
    NotRunning,
    #[error("{max_concurrent} checkpoint(s) in progress already (checkpoint.max-concurrent)")]
    TooMany { max_concurrent: u32 },
    #[error("every task has finished: nothing to checkpoint")]
    NoParticipants,
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointAction {
    /// Start checkpoint `id`: inject its barrier at the sources among `tasks` (every
    /// participant, sorted; all of them must acknowledge).
    Trigger {
        id: CheckpointId,
        tasks: Vec<TaskId>,
    },
    /// Checkpoint `id` is abandoned: tell `tasks` (its participants) and delete what was written.
    Abort {
        id: CheckpointId,
        tasks: Vec<TaskId>,
        reason: AbortReason,
    },
    /// Write the metadata durably, then call [`CheckpointCoordinator::persisted`] (or
    /// [`CheckpointCoordinator::persist_failed`]).
    Persist { checkpoint: CompletedCheckpoint },
    /// Checkpoint `id` is complete and durable: tell its participants (they may commit).
    NotifyComplete {
        id: CheckpointId,
        tasks: Vec<TaskId>,
    },
    /// Delete these checkpoints (metadata and data), oldest first: no longer retained.
    Discard { ids: Vec<CheckpointId> },
    /// More consecutive checkpoint failures than `tolerable-failures`: fail the job (through
    /// the restart strategy, like any other job failure).
    FailJob { reason: String },
}

/// Where a checkpoint in progress stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingState {
    /// Waiting for acknowledgements.
    Acknowledging,
    /// Every participant acknowledged; waiting for the store ([`CheckpointAction::Persist`]).
    Persisting,
}

/// A checkpoint triggered and not yet completed or aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCheckpoint {
    pub id: CheckpointId,
    pub trigger_time: Millis,
    pub state: PendingState,
    /// The participants, sorted.
    pub tasks: Vec<TaskId>,
    /// `acked[i]`: `tasks[i]` acknowledged.
    acked: Vec<bool>,
    remaining: usize,
    size_bytes: u64,
    /// When the last acknowledgement came (`Persisting` only).
    completion_time: Option<Millis>,
}

impl PendingCheckpoint {
    /// Participants that acknowledged.
    pub fn acknowledged(&self) -> usize {
        self.tasks.len() - self.remaining
    }

    /// Sum of the sizes acknowledged so far.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Participants that have not acknowledged yet.
    pub fn awaiting(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.tasks
            .iter()
            .zip(&self.acked)
            .filter(|(_, acked)| !**acked)
            .map(|(t, _)| *t)
    }
}

/// Counts for metrics. Every triggered checkpoint ends up in exactly one of `completed`,
/// `failed` (aborts that are checkpoint failures) and `aborted` (the others), or is pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckpointStats {
    pub triggered: u64,
    pub completed: u64,
    pub failed: u64,
    pub aborted: u64,
    pub last_completed_id: Option<CheckpointId>,
    pub last_completed_time: Option<Millis>,
    /// Checkpoint failures since the last completion.
    pub consecutive_failures: u32,
}

/// How an ended checkpoint ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointOutcome {
    Completed,
    /// Aborted: a checkpoint failure (timeout, decline, store) or not (failover, subsumed, the
    /// job stopping); see [`AbortReason::is_failure`].
    Aborted(AbortReason),
}

/// One ended checkpoint, for operators ([`CheckpointCoordinator::history`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSummary {
    pub id: CheckpointId,
    pub trigger_time: Millis,
    /// When it completed (its last acknowledgement) or was aborted; `None` for an abort whose
    /// time the coordinator was not told (a failover).
    pub end_time: Option<Millis>,
    pub size_bytes: u64,
    /// Participants that acknowledged, of `tasks`.
    pub acknowledged: usize,
    pub tasks: usize,
    pub outcome: CheckpointOutcome,
}

/// Ended checkpoints kept for operators, newest last.
pub const HISTORY: usize = 32;

/// The checkpoints of one job.
#[derive(Debug, Clone)]
pub struct CheckpointCoordinator {
    config: CheckpointConfig,
    next_id: u64,
    /// Not yet completed nor aborted, by id.
    pending: BTreeMap<CheckpointId, PendingCheckpoint>,
    /// Retained completed checkpoints, oldest first.
    completed: VecDeque<CompletedCheckpoint>,
    /// Checkpoints aborted while the store was writing them: if the write still lands
    /// ([`Self::persisted`]), the shell must delete it again.
    abandoned: BTreeSet<CheckpointId>,
    last_trigger: Option<Millis>,
    /// The first tick that saw the job RUNNING: the first trigger comes an interval later.
    first_running: Option<Millis>,
    last_completion: Option<Millis>,
    stats: CheckpointStats,
    /// The last [`HISTORY`] ended checkpoints, oldest first.
    history: VecDeque<CheckpointSummary>,
    /// The latest time the coordinator was told ([`Self::tick`], acknowledgements): the end
    /// time of aborts that come without one.
    last_seen: Millis,
}

impl CheckpointCoordinator {
    /// A coordinator with no checkpoint yet; ids start at 1.
    pub fn new(config: CheckpointConfig) -> Self {
        CheckpointCoordinator {
            config,
            next_id: 1,
            pending: BTreeMap::new(),
            completed: VecDeque::new(),
            abandoned: BTreeSet::new(),
            last_trigger: None,
            first_running: None,
            last_completion: None,
            stats: CheckpointStats::default(),
            history: VecDeque::new(),
            last_seen: 0,
        }
    }

    /// A coordinator taking over a job whose completed checkpoints the store kept (a restarted
    /// or newly elected JobMaster): the newest `retained` of `completed` are retained (the
    /// others are returned, to discard), and ids continue from `next_id` (the store's counter,
    /// so that ids aborted before the takeover are not reused either) or past the newest
    /// completed one, whichever is higher. Times in `completed` come from another process's
    /// clock, so the timers start afresh: the first trigger comes an interval after the job
    /// is seen RUNNING.
    pub fn resume(
        config: CheckpointConfig,
        completed: impl IntoIterator<Item = CompletedCheckpoint>,
        next_id: CheckpointId,
    ) -> (Self, Vec<CheckpointAction>) {
        let mut c = CheckpointCoordinator::new(config);
        let mut completed: Vec<CompletedCheckpoint> = completed.into_iter().collect();
        completed.sort_by_key(|k| k.id);
        completed.dedup_by_key(|k| k.id);
        let excess = completed.len().saturating_sub(c.retained());
        let discarded: Vec<CheckpointId> = completed.drain(..excess).map(|k| k.id).collect();
        let newest = completed.last().map_or(0, |k| k.id.0);
        c.next_id = next_id.0.max(newest.saturating_add(1)).max(1);
        c.stats.last_completed_id = completed.last().map(|k| k.id);
        c.completed = completed.into();
        let actions = if discarded.is_empty() {
            Vec::new()
        } else {
            vec![CheckpointAction::Discard { ids: discarded }]
        };
        (c, actions)
    }

    /// The id the next trigger will take: what the store keeps as the job's checkpoint counter.
    pub fn next_id(&self) -> CheckpointId {
        CheckpointId(self.next_id)
    }

    pub fn config(&self) -> &CheckpointConfig {
        &self.config
    }

    fn ms(d: std::time::Duration) -> Millis {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    fn max_concurrent(&self) -> usize {
        self.config.max_concurrent.max(1) as usize
    }

    fn retained(&self) -> usize {
        self.config.retained.max(1) as usize
    }

    /// Times out old checkpoints, then triggers a new one if one is due: the job is RUNNING,
    /// `interval` has passed since the last trigger (before the first: since the first tick
    /// that saw the job RUNNING), `min-pause` since the last completion, fewer than
    /// `max-concurrent` are in progress and there is at least one participant.
    ///
    /// `job_running`: the job is RUNNING and so is every participant (as Flink, no trigger
    /// while a task is still deploying or restarting). `participants`: the tasks that are not
    /// FINISHED (FLIP-147); they are only read when a checkpoint is triggered.
    pub fn tick(
        &mut self,
        now: Millis,
        job_running: bool,
        participants: impl IntoIterator<Item = TaskId>,
    ) -> Vec<CheckpointAction> {
        self.last_seen = self.last_seen.max(now);
        let mut actions = Vec::new();
        let timeout = Self::ms(self.config.timeout);
        let expired: Vec<CheckpointId> = self
            .pending
            .values()
            .filter(|p| {
                p.state == PendingState::Acknowledging
                    && now >= p.trigger_time.saturating_add(timeout)
            })
            .map(|p| p.id)
            .collect();
        for id in expired {
            self.abort(id, AbortReason::Timeout, &mut actions);
        }
        let failing = actions
            .iter()
            .any(|a| matches!(a, CheckpointAction::FailJob { .. }));
        if !job_running || failing {
            return actions;
        }
        let first_running = *self.first_running.get_or_insert(now);
        let interval = Self::ms(self.config.interval);
        let since = self.last_trigger.unwrap_or(first_running);
        let due = now >= since.saturating_add(interval)
            && self
                .last_completion
                .is_none_or(|t| now >= t.saturating_add(Self::ms(self.config.min_pause)))
            && self.pending.len() < self.max_concurrent();
        if !due {
            return actions;
        }
        self.start(now, participants, &mut actions);
        actions
    }

    /// Triggers a checkpoint now, whatever the interval and `min-pause` say (an operator asked:
    /// `jmctl checkpoint`), or says why not. `job_running` and `participants` as for
    /// [`Self::tick`]. The next periodic trigger comes an interval after this one.
    pub fn trigger_now(
        &mut self,
        now: Millis,
        job_running: bool,
        participants: impl IntoIterator<Item = TaskId>,
    ) -> Result<(CheckpointId, Vec<CheckpointAction>), TriggerRefused> {
        if !job_running {
            return Err(TriggerRefused::NotRunning);
        }
        if self.pending.len() >= self.max_concurrent() {
            return Err(TriggerRefused::TooMany {
                max_concurrent: self.config.max_concurrent,
            });
        }
        self.last_seen = self.last_seen.max(now);
        self.first_running.get_or_insert(now);
        let mut actions = Vec::new();
        match self.start(now, participants, &mut actions) {
            Some(id) => Ok((id, actions)),
            None => Err(TriggerRefused::NoParticipants),
        }
    }

    /// Starts a checkpoint of `participants` (none: nothing to checkpoint).
    fn start(
        &mut self,
        now: Millis,
        participants: impl IntoIterator<Item = TaskId>,
        actions: &mut Vec<CheckpointAction>,
    ) -> Option<CheckpointId> {
        let mut tasks: Vec<TaskId> = participants.into_iter().collect();
        tasks.sort_unstable();
        tasks.dedup();
        if tasks.is_empty() {
            return None;
        }
        let id = CheckpointId(self.next_id);
        self.next_id += 1;
        self.last_trigger = Some(now);
        self.stats.triggered += 1;
        self.pending.insert(
            id,
            PendingCheckpoint {
                id,
                trigger_time: now,
                state: PendingState::Acknowledging,
                acked: vec![false; tasks.len()],
                remaining: tasks.len(),
                tasks: tasks.clone(),
                size_bytes: 0,
                completion_time: None,
            },
        );
        actions.push(CheckpointAction::Trigger { id, tasks });
        Some(id)
    }

    /// `task` took its snapshot for checkpoint `id` (`size_bytes` written). When it is the last
    /// participant: [`CheckpointAction::Persist`]. Acknowledgements of unknown, aborted or
    /// already persisting checkpoints, from non-participants or repeated, are ignored.
    pub fn acknowledge(
        &mut self,
        now: Millis,
        id: CheckpointId,
        task: TaskId,
        size_bytes: u64,
    ) -> Vec<CheckpointAction> {
        self.last_seen = self.last_seen.max(now);
        let Some(p) = self.pending.get_mut(&id) else {
            return Vec::new();
        };
        if p.state != PendingState::Acknowledging {
            return Vec::new();
        }
        let Ok(i) = p.tasks.binary_search(&task) else {
            return Vec::new();
        };
        if p.acked[i] {
            return Vec::new();
        }
        p.acked[i] = true;
        p.remaining -= 1;
        p.size_bytes = p.size_bytes.saturating_add(size_bytes);
        if p.remaining > 0 {
            return Vec::new();
        }
        p.state = PendingState::Persisting;
        p.completion_time = Some(now);
        vec![CheckpointAction::Persist {
            checkpoint: CompletedCheckpoint {
                id,
                trigger_time: p.trigger_time,
                completion_time: now,
                size_bytes: p.size_bytes,
                tasks: p.tasks.clone(),
            },
        }]
    }

    /// `task` could not take its snapshot for checkpoint `id`: the checkpoint is aborted, a
    /// checkpoint failure. Ignored like [`Self::acknowledge`] for unknown checkpoints and
    /// non-participants.
    pub fn decline(
        &mut self,
        now: Millis,
        id: CheckpointId,
        task: TaskId,
        reason: impl Into<String>,
    ) -> Vec<CheckpointAction> {
        let reason = AbortReason::Declined {
            task,
            reason: reason.into(),
        };
        self.participant_aborts(now, id, task, reason)
    }

    /// `task` could not answer checkpoint `id` because it does not run any more (it ended, or
    /// its executor is gone): the checkpoint is aborted, but not as a checkpoint failure
    /// ([`AbortReason::TaskGone`]). Ignored like [`Self::decline`].
    pub fn task_gone(
        &mut self,
        now: Millis,
        id: CheckpointId,
        task: TaskId,
        reason: impl Into<String>,
    ) -> Vec<CheckpointAction> {
        let reason = AbortReason::TaskGone {
            task,
            reason: reason.into(),
        };
        self.participant_aborts(now, id, task, reason)
    }

    /// Aborts checkpoint `id` for `reason`, if it waits for `task`'s acknowledgement.
    fn participant_aborts(
        &mut self,
        now: Millis,
        id: CheckpointId,
        task: TaskId,
        reason: AbortReason,
    ) -> Vec<CheckpointAction> {
        self.last_seen = self.last_seen.max(now);
        let known = self.pending.get(&id).is_some_and(|p| {
            p.state == PendingState::Acknowledging && p.tasks.binary_search(&task).is_ok()
        });
        let mut actions = Vec::new();
        if known {
            self.abort(id, reason, &mut actions);
        }
        actions
    }

    /// The store committed checkpoint `id`'s metadata: it becomes the latest completed
    /// checkpoint, its participants are notified, older checkpoints in progress are subsumed
    /// and completed ones beyond `retained` discarded. A checkpoint aborted while it was being
    /// written is discarded instead.
    pub fn persisted(&mut self, id: CheckpointId) -> Vec<CheckpointAction> {
        if self.abandoned.remove(&id) {
            return vec![CheckpointAction::Discard { ids: vec![id] }];
        }
        let persisting = self
            .pending
            .get(&id)
            .is_some_and(|p| p.state == PendingState::Persisting);
        if !persisting {
            return Vec::new();
        }
        let Some(p) = self.pending.remove(&id) else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        let older: Vec<CheckpointId> = self.pending.range(..id).map(|(id, _)| *id).collect();
        for old in older {
            self.abort(old, AbortReason::Subsumed, &mut actions);
        }
        // As the Persist action said: when the last acknowledgement came.
        let completion_time = p.completion_time.unwrap_or(p.trigger_time);
        let checkpoint = CompletedCheckpoint {
            id,
            trigger_time: p.trigger_time,
            completion_time,
            size_bytes: p.size_bytes,
            tasks: p.tasks,
        };
        self.last_completion = Some(completion_time);
        self.stats.completed += 1;
        self.stats.last_completed_id = Some(id);
        self.stats.last_completed_time = Some(completion_time);
        self.stats.consecutive_failures = 0;
        actions.push(CheckpointAction::NotifyComplete {
            id,
            tasks: checkpoint.tasks.clone(),
        });
        self.remember(CheckpointSummary {
            id,
            trigger_time: checkpoint.trigger_time,
            end_time: Some(completion_time),
            size_bytes: checkpoint.size_bytes,
            acknowledged: checkpoint.tasks.len(),
            tasks: checkpoint.tasks.len(),
            outcome: CheckpointOutcome::Completed,
        });
        self.completed.push_back(checkpoint);
        let excess = self.completed.len().saturating_sub(self.retained());
        if excess > 0 {
            let ids = self.completed.drain(..excess).map(|c| c.id).collect();
            actions.push(CheckpointAction::Discard { ids });
        }
        actions
    }

    /// The store could not write checkpoint `id`: it is aborted, a checkpoint failure.
    pub fn persist_failed(
        &mut self,
        id: CheckpointId,
        reason: impl Into<String>,
    ) -> Vec<CheckpointAction> {
        if self.abandoned.remove(&id) {
            return Vec::new();
        }
        let persisting = self
            .pending
            .get(&id)
            .is_some_and(|p| p.state == PendingState::Persisting);
        let mut actions = Vec::new();
        if persisting {
            let reason = AbortReason::PersistFailed {
                reason: reason.into(),
            };
            self.abort(id, reason, &mut actions);
        }
        actions
    }

    /// Aborts every checkpoint in progress — those still being written too, since restarted
    /// tasks restore from the latest *completed* one and must not later be told to commit a
    /// newer one. For a regional failover or a full restart ([`AbortReason::Failover`]) or
    /// the job stopping ([`AbortReason::JobStopped`]). Not checkpoint failures, whatever the
    /// reason. The interval timer is not reset: the next checkpoint may start at the next tick.
    pub fn abort_pending(&mut self, reason: AbortReason) -> Vec<CheckpointAction> {
        let mut actions = Vec::new();
        let ids: Vec<CheckpointId> = self.pending.keys().copied().collect();
        for id in ids {
            if let Some(p) = self.pending.remove(&id) {
                self.record_abort(p, reason.clone(), false, &mut actions);
            }
        }
        actions
    }

    /// When the next checkpoint may be triggered (`interval` after the last trigger, `min-pause`
    /// after the last completion); `None` until a tick saw the job RUNNING. A trigger may still
    /// wait beyond it: for every participant to be RUNNING, or for fewer than `max-concurrent`.
    pub fn trigger_due(&self) -> Option<Millis> {
        let since = self.last_trigger.or(self.first_running)?;
        let due = since.saturating_add(Self::ms(self.config.interval));
        let pause = self
            .last_completion
            .map_or(0, |t| t.saturating_add(Self::ms(self.config.min_pause)));
        Some(due.max(pause))
    }

    /// When the oldest checkpoint still waiting for acknowledgements times out.
    pub fn timeout_due(&self) -> Option<Millis> {
        let timeout = Self::ms(self.config.timeout);
        self.pending
            .values()
            .filter(|p| p.state == PendingState::Acknowledging)
            .map(|p| p.trigger_time.saturating_add(timeout))
            .min()
    }

    /// True if [`Self::tick`] at `now` could do anything: a checkpoint times out, a trigger is
    /// due, or no tick has seen the job RUNNING yet.
    pub fn tick_wanted(&self, now: Millis) -> bool {
        self.first_running.is_none()
            || self.timeout_due().is_some_and(|t| t <= now)
            || (self.trigger_due().is_some_and(|t| t <= now)
                && self.pending.len() < self.max_concurrent())
    }

    /// A checkpoint with this id is in progress.
    pub fn is_pending(&self, id: CheckpointId) -> bool {
        self.pending.contains_key(&id)
    }

    /// The latest completed (and persisted) checkpoint.
    pub fn latest_completed(&self) -> Option<&CompletedCheckpoint> {
        self.completed.back()
    }

    /// The retained completed checkpoints, oldest first.
    pub fn retained_checkpoints(&self) -> impl ExactSizeIterator<Item = &CompletedCheckpoint> {
        self.completed.iter()
    }

    /// Checkpoints in progress, by increasing id.
    pub fn pending(&self) -> impl ExactSizeIterator<Item = &PendingCheckpoint> {
        self.pending.values()
    }

    pub fn stats(&self) -> CheckpointStats {
        self.stats
    }

    /// The checkpoint a restarting `task` restores from: the latest completed one, if the task
    /// took part in it; `None`: start without state.
    pub fn restore_point_for(&self, task: TaskId) -> Option<CheckpointId> {
        self.latest_completed()
            .filter(|c| c.includes(task))
            .map(|c| c.id)
    }

    /// The last [`HISTORY`] ended checkpoints, oldest first.
    pub fn history(&self) -> impl ExactSizeIterator<Item = &CheckpointSummary> {
        self.history.iter()
    }

    fn remember(&mut self, summary: CheckpointSummary) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(summary);
    }

    /// Aborts pending checkpoint `id` with `reason`, counting a failure if it is one.
    fn abort(
        &mut self,
        id: CheckpointId,
        reason: AbortReason,
        actions: &mut Vec<CheckpointAction>,
    ) {
        if let Some(p) = self.pending.remove(&id) {
            let failure = reason.is_failure();
            self.record_abort(p, reason, failure, actions);
        }
    }

    fn record_abort(
        &mut self,
        p: PendingCheckpoint,
        reason: AbortReason,
        failure: bool,
        actions: &mut Vec<CheckpointAction>,
    ) {
        if p.state == PendingState::Persisting
            && !matches!(reason, AbortReason::PersistFailed { .. })
        {
            self.abandoned.insert(p.id);
        }
        let message = format!("checkpoint {} {reason}", p.id);
        self.remember(CheckpointSummary {
            id: p.id,
            trigger_time: p.trigger_time,
            end_time: Some(self.last_seen.max(p.trigger_time)),
            size_bytes: p.size_bytes,
            acknowledged: p.acknowledged(),
            tasks: p.tasks.len(),
            outcome: CheckpointOutcome::Aborted(reason.clone()),
        });
        actions.push(CheckpointAction::Abort {
            id: p.id,
            tasks: p.tasks,
            reason,
        });
        if !failure {
            self.stats.aborted += 1;
            return;
        }
        self.stats.failed += 1;
        self.stats.consecutive_failures = self.stats.consecutive_failures.saturating_add(1);
        if self.stats.consecutive_failures > self.config.tolerable_failures {
            // As Flink's CheckpointFailureManager: the count starts over, so the restarted job
            // gets the same tolerance.
            self.stats.consecutive_failures = 0;
            actions.push(CheckpointAction::FailJob {
                reason: format!(
                    "{message}: more than {} consecutive checkpoint failures \
                     (checkpoint.tolerable-failures)",
                    self.config.tolerable_failures
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests;
