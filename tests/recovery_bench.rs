//! Recovery benchmarks on real processes (ignored by default; run with
//! `cargo test --release --test recovery_bench -- --ignored --nocapture`): time from a kill -9
//! of an executor until every affected task is RUNNING again, and the share of tasks restarted.
//! The `_tls` variants (issue 12) run the same benchmark in plain text and with TLS and
//! authentication everywhere, alternating run by run in one process, and compare the two.

mod process_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use jobmaster::api::v1::WatchEventsRequest;
use process_support::{Cluster, describe, eventually};
use tokio_stream::StreamExt;

const WAIT: Duration = Duration::from_secs(60);

/// Issue 5's target, measured (run with
/// `cargo test --release --test recovery_bench -- --ignored --nocapture recovery_bench`; set
/// `BENCH_RUNS` for another number of runs): on loopback with no-op streaming tasks, from
/// kill -9 of an executor until every affected task is RUNNING again on another executor, 20
/// runs, for a 100-task job of 4 independent regions on 5 executors with restart backoff 0.
/// Each region lands on its own executor (executors join one at a time, 25 slots each, and a
/// region is placed as a whole); the fifth executor is the spare. Two clocks: the
/// jobmaster's (the `time_ms` of its event for the last task RUNNING again, against the kill
/// in its clock) and the watcher's (when the WatchEvents stream delivered that event).
/// Prints p50 and p99 of both and the ratio restarted/total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn recovery_bench() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut results = Vec::new();
    for run in 0..runs {
        let r = recovery_once(run, false).await;
        r.print(run);
        results.push(r);
    }
    summarize("recovery after kill -9 of an executor", &results);
    assert!(
        results.iter().all(|r| (r.restarted, r.total) == (25, 100)),
        "every run restarts exactly the one affected region"
    );
}

/// Issue 16's target, measured (`cargo test --release --test recovery_bench -- --ignored
/// --nocapture recovery_bench_restore`; `BENCH_RUNS` as above): the recovery benchmark's job
/// with stateful tasks (`examples/tasks/counter.py`, checkpointed every second): from kill -9
/// of an executor until every task of the affected region is RUNNING again, restored from the
/// latest completed checkpoint (checked afterwards: each restarted process got
/// `JM_RESTORE_DIR` and its state is there), and only that region restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn recovery_bench_restore() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let counter = process_support::example("tasks/counter.py");
    // The interpreter itself, not a version manager's `python3` script (see `python3`).
    let python = process_support::python3();
    let mut results = Vec::new();
    for run in 0..runs {
        // A tick a second: 100 counters ticking every 20 ms would keep both CPUs busy.
        // JM_BENCH_TASK_FSYNC=0: the tasks write their state without syncing it (on this
        // one-disk VM, 100 tasks syncing their state compete with the jobmaster's own store).
        let fsync = std::env::var("JM_BENCH_TASK_FSYNC").unwrap_or_else(|_| "1".into());
        let (cluster, job, ids) =
            recovery_cluster_of(false, &[&python, &counter, "1", &fsync], Some("1s")).await;
        // A completed checkpoint in which every task wrote its state (a task that had not
        // connected yet is acknowledged without state), so every restarted task has some.
        let mut client = cluster.client();
        let (c, j, root) = (&mut client, job.as_str(), cluster.root.clone());
        eventually(
            "a completed checkpoint with the state of every task",
            WAIT,
            || {
                let mut c = c.clone();
                let root = root.clone();
                async move {
                    let list = c
                        .list_checkpoints(jobmaster::api::v1::ListCheckpointsRequest {
                            job_id: j.to_owned(),
                        })
                        .await
                        .map_err(|s| s.to_string())?
                        .into_inner()
                        .checkpoints;
                    let latest = list
                        .iter()
                        .find(|k| k.state == "COMPLETED" && k.retained)
                        .ok_or(format!("{list:?}"))?;
                    let folder = root.join(format!("checkpoints/{j}/chk-{}", latest.id));
                    let with_state = std::fs::read_dir(&folder)
                        .map(|d| {
                            d.flatten()
                                .filter(|e| e.path().join("state").is_file())
                                .count()
                        })
                        .unwrap_or(0);
                    (with_state == 100).then_some(()).ok_or(format!(
                        "checkpoint {}: {with_state} tasks with state",
                        latest.id
                    ))
                }
            },
        )
        .await;
        let victim = ids[run % 4];
        let mut r = kill_and_measure(&cluster, &job, victim).await;
        r.root = Some(cluster.root.clone());
        // Every restarted task's process started from its state (a task may show as more
        // than one process: its shim and the program; polled, as a process that was just
        // started may not show its environment yet).
        let (c, j, want) = (&cluster, job.as_str(), r.restarted);
        eventually(
            "every restarted task restored its state",
            WAIT,
            || async move {
                let restored: BTreeSet<String> = c
                    .processes()
                    .into_iter()
                    .filter(|p| p.job == j && p.attempt > 0 && p.executor != victim)
                    .filter(|p| {
                        process_support::task_env(p.pid)
                            .and_then(|env| env.get("JM_RESTORE_DIR").cloned())
                            .is_some_and(|dir| std::path::Path::new(&dir).join("state").is_file())
                    })
                    .map(|p| p.task)
                    .collect();
                (restored.len() == want).then_some(()).ok_or(format!(
                    "{} of {want} restored: {restored:?}",
                    restored.len()
                ))
            },
        )
        .await;
        r.print(run);
        results.push(r);
    }
    summarize(
        "recovery with restore after kill -9 of an executor",
        &results,
    );
    assert!(
        results.iter().all(|r| (r.restarted, r.total) == (25, 100)),
        "every run restarts exactly the one affected region"
    );
}

