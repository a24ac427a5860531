//! Checkpoints (DESIGN §3, "Checkpoints"): the JobMaster side of each job's
//! [`CheckpointCoordinator`] — its tick timer, the checkpoint events, and its actions turned into
//! commands.
//!
//! - **Ticks.** While the job is RUNNING, the coordinator is ticked after every event that
//!   could make it act (see [`CheckpointCoordinator::tick_wanted`]) and a
//!   [`Timer::CheckpointTick`] is kept at its next trigger or timeout. Participants are the
//!   tasks whose current attempt is not FINISHED (FLIP-147); a checkpoint is only triggered
//!   when every one of them is RUNNING.
//! - **Acknowledgements** count only from a task's current attempt.
//! - **Persistence.** The coordinator's `Persist` becomes [`Command::PersistCheckpoint`]; the
//!   shell writes it and feeds [`Event::CheckpointPersisted`] back. In that turn the checkpoint
//!   joins the retained ones, which the job's record holds ([`super::JobRecord`]), so the
//!   store commit of that turn (before its commands leave) makes it durable for a new
//!   JobMaster too, and only then does [`Command::NotifyCheckpoint`] tell the tasks to commit.
//! - **Restarts.** Any failover aborts the checkpoints in progress before its tasks are
//!   stopped; a restarted task's deploy carries
//!   [`CheckpointCoordinator::restore_point_for`]. A job leaving RUNNING otherwise (cancel,
//!   fail, finish) aborts them as `JobStopped`. Too many checkpoint failures
//!   ([`CheckpointAction::FailJob`]) are a global failure through the restart strategy.
//!
//! [`Event::CheckpointPersisted`]: crate::core::Event::CheckpointPersisted

use crate::core::attempt::{AttemptId, AttemptState};
use crate::core::checkpoint::{
    AbortReason, CheckpointAction, CheckpointCoordinator, CheckpointId, CompletedCheckpoint,
};
use crate::core::event::{Command, TimerId};
use crate::core::graph::TaskId;
use crate::core::job_state::JobState;
use crate::core::spec::CheckpointConfig;
use crate::core::{ExecutorId, JobId, Millis};

use super::{CoreError, Job, JobMaster, Timer};

/// A job's checkpointing: its coordinator and its tick timer.
pub(crate) struct JobCheckpoints {
    pub(crate) coordinator: CheckpointCoordinator,
    /// The tick timer set, and when it is due.
    pub(crate) timer: Option<(TimerId, Millis)>,
}

impl JobCheckpoints {
    pub(crate) fn new(config: CheckpointConfig) -> JobCheckpoints {
        JobCheckpoints {
            coordinator: CheckpointCoordinator::new(config),
            timer: None,
        }
    }

    /// A coordinator resumed from the job's record (a restarted JobMaster): retained completed
    /// checkpoints and the id counter; checkpoints that were in progress are forgotten (their
    /// tasks are reconciled or restarted; an acknowledgement for them is ignored). Returns the
    /// ids to discard (beyond `retained`).
    pub(crate) fn resume(
        config: CheckpointConfig,
        completed: Vec<CompletedCheckpoint>,
        next_id: u64,
    ) -> (JobCheckpoints, Vec<CheckpointId>) {
        let (coordinator, actions) =
            CheckpointCoordinator::resume(config, completed, CheckpointId(next_id));
        let discard = actions
            .into_iter()
            .flat_map(|a| match a {
                CheckpointAction::Discard { ids } => ids,
                _ => Vec::new(),
            })
            .collect();
        (
            JobCheckpoints {
                coordinator,
                timer: None,
            },
            discard,
        )
    }
}

impl Job {
    /// The tasks taking part in a new checkpoint: those whose current attempt is not FINISHED.
    fn participants(&self) -> Vec<TaskId> {
        self.graph
            .tasks()
            .filter(|t| self.tasks[t.index()].log.state() != AttemptState::Finished)
            .collect()
    }

    /// Every participant is RUNNING (and none awaits a restart).
    fn participants_running(&self) -> bool {
        self.tasks.iter().all(|t| {
            let s = t.log.state();
            s == AttemptState::Finished || (s == AttemptState::Running && !t.awaiting_restart)
        })
    }

    /// The current attempts of `tasks` that are on an executor and not terminal.
    fn deployed_attempts(&self, tasks: &[TaskId]) -> Vec<(AttemptId, ExecutorId)> {
        tasks
            .iter()
            .filter_map(|&t| {
                let task = self.tasks.get(t.index())?;
                let state = task.log.state();
                if state.is_terminal() || !state.is_on_executor() {
                    return None;
                }
                let executor = task.executor.clone()?;
                Some((
                    AttemptId {
                        job: self.id,
                        task: t,
                        attempt: task.attempt,
                    },
                    executor,
                ))
            })
            .collect()
    }

