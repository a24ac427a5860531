//! The reference TaskExecutor agent (DESIGN §1, §4): registers with the JobMaster, offers its
//! slots, heartbeats, runs each task as a child process, keeps result partitions on disk and
//! serves them, and obeys the JobMaster's epoch.
//!
//! [`run`] takes a bound listener and a shutdown future, like the daemon's `serve`. The link to
//! the JobMaster — registration, heartbeats, keeping or fencing the attempts when it fails — is
//! [`connection`]'s; which of several JobMasters it follows (the elected leader) is
//! [`follow`]'s, and [`gateway`] holds the client pointed at it.

mod checkpoints;
mod connection;
pub mod control;
mod descriptor;
mod error;
mod fence;
mod follow;
mod gateway;
pub mod local;
mod logs;
mod partitions;
mod process;
mod retention;
mod runner;
mod service;
pub mod shim;
mod user;

pub use error::{ExecutorError, StartError};

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

use crate::security::Identity;
use crate::security::auth::{GrpcAuthLayer, Rules};
use crate::security::exposure;
use crate::security::incoming::incoming;
use crate::security::tls::{ClientAuth, Tls};
use tracing::{debug, error, info, warn};

use crate::api::v1::task_executor_service_server::TaskExecutorServiceServer;
use crate::api::v1::{
    AttemptRef, DisconnectRequest, HeldAttempt, PartitionRef, RegisterExecutorRequest,
    RegisterExecutorResponse, TaskStateUpdate, UpdateTaskStateRequest, UpdateTaskStatesRequest,
};
use crate::core::{AttemptState, Labels};
use crate::log_text::Escaped;

/// Largest message the executor's TaskExecutorService accepts (the JobMaster keeps its
/// batches under half of it).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Most reports in one UpdateTaskStates call.
const MAX_REPORTS: usize = 1000;
/// Most encoded bytes of reports in one UpdateTaskStates call (failure messages carry stderr
/// tails): well under the JobMaster's message limit.
const MAX_REPORT_BYTES: usize = 1 << 20;

/// How an executor is set up.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// The JobMaster's gRPC URL, e.g. `http://127.0.0.1:6123`, or the URLs of several
    /// (`URL,URL,…`, with HA): the executor follows the one that leads ([`follow`]).
    pub jobmaster: String,
    pub id: String,
    /// host:port the JobMaster and other executors reach this executor at.
    pub advertise: String,
    pub slots: u32,
    pub data_dir: PathBuf,
    pub persistent_dir: PathBuf,
    /// How long the executor keeps its attempts while the JobMaster is gone (its address
    /// refuses connections), counted from the start of the outage; then it stops them.
    pub jobmaster_reconnect_timeout: Duration,
    /// The least time between the executor fencing its attempts (heartbeats unanswered) and the
    /// JobMaster's heartbeat deadline; see [`connection`].
    pub fence_margin: Duration,
    /// SIGTERM, then SIGKILL after this long.
    pub cancel_grace: Duration,
    /// Added to the executor's niceness for task processes (`executor.task-nice`, 0–19,
    /// up to 19 in all), so that a host
    /// full of busy tasks does not starve the executor's own work: starting and stopping
    /// attempts, heartbeats. Their shims keep the executor's.
    pub task_nice: i32,
    /// Below this many free bytes in the data dir, new tasks are refused.
    pub min_free_disk: u64,
    pub rpc_timeout: Duration,
    /// Labels naming its failure domains (`zone=a`), sent at registration; checked with
    /// [`crate::core::domain::parse_labels`].
    pub labels: Labels,
    /// TLS and whether plain text may listen beyond loopback.
    pub security: ExecutorSecurity,
    /// The user task processes run as, by name or uid (`executor.run-as`); `None` or empty:
    /// the executor's own user. Another user than the executor's needs root.
    pub run_as: Option<String>,
    /// Attempt folders (logs, descriptors) kept per task (`executor.retain-attempts`, at
    /// least 1): older ones go when a new attempt of the task starts here.
    pub retain_attempts: u32,
    /// How long an ended job's folders (logs included, for `jmctl logs`) stay after the
    /// JobMaster says it ended (`executor.retain-ended-jobs`); zero: removed at once.
    pub retain_ended_jobs: std::time::Duration,
    /// The program every attempt is started through ([`shim`]): one whose `main` calls
    /// [`shim::run_if_requested`] first (`taskexecutor`, `jobmaster`). Empty: this very
    /// program (`/proc/self/exe`, which stays valid when its file is replaced by an upgrade).
    pub shim: PathBuf,
}

