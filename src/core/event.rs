//! What goes into the JobMaster core ([`Event`]) and what comes out ([`Command`]).
//!
//! The shell (gRPC daemon) and the simulator turn the outside world into events and carry out
//! the commands; the core never performs I/O itself.

use std::collections::BTreeMap;
use std::fmt;

use super::attempt::{AttemptId, AttemptState};
use super::checkpoint::{CheckpointId, CompletedCheckpoint};
use super::graph::{PartitionId, TaskId};
use super::job_state::JobState;
use super::spec::JobSpec;
use super::{ExecutorId, JobId, Millis};

/// A timer the core asked for with [`Command::SetTimer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub u64);

/// How a failure is to be handled.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum FailureClass {
    /// Restart according to the failover and restart strategies.
    #[default]
    Recoverable,
    /// Fail the job at once, without restart.
    NonRecoverable,
    /// The executor running the task was lost.
    ExecutorLost,
    /// A partition the task reads is missing; its producer must run again.
    PartitionLost,
}

impl FailureClass {
    pub const ALL: [FailureClass; 4] = [
        FailureClass::Recoverable,
        FailureClass::NonRecoverable,
        FailureClass::ExecutorLost,
        FailureClass::PartitionLost,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FailureClass::Recoverable => "recoverable",
            FailureClass::NonRecoverable => "non-recoverable",
            FailureClass::ExecutorLost => "executor-lost",
            FailureClass::PartitionLost => "partition-lost",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a task failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: FailureClass,
    pub message: String,
    /// For [`FailureClass::PartitionLost`]: the input partition that is missing.
    pub partition: Option<PartitionId>,
}

impl Failure {
    pub fn new(class: FailureClass, message: impl Into<String>) -> Failure {
        Failure {
            class,
            message: message.into(),
            partition: None,
        }
    }

    pub fn recoverable(message: impl Into<String>) -> Failure {
        Failure::new(FailureClass::Recoverable, message)
    }
}

/// What a registering executor still holds: attempts with the state it last reported for
/// them (terminal ones whose report has not been answered yet included), and the result
/// partitions it hosts with the attempt of their producer that wrote them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Holdings {
    pub attempts: Vec<(AttemptId, AttemptState)>,
    pub partitions: Vec<(JobId, PartitionId, u32)>,
}

