//! `churn`: many large jobs submitted and cancelled (issue 13, item 2): does the daemon's
//! memory come back once the ended jobs' retention is over?
//!
//! Submits `--jobs` jobs of `--tasks` tasks one after the other and cancels each at once (no
//! executor is needed: the tasks wait for slots, and a cancel ends them at once). Reports the
//! daemon's RSS before the first job, right after the last, and once every ended job has been
//! dropped (ListJobs empty: `jobs.retain-ended`; the in-process daemon keeps 10 ended jobs
//! for at most 5 s unless `--daemon-config` says otherwise). Target: within 10 % of the
//! baseline.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use jobmaster::api::v1::{CancelJobRequest, ListJobsRequest};
use serde_json::{Value, json};

use crate::RPC_TIMEOUT;
use crate::ctx::{Ctx, single_vertex_spec, zero_backoff};
use crate::probe::Probe;

#[derive(Args)]
pub(crate) struct ChurnArgs {
    /// Jobs submitted and cancelled.
    #[arg(long, default_value_t = 1000)]
    pub(crate) jobs: usize,
    /// Tasks per job.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) tasks: u32,
    /// Jobs submitted, cancelled and dropped before the baseline is measured (the allocator's
    /// arenas and the daemon's buffers reach their working size).
    #[arg(long, default_value_t = 10)]
    pub(crate) warmup: usize,
    /// How long to wait for the ended jobs to be dropped.
    #[arg(long, default_value = "120s", value_parser = jobmaster::core::duration::parse_duration)]
    pub(crate) drain_timeout: Duration,
}

pub(crate) async fn run(ctx: &Ctx, a: &ChurnArgs, probe: &Probe) -> Result<Value> {
    let rss = || {
        let s = probe.sample();
        s.daemon.unwrap_or(s.process).rss_kib
    };
    let mut op = ctx.op.clone();
    // Warm-up jobs first: the allocator's arenas and the daemon's buffers exist after them.
    for i in 0..a.warmup {
        let warm = ctx
            .submit(single_vertex_spec(
                &format!("warmup-{i}"),
                a.tasks,
                zero_backoff(),
            ))
            .await?;
        op.cancel_job(CancelJobRequest { job_id: warm })
            .await
            .context("CancelJob")?;
    }
    wait_no_jobs(ctx, a.drain_timeout).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline = rss();
    let t0 = Instant::now();
    let mut peak = baseline;
    for i in 0..a.jobs {
        let job = ctx
            .submit(single_vertex_spec(
                &format!("churn-{i}"),
                a.tasks,
                zero_backoff(),
            ))
            .await?;
        tokio::time::timeout(RPC_TIMEOUT, op.cancel_job(CancelJobRequest { job_id: job }))
            .await
            .context("CancelJob timed out")?
            .context("CancelJob")?;
        if i % 50 == 0 {
            peak = peak.max(rss());
        }
    }
    let churn_s = t0.elapsed().as_secs_f64();
    let after_churn = rss();
    peak = peak.max(after_churn);
    let t1 = Instant::now();
    wait_no_jobs(ctx, a.drain_timeout).await?;
    let drained_s = t1.elapsed().as_secs_f64();
    // The daemon gives freed memory back once a second after dropping jobs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let drained = rss();
    let ratio = drained as f64 / baseline as f64;
    Ok(json!({
        "scenario": "churn",
        "setup": [
            ["jobs", format!("{} jobs of {} tasks, each submitted and cancelled at once", a.jobs, a.tasks)],
            ["RSS", "kB resolution from /proc; baseline and after-drop are read 2 s after the last job was dropped (the daemon gives freed memory back once a second)"],
        ],
        "results": [
            ["churn time (s)", (churn_s * 10.0).round() / 10.0],
            ["jobs per s", (a.jobs as f64 / churn_s).round()],
            [format!("daemon RSS MB baseline (after {} warm-up jobs, dropped, +2 s)", a.warmup), json!(baseline / 1024)],
            ["daemon RSS MB peak", peak / 1024],
            ["daemon RSS MB after the last cancel", after_churn / 1024],
            ["time until every ended job was dropped (s)", (drained_s * 10.0).round() / 10.0],
            ["daemon RSS MB after drop (+2 s)", drained / 1024],
            ["after drop / baseline", (ratio * 1000.0).round() / 1000.0],
        ],
        "targets": [{
            "target": "RSS after drop within 10 % of the baseline",
            "verdict": format!("{} ({:+.1} %)", if ratio <= 1.10 { "MET" } else { "MISSED" },
                               (ratio - 1.0) * 100.0),
        }],
    }))
}

pub(crate) async fn wait_no_jobs(ctx: &Ctx, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut op = ctx.op.clone();
    loop {
        let jobs = op
            .list_jobs(ListJobsRequest {})
            .await
            .context("ListJobs")?
            .into_inner()
            .jobs;
        if jobs.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} ended jobs still held after {timeout:?} (jobs.retain-ended)",
                jobs.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