/// The placement issue's target (a), measured (run with
/// `cargo test --release --test recovery_bench -- --ignored --nocapture recovery_bench_40_regions`;
/// `BENCH_RUNS` sets the number of runs, 10 by default): 10 executors of 125 slots, a job of 40
/// independent pipelined regions of 25 tasks (source 5 → all-to-all → orders 20) with the
/// default placement, restart backoff 0. Each run starts a fresh cluster (1,000 task
/// processes), kills -9 one executor (a different one each run) and times until every
/// affected task is RUNNING again elsewhere. Prints restarted/total and p50/p99 of both
/// clocks; the targets are ≤ 15 % restarted (asserted) and p99 ≤ 300 ms (reported).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn recovery_bench_40_regions() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut results = Vec::new();
    for run in 0..runs {
        let r = recovery_40_regions_once(run, false).await;
        r.print(run);
        results.push(r);
    }
    summarize(
        "40 regions x 25 tasks on 10 executors x 125 slots, kill -9 of an executor",
        &results,
    );
    let p99 = percentile(
        &results.iter().map(|r| r.jobmaster_ms).collect::<Vec<_>>(),
        0.99,
    );
    println!(
        "target: restarted <= 15 % in every run: {}; p99 <= 300 ms (jobmaster clock): {}",
        results.iter().all(|r| r.restarted * 100 <= r.total * 15),
        p99 <= 300.0
    );
    for r in &results {
        assert_eq!(r.total, 1_000);
        assert!(
            r.restarted * 100 <= r.total * 15,
            "restarted {} of {} tasks",
            r.restarted,
            r.total
        );
    }
}

