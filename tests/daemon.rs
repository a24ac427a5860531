//! The `jobmaster` daemon over real gRPC (issue 4, shell tier): the daemon runs in-process on
//! port-0 listeners with short intervals, TaskExecutors are faked with the generated client and
//! server code (`daemon_support`), and every wait polls with a deadline.

mod daemon_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
use jobmaster::api::v1::task_executor_gateway_client::TaskExecutorGatewayClient;
use jobmaster::api::v1::{
    ExplainFailoverRequest, ExplainFailoverResponse, FailureInfo, GetExceptionHistoryRequest,
    GetExceptionHistoryResponse, GetJobResponse, InjectFailureRequest, RegisterExecutorRequest,
    RegisterExecutorResponse, WatchEvent, WatchEventsRequest, explain_failover_request,
    inject_failure_request,
};
use jobmaster::core::{JobSpec, SpecFormat};
use jobmaster::plan::{Plan, PlanRequest};
use tonic::transport::Channel;
use tonic::{Code, Response, Status, Streaming};

use daemon_support::*;

/// Two streaming pipelines, one per city; all-to-all pipelined edges make each city one
/// pipelined region of four tasks (region 0 Beijing, region 1 Shanghai). Restarts at once.
const TWO_CITIES: &str = r#"
name = "two-cities"
failover = "region"

[restart]
strategy = "fixed-delay"
attempts = 1000
delay = "0s"

[[vertices]]
id = "beijing-source"
parallelism = 2
command = ["my-source", "--city", "beijing"]

[[vertices]]
id = "beijing-orders"
parallelism = 2
command = ["my-orders", "--city", "beijing"]

[[vertices]]
id = "shanghai-source"
parallelism = 2
command = ["my-source", "--city", "shanghai"]

[[vertices]]
id = "shanghai-orders"
parallelism = 2
command = ["my-orders", "--city", "shanghai"]

[[edges]]
from = "beijing-source"
to = "beijing-orders"
pattern = "all-to-all"
exchange = "pipelined"

[[edges]]
from = "shanghai-source"
to = "shanghai-orders"
pattern = "all-to-all"
exchange = "pipelined"
"#;

/// The `[restart]` table of every job here: restart at once, as often as it takes.
const INSTANT_RESTART: &str = r#"[restart]
strategy = "fixed-delay"
attempts = 1000
delay = "0s"
"#;

/// examples/city-orders-cross.toml (pointwise pipelined cities, four regions of two tasks, and
/// a blocking all-to-all edge from Beijing's source to Shanghai's orders), restarting at once.
fn cities_cross() -> String {
    with_instant_restart(include_str!("../examples/city-orders-cross.toml"))
}

/// `spec` with its one `[restart]` table (up to the next table header) replaced by
/// [`INSTANT_RESTART`]; panics when there is no such table to replace.
fn with_instant_restart(spec: &str) -> String {
    let start = spec
        .find("[restart]\n")
        .unwrap_or_else(|| panic!("no [restart] table to replace in {spec}"));
    let end = spec[start..]
        .find("\n[")
        .map_or(spec.len(), |newline| start + newline + 1);
    let swapped = format!("{}{INSTANT_RESTART}\n{}", &spec[..start], &spec[end..]);
    assert_eq!(
        swapped.matches("[restart]").count(),
        1,
        "one [restart] table, replaced: {swapped}"
    );
    assert!(swapped.contains(INSTANT_RESTART), "{swapped}");
    swapped
}

/// A region-failover job `name` restarting at once, with `body` (its vertices and edges).
fn instant_job(name: &str, body: &str) -> String {
    format!("\nname = \"{name}\"\nfailover = \"region\"\n\n{INSTANT_RESTART}{body}")
}

/// One vertex `work` of `parallelism` independent tasks (each its own region).
fn independent(name: &str, parallelism: u32) -> String {
    instant_job(
        name,
        &format!(
            r#"
[[vertices]]
id = "work"
parallelism = {parallelism}
command = ["work"]
"#
        ),
    )
}

fn fake<'a, F: std::borrow::Borrow<FakeExecutor>>(fakes: &'a [F], id: &str) -> &'a FakeExecutor {
    fakes
        .iter()
        .map(F::borrow)
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no fake executor {id:?}"))
}

fn code_of<T: std::fmt::Debug>(result: Result<T, Status>) -> (Code, String) {
    let status = result.expect_err("the call is refused");
    (status.code(), status.message().to_owned())
}

async fn try_exception_history(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
) -> Result<GetExceptionHistoryResponse, Status> {
    let mut c = client.clone();
    bounded(
        "GetExceptionHistory",
        c.get_exception_history(GetExceptionHistoryRequest {
            job_id: job.to_owned(),
        }),
    )
    .await
    .map(Response::into_inner)
}

async fn exception_history(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
) -> GetExceptionHistoryResponse {
    try_exception_history(client, job)
        .await
        .expect("GetExceptionHistory")
}

/// WatchEvents of `job` ("" for every job).
async fn try_watch(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
) -> Result<Streaming<WatchEvent>, Status> {
    let mut c = client.clone();
    bounded(
        "WatchEvents",
        c.watch_events(WatchEventsRequest {
            job_id: job.to_owned(),
        }),
    )
    .await
    .map(Response::into_inner)
}

async fn watch(client: &JobMasterServiceClient<Channel>, job: &str) -> Streaming<WatchEvent> {
    try_watch(client, job).await.expect("WatchEvents")
}

fn executor_target(id: &str) -> inject_failure_request::Target {
    inject_failure_request::Target::Executor(id.to_owned())
}

/// InjectFailure against `target` (of `job`, "" for an executor).
async fn inject_failure(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
    target: inject_failure_request::Target,
    message: &str,
) -> Result<(), Status> {
    let mut c = client.clone();
    bounded(
        "InjectFailure",
        c.inject_failure(InjectFailureRequest {
            job_id: job.to_owned(),
            target: Some(target),
            class: String::new(),
            message: message.to_owned(),
        }),
    )
    .await
    .map(drop)
}

/// ExplainFailover of `target` in `job`.
async fn explain(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
    target: explain_failover_request::Target,
) -> Result<ExplainFailoverResponse, Status> {
    let mut c = client.clone();
    bounded(
        "ExplainFailover",
        c.explain_failover(ExplainFailoverRequest {
            job_id: job.to_owned(),
            target: Some(target),
        }),
    )
    .await
    .map(Response::into_inner)
}

fn task_target(name: &str) -> explain_failover_request::Target {
    explain_failover_request::Target::Task(name.to_owned())
}

/// Reads watch events until one matches `last`; returns all read, that one included.
async fn read_until(
    stream: &mut Streaming<WatchEvent>,
    what: &str,
    last: impl Fn(&WatchEvent) -> bool,
) -> Vec<WatchEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(event))) => {
                let done = last(&event);
                seen.push(event);
                if done {
                    return seen;
                }
            }
            Ok(other) => panic!("the watch stream ended ({other:?}) before {what}; saw {seen:?}"),
            Err(_) => panic!("no {what} within {DEADLINE:?}; saw {seen:?}"),
        }
    }
}

