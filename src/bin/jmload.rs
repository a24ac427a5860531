//! `jmload`: load tool and measurements for the `jobmaster` daemon (issue 4's targets).
//!
//! It starts the daemon in-process on 127.0.0.1 port 0 (on its own tokio runtime, threads named
//! `jmd`, so its CPU time can be told apart from the generator's, threads `jmgen`), or targets a
//! running one with `--endpoint URL` (127.0.0.1 only). It simulates TaskExecutors with the
//! generated gRPC code: each registers, keeps one Heartbeat stream whose requests list the
//! attempts it holds, and serves a minimal TaskExecutorService (SubmitTask → holds the attempt and
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
//!   "executor lost", heartbeats/s, the daemon's CPU and memory.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
use jobmaster::api::v1::task_executor_gateway_client::TaskExecutorGatewayClient;
use jobmaster::api::v1::task_executor_service_server::{
    TaskExecutorService, TaskExecutorServiceServer,
};
use jobmaster::api::v1::{
    AttemptRef, CancelTaskRequest, CancelTaskResponse, CancelTasksRequest, CancelTasksResponse,
    FetchPartitionRequest, GetJobRequest, GetJobResponse, HeartbeatRequest, InjectFailureRequest,
    ListExecutorsRequest, PartitionChunk, RegisterExecutorRequest, ReleasePartitionsRequest,
    ReleasePartitionsResponse, SubmitJobRequest, SubmitTaskRequest, SubmitTaskResponse,
    SubmitTasksRequest, SubmitTasksResponse, TaskOutcome, TaskStateUpdate, UpdateTaskStateRequest,
    UpdateTaskStatesRequest, WatchEvent, WatchEventsRequest, inject_failure_request,
};
use jobmaster::settings::Settings;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

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
struct Common {
    /// gRPC URL of a running jobmaster (127.0.0.1 or localhost only). Default: start the daemon
    /// in-process on 127.0.0.1 port 0.
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,
    /// PID of the daemon at --endpoint: its CPU time and memory are read from /proc/PID.
    #[arg(long, global = true, value_name = "PID")]
    daemon_pid: Option<u32>,
    /// Configuration file for the in-process daemon (JOBMASTER__* variables apply too).
    #[arg(long, global = true, value_name = "FILE")]
    daemon_config: Option<PathBuf>,
    /// Worker threads of the in-process daemon's runtime.
    #[arg(long, global = true, default_value_t = 2)]
    daemon_threads: usize,
    /// Worker threads of the load generator's runtime.
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    /// Print the results as JSON (on stdout) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, global = true, value_name = "FILE")]
    json_file: Option<PathBuf>,
    /// Log the in-process daemon (RUST_LOG filter, default "warn") to stderr.
    #[arg(long, global = true)]
    log: bool,
    /// Simulated executors report each task's state with its own UpdateTaskState call instead
    /// of one UpdateTaskStates call per SubmitTasks or CancelTasks batch (for comparison).
    #[arg(long, global = true)]
    unary_reports: bool,
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
}

#[derive(Args)]
struct DetectArgs {
    /// Number of trials (one victim executor and one job each).
    #[arg(long, default_value_t = 50)]
    trials: usize,
    /// Tasks of each trial's job, all on the victim.
    #[arg(long, default_value_t = 4)]
    tasks: u32,
    /// Other executors heartbeating meanwhile (their slots are filled by a filler job).
    #[arg(long, default_value_t = 20)]
    background: usize,
    /// Slots of each background executor.
    #[arg(long, default_value_t = 4)]
    background_slots: u32,
    /// Pause between "all tasks running" and closing the victim's stream.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    settle: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FailoverShape {
    /// source(n/2) → sink(n/2), all-to-all pipelined, region failover: one region of n tasks.
    AllToAll,
    /// source(n/2) → sink(n/2), pointwise pipelined, full failover: n/2 regions, all restart.
    PointwiseFull,
}

#[derive(Args)]
struct FailoverArgs {
    /// Measured runs.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Unmeasured runs first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Tasks of the job (all of them restart on every failure).
    #[arg(long, default_value_t = 1000)]
    tasks: u32,
    /// Executors; their slots add up to the job's tasks.
    #[arg(long, default_value_t = 10)]
    executors: usize,
    /// The job's shape.
    #[arg(long, value_enum, default_value_t = FailoverShape::AllToAll)]
    shape: FailoverShape,
    /// Pause between a run's "all tasks running" and the next injected failure.
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    pause: Duration,
    /// Keep only job and executor WatchEvents, not task-state ones (no restart-step timing).
    /// The tool's subscription stays open, so the daemon still builds and sends every event;
    /// this lightens the generator, not the daemon.
    #[arg(long)]
    no_watch: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HeartbeatShape {
    /// source(p) → sink(p) pointwise pipelined: regions of 2 tasks.
    Pointwise,
    /// One vertex, no edges: single-task regions.
    Independent,
}

#[derive(Args)]
struct HeartbeatArgs {
    /// Simulated executors.
    #[arg(long, default_value_t = 10_000)]
    executors: usize,
    /// Slots per executor; the jobs fill them all, so every heartbeat lists this many attempts.
    #[arg(long, default_value_t = 10)]
    slots: u32,
    /// Split the executors × slots tasks into this many jobs (submitted one after another).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Shape of each job.
    #[arg(long, value_enum, default_value_t = HeartbeatShape::Pointwise)]
    shape: HeartbeatShape,
    /// Executors per HTTP/2 connection to the gateway (each still has its own stream).
    #[arg(long, default_value_t = 100)]
    per_channel: usize,
    /// Measurement window.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Steady-state time before the window (every heartbeat then carries its attempts).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Bound of the set-up (registration, submission, all tasks running).
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    setup_timeout: Duration,
    /// Keep every executor's listening socket open (by default each accepts the daemon's one
    /// connection and closes, to stay within the file-descriptor limit).
    #[arg(long)]
    keep_listeners: bool,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 64)]
    register_concurrency: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.common.log {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(io::stderr)
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
    }
}

