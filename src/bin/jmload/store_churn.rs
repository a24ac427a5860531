//! `store-churn`: does the store file stay bounded under many short jobs (issue 14, target 4)?
//!
//! `--jobs` jobs of `--tasks` independent tasks, each submitted, run on the simulated
//! executors and reported FINISHED as soon as every task runs, `--concurrency` jobs in flight.
//! The daemon keeps its default retention (`store.retain-ended-jobs` 100 jobs / 1 h, the
//! stricter of it and `jobs.retain-ended`): ended jobs beyond 100 are dropped once a second,
//! each drop deleting the job's records in a commit. The store file's size (and the jobs
//! held) is sampled every `--every` jobs finished, and once more after the drops settle.
//! At the end, a copy of the file (taken while no commit runs) is opened offline with redb:
//! its stored, metadata and fragmented bytes, and its size after `compact()`, say how much
//! of the file is free space.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
use jobmaster::api::v1::{
    AttemptRef, GetJobRequest, ListJobsRequest, SubmitJobRequest, TaskStateUpdate,
};
use jobmaster::core::{AttemptState, JobState};
use jobmaster::fake_executor::Executor;
use jobmaster::store::embedded::FILE_NAME;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::RPC_TIMEOUT;
use crate::ctx::{Ctx, single_vertex_spec, zero_backoff};
use crate::daemon::InProcessDaemon;
use crate::metrics::scrape;

#[derive(Args)]
pub(crate) struct StoreChurnArgs {
    /// Jobs submitted and finished.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) jobs: usize,
    /// Tasks per job.
    #[arg(long, default_value_t = 10)]
    pub(crate) tasks: u32,
    /// Jobs in flight at once.
    #[arg(long, default_value_t = 4)]
    pub(crate) concurrency: usize,
    /// Simulated executors (100 slots each).
    #[arg(long, default_value_t = 10)]
    pub(crate) executors: usize,
    /// Sample the store file every this many jobs finished.
    #[arg(long, default_value_t = 1000)]
    pub(crate) every: usize,
    /// Bound of the whole run.
    #[arg(long, default_value = "3600s", value_parser = jobmaster::core::duration::parse_duration)]
    pub(crate) timeout: Duration,
}

