//! `readers`: many operators read one large job while the JobMaster runs it (issue 13, item 1).
//!
//! A job of `--tasks` independent tasks (one region each) runs on `--executors` simulated
//! executors that heartbeat every attempt they hold. Then `--readers` HTTP clients read it as
//! the dashboard does — `GET /api/jobs/{id}` and a page of `GET /api/jobs/{id}/tasks` — in a
//! loop for `--duration`, while the tool measures ListJobs every 10 ms (target p99 ≤ 50 ms),
//! a coordinator round trip (ListExecutors) every 100 ms, the executors' heartbeat answers
//! (longest gap, late answers, losses) and the daemon's RSS (before, peak, after).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use jobmaster::api::v1::{ListExecutorsRequest, ListJobsRequest};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::RPC_TIMEOUT;
use crate::ctx::{Ctx, single_vertex_spec, zero_backoff};
use crate::probe::Probe;
use crate::stats::{ms, summarize, summary_json, verdict};

#[derive(Args)]
pub(crate) struct ReadersArgs {
    /// Tasks of the job (independent: one region each).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) tasks: u32,
    /// Simulated executors; their slots add up to the job's tasks.
    #[arg(long, default_value_t = 100)]
    pub(crate) executors: usize,
    /// Concurrent HTTP readers.
    #[arg(long, default_value_t = 60)]
    pub(crate) readers: usize,
    /// How long the readers read.
    #[arg(long, default_value = "20s", value_parser = jobmaster::core::duration::parse_duration)]
    pub(crate) duration: Duration,
    /// Tasks per page a reader asks `/api/jobs/{id}/tasks` for.
    #[arg(long, default_value_t = 1000)]
    pub(crate) page: u32,
    /// The daemon's HTTP address (with --endpoint; the in-process daemon's is known).
    #[arg(long, value_name = "ADDR")]
    pub(crate) http: Option<SocketAddr>,
}

/// GET `path` over HTTP/1.1 (connection closed after the answer): status and body length.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, usize)> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("an HTTP answer without headers")?;
    let status = std::str::from_utf8(&buf[..head_end])?
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("an HTTP answer without a status")?;
    Ok((status, buf.len() - head_end - 4))
}

