//! Keeping tasks vs. fencing them (DESIGN §4; the README's "Keeping tasks vs. fencing them"):
//! an executor keeps its tasks while its JobMaster is gone (connection refused), and kills them
//! itself, strictly before the JobMaster declares it lost, when it is merely cut off — so a
//! partition never yields two live attempts of one task. And the JobMaster's fast path on
//! failed RPCs loses an executor at once only when its address refuses connections.
//!
//! The partition tests run real processes: the jobmaster listens on one end of a veth pair,
//! the partitioned executor runs in a network namespace behind the other end, and iptables
//! rules inside that namespace drop its packets (see `process_support::netns`), while the test
//! and a second executor reach the jobmaster from this namespace. They need root, and are
//! skipped with a message without it.
//!
//! Loss and death are compared on the wall clock: the jobmaster's events carry their time in
//! ms since its start (its epoch, logged at start), which bounds the loss from below; the task
//! is watched every few ms by a thread of its own, which bounds its death from above.

mod daemon_support;
mod process_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jobmaster::api::v1::inject_failure_request::Target;
use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
use jobmaster::api::v1::{InjectFailureRequest, WatchEvent, WatchEventsRequest};
use process_support::netns::Netns;
use process_support::{Cluster, TaskProcess, quick_restarts, task_processes};
use tonic::Streaming;
use tonic::transport::Channel;

/// Heartbeats of the process tests: a 3 s timeout and a 750 ms fence margin (a quarter of it)
/// leave 2.25 s of silence before an executor fences, which a noisy machine does not reach.
const ENV: &[(&str, &str)] = &[
    ("JOBMASTER__HEARTBEAT__INTERVAL", "200ms"),
    ("JOBMASTER__HEARTBEAT__TIMEOUT", "3s"),
];
const TIMEOUT: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(60);
const TEST_LIMIT: Duration = Duration::from_secs(150);

/// One task, `v#0`, that runs until it is killed; restarted at once.
fn one_task_job(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "restart": quick_restarts("100ms"),
        "vertices": [{ "id": "v", "parallelism": 1, "command": ["sleep", "3600"] }],
    })
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether `pid` is a live process (not a zombie: a task killed but not yet reaped by its shim
/// runs no more).
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("X");
    !matches!(state, "Z" | "X" | "x")
}

/// CLOCK_BOOTTIME in ms: the clock of a process's start time in /proc.
fn boot_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) into a timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts);
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// When `pid` started, in CLOCK_BOOTTIME ms, rounded down (field 22 of /proc/PID/stat, in
/// clock ticks): a lower bound.
fn started_boot_ms(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("a live process");
    let ticks: u64 = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|t| t.parse().ok())
        .expect("a start time");
    // SAFETY: sysconf(3) has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * 1000 / hz
}

/// When a process died, as the kernel told (a pidfd turns readable when it exits, reaped or
/// not), rounded up: upper bounds.
#[derive(Debug, Clone, Copy)]
struct Death {
    wall_ms: u64,
    boot_ms: u64,
}

impl Death {
    fn now() -> Death {
        Death {
            wall_ms: wall_ms() + 1,
            boot_ms: boot_ms() + 1,
        }
    }
}

/// What a [`Sampler`] saw.
#[derive(Debug, Default)]
struct Samples {
    /// The sample with the most attempts of the task alive at once.
    worst: Vec<TaskProcess>,
    /// When the watched process died.
    death: Option<Death>,
    samples: u64,
}

/// Watches task `task`'s processes under `root` every few milliseconds, and waits for process
/// `watched` to die, on threads of its own, until [`Sampler::stop`].
struct Sampler {
    stop: Arc<AtomicBool>,
    scan: Option<std::thread::JoinHandle<(Vec<TaskProcess>, u64)>>,
    death: Option<std::thread::JoinHandle<Option<Death>>>,
}

