//! Process-tier tests (DESIGN §7, tier 3; issue 5 item 7): a real `jobmaster` and real
//! `taskexecutor` processes on loopback, real task processes, kill -9 and SIGSTOP/SIGCONT.
//!
//! Each test runs in its own temporary directory (see `process_support`), bounds itself in
//! time, and waits by polling with generous deadlines, so a noisy machine slows it down but
//! does not fail it. Task processes are found through /proc by the `JM_ATTEMPT_DIR` the
//! executor puts in their environment, which lies under the test's directory.

mod process_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jobmaster::api::v1::{GetJobResponse, TaskInfo};
use process_support::wordcount::{open_gate, parse_counts, wordcount_job};
use process_support::{
    Cluster, TaskProcess, bounded, describe, eventually, quick_restarts, stream_command,
    streaming_job,
};

const TEST_LIMIT: Duration = Duration::from_secs(180);
const WAIT: Duration = Duration::from_secs(60);

/// Waits until every task of `tasks` has exactly one live process (its leader, whose command
/// line contains `marker`), of the task's current attempt on the task's executor, and no
/// other such process runs; returns each task's pid.
async fn one_process_per_task(
    cluster: &Cluster,
    tasks: &BTreeMap<String, TaskInfo>,
    marker: &str,
) -> BTreeMap<String, i32> {
    eventually(
        "exactly one live process per task, of its current attempt",
        WAIT,
        || async move { check_one_process_per_task(&cluster.processes(), tasks, marker) },
    )
    .await
}

fn check_one_process_per_task(
    processes: &[TaskProcess],
    tasks: &BTreeMap<String, TaskInfo>,
    marker: &str,
) -> Result<BTreeMap<String, i32>, String> {
    let mut by_task: BTreeMap<&str, Vec<&TaskProcess>> = BTreeMap::new();
    for p in processes.iter().filter(|p| p.cmdline.contains(marker)) {
        by_task.entry(p.task.as_str()).or_default().push(p);
    }
    let mut pids = BTreeMap::new();
    for (name, ps) in &by_task {
        let Some(t) = tasks.get(*name) else {
            return Err(format!("a process of unknown task {name}: {ps:?}"));
        };
        match ps.as_slice() {
            [p] if p.attempt == t.attempt && p.executor == t.executor => {
                pids.insert((*name).to_owned(), p.pid);
            }
            _ => {
                return Err(format!(
                    "task {name} (attempt {} on {}) has processes {:?}",
                    t.attempt,
                    t.executor,
                    ps.iter()
                        .map(|p| (p.pid, p.attempt, p.executor.as_str()))
                        .collect::<Vec<_>>()
                ));
            }
        }
    }
    match tasks.keys().find(|n| !by_task.contains_key(n.as_str())) {
        Some(missing) => Err(format!("no process of task {missing} yet")),
        None => Ok(pids),
    }
}

/// The executor hosting at least one task whose tasks touch the fewest regions.
fn victim_touching_fewest_regions(tasks: &BTreeMap<String, TaskInfo>) -> (String, BTreeSet<u32>) {
    let mut regions: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for t in tasks.values() {
        regions.entry(&t.executor).or_default().insert(t.region);
    }
    let (executor, touched) = regions
        .into_iter()
        .min_by_key(|(e, r)| (r.len(), *e))
        .expect("some task is placed");
    (executor.to_owned(), touched)
}

