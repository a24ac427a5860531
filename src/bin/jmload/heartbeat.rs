//! `heartbeat`: many executors heartbeating every second with attempts to list (10,000 × 10
//! by default): no false "executor lost", heartbeats/s, the daemon's CPU and memory.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use clap::{Args, ValueEnum};
use jobmaster::api::v1::ListExecutorsRequest;
use jobmaster::core::AttemptState;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::RPC_TIMEOUT;
use crate::ctx::{Ctx, connect, single_vertex_spec, two_vertex_spec, wait_for, zero_backoff};
use crate::executors::{HbHandle, heartbeat_loop, register_one};
use crate::probe::{CpuSample, Probe};
use crate::stats::{ms, round3, summarize, summary_json};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum HeartbeatShape {
    /// source(p) → sink(p) pointwise pipelined: regions of 2 tasks.
    Pointwise,
    /// One vertex, no edges: single-task regions.
    Independent,
}

#[derive(Args)]
pub(crate) struct HeartbeatArgs {
    /// Simulated executors.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) executors: usize,
    /// Slots per executor; the jobs fill them all, so every heartbeat lists this many attempts.
    #[arg(long, default_value_t = 10)]
    pub(crate) slots: u32,
    /// Split the executors × slots tasks into this many jobs (submitted one after another).
    #[arg(long, default_value_t = 1)]
    pub(crate) jobs: usize,
    /// Shape of each job.
    #[arg(long, value_enum, default_value_t = HeartbeatShape::Pointwise)]
    pub(crate) shape: HeartbeatShape,
    /// Executors per HTTP/2 connection to the gateway (each still has its own stream).
    #[arg(long, default_value_t = 100)]
    pub(crate) per_channel: usize,
    /// Measurement window.
    #[arg(long, default_value = "60s", value_parser = jobmaster::core::duration::parse_duration)]
    pub(crate) duration: Duration,
    /// Steady-state time before the window (every heartbeat then carries its attempts).
    #[arg(long, default_value = "5s", value_parser = jobmaster::core::duration::parse_duration)]
    pub(crate) warmup: Duration,
    /// Bound of the set-up (registration, submission, all tasks running).
    #[arg(long, default_value = "300s", value_parser = jobmaster::core::duration::parse_duration)]
    pub(crate) setup_timeout: Duration,
    /// Keep every executor's listening socket open (by default each accepts the daemon's one
    /// connection and closes, to stay within the file-descriptor limit).
    #[arg(long)]
    pub(crate) keep_listeners: bool,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) register_concurrency: usize,
}

