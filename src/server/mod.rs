//! The `jobmaster` daemon: the gRPC shell around the core (DESIGN §4, §5).
//!
//! [`serve`] takes bound listeners and a shutdown future, so the binary passes Ctrl-C/SIGTERM
//! and tests pass port-0 listeners.

mod committer;
mod coordinator;
mod dispatcher;
mod error;
mod exposition;
mod gateway;
mod http;
mod logs;
pub mod memory;
mod metrics;
mod operator;
mod read_model;
mod retention;
pub(crate) mod standby;
mod timers;

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{error, info, warn};

pub use error::ApiError;

use crate::api::v1::WatchEvent;
use crate::api::v1::job_master_service_server::JobMasterServiceServer;
use crate::api::v1::task_executor_gateway_server::TaskExecutorGatewayServer;
use crate::core::{CoreConfig, ExecutorId, JobId, Labels, QuarantineConfig, RestartBudgetConfig};
use crate::log_text::Escaped;
use crate::security::auth::{GrpcAuthLayer, Guard, Rules};
use crate::security::incoming::{HttpListener, Peer, incoming};
use crate::security::tls::{ClientAuth, Tls, TlsError};
use crate::security::tokens::{TokenFileError, Tokens};
use crate::security::{Identity, exposure};
use crate::settings::Settings;
use coordinator::{Coordinator, Request};

/// This JobMaster as the leader (`jmctl leader`, the dashboard).
#[derive(Debug, Clone, Default)]
pub(crate) struct LeaderInfo {
    /// `none` (a single JobMaster on its embedded store) or `etcd`.
    pub(crate) ha_mode: &'static str,
    /// Its gRPC endpoint as executors and operators reach it.
    pub(crate) endpoint: String,
    /// Its key in the election (empty without HA).
    pub(crate) key: String,
    /// When it started leading, ms since the Unix epoch.
    pub(crate) since_unix_ms: u64,
}

/// What every handler shares: settings, the coordinator's inbox, the executor registry.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    /// The JobMaster's epoch (leader term): greater than the stored one of the JobMaster
    /// before it (and at least its start time in ms since the Unix epoch), so a restarted
    /// JobMaster always has a newer one. Every command to executors carries it.
    pub(crate) epoch: u64,
    pub(crate) start: Instant,
    /// The core's time at `start`: its clock goes on across restarts (see `store::Meta`).
    pub(crate) core_offset_ms: u64,
    /// True while a restarted JobMaster reconciles with its executors: reports of executors
    /// that have not registered again yet are answered UNAVAILABLE (retry), not refused.
    pub(crate) reconciling: std::sync::atomic::AtomicBool,
    /// Starts of a JobMaster on this store that found state in it (this one included).
    pub(crate) recoveries: u64,
    /// Bytes the store takes on disk (updated after commits).
    pub(crate) store_bytes: std::sync::atomic::AtomicU64,
    pub(crate) tx: mpsc::Sender<Request>,
    /// Read-mostly executor registry: heartbeats update it without going through the
    /// coordinator; only the coordinator adds and removes entries.
    pub(crate) executors: DashMap<ExecutorId, ExecutorStatus>,
    pub(crate) events: broadcast::Sender<WatchEvent>,
    /// Becomes true when shutdown starts: long-lived streams (heartbeats, WatchEvents) end
    /// with UNAVAILABLE, so graceful shutdown need not wait them out.
    pub(crate) stopping: watch::Sender<bool>,
    /// The JobMaster's TLS (`None`: plain text): its server side and its executor clients.
    pub(crate) tls: Option<Arc<Tls>>,
    /// Who may call what.
    pub(crate) guard: Arc<Guard>,
    /// What operators and the dashboard read (published by the coordinator).
    pub(crate) read: Arc<read_model::ReadModel>,
    /// This JobMaster as the leader: how it was chosen and how executors reach it.
    pub(crate) leader: LeaderInfo,
    /// With HA: the lease its leadership rides on (`None`: it leads for as long as it runs).
    pub(crate) leadership: Option<Arc<crate::ha::lease::Leadership>>,
    /// Wall-clock time of core time 0 (ms since the Unix epoch).
    pub(crate) origin_unix_ms: u64,
}