// ----- 1. targeted cancel and redeploy ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_task_failure_cancels_and_redeploys_only_its_region() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        // Beijing (region 0) fills A and B; Shanghai waits for slots and lands on C and D.
        let a = FakeExecutor::start(&daemon, "exec-a", 2).await;
        let b = FakeExecutor::start(&daemon, "exec-b", 2).await;
        let job = submit(&client, TWO_CITIES).await;
        wait_running(&client, &job, "beijing").await;
        let c = FakeExecutor::start(&daemon, "exec-c", 2).await;
        let d = FakeExecutor::start(&daemon, "exec-d", 2).await;
        let fakes = [&a, &b, &c, &d];
        let before = wait_all_running(&client, &job).await;
        let beijing = |name: &str| name.starts_with("beijing");
        for t in &before.tasks {
            let hosts = if beijing(&t.name) {
                ["exec-a", "exec-b"]
            } else {
                ["exec-c", "exec-d"]
            };
            assert!(
                hosts.contains(&t.executor.as_str()),
                "placement: {}",
                describe(&before)
            );
            assert_eq!(t.attempt, 0);
        }
        let marks: Vec<usize> = fakes.iter().map(|f| f.call_count()).collect();

        let failed = task(&before, "beijing-orders#1");
        fake(&fakes, &failed.executor)
            .fail(
                &attempt_ref(&job, "beijing-orders#1", 0),
                "recoverable",
                "exit code 1",
            )
            .await
            .expect("the failure report is accepted");

        let after = wait_job(&client, &job, "Beijing redeployed as attempt 1", |j| {
            j.state == "RUNNING"
                && j.tasks.iter().all(|t| {
                    t.state == "RUNNING" && t.attempt == if beijing(&t.name) { 1 } else { 0 }
                })
        })
        .await;
        // Let a few heartbeats of every executor pass through the JobMaster after the
        // failover, so a stray call would have been made by now.
        for f in fakes {
            f.wait_heartbeats(3).await;
        }

        let mut cancels = BTreeSet::new();
        let mut submits = BTreeSet::new();
        for (f, &mark) in fakes.iter().zip(&marks) {
            for call in f.calls_since(mark) {
                let Some((j, task, attempt)) = call.target() else {
                    panic!("{}: no partition to release: {call:?}", f.id);
                };
                assert_eq!(j, job);
                assert_eq!(
                    call.epoch(),
                    f.epoch,
                    "commands carry the JobMaster's epoch"
                );
                let set = match call.command() {
                    Some(Command::Submit) => &mut submits,
                    _ => &mut cancels,
                };
                set.insert((task.to_owned(), attempt));
            }
        }
        let set = |names: &[&str], attempt: u32| -> BTreeSet<(String, u32)> {
            names.iter().map(|n| ((*n).to_owned(), attempt)).collect()
        };
        assert_eq!(
            cancels,
            set(
                &["beijing-orders#0", "beijing-source#0", "beijing-source#1"],
                0
            ),
            "only the failed task's region partners are cancelled"
        );
        assert_eq!(
            submits,
            set(
                &[
                    "beijing-orders#0",
                    "beijing-orders#1",
                    "beijing-source#0",
                    "beijing-source#1"
                ],
                1
            ),
            "the region's tasks are redeployed as attempt 1"
        );
        // Shanghai's executors got nothing, and Shanghai's tasks did not move.
        assert_eq!(c.calls_since(marks[2]), vec![]);
        assert_eq!(d.calls_since(marks[3]), vec![]);
        for t in before.tasks.iter().filter(|t| !beijing(&t.name)) {
            assert_eq!(task(&after, &t.name), t, "{} is untouched", t.name);
        }
        for t in after.tasks.iter().filter(|t| beijing(&t.name)) {
            assert!(
                ["exec-a", "exec-b"].contains(&t.executor.as_str()),
                "{}",
                describe(&after)
            );
        }
        let counters = after.counters.expect("counters");
        assert_eq!((counters.failovers, counters.tasks_restarted), (1, 4));
    })
    .await;
}

// ----- 2./3. failure detection --------------------------------------------------------------

/// Starts A, B (the job's two tasks, one each) and a spare C; returns the job and the
/// executor hosting work#0.
async fn two_tasks_and_a_spare(
    daemon: &Daemon,
    client: &JobMasterServiceClient<Channel>,
) -> (String, [FakeExecutor; 3], String) {
    let a = FakeExecutor::start(daemon, "exec-a", 2).await;
    let b = FakeExecutor::start(daemon, "exec-b", 2).await;
    let job = submit(client, &independent("pair", 2)).await;
    let running = wait_all_running(client, &job).await;
    let c = FakeExecutor::start(daemon, "exec-c", 2).await;
    let victim = task(&running, "work#0").executor.clone();
    (job, [a, b, c], victim)
}

/// Waits until executor `id` is listed by ListExecutors (`listed`) or no longer is; returns
/// when that was seen, and the ids listed then.
async fn wait_listed(
    client: &JobMasterServiceClient<Channel>,
    id: &str,
    listed: bool,
) -> (Instant, Vec<String>) {
    let what = if listed { "listed" } else { "gone from" };
    eventually(&format!("{id} {what} ListExecutors"), DEADLINE, || async {
        let ids = executor_ids(client).await;
        if ids.iter().any(|e| e == id) == listed {
            Ok((Instant::now(), ids))
        } else {
            Err(format!("{ids:?}"))
        }
    })
    .await
}

async fn wait_gone(client: &JobMasterServiceClient<Channel>, id: &str) -> Instant {
    wait_listed(client, id, false).await.0
}

/// Waits until the job is RUNNING and `name` runs again, as attempt 1, on an executor `on`
/// accepts.
async fn wait_rerun(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
    name: &str,
    on: impl Fn(&str) -> bool,
) -> GetJobResponse {
    wait_job(client, job, &format!("{name} running as attempt 1"), |j| {
        let t = task(j, name);
        j.state == "RUNNING" && t.state == "RUNNING" && t.attempt == 1 && on(&t.executor)
    })
    .await
}

/// Waits until every task whose name starts with `prefix` is RUNNING.
async fn wait_running(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
    prefix: &str,
) -> GetJobResponse {
    wait_job(client, job, &format!("{prefix}* running"), |j| {
        j.tasks
            .iter()
            .filter(|t| t.name.starts_with(prefix))
            .all(|t| t.state == "RUNNING")
    })
    .await
}

async fn wait_canceled(client: &JobMasterServiceClient<Channel>, job: &str) -> GetJobResponse {
    wait_job(client, job, "CANCELED", |j| j.state == "CANCELED").await
}

