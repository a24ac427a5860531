//! `failover`: a 1,000-task restart set with zero backoff: injected failure → all SubmitTask
//! calls of the new attempt received by the executors (target ≤ 20 ms), and the part after
//! the last CANCELED report; with WatchEvents, the daemon's restart step on its own clock.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use jobmaster::api::v1::{InjectFailureRequest, inject_failure_request};
use jobmaster::core::{AttemptState, FailureClass};
use jobmaster::fake_executor::Reports;
use serde_json::{Value, json};

use crate::RPC_TIMEOUT;
use crate::ctx::{Ctx, two_vertex_spec, wait_for, zero_backoff};
use crate::executors::Mark;
use crate::metrics::{Commits, scrape};
use crate::probe::Probe;
use crate::stats::{Summary, diff_ms, summarize, summary_json, verdict};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FailoverShape {
    /// source(n/2) → sink(n/2), all-to-all pipelined, region failover: one region of n tasks.
    AllToAll,
    /// source(n/2) → sink(n/2), pointwise pipelined, full failover: n/2 regions, all restart.
    PointwiseFull,
}

#[derive(Args)]
pub(crate) struct FailoverArgs {
    /// Measured runs.
    #[arg(long, default_value_t = 20)]
    pub(crate) runs: usize,
    /// Unmeasured runs first.
    #[arg(long, default_value_t = 2)]
    pub(crate) warmup: usize,
    /// Tasks of the job (all of them restart on every failure).
    #[arg(long, default_value_t = 1000)]
    pub(crate) tasks: u32,
    /// Executors; their slots add up to the job's tasks.
    #[arg(long, default_value_t = 10)]
    pub(crate) executors: usize,
    /// The job's shape.
    #[arg(long, value_enum, default_value_t = FailoverShape::AllToAll)]
    pub(crate) shape: FailoverShape,
    /// Pause between a run's "all tasks running" and the next injected failure.
    #[arg(long, default_value = "300ms", value_parser = jobmaster::core::duration::parse_duration)]
    pub(crate) pause: Duration,
    /// Keep only job and executor WatchEvents, not task-state ones (no restart-step timing).
    /// The tool's subscription stays open, so the daemon still builds and sends every event;
    /// this lightens the generator, not the daemon.
    #[arg(long)]
    pub(crate) no_watch: bool,
}