/// An executor's TLS: `[tls]` (`None`: plain text), how often its files are checked for
/// changes, and `--insecure`.
#[derive(Debug, Clone)]
pub struct ExecutorSecurity {
    pub tls: Option<crate::security::tls::TlsFiles>,
    pub reload_interval: Duration,
    pub insecure: bool,
}

impl Default for ExecutorSecurity {
    /// Plain text, loopback only.
    fn default() -> ExecutorSecurity {
        ExecutorSecurity {
            tls: None,
            reload_interval: Duration::from_secs(10),
            insecure: false,
        }
    }
}

/// Fills in defaults that depend on the bound address: the advertised address, the id and
/// the directories.
pub fn resolve(
    mut config: ExecutorConfig,
    bound: std::net::SocketAddr,
) -> Result<ExecutorConfig, StartError> {
    if config.slots == 0 {
        return Err(StartError::NoSlots);
    }
    if config.retain_attempts == 0 {
        return Err(StartError::NoRetainedAttempts);
    }
    if config.shim.as_os_str().is_empty() {
        config.shim = PathBuf::from("/proc/self/exe");
    }
    if config.advertise.is_empty() {
        let ip = if bound.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            bound.ip()
        };
        config.advertise = std::net::SocketAddr::new(ip, bound.port()).to_string();
    }
    if config.id.is_empty() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "executor".to_owned());
        config.id = format!("{host}-{}", bound.port());
    }
    if !partitions::safe_component(&config.id) {
        return Err(StartError::BadId(config.id));
    }
    if config.data_dir.as_os_str().is_empty() {
        config.data_dir = std::env::temp_dir().join(format!("jobmaster-executor-{}", config.id));
    }
    if config.persistent_dir.as_os_str().is_empty() {
        config.persistent_dir = config.data_dir.join("persistent");
    }
    Ok(config)
}

