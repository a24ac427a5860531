//! Helpers for the process-tier tests (DESIGN §7, tier 3): a real `jobmaster` and real
//! `taskexecutor` processes on loopback, each test in its own temporary directory, and the
//! task processes found through /proc by the `JM_ATTEMPT_DIR` in their environment.
//!
//! Everything a [`Cluster`] starts is killed when it is dropped, also when the test panics;
//! then every task process left under the test's directory is killed and the directory is
//! removed. Waiting is always polling with a deadline ([`eventually`]), never a bare sleep.
//!
//! [`Cluster::new_tls`] and [`Cluster::start_tls`] run the same cluster with TLS everywhere
//! and authentication (see [`tls`]); [`Cluster::new`] and [`Cluster::start`] run it in plain
//! text.

#![allow(dead_code)]

pub mod exactly_once;
pub mod ha;
pub mod netns;
pub mod tls;
pub mod watch;
pub mod wordcount;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
use jobmaster::api::v1::{
    ExecutorInfo, GetJobRequest, GetJobResponse, ListExecutorsRequest, SubmitJobRequest, TaskInfo,
};
use tonic::transport::Channel;

pub const JOBMASTER: &str = env!("CARGO_BIN_EXE_jobmaster");
pub const TASKEXECUTOR: &str = env!("CARGO_BIN_EXE_taskexecutor");

/// The repository root (where `examples/` lives).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An absolute path under `examples/`.
pub fn example(path: &str) -> String {
    repo().join("examples").join(path).display().to_string()
}

/// The Python interpreter the example tasks run with: the system's `/usr/bin/python3` (the
/// one the container image carries) when there is one, else the `python3` on `PATH` as Python
/// itself names it (`sys.executable`). A version manager's `python3` on PATH (pyenv's is a bash
/// script that runs a dozen processes before Python starts, and its interpreter starts 3×
/// slower than Debian's) would otherwise cost every task start ~90 ms of CPU, which the
/// benchmarks would measure instead of the executor. `python3` when it cannot be asked.
#[allow(dead_code)]
pub fn python3() -> String {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let system = Path::new("/usr/bin/python3");
            if system.is_file() {
                return system.display().to_string();
            }
            Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "python3".to_owned())
        })
        .clone()
}

/// Settings every process of a test cluster gets (later entries, from the test, win).
/// Heartbeats are fast; the heartbeat timeout is generous because a noisy machine may delay a
/// heartbeat, and a spurious executor loss would spoil the attempt numbers a test asserts.
const BASE_ENV: &[(&str, &str)] = &[
    ("RUST_LOG", "info"),
    ("JOBMASTER__HEARTBEAT__INTERVAL", "100ms"),
    ("JOBMASTER__HEARTBEAT__TIMEOUT", "3s"),
    ("JOBMASTER__RPC__TIMEOUT", "3s"),
    ("JOBMASTER__RPC__CONNECT_TIMEOUT", "1s"),
    ("JOBMASTER__EXECUTOR__CANCEL_GRACE", "2s"),
    ("JOBMASTER__EXECUTOR__MIN_FREE_DISK_BYTES", "0"),
];

struct Executor {
    child: Child,
    /// Still to be reaped.
    alive: bool,
}

/// A jobmaster and its taskexecutors, all child processes of the test.
pub struct Cluster {
    /// The test's own directory: executors' data dirs, the persistent dir, logs, job inputs.
    pub root: PathBuf,
    /// The jobmaster's gRPC URL (`https://` in TLS mode).
    pub url: String,
    /// The jobmaster's epoch: its start in ms since the Unix epoch, the zero of the `time_ms`
    /// of its events.
    pub epoch: u64,
    env: Vec<(String, String)>,
    jobmaster: Option<Child>,
    /// The address the jobmaster's gRPC port is bound to (`host:port`), once it started: a
    /// restart ([`Cluster::restart_jobmaster`]) binds it again so executors find it there.
    grpc_addr: Option<String>,
    /// The jobmaster's HTTP address (`/metrics`), while it runs.
    http_addr: Option<String>,
    executors: BTreeMap<String, Executor>,
    client: Option<JobMasterServiceClient<Channel>>,
    /// Leave `root` behind when dropped (the caller deletes it later).
    keep_root: bool,
    /// TLS mode: the certificates in `root/certs`.
    tls: Option<tls::Certs>,
}