pub(crate) async fn run(ctx: &Ctx, a: &FailoverArgs, probe: &Probe) -> Result<Value> {
    if a.tasks < 2 || a.executors == 0 {
        bail!("--tasks must be at least 2 and --executors at least 1");
    }
    let p = a.tasks / 2;
    let tasks = p * 2;
    let slots = tasks.div_ceil(a.executors as u32);
    eprintln!(
        "failover: {tasks} tasks on {} executors × {slots} slots, {} + {} runs",
        a.executors, a.warmup, a.runs
    );
    let handles = ctx.start_fleet(a.executors, slots).await?;
    let spec = match a.shape {
        FailoverShape::AllToAll => {
            two_vertex_spec("failover", p, "all-to-all", "region", zero_backoff())
        }
        FailoverShape::PointwiseFull => {
            two_vertex_spec("failover", p, "pointwise", "full", zero_backoff())
        }
    };
    let job = ctx.submit(spec).await?;
    ctx.wait_job_running(&job, Duration::from_secs(60)).await?;
    let mut watch_note = "on".to_owned();
    if a.no_watch {
        watch_note = "off".into();
    }
    let mut rows: Vec<HashMap<&'static str, f64>> = Vec::new();
    let mut commits_start: Option<Commits> = None;
    let mut spurious = 0u64;
    let mut disturbed = 0u64;
    let failed_before = ctx.events.task_failed.load(Ordering::Relaxed);
    let restarts_before = ctx.events.restarts.load(Ordering::Relaxed);
    for run in 0..a.warmup + a.runs {
        let view = ctx.wait_job_running(&job, Duration::from_secs(60)).await?;
        let current = view.tasks.iter().map(|t| t.attempt).max().unwrap_or(0);
        if view.tasks.iter().any(|t| t.attempt != current) {
            spurious += 1;
        }
        let restarts_before = view.counters.as_ref().map_or(0, |c| c.restarts);
        // Store commits of the run's whole cycle (failure, cancels, redeploys, RUNNING
        // reports), read outside the timed window (a scrape is a coordinator turn).
        let commits0 = match ctx.http {
            Some(http) => Some(scrape(http).await?.commits()),
            None => None,
        };
        if run == a.warmup {
            commits_start = commits0.clone();
        }
        tokio::time::sleep(a.pause).await;
        ctx.hub.begin(current + 1);
        ctx.events
            .keep_task_states
            .store(!a.no_watch, Ordering::SeqCst);
        let from = ctx.events.len();
        let cpu0 = probe.fine();
        let t0 = Instant::now();
        let mut op = ctx.op.clone();
        tokio::time::timeout(
            RPC_TIMEOUT,
            op.inject_failure(InjectFailureRequest {
                job_id: job.clone(),
                target: Some(inject_failure_request::Target::Task("source#0".into())),
                class: FailureClass::Recoverable.name().into(),
                message: "jmload failover run".into(),
            }),
        )
        .await
        .context("InjectFailure timed out")?
        .context("InjectFailure")?;
        let t_injected = Instant::now();
        let hub = ctx.hub.clone();
        let need = u64::from(tasks);
        let waited = wait_for(
            "all SubmitTask calls of the new attempt",
            Duration::from_secs(10),
            || hub.target_submits.load(Ordering::SeqCst) >= need,
        )
        .await;
        let marks = ctx.hub.end();
        let cpu1 = probe.fine();
        if let Err(e) = waited {
            // Another failover took over the new attempts before they were all submitted.
            disturbed += 1;
            let got = ctx.hub.target_submits.load(Ordering::SeqCst);
            eprintln!("failover: run {run}: {e} ({got} of {need}) — DISTURBED, not counted");
            continue;
        }
        let pick = |m: Mark, attempt: u32| -> Vec<Instant> {
            let mut v: Vec<Instant> = marks
                .iter()
                .filter(|(k, _, a)| *k == m && *a == attempt)
                .map(|(_, t, _)| *t)
                .collect();
            v.sort();
            v
        };
        let cancels = pick(Mark::Cancel, current);
        let canceled = pick(Mark::CanceledSent, current);
        let submits = pick(Mark::Submit, current + 1);
        let (Some(first_cancel), Some(last_cancel)) = (cancels.first(), cancels.last()) else {
            bail!("run {run}: no CancelTask recorded");
        };
        let last_canceled = *canceled.last().context("no CANCELED report recorded")?;
        let first_submit = *submits.first().expect("waited for them");
        let last_submit = *submits.last().expect("waited for them");
        let mut row = HashMap::new();
        row.insert("inject_rpc", diff_ms(t0, t_injected));
        row.insert("first_cancel", diff_ms(t0, *first_cancel));
        row.insert("last_cancel", diff_ms(t0, *last_cancel));
        row.insert("last_canceled_sent", diff_ms(t0, last_canceled));
        row.insert("total", diff_ms(t0, last_submit));
        row.insert("after_cancel_first", diff_ms(last_canceled, first_submit));
        row.insert("after_cancel_all", diff_ms(last_canceled, last_submit));
        row.insert("submit_spread", diff_ms(first_submit, last_submit));
        row.insert("cancels", cancels.len() as f64);
        if let (Some(d0), Some(d1)) = (cpu0.0, cpu1.0) {
            row.insert("daemon_cpu", (d1 - d0) * 1000.0);
        }
        row.insert("gen_cpu", (cpu1.1 - cpu0.1) * 1000.0);
        if !a.no_watch {
            // restart-scheduled: its arrival here, and (in-process) its time on the daemon's clock.
            let job_id = job.clone();
            let events = ctx.events.clone();
            let _ = wait_for("restart-scheduled", Duration::from_secs(2), || {
                !events
                    .since(from, |e| {
                        e.kind == "restart-scheduled" && e.job_id == job_id
                    })
                    .is_empty()
            })
            .await;
            if let Some((arrived, e)) = ctx
                .events
                .since(from, |e| e.kind == "restart-scheduled" && e.job_id == job)
                .into_iter()
                .next()
            {
                row.insert("rs_arrival", diff_ms(t0, arrived));
                if let Some(origin) = ctx.origin {
                    // The event happened within [time_ms, time_ms + 1) ms of the daemon's clock.
                    let at = origin + Duration::from_micros(e.time_ms * 1000 + 500);
                    row.insert("rs_daemon", diff_ms(t0, at));
                    row.insert("rs_to_all_submits", diff_ms(at, last_submit));
                }
            }
            // The coordinator's restart step on the daemon's clock (WatchEvent.time_ms is read
            // per event while the coordinator carries out the step's commands): the last
            // CANCELED of the old attempt, CREATED ... DEPLOYING of the new one.
            let events = ctx.events.clone();
            let job_id = job.clone();
            let target = current + 1;
            let deploying = AttemptState::Deploying.name();
            let complete = wait_for("DEPLOYING events", Duration::from_secs(2), || {
                events
                    .since(from, |e| {
                        e.job_id == job_id && e.attempt == target && e.state == deploying
                    })
                    .len()
                    >= tasks as usize
            })
            .await
            .is_ok();
            let got = ctx
                .events
                .since(from, |e| e.kind == "task-state" && e.job_id == job);
            let time = |attempt: u32, state: &str| -> Vec<u64> {
                got.iter()
                    .filter(|(_, e)| e.attempt == attempt && e.state == state)
                    .map(|(_, e)| e.time_ms)
                    .collect()
            };
            let canceled = time(current, AttemptState::Canceled.name());
            let created = time(target, AttemptState::Created.name());
            let deploying = time(target, deploying);
            if complete
                && let (Some(c), Some(first), Some(last)) = (
                    canceled.iter().max(),
                    created.iter().min(),
                    deploying.iter().max(),
                )
            {
                row.insert("coord_step", (*last - *first) as f64);
                row.insert("coord_after_cancel", (*last - *c) as f64);
                if let Some(origin) = ctx.origin {
                    let at = origin + Duration::from_micros(*last * 1000 + 500);
                    row.insert("deploying_to_all_submits", diff_ms(at, last_submit));
                }
            }
        }
        ctx.events.keep_task_states.store(false, Ordering::SeqCst);
        // Another failover during the run (e.g. a heartbeat reconciliation) disturbs it.
        let after = ctx.wait_job_running(&job, Duration::from_secs(60)).await?;
        if let (Some(http), Some(c0)) = (ctx.http, &commits0) {
            let c = scrape(http).await?.commits().since(c0);
            row.insert("commits", c.count);
            row.insert("commit_ms", c.seconds * 1000.0);
            if c.count > 0.0 {
                row.insert("commit_mean_ms", c.seconds * 1000.0 / c.count);
            }
        }
        let restarts = after.counters.as_ref().map_or(0, |c| c.restarts) - restarts_before;
        let clean = restarts == 1;
        if !clean {
            disturbed += 1;
        }
        if run >= a.warmup && clean {
            rows.push(row);
        }
        eprintln!(
            "failover: run {run}{}: total {:.2} ms, after last CANCELED {:.2} ms{}",
            if run < a.warmup { " (warm-up)" } else { "" },
            diff_ms(t0, last_submit),
            diff_ms(last_canceled, last_submit),
            if clean {
                String::new()
            } else {
                format!(" — DISTURBED: {restarts} restarts, not counted")
            }
        );
    }
    ctx.wait_job_running(&job, Duration::from_secs(60)).await?;
    let commit_distribution = match (ctx.http, &commits_start) {
        (Some(http), Some(c0)) => {
            let c = scrape(http).await?.commits().since(c0);
            format!(
                "{} commits, {:.1} ms in all; by duration: {}",
                c.count,
                c.seconds * 1000.0,
                c.distribution()
            )
        }
        _ => "unknown (no /metrics: --daemon-http ADDR with --endpoint)".to_owned(),
    };
    let runs_total = (a.warmup + a.runs) as u64;
    let failed_extra = ctx.events.task_failed.load(Ordering::Relaxed) - failed_before;
    let restarts = ctx.events.restarts.load(Ordering::Relaxed) - restarts_before;
    let mut other_causes: HashMap<String, u64> = HashMap::new();
    for (_, e) in ctx
        .events
        .since(0, |e| e.kind == "restart-scheduled" && e.job_id == job)
    {
        if e.detail != "jmload failover run" {
            // "attempt 3 is unexpectedly ... on executor exec-0004" → one bucket per kind.
            let cause = e
                .detail
                .split_whitespace()
                .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
                .collect::<Vec<_>>()
                .join(" ");
            *other_causes.entry(cause).or_default() += 1;
        }
    }
    let col = |k: &str| -> Option<Summary> {
        summarize(rows.iter().filter_map(|r| r.get(k).copied()).collect())
    };
    let mut latency: Vec<Value> = Vec::new();
    let mut put = |name: &str, k: &str| {
        latency.push(json!([name, summary_json(col(k))]));
    };
    put("InjectFailure RPC (send → answer)", "inject_rpc");
    put("failure → first CancelTask received", "first_cancel");
    put("failure → last CancelTask received", "last_cancel");
    put("failure → last CANCELED report sent", "last_canceled_sent");
    put("failure → all SubmitTask received (total)", "total");
    put(
        "last CANCELED sent → first SubmitTask",
        "after_cancel_first",
    );
    put(
        "last CANCELED sent → all SubmitTask (target)",
        "after_cancel_all",
    );
    put("first → last SubmitTask received", "submit_spread");
    put("daemon CPU time, failure → all SubmitTask", "daemon_cpu");
    put("generator CPU time, failure → all SubmitTask", "gen_cpu");
    put("store commits per run (whole cycle, count)", "commits");
    put("store commit time per run (whole cycle)", "commit_ms");
    put("store commit, mean per run", "commit_mean_ms");
    if !a.no_watch {
        put(
            "daemon: restart step CREATED → last DEPLOYING (±1)",
            "coord_step",
        );
        put(
            "daemon: last CANCELED → last DEPLOYING (±1)",
            "coord_after_cancel",
        );
        put("failure → restart-scheduled arrival", "rs_arrival");
        if ctx.origin.is_some() {
            put("failure → restart-scheduled (daemon clock ±1)", "rs_daemon");
            put(
                "restart-scheduled → all SubmitTask (±1)",
                "rs_to_all_submits",
            );
            put(
                "last DEPLOYING event → all SubmitTask (±1)",
                "deploying_to_all_submits",
            );
        }
    }
    let mut targets = Vec::new();
    if let Some(s) = col("after_cancel_all") {
        targets.push(verdict(
            "last CANCELED → all SubmitTask received (p99)",
            s.p99,
            20.0,
        ));
    }
    if let Some(s) = col("total") {
        targets.push(verdict(
            "failure → all SubmitTask incl. cancel round trip (p99)",
            s.p99,
            20.0,
        ));
    }
    drop(handles);
    Ok(json!({
        "scenario": "failover",
        "setup": [
            ["shape", match a.shape {
                FailoverShape::AllToAll => format!("source({p}) → sink({p}) all-to-all pipelined, region failover: 1 region of {tasks} tasks"),
                FailoverShape::PointwiseFull => format!("source({p}) → sink({p}) pointwise pipelined, full failover: {p} regions, all {tasks} restart"),
            }],
            ["restart", "fixed-delay, delay 0s"],
            ["executors", format!("{} × {slots} slots, one connection each", a.executors)],
            ["failure", "InjectFailure source#0 (recoverable); executors confirm each cancel at once"],
            ["reports", if ctx.fleet.options().reports == Reports::Unary {
                "one UpdateTaskState per task"
            } else {
                "one UpdateTaskStates per SubmitTasks / CancelTasks batch"
            }],
            ["runs", format!("{} measured after {} warm-up", a.runs, a.warmup)],
            ["WatchEvents subscriber", watch_note],
        ],
        "latency_ms": latency,
        "results": [
            ["restart-scheduled events", restarts],
            ["expected restart-scheduled events", runs_total],
            ["task FAILED events (spurious failovers)", failed_extra],
            ["runs that started with mixed attempt numbers", spurious],
            ["runs disturbed by another failover (not counted)", disturbed],
            ["other restart causes", other_causes],
            ["CancelTask before its SubmitTask (whole run)", ctx.hub.cancel_before_submit.load(Ordering::Relaxed)],
            ["cancels per run (median)", col("cancels").map_or(0.0, |s| s.p50)],
            ["WatchEvents lagged notices", ctx.events.lagged.load(Ordering::Relaxed)],
            ["reports refused or failed", ctx.hub.report_errors.load(Ordering::Relaxed)],
            ["UpdateTaskStates calls (reports carried)", ctx.hub.report_calls()],
            ["store commits over the measured runs (jobmaster_store_commit_seconds)", commit_distribution],
        ],
        "targets": targets,
    }))
}
