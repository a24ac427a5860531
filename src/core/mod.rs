//! The pure, deterministic core: job specs, the execution graph, pipelined regions, restart
//! sets, restart strategies, state machines and the JobMaster event handler. No I/O, no async
//! runtime, no clock reads: everything here is a function of its inputs, so the daemon,
//! `jmctl plan` and `jmctl simulate` all run the very same decisions.

use std::fmt;

pub mod attempt;
pub mod blast_radius;
pub mod checkpoint;
pub mod domain;
pub mod duration;
pub mod event;
pub mod graph;
pub mod history;
pub mod job_state;
pub mod jobmaster;
pub mod names;
pub mod placement;
pub mod quarantine;
mod readiness;
pub mod region;
pub mod restart;
pub mod restart_budget;
pub mod restart_set;
mod scc;
pub mod spec;
mod spec_json;

pub use attempt::{AttemptId, AttemptState};
pub use blast_radius::{BlastRadius, ExecutorBlastRadius, blast_radius};
pub use checkpoint::{
    AbortReason, CheckpointAction, CheckpointCoordinator, CheckpointId, CheckpointStats,
    CompletedCheckpoint, PendingCheckpoint, PendingState,
};
pub use domain::{FailureDomain, LabelError, Labels};
pub use event::{Command, Event, Failure, FailureClass, Holdings, Notice, TimerId};
pub use graph::{ExchangeGroup, ExecutionGraph, GroupId, PartitionId, TaskId};
pub use job_state::JobState;
pub use jobmaster::{
    Changes, CoreConfig, CoreError, Counters, JobMaster, JobRecord, PartitionHost, PastAttempt,
    Rejected, RestoreError, StoredJob, TaskRecord, TaskView, UNSEEN_HEARTBEATS,
};
pub use names::UnknownName;
pub use placement::PlacementPolicy;
pub use quarantine::{Quarantine, QuarantineConfig};
pub use region::{RegionId, Regions};
pub use restart_budget::RestartBudgetConfig;
pub use restart_set::{
    RestartEntry, RestartReason, RestartScope, RestartSet, compute_restart_set,
    compute_restart_set_live,
};
pub use spec::{
    CheckpointConfig, EdgeSpec, Exchange, FailoverStrategy, JobSpec, Pattern,
    RestartStrategyConfig, SpecError, SpecFormat, SpecLimits, VertexSpec,
};

/// Time in milliseconds since an arbitrary epoch chosen by the caller (the shell's monotonic
/// clock, or the simulator's virtual clock).
pub type Millis = u64;

/// A job, by the id the shell gave it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// An executor, by the id it registered with.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ExecutorId(pub String);

impl fmt::Display for ExecutorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ExecutorId {
    fn from(s: &str) -> Self {
        ExecutorId(s.to_owned())
    }
}
