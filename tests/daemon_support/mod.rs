//! Helpers for the daemon tests: the daemon in-process on port-0 listeners, fake TaskExecutors
//! built from the generated gRPC code, and `eventually` (poll with a deadline, never sleep to
//! wait for a condition).

#![allow(dead_code)]

mod real_executor;
#[allow(unused_imports)]
pub use real_executor::RealExecutor;

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
use jobmaster::api::v1::task_executor_gateway_client::TaskExecutorGatewayClient;
use jobmaster::api::v1::{
    AttemptRef, ExecutorInfo, GetJobRequest, GetJobResponse, ListExecutorsRequest,
    RegisterExecutorResponse, ReleasePartitionsRequest, SubmitJobRequest, SubmitTaskRequest,
    TaskInfo, TaskOutcome, TaskStateUpdate,
};
use jobmaster::core::AttemptState;
use jobmaster::fake_executor::{Executor, ExecutorConfig, Fleet, Observer, Options, Rpc};
use jobmaster::settings::Settings;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic::{Response, Status};

/// How long a test waits for any one condition: generous, for a noisy 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// Upper bound of a whole test.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);
/// How often `eventually` probes.
const POLL: Duration = Duration::from_millis(20);

/// Runs a test body with an overall time limit.
pub async fn within<T>(limit: Duration, body: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, body).await {
        Ok(v) => v,
        Err(_) => panic!("the test did not finish within {limit:?}"),
    }
}

/// Probes until it answers `Ok`, at most `timeout` in total (a hanging probe counts). `Err`
/// says why not yet; the last one is in the panic message.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("never probed");
    loop {
        match tokio::time::timeout_at(deadline, probe()).await {
            Ok(Ok(v)) => return v,
            Ok(Err(why)) => last = why,
            Err(_) => break,
        }
        if tokio::time::Instant::now() + POLL >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
}

/// Awaits an RPC (or anything) that must answer within [`DEADLINE`].
pub async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not answer within {DEADLINE:?}"),
    }
}

/// A random session id.
pub fn session_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    format!("session-{:016x}", h.finish())
}

// ----- the daemon ---------------------------------------------------------------------------

/// A fresh state dir for one test daemon (restarting it with the same settings reuses it).
pub fn state_dir() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "jobmaster-test-state-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir.to_string_lossy().into_owned()
}

/// Short intervals for tests, each daemon its own state dir; `extra` overrides them (later
/// entries win).
pub fn settings(extra: &[(&str, &str)]) -> Settings {
    let dir = state_dir();
    let base = [
        ("JOBMASTER__STORE__DIR", dir.as_str()),
        ("JOBMASTER__HEARTBEAT__INTERVAL", "100ms"),
        ("JOBMASTER__HEARTBEAT__TIMEOUT", "3s"),
        ("JOBMASTER__RPC__TIMEOUT", "3s"),
        ("JOBMASTER__RPC__CONNECT_TIMEOUT", "1s"),
        ("JOBMASTER__SERVER__SHUTDOWN_GRACE", "5s"),
    ];
    let env: Vec<(String, String)> = base
        .iter()
        .chain(extra.iter())
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::load_from(None, env).expect("test settings are valid")
}

/// The daemon, served in-process on 127.0.0.1 port-0 listeners.
pub struct Daemon {
    pub addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub settings: Settings,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), jobmaster::server::ServeError>>>,
}

impl Daemon {
    pub async fn start(settings: Settings) -> Daemon {
        Daemon::start_on(settings, "127.0.0.1:0".parse().expect("address")).await
    }

    /// Like [`Daemon::start`] with the gRPC port at `grpc` (e.g. a stopped daemon's, to
    /// restart it where its executors look for it).
    pub async fn start_on(settings: Settings, grpc: SocketAddr) -> Daemon {
        let store = jobmaster::store::open(&settings).expect("open the test store");
        Daemon::start_with_store(settings, store, grpc).await
    }