/// Refuses a directory others could change: a symbolic link, writable by other users, or
/// (when `owned`) not owned by this process's user or writable by a group that is not its own.
fn check_owned(dir: &std::path::Path, owned: bool) -> Result<(), StartError> {
    use std::os::unix::fs::MetadataExt;
    let unsafe_dir = |problem: String| StartError::UnsafeDir {
        path: dir.to_owned(),
        problem,
    };
    let meta = std::fs::symlink_metadata(dir).map_err(|error| StartError::CreateDir {
        path: dir.to_owned(),
        error,
    })?;
    if !meta.is_dir() {
        return Err(unsafe_dir(
            "it is not a directory (a symbolic link?)".into(),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(unsafe_dir(format!(
            "any user may write to it (mode {mode:o})"
        )));
    }
    if owned {
        let (uid, gid) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        if meta.uid() != uid {
            return Err(unsafe_dir(format!(
                "it belongs to uid {}, not to this executor's uid {uid}",
                meta.uid()
            )));
        }
        if mode & 0o020 != 0 && meta.gid() != gid {
            return Err(unsafe_dir(format!(
                "group {} may write to it (mode {mode:o})",
                meta.gid()
            )));
        }
    }
    Ok(())
}

/// Key of an attempt: (job, vertex, subtask, attempt).
pub(crate) type AttemptKey = (String, String, u32, u32);

pub(crate) fn key(a: &AttemptRef) -> AttemptKey {
    (a.job_id.clone(), a.vertex.clone(), a.subtask, a.attempt)
}

pub(crate) struct Running {
    pub(crate) attempt: AttemptRef,
    /// The lifeline to the attempt's shim once its process runs.
    pub(crate) control: Option<Arc<process::Control>>,
    pub(crate) cancel: Arc<Notify>,
    pub(crate) cancelled: bool,
    /// The state it last reported (DEPLOYING until its process runs): a JobMaster that
    /// restarted learns it from the registration.
    pub(crate) state: AttemptState,
    /// Cancelled with SIGKILL, no grace ([`Agent::kill_all`]).
    pub(crate) killed: bool,
    /// The attempt's control channel (`JM_CONTROL`, [`control`]) once its socket exists; the
    /// checkpoint RPCs reach the task through it.
    pub(crate) channel: Option<Arc<control::Control>>,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) attempts: HashMap<AttemptKey, Running>,
    /// Attempts that ended but whose final report the JobMaster has not answered yet. They
    /// hold no slot, but heartbeats still name them: a heartbeat that overtook the report
    /// would otherwise tell the JobMaster the attempt vanished, and it would fail it over.
    pub(crate) reporting: HashMap<AttemptKey, (AttemptRef, AttemptState)>,
    /// Partitions hosted here (blocking ones in the data dir).
    pub(crate) partitions: Vec<PartitionRef>,
    /// Jobs the JobMaster said ended (ReleaseJob): their folders are gone or about to go.
    pub(crate) ended_jobs: retention::EndedJobs,
    /// The attempts were killed (fenced, declared lost, shutting down) and the executor has
    /// not registered since under a new session: new attempts are refused meanwhile, so that
    /// none starts under a session whose attempts the JobMaster is failing over.
    pub(crate) fenced: bool,
}

/// The agent shared by the gRPC service, the task runners and the heartbeat loop.
pub(crate) struct Agent {
    pub(crate) config: ExecutorConfig,
    pub(crate) session: Mutex<String>,
    pub(crate) state: Mutex<State>,
    /// The JobMaster's gateway, at the endpoint followed now.
    pub(crate) gateway: gateway::Gateway,
    /// Reports for the JobMaster, sent in order by one task (see [`report_loop`]); the session
    /// is filled in when they are sent.
    pub(crate) reports: mpsc::UnboundedSender<TaskStateUpdate>,
    /// The epoch of the JobMaster this executor registered with (0 before the first
    /// registration). Taken only from the JobMaster's answers on the gateway (registration,
    /// heartbeats), never from a command: a command with another epoch is refused.
    pub(crate) epoch: tokio::sync::watch::Sender<u64>,
    /// This executor's TLS (`None`: plain text), for fetches from other executors.
    pub(crate) tls: Option<Arc<Tls>>,
    /// The user tasks switch to (`None`: they run as the executor's user).
    pub(crate) task_user: Option<user::TaskUser>,
}

fn new_session_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}-{:x}", std::process::id(), nanos)
}

impl Agent {
    /// The JobMaster answered with `epoch` (a newer JobMaster replaces an older one).
    pub(crate) fn adopt_epoch(&self, epoch: u64) {
        self.epoch.send_if_modified(|current| {
            let newer = epoch > *current;
            if newer {
                *current = epoch;
            }
            newer
        });
    }

