//! The shell of checkpointing (README, "Checkpoints"): the core's checkpoint commands carried
//! out — triggers, notifications and discards to the executors running the tasks, the
//! metadata made durable — and the tasks' answers fed back; the operator's view and trigger.
//!
//! - **Durability.** `PersistCheckpoint` is answered with `CheckpointPersisted` in the same
//!   turn: the core then lists the checkpoint among the job's retained ones, whose record the
//!   turn's store commit writes *before* any order of the turn leaves — the completion notice
//!   to the tasks included. A JobMaster that takes over knows every checkpoint a task was told
//!   completed.
//! - **Storage.** The spec's `checkpoint.dir` (empty: the executors' default, beside their
//!   persistent partitions) travels with every order; executors resolve it.
//! - **Discards** go to every registered executor (idempotent: the storage is shared, and an
//!   executor without the folder does nothing).

use std::collections::HashMap;

use tracing::{debug, info};

use super::Coordinator;
use crate::api::convert;
use crate::api::v1::{
    AttemptRef, CheckpointAnswer, CheckpointInfo, CheckpointStorage, DiscardCheckpointsRequest,
    ListCheckpointsResponse, NotifyCheckpointRequest, TriggerCheckpointRequest,
};
use crate::core::checkpoint::{CheckpointId, CheckpointOutcome, CompletedCheckpoint};
use crate::core::{AttemptId, Event, ExecutorId, JobId};
use crate::server::dispatcher::{CheckpointOrder, Order};
use crate::server::error::ApiError;

impl Coordinator {
    /// Where `job`'s checkpoints are stored, as orders carry it (`None`: it does not checkpoint).
    pub(super) fn checkpoint_storage(&self, job: JobId) -> Option<CheckpointStorage> {
        let spec = self.specs.get(&job)?;
        let config = spec.checkpoint.as_ref()?;
        Some(CheckpointStorage {
            dir: config.dir.clone(),
        })
    }

    /// A task's answer to a checkpoint trigger, fed as an acknowledgement or a decline.
    pub(super) fn checkpoint_answer(
        &mut self,
        attempt: &AttemptRef,
        answer: CheckpointAnswer,
    ) -> Result<(), ApiError> {
        let Some(id) = convert::attempt_id(&self.core, attempt) else {
            return Err(ApiError::NotFound(format!(
                "no task {}#{} in job {:?}",
                attempt.vertex, attempt.subtask, attempt.job_id
            )));
        };
        let checkpoint = CheckpointId(answer.checkpoint_id);
        let event = if answer.acknowledged {
            Event::CheckpointAcknowledged {
                attempt: id,
                checkpoint,
                size_bytes: answer.size_bytes,
            }
        } else {
            Event::CheckpointDeclined {
                attempt: id,
                checkpoint,
                reason: answer.decline_reason,
                task_gone: answer.task_not_running,
            }
        };
        self.feed(event)
    }

    /// Triggers checkpoint `checkpoint` on `attempts`: one order per executor.
    pub(super) fn trigger_checkpoint(
        &mut self,
        job: JobId,
        checkpoint: CheckpointId,
        attempts: Vec<(AttemptId, ExecutorId)>,
    ) {
        let storage = self.checkpoint_storage(job);
        let timeout_ms = self
            .specs
            .get(&job)
            .and_then(|s| s.checkpoint.as_ref())
            .map_or(0, |c| {
                u64::try_from(c.timeout.as_millis()).unwrap_or(u64::MAX)
            });
        for (executor, attempts) in self.by_executor(attempts) {
            let request = TriggerCheckpointRequest {
                epoch: self.shared.epoch,
                job_id: job.to_string(),
                checkpoint_id: checkpoint.0,
                storage: storage.clone(),
                attempts,
                timeout_ms,
            };
            self.order(
                &executor,
                Order::Checkpoint(CheckpointOrder::Trigger(request)),
            );
        }
        debug!(job = %job, checkpoint = %checkpoint, "checkpoint triggered");
    }

    /// Tells `attempts` that `checkpoint` completed or was aborted.
    pub(super) fn notify_checkpoint(
        &mut self,
        job: JobId,
        checkpoint: CheckpointId,
        attempts: Vec<(AttemptId, ExecutorId)>,
        complete: bool,
    ) {
        for (executor, attempts) in self.by_executor(attempts) {
            let request = NotifyCheckpointRequest {
                epoch: self.shared.epoch,
                job_id: job.to_string(),
                checkpoint_id: checkpoint.0,
                complete,
                attempts,
            };
            self.order(
                &executor,
                Order::Checkpoint(CheckpointOrder::Notify(request)),
            );
        }
    }