/// Starts a cluster of tm-1, tm-2 and tm-3 with `slots` each and `env`, submits the two-city
/// streaming job (two subtasks a city, restarts after 100 ms) and waits until every task runs,
/// with exactly one process each; returns the cluster, the job, its tasks and their pids.
async fn two_cities_running(
    name: &str,
    slots: u32,
    env: &[(&str, &str)],
) -> (
    Cluster,
    String,
    BTreeMap<String, TaskInfo>,
    BTreeMap<String, i32>,
) {
    let cluster = Cluster::start(
        name,
        &[("tm-1", slots), ("tm-2", slots), ("tm-3", slots)],
        env,
    )
    .await;
    let spec = streaming_job(
        "two-cities",
        &["beijing", "shanghai"],
        2,
        &stream_command(),
        quick_restarts("100ms"),
    );
    let job = cluster.submit(&spec).await;
    let tasks = cluster
        .wait_tasks(&job, "every task RUNNING", WAIT, |t| t.state == "RUNNING")
        .await;
    let pids = one_process_per_task(&cluster, &tasks, "stream.sh").await;
    (cluster, job, tasks, pids)
}

/// Waits until every task of the `affected` regions runs a new attempt off `victim`.
async fn regions_running_again(
    cluster: &Cluster,
    job: &str,
    what: &str,
    affected: &BTreeSet<u32>,
    victim: &str,
) -> BTreeMap<String, TaskInfo> {
    cluster
        .wait_tasks(job, what, WAIT, |t| {
            !affected.contains(&t.region)
                || (t.attempt >= 1 && t.state == "RUNNING" && t.executor != victim)
        })
        .await
}

fn regions_of(tasks: &BTreeMap<String, TaskInfo>) -> BTreeSet<u32> {
    tasks.values().map(|t| t.region).collect()
}

/// kill -9 of one executor: exactly the regions with a task on it restart (attempt 1, on the
/// surviving executors); every task of the other regions keeps its attempt, its executor and
/// even its process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_an_executor_restarts_only_the_regions_with_tasks_on_it() {
    bounded(TEST_LIMIT, async {
        let (mut cluster, job, before, pids_before) = two_cities_running("kill9", 5, &[]).await;
        assert!(
            before.values().all(|t| t.attempt == 0),
            "{}",
            describe(&before)
        );
        assert_eq!(regions_of(&before).len(), 4, "two cities x two subtasks");

        let (victim, affected) = victim_touching_fewest_regions(&before);
        assert!(
            affected.len() < 4,
            "the executors hold 5 slots each, so one of them cannot touch all 4 regions: {}",
            describe(&before)
        );
        cluster.signal_executor(&victim, libc::SIGKILL);

        let after = regions_running_again(
            &cluster,
            &job,
            "the affected regions run again on the surviving executors",
            &affected,
            &victim,
        )
        .await;
        for (name, t) in &after {
            let old = &before[name];
            if affected.contains(&t.region) {
                assert_eq!(t.attempt, 1, "{name} restarted once: {}", describe(&after));
                assert!(
                    !t.executor.is_empty() && t.executor != victim,
                    "{name} runs on a survivor: {}",
                    describe(&after)
                );
            } else {
                assert_eq!(
                    (t.attempt, t.executor.as_str(), t.state.as_str()),
                    (0, old.executor.as_str(), "RUNNING"),
                    "{name} of an unaffected region is untouched: {}",
                    describe(&after)
                );
            }
        }
        let restarted = after
            .values()
            .filter(|t| affected.contains(&t.region))
            .count() as u64;
        let counters = cluster.job(&job).await.counters.expect("counters");
        assert_eq!(counters.failovers, 1, "one executor loss is one failover");
        assert_eq!(counters.tasks_restarted, restarted);

        // The processes say the same: one per task, current attempt; the unaffected tasks'
        // processes were never restarted; nothing of the killed executor survives.
        let pids_after = one_process_per_task(&cluster, &after, "stream.sh").await;
        for (name, t) in &after {
            if !affected.contains(&t.region) {
                assert_eq!(
                    pids_after[name], pids_before[name],
                    "{name} kept its process"
                );
            }
        }
        cluster.wait_no_processes_of(&victim).await;
    })
    .await;
}

