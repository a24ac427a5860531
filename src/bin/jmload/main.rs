//! `jmload`: load tool and measurements for the `jobmaster` daemon (issue 4's targets).
//!
//! It starts the daemon in-process on 127.0.0.1 port 0 (on its own tokio runtime, threads named
//! `jmd`, so its CPU time can be told apart from the generator's, threads `jmgen`), or targets a
//! running one with `--endpoint URL` (127.0.0.1 only). It simulates TaskExecutors with the
//! generated gRPC code (the library's shared fake, [`jobmaster::fake_executor`]): each
//! registers, keeps one Heartbeat stream whose requests list the attempts it holds, and serves
//! a minimal TaskExecutorService (SubmitTask → holds the attempt and
//! reports RUNNING, CancelTask → drops it and reports CANCELED at once; the batch calls
//! SubmitTasks and CancelTasks do the same for each of their tasks, all counted as received
//! when the batch arrives, and report the whole batch's states with one UpdateTaskStates call,
//! as a real executor sends its queued reports; `--unary-reports` sends one UpdateTaskState per
//! task instead). All simulated executors
//! share one gRPC server: each has its own listening port, and the port a call arrived on says
//! which executor it is for.
//!
//! Scenarios (every wait is bounded, and a hard deadline ends the process):
//! * `detect`: an executor's heartbeat stream closes → WatchEvents shows it lost and its tasks
//!   FAILED. Target p99 ≤ 50 ms.
//! * `failover`: a 1,000-task restart set with zero backoff: injected failure → all SubmitTask
//!   calls of the new attempt received by the executors, and the part after the last CANCELED
//!   report. Target ≤ 20 ms.
//! * `heartbeat`: 10,000 executors heartbeating every second with 10 attempts each: no false
//!   executor loss, daemon CPU and memory.
//! * `readers`, `churn`: operator reads of a large job; memory after many dropped jobs.
//! * `submit`, `restart`, `store-churn` (issue 14, the durable store): SubmitJob of 100,000
//!   tasks (≤ 1 s); a daemon restarted as after a crash on a store of 100 jobs × 1,000 running
//!   tasks (≤ 3 s to reconcile, no restart); the store file under 10,000 short jobs.
//! * `checkpoint` (issue 16): one checkpoint of 1,000 (or 100,000) tasks acknowledged at once:
//!   trigger → durable completion (≤ 20 ms, ≤ 500 ms).
//!
//! The in-process daemon runs on its default store (embedded redb, fsync) in a fresh temporary
//! state dir unless `--store memory`, `--no-fsync` or `--state-dir` say otherwise ([`daemon`]);
//! [`metrics`] reads its /metrics (store commits) between measured intervals.
//!
//! `--tls` runs `detect` and `failover` with TLS and authentication on every connection
//! (issue 12), with a throwaway CA and certificates ([`tls`]).
//!
//! Modules: [`daemon`] (the in-process daemon), [`executors`] (the simulated executors and
//! their heartbeats), [`ctx`] (what the scenarios share: clients, WatchEvents, job specs),
//! [`tls`] (certificates and the executors' TLS connections),
//! [`stats`] (percentiles and rounding), [`probe`] (CPU and memory from /proc), [`report`]
//! (the tables), and one module per scenario.

mod checkpoint;
mod churn;
mod ctx;
mod daemon;
mod detect;
mod executors;
mod failover;
mod heartbeat;
mod metrics;
mod probe;
mod readers;
mod report;
mod restart;
mod stats;
mod store_churn;
mod submit;
mod tls;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::ctx::Ctx;

// The daemon's allocator and options: the in-process daemon is measured as it ships (with
// glibc's allocator, a third of its CPU on the failover path was malloc and free).
jobmaster::daemon_allocator!();
use crate::daemon::{Setup, start_in_process};
use crate::detect::DetectArgs;
use crate::failover::FailoverArgs;
use crate::heartbeat::HeartbeatArgs;
use crate::probe::{Probe, loadavg};
use crate::report::print_report;
use crate::tls::TlsSetup;