/// The root failure of the job's oldest exception history entry.
async fn first_root(client: &JobMasterServiceClient<Channel>, job: &str) -> FailureInfo {
    exception_history(client, job).await.entries[0]
        .root
        .clone()
        .expect("root failure")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_heartbeat_stream_is_detected_well_under_the_heartbeat_timeout() {
    within(TEST_LIMIT, async {
        let timeout = Duration::from_secs(5);
        let daemon = Daemon::start(settings(&[("JOBMASTER__HEARTBEAT__TIMEOUT", "5s")])).await;
        assert_eq!(daemon.settings.heartbeat.timeout, timeout);
        let client = daemon.client().await;
        let (job, fakes, victim) = two_tasks_and_a_spare(&daemon, &client).await;

        let killed = Instant::now();
        fake(&fakes, &victim).kill();
        let gone = wait_gone(&client, &victim).await;
        let j = wait_rerun(&client, &job, "work#0", |e| e != victim).await;
        let redeployed = Instant::now();
        let bound = Duration::from_secs(2);
        assert!(
            gone - killed < bound && redeployed - killed < bound,
            "stream closed -> lost in {:?}, redeployed in {:?}; heartbeat timeout {timeout:?}",
            gone - killed,
            redeployed - killed
        );
        assert_eq!(task(&j, "work#1").attempt, 0, "the other task is untouched");

        let root = first_root(&client, &job).await;
        assert_eq!(
            (
                root.task.as_str(),
                root.class.as_str(),
                root.executor.as_str()
            ),
            ("work#0", "executor-lost", victim.as_str())
        );
        assert!(
            root.message.contains("heartbeat stream closed"),
            "{}",
            root.message
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_executor_with_an_open_stream_is_detected_by_the_heartbeat_timeout() {
    within(TEST_LIMIT, async {
        let timeout = Duration::from_secs(1);
        let daemon = Daemon::start(settings(&[("JOBMASTER__HEARTBEAT__TIMEOUT", "1s")])).await;
        assert_eq!(daemon.settings.heartbeat.timeout, timeout);
        let client = daemon.client().await;
        let (job, fakes, victim) = two_tasks_and_a_spare(&daemon, &client).await;

        let last_heartbeat = fake(&fakes, &victim).pause_heartbeats();
        let gone = wait_gone(&client, &victim).await;
        let detected = gone - last_heartbeat;
        assert!(
            detected >= timeout,
            "declared lost {detected:?} after its last heartbeat, before the {timeout:?} timeout"
        );
        assert!(
            detected < timeout + Duration::from_secs(2),
            "declared lost only {detected:?} after its last heartbeat (timeout {timeout:?})"
        );
        let j = wait_rerun(&client, &job, "work#0", |e| e != victim).await;
        assert_eq!(task(&j, "work#1").attempt, 0, "the other task is untouched");
        let root = first_root(&client, &job).await;
        assert_eq!(root.class, "executor-lost");
        assert!(
            root.message.contains("no heartbeat for"),
            "{}",
            root.message
        );
    })
    .await;
}

// ----- 4. fencing and re-registration -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_lost_executor_is_fenced_and_registers_again() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let a = FakeExecutor::start(&daemon, "exec-a", 2).await;
        let b = FakeExecutor::start(&daemon, "exec-b", 2).await;
        let job = submit(&client, &independent("pair", 2)).await;
        let running = wait_all_running(&client, &job).await;
        let on_a = running
            .tasks
            .iter()
            .find(|t| t.executor == "exec-a")
            .expect("a task runs on A")
            .clone();

        inject_failure(&client, "", executor_target("exec-a"), "")
            .await
            .expect("InjectFailure executor");
        wait_gone(&client, "exec-a").await;
        // Its task moves to B.
        wait_rerun(&client, &job, &on_a.name, |e| e == "exec-b").await;

        // A still heartbeats: it is told to register again, and its reports are refused.
        a.wait_reregister_asked().await;
        let (code, message) = code_of(a.report(&attempt_ref(&job, &on_a.name, 0), "RUNNING").await);
        assert_eq!(code, Code::FailedPrecondition, "{message}");
        assert_eq!(get_job(&client, &job).await.state, "RUNNING");

        // A registers afresh with a new session, and is not told again.
        a.reregister().await.expect("re-registration is accepted");
        wait_listed(&client, "exec-a", true).await;
        a.wait_heartbeats(2).await;
        let asks = a.reregister_asks();
        a.wait_heartbeats(3).await;
        assert_eq!(a.reregister_asks(), asks, "the new session is accepted");

        // It gets work again: A has the most free slots, so a new job's task lands there.
        let mark = a.call_count();
        let second = submit(&client, &independent("solo", 1)).await;
        let j = wait_all_running(&client, &second).await;
        assert_eq!(task(&j, "work#0").executor, "exec-a", "{}", describe(&j));
        assert!(
            a.calls_since(mark)
                .iter()
                .any(|c| c.is_submit_of(&second, "work#0", 0)),
            "{:?}",
            a.calls_since(mark)
        );
        drop(b);
    })
    .await;
}

// ----- 5. stale attempts --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_attempt_update_is_refused_changes_nothing_and_is_cancelled() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let a = FakeExecutor::start(&daemon, "exec-a", 2).await;
        let b = FakeExecutor::start(&daemon, "exec-b", 2).await;
        let fakes = [&a, &b];
        let job = submit(&client, &independent("pair", 2)).await;
        let running = wait_all_running(&client, &job).await;
        let host = fake(&fakes, &task(&running, "work#0").executor);
        let stale = attempt_ref(&job, "work#0", 0);
        host.fail(&stale, "recoverable", "crashed")
            .await
            .expect("failure accepted");
        let before = wait_rerun(&client, &job, "work#0", |_| true).await;
        let stale_cancels = |f: &FakeExecutor| {
            f.calls()
                .iter()
                .filter(|c| c.is_cancel_of(&job, "work#0", 0))
                .count()
        };
        assert_eq!(stale_cancels(host), 0);

        // The old attempt claims to run: refused, and the executor is told to cancel it.
        let (code, message) = code_of(host.report(&stale, "RUNNING").await);
        assert_eq!(code, Code::FailedPrecondition, "{message}");
        assert!(message.contains("stale"), "{message}");
        wait_cancel(host, &job, "work#0", 0).await;
        // A stale terminal report is refused too (nothing to cancel).
        let (code, message) = code_of(host.report(&stale, "FAILED").await);
        assert_eq!(code, Code::FailedPrecondition, "{message}");

        host.wait_heartbeats(2).await;
        let after = get_job(&client, &job).await;
        assert_eq!(after, before, "a stale report changes nothing");
        assert_eq!(stale_cancels(host), 1);
    })
    .await;
}

// ----- 6. ExplainFailover and jmctl plan ----------------------------------------------------

fn plan_of(spec: &str, task: &str) -> ExplainFailoverResponse {
    let spec = JobSpec::parse(spec, SpecFormat::Toml).expect("spec parses");
    let plan = Plan::compute(
        &spec,
        &PlanRequest {
            fail: vec![task.to_owned()],
            ..PlanRequest::default()
        },
    )
    .expect("plan");
    let restart = plan.restart.as_ref().expect("a restart set");
    let name = |t: &jobmaster::core::TaskId| plan.graph.task_name(*t).to_string();
    ExplainFailoverResponse {
        strategy: plan.strategy.name().to_owned(),
        restart: restart.tasks.iter().map(name).collect(),
        reasons: Vec::new(),
    }
}