/// The same cluster in TLS mode (`Cluster::start_tls`: every connection TLS, executors and
/// the test's client authenticated by their certificates): the job runs, and kill -9 of an
/// executor restarts exactly the regions with a task on it, on the survivors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_kill_9_of_an_executor_restarts_its_regions_on_the_survivors() {
    bounded(TEST_LIMIT, async {
        let mut cluster =
            Cluster::start_tls("tls-kill9", &[("tm-1", 5), ("tm-2", 5), ("tm-3", 5)], &[]).await;
        assert!(cluster.url.starts_with("https://"), "{}", cluster.url);
        let spec = streaming_job(
            "two-cities",
            &["beijing", "shanghai"],
            2,
            &stream_command(),
            quick_restarts("100ms"),
        );
        let job = cluster.submit(&spec).await;
        let before = cluster
            .wait_tasks(&job, "every task RUNNING", WAIT, |t| t.state == "RUNNING")
            .await;
        let (victim, affected) = victim_touching_fewest_regions(&before);
        cluster.signal_executor(&victim, libc::SIGKILL);
        let after = regions_running_again(
            &cluster,
            &job,
            "the affected regions run again on the surviving executors",
            &affected,
            &victim,
        )
        .await;
        for (name, t) in &after {
            let want = u32::from(affected.contains(&t.region));
            assert_eq!(t.attempt, want, "{name}: {}", describe(&after));
        }
        // A restarted executor keeps its certificate and registers again.
        cluster.start_executor(&victim, 5);
        cluster.wait_registered(&["tm-1", "tm-2", "tm-3"]).await;
    })
    .await;
}

/// SIGSTOP of one executor: it is declared lost once the heartbeat timeout passes (not
/// before), its tasks' regions run elsewhere; after SIGCONT it learns it was declared lost,
/// kills its stale attempts and registers again, so that in the end exactly one process of
/// each task runs, the current attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_of_an_executor_fails_over_after_the_heartbeat_timeout_and_sigcont_kills_its_stale_attempts()
 {
    bounded(TEST_LIMIT, async {
        const TIMEOUT: Duration = Duration::from_secs(1);
        const INTERVAL: Duration = Duration::from_millis(100);
        let (mut cluster, job, before, _) =
            two_cities_running("sigstop", 5, &[("JOBMASTER__HEARTBEAT__TIMEOUT", "1s")]).await;
        let (victim, affected) = victim_touching_fewest_regions(&before);
        let frozen_tasks: BTreeSet<String> = before
            .values()
            .filter(|t| t.executor == victim)
            .map(|t| t.name.clone())
            .collect();

        let stopped = Instant::now();
        cluster.signal_executor(&victim, libc::SIGSTOP);
        // Detection: the victim leaves the registry, not before the heartbeat timeout (its last
        // heartbeat was at most an interval before the SIGSTOP; allow two more for scheduling).
        let (c, victim_ref) = (&cluster, victim.as_str());
        let detected = eventually(
            "the frozen executor is declared lost",
            WAIT,
            || async move {
                if c.registered().await.iter().any(|e| e == victim_ref) {
                    Err("still registered".to_owned())
                } else {
                    Ok(stopped.elapsed())
                }
            },
        )
        .await;
        assert!(
            detected >= TIMEOUT - 3 * INTERVAL,
            "declared lost after {detected:?}, before the heartbeat timeout {TIMEOUT:?}"
        );
        // ... and by the heartbeat timeout, not by something slower (the cancel timeout is 30s).
        assert!(
            detected < TIMEOUT + Duration::from_secs(10),
            "declared lost only after {detected:?}"
        );

        let after = regions_running_again(
            &cluster,
            &job,
            "the frozen executor's regions run elsewhere",
            &affected,
            &victim,
        )
        .await;
        for (name, t) in &after {
            if !affected.contains(&t.region) {
                assert_eq!(
                    (t.attempt, t.executor.as_str()),
                    (0, before[name].executor.as_str()),
                    "{name} of an unaffected region is untouched: {}",
                    describe(&after)
                );
            }
        }
        // The frozen executor could not stop its task processes: its stale attempts still run.
        // (A frozen executor cannot fence anything; what matters is what happens when it
        // wakes up.)
        let stale: Vec<TaskProcess> = cluster
            .processes_of(&victim)
            .into_iter()
            .filter(|p| p.cmdline.contains("stream.sh"))
            .collect();
        assert!(
            !stale.is_empty() && stale.iter().all(|p| frozen_tasks.contains(&p.task)),
            "the frozen executor's attempts run on while it is frozen: {stale:?}"
        );

        cluster.signal_executor(&victim, libc::SIGCONT);
        // It kills its stale attempts: one live process per task, the current attempt.
        one_process_per_task(&cluster, &after, "stream.sh").await;
        eventually(
            "no process of the woken executor's old attempts remains",
            WAIT,
            || async {
                let left: Vec<TaskProcess> = cluster
                    .processes_of(&victim)
                    .into_iter()
                    .filter(|p| p.attempt == 0 && frozen_tasks.contains(&p.task))
                    .collect();
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{left:?}"))
                }
            },
        )
        .await;
        // ... and registers again, under a new session.
        cluster.wait_registered(&["tm-1", "tm-2", "tm-3"]).await;
        let end = cluster.tasks(&job).await;
        assert_eq!(
            end.values()
                .map(|t| (t.name.clone(), t.attempt))
                .collect::<Vec<_>>(),
            after
                .values()
                .map(|t| (t.name.clone(), t.attempt))
                .collect::<Vec<_>>(),
            "waking the executor up restarted nothing: {}",
            describe(&end)
        );
        assert!(
            end.values().all(|t| t.state == "RUNNING"),
            "{}",
            describe(&end)
        );
        // Still one process per task once the woken executor is back.
        if let Err(e) = check_one_process_per_task(&cluster.processes(), &end, "stream.sh") {
            panic!("after re-registration: {e}");
        }
    })
    .await;
}