impl Sampler {
    fn start(root: &Path, task: &str, watched: i32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (root, task, flag) = (root.to_path_buf(), task.to_owned(), stop.clone());
        let scan = std::thread::spawn(move || {
            let mut worst: Vec<TaskProcess> = Vec::new();
            let mut samples = 0;
            while !flag.load(Ordering::Relaxed) {
                let live: Vec<TaskProcess> = task_processes(&root)
                    .into_iter()
                    .filter(|p| p.task == task)
                    .collect();
                let attempts: BTreeSet<u32> = live.iter().map(|p| p.attempt).collect();
                let most: BTreeSet<u32> = worst.iter().map(|p| p.attempt).collect();
                if attempts.len() > most.len() {
                    worst = live;
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (worst, samples)
        });
        let flag = stop.clone();
        let death = std::thread::spawn(move || {
            // SAFETY: pidfd_open(2) of a pid; the descriptor is closed below.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, watched, 0) } as i32;
            if fd < 0 {
                return Some(Death::now());
            }
            let mut died = None;
            while !flag.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: poll(2) on one pollfd we own.
                if unsafe { libc::poll(&mut pfd, 1, 50) } > 0 {
                    died = Some(Death::now());
                    break;
                }
            }
            // SAFETY: closes the pidfd opened above.
            unsafe {
                libc::close(fd);
            }
            died
        });
        Sampler {
            stop,
            scan: Some(scan),
            death: Some(death),
        }
    }

    fn stop(mut self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        let (worst, samples) = self
            .scan
            .take()
            .expect("running")
            .join()
            .expect("the sampler does not panic");
        let death = self
            .death
            .take()
            .expect("running")
            .join()
            .expect("the watcher does not panic");
        Samples {
            worst,
            death,
            samples,
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn watch_events(client: JobMasterServiceClient<Channel>) -> Streaming<WatchEvent> {
    let mut client = client;
    client
        .watch_events(WatchEventsRequest::default())
        .await
        .expect("WatchEvents")
        .into_inner()
}

/// Reads events until one satisfies `want` (within `within`); returns it and every event read.
async fn event(
    events: &mut Streaming<WatchEvent>,
    what: &str,
    within: Duration,
    want: impl Fn(&WatchEvent) -> bool,
) -> (WatchEvent, Vec<WatchEvent>) {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.message()).await {
            Ok(Ok(Some(e))) if want(&e) => return (e, seen),
            Ok(Ok(Some(e))) => seen.push(e),
            Ok(other) => panic!("the event stream ended waiting for {what}: {other:?}"),
            Err(_) => panic!("no event {what} within {within:?}; seen: {seen:?}"),
        }
    }
}

fn lost(executor: &str) -> impl Fn(&WatchEvent) -> bool + '_ {
    move |e| e.kind == "executor-lost" && e.executor == executor
}

/// The one live process of task `v#0` on executor `id`, once there is one.
async fn task_process(cluster: &Cluster, id: &str) -> TaskProcess {
    process_support::eventually(
        &format!("the task's process runs on {id}"),
        WAIT,
        || async move {
            match cluster.processes_of(id).as_slice() {
                [p] => Ok(p.clone()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

/// Submits the one-task job and waits until it runs on `id`; returns the job and the process.
async fn running_on(cluster: &Cluster, id: &str, name: &str) -> (String, TaskProcess) {
    let job = cluster.submit(&one_task_job(name)).await;
    cluster
        .wait_tasks(&job, &format!("v#0 RUNNING on {id}"), WAIT, |t| {
            t.state == "RUNNING" && t.executor == id
        })
        .await;
    let process = task_process(cluster, id).await;
    (job, process)
}

/// The task's old attempt died (`death`) before its redeploy (`redeployed`) started, and no
/// sample saw two attempts of it alive.
fn never_beside(samples: &Samples, death: Death, redeployed: &TaskProcess) {
    let started = started_boot_ms(redeployed.pid);
    assert!(
        death.boot_ms <= started,
        "the old attempt died by {} ms (boot clock), after its redeploy started at {started} ms: \
         {redeployed:?}",
        death.boot_ms
    );
    assert!(
        samples.worst.len() <= 1,
        "two attempts of the task alive at once ({} samples): {:?}",
        samples.samples,
        samples.worst
    );
}

/// A log timestamp (`2026-01-01T10:00:00.123456Z`) as a time since the Unix epoch.
fn log_time(stamp: &str) -> Option<Duration> {
    humantime::parse_rfc3339(stamp)
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
}

fn log_of(cluster: &Cluster, id: &str) -> String {
    std::fs::read_to_string(cluster.root.join(format!("{id}.log"))).unwrap_or_default()
}

/// The executor's service address as the jobmaster lists it.
async fn address_of(cluster: &Cluster, id: &str) -> SocketAddr {
    cluster
        .executors()
        .await
        .into_iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("{id} is not registered"))
        .address
        .parse()
        .expect("an executor address")
}

/// The partition rig, or `None` (and why, on stderr) where it cannot run.
fn rig(test: &str) -> Option<Netns> {
    match Netns::create() {
        Ok(netns) => Some(netns),
        Err(why) => {
            eprintln!("skipped {test}: {why}");
            None
        }
    }
}

/// A jobmaster on the rig's host address and executor `tm-a` inside the rig's namespace.
async fn cluster_across(netns: &Netns, name: &str, env: &[(&str, &str)]) -> Cluster {
    let mut cluster = Cluster::new(name, env);
    // Not loopback, so without TLS it needs --insecure: the address is on a veth pair that
    // only this machine's namespaces reach.
    cluster
        .start_jobmaster_on(&format!("{}:0", netns.host), &["--insecure"])
        .await;
    cluster.start_executor_via(
        "tm-a",
        1,
        &netns.launcher(),
        &format!("{}:0", netns.guest),
        &["--insecure"],
    );
    cluster.wait_registered(&["tm-a"]).await;
    cluster
}

// ----- the JobMaster gone: keep ------------------------------------------------------------

/// kill -9 of the jobmaster: its port refuses connections, so the executor keeps its task —
/// the same process, alive — far past the fence deadline (twice the heartbeat timeout), and
/// registers with the jobmaster started again on the same port. (That one does not know the
/// attempt yet and cancels it: adoption is the durable JobMaster's work.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_keeps_its_task_while_the_jobmaster_is_gone_and_registers_with_the_next_one() {
    process_support::bounded(TEST_LIMIT, async {
        let mut cluster = Cluster::start("fence-keep", &[("tm-a", 1)], ENV).await;
        let (_, task) = running_on(&cluster, "tm-a", "keep").await;
        let port = cluster
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .expect("the jobmaster's port");
        let sampler = Sampler::start(&cluster.root, "v#0", task.pid);

        cluster.kill_jobmaster();
        let killed = Instant::now();
        // Time itself is the condition here: the task must outlive the fence deadline.
        while killed.elapsed() < 2 * TIMEOUT {
            assert!(
                alive(task.pid),
                "the task died {:?} into the jobmaster's outage",
                killed.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cluster
            .start_jobmaster_on(&format!("127.0.0.1:{port}"), &[])
            .await;
        let restarted_ms = cluster.epoch;
        cluster.wait_registered(&["tm-a"]).await;
        let samples = sampler.stop();
        if let Some(death) = samples.death {
            assert!(
                death.wall_ms >= restarted_ms,
                "the task died by {} (wall ms), before the next jobmaster started at \
                 {restarted_ms}",
                death.wall_ms
            );
        }
        let log = log_of(&cluster, "tm-a");
        assert!(
            log.contains("jobmaster gone (connection refused): keeping the attempts"),
            "tm-a says why it keeps its task:\n{log}"
        );
        assert!(
            !log.contains("self-fencing"),
            "tm-a fenced although its jobmaster was gone:\n{log}"
        );
    })
    .await;
}

// ----- a partition: fence ----------------------------------------------------------------

/// tm-a is cut off (every packet between it and the jobmaster dropped) while its heartbeat
/// stream is open. It kills its task before the jobmaster declares it lost by the heartbeat
/// timeout; the task is redeployed on tm-b, and at no sampled moment do two attempts of it
/// run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_executor_kills_its_task_before_the_jobmaster_declares_it_lost() {
    let Some(netns) = rig("the partition test") else {
        return;
    };
    process_support::bounded(TEST_LIMIT, async {
        let mut cluster = cluster_across(&netns, "fence-partition", ENV).await;
        let (job, task) = running_on(&cluster, "tm-a", "partition").await;
        cluster.start_executor("tm-b", 1);
        cluster.wait_registered(&["tm-a", "tm-b"]).await;
        let mut events = watch_events(cluster.client()).await;
        let sampler = Sampler::start(&cluster.root, "v#0", task.pid);
        assert!(alive(task.pid), "the task runs before the partition");

        netns.partition();
        let (loss, _) = event(&mut events, "tm-a lost", WAIT, lost("tm-a")).await;
        let lost_ms = cluster.epoch + loss.time_ms;
        cluster
            .wait_tasks(&job, "v#0 RUNNING again on tm-b", WAIT, |t| {
                t.state == "RUNNING" && t.executor == "tm-b"
            })
            .await;
        let redeployed = task_process(&cluster, "tm-b").await;
        let samples = sampler.stop();

        assert!(
            loss.detail.starts_with("no heartbeat for"),
            "tm-a is lost by the heartbeat timeout: {loss:?}"
        );
        let death = samples
            .death
            .unwrap_or_else(|| panic!("tm-a's task still runs: {samples:?}"));
        assert!(
            death.wall_ms < lost_ms,
            "tm-a's task died by {} (wall ms), not before the jobmaster declared tm-a lost at \
             {lost_ms}",
            death.wall_ms
        );
        eprintln!(
            "tm-a's task died at least {} ms before the loss",
            lost_ms - death.wall_ms
        );
        never_beside(&samples, death, &redeployed);
        let log = log_of(&cluster, "tm-a");
        assert!(
            log.contains("self-fencing: heartbeats unanswered"),
            "tm-a says it fenced:\n{log}"
        );

        // Healed, tm-a registers again under a new session, once: that registration is proof
        // enough to stay (it must not fence again at once on its stale deadline).
        netns.heal();
        cluster.wait_registered(&["tm-a", "tm-b"]).await;
        let settled = Instant::now();
        while settled.elapsed() < TIMEOUT / 2 {
            if let Ok(Ok(Some(e))) =
                tokio::time::timeout(Duration::from_millis(50), events.message()).await
            {
                assert!(!lost("tm-a")(&e), "tm-a lost again once healed: {e:?}");
            }
        }
        let log = log_of(&cluster, "tm-a");
        assert_eq!(
            log.matches("self-fencing: heartbeats unanswered, killing")
                .count(),
            1,
            "tm-a fenced once:\n{log}"
        );
    })
    .await;
}

/// The RPC-failure path, for real: tm-a's command port is a black hole (the jobmaster's calls
/// time out) while its heartbeats flow. A failure injected into its task makes the jobmaster
/// cancel it there; the cancel times out (`rpc-failure-threshold` 1). That is no proof tm-a is
/// gone, so the jobmaster does not declare it lost but asks it to fence itself: tm-a kills the
/// task and registers again under a new session, which loses the old one. The task dies before
/// that loss and never runs beside its redeploy on tm-b.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_time_out_make_the_executor_fence_itself_before_it_is_declared_lost() {
    let Some(netns) = rig("the RPC-failure test") else {
        return;
    };
    process_support::bounded(TEST_LIMIT, async {
        let env = [
            ENV,
            &[
                ("JOBMASTER__HEARTBEAT__RPC_FAILURE_THRESHOLD", "1"),
                ("JOBMASTER__RPC__TIMEOUT", "1s"),
            ],
        ]
        .concat();
        let mut cluster = cluster_across(&netns, "fence-rpc", &env).await;
        let (job, task) = running_on(&cluster, "tm-a", "rpc").await;
        cluster.start_executor("tm-b", 1);
        cluster.wait_registered(&["tm-a", "tm-b"]).await;
        let service = address_of(&cluster, "tm-a").await;
        let mut events = watch_events(cluster.client()).await;
        let sampler = Sampler::start(&cluster.root, "v#0", task.pid);

        netns.black_hole_port(service.port());
        cluster
            .client()
            .inject_failure(InjectFailureRequest {
                job_id: job.clone(),
                target: Some(Target::Task("v#0".into())),
                ..InjectFailureRequest::default()
            })
            .await
            .expect("InjectFailure");
        let (loss, _) = event(&mut events, "tm-a's session lost", WAIT, lost("tm-a")).await;
        cluster
            .wait_tasks(&job, "v#0 RUNNING again on tm-b", WAIT, |t| {
                t.state == "RUNNING" && t.executor == "tm-b"
            })
            .await;
        let redeployed = task_process(&cluster, "tm-b").await;
        let samples = sampler.stop();

        // Only tm-a itself ends its old session, once its task is dead: by closing that
        // session's heartbeat stream or by registering a new one.
        assert!(
            loss.detail == "heartbeat stream closed"
                || loss.detail == "executor registered again with a new session",
            "a timed-out command is no proof that tm-a is gone: {loss:?}"
        );
        let death = samples
            .death
            .unwrap_or_else(|| panic!("tm-a's task still runs: {samples:?}"));
        never_beside(&samples, death, &redeployed);
        // The two steps follow each other within milliseconds, closer than a watcher can
        // time them from outside (or the event's ms since the jobmaster's start): the logs
        // time them, in µs of the same wall clock.
        let log = log_of(&cluster, "tm-a");
        assert!(
            log.contains("asks this executor to register again"),
            "tm-a was asked to fence itself:\n{log}"
        );
        let dead_logged = log
            .lines()
            .find(|l| l.contains("the killed attempts are dead"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(log_time)
            .unwrap_or_else(|| panic!("tm-a logs when its killed task is dead:\n{log}"));
        let jobmaster = log_of(&cluster, "jobmaster");
        let lost_logged = jobmaster
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| {
                v["fields"]["message"] == "executor lost" && v["fields"]["executor"] == "tm-a"
            })
            .and_then(|v| v["timestamp"].as_str().and_then(log_time))
            .unwrap_or_else(|| panic!("the jobmaster logs tm-a's loss:\n{jobmaster}"));
        assert!(
            dead_logged < lost_logged,
            "tm-a saw its task dead at {dead_logged:?}, after the jobmaster declared its \
             session lost at {lost_logged:?}"
        );
    })
    .await;
}

// ----- the JobMaster's RPC-failure path, in-process -----------------------------------------

mod rpc_path {
    use super::daemon_support::{
        DEADLINE, Daemon, TEST_LIMIT, session_id, settings, submit, within,
    };
    use super::*;
    use jobmaster::fake_executor::{Executor, ExecutorConfig};

    /// A fake executor registered with service address `address` (where no fake service
    /// runs), heartbeating every interval; the heartbeat tasks are returned with it.
    async fn registered_at(
        daemon: &Daemon,
        id: &str,
        address: SocketAddr,
    ) -> (Arc<Executor>, [tokio::task::JoinHandle<()>; 2]) {
        let exec = Executor::new(
            ExecutorConfig {
                id: id.to_owned(),
                address: address.to_string(),
                slots: 1,
                session: session_id(),
                free_disk_bytes: 1 << 30,
                rpc_timeout: DEADLINE,
                labels: Default::default(),
            },
            daemon.gateway().await,
        );
        let registered = exec.register().await.expect("registers");
        let tasks = exec
            .start_heartbeats(Duration::from_millis(registered.heartbeat_interval_ms))
            .await
            .expect("heartbeats");
        (exec, tasks)
    }

    fn job() -> String {
        one_task_job("rpc").to_string()
    }

    /// Nothing listens at the executor's address: its process is gone, so two refused
    /// commands lose it at once — long before its (here 10 s) heartbeat timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_commands_lose_an_executor_at_once() {
        within(TEST_LIMIT, async {
            let daemon = Daemon::start(settings(&[
                ("JOBMASTER__HEARTBEAT__TIMEOUT", "10s"),
                ("JOBMASTER__RPC__TIMEOUT", "1s"),
            ]))
            .await;
            let client = daemon.client().await;
            let mut events = watch_events(client.clone()).await;
            let closed = {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                listener.local_addr().expect("address")
            };
            let (_exec, tasks) = registered_at(&daemon, "exec-gone", closed).await;
            let started = Instant::now();
            submit(&client, &job()).await;
            let (loss, _) = event(
                &mut events,
                "exec-gone lost",
                Duration::from_secs(30),
                lost("exec-gone"),
            )
            .await;
            assert!(
                loss.detail.contains("refused"),
                "lost for its refusals: {loss:?}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "lost at once, not by its heartbeat timeout: after {:?}",
                started.elapsed()
            );
            tasks.iter().for_each(|t| t.abort());
        })
        .await;
    }

    /// The executor's address accepts connections but never answers (a partition, a hung
    /// process: its tasks may still run). Two timed-out commands do not lose it: its heartbeats
    /// are answered `reregister` (fence yourself) and no longer count, so it is lost by the
    /// heartbeat timeout — never sooner — unless it registers again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn timed_out_commands_ask_the_executor_to_fence_and_wait_for_the_heartbeat_timeout() {
        within(TEST_LIMIT, async {
            let daemon = Daemon::start(settings(&[
                ("JOBMASTER__HEARTBEAT__TIMEOUT", "3s"),
                ("JOBMASTER__RPC__TIMEOUT", "500ms"),
                ("JOBMASTER__RPC__RETRIES", "0"),
            ]))
            .await;
            let timeout = daemon.settings.heartbeat.timeout;
            let client = daemon.client().await;
            let mut events = watch_events(client.clone()).await;
            // Bound, never accepting: the kernel completes handshakes, nobody answers.
            let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let address = silent.local_addr().expect("address");
            let (exec, tasks) = registered_at(&daemon, "exec-silent", address).await;
            submit(&client, &job()).await;
            let (loss, seen) = event(
                &mut events,
                "exec-silent lost",
                Duration::from_secs(60),
                lost("exec-silent"),
            )
            .await;
            assert!(
                loss.detail.starts_with("no heartbeat for"),
                "lost by the heartbeat timeout, not for its failed commands: {loss:?}"
            );
            assert!(exec.reregister_asks() > 0, "it was asked to fence itself");
            // The second failed deploy reached the threshold; the loss came a heartbeat
            // timeout (less the last heartbeats it still counted) later, not at once.
            let failures: Vec<&WatchEvent> = seen
                .iter()
                .filter(|e| e.kind == "task-state" && e.state == "FAILED")
                .collect();
            let threshold = failures
                .get(1)
                .unwrap_or_else(|| panic!("two failed deploys before the loss: {seen:?}"));
            let after = Duration::from_millis(loss.time_ms.saturating_sub(threshold.time_ms));
            assert!(
                after >= timeout / 2,
                "lost {after:?} after the failed commands reached the threshold"
            );
            tasks.iter().for_each(|t| t.abort());
            drop(silent);
        })
        .await;
    }
}