    pub(crate) fn session(&self) -> String {
        self.session.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere must not wedge the executor: keep using the state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a state report without a failure for the JobMaster.
    pub(crate) fn report(&self, attempt: &AttemptRef, state: AttemptState) {
        if let Some(r) = self.lock().attempts.get_mut(&key(attempt)) {
            r.state = state;
        }
        let _ = self.reports.send(TaskStateUpdate {
            attempt: Some(attempt.clone()),
            state: state.name().to_owned(),
            ..TaskStateUpdate::default()
        });
    }

    /// Kills every attempt with SIGKILL (fenced, declared lost, shutting down) and refuses new
    /// ones until the executor has registered again ([`State::fenced`]); with `new_session`,
    /// under a new session id from now on (in the same critical section, so no attempt can
    /// slip in under the old one). Returns how many attempts it killed.
    pub(crate) fn kill_all(&self, why: &str, new_session: bool) -> usize {
        let attempts: Vec<(AttemptRef, Option<Arc<process::Control>>, Arc<Notify>)> = {
            let mut state = self.lock();
            state.fenced = true;
            if new_session && let Ok(mut s) = self.session.lock() {
                *s = new_session_id();
            }
            state
                .attempts
                .values_mut()
                .map(|r| {
                    r.cancelled = true;
                    r.killed = true;
                    (r.attempt.clone(), r.control.clone(), r.cancel.clone())
                })
                .collect()
        };
        for (attempt, control, cancel) in &attempts {
            info!(job = %attempt.job_id, task = %format!("{}#{}", attempt.vertex, attempt.subtask), attempt = attempt.attempt, why, "killing attempt");
            if let Some(control) = control {
                control.kill();
            }
            cancel.notify_one();
        }
        attempts.len()
    }

    /// Cancels every attempt as a CancelTasks would: SIGTERM, then SIGKILL after
    /// `cancel_grace` (the runner of each attempt does it).
    pub(crate) fn stop_all(&self, why: &str) {
        let attempts: Vec<(AttemptRef, Arc<Notify>)> = {
            let mut state = self.lock();
            state
                .attempts
                .values_mut()
                .map(|r| {
                    r.cancelled = true;
                    (r.attempt.clone(), r.cancel.clone())
                })
                .collect()
        };
        for (attempt, cancel) in attempts {
            info!(job = %attempt.job_id, task = %format!("{}#{}", attempt.vertex, attempt.subtask), attempt = attempt.attempt, why, "stopping attempt");
            cancel.notify_one();
        }
    }

    fn free_disk(&self) -> u64 {
        partitions::free_disk(&self.config.data_dir)
    }
}

/// Runs an executor on `listener` until `shutdown` completes.
pub async fn run(
    config: ExecutorConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let task_user = user::start(&config)?;
    for dir in [
        config.data_dir.clone(),
        config.data_dir.join("pids"),
        config.data_dir.join("attempts"),
        config.persistent_dir.clone(),
    ] {
        std::fs::create_dir_all(&dir).map_err(|error| StartError::CreateDir {
            path: dir.clone(),
            error,
        })?;
    }
    // A root executor must not work in a tree another user can change: pid files there name
    // processes it kills, files there are where it writes and what it serves.
    for dir in [
        config.data_dir.clone(),
        config.data_dir.join("pids"),
        config.data_dir.join("attempts"),
    ] {
        check_owned(&dir, true)?;
    }
    check_owned(
        &config.persistent_dir,
        config.persistent_dir.starts_with(&config.data_dir),
    )?;
    user::secure_dirs(&config, task_user.as_ref())?;
    let reaped = process::reap_leftovers(
        &config.data_dir.join("pids"),
        &config.data_dir.join("attempts"),
    );
    if reaped > 0 {
        warn!(reaped, "killed task processes left by an earlier run");
    }
    // Outputs of an earlier run are unknown to the JobMaster now: start clean. So are the
    // control sockets it left under `ctl/` (those of deep attempt folders, see `control`).
    let _ = std::fs::remove_dir_all(config.data_dir.join("partitions"));
    let _ = std::fs::remove_dir_all(config.data_dir.join("ctl"));

    let tls = match &config.security.tls {
        Some(files) => {
            let tls = Tls::load_server(
                files.clone(),
                // Only the jobmaster and executors call an executor.
                ClientAuth::Required,
                &Identity::Executor(config.id.clone()),
            )?;
            tls.spawn_reloader(config.security.reload_interval);
            Some(tls)
        }
        None => None,
    };
    let bound = listener.local_addr().map_err(StartError::Listener)?;
    exposure::check(
        &[bound],
        tls.is_some(),
        config.security.insecure,
        "executor.listen",
    )?;
    let endpoints = crate::api::leader::endpoints(&config.jobmaster)?;
    let gateway = gateway::Gateway::new(endpoints, tls.clone(), config.rpc_timeout)?;
    let (reports, report_rx) = mpsc::unbounded_channel();
    let agent = Arc::new(Agent {
        config: config.clone(),
        session: Mutex::new(new_session_id()),
        state: Mutex::new(State::default()),
        gateway,
        reports,
        epoch: tokio::sync::watch::Sender::new(0),
        tls: tls.clone(),
        task_user,
    });

    let service = TaskExecutorServiceServer::new(service::Service::new(agent.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let (grpc_incoming, acceptor) = incoming(listener, tls.clone());
    let mut server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(GrpcAuthLayer::new(Rules::Executor { tls: tls.is_some() }))
            .add_service(service)
            // With TCP_NODELAY on accepted connections: small replies must not wait for
            // delayed ACKs.
            .serve_with_incoming_shutdown(grpc_incoming, async move {
                let _ = stop_rx.changed().await;
            }),
    );
    let reporter = tokio::spawn(report_loop(agent.clone(), report_rx));
    let connection = tokio::spawn(connection::run(agent.clone()));
    info!(id = %config.id, address = %config.advertise, slots = config.slots, "executor started");

    // The server ends only with the executor: the JobMaster takes "connection refused" at this
    // address for a dead executor whose attempts died with it, and redeploys them at once.
    let server_ended = tokio::select! {
        () = shutdown => {
            info!("executor shutting down");
            None
        }
        ended = &mut server => {
            let why = match ended {
                Ok(Ok(())) => "it ended".to_owned(),
                Ok(Err(e)) => crate::security::connector::describe(&e),
                Err(e) => e.to_string(),
            };
            error!(why = %Escaped(&why), "the executor's grpc server stopped: killing the attempts and exiting");
            Some(why)
        }
    };
    // The attempts die before the heartbeat stream closes: the JobMaster takes a closed stream
    // for a dead executor and redeploys its attempts at once.
    agent.kill_all("executor shutting down", false);
    connection::wait_attempts_gone(&agent, Duration::from_secs(5)).await;
    connection.abort();
    let mut gateway = agent.gateway.client();
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        gateway.disconnect(DisconnectRequest {
            executor_id: config.id.clone(),
            session_id: agent.session(),
            reason: "shutting down".into(),
        }),
    )
    .await;
    let _ = stop_tx.send(true);
    if server_ended.is_none() {
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    }
    acceptor.close().await;
    reporter.abort();
    match server_ended {
        Some(why) => Err(StartError::ServerStopped(why)),
        None => Ok(()),
    }
}

/// Sends state reports in order, retrying while the JobMaster is unreachable. Reports travel
/// in batches: it awaits one, takes whatever else is queued (at most [`MAX_REPORTS`] and
/// [`MAX_REPORT_BYTES`]), and sends them as one UpdateTaskStates call, awaiting the answer
/// before the next call, so the reports of an attempt arrive in the order they happened. A
/// JobMaster without UpdateTaskStates (UNIMPLEMENTED) gets the batch one UpdateTaskState at a
/// time.
async fn report_loop(agent: Arc<Agent>, mut rx: mpsc::UnboundedReceiver<TaskStateUpdate>) {
    let mut batcher = Batcher::default();
    while let Some(updates) = batcher.next(&mut rx, MAX_REPORTS, MAX_REPORT_BYTES).await {
        send_reports(&agent, &updates).await;
        // Answered (or given up on): heartbeats stop naming the attempts that ended.
        let mut state = agent.lock();
        for update in &updates {
            if is_terminal(&update.state)
                && let Some(attempt) = &update.attempt
            {
                state.reporting.remove(&key(attempt));
            }
        }
    }
}

/// Cuts the report queue into batches, in queue order.
#[derive(Default)]
struct Batcher {
    /// A report taken from the queue that did not fit into the previous batch.
    carried: Option<TaskStateUpdate>,
}

impl Batcher {
    /// Awaits a report, then takes whatever else is queued, at most `max` reports and
    /// `max_bytes` encoded bytes (but at least one report). None once the queue is closed and
    /// empty.
    async fn next(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<TaskStateUpdate>,
        max: usize,
        max_bytes: usize,
    ) -> Option<Vec<TaskStateUpdate>> {
        let first = match self.carried.take() {
            Some(update) => update,
            None => rx.recv().await?,
        };
        let mut bytes = first.encoded_len();
        let mut updates = vec![first];
        while updates.len() < max {
            let Ok(next) = rx.try_recv() else {
                break;
            };
            let len = next.encoded_len();
            if bytes + len > max_bytes {
                self.carried = Some(next);
                break;
            }
            bytes += len;
            updates.push(next);
        }
        Some(updates)
    }
}

/// Whether a reported state (by its wire name) ends the attempt.
fn is_terminal(state: &str) -> bool {
    AttemptState::ALL
        .iter()
        .any(|s| s.is_terminal() && s.name() == state)
}

/// Errors that say the JobMaster could not be reached (worth retrying), as opposed to a refusal.
fn is_unreachable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
    )
}

