//! `detect`: an executor's heartbeat stream closes → WatchEvents shows it lost and its tasks
//! FAILED (target p99 ≤ 50 ms). Each trial has its own victim executor and job, while
//! background executors, kept busy by a filler job, heartbeat meanwhile.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{Value, json};

use crate::RPC_TIMEOUT;
use crate::ctx::{Ctx, connect, single_vertex_spec, wait_for, zero_backoff};
use crate::stats::{diff_ms, summarize, summary_json, verdict};

#[derive(Args)]
pub(crate) struct DetectArgs {
    /// Number of trials (one victim executor and one job each).
    #[arg(long, default_value_t = 50)]
    pub(crate) trials: usize,
    /// Tasks of each trial's job, all on the victim.
    #[arg(long, default_value_t = 4)]
    pub(crate) tasks: u32,
    /// Other executors heartbeating meanwhile (their slots are filled by a filler job).
    #[arg(long, default_value_t = 20)]
    pub(crate) background: usize,
    /// Slots of each background executor.
    #[arg(long, default_value_t = 4)]
    pub(crate) background_slots: u32,
    /// Pause between "all tasks running" and closing the victim's stream.
    #[arg(long, default_value = "100ms", value_parser = jobmaster::core::duration::parse_duration)]
    pub(crate) settle: Duration,
}

pub(crate) async fn run(ctx: &Ctx, a: &DetectArgs) -> Result<Value> {
    eprintln!(
        "detect: {} background executors × {} slots, {} trials of {} tasks",
        a.background, a.background_slots, a.trials, a.tasks
    );
    // Background executors, kept busy by a filler job so each trial's job lands on its victim.
    let mut handles = Vec::new();
    if a.background > 0 {
        // One connection for all of them (over TLS, one each: see `Ctx::gateway`).
        let shared = if ctx.tls() {
            None
        } else {
            Some(connect(&ctx.url, None).await?)
        };
        for i in 0..a.background {
            let id = format!("bg-{i:04}");
            let channel = ctx.gateway(&id, shared.as_ref()).await?;
            let exec = ctx
                .add_executor(id, channel, a.background_slots, false)
                .await?;
            let interval = ctx.register(&exec).await?;
            let phase = interval * i as u32 / a.background as u32;
            let mut hb = ctx.start_heartbeats(exec, interval, phase);
            hb.first_answer(RPC_TIMEOUT).await?;
            handles.push(hb);
        }
        let filler = ctx
            .submit(single_vertex_spec(
                "detect-filler",
                a.background as u32 * a.background_slots,
                zero_backoff(),
            ))
            .await?;
        ctx.wait_job_running(&filler, Duration::from_secs(30))
            .await?;
    }
    let mut lost = Vec::new();
    let mut failed = Vec::new();
    let mut timeouts = 0;
    let mut disturbed = 0;
    for k in 0..a.trials {
        // A victim with its own connection, as a real executor process has.
        let id = format!("victim-{k:04}");
        let channel = ctx.gateway(&id, None).await?;
        let exec = ctx.add_executor(id, channel, a.tasks, false).await?;
        let interval = ctx.register(&exec).await?;
        let mut hb = ctx.start_heartbeats(exec.clone(), interval, Duration::ZERO);
        hb.first_answer(RPC_TIMEOUT).await?;
        let job = ctx
            .submit(single_vertex_spec(
                &format!("detect-{k}"),
                a.tasks,
                json!({ "strategy": "none" }),
            ))
            .await?;
        let e = exec.clone();
        let tasks = u64::from(a.tasks);
        wait_for("the victim's tasks running", RPC_TIMEOUT, || {
            e.running_accepted() >= tasks
        })
        .await?;
        tokio::time::sleep(a.settle).await;
        let from = ctx.events.len();
        hb.close.notify_one();
        let closed_at = hb
            .join
            .await?
            .closed_at
            .context("the heartbeat stream was not open")?;
        let victim = exec.id().to_owned();
        let events = ctx.events.clone();
        let job_id = job.clone();
        let done = wait_for(
            "executor-lost and FAILED events",
            Duration::from_secs(10),
            || {
                let got = events.since(from, |e| {
                    (e.kind == "executor-lost" && e.executor == victim)
                        || (e.kind == "task-state" && e.job_id == job_id)
                });
                got.iter().any(|(_, e)| e.kind == "executor-lost")
                    && got.iter().filter(|(_, e)| e.kind == "task-state").count() as u64 >= tasks
            },
        )
        .await;
        let got = ctx.events.since(from, |e| {
            (e.kind == "executor-lost" && e.executor == exec.id())
                || (e.kind == "task-state" && e.job_id == job)
        });
        let lost_at = got
            .iter()
            .find(|(_, e)| e.kind == "executor-lost")
            .map(|(t, _)| *t);
        if done.is_err() {
            // The job may have failed before the close: a heartbeat that did not list the
            // tasks yet was reconciled after their RUNNING reports (see BENCHMARKS.md).
            let cause = ctx.get_job(&job).await.map(|v| v.cause).unwrap_or_default();
            if lost_at.is_some() && !cause.contains("heartbeat stream closed") {
                disturbed += 1;
                eprintln!("detect: trial {k}: the job had already failed ({cause}); not counted");
                if let Some(t) = lost_at {
                    lost.push(diff_ms(closed_at, t));
                }
            } else {
                timeouts += 1;
                eprintln!("detect: trial {k}: no loss detected within 10 s");
            }
            continue;
        }
        let lost_at = lost_at.expect("checked");
        let failed_at = got
            .iter()
            .filter(|(_, e)| e.kind == "task-state")
            .map(|(t, _)| *t)
            .max()
            .expect("checked");
        lost.push(diff_ms(closed_at, lost_at));
        failed.push(diff_ms(closed_at, failed_at));
        ctx.fleet.remove(&exec);
    }
    let lost_s = summarize(lost);
    let failed_s = summarize(failed);
    let mut targets = Vec::new();
    if let Some(s) = failed_s {
        targets.push(verdict(
            "stream closed → all its tasks FAILED (p99)",
            s.p99,
            50.0,
        ));
    }
    let false_losses =
        ctx.events.executor_lost.load(Ordering::Relaxed) as i64 - (a.trials - timeouts) as i64;
    drop(handles);
    Ok(json!({
        "scenario": "detect",
        "setup": [
            ["trials", a.trials],
            ["tasks per victim", a.tasks],
            ["background executors", format!("{} × {} slots (busy)", a.background, a.background_slots)],
            ["close", "the victim drops its Heartbeat call (request stream ended, response stream dropped)"],
            ["measured", "close → WatchEvents arrival at the tool"],
        ],
        "latency_ms": [
            ["stream closed → executor-lost event", summary_json(lost_s)],
            ["stream closed → last task FAILED event", summary_json(failed_s)],
        ],
        "results": [
            ["trials without detection in 10 s", timeouts],
            ["trials whose job had already failed before the close (not in the FAILED row)", disturbed],
            ["other executor-lost events", false_losses],
            ["WatchEvents lagged notices", ctx.events.lagged.load(Ordering::Relaxed)],
        ],
        "targets": targets,
    }))
}