pub(crate) struct ExecutorStatus {
    pub(crate) address: String,
    pub(crate) session: String,
    pub(crate) last_heartbeat: Instant,
    pub(crate) free_disk: u64,
    pub(crate) partitions: u32,
    /// Consecutive failed RPCs (transport errors only).
    pub(crate) rpc_failures: u32,
    /// Asked to fence itself (commands to it kept failing without proof that it is gone):
    /// its heartbeats are answered `reregister` and no longer count, so it is lost once it
    /// registers again (after killing its attempts) or at the heartbeat timeout.
    pub(crate) fencing: bool,
    /// A loss was already reported for this session.
    pub(crate) lost_reported: bool,
    /// The labels it registered with (its failure domains).
    pub(crate) labels: Labels,
}

impl ExecutorStatus {
    fn new(address: String, session: String, free_disk: u64, labels: Labels) -> ExecutorStatus {
        ExecutorStatus {
            address,
            session,
            last_heartbeat: Instant::now(),
            free_disk,
            partitions: 0,
            rpc_failures: 0,
            fencing: false,
            lost_reported: false,
            labels,
        }
    }
}

impl Shared {
    /// The core's clock: milliseconds since the first JobMaster on this store started.
    /// Whether this JobMaster may still act as the leader (orders leave only while it does).
    pub(crate) fn leads(&self) -> bool {
        self.leadership.as_ref().is_none_or(|l| l.is_held())
    }

    pub(crate) fn now(&self) -> u64 {
        self.core_offset_ms + self.start.elapsed().as_millis() as u64
    }

    /// When the core's time `at` comes, as an instant of this process.
    pub(crate) fn instant_of(&self, at: u64) -> Instant {
        self.start + std::time::Duration::from_millis(at.saturating_sub(self.core_offset_ms))
    }

    /// Wall-clock time now, ms since the Unix epoch (`origin_unix_ms + now()`: the same clock
    /// as the read model's times).
    pub(crate) fn wall_ms(&self) -> u64 {
        self.origin_unix_ms + self.now()
    }

    pub(crate) fn rpc_succeeded(&self, executor: &ExecutorId) {
        if let Some(mut s) = self.executors.get_mut(executor) {
            s.rpc_failures = 0;
        }
    }

    /// Counts a failed RPC (transport failures only). At `heartbeat.rpc-failure-threshold`
    /// consecutive failures:
    /// - if this one was *connection refused*, nothing listens at the executor's address: its
    ///   process is gone (the executor ends when its server does), and its attempts with it (the
    ///   shims kill them when their lifeline closes). It is declared lost at once.
    /// - otherwise (timeouts, a reset, an unreachable host) it may be cut off while its attempts
    ///   still run. Declaring it lost now would redeploy them beside the running ones, so it is
    ///   asked to fence itself instead ([`ExecutorStatus::fencing`]): its heartbeats are answered
    ///   `reregister` (it kills its attempts, then registers under a new session, which loses
    ///   the old one) and stop counting, so the heartbeat timeout loses it if it does not hear
    ///   that — by then it has fenced itself, as its heartbeats went unanswered.
    pub(crate) async fn rpc_failed(&self, executor: &ExecutorId, status: &tonic::Status) {
        if !coordinator::is_transient(status) {
            return;
        }
        let refused = crate::security::connector::connection_refused(status);
        let threshold = self.settings.heartbeat.rpc_failure_threshold;
        // (lose it: its session; or ask it to fence), with the count of failures.
        let verdict = self.executors.get_mut(executor).and_then(|mut s| {
            s.rpc_failures += 1;
            if threshold == 0 || s.rpc_failures < threshold || s.lost_reported || s.fencing {
                return None;
            }
            if refused {
                s.lost_reported = true;
                Some((Some(s.session.clone()), s.rpc_failures))
            } else {
                s.fencing = true;
                Some((None, s.rpc_failures))
            }
        });
        match verdict {
            Some((Some(session), failures)) => {
                let _ = self
                    .tx
                    .send(Request::Lose {
                        executor: executor.clone(),
                        session: Some(session),
                        reason: format!(
                            "{failures} consecutive RPCs failed, the last refused (its process \
                             is gone): {}",
                            status.message()
                        ),
                        evidence: Instant::now(),
                    })
                    .await;
            }
            Some((None, failures)) => {
                warn!(executor = %Escaped(&executor.0), failures, code = ?status.code(),
                      message = %Escaped(status.message()),
                      "commands to the executor fail: asking it to fence itself and register again");
            }
            None => {}
        }
    }