    /// Like [`Daemon::start_on`] on `store` (e.g. one that fails on purpose).
    pub async fn start_with_store(
        settings: Settings,
        store: Box<dyn jobmaster::store::Store>,
        grpc: SocketAddr,
    ) -> Daemon {
        let grpc = TcpListener::bind(grpc).await.expect("bind grpc");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let addr = grpc.local_addr().expect("grpc address");
        let http_addr = http.local_addr().expect("http address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(jobmaster::server::serve_with_store(
            settings.clone(),
            store,
            grpc,
            http,
            async move {
                let _ = stopped.await;
            },
        ));
        Daemon {
            addr,
            http_addr,
            settings,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        bounded(
            "connecting to the daemon",
            Channel::from_shared(self.url()).expect("url").connect(),
        )
        .await
        .expect("connect to the daemon")
    }

    /// An executor's client of the TaskExecutorGateway.
    pub async fn gateway(&self) -> TaskExecutorGatewayClient<Channel> {
        TaskExecutorGatewayClient::new(self.channel().await)
    }

    /// An operator client.
    pub async fn client(&self) -> JobMasterServiceClient<Channel> {
        JobMasterServiceClient::new(self.channel().await)
    }

    /// Completes the shutdown future and returns what `serve` returned and how long it took.
    pub async fn shutdown(mut self) -> (Result<(), jobmaster::server::ServeError>, Duration) {
        let started = Instant::now();
        let _ = self.stop.take().expect("not stopped yet").send(());
        let task = self.task.take().expect("running");
        let result = match tokio::time::timeout(DEADLINE, task).await {
            Ok(joined) => joined.expect("serve does not panic"),
            Err(_) => panic!("serve did not return within {DEADLINE:?} of the shutdown signal"),
        };
        (result, started.elapsed())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ----- operator helpers ---------------------------------------------------------------------

/// SubmitJob of `spec` in `format` ("" to guess); the job id, or why it was refused.
pub async fn try_submit(
    client: &JobMasterServiceClient<Channel>,
    spec: &str,
    format: &str,
) -> Result<String, Status> {
    let mut c = client.clone();
    bounded(
        "SubmitJob",
        c.submit_job(SubmitJobRequest {
            spec: spec.to_owned(),
            format: format.to_owned(),
        }),
    )
    .await
    .map(|answer| answer.into_inner().job_id)
}

pub async fn submit(client: &JobMasterServiceClient<Channel>, spec: &str) -> String {
    try_submit(client, spec, "")
        .await
        .unwrap_or_else(|s| panic!("SubmitJob refused: {s:?}"))
}

pub async fn try_get_job(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
) -> Result<GetJobResponse, Status> {
    let mut c = client.clone();
    bounded(
        "GetJob",
        c.get_job(GetJobRequest {
            job_id: job.to_owned(),
            task_limit: 10_000,
            ..GetJobRequest::default()
        }),
    )
    .await
    .map(Response::into_inner)
}

pub async fn get_job(client: &JobMasterServiceClient<Channel>, job: &str) -> GetJobResponse {
    try_get_job(client, job)
        .await
        .unwrap_or_else(|s| panic!("GetJob {job}: {s:?}"))
}

pub fn task<'a>(job: &'a GetJobResponse, name: &str) -> &'a TaskInfo {
    job.tasks
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("job {} has no task {name}", job.job_id))
}

pub fn describe(job: &GetJobResponse) -> String {
    let tasks: Vec<String> = job
        .tasks
        .iter()
        .map(|t| format!("{}@{} {} on {:?}", t.name, t.attempt, t.state, t.executor))
        .collect();
    format!("job {} {}: [{}]", job.job_id, job.state, tasks.join(", "))
}

/// A plain HTTP/1.0 GET: status code and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_owned())
}

pub async fn try_cancel_job(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
) -> Result<jobmaster::api::v1::CancelJobResponse, Status> {
    let mut c = client.clone();
    bounded(
        "CancelJob",
        c.cancel_job(jobmaster::api::v1::CancelJobRequest {
            job_id: job.to_owned(),
        }),
    )
    .await
    .map(Response::into_inner)
}

