//! An in-process fake TaskExecutor: a test and load aid, not part of the daemon.
//!
//! It is built from the generated gRPC code only, so it talks to the JobMaster exactly as a
//! real executor process does. Two users share it: the daemon tests (`tests/daemon_support`),
//! which record every call and script failures, and `jmload`, which simulates thousands of
//! executors and times their calls.
//!
//! * [`Executor`]: one simulated executor: its identity and session, the attempts it holds, the
//!   gateway client it registers, heartbeats and reports with.
//! * [`Fleet`]: the state of one `TaskExecutorService` server ([`Fleet::service`]); it serves
//!   any number of executors, each on its own listening port: the local port a call arrived on
//!   says which executor it is for.
//! * [`Options`] say how the fake behaves (how it reports, what it does with a cancel of an
//!   attempt it does not hold); [`Fleet`]'s setters script faults at run time (slow submits,
//!   lost answers, cancels held until confirmed); an [`Observer`] sees every call and report
//!   (to record or count them).
//!
//! What the service does: SubmitTask(s) holds the attempt (heartbeats list it) and reports it
//! RUNNING; CancelTask(s) drops it and reports it CANCELED; TriggerCheckpoint acknowledges the
//! attempts it holds at once (size 0) and NotifyCheckpoint is only observed; ReleasePartitions
//! is only observed;
//! FetchPartition is refused (the fake hosts no data). Reports go to the gateway as
//! UpdateTaskState calls, or one UpdateTaskStates call per batch call ([`Reports`]).

mod executor;
mod service;

use std::time::{Duration, Instant};

use crate::api::v1::{AttemptRef, ReleasePartitionsRequest, SubmitTaskRequest};
use crate::core::AttemptState;

pub use executor::{Executor, ExecutorConfig};
pub use service::{FakeService, Fleet};

/// How a fake executor behaves; fixed when its [`Fleet`] is made.
#[derive(Debug, Clone)]
pub struct Options {
    /// How the reports a call leads to are sent.
    pub reports: Reports,
    /// When a submitted attempt is reported RUNNING.
    pub running: RunningReport,
    /// Which attempts of one task an executor holds at once.
    pub holding: Holding,
    /// What a cancel of an attempt the executor does not hold leads to.
    pub unknown_cancels: UnknownCancels,
    /// Unpack each SubmitTasks entry as a real executor does (the batch's epoch and shared
    /// partition lists copied in) before [`Observer::submitted`] sees it; without it only the
    /// epoch is copied.
    pub unpack_batches: bool,
    /// Largest gRPC message the service accepts and sends.
    pub max_message: usize,
}

impl Default for Options {
    /// A test executor: unary reports, RUNNING after a heartbeat listing the attempt was
    /// answered, every attempt held on its own, every cancel confirmed.
    fn default() -> Options {
        Options {
            reports: Reports::Unary,
            running: RunningReport::AfterHeartbeat,
            holding: Holding::PerAttempt,
            unknown_cancels: UnknownCancels::Confirm,
            unpack_batches: true,
            max_message: 4 << 20,
        }
    }
}

/// How the reports a call leads to are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reports {
    /// One UpdateTaskState call per report.
    Unary,
    /// One UpdateTaskStates call for all the reports of a batch call (SubmitTasks,
    /// CancelTasks), in the batch's order, as a real executor sends its queued reports; unary
    /// calls still get unary reports.
    Batched,
}

/// When a submitted attempt is reported RUNNING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunningReport {
    /// At once, with the call's other reports.
    AtOnce,
    /// On its own, once a heartbeat listing the attempt has been answered (so no older
    /// heartbeat, without it, can reach the JobMaster after the report), and only if the
    /// attempt is still held then. Needs the executor's heartbeats to go through
    /// [`Executor::next_heartbeat`] and [`Executor::heartbeat_answered`].
    AfterHeartbeat,
}

/// Which attempts of one task an executor holds at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Each attempt until it is cancelled or ends.
    PerAttempt,
    /// The last one submitted: a submit replaces the task's other attempts.
    PerTask,
}

/// What a cancel of an attempt the executor does not hold leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownCancels {
    /// Report it CANCELED all the same.
    Confirm,
    /// Nothing is reported. If no newer attempt of the task is held, the cancel is remembered:
    /// the cancel may have overtaken its SubmitTask, which is then answered with a CANCELED
    /// report at once ([`Observer::submit_after_cancel`]).
    Remember,
}

/// An RPC that carried submits or cancels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    /// A unary SubmitTask.
    SubmitTask,
    /// A SubmitTasks with this many tasks.
    SubmitTasks(usize),
    /// A unary CancelTask.
    CancelTask,
    /// A CancelTasks with this many attempts.
    CancelTasks(usize),
}

/// Sees what a [`Fleet`]'s executors get and send; every method does nothing by default.
/// Called on the service's tasks: keep them short.
pub trait Observer: Send + Sync + 'static {
    /// A call carrying submits or cancels arrived (after any submit delay).
    fn rpc(&self, _exec: &Executor, _rpc: Rpc) {}
    /// One task of a SubmitTask(s) call that arrived at `at`: the attempt is held now.
    fn submitted(&self, _exec: &Executor, _task: &SubmitTaskRequest, _at: Instant) {}
    /// A submit whose cancel came first ([`UnknownCancels::Remember`]): it stopped at once and
    /// is reported CANCELED.
    fn submit_after_cancel(&self, _exec: &Executor, _attempt: &AttemptRef) {}
    /// One attempt of a CancelTask(s) call with `epoch` that arrived at `at`.
    fn cancel_received(&self, _exec: &Executor, _attempt: &AttemptRef, _epoch: u64, _at: Instant) {}
    /// A ReleasePartitions call.
    fn released(&self, _exec: &Executor, _request: &ReleasePartitionsRequest) {}
    /// Reports the service is sending now, in one UpdateTaskStates call (`batched`) or one
    /// UpdateTaskState call.
    fn reports_sending(
        &self,
        _exec: &Executor,
        _reports: &[(AttemptRef, AttemptState)],
        _batched: bool,
        _at: Instant,
    ) {
    }
    /// The answer to one report the service sent: accepted, or refused or failed.
    fn report_answered(&self, _exec: &Executor, _state: AttemptState, _accepted: bool) {}
    /// A TriggerCheckpoint call for `attempts` that arrived at `at` (they are acknowledged at
    /// once, those the executor holds, in one UpdateTaskStates call).
    fn checkpoint_triggered(
        &self,
        _exec: &Executor,
        _checkpoint: u64,
        _attempts: usize,
        _at: Instant,
    ) {
    }
    /// A NotifyCheckpoint call (`complete`: the checkpoint completed) that arrived at `at`.
    fn checkpoint_notified(
        &self,
        _exec: &Executor,
        _checkpoint: u64,
        _complete: bool,
        _attempts: usize,
        _at: Instant,
    ) {
    }
}

/// An observer that observes nothing.
pub struct NoObserver;

impl Observer for NoObserver {}

/// The default bound of the fake's own RPCs.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