/// Issue 14's target 5, measured (run with
/// `cargo test --release --test recovery_bench -- --ignored --nocapture jobmaster_restart_bench`;
/// `BENCH_RUNS` sets the number of runs, 20 by default): the recovery benchmark's cluster (a
/// 100-task streaming job of 4 regions on 5 executors), then kill -9 of the *jobmaster*, and a
/// new jobmaster process started on the same state dir and gRPC port. Timed from the new
/// process's spawn until every task is RUNNING again (GetJob polled every 5 ms) with the
/// attempt number and executor it had before the kill (asserted, as are 0 job restarts).
/// Run `n` waits `50 × (n % 5)` ms between the kill and the spawn, so that the executors'
/// 200 ms reconnect cycle meets the new jobmaster at different phases. The jobmaster's own log
/// gives the steps: spawn → listening (store opened, incl. redb's repair of a file that was
/// not closed), → last executor registered again, → "reconciliation over".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn jobmaster_restart_bench() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut results = Vec::new();
    for run in 0..runs {
        let r = jobmaster_restart_once(run).await;
        println!(
            "run {run:2}: restarted {:3} ms after the kill; from spawn: listening {:6.1} ms, \
             last executor registered {:6.1} ms, reconciliation over {:6.1} ms (took {}), \
             every task RUNNING {:6.1} ms; attempts changed {}, job restarts {}",
            r.delay_ms,
            r.listening_ms,
            r.registered_ms,
            r.reconciled_ms,
            r.took,
            r.all_running_ms,
            r.changed,
            r.restarts
        );
        results.push(r);
    }
    for root in &results {
        let _ = std::fs::remove_dir_all(&root.root);
    }
    let col = |f: fn(&Restart) -> f64| -> (f64, f64, f64) {
        let v: Vec<f64> = results.iter().map(f).collect();
        let max = v.iter().copied().fold(0.0, f64::max);
        (percentile(&v, 0.5), percentile(&v, 0.99), max)
    };
    for (what, (p50, p99, max)) in [
        ("spawn → listening", col(|r| r.listening_ms)),
        (
            "spawn → last executor registered again",
            col(|r| r.registered_ms),
        ),
        (
            "spawn → reconciliation over (log)",
            col(|r| r.reconciled_ms),
        ),
        (
            "spawn → every task RUNNING (GetJob)",
            col(|r| r.all_running_ms),
        ),
    ] {
        println!(
            "jobmaster restart, {runs} runs: {what}: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
        );
    }
    let (_, p99, _) = col(|r| r.all_running_ms);
    println!(
        "target: every task RUNNING again, 0 restarted, p99 <= 1 s: {}",
        if p99 <= 1000.0 { "met" } else { "not met" }
    );
    for r in &results {
        assert_eq!((r.changed, r.restarts), (0, 0), "no task restarted");
    }
}

/// One [`jobmaster_restart_bench`] run.
struct Restart {
    delay_ms: u64,
    listening_ms: f64,
    registered_ms: f64,
    reconciled_ms: f64,
    /// The jobmaster's own `took` of its reconciliation.
    took: String,
    all_running_ms: f64,
    /// Tasks whose attempt or executor differs from before the kill.
    changed: usize,
    /// Job restarts counted since the kill.
    restarts: u64,
    root: std::path::PathBuf,
}

async fn jobmaster_restart_once(run: usize) -> Restart {
    let (mut cluster, job, _) = recovery_cluster(false).await;
    let before = cluster.tasks(&job).await;
    let restarts_before = cluster.job(&job).await.counters.map_or(0, |c| c.restarts);
    let listen = cluster.url.trim_start_matches("http://").to_owned();
    let log = cluster.root.join("jobmaster.log");
    let from = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
    cluster.kill_jobmaster();
    let delay_ms = 50 * (run as u64 % 5);
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let spawned = std::time::SystemTime::now();
    let t0 = Instant::now();
    cluster.start_jobmaster_on(&listen, &[]).await;
    let (c, job_id, before_ref) = (&cluster, job.as_str(), &before);
    let all_running_ms = eventually("every task RUNNING again", WAIT, || async move {
        let tasks = c.tasks(job_id).await;
        let at = t0.elapsed().as_secs_f64() * 1e3;
        if tasks.len() == before_ref.len() && tasks.values().all(|t| t.state == "RUNNING") {
            Ok(at)
        } else {
            Err(describe(&tasks))
        }
    })
    .await;
    let after = cluster.tasks(&job).await;
    let changed = before
        .iter()
        .filter(|(name, t)| {
            after
                .get(*name)
                .is_none_or(|a| a.attempt != t.attempt || a.executor != t.executor)
        })
        .count();
    let restarts = cluster.job(&job).await.counters.map_or(0, |c| c.restarts) - restarts_before;
    // The new jobmaster's log: when it listened, registered the executors, reconciled.
    let text = std::fs::read(&log).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(from..).unwrap_or_default()).into_owned();
    let since_spawn = |v: &serde_json::Value| -> Option<f64> {
        let at = humantime::parse_rfc3339_weak(v["timestamp"].as_str()?).ok()?;
        Some(match at.duration_since(spawned) {
            Ok(d) => d.as_secs_f64() * 1e3,
            Err(e) => -e.duration().as_secs_f64() * 1e3,
        })
    };
    let (mut listening_ms, mut registered_ms, mut reconciled_ms) = (f64::NAN, f64::NAN, f64::NAN);
    let mut took = String::new();
    for v in text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        match v["fields"]["message"].as_str() {
            Some("jobmaster listening") => listening_ms = since_spawn(&v).unwrap_or(f64::NAN),
            Some("executor registered") => {
                registered_ms = since_spawn(&v).unwrap_or(f64::NAN);
            }
            Some("reconciliation over") => {
                reconciled_ms = since_spawn(&v).unwrap_or(f64::NAN);
                took = v["fields"]["took"].as_str().unwrap_or_default().to_owned();
            }
            _ => {}
        }
    }
    Restart {
        delay_ms,
        listening_ms,
        registered_ms,
        reconciled_ms,
        took,
        all_running_ms,
        changed,
        restarts,
        root: cluster.root.clone(),
    }
}

