//! `restart`: a JobMaster restarted on a store of many running jobs (issue 14, target 3: 100
//! jobs × 1,000 tasks loaded and reconciled with every executor in ≤ 3 s, no task restarted).
//!
//! Set-up: the in-process daemon on its store (embedded, in a temporary state dir unless
//! `--state-dir`), `--executors` simulated executors that register again when their heartbeat
//! stream ends (every `--retry`, as a real executor retries every 200 ms), listing the
//! attempts they hold as RUNNING; `--jobs` jobs of `--tasks` tasks (source → sink pointwise
//! pipelined, regions of 2), all RUNNING.
//!
//! Each of `--restarts` rounds stops the daemon and starts a new one on the same gRPC and HTTP
//! ports and state dir. `--stop kill` (the default) mimics kill -9: a copy of the store file
//! is taken while the daemon runs, idle (no commit during the copy, checked on /metrics),
//! which is exactly what a killed process leaves on disk (redb marks an open file "needs
//! recovery"); the daemon's runtime is then dropped (every task stops at its next await, no
//! graceful shutdown) and the copy put back, so the new daemon opens a file that was not
//! closed. `--stop runtime` only drops the runtime (redb's `Drop` closes the file cleanly);
//! `--stop graceful` shuts down.
//!
//! Measured from the new daemon's start (just before its listeners are bound): the first
//! ListJobs answer (store opened, loaded and restored, servers up), every executor registered
//! again, and every job out of RECONCILING with all its tasks RUNNING (ListJobs polled every
//! 5 ms). Then checked: every task has the attempt number it had before (GetJob),
//! `jobmaster_tasks_restarted_total` and the jobs' restart counts unchanged, adopted attempts;
//! and reported: the daemon's `jobmaster_reconciliation_seconds`, the store file's size, and
//! the time to open (redb's repair of a file not closed included) and load the store image
//! offline, on a copy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use jobmaster::api::v1::{JobSummary, ListJobsRequest};
use jobmaster::store::Store;
use jobmaster::store::embedded::{Embedded, FILE_NAME};
use serde_json::{Value, json};

use crate::Common;
use crate::ctx::{Ctx, two_vertex_spec, zero_backoff};
use crate::daemon::{InProcessDaemon, Setup, start_in_process};
use crate::metrics::scrape;
use crate::stats::{summarize, summary_json, verdict};
use crate::tls::TlsSetup;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Stop {
    /// As kill -9: the runtime dropped, and the store file as the running daemon left it.
    Kill,
    /// The runtime dropped; redb closes the store file cleanly.
    Runtime,
    /// Graceful shutdown.
    Graceful,
}

#[derive(Args)]
pub(crate) struct RestartArgs {
    /// Jobs stored (each source(n/2) → sink(n/2), pointwise pipelined).
    #[arg(long, default_value_t = 100)]
    pub(crate) jobs: usize,
    /// Tasks per job.
    #[arg(long, default_value_t = 1000)]
    pub(crate) tasks: u32,
    /// Simulated executors; their slots add up to every task.
    #[arg(long, default_value_t = 100)]
    pub(crate) executors: usize,
    /// How often an executor that lost the JobMaster tries to register again.
    #[arg(long, default_value = "200ms", value_parser = jobmaster::core::duration::parse_duration)]
    pub(crate) retry: Duration,
    /// How the daemon is stopped.
    #[arg(long, value_enum, default_value_t = Stop::Kill)]
    pub(crate) stop: Stop,
    /// Restarts measured (each on the store the previous daemon left).
    #[arg(long, default_value_t = 3)]
    pub(crate) restarts: usize,
    /// Bound of the set-up and of each restart's wait.
    #[arg(long, default_value = "120s", value_parser = jobmaster::core::duration::parse_duration)]
    pub(crate) timeout: Duration,
}

/// One restart's times (ms from the new daemon's start) and checks.
struct Round {
    first_answer: f64,
    registered: f64,
    reconciled: f64,
    reconciliation_metric_ms: f64,
    adopted: f64,
    restarted_tasks: f64,
    changed_attempts: usize,
    restarts_after: u64,
    image_copies: usize,
    /// The new daemon's store commits until it had reconciled: count, ms.
    commits: (f64, f64),
}