/// Runs `call` until the JobMaster answers, retrying with backoff while it is unreachable, for
/// at most `jobmaster_reconnect_timeout`.
async fn retrying<T, F, Fut>(agent: &Agent, call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + agent.config.jobmaster_reconnect_timeout;
    call.retry(report_backoff())
        .when(|status| is_unreachable(status) && Instant::now() < deadline)
        .notify(|status, _| {
            debug!(code = ?status.code(), message = %Escaped(status.message()),
                   "jobmaster unreachable: retrying reports");
        })
        .await
}

/// Delays between report retries: 50 ms, doubling up to 1 s, without a limit on attempts
/// (the caller's deadline ends them).
fn report_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(50))
        .with_factor(2.0)
        .with_max_delay(Duration::from_secs(1))
        .without_max_times()
}

/// Sends one batch of reports (see [`retrying`]). A refused batch (unknown session: the
/// executor will register again) or a refused update (a stale attempt: the JobMaster cancels
/// it) is dropped.
async fn send_reports(agent: &Agent, updates: &[TaskStateUpdate]) {
    let answer = retrying(agent, || {
        // A re-registration changes the session: report under the current one.
        let request = UpdateTaskStatesRequest {
            executor_id: agent.config.id.clone(),
            session_id: agent.session(),
            updates: updates.to_vec(),
        };
        let mut gateway = agent.gateway.client();
        async move { gateway.update_task_states(request).await }
    })
    .await;
    match answer {
        Ok(answer) => {
            let outcomes = answer.into_inner().outcomes;
            for (update, outcome) in updates.iter().zip(&outcomes) {
                if !outcome.accepted {
                    let attempt = update.attempt.clone().unwrap_or_default();
                    debug!(job = %attempt.job_id, task = %format!("{}#{}", attempt.vertex, attempt.subtask),
                           attempt = attempt.attempt, state = %update.state, code = %Escaped(&outcome.code),
                           message = %Escaped(&outcome.message), "report refused");
                }
            }
        }
        // No batch RPC (an older JobMaster), or a batch over the JobMaster's message limit
        // (`server.max-message-bytes` set below MAX_REPORT_BYTES): one by one instead.
        Err(status)
            if status.code() == tonic::Code::Unimplemented
                || (status.code() == tonic::Code::ResourceExhausted && updates.len() > 1) =>
        {
            debug!(code = ?status.code(), reports = updates.len(),
                   "batch not taken: reporting one by one");
            for update in updates {
                send_report(agent, update).await;
            }
        }
        Err(status) => {
            // Unknown session (the executor registers again) or the JobMaster stayed away.
            debug!(code = ?status.code(), message = %Escaped(status.message()), reports = updates.len(),
                   "reports refused");
        }
    }
}

