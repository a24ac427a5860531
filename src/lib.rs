//! jobmaster: a standalone JobMaster with fine-grained (pipelined-region) failover.
//!
//! - [`core`]: the pure failover logic (specs, graph, regions, restart sets, strategies, state
//!   machines, the `JobMaster` event handler); no I/O, no runtime, no clock.
//! - [`api`]: the wire — generated protobuf code and the wire ↔ core conversions.
//! - [`server`]: the `jobmaster` daemon, the shell around the core.
//! - [`executor`]: the `taskexecutor` agent.
//! - [`ctl`]: `jmctl`'s operator commands; [`plan`] renders `jmctl plan`'s report
//!   ([`blast_report`] its blast-radius report, also `jmctl explain --blast-radius`'s) and
//!   [`simulate`] runs the core against virtual executors for `jmctl simulate`.
//! - [`settings`]: configuration (`config/default.toml`, `JOBMASTER__SECTION__KEY`).
//! - [`security`]: TLS, identities from certificates, operator tokens and roles.
//! - [`fake_executor`]: an in-process fake TaskExecutor, a test and load aid.
//! - [`log_text`]: text from other parties made safe to write into a log line.
//! - [`logging`]: the daemons' shared log flag (`--log-format`) and colour only on a terminal.

pub mod api;
pub mod blast_report;
pub mod core;
pub mod ctl;
pub mod executor;
pub mod fake_executor;
pub mod ha;
pub mod log_text;
pub mod logging;
pub mod plan;
pub mod security;
pub mod server;
pub mod settings;
pub mod simulate;
pub mod store;