pub(crate) async fn run(
    ctx: &Ctx,
    a: &RestartArgs,
    common: &Common,
    tls: Option<&TlsSetup>,
    daemon: &mut Option<InProcessDaemon>,
) -> Result<Value> {
    let Some(d) = daemon.as_ref() else {
        bail!("restart needs the in-process daemon");
    };
    let Some(state_dir) = d.state_dir.clone() else {
        bail!("restart needs a store: not --store memory");
    };
    let (grpc, http) = (d.grpc, d.http);
    let total = a.tasks as usize * a.jobs;
    let slots = (total as u32).div_ceil(a.executors.max(1) as u32);
    eprintln!(
        "restart: {} jobs × {} tasks on {} executors × {slots} slots, {} restarts ({})",
        a.jobs,
        a.tasks,
        a.executors,
        a.restarts,
        match a.stop {
            Stop::Kill => "as kill -9",
            Stop::Runtime => "runtime dropped",
            Stop::Graceful => "graceful",
        }
    );
    let t_setup = Instant::now();
    let fleet = ctx
        .start_fleet_with(a.executors, slots, Some(a.retry))
        .await?;
    let p = a.tasks / 2;
    let mut jobs = Vec::with_capacity(a.jobs);
    for i in 0..a.jobs {
        let spec = two_vertex_spec(
            &format!("restart-{i}"),
            p,
            "pointwise",
            "region",
            zero_backoff(),
        );
        jobs.push(ctx.submit(spec).await?);
    }
    wait_all_up(ctx, &jobs, p * 2, a.timeout).await?;
    let setup_s = t_setup.elapsed().as_secs_f64();
    eprintln!("restart: {total} tasks RUNNING after {setup_s:.1} s");
    let file = state_dir.join(FILE_NAME);
    let size_running = file_size(&file);
    let image = state_dir.with_extension("crash-image");
    let mut rounds = Vec::new();
    for round in 0..a.restarts {
        let before = attempts(ctx, &jobs).await?;
        let restarts_before: u64 = list(ctx).await?.iter().map(|j| j.restarts).sum();
        let scraped = scrape(http).await?;
        let restarted_before = scraped.sum("jobmaster_tasks_restarted_total");
        let adopted_before = scraped.sum("jobmaster_adopted_attempts_total");
        // The store image a kill -9 would leave: copied while no commit happens.
        let mut copies = 0;
        loop {
            copies += 1;
            let c0 = scrape(http).await?.commits().count;
            std::fs::copy(&file, &image).context("copying the store file")?;
            let c1 = scrape(http).await?.commits().count;
            if c0 == c1 {
                break;
            }
            if copies >= 20 {
                bail!("the daemon kept committing while its store file was copied");
            }
        }
        let old = daemon.take().expect("a daemon runs");
        match a.stop {
            Stop::Graceful => old.stop().await,
            Stop::Runtime => old.crash().await,
            Stop::Kill => {
                old.crash().await;
                std::fs::copy(&image, &file).context("putting the store image back")?;
            }
        }
        let registered0 = ctx.stats.reconnected.load(Ordering::SeqCst);
        let t0 = Instant::now();
        let (_, new, _) = start_in_process(
            common,
            tls,
            &Setup {
                grpc: Some(grpc),
                http: Some(http),
                default_retention: false,
                state_dir: Some(state_dir.clone()),
            },
        )?;
        *daemon = Some(new);
        let marks = wait_reconciled(ctx, &jobs, p * 2, a, registered0, t0).await?;
        let after = attempts(ctx, &jobs).await?;
        let changed = before
            .iter()
            .filter(|(k, v)| after.get(*k) != Some(v))
            .count()
            + after.len().saturating_sub(before.len());
        let scraped = scrape(http).await?;
        let restarts_after: u64 = list(ctx).await?.iter().map(|j| j.restarts).sum();
        let r = Round {
            first_answer: marks.0,
            registered: marks.1,
            reconciled: marks.2,
            reconciliation_metric_ms: scraped.sum("jobmaster_reconciliation_seconds_sum") * 1000.0,
            adopted: scraped.sum("jobmaster_adopted_attempts_total") - adopted_before,
            restarted_tasks: scraped.sum("jobmaster_tasks_restarted_total") - restarted_before,
            changed_attempts: changed,
            restarts_after: restarts_after - restarts_before,
            image_copies: copies,
            commits: {
                let c = scraped.commits();
                (c.count, c.seconds * 1000.0)
            },
        };
        eprintln!(
            "restart: round {round}: first answer {:.0} ms, all registered {:.0} ms, all \
             reconciled and RUNNING {:.0} ms (daemon: reconciliation {:.0} ms); adopted {}, \
             tasks restarted {}, attempts changed {}; {} commits, {:.0} ms",
            r.first_answer,
            r.registered,
            r.reconciled,
            r.reconciliation_metric_ms,
            r.adopted,
            r.restarted_tasks,
            r.changed_attempts,
            r.commits.0,
            r.commits.1
        );
        rounds.push(r);
    }
    let size_end = file_size(&file);
    let (open_ms, load_ms, loaded_jobs, loaded_tasks) = offline_load(&image)?;
    let _ = std::fs::remove_file(&image);
    drop(fleet);
    let col = |f: fn(&Round) -> f64| summarize(rounds.iter().map(f).collect());
    let reconciled = col(|r| r.reconciled);
    let clean = rounds
        .iter()
        .all(|r| r.restarted_tasks == 0.0 && r.changed_attempts == 0 && r.restarts_after == 0);
    let mut targets = Vec::new();
    if let Some(s) = reconciled {
        targets.push(verdict(
            &format!(
                "restart with {} jobs × {} tasks: loaded and reconciled, every task RUNNING (max)",
                a.jobs, a.tasks
            ),
            s.max,
            3000.0,
        ));
    }
    targets.push(json!({
        "target": "0 tasks restarted, no attempt number changed",
        "verdict": if clean { "MET" } else { "MISSED" },
    }));
    Ok(json!({
        "scenario": "restart",
        "setup": [
            ["jobs", format!("{} × source({p}) → sink({p}) pointwise pipelined ({} tasks)", a.jobs, total)],
            ["executors", format!("{} × {slots} slots, one connection each; register again every {:?} once their stream ends, listing their attempts as RUNNING", a.executors, a.retry)],
            ["stop", match a.stop {
                Stop::Kill => "as kill -9: runtime dropped, store file as the running daemon left it (not closed)",
                Stop::Runtime => "runtime dropped, store file closed by redb",
                Stop::Graceful => "graceful shutdown",
            }],
            ["restarts", a.restarts],
        ],
        "latency_ms": [
            ["new daemon start → first ListJobs answer (store loaded, servers up)", summary_json(col(|r| r.first_answer))],
            ["new daemon start → every executor registered again", summary_json(col(|r| r.registered))],
            ["new daemon start → every job out of RECONCILING, all tasks RUNNING", summary_json(reconciled)],
            ["daemon: jobmaster_reconciliation_seconds (store loaded → last job reconciled)", summary_json(col(|r| r.reconciliation_metric_ms))],
        ],
        "results": [
            ["set-up: all tasks RUNNING (s)", (setup_s * 10.0).round() / 10.0],
            ["store file: all jobs running / at the end (MB)", format!("{:.1} / {:.1}", mb(size_running), mb(size_end))],
            ["offline, on the kill image: open incl. redb repair / load (ms)", format!("{open_ms:.0} / {load_ms:.0} ({loaded_jobs} jobs, {loaded_tasks} task records)")],
            ["adopted attempts per restart", rounds.iter().map(|r| r.adopted).collect::<Vec<_>>()],
            ["tasks restarted per restart (jobmaster_tasks_restarted_total)", rounds.iter().map(|r| r.restarted_tasks).collect::<Vec<_>>()],
            ["attempt numbers changed per restart (GetJob)", rounds.iter().map(|r| r.changed_attempts).collect::<Vec<_>>()],
            ["job restarts counted per restart (ListJobs)", rounds.iter().map(|r| r.restarts_after).collect::<Vec<_>>()],
            ["copies of the store file taken (one per restart unless a commit interfered)", rounds.iter().map(|r| r.image_copies).collect::<Vec<_>>()],
            ["the new daemon's store commits until reconciled [count, ms], per restart", rounds.iter().map(|r| [r.commits.0, (r.commits.1 * 10.0).round() / 10.0]).collect::<Vec<_>>()],
            ["executor re-registrations failed while the daemon was away", ctx.stats.register_retries.load(Ordering::Relaxed)],
        ],
        "targets": targets,
    }))
}