async fn run(cli: Cli) -> Result<()> {
    let common = &cli.common;
    let mut daemon = None;
    let (url, origin) = match &common.endpoint {
        Some(url) => {
            check_local(url)?;
            (url.clone(), None)
        }
        None => {
            let (url, d, origin) = start_in_process(common)?;
            daemon = Some(d);
            (url, Some(origin))
        }
    };
    let probe = Probe {
        pid: common.daemon_pid,
        in_process: daemon.is_some(),
    };
    let ctx = Ctx::new(url.clone(), origin, common.unary_reports).await?;
    let load0 = loadavg();
    let machine0 = probe.machine();
    let t0 = Instant::now();
    let result = match &cli.scenario {
        Scenario::Detect(a) => detect(&ctx, a).await,
        Scenario::Failover(a) => failover(&ctx, a, &probe).await,
        Scenario::Heartbeat(a) => heartbeat(&ctx, a, &probe).await,
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
    let mut report = result?;
    report["daemon"] = json!(if common.endpoint.is_some() {
        format!("external at {url}")
    } else {
        format!(
            "in-process ({} worker threads), generator {} worker threads",
            common.daemon_threads, common.threads
        )
    });
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

// ============================================================================================
// The daemon, in-process
// ============================================================================================

struct InProcessDaemon {
    stop: Option<oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
}

/// Starts `jobmaster::server::serve` on its own runtime (threads `jmd`) on 127.0.0.1 port 0.
/// Returns its URL and an instant at most a fraction of a millisecond before the daemon's
/// clock zero (WatchEvent.time_ms counts from there).
fn start_in_process(common: &Common) -> Result<(String, InProcessDaemon, Instant)> {
    let mut settings = Settings::load(common.daemon_config.as_deref())?;
    settings.server.shutdown_grace = Duration::from_secs(1);
    let grpc = std::net::TcpListener::bind("127.0.0.1:0")?;
    grpc.set_nonblocking(true)?;
    let http = std::net::TcpListener::bind("127.0.0.1:0")?;
    http.set_nonblocking(true)?;
    let addr = grpc.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common.daemon_threads.max(1))
        .thread_name("jmd")
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let origin = Instant::now();
    std::thread::Builder::new()
        .name("jmd-main".into())
        .spawn(move || {
            let result = runtime.block_on(async move {
                let grpc = TcpListener::from_std(grpc)?;
                let http = TcpListener::from_std(http)?;
                jobmaster::server::serve(settings, grpc, http, async {
                    let _ = stop_rx.await;
                })
                .await
            });
            if let Err(e) = result {
                eprintln!("jmload: the in-process daemon failed: {e:#}");
            }
            runtime.shutdown_timeout(Duration::from_secs(2));
            let _ = done_tx.send(());
        })?;
    Ok((
        format!("http://{addr}"),
        InProcessDaemon {
            stop: Some(stop_tx),
            done: done_rx,
        },
        origin,
    ))
}

impl InProcessDaemon {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let done = self.done;
        let _ =
            tokio::task::spawn_blocking(move || done.recv_timeout(Duration::from_secs(10))).await;
    }
}

// ============================================================================================
// Simulated executors
// ============================================================================================

/// One simulated TaskExecutor.
struct Exec {
    id: String,
    session: String,
    address: String,
    gateway: TaskExecutorGatewayClient<Channel>,
    /// Attempts it holds, by (job, vertex, subtask).
    held: Mutex<HashMap<TaskKey, AttemptRef>>,
    /// RUNNING reports the daemon accepted.
    running: AtomicU64,
    /// Attempts cancelled before their SubmitTask arrived (a JobMaster that sends the two
    /// calls independently lets them overtake each other): a later SubmitTask for one of them
    /// is answered with a CANCELED report at once.
    tombstones: Mutex<std::collections::HashSet<(TaskKey, u32)>>,
}

impl Exec {
    fn heartbeat_request(&self) -> HeartbeatRequest {
        let attempts = self.held.lock().unwrap().values().cloned().collect();
        HeartbeatRequest {
            executor_id: self.id.clone(),
            session_id: self.session.clone(),
            attempts,
            partitions: Vec::new(),
            free_disk_bytes: 1 << 40,
        }
    }
}

/// (job, vertex, subtask).
type TaskKey = (String, String, u32);

fn key(a: &AttemptRef) -> TaskKey {
    (a.job_id.clone(), a.vertex.clone(), a.subtask)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Submit,
    Cancel,
    CanceledSent,
}

/// What every simulated executor shares: the port → executor map, counters, and (while a
/// failover run records) the time of every SubmitTask, CancelTask and CANCELED report.
#[derive(Default)]
struct Hub {
    execs: RwLock<HashMap<u16, Arc<Exec>>>,
    submits: AtomicU64,
    cancels: AtomicU64,
    running_ok: AtomicU64,
    canceled_ok: AtomicU64,
    report_errors: AtomicU64,
    /// CancelTask calls that arrived before their attempt's SubmitTask.
    cancel_before_submit: AtomicU64,
    recording: AtomicBool,
    marks: Mutex<Vec<(Mark, Instant, u32)>>,
    /// SubmitTask calls for attempt number `target_attempt` since `begin`.
    target_attempt: AtomicU32,
    target_submits: AtomicU64,
    /// Report each task with its own UpdateTaskState, also for batch calls.
    unary_reports: bool,
    /// UpdateTaskStates calls made, and the reports they carried.
    report_batches: AtomicU64,
    batched_reports: AtomicU64,
}