impl Cluster {
    /// A fresh directory for test `name`; nothing runs yet.
    pub fn new(name: &str, env: &[(&str, &str)]) -> Cluster {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let root = std::env::temp_dir().join(format!(
            "jobmaster-processes-{name}-{}-{nanos:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(root.join("persistent")).expect("create the test directory");
        let root = root.canonicalize().expect("canonical test directory");
        let env = BASE_ENV
            .iter()
            .chain(env)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Cluster {
            root,
            url: String::new(),
            epoch: 0,
            env,
            jobmaster: None,
            grpc_addr: None,
            http_addr: None,
            executors: BTreeMap::new(),
            client: None,
            keep_root: false,
            tls: None,
        }
    }

    /// [`Cluster::new`] in TLS mode: a CA with the jobmaster's and the operator's
    /// certificates and a token file in `root/certs`; the jobmaster will serve TLS with the
    /// token file, each executor gets its own certificate when it first starts, and
    /// [`Cluster::client`] authenticates with the operator certificate.
    pub fn new_tls(name: &str, env: &[(&str, &str)]) -> Cluster {
        let mut cluster = Cluster::new(name, env);
        cluster.tls = Some(tls::Certs::create(cluster.root.join("certs")));
        cluster
    }

    /// The certificates (TLS mode only).
    pub fn certs(&self) -> Option<&tls::Certs> {
        self.tls.as_ref()
    }

    /// Leaves the directory behind when the cluster is dropped, for the caller to delete
    /// later. Benchmarks use it: deleting thousands of files between two runs makes the next
    /// run's file creation slow (ext4 skips recently deleted inodes when it allocates).
    pub fn keep_root(&mut self) {
        self.keep_root = true;
    }

    /// Starts the jobmaster (on port 0: it logs the ports it bound) and `executors`
    /// (id, slots), and waits until every executor is registered.
    pub async fn start(name: &str, executors: &[(&str, u32)], env: &[(&str, &str)]) -> Cluster {
        Cluster::start_all(Cluster::new(name, env), executors).await
    }

    /// [`Cluster::start`] in TLS mode ([`Cluster::new_tls`]).
    pub async fn start_tls(name: &str, executors: &[(&str, u32)], env: &[(&str, &str)]) -> Cluster {
        Cluster::start_all(Cluster::new_tls(name, env), executors).await
    }

    async fn start_all(mut cluster: Cluster, executors: &[(&str, u32)]) -> Cluster {
        cluster.start_jobmaster().await;
        for (id, slots) in executors {
            cluster.start_executor(id, *slots);
        }
        let ids: Vec<&str> = executors.iter().map(|(id, _)| *id).collect();
        cluster.wait_registered(&ids).await;
        cluster
    }

    fn log(&self, name: &str) -> std::fs::File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("{name}.log")))
            .expect("open a log file")
    }

    /// Spawns `command` in the test directory with the cluster's environment, no stdin, and
    /// its output appended to `NAME.log`; panics with `what` if it cannot start.
    fn spawn_logged(&self, command: &mut Command, name: &str, what: &str) -> Child {
        let out = self.log(name);
        command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone a log handle"))
            .stderr(out)
            .spawn()
            .expect(what)
    }

    /// Starts the jobmaster on a free port (it logs the port it bound), in the test
    /// directory: its store is `root/jobmaster-state` (the default `./jobmaster-state`).
    pub async fn start_jobmaster(&mut self) {
        assert!(self.jobmaster.is_none(), "the jobmaster runs already");
        let started = self.spawn_jobmaster("127.0.0.1:0", &[]).await;
        if let Err(text) = started {
            panic!("the jobmaster exited at start:\n{text}");
        }
        self.connect().await;
    }

    /// [`Cluster::start_jobmaster`] with its gRPC port at `listen` and `extra` arguments
    /// (e.g. `--insecure`).
    pub async fn start_jobmaster_on(&mut self, listen: &str, extra: &[&str]) {
        assert!(self.jobmaster.is_none(), "the jobmaster runs already");
        if let Err(text) = self.spawn_jobmaster(listen, extra).await {
            panic!("the jobmaster exited at start:\n{text}");
        }
        self.connect().await;
    }

    /// Starts the jobmaster again after [`Cluster::kill_jobmaster`]: on the same gRPC address,
    /// where the executors look for it, and on the same store. While the address is still
    /// taken (another process may briefly hold the port) it tries again, for at most 30 s.
    pub async fn restart_jobmaster(&mut self) {
        assert!(self.jobmaster.is_none(), "the jobmaster runs already");
        let addr = self
            .grpc_addr
            .clone()
            .expect("the jobmaster ran before (start_jobmaster)");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.spawn_jobmaster(&addr, &[]).await {
                Ok(()) => break,
                Err(text) if text.contains("cannot listen") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(text) => panic!("the restarted jobmaster exited at start:\n{text}"),
            }
        }
        self.connect().await;
    }

    /// Spawns the jobmaster on `listen` and waits until it logs `jobmaster listening`
    /// (recording its address and epoch); `Err` with its log when it exits first.
    async fn spawn_jobmaster(&mut self, listen: &str, extra: &[&str]) -> Result<(), String> {
        let log = self.root.join("jobmaster.log");
        // Restarts append to the same log: read only what this process writes.
        let offset = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        let mut command = Command::new(JOBMASTER);
        command.args([
            "--listen",
            listen,
            "--http",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ]);
        command.args(extra);
        if let Some(certs) = &self.tls {
            command.args(certs.jobmaster_args());
        }
        let mut child = self.spawn_logged(&mut command, "jobmaster", "start the jobmaster");
        let deadline = Instant::now() + Duration::from_secs(30);
        let (grpc, http, epoch) = loop {
            let exited = matches!(child.try_wait(), Ok(Some(_)) | Err(_));
            let text = std::fs::read(&log)
                .map(|b| String::from_utf8_lossy(b.get(offset..).unwrap_or_default()).into_owned())
                .unwrap_or_default();
            let listening = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["fields"]["message"] == "jobmaster listening")
                .and_then(|v| {
                    let grpc = v["fields"]["grpc"].as_str()?.to_owned();
                    let http = v["fields"]["http"].as_str()?.to_owned();
                    Some((grpc, http, v["fields"]["epoch"].as_u64()?))
                });
            match listening {
                Some(found) => break found,
                None if exited => {
                    let _ = child.wait();
                    return Err(text);
                }
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the jobmaster did not listen within 30 s:\n{text}");
                }
                None => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        };
        self.jobmaster = Some(child);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.url = format!("{scheme}://{grpc}");
        self.grpc_addr = Some(grpc);
        self.http_addr = Some(http);
        self.epoch = epoch;
        Ok(())
    }

    /// Connects the operator client to the running jobmaster.
    async fn connect(&mut self) {
        let url = self.url.clone();
        let certs = self.tls.as_ref();
        let client = eventually("connect to the jobmaster", Duration::from_secs(30), || {
            let url = url.clone();
            async move {
                match certs {
                    Some(certs) => certs
                        .operator_channel(&url)
                        .await
                        .map(JobMasterServiceClient::new),
                    None => JobMasterServiceClient::connect(url)
                        .await
                        .map_err(|e| e.to_string()),
                }
            }
        })
        .await;
        self.client = Some(client);
    }

    /// The jobmaster's `/metrics` text (plain HTTP only).
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.http_addr.clone().expect("the jobmaster runs");
        assert!(self.tls.is_none(), "metrics() speaks plain HTTP");
        let mut stream = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect to the jobmaster's HTTP port");
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send GET /metrics");
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .expect("read /metrics");
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(answer.starts_with("HTTP/1.1 200"), "GET /metrics: {answer}");
        answer
    }

    /// The value of the metric sample whose line starts with `prefix` (name and labels), as
    /// `/metrics` shows it; `None` when there is no such line.
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        self.metrics()
            .await
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse().ok())
    }

    pub fn data_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Starts `taskexecutor --id ID` (again, if it ran before: same data dir).
    pub fn start_executor(&mut self, id: &str, slots: u32) {
        self.start_executor_via(id, slots, &[], "127.0.0.1:0", &[]);
    }

    /// [`Cluster::start_executor`] through `launcher` (e.g. `ip netns exec NS`: the launcher
    /// must exec the executor, so that the child's pid is the executor's), listening on
    /// `listen`, with `extra` arguments (e.g. `--insecure`).
    pub fn start_executor_via(
        &mut self,
        id: &str,
        slots: u32,
        launcher: &[&str],
        listen: &str,
        extra: &[&str],
    ) {
        if let Some(old) = self.executors.get_mut(id) {
            assert!(!old.alive, "executor {id} still runs");
        }
        let data = self.data_dir(id);
        let persistent = self.root.join("persistent");
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(TASKEXECUTOR);
                command
            }
            None => Command::new(TASKEXECUTOR),
        };
        command
            .arg("--jobmaster")
            .arg(&self.url)
            .args(["--listen", listen, "--id", id])
            .args(extra)
            .arg("--slots")
            .arg(slots.to_string())
            .arg("--data-dir")
            .arg(&data)
            .arg("--persistent-dir")
            .arg(&persistent);
        if let Some(certs) = &self.tls {
            command.args(certs.executor_args(id));
        }
        let child = self.spawn_logged(&mut command, id, "start a taskexecutor");
        self.executors
            .insert(id.to_owned(), Executor { child, alive: true });
    }

    pub fn executor_pid(&self, id: &str) -> i32 {
        self.executors
            .get(id)
            .unwrap_or_else(|| panic!("no executor {id}"))
            .child
            .id() as i32
    }

    /// Sends `signal` to executor `id`; SIGKILL also reaps it.
    pub fn signal_executor(&mut self, id: &str, signal: i32) {
        let executor = self
            .executors
            .get_mut(id)
            .unwrap_or_else(|| panic!("no executor {id}"));
        assert!(executor.alive, "executor {id} is not running");
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        let rc = unsafe { libc::kill(executor.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill({signal}) of executor {id}");
        if signal == libc::SIGKILL {
            let _ = executor.child.wait();
            executor.alive = false;
        }
    }

    /// SIGTERM to executor `id`, then waits (bounded) for it to exit.
    pub async fn stop_executor(&mut self, id: &str) {
        self.signal_executor(id, libc::SIGTERM);
        let executor = self.executors.get_mut(id).expect("exists");
        let child = &mut executor.child;
        let status = eventually(
            &format!("executor {id} exits on SIGTERM"),
            Duration::from_secs(30),
            || {
                let r = child.try_wait();
                async move {
                    match r {
                        Ok(Some(status)) => Ok(status),
                        Ok(None) => Err("still running".to_owned()),
                        Err(e) => panic!("wait: {e}"),
                    }
                }
            },
        )
        .await;
        executor.alive = false;
        assert!(status.success(), "executor {id} exited with {status}");
    }

    /// SIGKILL to the jobmaster.
    pub fn kill_jobmaster(&mut self) {
        if let Some(mut child) = self.jobmaster.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.client = None;
        self.http_addr = None;
    }

    pub fn client(&self) -> JobMasterServiceClient<Channel> {
        self.client.clone().expect("the jobmaster runs")
    }

    pub async fn submit(&self, spec: &serde_json::Value) -> String {
        submit_to(self.client(), spec).await
    }

    pub async fn job(&self, job: &str) -> GetJobResponse {
        self.client()
            .get_job(GetJobRequest {
                job_id: job.to_owned(),
                task_limit: 10_000,
                ..GetJobRequest::default()
            })
            .await
            .unwrap_or_else(|s| panic!("GetJob: {}", s.message()))
            .into_inner()
    }

    /// The job's tasks by name.
    pub async fn tasks(&self, job: &str) -> BTreeMap<String, TaskInfo> {
        self.job(job)
            .await
            .tasks
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect()
    }

    pub async fn executors(&self) -> Vec<ExecutorInfo> {
        self.client()
            .list_executors(ListExecutorsRequest {})
            .await
            .unwrap_or_else(|s| panic!("ListExecutors: {}", s.message()))
            .into_inner()
            .executors
    }

    pub async fn registered(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.executors().await.into_iter().map(|e| e.id).collect();
        ids.sort();
        ids
    }

    /// Waits until exactly `ids` are registered.
    pub async fn wait_registered(&self, ids: &[&str]) {
        let mut want: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        eventually(
            &format!("executors {want:?} registered"),
            Duration::from_secs(30),
            || {
                let want = want.clone();
                async move {
                    let have = self.registered().await;
                    if have == want {
                        Ok(())
                    } else {
                        Err(format!("registered: {have:?}"))
                    }
                }
            },
        )
        .await;
    }

    /// Waits until every task of `job` satisfies `ok`; returns the tasks.
    pub async fn wait_tasks(
        &self,
        job: &str,
        what: &str,
        within: Duration,
        ok: impl Fn(&TaskInfo) -> bool,
    ) -> BTreeMap<String, TaskInfo> {
        let ok = &ok;
        eventually(what, within, || async move {
            let tasks = self.tasks(job).await;
            if tasks.values().all(ok) {
                Ok(tasks)
            } else {
                Err(describe(&tasks))
            }
        })
        .await
    }

    /// Waits until the job is in `state`.
    pub async fn wait_job_state(&self, job: &str, state: &str, within: Duration) -> GetJobResponse {
        eventually(&format!("job {job} {state}"), within, || async move {
            let j = self.job(job).await;
            if j.state == state {
                Ok(j)
            } else {
                Err(format!(
                    "job {} (cause {:?}); tasks: {}",
                    j.state,
                    j.cause,
                    describe(
                        &j.tasks
                            .iter()
                            .map(|t| (t.name.clone(), t.clone()))
                            .collect()
                    )
                ))
            }
        })
        .await
    }

    /// Live task processes of this test.
    pub fn processes(&self) -> Vec<TaskProcess> {
        task_processes(&self.root)
    }

    /// Live task processes started by executor `id` (its data dir).
    pub fn processes_of(&self, id: &str) -> Vec<TaskProcess> {
        task_processes(&self.data_dir(id))
    }

    /// Waits until no task process started by executor `id` is alive.
    pub async fn wait_no_processes_of(&self, id: &str) {
        eventually(
            &format!("no task process of executor {id} remains"),
            Duration::from_secs(60),
            || async move {
                let left = self.processes_of(id);
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{left:?}"))
                }
            },
        )
        .await;
    }

    /// Waits until no task process of this test is alive.
    pub async fn wait_no_processes(&self) {
        eventually(
            "no task process of the test remains",
            Duration::from_secs(60),
            || async move {
                let left = self.processes();
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{left:?}"))
                }
            },
        )
        .await;
    }

    fn print_logs(&self) {
        let mut names: Vec<String> = vec!["jobmaster".to_owned()];
        names.extend(self.executors.keys().cloned());
        for name in names {
            let text =
                std::fs::read_to_string(self.root.join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("----- {name}.log (last {} lines) -----", tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
            for p in self.processes() {
                eprintln!("live task process: {p:?}");
            }
        }
        for executor in self.executors.values_mut() {
            if executor.alive {
                let pid = executor.child.id() as i32;
                // SAFETY: kill(2) on our own unreaped child; a stopped one is woken first.
                unsafe {
                    libc::kill(pid, libc::SIGCONT);
                    libc::kill(pid, libc::SIGKILL);
                }
                let _ = executor.child.wait();
                executor.alive = false;
            }
        }
        self.kill_jobmaster();
        // Whatever task processes are left (grandchildren escape the parent-death signal).
        for p in self.processes() {
            // SAFETY: kill(2) on a pid we just read from /proc; it belongs to this test.
            unsafe {
                libc::kill(p.pid, libc::SIGKILL);
            }
        }
        // JM_TEST_KEEP=1 keeps the directory (logs, task logs) of a failed test.
        if std::thread::panicking() && std::env::var_os("JM_TEST_KEEP").is_some() {
            eprintln!("kept {}", self.root.display());
        } else if !self.keep_root {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The `jobmaster listening` lines of a jobmaster's JSON log, in order.
fn listening_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "jobmaster listening")
        .collect()
}

/// `name state attempt@executor` of each task, for failure messages.
pub fn describe(tasks: &BTreeMap<String, TaskInfo>) -> String {
    tasks
        .values()
        .map(|t| format!("{} {} {}@{}", t.name, t.state, t.attempt, t.executor))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Submits `spec` (JSON) through `client`; returns the job id.
pub async fn submit_to(
    mut client: JobMasterServiceClient<Channel>,
    spec: &serde_json::Value,
) -> String {
    client
        .submit_job(SubmitJobRequest {
            spec: spec.to_string(),
            format: "json".into(),
        })
        .await
        .unwrap_or_else(|s| panic!("SubmitJob: {}", s.message()))
        .into_inner()
        .job_id
}

/// Polls `probe` until it returns `Ok`, for at most `within`; panics with the last `Err`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("timed out after {within:?} waiting until {what}; last: {last}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs a test body with an overall deadline.
pub async fn bounded<F: Future<Output = ()>>(limit: Duration, body: F) {
    if tokio::time::timeout(limit, body).await.is_err() {
        panic!("the test did not finish within {limit:?}");
    }
}

/// A live (not zombie) process started by a taskexecutor for a task.
#[derive(Debug, Clone)]
pub struct TaskProcess {
    pub pid: i32,
    /// `JM_JOB_ID`.
    pub job: String,
    pub pgid: i32,
    pub cmdline: String,
    /// `vertex#subtask`.
    pub task: String,
    pub attempt: u32,
    pub executor: String,
    pub attempt_dir: String,
}

/// Every live process whose `JM_ATTEMPT_DIR` lies under `under` (task processes and their
/// descendants, which inherit the environment).
/// The `JM_*` variables of process `pid` (what the executor gives a task), if readable.
pub fn task_env(pid: i32) -> Option<BTreeMap<String, String>> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        environ
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                let (k, v) = kv.split_once('=')?;
                k.starts_with("JM_").then(|| (k.to_owned(), v.to_owned()))
            })
            .collect(),
    )
}

