//! `submit`: the latency of SubmitJob for one large job (issue 14, target 2: 100,000 tasks in
//! ≤ 1 s with the store on). Measured from the call to its reply, which the daemon sends only
//! after the turn's commit: the spec (JSON) and a record per task are on disk by then (with
//! `--store memory` nothing is written, for comparison).
//!
//! Each run submits one job of `--tasks` independent tasks (one vertex) and cancels it once
//! answered (and, with `--executors`, once its tasks run); then it waits until the ended job
//! has been dropped (jmload keeps ended jobs 5 s), so every run starts from an empty daemon
//! and the drop's delete commit never overlaps a submit. Without executors the tasks wait
//! for slots (SubmitJob = graph, regions, records, commit); with executors they are placed
//! and deployed in the same turn. The store commits in each run's submit (from the daemon's
//! `/metrics`) show what the commit costs.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use jobmaster::api::v1::{CancelJobRequest, ListJobsRequest};
use serde_json::{Value, json};

use crate::RPC_TIMEOUT;
use crate::churn::wait_no_jobs;
use crate::ctx::{Ctx, single_vertex_spec, zero_backoff};
use crate::metrics::scrape;
use crate::stats::{summarize, summary_json, verdict};

#[derive(Args)]
pub(crate) struct SubmitArgs {
    /// Measured runs.
    #[arg(long, default_value_t = 7)]
    pub(crate) runs: usize,
    /// Unmeasured runs first.
    #[arg(long, default_value_t = 1)]
    pub(crate) warmup: usize,
    /// Tasks of the job (one vertex of this parallelism: as many regions).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) tasks: u32,
    /// Simulated executors (0: none, the tasks wait for slots).
    #[arg(long, default_value_t = 0)]
    pub(crate) executors: usize,
    /// Slots per executor (default: the job's tasks spread over the executors).
    #[arg(long)]
    pub(crate) slots: Option<u32>,
}

pub(crate) async fn run(ctx: &Ctx, a: &SubmitArgs) -> Result<Value> {
    let slots = a
        .slots
        .unwrap_or_else(|| a.tasks.div_ceil(a.executors.max(1) as u32));
    eprintln!(
        "submit: {} tasks, {} executors × {slots} slots, {} + {} runs",
        a.tasks, a.executors, a.warmup, a.runs
    );
    let _fleet = if a.executors > 0 {
        ctx.start_fleet(a.executors, slots).await?
    } else {
        Vec::new()
    };
    let mut op = ctx.op.clone();
    let mut latencies = Vec::new();
    let mut commit_ms = Vec::new();
    let mut commits = Vec::new();
    for run in 0..a.warmup + a.runs {
        wait_no_jobs(ctx, Duration::from_secs(120)).await?;
        let c0 = match ctx.http {
            Some(http) => Some(scrape(http).await?.commits()),
            None => None,
        };
        let spec = single_vertex_spec(&format!("submit-{run}"), a.tasks, zero_backoff());
        let t0 = Instant::now();
        let job = ctx.submit(spec).await?;
        let took = t0.elapsed().as_secs_f64() * 1000.0;
        let c = match (ctx.http, &c0) {
            (Some(http), Some(c0)) => Some(scrape(http).await?.commits().since(c0)),
            _ => None,
        };
        eprintln!(
            "submit: run {run}{}: {took:.1} ms{}",
            if run < a.warmup { " (warm-up)" } else { "" },
            c.as_ref().map_or(String::new(), |c| format!(
                "; {} commits since the call, {:.1} ms ({})",
                c.count,
                c.seconds * 1000.0,
                c.distribution()
            ))
        );
        if run >= a.warmup {
            latencies.push(took);
            if let Some(c) = &c {
                commit_ms.push(c.seconds * 1000.0);
                commits.push(c.count);
            }
        }
        if a.executors > 0 {
            wait_tasks_up(ctx, &job, a.tasks, Duration::from_secs(120)).await?;
        }
        tokio::time::timeout(RPC_TIMEOUT, op.cancel_job(CancelJobRequest { job_id: job }))
            .await
            .context("CancelJob timed out")?
            .context("CancelJob")?;
    }
    wait_no_jobs(ctx, Duration::from_secs(120)).await?;
    let s = summarize(latencies.clone());
    let mut targets = Vec::new();
    if let Some(s) = s {
        targets.push(verdict(
            &format!("SubmitJob of {} tasks, call → reply (max)", a.tasks),
            s.max,
            1000.0,
        ));
    }
    Ok(json!({
        "scenario": "submit",
        "setup": [
            ["job", format!("one vertex of parallelism {} (as many single-task regions), restart fixed-delay 0 s", a.tasks)],
            ["executors", if a.executors == 0 {
                "none: the tasks wait for slots".to_owned()
            } else {
                format!("{} × {slots} slots: every task placed and deployed in the submit's turn", a.executors)
            }],
            ["runs", format!("{} measured after {} warm-up; each job cancelled and dropped before the next", a.runs, a.warmup)],
        ],
        "latency_ms": [
            ["SubmitJob call → reply", summary_json(s)],
            ["store commit time from the call until the reply was read", summary_json(summarize(commit_ms))],
        ],
        "results": [
            ["SubmitJob, each run (ms)", latencies.iter().map(|x| (x * 10.0).round() / 10.0).collect::<Vec<_>>()],
            ["store commits from the call until the reply was read, each run", commits],
        ],
        "targets": targets,
    }))
}

/// Waits until `job` has `tasks` tasks RUNNING (or FINISHED), from ListJobs.
pub(crate) async fn wait_tasks_up(
    ctx: &Ctx,
    job: &str,
    tasks: u32,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut op = ctx.op.clone();
    loop {
        let jobs = op
            .list_jobs(ListJobsRequest {})
            .await
            .context("ListJobs")?
            .into_inner()
            .jobs;
        if jobs.iter().any(|j| j.job_id == job && j.tasks_up >= tasks) {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("job {job}: not all {tasks} tasks up after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