    /// Sends a request to the coordinator and awaits its reply.
    pub(crate) async fn ask<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, ApiError>>) -> Request,
    ) -> Result<T, ApiError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| ApiError::ShuttingDown)?;
        answer.await.map_err(|_| ApiError::ShuttingDown)?
    }

    /// Runs `f` on the coordinator and returns its result.
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Coordinator) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.ask(|reply| Request::With(Box::new(move |c| coordinator::answer(reply, f(c)))))
            .await
    }
}

/// tonic answers a request over `max_decoding_message_size` with OUT_OF_RANGE; our API
/// promises RESOURCE_EXHAUSTED (the client should send less, not fix a value).
fn oversize_is_resource_exhausted<B>(
    mut response: axum::http::Response<B>,
) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    let too_large = headers.get("grpc-status").is_some_and(|v| v == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| m.contains("too%20large") || m.contains("too large"));
    if too_large {
        headers.insert("grpc-status", axum::http::HeaderValue::from_static("8"));
    }
    response
}

/// Parses a job id (16 hex digits).
/// `[scheduler.quarantine]` for the core.
fn quarantine_config(q: &crate::settings::QuarantineSettings) -> QuarantineConfig {
    QuarantineConfig {
        max_task_failures: q.max_task_failures,
        max_losses: q.max_losses,
        window_ms: q.window.as_millis() as u64,
        duration_ms: q.duration.as_millis() as u64,
    }
}

pub(crate) fn parse_job_id(text: &str) -> Result<JobId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::InvalidArgument(format!("job_id {text:?} is not a job id (16 hex digits)"))
    })
}

/// Why [`serve`] ended other than by its shutdown future.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read the listeners' addresses: {0}")]
    Listener(#[from] std::io::Error),
    #[error("cannot build the gRPC reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The coordinator (the one owner of the core) panicked: nothing can be decided any more,
    /// so the process must end and a supervisor restart it.
    #[error("the coordinator panicked: {0}")]
    CoordinatorPanicked(String),
    #[error("the coordinator stopped unexpectedly")]
    CoordinatorStopped,
    #[error("{0}")]
    Config(String),
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("auth.token-file: {0}")]
    TokenFile(#[from] TokenFileError),
    #[error(transparent)]
    Exposed(#[from] exposure::Exposed),
    /// The store cannot be opened, read or written: the process ends (exit code 2 at start)
    /// rather than act on decisions it could not make durable.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Restore(#[from] crate::core::RestoreError),
}

/// Loads `[tls]` and `[auth]`, and refuses a non-loopback listen address that they would
/// leave open (unless `server.insecure`).
fn security(
    settings: &Settings,
    addresses: &[std::net::SocketAddr],
) -> Result<(Option<Arc<Tls>>, Arc<Guard>), ServeError> {
    let tls = match settings
        .tls
        .files()
        .map_err(|e| ServeError::Config(e.to_string()))?
    {
        Some(files) => {
            let tls = Tls::load_server(files, ClientAuth::Optional, &Identity::JobMaster)?;
            tls.spawn_reloader(settings.tls.reload_interval);
            Some(tls)
        }
        None => None,
    };
    let tokens = match settings.auth.token_file.as_str() {
        "" => None,
        path => {
            let tokens = Tokens::load(std::path::Path::new(path))?;
            tokens.spawn_reloader(settings.tls.reload_interval);
            Some(tokens)
        }
    };
    if tls.is_none() && tokens.is_some() {
        warn!(
            "auth.token-file without tls: operators need tokens, but executors are not \
             authenticated (anyone who reaches the gRPC port can register one); configure [tls] \
             beyond a single machine"
        );
    }
    exposure::check(
        addresses,
        tls.is_some(),
        settings.server.insecure,
        "server.listen and server.http",
    )?;
    Ok((
        tls.clone(),
        Arc::new(Guard {
            tls: tls.is_some(),
            tokens,
            metrics_open: settings.auth.metrics_open,
        }),
    ))
}

/// Waits for `shutdown`, or for the coordinator to end first — which only a bug does (a panic
/// in the core): then the daemon could only answer UNAVAILABLE forever, so it is an error
/// that ends [`serve`] and the process.
async fn supervise(
    shutdown: impl Future<Output = ()>,
    coordinator: &mut tokio::task::JoinHandle<Result<(), crate::store::StoreError>>,
) -> Result<(), ServeError> {
    tokio::select! {
        // A coordinator that failed is reported even when a shutdown came at the same time.
        biased;
        ended = &mut *coordinator => Err(match ended {
            Ok(Err(e)) => ServeError::Store(e),
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".to_owned());
                ServeError::CoordinatorPanicked(message)
            }
            _ => ServeError::CoordinatorStopped,
        }),
        () = shutdown => Ok(()),
    }
}