/// Opens the gate of `vertex`, waits until the job finished and checks that its output holds
/// exactly the `expected` counts; returns the finished job and its tasks by name.
async fn finish_with_exact_counts(
    cluster: &Cluster,
    job: &str,
    vertex: &str,
    output: &str,
    expected: &BTreeMap<String, u64>,
) -> (GetJobResponse, BTreeMap<String, TaskInfo>) {
    open_gate(&cluster.root, vertex);
    let done = cluster.wait_job_state(job, "FINISHED", WAIT).await;
    let text = std::fs::read_to_string(output).expect("the job wrote its output");
    assert_eq!(&parse_counts(&text), expected, "the word counts are exact");
    let tasks = done
        .tasks
        .iter()
        .map(|t| (t.name.clone(), t.clone()))
        .collect();
    (done, tasks)
}

/// The vertex of a task.
fn vertex(t: &TaskInfo) -> &str {
    t.name.split('#').next().unwrap_or_default()
}

fn attempts(tasks: &BTreeMap<String, TaskInfo>) -> BTreeMap<String, u32> {
    tasks.iter().map(|(n, t)| (n.clone(), t.attempt)).collect()
}

/// The batch word count with an executor holding shuffle output killed while the counts run:
/// the reads it ran run again (elsewhere), the counts run again (they consume re-produced
/// input), the other reads keep their attempt and their output, and the result is exactly
/// the expected counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_is_exact_after_the_executor_holding_shuffle_partitions_is_killed_mid_job() {
    bounded(TEST_LIMIT, async {
        let mut cluster =
            Cluster::start("wordcount", &[("tm-1", 3), ("tm-2", 3), ("tm-3", 3)], &[]).await;
        let (spec, output, expected) = wordcount_job(&cluster.root, &["count"]);
        let job = cluster.submit(&spec).await;
        // Reads done, counts held at their gate.
        let before = cluster
            .wait_tasks(
                &job,
                "reads FINISHED and counts RUNNING",
                WAIT,
                |t| match vertex(t) {
                    "read" => t.state == "FINISHED",
                    "count" => t.state == "RUNNING",
                    _ => t.state == "CREATED",
                },
            )
            .await;
        assert!(
            before.values().all(|t| t.attempt == 0),
            "{}",
            describe(&before)
        );
        // The executor to kill holds shuffle output: the read partitions on its disk.
        let reads_on = |e: &str| -> BTreeSet<String> {
            before
                .values()
                .filter(|t| t.name.starts_with("read#") && t.executor == e)
                .map(|t| t.name.clone())
                .collect()
        };
        let victim = ["tm-1", "tm-2", "tm-3"]
            .into_iter()
            .max_by_key(|e| {
                let counts = before
                    .values()
                    .filter(|t| t.name.starts_with("count#") && t.executor == *e)
                    .count();
                (
                    reads_on(e).len().min(1),
                    counts.min(1),
                    std::cmp::Reverse(*e),
                )
            })
            .expect("three executors")
            .to_owned();
        let lost_reads = reads_on(&victim);
        assert!(!lost_reads.is_empty(), "{}", describe(&before));
        for read in &lost_reads {
            let dir = cluster
                .data_dir(&victim)
                .join("partitions")
                .join(&job)
                .join(format!("{read}.0"))
                .join("count");
            assert!(
                dir.is_dir(),
                "{read}'s shuffle output is on {victim}: {}",
                dir.display()
            );
        }

        cluster.signal_executor(&victim, libc::SIGKILL);
        // The loss is handled (one failover) before the counts may proceed.
        cluster
            .wait_tasks(
                &job,
                "the lost reads and every count restarted",
                WAIT,
                |t| {
                    !(lost_reads.contains(&t.name) || t.name.starts_with("count#"))
                        || t.attempt >= 1
                },
            )
            .await;
        let (done, tasks) =
            finish_with_exact_counts(&cluster, &job, "count", &output, &expected).await;
        let expected_attempts: BTreeMap<String, u32> = tasks
            .keys()
            .map(|n| {
                let restarted = lost_reads.contains(n) || n.starts_with("count#");
                (n.clone(), u32::from(restarted))
            })
            .collect();
        assert_eq!(
            attempts(&tasks),
            expected_attempts,
            "only the killed executor's reads and the counts ran again: {}",
            describe(&tasks)
        );
        for (name, t) in &tasks {
            if lost_reads.contains(name) {
                assert_ne!(t.executor, victim, "{name} re-ran on a survivor");
            }
        }
        let counters = done.counters.expect("counters");
        assert_eq!(counters.failovers, 1, "one executor loss is one failover");
    })
    .await;
}