    /// The checkpoint's metadata is written with this turn's commit (the job's record lists it
    /// once the core has it): the core is told at once, in this turn.
    pub(super) fn persist_checkpoint(&mut self, job: JobId, checkpoint: CompletedCheckpoint) {
        self.metrics.checkpoint_completed(job, &checkpoint);
        info!(job = %job, checkpoint = %checkpoint.id, tasks = checkpoint.tasks.len(),
              size_bytes = checkpoint.size_bytes,
              duration_ms = checkpoint.completion_time.saturating_sub(checkpoint.trigger_time),
              "checkpoint complete");
        self.follow_ups.push_back(Event::CheckpointPersisted {
            job,
            checkpoint: checkpoint.id,
        });
    }

    /// Deletes checkpoints `ids` of `job` from storage, through every registered executor.
    pub(super) fn discard_checkpoints(&mut self, job: JobId, ids: Vec<CheckpointId>) {
        let Some(storage) = self.checkpoint_storage(job) else {
            return;
        };
        let executors: Vec<ExecutorId> = self.dispatchers.keys().cloned().collect();
        let request = DiscardCheckpointsRequest {
            epoch: self.shared.epoch,
            job_id: job.to_string(),
            storage: Some(storage),
            checkpoint_ids: ids.iter().map(|id| id.0).collect(),
        };
        for executor in executors {
            self.order(
                &executor,
                Order::Checkpoint(CheckpointOrder::Discard(request.clone())),
            );
        }
    }

    /// Groups attempts by executor, in a stable order.
    fn by_executor(
        &self,
        attempts: Vec<(AttemptId, ExecutorId)>,
    ) -> Vec<(ExecutorId, Vec<AttemptRef>)> {
        let mut groups: HashMap<ExecutorId, Vec<AttemptRef>> = HashMap::new();
        for (attempt, executor) in attempts {
            let r = convert::attempt_ref(&self.core, attempt);
            groups.entry(executor).or_default().push(r);
        }
        let mut groups: Vec<_> = groups.into_iter().collect();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        groups
    }

    /// `jmctl checkpoints`: in progress, retained and recently ended checkpoints, newest first.
    pub(crate) fn list_checkpoints(&self, job: JobId) -> Result<ListCheckpointsResponse, ApiError> {
        if self.core.graph(job).is_none() {
            return Err(crate::core::CoreError::UnknownJob(job).into());
        }
        let coordinator = self
            .core
            .checkpoints(job)
            .ok_or(crate::core::CoreError::CheckpointsOff(job))?;
        let now = self.shared.now();
        let unix = |t: u64| self.shared.origin_unix_ms + t;
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let retained: Vec<CheckpointId> =
            coordinator.retained_checkpoints().map(|c| c.id).collect();
        let mut list: Vec<CheckpointInfo> = Vec::new();
        for p in coordinator.pending() {
            list.push(CheckpointInfo {
                id: p.id.0,
                state: "IN_PROGRESS".into(),
                trigger_time_unix_ms: unix(p.trigger_time),
                duration_ms: now.saturating_sub(p.trigger_time),
                size_bytes: p.size_bytes(),
                acknowledged: count(p.acknowledged()),
                tasks: count(p.tasks.len()),
                reason: String::new(),
                retained: false,
            });
        }
        for h in coordinator.history() {
            let (state, reason) = match &h.outcome {
                CheckpointOutcome::Completed => ("COMPLETED", String::new()),
                CheckpointOutcome::Aborted(reason) => ("FAILED", format!("aborted: {reason}")),
            };
            list.push(CheckpointInfo {
                id: h.id.0,
                state: state.into(),
                trigger_time_unix_ms: unix(h.trigger_time),
                duration_ms: h.end_time.unwrap_or(now).saturating_sub(h.trigger_time),
                size_bytes: h.size_bytes,
                acknowledged: count(h.acknowledged),
                tasks: count(h.tasks),
                reason,
                retained: retained.contains(&h.id),
            });
        }
        // Retained checkpoints older than the history (a JobMaster that took over).
        for c in coordinator.retained_checkpoints() {
            if !list.iter().any(|i| i.id == c.id.0) {
                list.push(CheckpointInfo {
                    id: c.id.0,
                    state: "COMPLETED".into(),
                    trigger_time_unix_ms: unix(c.trigger_time),
                    duration_ms: c.completion_time.saturating_sub(c.trigger_time),
                    size_bytes: c.size_bytes,
                    acknowledged: count(c.tasks.len()),
                    tasks: count(c.tasks.len()),
                    reason: String::new(),
                    retained: true,
                });
            }
        }
        list.sort_by_key(|c| std::cmp::Reverse(c.id));
        let interval_ms =
            u64::try_from(coordinator.config().interval.as_millis()).unwrap_or(u64::MAX);
        Ok(ListCheckpointsResponse {
            checkpoints: list,
            interval_ms,
        })
    }

    /// `jmctl checkpoint`: triggers one now; its id.
    pub(crate) fn trigger_checkpoint_now(&mut self, job: JobId) -> Result<u64, ApiError> {
        self.feed(Event::TriggerCheckpoint { job })?;
        let next = self.core.checkpoints(job).map_or(1, |c| c.next_id().0);
        Ok(next.saturating_sub(1))
    }
}