/// Issue 12's target on [`recovery_bench`]: TLS and authentication cost at most 10 % at p99.
/// `BENCH_RUNS` (20 by default) runs of each, alternating plain and TLS (the same victim for
/// both runs of a pair), so that the machine's noise hits both alike. Run with
/// `cargo test --release --test recovery_bench -- --ignored --nocapture recovery_bench_tls`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn recovery_bench_tls() {
    let (plain, tls) = alternate(20, recovery_once).await;
    compare("recovery after kill -9 of an executor", &plain, &tls);
    assert!(
        plain
            .iter()
            .chain(&tls)
            .all(|r| (r.restarted, r.total) == (25, 100)),
        "every run restarts exactly the one affected region"
    );
}

/// Issue 12's target on [`recovery_bench_40_regions`], plain and TLS alternating
/// (`BENCH_RUNS`, 10 by default, runs of each; 1,000 task processes per run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn recovery_bench_40_regions_tls() {
    let (plain, tls) = alternate(10, recovery_40_regions_once).await;
    compare(
        "40 regions x 25 tasks on 10 executors x 125 slots, kill -9 of an executor",
        &plain,
        &tls,
    );
    for r in plain.iter().chain(&tls) {
        assert_eq!(r.total, 1_000);
    }
}

/// `BENCH_RUNS` (or `default`) pairs of runs, plain then TLS, each pair with the same run
/// number (so the same victim); returns the plain and the TLS results.
async fn alternate<F, Fut>(default: usize, mut once: F) -> (Vec<Recovery>, Vec<Recovery>)
where
    F: FnMut(usize, bool) -> Fut,
    Fut: std::future::Future<Output = Recovery>,
{
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    let (mut plain, mut tls) = (Vec::new(), Vec::new());
    for run in 0..runs {
        for secure in [false, true] {
            let r = once(run, secure).await;
            print!("{} ", if secure { "tls  " } else { "plain" });
            r.print(run);
            let series = if secure { &mut tls } else { &mut plain };
            series.push(r);
        }
    }
    (plain, tls)
}

/// Prints both series (as [`summarize`] does) and the ratios TLS / plain of their p50 and
/// p99 on both clocks, against issue 12's target (p99 ratio ≤ 1.10).
fn compare(what: &str, plain: &[Recovery], tls: &[Recovery]) {
    let p = summarize(&format!("{what}, plain"), plain);
    let t = summarize(&format!("{what}, tls"), tls);
    let ratio = |i: usize| t[i] / p[i];
    println!(
        "tls / plain: jobmaster clock p50 {:.3}, p99 {:.3}; watcher p50 {:.3}, p99 {:.3}; \
         target p99 <= 1.10 (jobmaster clock): {}",
        ratio(0),
        ratio(1),
        ratio(2),
        ratio(3),
        if ratio(1) <= 1.10 { "met" } else { "not met" }
    );
}