/// A persistent partition survives the loss of the executor that produced it: with the
/// counts finished (count -> write is persistent) and write not yet done, the executor of a
/// count is killed; no count runs again, and the output is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_partition_survives_its_executors_loss_without_rerunning_its_producer() {
    bounded(TEST_LIMIT, async {
        let mut cluster =
            Cluster::start("persistent", &[("tm-1", 3), ("tm-2", 3), ("tm-3", 3)], &[]).await;
        let (spec, output, expected) = wordcount_job(&cluster.root, &["write"]);
        let job = cluster.submit(&spec).await;
        let before = cluster
            .wait_tasks(&job, "counts FINISHED and write RUNNING", WAIT, |t| {
                if t.name == "write#0" {
                    t.state == "RUNNING"
                } else {
                    t.state == "FINISHED"
                }
            })
            .await;
        assert!(
            before.values().all(|t| t.attempt == 0),
            "{}",
            describe(&before)
        );
        let writer = before["write#0"].executor.clone();
        // A count's executor, preferably not the writer's.
        let victim = before
            .values()
            .filter(|t| t.name.starts_with("count#"))
            .map(|t| t.executor.clone())
            .min_by_key(|e| (*e == writer, e.clone()))
            .expect("three counts");
        let produced: Vec<String> = before
            .values()
            .filter(|t| t.name.starts_with("count#") && t.executor == victim)
            .map(|t| t.name.clone())
            .collect();
        for count in &produced {
            let file = cluster
                .root
                .join("persistent/partitions")
                .join(&job)
                .join(format!("{count}.0/write/0"));
            assert!(file.is_file(), "{count} wrote {}", file.display());
        }

        cluster.signal_executor(&victim, libc::SIGKILL);
        let survivors: Vec<&str> = ["tm-1", "tm-2", "tm-3"]
            .into_iter()
            .filter(|e| *e != victim)
            .collect();
        cluster.wait_registered(&survivors).await;
        // The loss is handled; the counts (and reads) keep their first attempt.
        let after = cluster.tasks(&job).await;
        for (name, t) in &after {
            if name != "write#0" {
                assert_eq!(
                    (t.attempt, t.state.as_str()),
                    (0, "FINISHED"),
                    "{name} did not run again: {}",
                    describe(&after)
                );
            }
        }
        let (_, tasks) =
            finish_with_exact_counts(&cluster, &job, "write", &output, &expected).await;
        for (name, t) in &tasks {
            let want = u32::from(name == "write#0" && writer == victim);
            assert_eq!(t.attempt, want, "{name}: {}", describe(&tasks));
        }
        // The finished job's persistent partitions are deleted from the shared storage, also
        // those whose producer's executor is gone.
        let job_dir = cluster.root.join("persistent/partitions").join(&job);
        eventually("the job's persistent partitions are deleted", WAIT, || {
            let left = files_under(&job_dir);
            async move {
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("still there: {left:?}"))
                }
            }
        })
        .await;
    })
    .await;
}