pub async fn cancel_job(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
) -> jobmaster::api::v1::CancelJobResponse {
    try_cancel_job(client, job)
        .await
        .unwrap_or_else(|s| panic!("CancelJob {job}: {s:?}"))
}

pub async fn list_jobs(
    client: &JobMasterServiceClient<Channel>,
) -> Vec<jobmaster::api::v1::JobSummary> {
    let mut c = client.clone();
    bounded(
        "ListJobs",
        c.list_jobs(jobmaster::api::v1::ListJobsRequest {}),
    )
    .await
    .expect("ListJobs")
    .into_inner()
    .jobs
}

/// Waits until `ready` holds for the job, and returns the job.
pub async fn wait_job(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
    what: &str,
    ready: impl Fn(&GetJobResponse) -> bool,
) -> GetJobResponse {
    let ready = &ready;
    eventually(what, DEADLINE, || async move {
        let j = get_job(client, job).await;
        if ready(&j) { Ok(j) } else { Err(describe(&j)) }
    })
    .await
}

/// Waits until the job is RUNNING with every task RUNNING.
pub async fn wait_all_running(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
) -> GetJobResponse {
    wait_job(client, job, "every task RUNNING", |j| {
        j.state == "RUNNING" && j.tasks.iter().all(|t| t.state == "RUNNING")
    })
    .await
}

/// Waits until the job is RUNNING with every task RUNNING as attempt `attempt`.
pub async fn wait_all_running_as(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
    attempt: u32,
) -> GetJobResponse {
    wait_job(
        client,
        job,
        &format!("every task RUNNING as attempt {attempt}"),
        |j| {
            j.state == "RUNNING"
                && j.tasks
                    .iter()
                    .all(|t| t.state == "RUNNING" && t.attempt == attempt)
        },
    )
    .await
}

/// The registered executors, as ListExecutors lists them.
pub async fn executors(client: &JobMasterServiceClient<Channel>) -> Vec<ExecutorInfo> {
    let mut c = client.clone();
    bounded("ListExecutors", c.list_executors(ListExecutorsRequest {}))
        .await
        .expect("ListExecutors")
        .into_inner()
        .executors
}

pub async fn executor_ids(client: &JobMasterServiceClient<Channel>) -> Vec<String> {
    executors(client).await.into_iter().map(|e| e.id).collect()
}

/// The wire reference of `task` ("vertex#subtask") of `job`, attempt `attempt`.
pub fn attempt_ref(job: &str, task: &str, attempt: u32) -> AttemptRef {
    let (vertex, subtask) = task.split_once('#').expect("vertex#subtask");
    AttemptRef {
        job_id: job.to_owned(),
        vertex: vertex.to_owned(),
        subtask: subtask.parse().expect("subtask number"),
        attempt,
    }
}

pub fn task_name(r: &AttemptRef) -> String {
    format!("{}#{}", r.vertex, r.subtask)
}

/// One update of an UpdateTaskStates batch: `attempt` is in `state`.
pub fn state_update(attempt: &AttemptRef, state: &str) -> TaskStateUpdate {
    TaskStateUpdate {
        attempt: Some(attempt.clone()),
        state: state.to_owned(),
        ..TaskStateUpdate::default()
    }
}

/// One update of an UpdateTaskStates batch: `attempt` FAILED.
pub fn failed_update(attempt: &AttemptRef, class: &str, message: &str) -> TaskStateUpdate {
    TaskStateUpdate {
        failure_class: class.to_owned(),
        message: message.to_owned(),
        ..state_update(attempt, "FAILED")
    }
}

/// The outcomes of a batch as (accepted, code) pairs, for comparisons.
pub fn verdicts(outcomes: &[TaskOutcome]) -> Vec<(bool, String)> {
    outcomes
        .iter()
        .map(|o| (o.accepted, o.code.clone()))
        .collect()
}

// ----- fake executors -----------------------------------------------------------------------

