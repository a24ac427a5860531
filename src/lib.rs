//! jobmaster: a standalone JobMaster with fine-grained (pipelined-region) failover.
//!
//! [`core`] holds the pure failover logic; [`plan`] renders `jmctl plan`'s report from it and
//! [`simulate`] runs the core against virtual executors for `jmctl simulate`.
//! [`fake_executor`] is an in-process fake TaskExecutor, a test and load aid.

pub mod api;
pub mod core;
pub mod ctl;
pub mod executor;
pub mod fake_executor;
pub mod plan;
pub mod server;
pub mod settings;
pub mod simulate;