/// (region, reason) of each entry, in order.
fn reasons(r: &ExplainFailoverResponse) -> Vec<(Option<u32>, String)> {
    r.reasons
        .iter()
        .map(|e| (e.region, e.reason.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_failover_agrees_with_jmctl_plan_on_the_same_spec() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let a = FakeExecutor::start(&daemon, "exec-a", 16).await;
        let b = FakeExecutor::start(&daemon, "exec-b", 16).await;
        let fakes = [&a, &b];

        let cities = submit(&client, TWO_CITIES).await;
        wait_all_running(&client, &cities).await;
        // The cross job's Shanghai regions start once Beijing's sources finish (blocking).
        let cross_spec = cities_cross();
        let cross = submit(&client, &cross_spec).await;
        let j = wait_running(&client, &cross, "beijing").await;
        for name in ["beijing-source#0", "beijing-source#1"] {
            fake(&fakes, &task(&j, name).executor)
                .finish(&attempt_ref(&cross, name, 0))
                .await
                .expect("FINISHED accepted");
        }
        wait_job(&client, &cross, "everything deployed", |j| {
            j.state == "RUNNING"
                && j.tasks.iter().all(|t| {
                    t.state
                        == if t.name.starts_with("beijing-source") {
                            "FINISHED"
                        } else {
                            "RUNNING"
                        }
                })
        })
        .await;

        let mut compared = 0;
        for (job, spec) in [(&cities, TWO_CITIES), (&cross, cross_spec.as_str())] {
            let names: Vec<String> = get_job(&client, job)
                .await
                .tasks
                .into_iter()
                .map(|t| t.name)
                .collect();
            for name in names {
                let live = explain(&client, job, task_target(&name))
                    .await
                    .expect("ExplainFailover");
                let plan = plan_of(spec, &name);
                assert_eq!(live.strategy, plan.strategy, "{name}");
                assert_eq!(live.restart, plan.restart, "restart set of {name} in {job}");
                assert_eq!(live.reasons[0].failed_task, name);
                compared += 1;
            }
        }
        assert_eq!(compared, 16);

        // And the jmctl binary itself, reasons included, on one cross-region case.
        let live = explain(&client, &cross, task_target("beijing-orders#1"))
            .await
            .expect("ExplainFailover");
        let dir = std::env::temp_dir().join(format!("jobmaster-daemon-test-{}", session_id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("cross.toml");
        std::fs::write(&file, &cross_spec).expect("write spec");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_jmctl"))
            .args(["--output", "json", "plan"])
            .arg(&file)
            .args(["--fail", "beijing-orders#1"])
            .output()
            .expect("jmctl runs");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let restart: Vec<String> = v["restart"]
            .as_array()
            .expect("restart")
            .iter()
            .map(|s| s.as_str().expect("name").to_owned())
            .collect();
        assert_eq!(live.restart, restart);
        let plan_reasons: Vec<(Option<u32>, String)> = v["reasons"]
            .as_array()
            .expect("reasons")
            .iter()
            .map(|r| {
                (
                    r["region"].as_u64().map(|n| n as u32),
                    r["reason"].as_str().expect("reason").to_owned(),
                )
            })
            .collect();
        assert_eq!(reasons(&live), plan_reasons);
        assert_eq!(
            live.restart.len(),
            6,
            "Beijing region 1 and both Shanghai regions"
        );
    })
    .await;
}

// ----- 7. health and reflection -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let channel = daemon.channel().await;
        let health = HealthClient::new(channel.clone());
        let check = |service: &str| {
            let mut health = health.clone();
            let service = service.to_owned();
            async move {
                bounded("health check", health.check(HealthCheckRequest { service })).await
            }
        };
        for service in [
            "",
            "jobmaster.v1.JobMasterService",
            "jobmaster.v1.TaskExecutorGateway",
        ] {
            let answer = check(service)
                .await
                .unwrap_or_else(|s| panic!("health of {service:?}: {s:?}"))
                .into_inner();
            assert_eq!(answer.status(), ServingStatus::Serving, "{service:?}");
        }
        let (code, _) = code_of(check("no.such.Service").await);
        assert_eq!(code, Code::NotFound);

        let mut reflection = ServerReflectionClient::new(channel);
        let ask = |m: MessageRequest| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        };
        let requests = tokio_stream::iter(vec![
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "jobmaster.v1.TaskExecutorService".into(),
            )),
        ]);
        let mut answers = bounded("reflection", reflection.server_reflection_info(requests))
            .await
            .expect("reflection answers")
            .into_inner();
        let mut next = async || -> ServerReflectionResponse {
            bounded("reflection answer", answers.message())
                .await
                .expect("reflection stream")
                .expect("an answer")
        };
        let Some(MessageResponse::ListServicesResponse(list)) = next().await.message_response
        else {
            panic!("ListServices is answered with a service list");
        };
        assert_lists_our_services(list.service.into_iter().map(|s| s.name));
        let Some(MessageResponse::FileDescriptorResponse(files)) = next().await.message_response
        else {
            panic!("FileContainingSymbol is answered with descriptors");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    })
    .await;
}

/// A reflection ListServices answer names our services and health.
fn assert_lists_our_services(names: impl Iterator<Item = String>) {
    let services: BTreeSet<String> = names.collect();
    for expected in [
        "jobmaster.v1.JobMasterService",
        "jobmaster.v1.TaskExecutorGateway",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(expected), "{expected} in {services:?}");
    }
}

/// grpcio's reflection client and older grpcurl speak only v1alpha.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1alpha_lists_the_services_for_older_clients() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let mut reflection = ServerReflectionClient::new(daemon.channel().await);
        let requests = tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]);
        let mut answers = bounded("reflection", reflection.server_reflection_info(requests))
            .await
            .expect("v1alpha reflection answers")
            .into_inner();
        let answer = bounded("reflection answer", answers.message())
            .await
            .expect("reflection stream")
            .expect("an answer");
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("ListServices is answered with a service list");
        };
        assert_lists_our_services(list.service.into_iter().map(|s| s.name));
    })
    .await;
}

// ----- 8. bad input -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_spec_is_invalid_argument_naming_the_field() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let bad_pattern =
            TWO_CITIES.replacen("pattern = \"all-to-all\"", "pattern = \"broadcast\"", 1);
        let cases = [
            (bad_pattern.as_str(), "", "edges[0].pattern"),
            (
                r#"{"name": "j", "vertices": [{"id": "a", "parallelism": 0, "command": ["x"]}]}"#,
                "json",
                "vertices[0].parallelism",
            ),
            ("name = \"j\"\n", "toml", "vertices"),
            ("name = ", "toml", ""),
        ];
        for (spec, format, field) in cases {
            let (code, message) = code_of(try_submit(&client, spec, format).await);
            assert_eq!(code, Code::InvalidArgument, "{message}");
            assert!(message.contains(field), "{field:?} in {message:?}");
        }
        let (code, message) = code_of(try_submit(&client, TWO_CITIES, "yaml").await);
        assert_eq!(code, Code::InvalidArgument, "{message}");
        assert!(message.contains("format"), "{message}");
        // Nothing was created, and the daemon still serves.
        let jobs = list_jobs(&client).await;
        assert!(jobs.is_empty(), "{jobs:?}");
        submit(&client, TWO_CITIES).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_not_found_and_malformed_job_ids_invalid_argument() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let unknown = "00000000000000ff";

        let (code, message) = code_of(try_get_job(&client, unknown).await);
        assert_eq!(code, Code::NotFound, "{message}");
        let (code, _) = code_of(try_cancel_job(&client, unknown).await);
        assert_eq!(code, Code::NotFound);
        let (code, _) = code_of(try_exception_history(&client, unknown).await);
        assert_eq!(code, Code::NotFound);
        let (code, _) = code_of(try_watch(&client, unknown).await);
        assert_eq!(code, Code::NotFound);
        let (code, _) = code_of(inject_failure(&client, "", executor_target("ghost"), "").await);
        assert_eq!(code, Code::NotFound);

        for bad in ["", "nope", "0123456789abcdeg", "123"] {
            let (code, message) = code_of(try_get_job(&client, bad).await);
            assert_eq!(code, Code::InvalidArgument, "{bad:?}: {message}");
            assert!(message.contains("job_id"), "{message}");
        }

        // Unknown task of a known job.
        let job = submit(&client, &independent("j", 1)).await;
        let (code, message) = code_of(explain(&client, &job, task_target("nope#0")).await);
        assert_eq!(code, Code::NotFound, "{message}");
        let ghost = explain_failover_request::Target::Executor("ghost".into());
        let (code, _) = code_of(explain(&client, &job, ghost).await);
        assert_eq!(code, Code::NotFound);
        assert_eq!(get_job(&client, &job).await.job_id, job);
    })
    .await;
}

/// Executor labels place executors in failure domains: a label key that is empty or not a
/// word is refused at registration, naming the label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refuses_malformed_label_keys() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let mut gateway = daemon.gateway().await;
        for bad in ["", "my zone"] {
            let request = RegisterExecutorRequest {
                executor_id: "tm-1".into(),
                address: "127.0.0.1:1".into(),
                slots: 2,
                session_id: session_id(),
                free_disk_bytes: 0,
                labels: [(bad.to_owned(), "a".to_owned())].into_iter().collect(),
                attempts: Vec::new(),
                partitions: Vec::new(),
            };
            let (code, message) = code_of(gateway.register_executor(request).await);
            assert_eq!(code, Code::InvalidArgument, "{bad:?}: {message}");
            assert!(message.contains(&format!("labels[{bad:?}]")), "{message}");
        }
        assert!(executor_ids(&daemon.client().await).await.is_empty());
    })
    .await;
}