pub(crate) async fn run(
    ctx: &Ctx,
    a: &StoreChurnArgs,
    daemon: Option<&InProcessDaemon>,
) -> Result<Value> {
    let Some(dir) = daemon.and_then(|d| d.state_dir.clone()) else {
        bail!("store-churn needs the in-process daemon with a store (not --store memory)");
    };
    let file = dir.join(FILE_NAME);
    let fleet = ctx.start_fleet_with(a.executors, 100, None).await?;
    let execs: Arc<HashMap<String, Arc<Executor>>> = Arc::new(
        fleet
            .iter()
            .map(|(e, _)| (e.id().to_owned(), e.clone()))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    let t0 = Instant::now();
    for _ in 0..a.concurrency.max(1) {
        let (op, execs, next, done, errors) = (
            ctx.op.clone(),
            execs.clone(),
            next.clone(),
            done.clone(),
            errors.clone(),
        );
        let (jobs, tasks) = (a.jobs, a.tasks);
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= jobs {
                    return anyhow::Ok(());
                }
                one_job(op.clone(), &execs, i, tasks, &errors).await?;
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let mut samples: Vec<Value> = Vec::new();
    let sample = |n: usize, held: usize, t: Instant| {
        json!([
            n,
            held,
            (file_size(&file) as f64 / 1e6 * 100.0).round() / 100.0,
            ((t - t0).as_secs_f64() * 10.0).round() / 10.0
        ])
    };
    samples.push(sample(0, held_jobs(ctx).await?, Instant::now()));
    let deadline = t0 + a.timeout;
    let mut next_sample = a.every;
    while done.load(Ordering::SeqCst) < a.jobs {
        if workers.iter().any(|w| w.is_finished()) && next.load(Ordering::SeqCst) < a.jobs {
            break; // a worker failed: its error is reported below
        }
        if Instant::now() > deadline {
            bail!("store-churn: not done within {:?}", a.timeout);
        }
        let n = done.load(Ordering::SeqCst);
        if n >= next_sample {
            samples.push(sample(n, held_jobs(ctx).await?, Instant::now()));
            next_sample += a.every;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in workers {
        w.await.context("a store-churn worker panicked")??;
    }
    let churn_s = t0.elapsed().as_secs_f64();
    if next_sample <= a.jobs {
        samples.push(sample(a.jobs, held_jobs(ctx).await?, Instant::now()));
    }
    // The drops of the last ended jobs beyond the retained 100 (once a second).
    let settle = Instant::now() + Duration::from_secs(30);
    while held_jobs(ctx).await? > 100 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    samples.push(sample(a.jobs, held_jobs(ctx).await?, Instant::now()));
    let offline = match ctx.http {
        Some(http) => Some(offline_stats(&file, http).await?),
        None => None,
    };
    drop(fleet);
    Ok(json!({
        "scenario": "store-churn",
        "setup": [
            ["jobs", format!("{} jobs of {} tasks (one vertex), each reported FINISHED once all its tasks run; {} in flight", a.jobs, a.tasks, a.concurrency)],
            ["executors", format!("{} × 100 slots", a.executors)],
            ["retention", "the daemon's default: store.retain-ended-jobs 100 / 1h, jobs.retain-ended 100 / 1h"],
        ],
        "results": [
            ["samples [jobs finished, jobs held, store file MB, s]", samples],
            ["churn time (s)", (churn_s * 10.0).round() / 10.0],
            ["jobs per s", (a.jobs as f64 / churn_s).round()],
            ["reports refused or failed", errors.load(Ordering::Relaxed) + ctx.hub.report_errors.load(Ordering::Relaxed)],
            ["offline, on a copy of the final file", offline.unwrap_or_else(|| json!("not measured (no /metrics)"))],
        ],
    }))
}

/// Submits job `i`, waits until its tasks run, reports each FINISHED from the executor that
/// runs it, and waits until the job is FINISHED.
async fn one_job(
    mut op: JobMasterServiceClient<Channel>,
    execs: &HashMap<String, Arc<Executor>>,
    i: usize,
    tasks: u32,
    errors: &AtomicU64,
) -> Result<()> {
    let spec = single_vertex_spec(&format!("store-churn-{i}"), tasks, zero_backoff());
    let job = tokio::time::timeout(
        RPC_TIMEOUT,
        op.submit_job(SubmitJobRequest {
            spec,
            format: "json".into(),
        }),
    )
    .await
    .context("SubmitJob timed out")?
    .context("SubmitJob")?
    .into_inner()
    .job_id;
    let get = |op: &mut JobMasterServiceClient<Channel>| {
        let request = GetJobRequest {
            job_id: job.clone(),
            task_limit: tasks,
            ..GetJobRequest::default()
        };
        let mut op = op.clone();
        async move {
            tokio::time::timeout(RPC_TIMEOUT, op.get_job(request))
                .await
                .context("GetJob timed out")?
                .context("GetJob")
                .map(tonic::Response::into_inner)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let running = AttemptState::Running.name();
    let view = loop {
        let view = get(&mut op).await?;
        if view.tasks.len() == tasks as usize && view.tasks.iter().all(|t| t.state == running) {
            break view;
        }
        if Instant::now() > deadline {
            bail!("job {job}: tasks not all RUNNING after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let mut by_executor: HashMap<&str, Vec<TaskStateUpdate>> = HashMap::new();
    for t in &view.tasks {
        let (vertex, subtask) = t.name.rsplit_once('#').context("a task name vertex#n")?;
        let attempt = AttemptRef {
            job_id: job.clone(),
            vertex: vertex.to_owned(),
            subtask: subtask.parse()?,
            attempt: t.attempt,
        };
        if let Some(exec) = execs.get(&t.executor) {
            exec.drop_attempt(&attempt);
        }
        by_executor
            .entry(t.executor.as_str())
            .or_default()
            .push(TaskStateUpdate {
                attempt: Some(attempt),
                state: AttemptState::Finished.name().into(),
                ..TaskStateUpdate::default()
            });
    }
    for (id, updates) in by_executor {
        let exec = execs
            .get(id)
            .with_context(|| format!("no simulated executor {id}"))?;
        let outcomes = exec.update_batch(id, &exec.session(), updates).await?;
        errors.fetch_add(
            outcomes.iter().filter(|o| !o.accepted).count() as u64,
            Ordering::Relaxed,
        );
    }
    let finished = JobState::Finished.name();
    loop {
        let view = get(&mut op).await?;
        if view.state == finished {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("job {job}: not FINISHED after 60 s ({})", view.state);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn held_jobs(ctx: &Ctx) -> Result<usize> {
    let mut op = ctx.op.clone();
    Ok(
        tokio::time::timeout(RPC_TIMEOUT, op.list_jobs(ListJobsRequest {}))
            .await
            .context("ListJobs timed out")?
            .context("ListJobs")?
            .into_inner()
            .jobs
            .len(),
    )
}

fn file_size(file: &Path) -> u64 {
    std::fs::metadata(file).map_or(0, |m| m.len())
}

/// A copy of `file` (taken while the daemon commits nothing) opened with redb: what its
/// pages hold, and its size once compacted.
async fn offline_stats(file: &Path, http: std::net::SocketAddr) -> Result<Value> {
    let copy = file.with_extension("copy");
    for attempt in 0.. {
        let c0 = scrape(http).await?.commits().count;
        std::fs::copy(file, &copy)?;
        if scrape(http).await?.commits().count == c0 {
            break;
        }
        if attempt >= 20 {
            bail!("the daemon kept committing while its store file was copied");
        }
    }
    let copy2 = copy.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<Value> {
        let mut db = redb::Database::create(&copy2)?;
        let stats = db.begin_write()?.stats()?;
        let before = file_size(&copy2);
        let t = Instant::now();
        db.compact()?;
        let compact_ms = t.elapsed().as_secs_f64() * 1000.0;
        drop(db);
        Ok(json!({
            "file MB": before as f64 / 1e6,
            "stored MB": stats.stored_bytes() as f64 / 1e6,
            "metadata MB": stats.metadata_bytes() as f64 / 1e6,
            "fragmented MB": stats.fragmented_bytes() as f64 / 1e6,
            "allocated pages": stats.allocated_pages(),
            "after compact() MB": file_size(&copy2) as f64 / 1e6,
            "compact() ms": compact_ms.round(),
        }))
    })
    .await?;
    let _ = std::fs::remove_file(&copy);
    result
}
