//! The daemon in-process: `jobmaster::server::serve` on its own runtime (threads `jmd`) on
//! 127.0.0.1 port 0, so its CPU time can be told apart from the load generator's.

use std::time::{Duration, Instant};

use anyhow::Result;
use jobmaster::settings::Settings;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::Common;
use crate::tls::TlsSetup;

pub(crate) struct InProcessDaemon {
    /// Its HTTP port (dashboard and JSON API).
    pub(crate) http: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
}

/// Starts `jobmaster::server::serve` on its own runtime (threads `jmd`) on 127.0.0.1 port 0,
/// with TLS and the token file of `tls` if given (then the URL is https).
/// Returns its URL and an instant at most a fraction of a millisecond before the daemon's
/// clock zero (WatchEvent.time_ms counts from there).
pub(crate) fn start_in_process(
    common: &Common,
    tls: Option<&TlsSetup>,
) -> Result<(String, InProcessDaemon, Instant)> {
    let mut settings = Settings::load(common.daemon_config.as_deref())?;
    settings.server.shutdown_grace = Duration::from_secs(1);
    // Scenarios fail the same regions over and over on purpose: the per-region restart budget
    // (30 within 1h by default) would end a long run, so it is off unless a config sets it.
    if common.daemon_config.is_none() {
        settings.scheduler.region_restart_budget.max_restarts = 0;
        // `churn` waits for ended jobs to be dropped: keep few, briefly.
        settings.jobs.retain_ended.count = 10;
        settings.jobs.retain_ended.age = Duration::from_secs(5);
    }
    if let Some(tls) = tls {
        tls.apply(&mut settings);
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let grpc = std::net::TcpListener::bind("127.0.0.1:0")?;
    grpc.set_nonblocking(true)?;
    let http = std::net::TcpListener::bind("127.0.0.1:0")?;
    http.set_nonblocking(true)?;
    let addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common.daemon_threads.max(1))
        .thread_name("jmd")
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let origin = Instant::now();
    std::thread::Builder::new()
        .name("jmd-main".into())
        .spawn(move || {
            let result = runtime.block_on(async move {
                let grpc = TcpListener::from_std(grpc)?;
                let http = TcpListener::from_std(http)?;
                jobmaster::server::serve(settings, grpc, http, async {
                    let _ = stop_rx.await;
                })
                .await
            });
            if let Err(e) = result {
                eprintln!("jmload: the in-process daemon failed: {e:#}");
            }
            runtime.shutdown_timeout(Duration::from_secs(2));
            let _ = done_tx.send(());
        })?;
    Ok((
        format!("{scheme}://{addr}"),
        InProcessDaemon {
            http: http_addr,
            stop: Some(stop_tx),
            done: done_rx,
        },
        origin,
    ))
}

impl InProcessDaemon {
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let done = self.done;
        let _ =
            tokio::task::spawn_blocking(move || done.recv_timeout(Duration::from_secs(10))).await;
    }
}