/// The API documents RESOURCE_EXHAUSTED for a request over `max_decoding_message_size`
/// (tonic itself says OUT_OF_RANGE; the daemon remaps it).
fn is_oversize_refusal(code: Code, message: &str) -> bool {
    code == Code::ResourceExhausted && message.contains("too large")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_refused_and_the_daemon_keeps_serving() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[(
            "JOBMASTER__SERVER__MAX_MESSAGE_BYTES",
            "4096",
        )]))
        .await;
        assert_eq!(daemon.settings.server.max_message_bytes, 4096);
        let client = daemon.client().await;
        let big = format!("# {}\n{TWO_CITIES}", "x".repeat(8192));
        let (code, message) = code_of(try_submit(&client, &big, "toml").await);
        assert!(
            is_oversize_refusal(code, &message),
            "oversized SubmitJob answered {code:?}: {message}"
        );
        let jobs = list_jobs(&client).await;
        assert!(jobs.is_empty(), "{jobs:?}");
        // Under the limit it works, on the same connection.
        submit(&client, TWO_CITIES).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_whose_answer_is_lost_is_retried_and_the_task_runs_without_a_failover() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[("JOBMASTER__RPC__RETRIES", "1")])).await;
        let client = daemon.client().await;
        let a = FakeExecutor::start(&daemon, "exec-a", 2).await;
        a.lose_submit_answers(1);
        let job = submit(&client, &independent("solo", 2)).await;
        // The first call started the tasks; its answer was lost, so the batch goes again.
        eventually("the batch sent again", DEADLINE, || async {
            let batches = a.batches();
            let submits = batches
                .iter()
                .filter(|b| b.command() == Command::Submit && b.batched().is_some())
                .count();
            if submits == 2 {
                Ok(())
            } else {
                Err(format!("{batches:?}"))
            }
        })
        .await;
        // The retry's answer arrived: nothing failed over.
        a.wait_heartbeats(2).await;
        let j = wait_all_running(&client, &job).await;
        assert!(
            j.tasks.iter().all(|t| t.attempt == 0),
            "no task restarted: {:?}",
            j.tasks
        );
        let history = exception_history(&client, &job).await;
        assert!(history.entries.is_empty(), "{:?}", history.entries);
    })
    .await;
}

/// RegisterExecutor under `f`'s id and address, with two slots and `session`.
async fn register_as(
    gateway: &TaskExecutorGatewayClient<Channel>,
    f: &FakeExecutor,
    session: String,
) -> Result<Response<RegisterExecutorResponse>, Status> {
    let mut gateway = gateway.clone();
    bounded(
        "RegisterExecutor",
        gateway.register_executor(RegisterExecutorRequest {
            executor_id: f.id.clone(),
            address: f.addr.to_string(),
            slots: 2,
            session_id: session,
            free_disk_bytes: 0,
            labels: Default::default(),
            attempts: Vec::new(),
            partitions: Vec::new(),
        }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_declared_lost_cannot_register_again_but_a_new_one_can() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let (_job, fakes, victim) = two_tasks_and_a_spare(&daemon, &client).await;
        let lost = fake(&fakes, &victim);
        // Its stream closes: declared lost, its attempts fail over.
        lost.kill();
        wait_gone(&client, &victim).await;

        let gateway = daemon.gateway().await;
        // The same session (an executor that kept its attempts through the outage): refused.
        let (code, message) = code_of(register_as(&gateway, lost, lost.session()).await);
        assert_eq!(code, Code::FailedPrecondition, "{message}");
        assert!(message.contains("declared lost"), "{message}");
        let executors = executor_ids(&client).await;
        assert!(
            !executors.contains(&victim),
            "the refused session is not registered: {executors:?}"
        );
        // A new session (attempts killed): accepted.
        register_as(&gateway, lost, format!("{}-new", lost.session()))
            .await
            .expect("a new session registers");
        let executors = executor_ids(&client).await;
        assert!(executors.contains(&victim), "{executors:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_registration_with_a_new_session_fences_the_old_one() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let old = FakeExecutor::start(&daemon, "exec-a", 2).await;
        let job = submit(&client, &independent("solo", 1)).await;
        wait_all_running(&client, &job).await;

        // The same session again is a retried registration: a no-op.
        register_as(&daemon.gateway().await, &old, old.session())
            .await
            .expect("a retried registration is accepted");
        old.wait_heartbeats(2).await;
        let j = get_job(&client, &job).await;
        assert_eq!(
            (task(&j, "work#0").attempt, j.state.as_str()),
            (0, "RUNNING")
        );
        old.report(&attempt_ref(&job, "work#0", 0), "RUNNING")
            .await
            .expect("the session is still valid");

        // A new process with the same id: the old session is fenced off.
        let new = FakeExecutor::start(&daemon, "exec-a", 2).await;
        assert_ne!(new.session(), old.session());
        let (code, message) = code_of(old.report(&attempt_ref(&job, "work#0", 0), "RUNNING").await);
        assert_eq!(code, Code::FailedPrecondition, "{message}");
        old.wait_reregister_asked().await;
        // Its attempt failed over and runs again, on the new process.
        let j = wait_rerun(&client, &job, "work#0", |e| e == "exec-a").await;
        assert!(
            new.held().iter().any(|a| a.attempt == 1),
            "{}",
            describe(&j)
        );
        let executors = executors(&client).await;
        assert_eq!(executors.len(), 1, "{executors:?}");
        assert_eq!(executors[0].address, new.addr.to_string());
        assert_eq!(
            reasons_of_history(&client, &job).await,
            vec!["executor-lost"]
        );
    })
    .await;
}

async fn reasons_of_history(client: &JobMasterServiceClient<Channel>, job: &str) -> Vec<String> {
    exception_history(client, job)
        .await
        .entries
        .into_iter()
        .map(|e| e.root.map(|r| r.class).unwrap_or_default())
        .collect()
}

// ----- 9. events, exception history, cancel -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_streams_one_jobs_events_and_exception_history_lists_the_failure() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let a = FakeExecutor::start(&daemon, "exec-a", 8).await;
        let first = submit(&client, &independent("first", 2)).await;
        let second = submit(&client, &independent("second", 2)).await;
        wait_all_running(&client, &first).await;
        wait_all_running(&client, &second).await;

        let mut mine = watch(&client, &first).await;
        let mut all = watch(&client, "").await;

        // The second job fails and recovers first; then an executor joins; then the first
        // job fails. The filtered stream must show only the first job's events (and the
        // executor's).
        a.fail(
            &attempt_ref(&second, "work#0", 0),
            "recoverable",
            "other job",
        )
        .await
        .expect("accepted");
        wait_job(&client, &second, "second recovered", |j| {
            j.state == "RUNNING" && task(j, "work#0").state == "RUNNING"
        })
        .await;
        let _b = FakeExecutor::start(&daemon, "exec-b", 1).await;
        a.fail(
            &attempt_ref(&first, "work#1", 0),
            "recoverable",
            "disk on fire",
        )
        .await
        .expect("accepted");

        let rerun = |e: &WatchEvent| {
            e.kind == "task-state" && e.task == "work#1" && e.attempt == 1 && e.state == "RUNNING"
        };
        let seen = read_until(&mut mine, "work#1 attempt 1 RUNNING", |e| {
            e.job_id == first && rerun(e)
        })
        .await;
        assert!(
            seen.iter()
                .all(|e| e.job_id == first || e.job_id.is_empty()),
            "only the first job's events: {seen:?}"
        );
        assert!(
            seen.iter()
                .any(|e| e.kind == "executor-registered" && e.executor == "exec-b"),
            "executor events are included: {seen:?}"
        );
        let has = |pred: &dyn Fn(&WatchEvent) -> bool| seen.iter().any(pred);
        assert!(has(&|e| e.kind == "task-state"
            && e.task == "work#1"
            && e.attempt == 0
            && e.state == "FAILED"));
        assert!(has(&|e| e.kind == "restart-scheduled"
            && e.tasks == ["work#1"]
            && e.detail.contains("disk on fire")));
        // A regional failover leaves the job RUNNING (as in Flink): no job-state change.
        assert!(
            !has(&|e| e.kind == "job-state"),
            "the job stays RUNNING: {seen:?}"
        );
        // The unfiltered stream has both jobs.
        let everything = read_until(&mut all, "first job's rerun", |e| {
            e.job_id == first && rerun(e)
        })
        .await;
        assert!(
            everything
                .iter()
                .any(|e| e.job_id == second && e.kind == "restart-scheduled"),
            "{everything:?}"
        );

        // The exception history lists the failure and what it restarted.
        let history = exception_history(&client, &first).await;
        assert_eq!(history.entries.len(), 1, "{history:?}");
        let entry = &history.entries[0];
        let root = entry.root.clone().expect("root");
        assert_eq!(
            (
                root.task.as_str(),
                root.attempt,
                root.executor.as_str(),
                root.class.as_str(),
                root.message.as_str()
            ),
            ("work#1", 0, "exec-a", "recoverable", "disk on fire")
        );
        assert_eq!(entry.restarted, ["work#1"]);
        assert!(!history.truncated);
        let (code, _) = code_of(try_exception_history(&client, "bad").await);
        assert_eq!(code, Code::InvalidArgument);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_job_ends_canceled_once_the_executors_confirm() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let a = FakeExecutor::start(&daemon, "exec-a", 2).await;
        let b = FakeExecutor::start(&daemon, "exec-b", 2).await;
        let fakes = [&a, &b];
        let job = submit(&client, &independent("doomed", 2)).await;
        let other = submit(&client, &independent("bystander", 1)).await;
        let running = wait_all_running(&client, &job).await;
        wait_all_running(&client, &other).await;
        let mut events = watch(&client, &job).await;
        for f in fakes {
            f.set_auto_cancel(false);
        }

        let answer = cancel_job(&client, &job).await;
        assert_eq!(answer.state, "CANCELLING");
        for t in &running.tasks {
            wait_cancel(fake(&fakes, &t.executor), &job, &t.name, 0).await;
        }
        // Not confirmed yet: still cancelling.
        for f in fakes {
            f.wait_heartbeats(2).await;
        }
        assert_eq!(get_job(&client, &job).await.state, "CANCELLING");

        for f in fakes {
            f.confirm_cancels().await;
        }
        let j = wait_canceled(&client, &job).await;
        assert!(
            j.tasks.iter().all(|t| t.state == "CANCELED"),
            "{}",
            describe(&j)
        );
        read_until(&mut events, "job-state CANCELED", |e| {
            e.kind == "job-state" && e.state == "CANCELED"
        })
        .await;
        // Cancelling it again is idempotent (issue 13): OK, and it stays CANCELED.
        let again = try_cancel_job(&client, &job).await;
        assert!(again.is_ok(), "{again:?}");
        assert_eq!(get_job(&client, &job).await.state, "CANCELED");
        // The other job is untouched.
        let o = get_job(&client, &other).await;
        assert_eq!(
            (o.state.as_str(), task(&o, "work#0").attempt),
            ("RUNNING", 0)
        );
    })
    .await;
}