impl Hub {
    fn exec_for<T>(&self, request: &Request<T>) -> Result<Arc<Exec>, Status> {
        let port = request
            .local_addr()
            .map(|a| a.port())
            .ok_or_else(|| Status::internal("no local address"))?;
        self.execs
            .read()
            .unwrap()
            .get(&port)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no simulated executor on port {port}")))
    }

    fn mark(&self, mark: Mark, at: Instant, attempt: u32) {
        if self.recording.load(Ordering::Relaxed) {
            self.marks.lock().unwrap().push((mark, at, attempt));
        }
    }

    /// Starts recording for a run whose new attempts have number `target`.
    fn begin(&self, target: u32) {
        self.marks.lock().unwrap().clear();
        self.target_attempt.store(target, Ordering::SeqCst);
        self.target_submits.store(0, Ordering::SeqCst);
        self.recording.store(true, Ordering::SeqCst);
    }

    /// "calls (reports)" of UpdateTaskStates so far.
    fn report_calls(&self) -> String {
        format!(
            "{} ({})",
            self.report_batches.load(Ordering::Relaxed),
            self.batched_reports.load(Ordering::Relaxed)
        )
    }

    fn end(&self) -> Vec<(Mark, Instant, u32)> {
        self.recording.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.marks.lock().unwrap())
    }
}

struct FakeService {
    hub: Arc<Hub>,
}

/// Reports an attempt's state to the daemon (RUNNING after a submit, CANCELED after a cancel)
/// with one UpdateTaskState call.
async fn report(hub: Arc<Hub>, exec: Arc<Exec>, attempt: AttemptRef, state: &'static str) {
    if state == "CANCELED" {
        hub.mark(Mark::CanceledSent, Instant::now(), attempt.attempt);
    }
    let mut client = exec.gateway.clone();
    let request = UpdateTaskStateRequest {
        executor_id: exec.id.clone(),
        session_id: exec.session.clone(),
        attempt: Some(attempt),
        state: state.to_owned(),
        ..UpdateTaskStateRequest::default()
    };
    let result = tokio::time::timeout(RPC_TIMEOUT, client.update_task_state(request)).await;
    count_report(&hub, &exec, state, matches!(result, Ok(Ok(_))));
}

