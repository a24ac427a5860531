//! The daemon in-process: `jobmaster::server::serve` on its own runtime (threads `jmd`) on
//! 127.0.0.1, so its CPU time can be told apart from the load generator's.
//!
//! Its store (issue 14) is the daemon's default, an embedded redb file with fsync, in a fresh
//! temporary state dir unless `--state-dir` names one; `--store memory` persists nothing (as
//! before issue 14), `--no-fsync` skips the fsync. `restart` stops a daemon as a crash does
//! ([`InProcessDaemon::crash`]: its runtime is dropped, nothing shuts down gracefully) and
//! starts another on the same port and state dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use jobmaster::settings::{Settings, StoreBackend};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::Common;
use crate::tls::TlsSetup;

/// How a scenario wants its in-process daemon, beyond the command line.
#[derive(Clone, Default)]
pub(crate) struct Setup {
    /// Bind this gRPC address (a restarted daemon takes its predecessor's) instead of port 0.
    pub(crate) grpc: Option<SocketAddr>,
    /// Bind this HTTP address instead of port 0.
    pub(crate) http: Option<SocketAddr>,
    /// Keep the default retention of ended jobs (`jobs.retain-ended`, `store.retain-ended-jobs`)
    /// instead of jmload's short one (10 jobs, 5 s), which `churn` waits for.
    pub(crate) default_retention: bool,
    /// The state dir (else `--state-dir`, else a fresh temporary one).
    pub(crate) state_dir: Option<PathBuf>,
}

pub(crate) struct InProcessDaemon {
    /// Its gRPC address.
    pub(crate) grpc: SocketAddr,
    /// Its HTTP port (dashboard, JSON API and /metrics).
    pub(crate) http: SocketAddr,
    /// Its state dir (`None` with `--store memory`).
    pub(crate) state_dir: Option<PathBuf>,
    /// Whether jmload made the state dir (and deletes it at the end).
    pub(crate) temporary: bool,
    runtime: Option<tokio::runtime::Runtime>,
    serving: Option<tokio::task::JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
}

/// A fresh, empty state dir under the system's temporary directory.
pub(crate) fn temporary_state_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("jmload-state-{}-{nanos:x}", std::process::id()))
}

/// The daemon's settings: the configuration file (or the defaults), jmload's overrides, the
/// command line's store options.
fn settings(common: &Common, setup: &Setup) -> Result<(Settings, Option<PathBuf>, bool)> {
    let mut settings = Settings::load(common.daemon_config.as_deref())?;
    settings.server.shutdown_grace = Duration::from_secs(1);
    // Scenarios fail the same regions over and over on purpose: the per-region restart budget
    // (30 within 1h by default) would end a long run, so it is off unless a config sets it.
    if common.daemon_config.is_none() {
        settings.scheduler.region_restart_budget.max_restarts = 0;
        if !setup.default_retention {
            // `churn` waits for ended jobs to be dropped: keep few, briefly.
            settings.jobs.retain_ended.count = 10;
            settings.jobs.retain_ended.age = Duration::from_secs(5);
        }
    }
    if let Some(store) = common.store {
        settings.store.backend = store.backend();
    }
    if common.no_fsync {
        settings.store.fsync = false;
    }
    if settings.store.backend == StoreBackend::Memory {
        return Ok((settings, None, false));
    }
    let (dir, temporary) = match (&setup.state_dir, &common.state_dir) {
        (Some(dir), _) | (None, Some(dir)) => (dir.clone(), false),
        (None, None) => (temporary_state_dir(), true),
    };
    settings.store.dir = dir.clone();
    Ok((settings, Some(dir), temporary))
}

/// Starts `jobmaster::server::serve` on its own runtime (threads `jmd`) on 127.0.0.1 (port 0
/// unless `setup.grpc`), with TLS and the token file of `tls` if given (then the URL is
/// https). Returns its URL and an instant at most a fraction of a millisecond before the
/// daemon's start (on a fresh store, its clock zero: WatchEvent.time_ms counts from there).
pub(crate) fn start_in_process(
    common: &Common,
    tls: Option<&TlsSetup>,
    setup: &Setup,
) -> Result<(String, InProcessDaemon, Instant)> {
    let (mut settings, state_dir, temporary) = settings(common, setup)?;
    if let Some(tls) = tls {
        tls.apply(&mut settings);
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let bind = setup
        .grpc
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let grpc = std::net::TcpListener::bind(bind).with_context(|| format!("binding {bind}"))?;
    grpc.set_nonblocking(true)?;
    let http_bind = setup
        .http
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let http =
        std::net::TcpListener::bind(http_bind).with_context(|| format!("binding {http_bind}"))?;
    http.set_nonblocking(true)?;
    let addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common.daemon_threads.max(1))
        .thread_name("jmd")
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let origin = Instant::now();
    let serving = runtime.spawn(async move {
        let result = async {
            let grpc = TcpListener::from_std(grpc)?;
            let http = TcpListener::from_std(http)?;
            jobmaster::server::serve(settings, grpc, http, async {
                let _ = stop_rx.await;
            })
            .await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = result {
            eprintln!("jmload: the in-process daemon failed: {e:#}");
        }
    });
    Ok((
        format!("{scheme}://{addr}"),
        InProcessDaemon {
            grpc: addr,
            http: http_addr,
            state_dir,
            temporary,
            runtime: Some(runtime),
            serving: Some(serving),
            stop: Some(stop_tx),
        },
        origin,
    ))
}

impl InProcessDaemon {
    /// Shuts the daemon down gracefully (its store is closed cleanly).
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;
        }
        self.drop_runtime().await;
    }

    /// Stops the daemon as a crash would, as far as a process can do it to a part of itself:
    /// its runtime is dropped, so every task stops at its next await (no graceful shutdown,
    /// connections reset, nothing more committed). The store file is closed by redb's `Drop`,
    /// which marks it clean — unlike a kill -9 (see `restart --stop kill`).
    pub(crate) async fn crash(mut self) {
        // Held until the runtime is gone: a dropped sender would start the graceful shutdown.
        let _stop = self.stop.take();
        self.serving.take();
        self.drop_runtime().await;
    }

    async fn drop_runtime(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // A runtime may not be dropped inside another one's async context.
            let _ = tokio::task::spawn_blocking(move || {
                runtime.shutdown_timeout(Duration::from_secs(2))
            })
            .await;
        }
    }
}