pub(crate) async fn run(ctx: &Ctx, a: &HeartbeatArgs, probe: &Probe) -> Result<Value> {
    if a.executors == 0 || a.jobs == 0 || a.per_channel == 0 {
        bail!("--executors, --jobs and --per-channel must be at least 1");
    }
    let total_tasks = a.executors as u64 * u64::from(a.slots);
    let per_job = total_tasks / a.jobs as u64;
    if per_job * a.jobs as u64 != total_tasks
        || (a.shape == HeartbeatShape::Pointwise && per_job % 2 != 0)
    {
        bail!("executors × slots = {total_tasks} must split evenly into --jobs (and into pairs)");
    }
    let one_shot = !a.keep_listeners;
    eprintln!(
        "heartbeat: {} executors × {} slots, {} job(s) of {per_job} tasks, {} executors per \
         connection, window {:?}",
        a.executors, a.slots, a.jobs, a.per_channel, a.duration
    );
    let start = Instant::now();
    let before_setup = probe.sample();
    let mut setup = HbSetup::default();
    let setup_result = tokio::time::timeout(
        a.setup_timeout,
        heartbeat_setup(ctx, a, per_job, one_shot, start, probe, &mut setup),
    )
    .await
    .unwrap_or_else(|_| Err(anyhow!("set-up took longer than {:?}", a.setup_timeout)));
    let setup_error = setup_result.err().map(|e| format!("{e:#}"));
    if let Some(e) = &setup_error {
        eprintln!("heartbeat: SET-UP FAILED: {e}");
    }
    let lost_in_setup = ctx.events.executor_lost.load(Ordering::Relaxed);
    let restarts_in_setup = ctx.events.restarts.load(Ordering::Relaxed);

    // The window (only after a complete set-up).
    let mut w = HbWindow::default();
    if setup_error.is_none() {
        tokio::time::sleep(a.warmup).await;
        w = heartbeat_window(ctx, a, probe).await;
    }

    // The daemon's view: every executor still registered, every task on attempt 0.
    let mut op = ctx.op.clone();
    let listed =
        match tokio::time::timeout(RPC_TIMEOUT, op.list_executors(ListExecutorsRequest {})).await {
            Ok(Ok(r)) => r.into_inner().executors,
            _ => Vec::new(),
        };
    let max_age = listed.iter().map(|e| e.heartbeat_age_ms).max().unwrap_or(0);
    let (mut running, mut restarted, mut tasks_seen) = (0usize, 0usize, 0usize);
    for job in &setup.jobs {
        if let Ok(view) = ctx.get_job(job).await {
            tasks_seen += view.tasks.len();
            running += view
                .tasks
                .iter()
                .filter(|t| t.state == AttemptState::Running.name())
                .count();
            restarted += view.tasks.iter().filter(|t| t.attempt > 0).count();
        }
    }
    let lost_total = ctx.events.executor_lost.load(Ordering::Relaxed);
    let end = probe.sample();
    let daemon_rss = end.daemon.map_or(end.process.rss_kib, |d| d.rss_kib);
    let daemon_hwm = end.daemon.map_or(end.process.hwm_kib, |d| d.hwm_kib);

    // Stop the heartbeats and collect latencies.
    let _ = ctx.stop_tx.send(true);
    let mut latencies: Vec<f64> = Vec::new();
    for h in std::mem::take(&mut setup.handles) {
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(5), h.join).await {
            latencies.extend(r.latencies.iter().map(|&us| f64::from(us) / 1000.0));
        }
    }
    let cpu = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => json!(round3(b - a)),
        _ => Value::Null,
    };
    let window = w.seconds.max(1e-9);
    let cores = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if w.seconds > 0.0 => json!(round3((b - a) / window)),
        _ => Value::Null,
    };
    let no_false_loss = setup_error.is_none()
        && lost_total == 0
        && w.reregister == 0
        && listed.len() == a.executors;
    let mut targets = vec![json!({
        "target": format!("{} executors heartbeating, no false executor-lost", a.executors),
        "verdict": if no_false_loss {
            format!("MET (0 executor-lost, {} registered at the end)", listed.len())
        } else {
            format!(
                "MISSED ({lost_total} executor-lost, {} reregister answers, {} of {} registered at the end{})",
                w.reregister, listed.len(), a.executors,
                setup_error.as_ref().map_or(String::new(), |e| format!("; set-up failed: {e}"))
            )
        },
    })];
    let rate = w.acked as f64 / window;
    targets.push(json!({
        "target": format!("{} heartbeats/s", a.executors),
        "verdict": if w.seconds > 0.0 {
            format!(
                "{} ({rate:.0} answered heartbeats/s)",
                if rate >= 0.98 * a.executors as f64 { "MET" } else { "MISSED" }
            )
        } else {
            "not measured (set-up failed)".to_owned()
        },
    }));
    let since =
        |t: Option<Instant>| t.map_or(Value::Null, |t| json!(round3((t - start).as_secs_f64())));
    Ok(json!({
        "scenario": "heartbeat",
        "setup": [
            ["executors", format!("{} × {} slots, {} per HTTP/2 connection ({} connections), own listener each{}",
                a.executors, a.slots, a.per_channel, a.executors.div_ceil(a.per_channel),
                if one_shot { " (closed after the daemon's connection)" } else { "" })],
            ["jobs", format!("{} × {per_job} tasks ({}), submitted one after another", a.jobs, match a.shape {
                HeartbeatShape::Pointwise => "source → sink pointwise pipelined",
                HeartbeatShape::Independent => "one vertex, single-task regions",
            })],
            ["heartbeat payload", format!("{} attempts (every slot busy)", a.slots)],
            ["registered after (s)", since(setup.registered_at)],
            ["all heartbeating after (s)", since(setup.answered_at)],
            ["SubmitJob RPC (ms): median / max", match summarize(setup.submit_ms.clone()) {
                Some(s) => format!("{:.1} / {:.1} over {} jobs", s.p50, s.max, s.n),
                None => "-".to_owned(),
            }],
            ["all tasks running after (s)", since(setup.running_at)],
            ["set-up error", setup_error.clone().map_or(Value::Null, Value::String)],
            ["window", format!("{:.1} s after {:?} warm-up", w.seconds, a.warmup)],
        ],
        "latency_ms": [
            ["heartbeat send → answer (window)", summary_json(summarize(latencies))],
        ],
        "results": [
            ["heartbeats sent/s", round3(w.sent as f64 / window)],
            ["heartbeats answered/s", round3(rate)],
            ["executor-lost events (whole run)", lost_total],
            ["executor-lost events (set-up)", lost_in_setup],
            ["executor-lost events (window)", w.lost],
            ["reregister answers (window)", w.reregister],
            ["streams ended (window / whole run)", format!("{} / {}", w.ended, ctx.stats.ended.load(Ordering::Relaxed))],
            ["task FAILED events (window)", w.failed],
            ["restart-scheduled events (set-up / window)", format!("{restarts_in_setup} / {}", w.restarts)],
            ["WatchEvents lagged notices (missed events)", format!("{} ({})",
                ctx.events.lagged.load(Ordering::Relaxed), ctx.events.missed.load(Ordering::Relaxed))],
            ["longest gap between answers (ms)", round3(w.max_gap_ms)],
            ["gaps > 2 intervals", w.late],
            ["registered executors at the end", listed.len()],
            ["max heartbeat age at the end (ms)", max_age],
            ["tasks RUNNING at the end", format!("{running} of {tasks_seen}")],
            ["tasks not on attempt 0 at the end", restarted],
            ["daemon CPU in window (s)", cpu(w.cpu0.daemon_s, w.cpu1.daemon_s)],
            ["daemon CPU in window (cores)", cores(w.cpu0.daemon_s, w.cpu1.daemon_s)],
            ["generator CPU in window (cores)", if w.seconds > 0.0 {
                json!(round3((w.cpu1.generator_s - w.cpu0.generator_s) / window))
            } else { Value::Null }],
            ["daemon CPU: registration (s)", cpu(before_setup.daemon_s, setup.after_register.map(|c| c.daemon_s).unwrap_or(None))],
            ["daemon CPU: whole set-up (s)", cpu(before_setup.daemon_s, setup.after_deploy.map(|c| c.daemon_s).unwrap_or(None))],
            ["daemon RSS after registration (MiB)", setup.after_register.map_or(Value::Null, |c| json!(round3(c.daemon.map_or(c.process.rss_kib, |d| d.rss_kib) as f64 / 1024.0)))],
            ["daemon RSS after set-up (MiB)", setup.after_deploy.map_or(Value::Null, |c| json!(round3(c.daemon.map_or(c.process.rss_kib, |d| d.rss_kib) as f64 / 1024.0)))],
            ["daemon RSS end / peak sampled in window (MiB)", format!("{:.1} / {:.1}",
                daemon_rss as f64 / 1024.0, w.peak_rss_kib.max(daemon_rss) as f64 / 1024.0)],
            ["daemon VmHWM (MiB)", round3(daemon_hwm as f64 / 1024.0)],
            ["daemon threads", end.daemon.map_or(Value::Null, |d| json!(d.threads))],
            ["memory measured", if probe.in_process { "whole jmload process (daemon + generator)" } else if probe.pid.is_some() { "daemon process" } else { "not measured (give --daemon-pid)" }],
            ["reports refused or failed", ctx.hub.report_errors.load(Ordering::Relaxed)],
            ["UpdateTaskStates calls (reports carried)", ctx.hub.report_calls()],
            ["CancelTask received / before its SubmitTask", format!("{} / {}",
                ctx.hub.cancels.load(Ordering::Relaxed), ctx.hub.cancel_before_submit.load(Ordering::Relaxed))],
        ],
        "targets": targets,
    }))
}