/// Runs the daemon on `grpc` (gRPC) and `http` (liveness page) until `shutdown` completes.
///
/// Returns an error if the coordinator dies first (see [`ServeError::CoordinatorPanicked`]);
/// the servers are stopped before it returns.
pub async fn serve(
    settings: Settings,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let store = crate::store::open(&settings)?;
    serve_with_store(settings, store, grpc, http, shutdown).await
}

/// [`serve`] on an opened store (the binary opens it first, to exit with code 2 when it
/// cannot be used).
pub async fn serve_with_store(
    settings: Settings,
    store: Box<dyn crate::store::Store>,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_led(settings, store, grpc, http, shutdown, None).await
}

/// How an elected JobMaster leads (`ha.mode = "etcd"`, see [`crate::ha`]).
pub struct Lead {
    /// Its leader key's create revision.
    pub epoch: u64,
    /// Its leader key in etcd.
    pub key: String,
    /// The gRPC endpoint it proclaimed.
    pub endpoint: String,
    pub leadership: Arc<crate::ha::lease::Leadership>,
}

/// [`serve_with_store`] as the leader `lead` (`None`: the only JobMaster, whose epoch grows
/// from the stored one).
pub async fn serve_led(
    settings: Settings,
    mut store: Box<dyn crate::store::Store>,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    lead: Option<Lead>,
) -> Result<(), ServeError> {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1);
    let loaded = store.load()?;
    // The epoch grows across restarts whatever the clock does (an elected leader's is its
    // leader key's revision, which grows across leaders); core time goes on from the first
    // JobMaster's start.
    let meta = match loaded.meta {
        Some(m) => crate::store::Meta {
            epoch: (m.epoch + 1).max(wall),
            origin_unix_ms: m.origin_unix_ms.min(wall),
            recoveries: m.recoveries + 1,
        },
        None => crate::store::Meta {
            epoch: wall,
            origin_unix_ms: wall,
            recoveries: 0,
        },
    };
    let meta = match &lead {
        Some(l) => crate::store::Meta {
            epoch: l.epoch,
            ..meta
        },
        None => meta,
    };
    // Durable before any executor hears the epoch.
    store.commit(crate::store::Batch::synced(Some(meta)))?;
    let epoch = meta.epoch;
    let grpc_addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    let (tls, guard) = security(&settings, &[grpc_addr, http_addr])?;
    let (tx, rx) = mpsc::channel(4096);
    let (events, _) = broadcast::channel(settings.events.buffer);
    let shared = Arc::new(Shared {
        settings: settings.clone(),
        epoch,
        start: Instant::now(),
        core_offset_ms: wall - meta.origin_unix_ms,
        recoveries: meta.recoveries,
        reconciling: Default::default(),
        store_bytes: store.size_bytes().into(),
        tx,
        executors: DashMap::new(),
        events,
        stopping: watch::Sender::new(false),
        tls: tls.clone(),
        guard: guard.clone(),
        read: Arc::default(),
        origin_unix_ms: meta.origin_unix_ms,
        leader: match &lead {
            Some(l) => LeaderInfo {
                ha_mode: "etcd",
                endpoint: l.endpoint.clone(),
                key: l.key.clone(),
                since_unix_ms: wall,
            },
            None => LeaderInfo {
                ha_mode: "none",
                endpoint: format!(
                    "{}://{grpc_addr}",
                    if tls.is_some() { "https" } else { "http" }
                ),
                key: String::new(),
                since_unix_ms: wall,
            },
        },
        leadership: lead.map(|l| l.leadership),
    });
    let config = CoreConfig {
        slot_request_timeout_ms: settings.scheduler.slot_request_timeout.as_millis() as u64,
        cancel_timeout_ms: settings.scheduler.cancel_timeout.as_millis() as u64,
        exception_history_size: settings.scheduler.exception_history_size,
        attempt_history_size: 16,
        unseen_grace_ms: settings.heartbeat.timeout.as_millis() as u64,
        seed: if settings.scheduler.seed == 0 {
            epoch
        } else {
            settings.scheduler.seed
        },
        placement: settings.scheduler.placement,
        placement_domain: settings.scheduler.placement_domain(),
        quarantine: quarantine_config(&settings.scheduler.quarantine),
        region_restart_budget: RestartBudgetConfig {
            max_restarts: settings.scheduler.region_restart_budget.max_restarts,
            window_ms: settings.scheduler.region_restart_budget.window.as_millis() as u64,
        },
    };
    let coordinator = Coordinator::restore(config, loaded.jobs, store, shared.clone())?;
    let mut coordinator = tokio::spawn(coordinator.run(rx));
    let watchdog = tokio::spawn(gateway::watchdog(shared.clone()));

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<JobMasterServiceServer<operator::Operator>>()
        .await;
    health_reporter
        .set_serving::<TaskExecutorGatewayServer<gateway::Gateway>>()
        .await;
    // Both reflection versions: grpcurl and current clients speak v1, grpcio's reflection
    // client and older grpcurl only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let limit = settings.server.max_message_bytes;
    let operator = JobMasterServiceServer::new(operator::Operator::new(shared.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let gateway = TaskExecutorGatewayServer::new(gateway::Gateway::new(shared.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);

    info!(
        grpc = %grpc_addr,
        http = %http_addr,
        epoch,
        tls = tls.is_some(),
        tokens = guard.tokens.is_some(),
        "jobmaster listening"
    );

    let (stop_tx, _) = broadcast::channel::<()>(1);
    let mut stop_grpc = stop_tx.subscribe();
    let mut stop_http = stop_tx.subscribe();
    let (grpc_incoming, grpc_acceptor) = incoming(grpc, tls.clone());
    let (http_listener, http_acceptor) = HttpListener::new(http, tls.clone())?;
    let grpc_server = tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(
            oversize_is_resource_exhausted,
        ))
        .layer(GrpcAuthLayer::new(Rules::JobMaster(guard.clone())))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(operator)
        .add_service(gateway)
        .serve_with_incoming_shutdown(
            // With TCP_NODELAY: small replies must not wait for delayed ACKs (~40 ms per
            // report otherwise).
            grpc_incoming,
            async move {
                let _ = stop_grpc.recv().await;
            },
        );
    let app = http::router(shared.clone());
    let http_server = axum::serve(
        http_listener,
        app.into_make_service_with_connect_info::<Peer>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop_http.recv().await;
    });
    let mut grpc_task = tokio::spawn(grpc_server);
    let mut http_task = tokio::spawn(async move { http_server.await });

    let outcome = supervise(shutdown, &mut coordinator).await;
    match &outcome {
        Ok(()) => info!("shutting down"),
        Err(e) => {
            error!(error = %e, "coordinator failed: stopping so that a supervisor restarts the jobmaster")
        }
    }
    shared.stopping.send_replace(true);
    let _ = stop_tx.send(());
    // Closed first: an executor that reconnects now must find nothing listening ("connection
    // refused": the JobMaster is gone, it keeps its tasks for the next one), not a backlog that
    // nobody accepts from until the grace period is over, which looks like a partition and
    // makes it fence its tasks.
    grpc_acceptor.close().await;
    let grace = settings.server.shutdown_grace;
    let (mut grpc_done, mut http_done) = (None, None);
    let in_time = tokio::time::timeout(grace, async {
        grpc_done = Some((&mut grpc_task).await);
        http_done = Some((&mut http_task).await);
    })
    .await
    .is_ok();
    if !in_time {
        warn!(grace = ?grace, "in-flight requests did not finish within the grace period");
    }
    // Stop serving for good (a detached server would keep the port), and wait until the
    // listeners are really closed: aborting is asynchronous.
    if grpc_done.is_none() {
        grpc_task.abort();
        grpc_done = Some(grpc_task.await);
    }
    if http_done.is_none() {
        http_task.abort();
        http_done = Some(http_task.await);
    }
    http_acceptor.close().await;
    if let Some(Ok(Err(e))) = grpc_done {
        warn!(error = %e, "grpc server ended with an error");
    }
    if let Some(Ok(Err(e))) = http_done {
        warn!(error = %e, "http server ended with an error");
    }
    watchdog.abort();
    coordinator.abort();
    // The coordinator owns the store: it is closed (and its lock released) before `serve`
    // returns, so a JobMaster started next on the same state dir can open it.
    if !coordinator.is_finished() {
        let _ = coordinator.await;
    }
    outcome
}