/// A call the JobMaster made to a fake executor. A batch call (SubmitTasks, CancelTasks) is
/// recorded as one `Submit` or `Cancel` per task, in the batch's order, exactly as the unary
/// calls would have been; [`FakeExecutor::batches`] tells the calls apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Submit {
        job: String,
        task: String,
        attempt: u32,
        epoch: u64,
    },
    Cancel {
        job: String,
        task: String,
        attempt: u32,
        epoch: u64,
    },
    Release {
        /// "job producer@attempt->consumer"
        partitions: Vec<String>,
        epoch: u64,
    },
}

impl Call {
    /// (job, task, attempt) of a Submit or Cancel.
    pub fn target(&self) -> Option<(&str, &str, u32)> {
        match self {
            Call::Submit {
                job, task, attempt, ..
            }
            | Call::Cancel {
                job, task, attempt, ..
            } => Some((job, task, *attempt)),
            Call::Release { .. } => None,
        }
    }

    /// What the call commanded; `None` for a Release.
    pub fn command(&self) -> Option<Command> {
        match self {
            Call::Submit { .. } => Some(Command::Submit),
            Call::Cancel { .. } => Some(Command::Cancel),
            Call::Release { .. } => None,
        }
    }

    /// The JobMaster epoch the call carried.
    pub fn epoch(&self) -> u64 {
        match self {
            Call::Submit { epoch, .. }
            | Call::Cancel { epoch, .. }
            | Call::Release { epoch, .. } => *epoch,
        }
    }

    /// Whether this is a Submit of `attempt` of `task` of `job`.
    pub fn is_submit_of(&self, job: &str, task: &str, attempt: u32) -> bool {
        self.command() == Some(Command::Submit) && self.target() == Some((job, task, attempt))
    }

    /// Whether this is a Cancel of `attempt` of `task` of `job`.
    pub fn is_cancel_of(&self, job: &str, task: &str, attempt: u32) -> bool {
        self.command() == Some(Command::Cancel) && self.target() == Some((job, task, attempt))
    }
}

/// What a [`Call`] or a [`Batch`] commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Submit,
    Cancel,
}

/// One RPC that carried submits or cancels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// A unary SubmitTask.
    SubmitTask,
    /// A SubmitTasks with this many tasks.
    SubmitTasks(usize),
    /// A unary CancelTask.
    CancelTask,
    /// A CancelTasks with this many attempts.
    CancelTasks(usize),
}

impl Batch {
    pub fn command(&self) -> Command {
        match self {
            Batch::SubmitTask | Batch::SubmitTasks(_) => Command::Submit,
            Batch::CancelTask | Batch::CancelTasks(_) => Command::Cancel,
        }
    }

    /// How many tasks a batch call carried; `None` for a unary call.
    pub fn batched(&self) -> Option<usize> {
        match self {
            Batch::SubmitTasks(n) | Batch::CancelTasks(n) => Some(*n),
            Batch::SubmitTask | Batch::CancelTask => None,
        }
    }
}