/// Counts a report the daemon accepted or refused.
fn count_report(hub: &Hub, exec: &Exec, state: &str, accepted: bool) {
    match (accepted, state) {
        (true, "RUNNING") => {
            exec.running.fetch_add(1, Ordering::Relaxed);
            hub.running_ok.fetch_add(1, Ordering::Relaxed);
        }
        (true, _) => {
            hub.canceled_ok.fetch_add(1, Ordering::Relaxed);
        }
        (false, _) => {
            hub.report_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reports the states a batch call led to with one UpdateTaskStates call, in the batch's order.
/// A CANCELED report counts as sent when the call carrying it is sent.
async fn report_batch(hub: Arc<Hub>, exec: Arc<Exec>, reports: Vec<(AttemptRef, &'static str)>) {
    if reports.is_empty() {
        return;
    }
    let sent = Instant::now();
    let mut canceled: Vec<u32> = reports
        .iter()
        .filter(|(_, state)| *state == "CANCELED")
        .map(|(a, _)| a.attempt)
        .collect();
    canceled.sort_unstable();
    canceled.dedup();
    for attempt in canceled {
        hub.mark(Mark::CanceledSent, sent, attempt);
    }
    let states: Vec<&'static str> = reports.iter().map(|(_, state)| *state).collect();
    let request = UpdateTaskStatesRequest {
        executor_id: exec.id.clone(),
        session_id: exec.session.clone(),
        updates: reports
            .into_iter()
            .map(|(attempt, state)| TaskStateUpdate {
                attempt: Some(attempt),
                state: state.to_owned(),
                ..TaskStateUpdate::default()
            })
            .collect(),
    };
    hub.report_batches.fetch_add(1, Ordering::Relaxed);
    hub.batched_reports
        .fetch_add(states.len() as u64, Ordering::Relaxed);
    let mut client = exec.gateway.clone();
    let outcomes = match tokio::time::timeout(RPC_TIMEOUT, client.update_task_states(request)).await
    {
        Ok(Ok(answer)) => answer.into_inner().outcomes,
        _ => Vec::new(),
    };
    for (i, state) in states.into_iter().enumerate() {
        let accepted = outcomes.get(i).is_some_and(|o| o.accepted);
        count_report(&hub, &exec, state, accepted);
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<PartitionChunk, Status>> + Send>>;

impl FakeService {
    /// A SubmitTask (alone or in a batch) that arrived at `at`: holds the attempt; returns the
    /// state to report (RUNNING, or CANCELED when its cancel came first).
    fn submit_one(&self, exec: &Arc<Exec>, attempt: &AttemptRef, at: Instant) -> &'static str {
        let k = key(attempt);
        if exec
            .tombstones
            .lock()
            .unwrap()
            .remove(&(k.clone(), attempt.attempt))
        {
            // Its cancel came first: it stops at once.
            self.hub
                .cancel_before_submit
                .fetch_add(1, Ordering::Relaxed);
            return "CANCELED";
        }
        exec.held.lock().unwrap().insert(k, attempt.clone());
        self.hub.submits.fetch_add(1, Ordering::Relaxed);
        if attempt.attempt == self.hub.target_attempt.load(Ordering::Relaxed) {
            self.hub.target_submits.fetch_add(1, Ordering::SeqCst);
        }
        self.hub.mark(Mark::Submit, at, attempt.attempt);
        "RUNNING"
    }

    /// Sends the reports a call led to: one UpdateTaskStates for a batch call, or one
    /// UpdateTaskState per report (unary calls, `--unary-reports`).
    fn send_reports(
        &self,
        exec: &Arc<Exec>,
        reports: Vec<(AttemptRef, &'static str)>,
        batch: bool,
    ) {
        if batch && !self.hub.unary_reports {
            tokio::spawn(report_batch(self.hub.clone(), exec.clone(), reports));
        } else {
            for (attempt, state) in reports {
                tokio::spawn(report(self.hub.clone(), exec.clone(), attempt, state));
            }
        }
    }

    /// A CancelTask (alone or in a batch) that arrived at `at`: drops the attempt; returns
    /// whether to report it CANCELED.
    fn cancel_one(&self, exec: &Arc<Exec>, attempt: &AttemptRef, at: Instant) -> bool {
        self.hub.cancels.fetch_add(1, Ordering::Relaxed);
        self.hub.mark(Mark::Cancel, at, attempt.attempt);
        let k = key(attempt);
        // Some(true): held, now dropped; Some(false): a newer attempt is held; None: not here.
        let found = {
            let mut held = exec.held.lock().unwrap();
            match held.get(&k) {
                Some(a) if a.attempt == attempt.attempt => held.remove(&k).map(|_| true),
                Some(a) if a.attempt > attempt.attempt => Some(false),
                _ => None,
            }
        };
        match found {
            Some(true) => true,
            Some(false) => false, // an older attempt: long gone
            None => {
                // Not (yet) here: remember it, in case its SubmitTask is still on the way.
                exec.tombstones.lock().unwrap().insert((k, attempt.attempt));
                false
            }
        }
    }
}

#[tonic::async_trait]
impl TaskExecutorService for FakeService {
    async fn submit_task(
        &self,
        request: Request<SubmitTaskRequest>,
    ) -> Result<Response<SubmitTaskResponse>, Status> {
        let at = Instant::now();
        let exec = self.hub.exec_for(&request)?;
        let attempt = request
            .into_inner()
            .attempt
            .ok_or_else(|| Status::invalid_argument("attempt is missing"))?;
        let state = self.submit_one(&exec, &attempt, at);
        self.send_reports(&exec, vec![(attempt, state)], false);
        Ok(Response::new(SubmitTaskResponse {}))
    }

    async fn submit_tasks(
        &self,
        request: Request<SubmitTasksRequest>,
    ) -> Result<Response<SubmitTasksResponse>, Status> {
        // Every task of the batch arrived with it.
        let at = Instant::now();
        let exec = self.hub.exec_for(&request)?;
        let mut reports = Vec::new();
        let outcomes = request
            .into_inner()
            .tasks
            .into_iter()
            .map(|task| match task.attempt {
                Some(attempt) => {
                    let state = self.submit_one(&exec, &attempt, at);
                    reports.push((attempt, state));
                    TaskOutcome {
                        accepted: true,
                        ..TaskOutcome::default()
                    }
                }
                None => TaskOutcome {
                    accepted: false,
                    code: "INVALID_ARGUMENT".into(),
                    message: "attempt is missing".into(),
                },
            })
            .collect();
        self.send_reports(&exec, reports, true);
        Ok(Response::new(SubmitTasksResponse { outcomes }))
    }

    async fn cancel_task(
        &self,
        request: Request<CancelTaskRequest>,
    ) -> Result<Response<CancelTaskResponse>, Status> {
        let at = Instant::now();
        let exec = self.hub.exec_for(&request)?;
        let attempt = request
            .into_inner()
            .attempt
            .ok_or_else(|| Status::invalid_argument("attempt is missing"))?;
        if self.cancel_one(&exec, &attempt, at) {
            self.send_reports(&exec, vec![(attempt, "CANCELED")], false);
        }
        Ok(Response::new(CancelTaskResponse {}))
    }

    async fn cancel_tasks(
        &self,
        request: Request<CancelTasksRequest>,
    ) -> Result<Response<CancelTasksResponse>, Status> {
        let at = Instant::now();
        let exec = self.hub.exec_for(&request)?;
        let reports: Vec<(AttemptRef, &'static str)> = request
            .into_inner()
            .attempts
            .into_iter()
            .filter(|attempt| self.cancel_one(&exec, attempt, at))
            .map(|attempt| (attempt, "CANCELED"))
            .collect();
        self.send_reports(&exec, reports, true);
        Ok(Response::new(CancelTasksResponse {}))
    }

    async fn release_partitions(
        &self,
        _request: Request<ReleasePartitionsRequest>,
    ) -> Result<Response<ReleasePartitionsResponse>, Status> {
        Ok(Response::new(ReleasePartitionsResponse {}))
    }

    type FetchPartitionStream = ChunkStream;

    async fn fetch_partition(
        &self,
        _request: Request<FetchPartitionRequest>,
    ) -> Result<Response<Self::FetchPartitionStream>, Status> {
        Err(Status::unimplemented("simulated executors hold no data"))
    }
}

// ----- heartbeats ---------------------------------------------------------------------------

#[derive(Default)]
struct HbStats {
    sent: AtomicU64,
    acked: AtomicU64,
    reregister: AtomicU64,
    /// Streams that ended without being asked to.
    ended: AtomicU64,
    /// Longest time between two answers on one stream while recording, in µs.
    max_gap_us: AtomicU64,
    /// Gaps longer than twice the interval while recording.
    late: AtomicU64,
    recording: AtomicBool,
}

struct HbResult {
    /// Send → answer latencies in µs while recording.
    latencies: Vec<u32>,
    /// When the stream was closed on request.
    closed_at: Option<Instant>,
}

struct HbHandle {
    close: Arc<Notify>,
    first: Option<oneshot::Receiver<()>>,
    join: JoinHandle<HbResult>,
}

impl HbHandle {
    async fn first_answer(&mut self, timeout: Duration) -> Result<()> {
        let first = self.first.take().context("first answer already awaited")?;
        tokio::time::timeout(timeout, first)
            .await
            .context("no heartbeat answer in time")?
            .map_err(|_| anyhow!("the heartbeat stream ended before its first answer"))
    }
}

/// One executor's heartbeat stream: a heartbeat at once, then one every `interval` from
/// `phase`; each lists the attempts the executor holds.
async fn heartbeat_loop(
    exec: Arc<Exec>,
    interval: Duration,
    phase: Duration,
    stats: Arc<HbStats>,
    mut stop: watch::Receiver<bool>,
    close: Arc<Notify>,
    first: oneshot::Sender<()>,
) -> HbResult {
    let mut result = HbResult {
        latencies: Vec::new(),
        closed_at: None,
    };
    let (tx, rx) = mpsc::channel::<HeartbeatRequest>(4);
    let mut sent_at = VecDeque::new();
    if tx.send(exec.heartbeat_request()).await.is_err() {
        return result;
    }
    sent_at.push_back(Instant::now());
    stats.sent.fetch_add(1, Ordering::Relaxed);
    let mut client = exec.gateway.clone();
    let mut inbound =
        match tokio::time::timeout(RPC_TIMEOUT, client.heartbeat(ReceiverStream::new(rx))).await {
            Ok(Ok(response)) => response.into_inner(),
            _ => {
                stats.ended.fetch_add(1, Ordering::Relaxed);
                return result;
            }
        };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = Some(first);
    let mut last_answer: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = close.notified() => {
                let at = Instant::now();
                drop(inbound);
                drop(tx);
                result.closed_at = Some(at);
                return result;
            }
            _ = stop.changed() => return result,
            _ = tick.tick() => {
                let hb = exec.heartbeat_request();
                if tx.send(hb).await.is_err() {
                    if stats.ended.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("jmload: heartbeat stream of {} closed for sending", exec.id);
                    }
                    return result;
                }
                sent_at.push_back(Instant::now());
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            message = inbound.message() => match message {
                Ok(Some(answer)) => {
                    let now = Instant::now();
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                    let recording = stats.recording.load(Ordering::Relaxed);
                    if let Some(sent) = sent_at.pop_front()
                        && recording
                    {
                        result.latencies.push(micros(now - sent));
                    }
                    if let Some(last) = last_answer
                        && recording
                    {
                        let gap = now - last;
                        stats.max_gap_us.fetch_max(u64::from(micros(gap)), Ordering::Relaxed);
                        if gap > interval * 2 {
                            stats.late.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    last_answer = Some(now);
                    if answer.reregister {
                        stats.reregister.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(f) = first.take() {
                        let _ = f.send(());
                    }
                }
                other => {
                    if !*stop.borrow() {
                        let n = stats.ended.fetch_add(1, Ordering::Relaxed);
                        if n < 5 {
                            let why = match other {
                                Err(status) => format!("{:?}: {}", status.code(), status.message()),
                                _ => "ended by the daemon".to_owned(),
                            };
                            eprintln!("jmload: heartbeat stream of {} ended: {why}", exec.id);
                        }
                    }
                    return result;
                }
            },
        }
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

// ----- events -------------------------------------------------------------------------------

/// WatchEvents as received: the ones the scenarios need, with their arrival time.
#[derive(Default)]
struct Events {
    log: Mutex<Vec<(Instant, WatchEvent)>>,
    executor_lost: AtomicU64,
    task_failed: AtomicU64,
    task_events: AtomicU64,
    restarts: AtomicU64,
    lagged: AtomicU64,
    missed: AtomicU64,
    /// Keep every task-state event, not only FAILED ones (while a failover run records).
    keep_task_states: AtomicBool,
}

impl Events {
    fn len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Events logged from index `from` on that match.
    fn since(&self, from: usize, f: impl Fn(&WatchEvent) -> bool) -> Vec<(Instant, WatchEvent)> {
        self.log.lock().unwrap()[from..]
            .iter()
            .filter(|(_, e)| f(e))
            .cloned()
            .collect()
    }
}

async fn watch_events(
    mut client: JobMasterServiceClient<Channel>,
    events: Arc<Events>,
    ready: oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) {
    let stream = client
        .watch_events(WatchEventsRequest {
            job_id: String::new(),
        })
        .await;
    let _ = ready.send(());
    let Ok(stream) = stream else {
        eprintln!("jmload: WatchEvents failed");
        return;
    };
    let mut stream = stream.into_inner();
    loop {
        let message = tokio::select! {
            m = stream.message() => m,
            _ = stop.changed() => return,
        };
        let Ok(Some(e)) = message else { return };
        let at = Instant::now();
        let keep = match e.kind.as_str() {
            "task-state" => {
                events.task_events.fetch_add(1, Ordering::Relaxed);
                let failed = e.state == "FAILED";
                if failed {
                    events.task_failed.fetch_add(1, Ordering::Relaxed);
                }
                failed || events.keep_task_states.load(Ordering::Relaxed)
            }
            "executor-lost" => {
                events.executor_lost.fetch_add(1, Ordering::Relaxed);
                true
            }
            "restart-scheduled" => {
                events.restarts.fetch_add(1, Ordering::Relaxed);
                true
            }
            "lagged" => {
                events.lagged.fetch_add(1, Ordering::Relaxed);
                let n = e
                    .detail
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                events.missed.fetch_add(n, Ordering::Relaxed);
                true
            }
            _ => true,
        };
        if keep {
            events.log.lock().unwrap().push((at, e));
        }
    }
}

// ----- the shared context -------------------------------------------------------------------

struct Ctx {
    url: String,
    op: JobMasterServiceClient<Channel>,
    hub: Arc<Hub>,
    events: Arc<Events>,
    stats: Arc<HbStats>,
    conn_tx: mpsc::Sender<io::Result<TcpStream>>,
    stop_tx: watch::Sender<bool>,
    /// ≈ the daemon's clock zero (in-process daemon only).
    origin: Option<Instant>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

async fn connect(url: &str) -> Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let mut last = None;
    for _ in 0..50 {
        match endpoint.connect().await {
            Ok(channel) => return Ok(channel),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow!("cannot connect to {url}: {last:?}"))
}

impl Ctx {
    async fn new(url: String, origin: Option<Instant>, unary_reports: bool) -> Result<Ctx> {
        let op = JobMasterServiceClient::new(connect(&url).await?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let hub = Arc::new(Hub {
            target_attempt: AtomicU32::new(u32::MAX),
            unary_reports,
            ..Hub::default()
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let (conn_tx, conn_rx) = mpsc::channel::<io::Result<TcpStream>>(1024);
        let service = TaskExecutorServiceServer::new(FakeService { hub: hub.clone() })
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let mut server_stop = stop_rx.clone();
        let server = tokio::spawn(async move {
            let result = Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), async move {
                    let _ = server_stop.changed().await;
                })
                .await;
            if let Err(e) = result {
                eprintln!("jmload: the simulated executors' server failed: {e}");
            }
        });
        let events = Arc::new(Events::default());
        let (ready_tx, ready_rx) = oneshot::channel();
        let watcher = tokio::spawn(watch_events(
            op.clone(),
            events.clone(),
            ready_tx,
            stop_rx.clone(),
        ));
        let _ = tokio::time::timeout(RPC_TIMEOUT, ready_rx).await;
        Ok(Ctx {
            url,
            op,
            hub,
            events,
            stats: Arc::new(HbStats::default()),
            conn_tx,
            stop_tx,
            origin,
            tasks: Mutex::new(vec![server, watcher]),
        })
    }

    async fn shutdown(self) {
        let _ = self.stop_tx.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }

    /// A simulated executor on its own listening port (not yet registered).
    async fn add_executor(
        &self,
        id: String,
        gateway: Channel,
        one_shot: bool,
    ) -> Result<Arc<Exec>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let exec = Arc::new(Exec {
            session: format!("{id}-{}", std::process::id()),
            id,
            address: addr.to_string(),
            gateway: TaskExecutorGatewayClient::new(gateway)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            held: Mutex::new(HashMap::new()),
            running: AtomicU64::new(0),
            tombstones: Mutex::new(std::collections::HashSet::new()),
        });
        self.hub
            .execs
            .write()
            .unwrap()
            .insert(addr.port(), exec.clone());
        let conn_tx = self.conn_tx.clone();
        let mut stop = self.stop_tx.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            if conn_tx.send(Ok(stream)).await.is_err() || one_shot {
                                return;
                            }
                        }
                        Err(e) => {
                            eprintln!("jmload: accept on {addr}: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                    _ = stop.changed() => return,
                }
            }
        });
        Ok(exec)
    }

    /// Registers `exec`; returns the heartbeat interval the daemon asks for.
    async fn register(&self, exec: &Exec, slots: u32) -> Result<Duration> {
        register_one(exec, slots).await
    }

    fn start_heartbeats(&self, exec: Arc<Exec>, interval: Duration, phase: Duration) -> HbHandle {
        let close = Arc::new(Notify::new());
        let (first_tx, first_rx) = oneshot::channel();
        let join = tokio::spawn(heartbeat_loop(
            exec,
            interval,
            phase,
            self.stats.clone(),
            self.stop_tx.subscribe(),
            close.clone(),
            first_tx,
        ));
        HbHandle {
            close,
            first: Some(first_rx),
            join,
        }
    }

    async fn submit(&self, spec: String) -> Result<String> {
        let mut op = self.op.clone();
        let answer = tokio::time::timeout(
            Duration::from_secs(120),
            op.submit_job(SubmitJobRequest {
                spec,
                format: "json".into(),
            }),
        )
        .await
        .context("SubmitJob timed out")?
        .context("SubmitJob")?;
        Ok(answer.into_inner().job_id)
    }

    async fn get_job(&self, job: &str) -> Result<GetJobResponse> {
        let mut op = self.op.clone();
        Ok(tokio::time::timeout(
            RPC_TIMEOUT,
            op.get_job(GetJobRequest {
                job_id: job.to_owned(),
            }),
        )
        .await
        .context("GetJob timed out")?
        .context("GetJob")?
        .into_inner())
    }

    /// Waits until the job is RUNNING with every task RUNNING.
    async fn wait_job_running(&self, job: &str, timeout: Duration) -> Result<GetJobResponse> {
        let deadline = Instant::now() + timeout;
        loop {
            let view = self.get_job(job).await?;
            if view.state == "RUNNING" && view.tasks.iter().all(|t| t.state == "RUNNING") {
                return Ok(view);
            }
            if Instant::now() > deadline {
                let mut states: std::collections::BTreeMap<(&str, u32), usize> =
                    std::collections::BTreeMap::new();
                for t in &view.tasks {
                    *states.entry((t.state.as_str(), t.attempt)).or_default() += 1;
                }
                bail!(
                    "job {job} not running after {timeout:?}: state {}, tasks by (state, \
                     attempt): {states:?}; reports refused or failed: {}",
                    view.state,
                    self.hub.report_errors.load(Ordering::Relaxed)
                );
            }
            // Large jobs: GetJob is a big answer, built on the coordinator; ask less often.
            let pause = if view.tasks.len() > 10_000 { 500 } else { 20 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

/// Polls `done` every few ms until it holds or `timeout` passes.
async fn wait_for(what: &str, timeout: Duration, done: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

// ----- job specs ----------------------------------------------------------------------------

fn vertex(id: &str, parallelism: u32) -> Value {
    json!({ "id": id, "parallelism": parallelism, "command": ["true"] })
}

fn two_vertex_spec(name: &str, p: u32, pattern: &str, failover: &str, restart: Value) -> String {
    json!({
        "name": name,
        "failover": failover,
        "restart": restart,
        "vertices": [vertex("source", p), vertex("sink", p)],
        "edges": [{ "from": "source", "to": "sink", "pattern": pattern, "exchange": "pipelined" }],
    })
    .to_string()
}

fn single_vertex_spec(name: &str, p: u32, restart: Value) -> String {
    json!({
        "name": name,
        "failover": "region",
        "restart": restart,
        "vertices": [vertex("work", p)],
        "edges": [],
    })
    .to_string()
}

fn zero_backoff() -> Value {
    json!({ "strategy": "fixed-delay", "attempts": 1_000_000, "delay": "0s" })
}

// ============================================================================================
// Statistics, /proc, output
// ============================================================================================

#[derive(Clone, Copy)]
struct Summary {
    n: usize,
    min: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

/// Nearest-rank percentiles.
fn summarize(mut v: Vec<f64>) -> Option<Summary> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let pct = |p: f64| v[(((p / 100.0) * n as f64).ceil() as usize).clamp(1, n) - 1];
    Some(Summary {
        n,
        min: v[0],
        p50: pct(50.0),
        p90: pct(90.0),
        p99: pct(99.0),
        max: v[n - 1],
        mean: v.iter().sum::<f64>() / n as f64,
    })
}

fn summary_json(s: Option<Summary>) -> Value {
    match s {
        None => Value::Null,
        Some(s) => json!({
            "n": s.n, "min": round3(s.min), "p50": round3(s.p50), "p90": round3(s.p90),
            "p99": round3(s.p99), "max": round3(s.max), "mean": round3(s.mean),
        }),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Signed difference in ms (b − a).
fn diff_ms(a: Instant, b: Instant) -> f64 {
    if b >= a { ms(b - a) } else { -ms(a - b) }
}

/// Clock ticks per second of /proc's CPU times (AT_CLKTCK from the auxiliary vector).
fn clock_ticks() -> u64 {
    if let Ok(aux) = std::fs::read("/proc/self/auxv") {
        for pair in aux.chunks_exact(16) {
            let k = u64::from_ne_bytes(pair[..8].try_into().unwrap_or_default());
            let v = u64::from_ne_bytes(pair[8..].try_into().unwrap_or_default());
            if k == 17 && v > 0 {
                return v;
            }
        }
    }
    100
}

/// utime + stime of a /proc stat line, in seconds.
fn stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ": state is field 3, utime 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks() as f64)
}

#[derive(Clone, Copy, Default)]
struct ProcSample {
    cpu_s: f64,
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
}

fn proc_sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_s: stat_cpu(&stat)?,
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        threads: field("Threads:"),
    })
}

/// CPU seconds of the live threads of process `pid` ("self" or a number) whose name starts
/// with `prefix` ("" for all): from schedstat (ns) where the kernel has it, else stat (ticks).
fn threads_cpu(pid: &str, prefix: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            if !comm.starts_with(prefix) {
                return None;
            }
            if let Some(ns) = std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            {
                return Some(ns as f64 / 1e9);
            }
            stat_cpu(&std::fs::read_to_string(t.path().join("stat")).ok()?)
        })
        .sum()
}

/// (busy, total) CPU seconds of the whole machine since boot, from /proc/stat.
fn machine_cpu() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    let hz = clock_ticks() as f64;
    Some(((total - idle) as f64 / hz, total as f64 / hz))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Where the daemon's CPU time and memory come from.
struct Probe {
    pid: Option<u32>,
    in_process: bool,
}

#[derive(Clone, Copy, Default)]
struct CpuSample {
    daemon_s: Option<f64>,
    generator_s: f64,
    process: ProcSample,
    daemon: Option<ProcSample>,
}

impl Probe {
    /// Precise CPU seconds so far: (daemon if known, load generator).
    fn fine(&self) -> (Option<f64>, f64) {
        if self.in_process {
            (
                Some(threads_cpu("self", "jmd")),
                threads_cpu("self", "jmgen"),
            )
        } else {
            (
                self.pid.map(|p| threads_cpu(&p.to_string(), "")),
                threads_cpu("self", ""),
            )
        }
    }

    /// (machine busy, this process, external daemon) CPU seconds so far.
    fn machine(&self) -> (f64, f64, f64) {
        let busy = machine_cpu().map_or(0.0, |(b, _)| b);
        let me = proc_sample("self").map_or(0.0, |p| p.cpu_s);
        let daemon = if self.in_process {
            0.0
        } else {
            self.pid
                .and_then(|p| proc_sample(&p.to_string()))
                .map_or(0.0, |p| p.cpu_s)
        };
        (busy, me, daemon)
    }

    fn sample(&self) -> CpuSample {
        let me = proc_sample("self").unwrap_or_default();
        if self.in_process {
            CpuSample {
                daemon_s: Some(threads_cpu("self", "jmd")),
                generator_s: threads_cpu("self", "jmgen"),
                process: me,
                daemon: None,
            }
        } else {
            let daemon = self.pid.and_then(|p| proc_sample(&p.to_string()));
            CpuSample {
                daemon_s: daemon.map(|d| d.cpu_s),
                generator_s: me.cpu_s,
                process: me,
                daemon,
            }
        }
    }
}

fn print_report(report: &Value) {
    println!(
        "== jmload {} ==",
        report["scenario"].as_str().unwrap_or("?")
    );
    let pairs = |v: &Value| -> Vec<(String, Value)> {
        v.as_array()
            .map(|rows| rows.iter().map(|r| (plain(&r[0]), r[1].clone())).collect())
            .unwrap_or_default()
    };
    let width = |rows: &[(String, Value)]| rows.iter().map(|(k, _)| k.chars().count()).max();
    let setup = pairs(&report["setup"]);
    let w = width(&setup).unwrap_or(0);
    if !setup.is_empty() {
        println!();
        for (k, v) in &setup {
            println!("  {k:<w$}  {}", plain(v));
        }
    }
    let latency = pairs(&report["latency_ms"]);
    if !latency.is_empty() {
        let w = width(&latency).unwrap_or(0).max(12);
        println!();
        println!(
            "  {:<w$}  {:>4} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "n", "min", "p50", "p90", "p99", "max"
        );
        for (k, s) in &latency {
            let f = |name: &str| s[name].as_f64().map_or("-".into(), |x| format!("{x:.3}"));
            println!(
                "  {k:<w$}  {:>4} {:>9} {:>9} {:>9} {:>9} {:>9}",
                s["n"].as_u64().unwrap_or(0),
                f("min"),
                f("p50"),
                f("p90"),
                f("p99"),
                f("max")
            );
        }
    }
    let results = pairs(&report["results"]);
    if !results.is_empty() {
        let w = width(&results).unwrap_or(0);
        println!();
        for (k, v) in &results {
            println!("  {k:<w$}  {}", plain(v));
        }
    }
    if let Some(targets) = report["targets"].as_array() {
        println!();
        for t in targets {
            println!(
                "  target: {}: {}",
                t["target"].as_str().unwrap_or(""),
                t["verdict"].as_str().unwrap_or("")
            );
        }
    }
    println!();
    println!("  daemon: {}", plain(&report["daemon"]));
    if !report["machine"].is_null() {
        println!("  machine: {}", plain(&report["machine"]));
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn verdict(name: &str, measured: f64, limit: f64) -> Value {
    json!({
        "target": format!("{name} ≤ {limit} ms"),
        "measured_ms": round3(measured),
        "verdict": format!(
            "{} ({:.3} ms)",
            if measured <= limit { "MET" } else { "MISSED" },
            measured
        ),
    })
}

// ============================================================================================
// detect
// ============================================================================================

async fn detect(ctx: &Ctx, a: &DetectArgs) -> Result<Value> {
    eprintln!(
        "detect: {} background executors × {} slots, {} trials of {} tasks",
        a.background, a.background_slots, a.trials, a.tasks
    );
    // Background executors, kept busy by a filler job so each trial's job lands on its victim.
    let mut handles = Vec::new();
    if a.background > 0 {
        let channel = connect(&ctx.url).await?;
        for i in 0..a.background {
            let exec = ctx
                .add_executor(format!("bg-{i:04}"), channel.clone(), false)
                .await?;
            let interval = ctx.register(&exec, a.background_slots).await?;
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
        let channel = connect(&ctx.url).await?;
        let exec = ctx
            .add_executor(format!("victim-{k:04}"), channel, false)
            .await?;
        let interval = ctx.register(&exec, a.tasks).await?;
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
            e.running.load(Ordering::Relaxed) >= tasks
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
        let victim = exec.id.clone();
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
            (e.kind == "executor-lost" && e.executor == exec.id)
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
        ctx.hub
            .execs
            .write()
            .unwrap()
            .retain(|_, x| !Arc::ptr_eq(x, &exec));
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

// ============================================================================================
// failover
// ============================================================================================

async fn failover(ctx: &Ctx, a: &FailoverArgs, probe: &Probe) -> Result<Value> {
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
    let mut handles = Vec::new();
    for i in 0..a.executors {
        // Each executor has its own connection, as real executor processes do.
        let channel = connect(&ctx.url).await?;
        let exec = ctx
            .add_executor(format!("exec-{i:04}"), channel, false)
            .await?;
        let interval = ctx.register(&exec, slots).await?;
        let phase = interval * i as u32 / a.executors as u32;
        let mut hb = ctx.start_heartbeats(exec, interval, phase);
        hb.first_answer(RPC_TIMEOUT).await?;
        handles.push(hb);
    }
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
                class: "recoverable".into(),
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
            let complete = wait_for("DEPLOYING events", Duration::from_secs(2), || {
                events
                    .since(from, |e| {
                        e.job_id == job_id && e.attempt == target && e.state == "DEPLOYING"
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
            let canceled = time(current, "CANCELED");
            let created = time(target, "CREATED");
            let deploying = time(target, "DEPLOYING");
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
            ["reports", if ctx.hub.unary_reports {
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
        ],
        "targets": targets,
    }))
}

// ============================================================================================
// heartbeat
// ============================================================================================

async fn heartbeat(ctx: &Ctx, a: &HeartbeatArgs, probe: &Probe) -> Result<Value> {
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
            running += view.tasks.iter().filter(|t| t.state == "RUNNING").count();
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
        gateway.push(connect(&ctx.url).await?);
    }
    let mut execs = Vec::with_capacity(a.executors);
    for i in 0..a.executors {
        let exec = ctx
            .add_executor(
                format!("exec-{i:05}"),
                gateway[i / a.per_channel].clone(),
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
        let slots = a.slots;
        let n = a.executors;
        let stats = ctx.stats.clone();
        let stop = ctx.stop_tx.subscribe();
        tokio::spawn(async move {
            let result = async {
                let interval = register_one(&exec, slots).await?;
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

/// Registers `exec`; returns the heartbeat interval the daemon asks for.
async fn register_one(exec: &Exec, slots: u32) -> Result<Duration> {
    let mut client = exec.gateway.clone();
    let answer = tokio::time::timeout(
        RPC_TIMEOUT,
        client.register_executor(RegisterExecutorRequest {
            executor_id: exec.id.clone(),
            address: exec.address.clone(),
            slots,
            session_id: exec.session.clone(),
            free_disk_bytes: 1 << 40,
        }),
    )
    .await
    .context("RegisterExecutor timed out")?
    .with_context(|| format!("RegisterExecutor {}", exec.id))?
    .into_inner();
    Ok(Duration::from_millis(answer.heartbeat_interval_ms.max(1)))
}