/// Tests: shared state whose coordinator inbox (of `capacity` requests) nobody serves.
#[cfg(test)]
pub(crate) fn unserved(
    capacity: usize,
    read: Arc<read_model::ReadModel>,
) -> (Arc<Shared>, mpsc::Receiver<Request>) {
    let settings = Settings::load_from(None, Vec::new()).expect("default settings");
    let (tx, rx) = mpsc::channel(capacity);
    let (events, _) = broadcast::channel(16);
    let shared = Arc::new(Shared {
        settings,
        epoch: 1,
        start: Instant::now(),
        core_offset_ms: 0,
        recoveries: 0,
        reconciling: Default::default(),
        store_bytes: Default::default(),
        tx,
        executors: DashMap::new(),
        events,
        stopping: watch::Sender::new(false),
        tls: None,
        guard: Arc::new(Guard {
            tls: false,
            tokens: None,
            metrics_open: false,
        }),
        read,
        origin_unix_ms: 1_000_000,
        leader: LeaderInfo::default(),
        leadership: None,
    });
    (shared, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_coordinator_panic_ends_the_daemon_with_its_message() {
        let mut coordinator = tokio::spawn(async {
            panic!("slot index out of date");
            #[allow(unreachable_code)]
            Ok(())
        });
        let outcome = supervise(std::future::pending(), &mut coordinator).await;
        match outcome {
            Err(ServeError::CoordinatorPanicked(message)) => {
                assert_eq!(message, "slot index out of date")
            }
            other => panic!("expected a coordinator panic, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn shutdown_ends_the_daemon_cleanly_while_the_coordinator_runs() {
        let mut coordinator =
            tokio::spawn(std::future::pending::<Result<(), crate::store::StoreError>>());
        let outcome = supervise(async {}, &mut coordinator).await;
        assert!(outcome.is_ok(), "{outcome:?}");
        assert!(!coordinator.is_finished());
        coordinator.abort();
    }
}
