//! The pure, deterministic core: job specs, the execution graph, pipelined regions and restart
//! sets. No I/O, no async runtime, no clock reads: everything here is a function of its inputs,
//! so the daemon, `jmctl plan` and `jmctl simulate` all run the very same decisions.

pub mod graph;
pub mod region;
pub mod restart_set;
mod scc;
pub mod spec;

pub use graph::{ExchangeGroup, ExecutionGraph, GroupId, PartitionId, TaskId};
pub use region::{RegionId, Regions};
pub use restart_set::{RestartEntry, RestartReason, RestartScope, RestartSet, compute_restart_set};
pub use spec::{
    EdgeSpec, Exchange, FailoverStrategy, JobSpec, Pattern, RestartStrategyConfig, SpecError,
    SpecFormat, SpecLimits, VertexSpec,
};