pub(crate) async fn run(
    ctx: &Ctx,
    a: &ReadersArgs,
    probe: &Probe,
    http: Option<SocketAddr>,
) -> Result<Value> {
    let Some(http) = a.http.or(http) else {
        bail!("readers needs the daemon's HTTP address: --http ADDR with --endpoint");
    };
    if a.tasks == 0 || a.executors == 0 || a.readers == 0 {
        bail!("--tasks, --executors and --readers must be at least 1");
    }
    let slots = a.tasks.div_ceil(a.executors as u32);
    eprintln!(
        "readers: {} tasks on {} executors × {slots} slots, {} readers for {:?}",
        a.tasks, a.executors, a.readers, a.duration
    );
    let heartbeats = ctx.start_fleet(a.executors, slots).await?;
    let job = ctx
        .submit(single_vertex_spec("readers", a.tasks, zero_backoff()))
        .await?;
    let t = Instant::now();
    ctx.wait_job_running(&job, Duration::from_secs(300)).await?;
    eprintln!(
        "readers: job {job} running after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (code, size) = get(http, &format!("/api/jobs/{job}")).await?;
    if code != 200 {
        bail!(
            "GET /api/jobs/{job} answered {code}; is --http the daemon's HTTP port (and auth off)?"
        );
    }

    let before = probe.sample();
    let stats = ctx.stats.clone();
    stats.max_gap_us.store(0, Ordering::Relaxed);
    stats.late.store(0, Ordering::Relaxed);
    let lost0 = ctx.events.executor_lost.load(Ordering::Relaxed);
    stats.recording.store(true, Ordering::SeqCst);

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(Mutex::new(Vec::<f64>::new()));
    let bytes = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for r in 0..a.readers {
        let (stop, reads, bytes, failed) =
            (stop.clone(), reads.clone(), bytes.clone(), failed.clone());
        let (job, page, total) = (job.clone(), a.page, a.tasks);
        tasks.push(tokio::spawn(async move {
            let mut offset = (r as u32 * page) % total.max(1);
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for path in [
                    format!("/api/jobs/{job}"),
                    format!("/api/jobs/{job}/tasks?offset={offset}&limit={page}"),
                ] {
                    let t = Instant::now();
                    match get(http, &path).await {
                        Ok((200, n)) => {
                            mine.push(ms(t.elapsed()));
                            bytes.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                offset = (offset + page * 7) % total.max(1);
            }
            reads.lock().await.extend(mine);
        }));
    }
    // ListJobs every 10 ms, a coordinator round trip every 100 ms, RSS every 100 ms.
    let mut list_jobs = Vec::new();
    let mut coordinator = Vec::new();
    let mut peak_rss = 0u64;
    let end = Instant::now() + a.duration;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut n = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        let mut op = ctx.op.clone();
        let t = Instant::now();
        match tokio::time::timeout(RPC_TIMEOUT, op.list_jobs(ListJobsRequest {})).await {
            Ok(Ok(_)) => list_jobs.push(ms(t.elapsed())),
            _ => list_jobs.push(ms(RPC_TIMEOUT)),
        }
        n += 1;
        if n % 10 == 0 {
            let t = Instant::now();
            match tokio::time::timeout(RPC_TIMEOUT, op.list_executors(ListExecutorsRequest {}))
                .await
            {
                Ok(Ok(_)) => coordinator.push(ms(t.elapsed())),
                _ => coordinator.push(ms(RPC_TIMEOUT)),
            }
            let s = probe.sample();
            peak_rss = peak_rss.max(s.daemon.unwrap_or(s.process).rss_kib);
        }
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    stats.recording.store(false, Ordering::SeqCst);
    let after = probe.sample();
    let reads = std::mem::take(&mut *reads.lock().await);
    let read_count = reads.len();
    let list = summarize(list_jobs);
    let rss = |s: &crate::probe::CpuSample| s.daemon.unwrap_or(s.process).rss_kib / 1024;
    let cpu = match (before.daemon_s, after.daemon_s) {
        (Some(b), Some(e)) => json!((e - b) / a.duration.as_secs_f64()),
        _ => Value::Null,
    };
    drop(heartbeats);
    let reads_mb = bytes.load(Ordering::Relaxed) as f64 / 1e6;
    Ok(json!({
        "scenario": "readers",
        "setup": [
            ["job", format!("{} independent tasks on {} executors × {slots} slots", a.tasks, a.executors)],
            ["readers", format!("{} HTTP clients for {:?}: GET /api/jobs/{{id}} ({size} bytes) and \
                a {}-task page of /api/jobs/{{id}}/tasks, in a loop", a.readers, a.duration, a.page)],
        ],
        "latency_ms": [
            ["ListJobs (every 10 ms)", summary_json(list)],
            ["ListExecutors (coordinator)", summary_json(summarize(coordinator))],
            ["HTTP reads", summary_json(summarize(reads))],
        ],
        "results": [
            ["reads", read_count],
            ["reads per s", (read_count as f64 / a.duration.as_secs_f64()).round()],
            ["reads failed", failed.load(Ordering::Relaxed)],
            ["MB read", (reads_mb * 10.0).round() / 10.0],
            ["heartbeat longest gap (ms)", stats.max_gap_us.load(Ordering::Relaxed) as f64 / 1000.0],
            ["heartbeat answers late (> 2 intervals)", stats.late.load(Ordering::Relaxed)],
            ["executors lost", ctx.events.executor_lost.load(Ordering::Relaxed) - lost0],
            ["daemon RSS MB before readers", rss(&before)],
            ["daemon RSS MB peak", (peak_rss / 1024).max(rss(&after))],
            ["daemon RSS MB after readers", rss(&after)],
            ["daemon CPU (cores)", cpu],
        ],
        "targets": [verdict("ListJobs p99 while readers read", list.map_or(f64::MAX, |s| s.p99), 50.0)],
    }))
}