pub fn task_processes(under: &Path) -> Vec<TaskProcess> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // Fields after the command name: state, ppid, pgrp, ...
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.len() < 3 || matches!(fields[0], "Z" | "X" | "x") {
            continue;
        }
        let Some(env) = task_env(pid) else {
            continue;
        };
        let Some(attempt_dir) = env.get("JM_ATTEMPT_DIR") else {
            continue;
        };
        if !Path::new(attempt_dir).starts_with(under) {
            continue;
        }
        let cmdline = std::fs::read(dir.join("cmdline"))
            .map(|c| {
                c.split(|b| *b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let get = |k: &str| env.get(k).cloned().unwrap_or_default();
        found.push(TaskProcess {
            pid,
            job: get("JM_JOB_ID"),
            pgid: fields[2].parse().unwrap_or(0),
            cmdline: cmdline.trim().to_owned(),
            task: format!("{}#{}", get("JM_VERTEX"), get("JM_SUBTASK")),
            attempt: get("JM_ATTEMPT").parse().unwrap_or(u32::MAX),
            executor: get("JM_EXECUTOR_ID"),
            attempt_dir: attempt_dir.clone(),
        });
    }
    found
}

/// A restart strategy that restarts at once (or nearly), many times.
pub fn quick_restarts(delay: &str) -> serde_json::Value {
    serde_json::json!({ "strategy": "fixed-delay", "attempts": 1000, "delay": delay })
}

/// The two-city streaming job: `cities` independent pipelines source -> orders (pointwise,
/// pipelined), each vertex of `parallelism`, so `cities * parallelism` regions of 2 tasks.
pub fn streaming_job(
    name: &str,
    cities: &[&str],
    parallelism: u32,
    command: &[String],
    restart: serde_json::Value,
) -> serde_json::Value {
    let mut vertices = Vec::new();
    let mut edges = Vec::new();
    for city in cities {
        for v in ["source", "orders"] {
            vertices.push(serde_json::json!({
                "id": format!("{city}-{v}"),
                "parallelism": parallelism,
                "command": command,
            }));
        }
        edges.push(serde_json::json!({
            "from": format!("{city}-source"),
            "to": format!("{city}-orders"),
            "pattern": "pointwise",
            "exchange": "pipelined",
        }));
    }
    serde_json::json!({
        "name": name,
        "failover": "region",
        "restart": restart,
        "vertices": vertices,
        "edges": edges,
    })
}

/// `sh examples/tasks/stream.sh`, with an absolute path (tasks run in the executor's working
/// directory).
pub fn stream_command() -> Vec<String> {
    vec!["sh".into(), example("tasks/stream.sh")]
}

/// A test directory removed at the end (kept with `JM_TEST_KEEP=1` when the test fails,
/// after printing the end of its `local.log` if it has one), whose leftover task processes
/// are killed.
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "jobmaster-crash-{name}-{}-{nanos:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create the test directory");
        TestDir(dir.canonicalize().expect("canonical test directory"))
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        for p in task_processes(&self.0) {
            // SAFETY: kill(2) on a task process of this test (found under its directory).
            unsafe {
                libc::kill(p.pid, libc::SIGKILL);
            }
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.0.join("local.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("----- local.log (last 80 lines) -----");
            for l in &lines[lines.len().saturating_sub(80)..] {
                eprintln!("{l}");
            }
            if std::env::var_os("JM_TEST_KEEP").is_some() {
                eprintln!("kept {}", self.0.display());
                return;
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