// ----- 11. command dispatch: order, batches, losses decided by the core --------------------

/// source(4) → sink(4), all-to-all pipelined: one region of eight tasks; restarts at once.
fn one_region(name: &str) -> String {
    instant_job(
        name,
        r#"
[[vertices]]
id = "source"
parallelism = 4
command = ["source"]

[[vertices]]
id = "sink"
parallelism = 4
command = ["sink"]

[[edges]]
from = "source"
to = "sink"
pattern = "all-to-all"
exchange = "pipelined"
"#,
    )
}

async fn inject_task_failure(client: &JobMasterServiceClient<Channel>, job: &str, task: &str) {
    let target = inject_failure_request::Target::Task(task.to_owned());
    inject_failure(client, job, target, "drill")
        .await
        .unwrap_or_else(|s| panic!("InjectFailure {task} of {job}: {s:?}"));
}

/// Checks that every Cancel the executor received came after the Submit of the same attempt;
/// returns how many cancels there were.
fn assert_submit_before_cancel(f: &FakeExecutor) -> usize {
    let calls = f.calls();
    let mut submitted = BTreeSet::new();
    let mut cancels = 0;
    for (i, call) in calls.iter().enumerate() {
        match call {
            Call::Submit {
                job, task, attempt, ..
            } => {
                submitted.insert((job.clone(), task.clone(), *attempt));
            }
            Call::Cancel {
                job, task, attempt, ..
            } => {
                cancels += 1;
                assert!(
                    submitted.contains(&(job.clone(), task.clone(), *attempt)),
                    "{}: call {i} cancels {task} attempt {attempt} of job {job} before its submit \
                     arrived; the calls before it: {:?}",
                    f.id,
                    &calls[i.saturating_sub(16)..i]
                );
            }
            Call::Release { .. } => {}
        }
    }
    cancels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_never_reaches_an_executor_before_its_attempts_submit() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let a = FakeExecutor::start(&daemon, "exec-a", 8).await;
        let b = FakeExecutor::start(&daemon, "exec-b", 8).await;
        let fakes = [&a, &b];
        // Slow executors: a cancel sent while its submit is still being handled would be
        // handled (and recorded) first.
        for f in fakes {
            f.set_submit_delay(Duration::from_millis(50));
        }
        for round in 0..3 {
            let job = submit(&client, &one_region(&format!("race-{round}"))).await;
            // Every task was just deployed: the failure cancels the whole region right after
            // the submits, and the region is redeployed as attempt 1 once they are confirmed.
            inject_task_failure(&client, &job, "source#0").await;
            wait_job(&client, &job, "the region redeployed as attempt 1", |j| {
                j.tasks
                    .iter()
                    .all(|t| t.attempt == 1 && !t.executor.is_empty())
            })
            .await;
            // And cancelling the job right away cancels attempts still being deployed.
            cancel_job(&client, &job).await;
            wait_canceled(&client, &job).await;
        }
        let mut cancels = 0;
        for f in fakes {
            cancels += assert_submit_before_cancel(f);
        }
        // Per round: the eight attempts 0, then the eight attempts 1.
        assert!(cancels >= 3 * 16, "only {cancels} cancels were made");
    })
    .await;
}