/// No orphans: the tasks of an executor killed with -9 die with it; an executor stopped with
/// SIGTERM kills its tasks; an executor whose JobMaster is gone keeps its tasks for the
/// reconnect timeout, then kills them; in the end no task process of the test remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_task_process_outlives_its_executor_or_the_cluster() {
    bounded(TEST_LIMIT, async {
        const RECONNECT: Duration = Duration::from_secs(2);
        let (mut cluster, job, tasks, _) = two_cities_running(
            "orphans",
            8,
            &[("JOBMASTER__EXECUTOR__JOBMASTER_RECONNECT_TIMEOUT", "2s")],
        )
        .await;
        let on = |e: &str| tasks.values().filter(|t| t.executor == e).count();
        assert!(
            on("tm-1") > 0 && on("tm-2") > 0 && on("tm-3") > 0,
            "placement spreads: {}",
            describe(&tasks)
        );

        // kill -9: the tasks die with their executor.
        cluster.signal_executor("tm-1", libc::SIGKILL);
        cluster.wait_no_processes_of("tm-1").await;

        // SIGTERM: the executor kills its tasks before it exits.
        let tasks = cluster
            .wait_tasks(&job, "every task RUNNING again", WAIT, |t| {
                t.state == "RUNNING" && t.executor != "tm-1"
            })
            .await;
        one_process_per_task(&cluster, &tasks, "stream.sh").await;
        cluster.stop_executor("tm-2").await;
        cluster.wait_no_processes_of("tm-2").await;

        // The JobMaster dies: tm-3 keeps its tasks for the reconnect timeout, then kills them.
        let tasks = cluster
            .wait_tasks(&job, "every task RUNNING on tm-3", WAIT, |t| {
                t.state == "RUNNING" && t.executor == "tm-3"
            })
            .await;
        one_process_per_task(&cluster, &tasks, "stream.sh").await;
        let killed = Instant::now();
        cluster.kill_jobmaster();
        cluster.wait_no_processes_of("tm-3").await;
        let after = killed.elapsed();
        assert!(
            after >= RECONNECT - Duration::from_millis(200),
            "tm-3 kept its tasks for the reconnect timeout {RECONNECT:?}, not {after:?}"
        );
        cluster.stop_executor("tm-3").await;

        cluster.wait_no_processes().await;
    })
    .await;
}

/// Every file below `dir` (none when it does not exist).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