async fn recovery_40_regions_once(run: usize, tls: bool) -> Recovery {
    let ids: Vec<String> = (1..=10).map(|i| format!("tm-{i:02}")).collect();
    let executors: Vec<(&str, u32)> = ids.iter().map(|id| (id.as_str(), 125)).collect();
    // 1,000 task processes starting at once can hold up a heartbeat for seconds on a small
    // machine; kill -9 is detected by the heartbeat stream closing, not by the timeout.
    let env = [
        ("JOBMASTER__HEARTBEAT__INTERVAL", "200ms"),
        ("JOBMASTER__HEARTBEAT__TIMEOUT", "15s"),
        ("JOBMASTER__RECOVERY__RECONCILE_TIMEOUT", "15s"),
        ("JOBMASTER__RPC__TIMEOUT", "15s"),
    ];
    let mut cluster = if tls {
        Cluster::start_tls("bench-40-tls", &executors, &env).await
    } else {
        Cluster::start("bench-40", &executors, &env).await
    };
    cluster.keep_root();
    let mut vertices = Vec::new();
    let mut edges = Vec::new();
    for r in 0..40 {
        vertices.push(serde_json::json!({
            "id": format!("source-{r:02}"), "parallelism": 5, "command": ["sleep", "3600"],
        }));
        vertices.push(serde_json::json!({
            "id": format!("orders-{r:02}"), "parallelism": 20, "command": ["sleep", "3600"],
        }));
        edges.push(serde_json::json!({
            "from": format!("source-{r:02}"), "to": format!("orders-{r:02}"),
            "pattern": "all-to-all", "exchange": "pipelined",
        }));
    }
    let spec = serde_json::json!({
        "name": "recovery-bench-40",
        "failover": "region",
        "restart": { "strategy": "fixed-delay", "attempts": 1000, "delay": "0ms" },
        "vertices": vertices,
        "edges": edges,
    });
    let job = cluster.submit(&spec).await;
    cluster
        .wait_tasks(&job, "1,000 tasks RUNNING", Duration::from_secs(300), |t| {
            t.state == "RUNNING"
        })
        .await;
    let tasks = cluster.tasks(&job).await;
    let early = tasks.values().filter(|t| t.attempt > 0).count();
    if early > 0 {
        println!("run {run:2}: {early} tasks restarted before the kill (a slow start)");
    }
    let mut r = kill_and_measure(&cluster, &job, &ids[run % ids.len()]).await;
    r.root = Some(cluster.root.clone());
    r
}

/// Percentile `p` of samples in ms, from an hdrhistogram of them in µs (exact to the µs below
/// 32.768 ms, within 0.01% above), nearest rank.
fn percentile(v: &[f64], p: f64) -> f64 {
    let mut h = hdrhistogram::Histogram::<u64>::new(4).expect("valid significant figures");
    for x in v {
        h.record((x.max(0.0) * 1000.0).round() as u64)
            .expect("an auto-resizing histogram records any u64");
    }
    let max = v.iter().copied().fold(0.0, f64::max);
    (h.value_at_quantile(p) as f64 / 1000.0).min(max)
}

/// Prints p50 and p99 of both clocks and the ratio restarted/total (of the first run), then
/// deletes the runs' directories. Returns `[jobmaster p50, p99, watcher p50, p99]` in ms.
fn summarize(what: &str, results: &[Recovery]) -> [f64; 4] {
    // JM_BENCH_KEEP=1 keeps the runs' directories (logs) for a look afterwards.
    if std::env::var_os("JM_BENCH_KEEP").is_none() {
        for root in results.iter().filter_map(|r| r.root.as_ref()) {
            let _ = std::fs::remove_dir_all(root);
        }
    }
    let runs = results.len();
    let jm: Vec<f64> = results.iter().map(|r| r.jobmaster_ms).collect();
    let watcher: Vec<f64> = results.iter().map(|r| r.watcher_ms).collect();
    let (restarted, total) = (results[0].restarted, results[0].total);
    let figures = [
        percentile(&jm, 0.5),
        percentile(&jm, 0.99),
        percentile(&watcher, 0.5),
        percentile(&watcher, 0.99),
    ];
    println!(
        "{what}, {runs} runs: jobmaster clock p50 {:.1} ms, p99 {:.1} ms; watcher p50 {:.1} ms, \
         p99 {:.1} ms; restarted/total = {restarted}/{total} = {:.2}",
        figures[0],
        figures[1],
        figures[2],
        figures[3],
        restarted as f64 / total as f64
    );
    figures
}

