//! `jmctl simulate`: the real JobMaster core against virtual executors and a virtual clock.
//!
//! A scenario gives a job spec, executors, per-vertex run times, deploy/cancel/detection
//! latencies, a fault timeline and an end time. The simulator turns the core's commands into
//! virtual executor behaviour (a deploy runs the task after the deploy latency, a cancel stops it
//! after the cancel latency, a lost executor's tasks die with it) and feeds the outcomes back as
//! events. Everything is ordered by (time, sequence number), so the same scenario always yields
//! the same output, byte for byte.
//!
//! Checkpoints: a virtual executor acknowledges a trigger after its vertex's
//! `[checkpoint-ack]` latency and the store persists at once; the report gives, per failure,
//! how much work its restarted tasks replay since the checkpoint they restore from.
//!
//! [`scenario`] reads and checks scenario files, [`engine`] runs them and [`report`] holds and
//! renders what a run produced.

mod engine;
mod report;
mod scenario;

pub use engine::simulate;
pub use report::{
    CheckpointReport, FailureReplay, FinalRegion, FinalState, FinalTask, SimEvent, SimReport,
};
pub use scenario::{Fault, FaultKind, RunTime, Scenario, ScenarioError};