/// Largest message the tool's clients and fake executors accept (GetJob of 100,000 tasks).
const MAX_MESSAGE: usize = 256 << 20;
/// Bound of any single RPC the tool makes.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// How often waits poll.
const POLL: Duration = Duration::from_millis(2);

// ============================================================================================
// Command line
// ============================================================================================

#[derive(Parser)]
#[command(
    name = "jmload",
    version,
    about = "Load tool for the jobmaster daemon: failure detection, failover latency, heartbeat \
             capacity (issue 4's targets)"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args)]
pub(crate) struct Common {
    /// gRPC URL of a running jobmaster (127.0.0.1 or localhost only). Default: start the daemon
    /// in-process on 127.0.0.1 port 0.
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) endpoint: Option<String>,
    /// PID of the daemon at --endpoint: its CPU time and memory are read from /proc/PID.
    #[arg(long, global = true, value_name = "PID")]
    pub(crate) daemon_pid: Option<u32>,
    /// Configuration file for the in-process daemon (JOBMASTER__* variables apply too).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) daemon_config: Option<PathBuf>,
    /// Worker threads of the in-process daemon's runtime.
    #[arg(long, global = true, default_value_t = 2)]
    pub(crate) daemon_threads: usize,
    /// Worker threads of the load generator's runtime.
    #[arg(long, global = true, default_value_t = 2)]
    pub(crate) threads: usize,
    /// Print the results as JSON (on stdout) instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) json_file: Option<PathBuf>,
    /// Log the in-process daemon (RUST_LOG filter, default "warn") to stderr.
    #[arg(long, global = true)]
    pub(crate) log: bool,
    /// Simulated executors report each task's state with its own UpdateTaskState call instead
    /// of one UpdateTaskStates call per SubmitTasks or CancelTasks batch (for comparison).
    #[arg(long, global = true)]
    pub(crate) unary_reports: bool,
    /// TLS and authentication on every connection: a throwaway CA and certificates; the
    /// in-process daemon serves TLS with a token file, the operator client and each simulated
    /// executor present their own certificates, and the executors serve TLS too (detect and
    /// failover only).
    #[arg(long, global = true)]
    pub(crate) tls: bool,
    /// With --tls: keep the certificates in DIR (a `jobmaster certs` folder: an existing CA
    /// is reused) instead of a temporary folder, e.g. for a daemon at --endpoint (an https
    /// URL) started with DIR's files.
    #[arg(long, global = true, value_name = "DIR", requires = "tls")]
    pub(crate) tls_dir: Option<PathBuf>,
    /// The in-process daemon's store (issue 14). Default: the daemon's (`store.backend`,
    /// `embedded` unless a config or JOBMASTER__STORE__BACKEND says otherwise).
    #[arg(long, global = true, value_enum)]
    pub(crate) store: Option<StoreArg>,
    /// The in-process daemon's store does not wait for the disk (`store.fsync = false`).
    #[arg(long, global = true)]
    pub(crate) no_fsync: bool,
    /// The in-process daemon's state dir. Default: a fresh temporary directory, deleted at
    /// the end (so no run starts on an earlier run's jobs).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// The HTTP address of the daemon at --endpoint, for its /metrics (store commits); the
    /// in-process daemon's is known.
    #[arg(long, global = true, value_name = "ADDR")]
    pub(crate) daemon_http: Option<SocketAddr>,
}

/// `--store`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StoreArg {
    /// One redb file under the state dir, committed once per coordinator turn.
    Embedded,
    /// Nothing persisted (the daemon before issue 14).
    Memory,
}

impl StoreArg {
    pub(crate) fn backend(self) -> jobmaster::settings::StoreBackend {
        match self {
            StoreArg::Embedded => jobmaster::settings::StoreBackend::Embedded,
            StoreArg::Memory => jobmaster::settings::StoreBackend::Memory,
        }
    }
}