struct Recovery {
    /// Kill to the jobmaster's event of the last affected task RUNNING, in its clock.
    jobmaster_ms: f64,
    /// Kill to the watcher receiving that event.
    watcher_ms: f64,
    /// Kill to the watcher receiving the executor-lost event.
    loss_seen_ms: f64,
    /// Kill to the jobmaster declaring the executor lost, in its clock.
    loss_ms: f64,
    restarted: usize,
    total: usize,
    /// Regions that had a task on the victim.
    regions: usize,
    /// The run's cluster directory, deleted after the last run (see `Cluster::keep_root`).
    root: Option<std::path::PathBuf>,
}

impl Recovery {
    fn print(&self, run: usize) {
        println!(
            "run {run:2}: loss declared at {:5.1} ms, all affected tasks RUNNING again at \
             {:6.1} ms (jobmaster clock); watcher saw them at {:5.1} / {:6.1} ms; restarted \
             {}/{}",
            self.loss_ms,
            self.jobmaster_ms,
            self.loss_seen_ms,
            self.watcher_ms,
            self.restarted,
            self.total
        );
    }
}

async fn recovery_once(run: usize, tls: bool) -> Recovery {
    let (cluster, job, ids) = recovery_cluster(tls).await;
    let victim = ids[run % 4];
    let mut r = kill_and_measure(&cluster, &job, victim).await;
    r.root = Some(cluster.root.clone());
    assert_eq!(r.regions, 1, "one region per executor");
    r
}