    /// The checkpoint a deploy of task `t` restores from: none for a first attempt.
    pub(crate) fn restore_point(&self, t: TaskId) -> Option<CheckpointId> {
        if self.tasks[t.index()].attempt == 0 {
            return None;
        }
        self.checkpoints
            .as_ref()
            .and_then(|c| c.coordinator.restore_point_for(t))
    }
}

impl JobMaster {
    /// After every event: aborts the checkpoints of jobs that are no longer RUNNING, ticks the
    /// coordinators that want it and keeps each job's tick timer at its next due time.
    pub(super) fn sync_checkpoints(&mut self, now: Millis) {
        let ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.checkpoints.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.sync_job_checkpoints(id, now);
        }
    }

    fn sync_job_checkpoints(&mut self, id: JobId, now: Millis) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let state = job.state.state();
        let Some(ck) = job.checkpoints.as_mut() else {
            return;
        };
        let mut actions = Vec::new();
        let running = state == JobState::Running;
        if !running {
            if ck.coordinator.pending().len() > 0 {
                let reason = if state == JobState::Restarting {
                    AbortReason::Failover
                } else {
                    AbortReason::JobStopped
                };
                actions = ck.coordinator.abort_pending(reason);
            }
        } else if ck.coordinator.tick_wanted(now) {
            let all_running = job.participants_running();
            let participants = if all_running {
                job.participants()
            } else {
                Vec::new()
            };
            let ck = job.checkpoints.as_mut().expect("checked above");
            let before = ck.coordinator.next_id();
            actions = ck.coordinator.tick(now, all_running, participants);
            if ck.coordinator.next_id() != before {
                // The id counter is durable: ids are never reused after a takeover.
                job.dirty.job = true;
            }
        }
        self.apply_checkpoint_actions(id, actions, now);
        self.reset_checkpoint_timer(id, now);
    }

    /// Keeps the job's tick timer at the coordinator's next trigger or timeout (a trigger that
    /// is due already but waits for tasks or for a checkpoint to end needs no timer: the event
    /// that unblocks it ticks it); none unless the job is RUNNING.
    fn reset_checkpoint_timer(&mut self, id: JobId, now: Millis) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let running = job.state.state() == JobState::Running;
        let Some(ck) = job.checkpoints.as_mut() else {
            return;
        };
        let want = if running {
            let trigger = ck.coordinator.trigger_due().filter(|&t| t > now);
            let timeout = ck.coordinator.timeout_due().map(|t| t.max(now + 1));
            trigger.into_iter().chain(timeout).min()
        } else {
            None
        };
        if ck.timer.map(|(_, at)| at) == want {
            return;
        }
        if let Some((timer, _)) = ck.timer.take() {
            self.timers.cancel(timer, &mut self.out);
        }
        if let Some(at) = want {
            let timer = self
                .timers
                .set(at, Timer::CheckpointTick { job: id }, &mut self.out);
            if let Some(ck) = self.jobs.get_mut(&id).and_then(|j| j.checkpoints.as_mut()) {
                ck.timer = Some((timer, at));
            }
        }
    }

    /// The tick timer fired: it is gone; [`Self::sync_checkpoints`] ticks and sets the next.
    pub(super) fn checkpoint_timer_fired(&mut self, id: JobId, timer: TimerId) {
        if let Some(ck) = self.jobs.get_mut(&id).and_then(|j| j.checkpoints.as_mut())
            && ck.timer.map(|(t, _)| t) == Some(timer)
        {
            ck.timer = None;
        }
    }

    /// Aborts the job's checkpoints in progress (a failover, the job stopping).
    pub(super) fn abort_checkpoints(&mut self, id: JobId, reason: AbortReason, now: Millis) {
        let Some(ck) = self.jobs.get_mut(&id).and_then(|j| j.checkpoints.as_mut()) else {
            return;
        };
        if ck.coordinator.pending().len() == 0 {
            return;
        }
        let actions = ck.coordinator.abort_pending(reason);
        self.apply_checkpoint_actions(id, actions, now);
    }

    /// The current attempt of its task, or why not.
    fn current_attempt(&self, attempt: AttemptId) -> Result<&Job, CoreError> {
        let job = self
            .jobs
            .get(&attempt.job)
            .ok_or(CoreError::UnknownJob(attempt.job))?;
        let task = job
            .tasks
            .get(attempt.task.index())
            .ok_or(CoreError::UnknownTask {
                job: attempt.job,
                task: attempt.task.0,
            })?;
        if task.attempt != attempt.attempt {
            return Err(CoreError::StaleAttempt {
                task: job.graph.task_name(attempt.task).to_string(),
                attempt: attempt.attempt,
                current: task.attempt,
            });
        }
        Ok(job)
    }

    pub(super) fn checkpoint_acknowledged(
        &mut self,
        attempt: AttemptId,
        checkpoint: CheckpointId,
        size_bytes: u64,
        now: Millis,
    ) -> Result<(), CoreError> {
        self.current_attempt(attempt)?;
        let Some(ck) = self.checkpoints_of(attempt.job) else {
            return Ok(());
        };
        let actions = ck
            .coordinator
            .acknowledge(now, checkpoint, attempt.task, size_bytes);
        self.apply_checkpoint_actions(attempt.job, actions, now);
        Ok(())
    }

    pub(super) fn checkpoint_declined(
        &mut self,
        attempt: AttemptId,
        checkpoint: CheckpointId,
        reason: String,
        task_gone: bool,
        now: Millis,
    ) -> Result<(), CoreError> {
        self.current_attempt(attempt)?;
        let Some(ck) = self.checkpoints_of(attempt.job) else {
            return Ok(());
        };
        let actions = if task_gone {
            ck.coordinator
                .task_gone(now, checkpoint, attempt.task, reason)
        } else {
            ck.coordinator
                .decline(now, checkpoint, attempt.task, reason)
        };
        self.apply_checkpoint_actions(attempt.job, actions, now);
        Ok(())
    }

    pub(super) fn checkpoint_persisted(
        &mut self,
        id: JobId,
        checkpoint: CheckpointId,
        failed: Option<String>,
        now: Millis,
    ) -> Result<(), CoreError> {
        if !self.jobs.contains_key(&id) {
            return Err(CoreError::UnknownJob(id));
        }
        let Some(ck) = self.checkpoints_of(id) else {
            return Ok(());
        };
        let actions = match failed {
            None => ck.coordinator.persisted(checkpoint),
            Some(reason) => ck.coordinator.persist_failed(checkpoint, reason),
        };
        self.apply_checkpoint_actions(id, actions, now);
        Ok(())
    }

    /// An operator's trigger: a checkpoint now, or why not.
    pub(super) fn trigger_checkpoint_now(
        &mut self,
        id: JobId,
        now: Millis,
    ) -> Result<(), CoreError> {
        let job = self.jobs.get_mut(&id).ok_or(CoreError::UnknownJob(id))?;
        let running = job.state.state() == JobState::Running && job.participants_running();
        let participants = if running {
            job.participants()
        } else {
            Vec::new()
        };
        let ck = job
            .checkpoints
            .as_mut()
            .ok_or(CoreError::CheckpointsOff(id))?;
        let (_, actions) = ck
            .coordinator
            .trigger_now(now, running, participants)
            .map_err(|reason| CoreError::CheckpointRefused { job: id, reason })?;
        job.dirty.job = true;
        self.apply_checkpoint_actions(id, actions, now);
        self.reset_checkpoint_timer(id, now);
        Ok(())
    }

    fn checkpoints_of(&mut self, id: JobId) -> Option<&mut JobCheckpoints> {
        self.jobs.get_mut(&id).and_then(|j| j.checkpoints.as_mut())
    }

    /// Carries out the coordinator's actions: commands to the shell, the record marked dirty
    /// when the retained checkpoints change, and a failure of the job for `FailJob`.
    fn apply_checkpoint_actions(&mut self, id: JobId, actions: Vec<CheckpointAction>, now: Millis) {
        let mut fail = None;
        for action in actions {
            let Some(job) = self.jobs.get_mut(&id) else {
                return;
            };
            match action {
                CheckpointAction::Trigger {
                    id: checkpoint,
                    tasks,
                } => {
                    let attempts = job.deployed_attempts(&tasks);
                    self.out.push(Command::TriggerCheckpoint {
                        job: id,
                        checkpoint,
                        attempts,
                    });
                }
                CheckpointAction::Abort {
                    id: checkpoint,
                    tasks,
                    ..
                } => {
                    let attempts = job.deployed_attempts(&tasks);
                    self.out.push(Command::NotifyCheckpoint {
                        job: id,
                        checkpoint,
                        attempts,
                        complete: false,
                    });
                    self.out.push(Command::DiscardCheckpoints {
                        job: id,
                        ids: vec![checkpoint],
                    });
                }
                CheckpointAction::Persist { checkpoint } => {
                    self.out.push(Command::PersistCheckpoint {
                        job: id,
                        checkpoint,
                    });
                }
                CheckpointAction::NotifyComplete {
                    id: checkpoint,
                    tasks,
                } => {
                    // The retained checkpoints changed: the record goes to the store in this
                    // turn, before this notification leaves.
                    job.dirty.job = true;
                    let attempts = job.deployed_attempts(&tasks);
                    self.out.push(Command::NotifyCheckpoint {
                        job: id,
                        checkpoint,
                        attempts,
                        complete: true,
                    });
                }
                CheckpointAction::Discard { ids } => {
                    job.dirty.job = true;
                    self.out.push(Command::DiscardCheckpoints { job: id, ids });
                }
                CheckpointAction::FailJob { reason } => fail = Some(reason),
            }
        }
        if let Some(reason) = fail {
            self.global_failover(id, reason, now);
        }
    }
}