/// Checks that after `marks` (a call count and a batch count) `f` got `command` for attempt 0
/// of each of the `expected` tasks of `job` exactly once, with the JobMaster's epoch, in fewer
/// batch calls than tasks and no unary one.
fn assert_each_once_in_batches(
    f: &FakeExecutor,
    marks: (usize, usize),
    command: Command,
    job: &str,
    expected: &BTreeSet<String>,
) {
    let tasks: Vec<String> = f
        .calls_since(marks.0)
        .iter()
        .filter(|c| c.command() == Some(command))
        .filter_map(|c| match c.target() {
            Some((j, task, 0)) if j == job => {
                assert_eq!(c.epoch(), f.epoch, "commands carry the JobMaster's epoch");
                Some(task.to_owned())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        tasks.len(),
        expected.len(),
        "each task gets one {command:?}: {tasks:?}"
    );
    assert_eq!(tasks.into_iter().collect::<BTreeSet<_>>(), *expected);
    let batches = f.batches()[marks.1..].to_vec();
    let calls: Vec<Option<usize>> = batches
        .iter()
        .filter(|b| b.command() == command)
        .map(Batch::batched)
        .collect();
    assert!(
        calls.iter().all(Option::is_some),
        "the JobMaster sends batches: {batches:?}"
    );
    assert_eq!(
        calls.iter().flatten().sum::<usize>(),
        expected.len(),
        "{batches:?}"
    );
    assert!(
        calls.len() < expected.len(),
        "{} {command:?}s arrive in fewer batch calls: {batches:?}",
        expected.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_to_one_executor_travel_in_batches_each_task_once() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let a = FakeExecutor::start(&daemon, "exec-a", 16).await;
        // While one batch is in flight, the rest piles up behind it.
        a.set_submit_delay(Duration::from_millis(20));
        let job = submit(&client, &independent("batched", 16)).await;
        wait_all_running(&client, &job).await;
        let expected: BTreeSet<String> = (0..16).map(|i| format!("work#{i}")).collect();
        assert_each_once_in_batches(&a, (0, 0), Command::Submit, &job, &expected);

        let marks = (a.call_count(), a.batches().len());
        cancel_job(&client, &job).await;
        wait_canceled(&client, &job).await;
        assert_each_once_in_batches(&a, marks, Command::Cancel, &job, &expected);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_lost_by_the_cancel_timeout_leaves_the_registry() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[(
            "JOBMASTER__SCHEDULER__CANCEL_TIMEOUT",
            "300ms",
        )]))
        .await;
        let client = daemon.client().await;
        let a = FakeExecutor::start(&daemon, "exec-a", 1).await;
        let job = submit(&client, &independent("stuck", 1)).await;
        let running = wait_all_running(&client, &job).await;
        assert_eq!(task(&running, "work#0").executor, "exec-a");
        let b = FakeExecutor::start(&daemon, "exec-b", 1).await;
        // A gets the cancel but never confirms it; it keeps heartbeating.
        a.set_auto_cancel(false);
        inject_task_failure(&client, &job, "work#0").await;
        wait_cancel(&a, &job, "work#0", 0).await;

        // The core declares A lost when the cancel times out; the registry follows.
        let (_, ids) = wait_listed(&client, "exec-a", false).await;
        assert_eq!(ids, vec!["exec-b".to_owned()]);
        a.wait_reregister_asked().await;
        // Its session is no longer valid, and its task runs again on B.
        let (code, message) = code_of(a.report(&attempt_ref(&job, "work#0", 0), "CANCELED").await);
        assert_eq!(code, Code::FailedPrecondition, "{message}");
        wait_rerun(&client, &job, "work#0", |e| e == "exec-b").await;
        assert!(b.held().iter().any(|r| r.attempt == 1));
        assert_eq!(reasons_of_history(&client, &job).await, vec!["recoverable"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_consumers_get_their_full_all_to_all_input_list() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let a = FakeExecutor::start(&daemon, "exec-a", 8).await;
        a.set_submit_delay(Duration::from_millis(20));
        let job = submit(&client, &one_region("shared-inputs")).await;
        wait_all_running(&client, &job).await;
        inject_task_failure(&client, &job, "sink#3").await;
        let running = wait_all_running_as(&client, &job, 1).await;

        for attempt in [0, 1] {
            let sinks: Vec<_> = a
                .descriptors()
                .into_iter()
                .filter(|d| {
                    d.attempt
                        .as_ref()
                        .is_some_and(|r| r.vertex == "sink" && r.attempt == attempt)
                })
                .collect();
            assert_eq!(sinks.len(), 4, "attempt {attempt}: {sinks:?}");
            for d in &sinks {
                assert_eq!(d.inputs.len(), 1, "{d:?}");
                let gate = &d.inputs[0];
                assert_eq!(
                    (gate.producer_vertex.as_str(), gate.shared_partitions),
                    ("source", 0)
                );
                // Every producer, at the attempt deployed with this one, where it runs.
                let producers: Vec<(u32, u32, &str)> = gate
                    .partitions
                    .iter()
                    .map(|p| (p.subtask, p.attempt, p.executor.as_str()))
                    .collect();
                assert_eq!(
                    producers,
                    (0..4).map(|i| (i, attempt, "exec-a")).collect::<Vec<_>>(),
                    "{}",
                    describe(&running)
                );
            }
        }
        // The four sinks of an attempt shared one list: some batch carried more than one.
        assert!(
            a.batches()
                .iter()
                .any(|b| matches!(b, Batch::SubmitTasks(n) if *n > 1)),
            "{:?}",
            a.batches()
        );
    })
    .await;
}

// ----- 12. batched reports (UpdateTaskStates) ----------------------------------------------

/// The roots of the job's exception history as (task, message), oldest first.
async fn history_roots(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
) -> Vec<(String, String)> {
    exception_history(client, job)
        .await
        .entries
        .into_iter()
        .filter_map(|e| e.root)
        .map(|r| (r.task, r.message))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_batch_applies_in_order_and_refuses_only_its_stale_update() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let a = FakeExecutor::start(&daemon, "exec-a", 4).await;
        let job = submit(&client, &independent("trio", 3)).await;
        wait_all_running(&client, &job).await;
        // work#0 fails and runs again as attempt 1: its attempt 0 is stale from now on.
        let stale = attempt_ref(&job, "work#0", 0);
        a.fail(&stale, "recoverable", "crashed")
            .await
            .expect("failure accepted");
        wait_rerun(&client, &job, "work#0", |_| true).await;

        // Two failures around a stale update, and a repeat of a current state.
        let outcomes = a
            .report_batch(vec![
                failed_update(&attempt_ref(&job, "work#1", 0), "recoverable", "first"),
                state_update(&stale, "RUNNING"),
                failed_update(&attempt_ref(&job, "work#2", 0), "recoverable", "second"),
                state_update(&attempt_ref(&job, "work#0", 1), "RUNNING"),
            ])
            .await
            .expect("the batch is answered");
        let accepted = (true, String::new());
        assert_eq!(
            verdicts(&outcomes),
            vec![
                accepted.clone(),
                (false, "FAILED_PRECONDITION".to_owned()),
                accepted.clone(),
                accepted.clone(),
            ],
            "{outcomes:?}"
        );
        assert!(outcomes[1].message.contains("stale"), "{outcomes:?}");
        assert!(outcomes.iter().all(|o| o.accepted == o.message.is_empty()));

        // Both failures were applied, in the batch's order, and their tasks run again.
        let after = wait_all_running_as(&client, &job, 1).await;
        assert_eq!(
            history_roots(&client, &job).await,
            vec![
                ("work#0".to_owned(), "crashed".to_owned()),
                ("work#1".to_owned(), "first".to_owned()),
                ("work#2".to_owned(), "second".to_owned()),
            ]
        );
        assert_eq!(after.counters.as_ref().map(|c| c.failovers), Some(3));
        // The stale attempt is cancelled, as after a unary report.
        wait_cancel(&a, &job, "work#0", 0).await;

        // Malformed updates are refused one by one, with the unary call's codes; nothing
        // changes (the executor's own view is left alone: these are not its reports).
        let before = get_job(&client, &job).await;
        let outcomes = a
            .report_batch_as(
                &a.id,
                &a.session(),
                vec![
                    state_update(&attempt_ref(&job, "work#0", 1), "SLEEPING"),
                    jobmaster::api::v1::TaskStateUpdate {
                        state: "RUNNING".into(),
                        ..Default::default()
                    },
                    failed_update(&attempt_ref(&job, "work#1", 1), "bogus-class", ""),
                    state_update(&attempt_ref(&job, "nope#0", 1), "RUNNING"),
                    state_update(&attempt_ref(&job, "work#2", 1), "RUNNING"),
                ],
            )
            .await
            .expect("the batch is answered");
        let refused = |code: &str| (false, code.to_owned());
        assert_eq!(
            verdicts(&outcomes),
            vec![
                refused("INVALID_ARGUMENT"),
                refused("INVALID_ARGUMENT"),
                refused("INVALID_ARGUMENT"),
                refused("NOT_FOUND"),
                accepted,
            ],
            "{outcomes:?}"
        );
        a.wait_heartbeats(2).await;
        assert_eq!(get_job(&client, &job).await, before);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_batch_from_an_unknown_or_replaced_session_is_refused_whole() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let old = FakeExecutor::start(&daemon, "exec-a", 2).await;
        let job = submit(&client, &independent("pair", 2)).await;
        let before = wait_all_running(&client, &job).await;
        let mark = old.call_count();
        let updates = |attempt: u32| {
            vec![
                failed_update(&attempt_ref(&job, "work#0", attempt), "recoverable", "boom"),
                state_update(&attempt_ref(&job, "work#1", attempt), "FINISHED"),
            ]
        };

        // A session that never registered, and an executor that never did.
        let (code, message) = code_of(
            old.report_batch_as("exec-a", "not-a-session", updates(0))
                .await,
        );
        assert_eq!(code, Code::FailedPrecondition, "{message}");
        let (code, message) = code_of(
            old.report_batch_as("exec-z", &old.session(), updates(0))
                .await,
        );
        assert_eq!(code, Code::FailedPrecondition, "{message}");
        old.wait_heartbeats(3).await;
        assert_eq!(get_job(&client, &job).await, before, "nothing was applied");
        assert_eq!(old.calls_since(mark), vec![], "nothing was cancelled");
        assert!(history_roots(&client, &job).await.is_empty());

        // A new process with the same id fences the old session off; its attempts move over.
        let new = FakeExecutor::start(&daemon, "exec-a", 2).await;
        // Both tasks run on the new session.
        let moved = wait_all_running_as(&client, &job, 1).await;
        let (code, message) = code_of(
            old.report_batch_as("exec-a", &old.session(), updates(1))
                .await,
        );
        assert_eq!(code, Code::FailedPrecondition, "{message}");
        assert!(message.contains("not its current session"), "{message}");
        new.wait_heartbeats(3).await;
        assert_eq!(get_job(&client, &job).await, moved, "nothing was applied");
        assert_eq!(
            history_roots(&client, &job).await.len(),
            1,
            "only the fencing failed the job's tasks over"
        );
    })
    .await;
}

