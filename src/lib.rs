//! jobmaster: a standalone JobMaster with fine-grained (pipelined-region) failover.
//!
//! [`core`] holds the pure failover logic; [`plan`] renders `jmctl plan`'s report from it.

pub mod core;
pub mod plan;