/// What the heartbeat set-up got done (also when it failed half-way).
#[derive(Default)]
struct HbSetup {
    handles: Vec<HbHandle>,
    jobs: Vec<String>,
    submit_ms: Vec<f64>,
    registered_at: Option<Instant>,
    answered_at: Option<Instant>,
    running_at: Option<Instant>,
    after_register: Option<CpuSample>,
    after_deploy: Option<CpuSample>,
}

/// Executors (listeners, connections, registration, heartbeats from registration on), then the
/// jobs, one after another, each until every task runs.
async fn heartbeat_setup(
    ctx: &Ctx,
    a: &HeartbeatArgs,
    per_job: u64,
    one_shot: bool,
    start: Instant,
    probe: &Probe,
    setup: &mut HbSetup,
) -> Result<()> {
    let channels = a.executors.div_ceil(a.per_channel);
    let mut gateway = Vec::with_capacity(channels);
    for _ in 0..channels {
        gateway.push(connect(&ctx.url, None).await?);
    }
    let mut execs = Vec::with_capacity(a.executors);
    for i in 0..a.executors {
        let exec = ctx
            .add_executor(
                format!("exec-{i:05}"),
                gateway[i / a.per_channel].clone(),
                a.slots,
                one_shot,
            )
            .await?;
        execs.push(exec);
    }
    let (hb_tx, mut hb_rx) = mpsc::channel::<Result<HbHandle>>(a.executors.max(1));
    let sem = Arc::new(tokio::sync::Semaphore::new(a.register_concurrency.max(1)));
    for (i, exec) in execs.iter().enumerate() {
        let permit = sem.clone().acquire_owned().await?;
        let exec = exec.clone();
        let hb_tx = hb_tx.clone();
        let n = a.executors;
        let stats = ctx.stats.clone();
        let stop = ctx.stop_tx.subscribe();
        tokio::spawn(async move {
            let result = async {
                let interval = register_one(&exec).await?;
                let phase = interval.mul_f64(i as f64 / n as f64);
                let close = Arc::new(Notify::new());
                let (first_tx, first_rx) = oneshot::channel();
                let join = tokio::spawn(heartbeat_loop(
                    exec,
                    interval,
                    phase,
                    stats,
                    stop,
                    close.clone(),
                    first_tx,
                    None,
                ));
                Ok(HbHandle {
                    close,
                    first: Some(first_rx),
                    join,
                })
            }
            .await;
            drop(permit);
            let _ = hb_tx.send(result).await;
        });
    }
    drop(hb_tx);
    let mut error = None;
    while let Some(h) = hb_rx.recv().await {
        match h {
            Ok(h) => setup.handles.push(h),
            Err(e) => error = error.or(Some(e)),
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    setup.registered_at = Some(Instant::now());
    for h in &mut setup.handles {
        h.first_answer(RPC_TIMEOUT).await?;
    }
    setup.answered_at = Some(Instant::now());
    setup.after_register = Some(probe.sample());
    eprintln!(
        "heartbeat: {} executors registered in {:.1} s, all heartbeating after {:.1} s",
        a.executors,
        (setup.registered_at.unwrap_or(start) - start).as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    for j in 0..a.jobs {
        let name = format!("heartbeat-{j}");
        let spec = match a.shape {
            HeartbeatShape::Pointwise => two_vertex_spec(
                &name,
                (per_job / 2) as u32,
                "pointwise",
                "region",
                zero_backoff(),
            ),
            HeartbeatShape::Independent => {
                single_vertex_spec(&name, per_job as u32, zero_backoff())
            }
        };
        let t = Instant::now();
        let job = ctx.submit(spec).await?;
        setup.submit_ms.push(ms(t.elapsed()));
        setup.jobs.push(job.clone());
        let hub = ctx.hub.clone();
        let want = per_job * (j as u64 + 1);
        wait_for("every task of the job running", a.setup_timeout, || {
            hub.running_ok.load(Ordering::Relaxed) >= want
        })
        .await?;
        // Reports can also belong to restarted attempts: ask the daemon.
        ctx.wait_job_running(&job, a.setup_timeout).await?;
        if j == 0 || (j + 1) % 10 == 0 || j + 1 == a.jobs {
            eprintln!(
                "heartbeat: job {j} submitted in {:.0} ms, all its {per_job} tasks running after \
                 {:.1} s ({:.0} s from start)",
                setup.submit_ms[j],
                t.elapsed().as_secs_f64(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    setup.running_at = Some(Instant::now());
    setup.after_deploy = Some(probe.sample());
    Ok(())
}

#[derive(Default)]
struct HbWindow {
    seconds: f64,
    sent: u64,
    acked: u64,
    reregister: u64,
    ended: u64,
    lost: u64,
    failed: u64,
    restarts: u64,
    max_gap_ms: f64,
    late: u64,
    peak_rss_kib: u64,
    cpu0: CpuSample,
    cpu1: CpuSample,
}

/// The measurement window: counters before and after, progress every 10 s.
async fn heartbeat_window(ctx: &Ctx, a: &HeartbeatArgs, probe: &Probe) -> HbWindow {
    let s = &ctx.stats;
    let e = &ctx.events;
    let lost0 = e.executor_lost.load(Ordering::Relaxed);
    let failed0 = e.task_failed.load(Ordering::Relaxed);
    let restarts0 = e.restarts.load(Ordering::Relaxed);
    let sent0 = s.sent.load(Ordering::Relaxed);
    let acked0 = s.acked.load(Ordering::Relaxed);
    let rereg0 = s.reregister.load(Ordering::Relaxed);
    let ended0 = s.ended.load(Ordering::Relaxed);
    s.max_gap_us.store(0, Ordering::Relaxed);
    s.late.store(0, Ordering::Relaxed);
    s.recording.store(true, Ordering::SeqCst);
    let cpu0 = probe.sample();
    let w0 = Instant::now();
    let mut peak_rss_kib = 0u64;
    let end = w0 + a.duration;
    while Instant::now() < end {
        let step = end
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(10));
        tokio::time::sleep(step).await;
        let now = probe.sample();
        let rss = now.daemon.map_or(now.process.rss_kib, |d| d.rss_kib);
        peak_rss_kib = peak_rss_kib.max(rss);
        eprintln!(
            "heartbeat: {:>4.0} s: {} answers, {} executor-lost, daemon RSS {} MiB",
            w0.elapsed().as_secs_f64(),
            s.acked.load(Ordering::Relaxed) - acked0,
            e.executor_lost.load(Ordering::Relaxed),
            rss / 1024
        );
    }
    let cpu1 = probe.sample();
    let seconds = w0.elapsed().as_secs_f64();
    s.recording.store(false, Ordering::SeqCst);
    HbWindow {
        seconds,
        sent: s.sent.load(Ordering::Relaxed) - sent0,
        acked: s.acked.load(Ordering::Relaxed) - acked0,
        reregister: s.reregister.load(Ordering::Relaxed) - rereg0,
        ended: s.ended.load(Ordering::Relaxed) - ended0,
        lost: e.executor_lost.load(Ordering::Relaxed) - lost0,
        failed: e.task_failed.load(Ordering::Relaxed) - failed0,
        restarts: e.restarts.load(Ordering::Relaxed) - restarts0,
        max_gap_ms: s.max_gap_us.load(Ordering::Relaxed) as f64 / 1000.0,
        late: s.late.load(Ordering::Relaxed),
        peak_rss_kib,
        cpu0,
        cpu1,
    }
}