/// Sends one report over the unary UpdateTaskState, with the same retries as a batch.
async fn send_report(agent: &Agent, update: &TaskStateUpdate) {
    let answer = retrying(agent, || {
        let request = UpdateTaskStateRequest {
            executor_id: agent.config.id.clone(),
            session_id: agent.session(),
            attempt: update.attempt.clone(),
            state: update.state.clone(),
            failure_class: update.failure_class.clone(),
            message: update.message.clone(),
            missing_partition: update.missing_partition.clone(),
        };
        let mut gateway = agent.gateway.client();
        async move { gateway.update_task_state(request).await }
    })
    .await;
    if let Err(status) = answer {
        // Stale attempt or unknown session: the JobMaster has moved on.
        debug!(code = ?status.code(), message = %Escaped(status.message()), "report refused");
    }
}

/// Registers with the JobMaster under the current session, adopting its epoch. The heartbeats
/// that follow, and what happens when they fail, are [`connection`]'s.
async fn register(agent: &Arc<Agent>) -> Result<RegisterExecutorResponse, tonic::Status> {
    register_at(agent, agent.gateway.client(), agent.session()).await
}

/// [`register`] at the JobMaster behind `gateway` (one the executor may not follow yet),
/// under `session_id`.
async fn register_at(
    agent: &Arc<Agent>,
    mut gateway: crate::api::v1::task_executor_gateway_client::TaskExecutorGatewayClient<
        tonic::transport::Channel,
    >,
    session_id: String,
) -> Result<RegisterExecutorResponse, tonic::Status> {
    // What it holds: a JobMaster that restarted adopts the attempts it still expects.
    let (attempts, partitions) = {
        let state = agent.lock();
        let held = |attempt: &AttemptRef, s: AttemptState| HeldAttempt {
            attempt: Some(attempt.clone()),
            state: s.name().to_owned(),
        };
        (
            state
                .attempts
                .values()
                .map(|r| held(&r.attempt, r.state))
                .chain(state.reporting.values().map(|(a, s)| held(a, *s)))
                .collect(),
            state.partitions.clone(),
        )
    };
    let registered = gateway
        .register_executor(RegisterExecutorRequest {
            executor_id: agent.config.id.clone(),
            address: agent.config.advertise.clone(),
            slots: agent.config.slots,
            session_id,
            free_disk_bytes: agent.free_disk(),
            labels: agent.config.labels.clone().into_iter().collect(),
            attempts,
            partitions,
        })
        .await?
        .into_inner();
    agent.adopt_epoch(registered.epoch);
    Ok(registered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(subtask: u32, message: &str) -> TaskStateUpdate {
        TaskStateUpdate {
            attempt: Some(AttemptRef {
                subtask,
                ..AttemptRef::default()
            }),
            state: AttemptState::Canceled.name().into(),
            message: message.to_owned(),
            ..TaskStateUpdate::default()
        }
    }

    fn subtasks(batch: &[TaskStateUpdate]) -> Vec<u32> {
        batch
            .iter()
            .map(|u| u.attempt.as_ref().map_or(u32::MAX, |a| a.subtask))
            .collect()
    }

    #[tokio::test]
    async fn queued_reports_leave_in_order_in_batches_capped_by_count() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 0..2500 {
            tx.send(update(i, "")).expect("queue open");
        }
        drop(tx);
        let mut batcher = Batcher::default();
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        while let Some(batch) = batcher.next(&mut rx, 1000, usize::MAX).await {
            sizes.push(batch.len());
            all.extend(subtasks(&batch));
        }
        assert_eq!(sizes, vec![1000, 1000, 500]);
        assert_eq!(all, (0..2500).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_batch_is_capped_by_size_and_the_report_that_did_not_fit_comes_next() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let big = "x".repeat(400);
        // Subtasks 1..=5: each report has the same encoded size.
        for i in 1..=5 {
            tx.send(update(i, &big)).expect("queue open");
        }
        let one = update(1, &big).encoded_len();
        let mut batcher = Batcher::default();
        // Two fit under the cap; the third is carried into the next batch, not lost.
        let first = batcher.next(&mut rx, 1000, 2 * one + 1).await;
        assert_eq!(first.as_deref().map(subtasks), Some(vec![1, 2]));
        // A cap smaller than one report still sends that report alone.
        let second = batcher.next(&mut rx, 1000, 1).await;
        assert_eq!(second.as_deref().map(subtasks), Some(vec![3]));
        drop(tx);
        let rest = batcher.next(&mut rx, 1000, usize::MAX).await;
        assert_eq!(rest.as_deref().map(subtasks), Some(vec![4, 5]));
        assert!(batcher.next(&mut rx, 1000, usize::MAX).await.is_none());
    }

    #[test]
    fn report_retries_wait_50ms_doubling_up_to_1s_without_a_count_limit() {
        use backon::BackoffBuilder;
        let delays: Vec<Duration> = report_backoff().build().take(8).collect();
        let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![50, 100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn terminal_states_are_the_cores() {
        for s in AttemptState::ALL {
            assert_eq!(is_terminal(s.name()), s.is_terminal(), "{s}");
        }
        assert!(!is_terminal("finished"));
    }
}