/// Something that happened, fed to [`crate::core::JobMaster::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An operator submitted a validated spec under a fresh id.
    SubmitJob { job: JobId, spec: JobSpec },
    /// An operator asked to cancel a job.
    CancelJob { job: JobId },
    /// Forget an ended job (its retention is over): its graph, tasks and history go. Refused
    /// while the job has not ended.
    DropJob { job: JobId },
    /// An executor registered and offers `slots` slots; `labels` (`zone = "a"`, …) place it
    /// in failure domains. A known id registering again is a new session: the old one is
    /// treated as lost first. `holds` lists what it still runs and hosts (after a JobMaster
    /// restart, what the core adopts; anything else it holds is cancelled or released).
    ExecutorRegistered {
        executor: ExecutorId,
        slots: u32,
        labels: BTreeMap<String, String>,
        holds: Holdings,
    },
    /// An executor is gone (heartbeat timeout, stream closed, RPC failures, operator drill).
    ExecutorLost {
        executor: ExecutorId,
        reason: String,
    },
    /// An executor's heartbeat with the attempts it currently holds.
    Heartbeat {
        executor: ExecutorId,
        attempts: Vec<AttemptId>,
    },
    /// An executor reports an attempt's state (`Initializing`, `Running`, `Finished`, `Canceled`
    /// or `Failed`); `failure` says why for `Failed`.
    TaskStateChanged {
        executor: ExecutorId,
        attempt: AttemptId,
        state: AttemptState,
        failure: Option<Failure>,
    },
    /// A result partition is gone (its file was deleted, its storage failed).
    PartitionLost { job: JobId, partition: PartitionId },
    /// An operator drill: fail the current attempt of a task.
    InjectFailure {
        job: JobId,
        task: TaskId,
        failure: Failure,
    },
    /// A timer set by [`Command::SetTimer`] is due.
    TimerFired { timer: TimerId },
    /// An operator ends an executor's quarantine early (and forgives its recent failures).
    ReleaseExecutor { executor: ExecutorId },
    /// `attempt` took its snapshot for `checkpoint` (`size_bytes` written). Only the task's
    /// current attempt counts: a stale attempt's acknowledgement is refused and changes nothing.
    /// (The job is `attempt.job`.)
    CheckpointAcknowledged {
        attempt: AttemptId,
        checkpoint: CheckpointId,
        size_bytes: u64,
    },
    /// `attempt` could not take its snapshot for `checkpoint`: the checkpoint is aborted, a
    /// checkpoint failure — unless `task_gone`: the attempt does not run any more (it ended,
    /// its executor is unreachable), which the failover that follows handles. Only the task's
    /// current attempt counts.
    CheckpointDeclined {
        attempt: AttemptId,
        checkpoint: CheckpointId,
        reason: String,
        task_gone: bool,
    },
    /// The shell wrote checkpoint `checkpoint`'s metadata ([`Command::PersistCheckpoint`]).
    CheckpointPersisted {
        job: JobId,
        checkpoint: CheckpointId,
    },
    /// The shell could not write checkpoint `checkpoint`'s metadata (a checkpoint failure).
    CheckpointPersistFailed {
        job: JobId,
        checkpoint: CheckpointId,
        reason: String,
    },
    /// An operator asks for a checkpoint of `job` now (`jmctl checkpoint`); refused with
    /// [`super::jobmaster::CoreError::CheckpointRefused`] when one cannot start now.
    TriggerCheckpoint { job: JobId },
}

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start `attempt` on `executor` (it holds a slot reserved for it).
    Deploy {
        attempt: AttemptId,
        executor: ExecutorId,
        /// The checkpoint the attempt restores its state from: the job's latest completed
        /// checkpoint for a restarted task that took part in it; `None` for a first deploy, a
        /// job without checkpoints, or no completed checkpoint yet (start without state).
        restore: Option<CheckpointId>,
    },
    /// Stop `attempt` on `executor`; the executor answers with a `Canceled` report.
    Cancel {
        attempt: AttemptId,
        executor: ExecutorId,
    },
    /// Delete result partitions: on `executor`, or on persistent storage when `None`.
    ReleasePartitions {
        job: JobId,
        executor: Option<ExecutorId>,
        partitions: Vec<PartitionId>,
        /// Per partition, the attempt of its producer that wrote it (the producer may have
        /// moved on to a new attempt by the time the shell carries this out).
        attempts: Vec<u32>,
    },
    /// Deliver [`Event::TimerFired`] at time `at`.
    SetTimer { timer: TimerId, at: Millis },
    /// A timer set earlier is no longer needed; its [`Event::TimerFired`] would be ignored.
    CancelTimer { timer: TimerId },
    /// Start checkpoint `checkpoint`: every one of `attempts` (the participants' current
    /// attempts, with their executors) takes its snapshot and acknowledges it
    /// ([`Event::CheckpointAcknowledged`]) or declines ([`Event::CheckpointDeclined`]).
    TriggerCheckpoint {
        job: JobId,
        checkpoint: CheckpointId,
        attempts: Vec<(AttemptId, ExecutorId)>,
    },
    /// Tell `attempts` (the checkpoint's participants still deployed) that `checkpoint`
    /// completed and is durable (`complete`: they may commit its side effects) or was aborted
    /// (they drop what they wrote for it).
    NotifyCheckpoint {
        job: JobId,
        checkpoint: CheckpointId,
        attempts: Vec<(AttemptId, ExecutorId)>,
        complete: bool,
    },
    /// Every participant acknowledged: write the checkpoint's metadata durably, then feed
    /// [`Event::CheckpointPersisted`] (or [`Event::CheckpointPersistFailed`]). Completion is
    /// notified only after that, in the turn of `CheckpointPersisted`, whose store commit also
    /// holds the job record listing the checkpoint among the retained ones.
    PersistCheckpoint {
        job: JobId,
        checkpoint: CompletedCheckpoint,
    },
    /// Delete these checkpoints (metadata and data): no longer retained, or aborted.
    DiscardCheckpoints { job: JobId, ids: Vec<CheckpointId> },
    /// Tell watchers what happened.
    Notify(Notice),
}

/// An observable fact, for event streams, logs and the simulator's timeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    JobState {
        job: JobId,
        state: JobState,
        cause: Option<String>,
    },
    TaskState {
        attempt: AttemptId,
        state: AttemptState,
        executor: Option<ExecutorId>,
    },
    /// A failover decision: `tasks` will restart after `delay_ms`.
    RestartScheduled {
        job: JobId,
        tasks: Vec<TaskId>,
        regions: usize,
        delay_ms: Millis,
        /// The failure joined a restart already pending (exponential-delay).
        merged: bool,
        cause: String,
    },
    ExecutorRegistered {
        executor: ExecutorId,
        slots: u32,
    },
    ExecutorLost {
        executor: ExecutorId,
        reason: String,
    },
    /// The executor takes no new placements until `until` (its attempts keep running).
    ExecutorQuarantined {
        executor: ExecutorId,
        until: Millis,
        reason: String,
    },
    /// The executor's quarantine ended (cool-down over, an operator, or no other executor).
    ExecutorReleased {
        executor: ExecutorId,
        reason: String,
    },
    /// The executor reached a quarantine threshold but was not quarantined: no other
    /// executor would have been left to place tasks on.
    QuarantineSkipped {
        executor: ExecutorId,
        reason: String,
    },
    /// The core refused one of its own decisions as illegal (a bug, never expected): the
    /// shell logs it at error level; the state was left unchanged.
    InternalError {
        job: JobId,
        message: String,
    },
}

impl Notice {
    /// The event kind this notice is shown as, by `WatchEvents` and `jmctl simulate`.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::JobState { .. } => "job-state",
            Notice::TaskState { .. } => "task-state",
            Notice::RestartScheduled { .. } => "restart-scheduled",
            Notice::ExecutorRegistered { .. } => "executor-registered",
            Notice::ExecutorLost { .. } => "executor-lost",
            Notice::ExecutorQuarantined { .. } => "executor-quarantined",
            Notice::ExecutorReleased { .. } => "executor-released",
            Notice::QuarantineSkipped { .. } => "quarantine-skipped",
            Notice::InternalError { .. } => "internal-error",
        }
    }
}
