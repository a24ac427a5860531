//! `checkpoint` (issue 16): the coordinator's cost of one checkpoint whose acknowledgements
//! arrive at once. A job of `--tasks` independent tasks checkpoints every hour (so only the
//! measured triggers happen); each run calls TriggerCheckpoint and waits until every task has
//! been told the checkpoint completed. The simulated executors acknowledge every trigger as it
//! arrives (one UpdateTaskStates call per executor), and the daemon sends the completion
//! notices only after the store commit that makes the checkpoint durable, so the time from the
//! call to the last NotifyCheckpoint(complete) is trigger → durable completion, RPC round trips
//! included. Targets: ≤ 20 ms for 1,000 tasks, ≤ 500 ms for 100,000.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use jobmaster::api::v1::TriggerJobCheckpointRequest;
use serde_json::{Value, json};

use crate::RPC_TIMEOUT;
use crate::ctx::{Ctx, zero_backoff};
use crate::metrics::scrape;
use crate::stats::{summarize, summary_json, verdict};
use crate::submit::wait_tasks_up;

#[derive(Args)]
pub(crate) struct CheckpointArgs {
    /// Measured runs.
    #[arg(long, default_value_t = 20)]
    pub(crate) runs: usize,
    /// Unmeasured runs first.
    #[arg(long, default_value_t = 2)]
    pub(crate) warmup: usize,
    /// Tasks of the job (every one takes part in every checkpoint).
    #[arg(long, default_value_t = 1000)]
    pub(crate) tasks: u32,
    /// Executors; their slots add up to the job's tasks.
    #[arg(long, default_value_t = 10)]
    pub(crate) executors: usize,
    /// Pause between two runs.
    #[arg(long, default_value = "200ms", value_parser = jobmaster::core::duration::parse_duration)]
    pub(crate) pause: Duration,
}

pub(crate) async fn run(ctx: &Ctx, a: &CheckpointArgs) -> Result<Value> {
    if a.tasks == 0 || a.executors == 0 {
        bail!("--tasks and --executors must be at least 1");
    }
    let slots = a.tasks.div_ceil(a.executors as u32);
    eprintln!(
        "checkpoint: {} tasks, {} executors × {slots} slots, {} + {} runs",
        a.tasks, a.executors, a.warmup, a.runs
    );
    let _fleet = ctx.start_fleet(a.executors, slots).await?;
    let spec = json!({
        "name": "checkpointed",
        "failover": "region",
        "restart": zero_backoff(),
        "checkpoint": { "interval": "1h", "timeout": "1min" },
        "vertices": [{ "id": "work", "parallelism": a.tasks, "command": ["x"] }],
        "edges": [],
    })
    .to_string();
    let job = ctx.submit(spec).await?;
    wait_tasks_up(ctx, &job, a.tasks, Duration::from_secs(300)).await?;
    let mut op = ctx.op.clone();
    let mut latencies = Vec::new();
    let mut commit_ms = Vec::new();
    for run in 0..a.warmup + a.runs {
        tokio::time::sleep(a.pause).await;
        let c0 = match ctx.http {
            Some(http) => Some(scrape(http).await?.commits()),
            None => None,
        };
        let t0 = Instant::now();
        let id = tokio::time::timeout(
            RPC_TIMEOUT,
            op.trigger_checkpoint(TriggerJobCheckpointRequest {
                job_id: job.clone(),
            }),
        )
        .await
        .context("TriggerCheckpoint timed out")?
        .context("TriggerCheckpoint")?
        .into_inner()
        .checkpoint_id;
        let deadline = Instant::now() + Duration::from_secs(120);
        let done = loop {
            let (told, last) = ctx.hub.completed(id);
            if told >= a.tasks as usize {
                break last.context("a completion time")?;
            }
            if Instant::now() > deadline {
                bail!(
                    "checkpoint {id}: {told} of {} tasks told it completed after 120 s",
                    a.tasks
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let took = done.saturating_duration_since(t0).as_secs_f64() * 1000.0;
        let c = match (ctx.http, &c0) {
            (Some(http), Some(c0)) => Some(scrape(http).await?.commits().since(c0)),
            _ => None,
        };
        eprintln!(
            "checkpoint: run {run}{}: checkpoint {id} {took:.1} ms{}",
            if run < a.warmup { " (warm-up)" } else { "" },
            c.as_ref().map_or(String::new(), |c| format!(
                "; {} commits, {:.1} ms",
                c.count,
                c.seconds * 1000.0
            ))
        );
        if run >= a.warmup {
            latencies.push(took);
            if let Some(c) = &c {
                commit_ms.push(c.seconds * 1000.0);
            }
        }
    }
    let s = summarize(latencies.clone());
    let limit = if a.tasks > 1000 { 500.0 } else { 20.0 };
    let mut targets = Vec::new();
    if let Some(s) = &s {
        targets.push(verdict(
            &format!(
                "checkpoint of {} tasks, trigger → durable completion (p99)",
                a.tasks
            ),
            s.p99,
            limit,
        ));
    }
    Ok(json!({
        "scenario": "checkpoint",
        "setup": [
            ["job", format!("one vertex of parallelism {} (independent tasks), checkpoint interval 1 h: only the measured triggers", a.tasks)],
            ["executors", format!("{} × {slots} slots; each acknowledges a trigger at once, in one UpdateTaskStates call", a.executors)],
            ["runs", format!("{} measured after {} warm-up, {:?} apart", a.runs, a.warmup, a.pause)],
        ],
        "latency_ms": [
            ["TriggerCheckpoint call → last NotifyCheckpoint(complete) received", summary_json(s)],
            ["store commit time during a run", summary_json(summarize(commit_ms))],
        ],
        "results": [
            ["each run (ms)", latencies.iter().map(|x| (x * 10.0).round() / 10.0).collect::<Vec<_>>()],
        ],
        "targets": targets,
    }))
}