/// The recovery benchmark's cluster: a jobmaster, 5 executors of 25 slots, and a running
/// 100-task job of 4 independent regions, one region per executor (tm-1 to tm-4; tm-5 is the
/// spare). Returns the cluster, the job and the executor ids.
async fn recovery_cluster(tls: bool) -> (Cluster, String, [&'static str; 5]) {
    recovery_cluster_of(tls, &["sleep", "3600"], None).await
}

/// [`recovery_cluster`] whose tasks run `command`, checkpointed every `checkpoint` (a
/// duration) when given.
async fn recovery_cluster_of(
    tls: bool,
    command: &[&str],
    checkpoint: Option<&str>,
) -> (Cluster, String, [&'static str; 5]) {
    let mut cluster = if tls {
        Cluster::new_tls("bench-tls", &[])
    } else {
        // JM_BENCH_LOG=FILTER: the processes' RUST_LOG (e.g. debug), for a look at one run.
        let log = std::env::var("JM_BENCH_LOG").unwrap_or_else(|_| "info".into());
        // JM_BENCH_STORE=memory: the jobmaster without its durable store, for a comparison.
        let store = std::env::var("JM_BENCH_STORE").unwrap_or_else(|_| "embedded".into());
        Cluster::new(
            "bench",
            &[
                ("RUST_LOG", log.as_str()),
                ("JOBMASTER__STORE__BACKEND", store.as_str()),
            ],
        )
    };
    cluster.keep_root();
    cluster.start_jobmaster().await;
    let mut vertices = Vec::new();
    let mut edges = Vec::new();
    for city in ["beijing", "shanghai", "shenzhen", "hangzhou"] {
        vertices.push(serde_json::json!({
            "id": format!("{city}-source"), "parallelism": 5, "command": command,
        }));
        vertices.push(serde_json::json!({
            "id": format!("{city}-orders"), "parallelism": 20, "command": command,
        }));
        edges.push(serde_json::json!({
            "from": format!("{city}-source"), "to": format!("{city}-orders"),
            "pattern": "all-to-all", "exchange": "pipelined",
        }));
    }
    let mut spec = serde_json::json!({
        "name": "recovery-bench",
        "failover": "region",
        "restart": { "strategy": "fixed-delay", "attempts": 1000, "delay": "0ms" },
        "vertices": vertices,
        "edges": edges,
    });
    if let Some(interval) = checkpoint {
        spec["checkpoint"] = serde_json::json!({ "interval": interval, "timeout": "30s" });
    }
    cluster.start_executor("tm-1", 25);
    cluster.wait_registered(&["tm-1"]).await;
    let job = cluster.submit(&spec).await;
    let ids = ["tm-1", "tm-2", "tm-3", "tm-4", "tm-5"];
    for n in 1..=4 {
        if n > 1 {
            cluster.start_executor(ids[n - 1], 25);
            cluster.wait_registered(&ids[..n]).await;
        }
        let want = 25 * n;
        let (c, job) = (&cluster, job.as_str());
        eventually(&format!("{want} tasks RUNNING"), WAIT, || async move {
            let tasks = c.tasks(job).await;
            let running = tasks.values().filter(|t| t.state == "RUNNING").count();
            if running == want {
                Ok(())
            } else {
                Err(format!("{running} RUNNING"))
            }
        })
        .await;
    }
    cluster.start_executor("tm-5", 25);
    cluster.wait_registered(&ids).await;
    (cluster, job, ids)
}

/// Kills `victim` with SIGKILL and measures until every task of the regions that had a task
/// on it runs a new attempt on another executor; checks that exactly those restarted (each
/// once more than before the kill).
async fn kill_and_measure(cluster: &Cluster, job: &str, victim: &str) -> Recovery {
    let job = job.to_owned();
    let before = cluster.tasks(&job).await;
    let affected_regions: BTreeSet<u32> = before
        .values()
        .filter(|t| t.executor == victim)
        .map(|t| t.region)
        .collect();
    let affected: BTreeSet<String> = before
        .values()
        .filter(|t| affected_regions.contains(&t.region))
        .map(|t| t.name.clone())
        .collect();

    let mut events = cluster
        .client()
        .watch_events(WatchEventsRequest {
            job_id: job.clone(),
        })
        .await
        .expect("WatchEvents")
        .into_inner();
    // SIGKILL without reaping it first (the cluster reaps it when dropped): waiting here
    // would hold up reading the events.
    let victim_pid = cluster.executor_pid(victim);
    let killed = Instant::now();
    // The kill in the jobmaster's clock (ms since its start), to time its own events.
    let killed_jm = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
        * 1e3
        - cluster.epoch as f64;
    // SAFETY: kill(2) on our own child, not reaped yet.
    assert_eq!(unsafe { libc::kill(victim_pid, libc::SIGKILL) }, 0);
    let mut waiting = affected.clone();
    let mut restarted = BTreeSet::new();
    let (mut loss_seen, mut loss_ms, mut jobmaster_ms) = (None, None, 0.0);
    let latency = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            let event = event.expect("event stream");
            match event.kind.as_str() {
                "executor-lost" => {
                    loss_seen = loss_seen.or(Some(killed.elapsed()));
                    loss_ms = loss_ms.or(Some(event.time_ms as f64 - killed_jm));
                }
                "restart-scheduled" => restarted.extend(event.tasks),
                "task-state"
                    if event.state == "RUNNING"
                        && event.attempt > before.get(&event.task).map_or(0, |t| t.attempt)
                        && event.executor != victim =>
                {
                    jobmaster_ms = event.time_ms as f64 - killed_jm;
                    waiting.remove(&event.task);
                    if waiting.is_empty() {
                        return killed.elapsed();
                    }
                }
                _ => {}
            }
        }
        panic!("the event stream ended; waiting for {waiting:?}")
    })
    .await
    .expect("recovery within the deadline");
    assert_eq!(restarted, affected, "exactly the affected region restarted");
    let after = cluster.tasks(&job).await;
    for (name, t) in &after {
        let want = before[name].attempt + u32::from(affected.contains(name));
        assert_eq!(t.attempt, want, "{name}: {}", describe(&after));
    }
    Recovery {
        jobmaster_ms,
        watcher_ms: latency.as_secs_f64() * 1e3,
        loss_seen_ms: loss_seen.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
        loss_ms: loss_ms.unwrap_or(f64::NAN),
        restarted: restarted.len(),
        total: before.len(),
        regions: affected_regions.len(),
        root: None,
    }
}