/// `f` confirms its four cancels in one UpdateTaskStates call; all are accepted.
async fn confirm_four_cancels(f: &FakeExecutor) {
    let outcomes = f
        .confirm_cancels_batched()
        .await
        .unwrap_or_else(|s| panic!("{}'s batch: {s:?}", f.id));
    assert_eq!(outcomes.len(), 4);
    assert!(outcomes.iter().all(|o| o.accepted), "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_cancel_confirmations_complete_a_failover_and_redeploy_the_region() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let a = FakeExecutor::start(&daemon, "exec-a", 4).await;
        let b = FakeExecutor::start(&daemon, "exec-b", 4).await;
        let fakes = [&a, &b];
        // One region of eight tasks, four on each executor.
        let job = submit(&client, &one_region("batched-reports")).await;
        let running = wait_all_running(&client, &job).await;
        for f in fakes {
            let here = running.tasks.iter().filter(|t| t.executor == f.id).count();
            assert_eq!(here, 4, "{}", describe(&running));
            f.set_auto_cancel(false);
        }
        let marks: Vec<(usize, usize)> = fakes
            .iter()
            .map(|f| (f.call_count(), f.batches().len()))
            .collect();

        inject_task_failure(&client, &job, "source#0").await;
        eventually("every cancel received", DEADLINE, || async {
            let got: Vec<usize> = fakes.iter().map(|f| f.unconfirmed().len()).collect();
            if got == [4, 4] {
                Ok(())
            } else {
                Err(format!("unconfirmed cancels {got:?}"))
            }
        })
        .await;

        // A confirms its four cancels in one call: the region still waits for B's.
        confirm_four_cancels(&a).await;
        for f in fakes {
            f.wait_heartbeats(2).await;
        }
        let waiting = get_job(&client, &job).await;
        let states: BTreeSet<(String, String)> = waiting
            .tasks
            .iter()
            .map(|t| (t.executor.clone(), t.state.clone()))
            .collect();
        assert!(
            waiting.tasks.iter().all(|t| t.attempt == 0
                && t.state
                    == if t.executor == "exec-a" {
                        "CANCELED"
                    } else {
                        "CANCELING"
                    }),
            "{states:?}: {}",
            describe(&waiting)
        );
        for (f, &(calls, _)) in fakes.iter().zip(&marks) {
            assert!(
                !f.calls_since(calls)
                    .iter()
                    .any(|c| c.command() == Some(Command::Submit)),
                "{}: nothing is redeployed before every cancel is confirmed",
                f.id
            );
        }

        // B's batch completes the failover: the region is redeployed as attempt 1.
        confirm_four_cancels(&b).await;
        let after = wait_all_running_as(&client, &job, 1).await;
        for (f, &(calls, batches)) in fakes.iter().zip(&marks) {
            let submitted: Vec<u32> = f
                .calls_since(calls)
                .iter()
                .filter(|c| c.command() == Some(Command::Submit))
                .filter_map(|c| c.target().map(|(_, _, attempt)| attempt))
                .collect();
            assert_eq!(submitted, vec![1; 4], "{}: {}", f.id, describe(&after));
            // The cancels left in one call, and the whole redeploy in one more.
            assert_eq!(
                f.batches()[batches..].to_vec(),
                vec![Batch::CancelTasks(4), Batch::SubmitTasks(4)],
                "{}",
                f.id
            );
        }
        let counters = after.counters.expect("counters");
        assert_eq!((counters.failovers, counters.tasks_restarted), (1, 8));
    })
    .await;
}

// ----- 10. shutdown -------------------------------------------------------------------------

/// No TCP connection is accepted on `addr` any more.
async fn refuses_connections(addr: std::net::SocketAddr) {
    let connect = tokio::time::timeout(DEADLINE, tokio::net::TcpStream::connect(addr)).await;
    assert!(
        matches!(connect, Ok(Err(_))),
        "connecting after shutdown: {connect:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_returns_promptly_when_the_shutdown_future_completes() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[("JOBMASTER__SERVER__SHUTDOWN_GRACE", "5s")])).await;
        let grace = daemon.settings.server.shutdown_grace;
        let client = daemon.client().await;
        // Long-lived streams are open: an executor's heartbeats and a watcher.
        let a = FakeExecutor::start(&daemon, "exec-a", 2).await;
        let job = submit(&client, &independent("j", 1)).await;
        wait_all_running(&client, &job).await;
        let mut events = watch(&client, "").await;
        let addr = daemon.addr;

        let (result, took) = daemon.shutdown().await;
        result.expect("serve returns Ok");
        assert!(
            took < grace / 2,
            "shutdown took {took:?}: the open streams were waited out (grace {grace:?})"
        );
        refuses_connections(addr).await;
        // The watcher is told the daemon is going away.
        let end = bounded("the watch stream's end", events.message()).await;
        match end {
            Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
            Ok(None) => {}
            Ok(Some(event)) => panic!("an event after shutdown: {event:?}"),
        }
        drop(a);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_serving_after_the_grace_period_when_a_call_lingers() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[("JOBMASTER__SERVER__SHUTDOWN_GRACE", "1s")])).await;
        let grace = daemon.settings.server.shutdown_grace;
        // A reflection stream whose client never ends its side: it outlives the grace period.
        let mut reflection = ServerReflectionClient::new(daemon.channel().await);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        })
        .await
        .expect("queued");
        let mut answers = bounded(
            "reflection",
            reflection.server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
        .await
        .expect("reflection")
        .into_inner();
        bounded("a reflection answer", answers.message())
            .await
            .expect("answer")
            .expect("one");
        let addr = daemon.addr;

        let (result, took) = daemon.shutdown().await;
        result.expect("serve returns Ok");
        assert!(
            took >= grace && took < grace + Duration::from_secs(3),
            "shutdown took {took:?} (grace {grace:?})"
        );
        // Once serve has returned the port is closed, not left serving in the background.
        // (The lingering stream's own connection task is tonic's and outlives serve.)
        refuses_connections(addr).await;
        drop((tx, answers));
    })
    .await;
}