async fn list(ctx: &Ctx) -> Result<Vec<JobSummary>> {
    let mut op = ctx.op.clone();
    Ok(
        tokio::time::timeout(crate::RPC_TIMEOUT, op.list_jobs(ListJobsRequest {}))
            .await
            .context("ListJobs timed out")?
            .context("ListJobs")?
            .into_inner()
            .jobs,
    )
}

/// Whether every job of `jobs` is RUNNING with `tasks` tasks up.
fn all_up(listed: &[JobSummary], jobs: &[String], tasks: u32) -> bool {
    jobs.iter().all(|id| {
        listed
            .iter()
            .any(|j| &j.job_id == id && j.state == "RUNNING" && j.tasks_up == tasks)
    })
}

async fn wait_all_up(ctx: &Ctx, jobs: &[String], tasks: u32, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if all_up(&list(ctx).await?, jobs, tasks) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("jobs not all RUNNING after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the restarted daemon every 5 ms: (first answer, every executor registered again,
/// every job RUNNING with all tasks up), in ms from `t0`.
async fn wait_reconciled(
    ctx: &Ctx,
    jobs: &[String],
    tasks: u32,
    a: &RestartArgs,
    registered0: u64,
    t0: Instant,
) -> Result<(f64, f64, f64)> {
    let ms = |t: Instant| (t - t0).as_secs_f64() * 1000.0;
    let deadline = t0 + a.timeout;
    let mut op = ctx.op.clone();
    let (mut first, mut registered) = (None, None);
    loop {
        let now = Instant::now();
        if registered.is_none()
            && ctx.stats.reconnected.load(Ordering::SeqCst) >= registered0 + a.executors as u64
        {
            registered = Some(now);
        }
        let answer =
            tokio::time::timeout(Duration::from_secs(5), op.list_jobs(ListJobsRequest {})).await;
        if let Ok(Ok(answer)) = answer {
            let at = Instant::now();
            first.get_or_insert(at);
            if all_up(&answer.into_inner().jobs, jobs, tasks) {
                let registered = registered.unwrap_or(at);
                return Ok((ms(first.unwrap_or(at)), ms(registered), ms(at)));
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the restarted daemon did not reconcile within {:?} ({} of {} executors back)",
                a.timeout,
                ctx.stats.reconnected.load(Ordering::SeqCst) - registered0,
                a.executors
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// (job, task) → attempt number, for every task of `jobs`.
async fn attempts(ctx: &Ctx, jobs: &[String]) -> Result<BTreeMap<(String, String), u32>> {
    let mut all = BTreeMap::new();
    for job in jobs {
        let view = ctx.get_job(job).await?;
        for t in view.tasks {
            all.insert((job.clone(), t.name), t.attempt);
        }
    }
    Ok(all)
}

fn file_size(file: &Path) -> u64 {
    std::fs::metadata(file).map_or(0, |m| m.len())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Opens and loads a copy of the store image `image` offline: (open ms, load ms, jobs, task
/// records). Opening a file that was not closed includes redb's repair.
fn offline_load(image: &Path) -> Result<(f64, f64, usize, usize)> {
    let dir: PathBuf = image.with_extension("offline");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(image, dir.join(FILE_NAME))?;
    let t0 = Instant::now();
    let store = Embedded::open(&dir, true)?;
    let open_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let t1 = Instant::now();
    let loaded = store.load()?;
    let load_ms = t1.elapsed().as_secs_f64() * 1000.0;
    let tasks = loaded.jobs.iter().map(|j| j.tasks.len()).sum();
    let jobs = loaded.jobs.len();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((open_ms, load_ms, jobs, tasks))
}