#[derive(Subcommand)]
enum Scenario {
    /// Heartbeat stream closed → the executor's tasks FAILED (target p99 ≤ 50 ms).
    Detect(DetectArgs),
    /// Failover of a 1,000-task restart set with zero backoff → all SubmitTask calls received
    /// (target ≤ 20 ms).
    Failover(FailoverArgs),
    /// Many executors heartbeating with attempt payloads: false losses, rate, daemon CPU/memory.
    Heartbeat(HeartbeatArgs),
    /// Many HTTP readers of one large job: ListJobs latency (target p99 ≤ 50 ms), heartbeats,
    /// daemon memory.
    Readers(readers::ReadersArgs),
    /// Many large jobs submitted and cancelled: does memory come back once they are dropped?
    Churn(churn::ChurnArgs),
    /// SubmitJob of one large job (100,000 tasks): call → reply, the job's records committed
    /// first (target ≤ 1 s with the store on).
    Submit(submit::SubmitArgs),
    /// A restarted daemon on a store of 100 jobs × 1,000 running tasks: load, reconcile with
    /// the executors that re-register, no task restarted (target ≤ 3 s).
    Restart(restart::RestartArgs),
    /// Many small jobs that finish at once, with the default retention: does the store file
    /// stay bounded?
    StoreChurn(store_churn::StoreChurnArgs),
    /// One checkpoint of a large job whose acknowledgements arrive at once: trigger → durable
    /// completion (target ≤ 20 ms for 1,000 tasks, ≤ 500 ms for 100,000).
    Checkpoint(checkpoint::CheckpointArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.common.log {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(io::stderr)
            .with_ansi(jobmaster::logging::stderr_colour())
            .init();
    }
    // Whatever happens, the process ends by itself.
    let limit = hard_limit(&cli.scenario);
    std::thread::Builder::new()
        .name("jmload-limit".into())
        .spawn(move || {
            std::thread::sleep(limit);
            eprintln!("jmload: hard time limit of {limit:?} reached, exiting");
            std::process::exit(3);
        })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.common.threads.max(1))
        .thread_name("jmgen")
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(cli));
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
}