impl From<Rpc> for Batch {
    fn from(rpc: Rpc) -> Batch {
        match rpc {
            Rpc::SubmitTask => Batch::SubmitTask,
            Rpc::SubmitTasks(n) => Batch::SubmitTasks(n),
            Rpc::CancelTask => Batch::CancelTask,
            Rpc::CancelTasks(n) => Batch::CancelTasks(n),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the tests want to see of a fake executor: every call, every RPC that carried submits
/// or cancels, every task descriptor (batches unpacked).
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Call>>,
    batches: Mutex<Vec<Batch>>,
    descriptors: Mutex<Vec<SubmitTaskRequest>>,
    /// NotifyCheckpoint calls: (checkpoint, complete, attempts).
    notices: Mutex<Vec<(u64, bool, usize)>>,
}

impl Observer for Recorder {
    fn checkpoint_notified(
        &self,
        _exec: &Executor,
        checkpoint: u64,
        complete: bool,
        attempts: usize,
        _at: Instant,
    ) {
        lock(&self.notices).push((checkpoint, complete, attempts));
    }

    fn rpc(&self, _exec: &Executor, rpc: Rpc) {
        lock(&self.batches).push(rpc.into());
    }

    fn submitted(&self, _exec: &Executor, task: &SubmitTaskRequest, _at: Instant) {
        lock(&self.descriptors).push(task.clone());
        if let Some(attempt) = &task.attempt {
            lock(&self.calls).push(Call::Submit {
                job: attempt.job_id.clone(),
                task: task_name(attempt),
                attempt: attempt.attempt,
                epoch: task.epoch,
            });
        }
    }

    fn cancel_received(&self, _exec: &Executor, attempt: &AttemptRef, epoch: u64, _at: Instant) {
        lock(&self.calls).push(Call::Cancel {
            job: attempt.job_id.clone(),
            task: task_name(attempt),
            attempt: attempt.attempt,
            epoch,
        });
    }

    fn released(&self, _exec: &Executor, request: &ReleasePartitionsRequest) {
        lock(&self.calls).push(Call::Release {
            partitions: request
                .partitions
                .iter()
                .map(|p| {
                    format!(
                        "{} {}@{}->{}",
                        p.job_id, p.producer, p.attempt, p.consumer_vertex
                    )
                })
                .collect(),
            epoch: request.epoch,
        });
    }
}

/// A TaskExecutor faked with the library's [`jobmaster::fake_executor`] (its default options:
/// unary reports, RUNNING once a heartbeat listing the attempt was answered): serves
/// `TaskExecutorService` on its own port-0 listener and records the calls it gets; registers
/// with a random session; keeps a heartbeat stream open listing the attempts it holds; reports
/// RUNNING after each submitted task and (unless told otherwise) CANCELED after each cancelled
/// one (unary or batched).
pub struct FakeExecutor {
    pub id: String,
    pub addr: SocketAddr,
    /// The epoch the JobMaster answered the registration with.
    pub epoch: u64,
    exec: Arc<Executor>,
    fleet: Arc<Fleet>,
    recorder: Arc<Recorder>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl FakeExecutor {
    /// Starts, registers and opens the heartbeat stream.
    pub async fn start(daemon: &Daemon, id: &str, slots: u32) -> FakeExecutor {
        FakeExecutor::start_labelled(daemon, id, slots, &[]).await
    }

    /// [`FakeExecutor::start`] with labels (`("zone", "a")`).
    pub async fn start_labelled(
        daemon: &Daemon,
        id: &str,
        slots: u32,
        labels: &[(&str, &str)],
    ) -> FakeExecutor {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind executor");
        let addr = listener.local_addr().expect("executor address");
        let exec = Executor::new(
            ExecutorConfig {
                id: id.to_owned(),
                address: addr.to_string(),
                slots,
                session: session_id(),
                free_disk_bytes: 1 << 30,
                rpc_timeout: DEADLINE,
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            },
            daemon.gateway().await,
        );
        let recorder = Arc::new(Recorder::default());
        let fleet = Fleet::new(Options::default(), recorder.clone());
        fleet.add(addr.port(), exec.clone());
        let server = tokio::spawn({
            let service = fleet.service();
            async move {
                let _ = Server::builder()
                    .add_service(service)
                    .serve_with_incoming(TcpListenerStream::new(listener))
                    .await;
            }
        });
        let registered = exec
            .register()
            .await
            .unwrap_or_else(|s| panic!("executor {id} registers: {s:?}"));
        let interval = Duration::from_millis(registered.heartbeat_interval_ms.max(1));
        let [producer, reader] = bounded(
            "opening the heartbeat stream",
            exec.start_heartbeats(interval),
        )
        .await
        .unwrap_or_else(|s| panic!("executor {id} opens its heartbeat stream: {s:?}"));
        FakeExecutor {
            id: id.to_owned(),
            addr,
            epoch: registered.epoch,
            exec,
            fleet,
            recorder,
            tasks: Mutex::new(vec![server, producer, reader]),
        }
    }

    pub fn session(&self) -> String {
        self.exec.session()
    }

    /// Every call received so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.recorder.calls).clone()
    }

    /// How many calls were received so far (a mark for `calls_since`).
    pub fn call_count(&self) -> usize {
        lock(&self.recorder.calls).len()
    }

    pub fn calls_since(&self, mark: usize) -> Vec<Call> {
        lock(&self.recorder.calls)[mark..].to_vec()
    }

    /// Every NotifyCheckpoint received so far: (checkpoint, complete, attempts).
    pub fn checkpoint_notices(&self) -> Vec<(u64, bool, usize)> {
        lock(&self.recorder.notices).clone()
    }

    /// Every task descriptor received so far (batches unpacked), in arrival order.
    pub fn descriptors(&self) -> Vec<SubmitTaskRequest> {
        lock(&self.recorder.descriptors).clone()
    }

    /// Every RPC that carried submits or cancels so far, in arrival order.
    pub fn batches(&self) -> Vec<Batch> {
        lock(&self.recorder.batches).clone()
    }

    /// The attempts the executor holds now.
    pub fn held(&self) -> Vec<AttemptRef> {
        self.exec.held()
    }

    /// Heartbeats answered so far.
    pub fn heartbeats_answered(&self) -> u64 {
        self.exec.heartbeats_answered()
    }

    /// Answers that told the executor to register again.
    pub fn reregister_asks(&self) -> u64 {
        self.exec.reregister_asks()
    }

    /// Waits until a heartbeat answer told the executor to register again.
    pub async fn wait_reregister_asked(&self) {
        eventually(
            &format!("{} told to register again", self.id),
            DEADLINE,
            || async {
                if self.reregister_asks() > 0 {
                    Ok(())
                } else {
                    Err(format!("{} answers", self.heartbeats_answered()))
                }
            },
        )
        .await
    }

    /// Waits until `n` more heartbeats have been answered.
    pub async fn wait_heartbeats(&self, n: u64) {
        let target = self.heartbeats_answered() + n;
        let mut acked = self.exec.watch_answers();
        let ok = tokio::time::timeout(DEADLINE, acked.wait_for(|&a| a >= target)).await;
        assert!(
            matches!(ok, Ok(Ok(_))),
            "executor {}: {n} more heartbeats were not answered within {DEADLINE:?}",
            self.id
        );
    }

    /// Reports a state of an attempt over UpdateTaskState, with this executor's session.
    pub async fn report(&self, attempt: &AttemptRef, state: &str) -> Result<(), Status> {
        bounded("UpdateTaskState", self.exec.update(attempt, state, "", "")).await
    }

    /// The attempt ended (`state` FINISHED or FAILED): drops it, then reports it.
    async fn end(
        &self,
        attempt: &AttemptRef,
        state: &str,
        class: &str,
        message: &str,
    ) -> Result<(), Status> {
        self.exec.drop_attempt(attempt);
        bounded(
            "UpdateTaskState",
            self.exec.update(attempt, state, class, message),
        )
        .await
    }

    /// The attempt failed: drop it and report FAILED.
    pub async fn fail(
        &self,
        attempt: &AttemptRef,
        class: &str,
        message: &str,
    ) -> Result<(), Status> {
        self.end(attempt, AttemptState::Failed.name(), class, message)
            .await
    }

    /// The attempt finished: drop it and report FINISHED.
    pub async fn finish(&self, attempt: &AttemptRef) -> Result<(), Status> {
        self.end(attempt, AttemptState::Finished.name(), "", "")
            .await
    }

    /// Reports several updates in one UpdateTaskStates call, with this executor's session;
    /// attempts reported FINISHED, CANCELED or FAILED are dropped first (as `fail` and `finish`
    /// do). Returns one outcome per update.
    pub async fn report_batch(
        &self,
        updates: Vec<TaskStateUpdate>,
    ) -> Result<Vec<TaskOutcome>, Status> {
        let ending = [
            AttemptState::Finished,
            AttemptState::Canceled,
            AttemptState::Failed,
        ];
        for u in &updates {
            if ending.iter().any(|s| s.name() == u.state)
                && let Some(a) = &u.attempt
            {
                self.exec.drop_attempt(a);
            }
        }
        self.report_batch_as(&self.id, &self.session(), updates)
            .await
    }

    /// One UpdateTaskStates call under any executor id and session (an unknown or replaced
    /// one); the executor's own state is left alone.
    pub async fn report_batch_as(
        &self,
        executor_id: &str,
        session: &str,
        updates: Vec<TaskStateUpdate>,
    ) -> Result<Vec<TaskOutcome>, Status> {
        bounded(
            "UpdateTaskStates",
            self.exec.update_batch(executor_id, session, updates),
        )
        .await
    }

    /// Stops the attempts cancelled so far and reports them all CANCELED in one
    /// UpdateTaskStates call (in the order the cancels arrived); returns the outcomes.
    pub async fn confirm_cancels_batched(&self) -> Result<Vec<TaskOutcome>, Status> {
        let updates = self
            .exec
            .take_unconfirmed()
            .iter()
            .map(|a| state_update(a, AttemptState::Canceled.name()))
            .collect();
        self.report_batch_as(&self.id, &self.session(), updates)
            .await
    }

    /// Cancels received and not yet confirmed (without auto-cancel).
    pub fn unconfirmed(&self) -> Vec<AttemptRef> {
        self.exec.unconfirmed()
    }

    /// With `false`, CancelTask calls are recorded and held until `confirm_cancels`.
    pub fn set_auto_cancel(&self, on: bool) {
        self.fleet.set_auto_confirm_cancels(on);
    }

    /// The next `n` SubmitTasks calls are applied (the attempts start) but answered
    /// UNAVAILABLE, as when the answer is lost on the way back.
    pub fn lose_submit_answers(&self, n: u32) {
        self.fleet.lose_submit_answers(n);
    }

    /// Each SubmitTask or SubmitTasks from now on takes `delay` to handle (it is recorded,
    /// and the attempt held, after the delay), as on a busy executor.
    pub fn set_submit_delay(&self, delay: Duration) {
        self.fleet.set_submit_delay(delay);
    }

    /// Stops the attempts cancelled so far and reports them CANCELED.
    pub async fn confirm_cancels(&self) {
        for a in self.exec.take_unconfirmed() {
            let _ = self.report(&a, AttemptState::Canceled.name()).await;
        }
    }

    /// Stops sending heartbeats but keeps the stream open; returns when the last one was sent.
    pub fn pause_heartbeats(&self) -> Instant {
        self.exec.pause_heartbeats().expect("a heartbeat was sent")
    }

    /// Drops every attempt and registers again with a new session.
    pub async fn reregister(&self) -> Result<RegisterExecutorResponse, Status> {
        self.exec.new_session(session_id());
        bounded("RegisterExecutor", self.exec.register()).await
    }

    /// The process dies: its heartbeat stream closes and its server stops.
    pub fn kill(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl Drop for FakeExecutor {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until the executor received a Cancel of `attempt` of `task` of `job`.
pub async fn wait_cancel(fake: &FakeExecutor, job: &str, task: &str, attempt: u32) -> Call {
    wait_call(
        fake,
        &format!("CancelTask of {task} attempt {attempt}"),
        |c| c.is_cancel_of(job, task, attempt),
    )
    .await
}

/// Waits until the executor received a call matching `pred`, and returns it.
pub async fn wait_call(fake: &FakeExecutor, what: &str, pred: impl Fn(&Call) -> bool) -> Call {
    let pred = &pred;
    eventually(what, DEADLINE, || async move {
        let calls = fake.calls();
        calls
            .iter()
            .find(|c| pred(c))
            .cloned()
            .ok_or_else(|| format!("{} got {calls:?}", fake.id))
    })
    .await
}