fn hard_limit(scenario: &Scenario) -> Duration {
    match scenario {
        Scenario::Detect(a) => Duration::from_secs(120) + a.settle * a.trials as u32 * 2,
        Scenario::Failover(a) => {
            Duration::from_secs(180)
                + (a.pause + Duration::from_secs(5)) * (a.runs + a.warmup) as u32
        }
        Scenario::Heartbeat(a) => {
            a.setup_timeout + a.warmup + a.duration + Duration::from_secs(120)
        }
        Scenario::Readers(a) => a.duration + Duration::from_secs(600),
        Scenario::Churn(a) => a.drain_timeout * 2 + Duration::from_secs(1800),
        Scenario::Submit(a) => Duration::from_secs(300) + Duration::from_secs(60) * a.runs as u32,
        Scenario::Restart(a) => a.timeout * 3 + Duration::from_secs(600),
        Scenario::StoreChurn(a) => a.timeout,
        Scenario::Checkpoint(a) => {
            Duration::from_secs(600)
                + (a.pause + Duration::from_secs(5)) * (a.runs + a.warmup) as u32
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let common = &cli.common;
    if common.tls && matches!(cli.scenario, Scenario::Heartbeat(_)) {
        bail!(
            "--tls runs detect and failover: heartbeat shares one connection among many \
             executors, and over TLS a connection acts only for the executor its certificate \
             names"
        );
    }
    let tls = if common.tls {
        let dir = common.tls_dir.clone();
        Some(Arc::new(
            tokio::task::spawn_blocking(move || TlsSetup::create(dir.as_deref())).await??,
        ))
    } else {
        None
    };
    let mut daemon = None;
    let mut http = common.daemon_http;
    let (url, origin) = match &common.endpoint {
        Some(url) => {
            check_local(url)?;
            if url.starts_with("https://") != common.tls {
                bail!("--endpoint {url}: use an https URL with --tls, an http one without");
            }
            if matches!(cli.scenario, Scenario::Restart(_)) {
                bail!("restart stops and starts the daemon: it runs the daemon in-process");
            }
            (url.clone(), None)
        }
        None => {
            let setup = Setup {
                default_retention: matches!(cli.scenario, Scenario::StoreChurn(_)),
                ..Setup::default()
            };
            let (url, d, origin) = start_in_process(common, tls.as_deref(), &setup)?;
            http = Some(d.http);
            daemon = Some(d);
            (url, Some(origin))
        }
    };
    // The state dir jmload made, deleted at the end (a restarted daemon uses it too).
    let temporary_dir = daemon
        .as_ref()
        .filter(|d| d.temporary)
        .and_then(|d| d.state_dir.clone());
    let store_note = match &daemon {
        Some(d) => match &d.state_dir {
            Some(dir) => format!(
                "embedded (redb), fsync {}, state dir {}{}",
                if common.no_fsync { "off" } else { "on" },
                dir.display(),
                if d.temporary { " (temporary)" } else { "" }
            ),
            None => "memory (nothing persisted)".to_owned(),
        },
        None => "the external daemon's".to_owned(),
    };
    let probe = Probe {
        pid: common.daemon_pid,
        in_process: daemon.is_some(),
    };
    let mut ctx = Ctx::new(url.clone(), origin, common.unary_reports, tls.clone()).await?;
    ctx.http = http;
    let load0 = loadavg();
    let machine0 = probe.machine();
    let t0 = Instant::now();
    let result = match &cli.scenario {
        Scenario::Detect(a) => detect::run(&ctx, a).await,
        Scenario::Failover(a) => failover::run(&ctx, a, &probe).await,
        Scenario::Heartbeat(a) => heartbeat::run(&ctx, a, &probe).await,
        Scenario::Readers(a) => readers::run(&ctx, a, &probe, http).await,
        Scenario::Churn(a) => churn::run(&ctx, a, &probe).await,
        Scenario::Submit(a) => submit::run(&ctx, a).await,
        Scenario::Restart(a) => restart::run(&ctx, a, common, tls.as_deref(), &mut daemon).await,
        Scenario::StoreChurn(a) => store_churn::run(&ctx, a, daemon.as_ref()).await,
        Scenario::Checkpoint(a) => checkpoint::run(&ctx, a).await,
    };
    let wall = t0.elapsed().as_secs_f64();
    let machine1 = probe.machine();
    let others =
        ((machine1.0 - machine0.0) - (machine1.1 - machine0.1) - (machine1.2 - machine0.2))
            .max(0.0)
            / wall;
    ctx.shutdown().await;
    if let Some(d) = daemon {
        d.stop().await;
    }
    if let Some(dir) = temporary_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    let mut report = result?;
    report["store"] = json!(store_note);
    report["daemon"] = json!(if common.endpoint.is_some() {
        format!("external at {url}")
    } else {
        format!(
            "in-process ({} worker threads), generator {} worker threads",
            common.daemon_threads, common.threads
        )
    });
    report["tls"] = json!(common.tls);
    report["machine"] = json!(format!(
        "{} CPUs; load average {load0} at the start, {} at the end; other processes used \
         {others:.2} CPUs on average during the scenario ({wall:.0} s)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    ));
    if let Some(path) = &common.json_file {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if common.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

/// Traffic goes to this machine only.
fn check_local(url: &str) -> Result<()> {
    let uri: tonic::codegen::http::Uri = url
        .parse()
        .with_context(|| format!("--endpoint {url:?} is not a URL"))?;
    match uri.host() {
        Some("127.0.0.1") | Some("localhost") => Ok(()),
        other => bail!("--endpoint must be on 127.0.0.1 or localhost, not {other:?}"),
    }
}
