//! Crash safety of a durable JobMaster (issue 14, items 5 and 6), with real processes: a
//! `jobmaster` killed with -9 at random moments and started again on the same store and the
//! same gRPC address (where its `taskexecutor`s look for it), a `jobmaster --local` restarted as
//! a whole. (The `jobmaster` binary refusing a store it cannot use is `bad_state.rs`.)
//!
//! After every restart: no acknowledged job is lost, no finished task runs again while its
//! output survives, the tasks the executors kept are adopted (same attempt, same process), and
//! the jobs finish. "Never two live attempts of one task" is watched from outside the whole
//! time ([`AttemptWatch`] samples /proc), and batch tasks note each start in a ledger, so an
//! attempt started twice would show.
//!
//! The kill moments come from a seeded generator: `JM_CRASH_SEED` (default 14) replays a run,
//! `JM_CRASH_ROUNDS` changes the number of rounds. Waiting is polling with deadlines; the only
//! sleeps are the random delays before a kill.

mod process_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jobmaster::api::v1::inject_failure_request::Target;
use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
use jobmaster::api::v1::{
    GetJobRequest, GetJobResponse, InjectFailureRequest, JobSummary, ListExecutorsRequest,
    ListJobsRequest, SubmitJobRequest, TaskInfo,
};
use process_support::watch::{AttemptWatch, Report};
use process_support::wordcount::{open_gate, parse_counts, wordcount_job};
use process_support::{
    Cluster, JOBMASTER, TestDir, bounded, describe, eventually, quick_restarts, stream_command,
    streaming_job,
};

const TEST_LIMIT: Duration = Duration::from_secs(150);
const WAIT: Duration = Duration::from_secs(60);
/// How often the attempt watch samples /proc.
const SAMPLE: Duration = Duration::from_millis(40);
/// A restarted JobMaster fails over what nobody reported after this long.
const ENV: &[(&str, &str)] = &[("JOBMASTER__RECOVERY__RECONCILE_TIMEOUT", "4s")];

/// A small deterministic generator (splitmix64) for the kill moments.
struct Rng(u64);

impl Rng {
    /// Seeded from `JM_CRASH_SEED` (default 14), mixed with `salt` so tests differ.
    fn new(salt: u64) -> Rng {
        let seed = std::env::var("JM_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(14);
        eprintln!("JM_CRASH_SEED={seed}");
        Rng(seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// Rounds of a randomized test: `JM_CRASH_ROUNDS`, or `default`.
fn rounds(default: u32) -> u32 {
    std::env::var("JM_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Task starts noted by the tasks themselves: a wrapper (`ledger.sh LEDGER DELAY COMMAND...`)
/// appends `job vertex#subtask attempt executor pid` to the ledger, waits DELAY seconds, then
/// runs COMMAND as its child and exits as it did. The wrapper lives as long as the attempt, so
/// `ledger.sh` in a command line marks a live attempt for the [`AttemptWatch`].
struct Ledger {
    script: PathBuf,
    file: PathBuf,
}

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Start {
    job: String,
    task: String,
    attempt: u32,
    executor: String,
}

impl Ledger {
    const MARKER: &'static str = "ledger.sh";

    fn new(root: &Path) -> Ledger {
        let script = root.join(Ledger::MARKER);
        std::fs::write(
            &script,
            "#!/bin/sh\n# ledger.sh LEDGER DELAY COMMAND...: notes this attempt's start, waits, \
             runs COMMAND.\nledger=$1\ndelay=$2\nshift 2\n\
             echo \"$JM_JOB_ID $JM_VERTEX#$JM_SUBTASK $JM_ATTEMPT $JM_EXECUTOR_ID $$\" >> \"$ledger\"\n\
             if [ \"$delay\" != 0 ]; then sleep \"$delay\"; fi\n\"$@\"\n",
        )
        .expect("write ledger.sh");
        Ledger {
            script,
            file: root.join("ledger.txt"),
        }
    }

    /// `spec` with every vertex's command run through the ledger after `delay` seconds.
    fn wrap(&self, mut spec: serde_json::Value, delay: &str) -> serde_json::Value {
        for v in spec["vertices"].as_array_mut().expect("vertices") {
            let command = v["command"].as_array().expect("command").clone();
            let mut wrapped = vec![
                serde_json::json!("sh"),
                serde_json::json!(self.script.display().to_string()),
                serde_json::json!(self.file.display().to_string()),
                serde_json::json!(delay),
            ];
            wrapped.extend(command);
            v["command"] = serde_json::Value::Array(wrapped);
        }
        spec
    }

    fn starts(&self) -> Vec<Start> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                assert_eq!(f.len(), 5, "ledger line {l:?}");
                Start {
                    job: f[0].to_owned(),
                    task: f[1].to_owned(),
                    attempt: f[2].parse().expect("attempt"),
                    executor: f[3].to_owned(),
                }
            })
            .collect()
    }

    /// Starts per task of `job`.
    fn starts_of(&self, job: &str) -> BTreeMap<String, Vec<Start>> {
        let mut by_task: BTreeMap<String, Vec<Start>> = BTreeMap::new();
        for s in self.starts().into_iter().filter(|s| s.job == job) {
            by_task.entry(s.task.clone()).or_default().push(s);
        }
        by_task
    }

    /// Panics if any attempt of any task started twice.
    fn assert_no_attempt_started_twice(&self) {
        let mut seen = BTreeSet::new();
        for s in self.starts() {
            assert!(
                seen.insert((s.job.clone(), s.task.clone(), s.attempt)),
                "attempt {} of {} (job {}) started twice: {:?}",
                s.attempt,
                s.task,
                s.job,
                self.starts()
            );
        }
    }
}

/// Panics if the watch saw two attempts of one task alive at once. Overlaps with an orphan of
/// an executor killed with -9 (its shim stopping it) are printed, not failed: see the module
/// doc of `process_support::watch`.
fn assert_never_two_live_attempts(report: &Report) {
    eprintln!(
        "attempt watch: {} samples, {} tasks seen",
        report.samples,
        report.seen.len()
    );
    if !report.orphan_overlaps.is_empty() {
        eprintln!(
            "attempt watch: an orphan of a killed executor outlived the JobMaster's redeploy: {:?}",
            report.orphan_overlaps
        );
    }
    assert!(report.samples > 0, "the watch took no sample");
    assert!(
        report.overlaps.is_empty(),
        "two live attempts of one task at once: {:?}",
        report.overlaps
    );
}

fn by_name(job: &GetJobResponse) -> BTreeMap<String, TaskInfo> {
    job.tasks
        .iter()
        .map(|t| (t.name.clone(), t.clone()))
        .collect()
}

fn vertex(name: &str) -> &str {
    name.split('#').next().unwrap_or_default()
}

async fn list_jobs(cluster: &Cluster) -> Vec<JobSummary> {
    cluster
        .client()
        .list_jobs(ListJobsRequest {})
        .await
        .unwrap_or_else(|s| panic!("ListJobs: {}", s.message()))
        .into_inner()
        .jobs
}

/// Waits until every task of `job` runs with exactly one live process (its `marker` process
/// of the task's current attempt, on the task's executor) and no other attempt of it lives;
/// returns the tasks and their pids.
async fn running_with_one_process_each(
    cluster: &Cluster,
    job: &str,
    marker: &str,
) -> (BTreeMap<String, TaskInfo>, BTreeMap<String, i32>) {
    eventually(
        "every task RUNNING with exactly one live process, of its current attempt",
        WAIT,
        || async move {
            let j = cluster.job(job).await;
            let tasks = by_name(&j);
            if j.state != "RUNNING" || tasks.values().any(|t| t.state != "RUNNING") {
                return Err(format!("job {}: {}", j.state, describe(&tasks)));
            }
            let mut pids: BTreeMap<String, Vec<(i32, u32, String)>> = BTreeMap::new();
            for p in cluster
                .processes()
                .into_iter()
                .filter(|p| p.job == job && p.cmdline.contains(marker))
            {
                pids.entry(p.task.clone()).or_default().push((
                    p.pid,
                    p.attempt,
                    p.executor.clone(),
                ));
            }
            let mut one = BTreeMap::new();
            for (name, t) in &tasks {
                match pids.get(name).map(Vec::as_slice) {
                    Some([(pid, attempt, executor)])
                        if *attempt == t.attempt && *executor == t.executor =>
                    {
                        one.insert(name.clone(), *pid);
                    }
                    other => {
                        return Err(format!(
                            "{name} (attempt {} on {}) has processes {other:?}",
                            t.attempt, t.executor
                        ));
                    }
                }
            }
            Ok((tasks, one))
        },
    )
    .await
}

/// A batch job of two vertices: `p` (2 subtasks) feeds `c` (1) through a blocking all-to-all
/// edge; every task takes about 0.2 s.
fn small_batch(name: &str, ledger: &Ledger) -> serde_json::Value {
    let spec = serde_json::json!({
        "name": name,
        "failover": "region",
        "restart": quick_restarts("100ms"),
        "vertices": [
            { "id": "p", "parallelism": 2, "command": ["true"] },
            { "id": "c", "parallelism": 1, "command": ["true"] },
        ],
        "edges": [{ "from": "p", "to": "c", "pattern": "all-to-all", "exchange": "blocking" }],
    });
    ledger.wrap(spec, "0.2")
}

/// Item 5, a submit racing a kill -9: what the client was told is accepted exists after the
/// restart (exactly once); what it was not told may or may not, and every job that exists
/// finishes, with no attempt started twice and never two attempts of a task alive at once.
/// The jobs of earlier rounds are still running when later kills come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_acknowledged_before_a_kill_9_is_never_lost() {
    bounded(TEST_LIMIT, async {
        let mut rng = Rng::new(1);
        let mut cluster = Cluster::start("crash-submit", &[("tm-1", 4), ("tm-2", 4)], ENV).await;
        let ledger = Ledger::new(&cluster.root);
        let watch = AttemptWatch::start(&cluster.root, Ledger::MARKER, SAMPLE);
        // name -> job id, of every job that exists.
        let mut known: BTreeMap<String, String> = BTreeMap::new();
        let (mut acknowledged, mut refused_but_kept, mut refused) = (0, 0, 0);
        for round in 0..rounds(12) {
            let name = format!("race-{round}");
            let request = SubmitJobRequest {
                spec: small_batch(&name, &ledger).to_string(),
                format: "json".into(),
            };
            let mut client = cluster.client();
            let submit = tokio::spawn(async move { client.submit_job(request).await });
            // The kill's moment (the experiment's random variable, not a wait).
            tokio::time::sleep(Duration::from_micros(rng.below(6_000))).await;
            cluster.kill_jobmaster();
            let outcome = submit.await.expect("the submit task");
            cluster.restart_jobmaster().await;
            cluster.wait_registered(&["tm-1", "tm-2"]).await;

            let jobs = list_jobs(&cluster).await;
            let mut names = BTreeSet::new();
            for j in &jobs {
                assert!(names.insert(j.name.clone()), "job {} listed twice", j.name);
            }
            for (n, id) in &known {
                assert!(
                    jobs.iter().any(|j| &j.job_id == id && &j.name == n),
                    "round {round}: job {n} ({id}) existed before the kill and is gone"
                );
            }
            let found = jobs.iter().find(|j| j.name == name);
            match outcome {
                Ok(answer) => {
                    let id = answer.into_inner().job_id;
                    let found = found.unwrap_or_else(|| {
                        panic!("round {round}: job {name} ({id}) was acknowledged, then lost")
                    });
                    assert_eq!(found.job_id, id, "round {round}: the acknowledged id");
                    acknowledged += 1;
                    known.insert(name, id);
                }
                Err(status) => {
                    eprintln!(
                        "round {round}: the submit failed ({:?}: {}); kept: {}",
                        status.code(),
                        status.message(),
                        found.is_some()
                    );
                    if let Some(found) = found {
                        refused_but_kept += 1;
                        known.insert(name, found.job_id.clone());
                    } else {
                        refused += 1;
                    }
                }
            }
        }
        eprintln!(
            "submits: {acknowledged} acknowledged, {refused_but_kept} failed but kept, \
             {refused} failed and not kept"
        );
        for (name, id) in &known {
            let done = cluster.wait_job_state(id, "FINISHED", WAIT).await;
            assert_eq!(&done.name, name);
        }
        ledger.assert_no_attempt_started_twice();
        assert_never_two_live_attempts(&watch.finish());
    })
    .await;
}

/// Item 5, a failover cut short by a kill -9: a task's failure is injected, or an executor
/// is killed, and the JobMaster is killed a random moment later (before, during or after the
/// restart of the affected regions), in some rounds once more while the restarted one
/// reconciles with its executors. The restarted JobMaster finishes the failover: every
/// task runs again with one process; the regions the fault did not touch kept their attempts
/// and their very processes; never two attempts of a task alive at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_cut_short_by_a_kill_9_is_finished_by_the_restarted_jobmaster() {
    bounded(TEST_LIMIT, async {
        let mut rng = Rng::new(2);
        let executors = ["tm-1", "tm-2", "tm-3"];
        let all: Vec<(&str, u32)> = executors.iter().map(|e| (*e, 4)).collect();
        let mut cluster = Cluster::start("crash-failover", &all, ENV).await;
        let watch = AttemptWatch::start(&cluster.root, "stream.sh", SAMPLE);
        let spec = streaming_job(
            "failover",
            &["beijing", "shanghai"],
            2,
            &stream_command(),
            quick_restarts("100ms"),
        );
        let job = cluster.submit(&spec).await;
        let (mut tasks, mut pids) =
            running_with_one_process_each(&cluster, &job, "stream.sh").await;
        for round in 0..rounds(8) {
            let names: Vec<&String> = tasks.keys().collect();
            let target = tasks[names[rng.below(names.len() as u64) as usize]].clone();
            // 0: a task fails, then the jobmaster is killed; 1: an executor is killed, then
            // the jobmaster; 2: the jobmaster is killed, then an executor while it is down
            // (the restarted jobmaster never hears from it: its tasks fail over at the
            // reconcile timeout).
            let fault = rng.below(3);
            let killed = fault > 0;
            let on_victim: BTreeSet<u32> = tasks
                .values()
                .filter(|t| t.executor == target.executor)
                .map(|t| t.region)
                .collect();
            let delay = rng.millis(0, 250);
            let touched = match fault {
                0 => {
                    cluster
                        .client()
                        .inject_failure(InjectFailureRequest {
                            job_id: job.clone(),
                            target: Some(Target::Task(target.name.clone())),
                            message: format!("round {round}"),
                            ..InjectFailureRequest::default()
                        })
                        .await
                        .unwrap_or_else(|s| panic!("InjectFailure: {}", s.message()));
                    eprintln!(
                        "round {round}: failed task {}, jobmaster killed {delay:?} later",
                        target.name
                    );
                    tokio::time::sleep(delay).await;
                    cluster.kill_jobmaster();
                    BTreeSet::from([target.region])
                }
                1 => {
                    cluster.signal_executor(&target.executor, libc::SIGKILL);
                    eprintln!(
                        "round {round}: killed executor {}, jobmaster killed {delay:?} later",
                        target.executor
                    );
                    tokio::time::sleep(delay).await;
                    cluster.kill_jobmaster();
                    on_victim
                }
                _ => {
                    cluster.kill_jobmaster();
                    eprintln!(
                        "round {round}: jobmaster killed, then executor {}",
                        target.executor
                    );
                    cluster.signal_executor(&target.executor, libc::SIGKILL);
                    on_victim
                }
            };
            cluster.restart_jobmaster().await;
            if rng.below(3) == 0 {
                // Killed again while it reconciles with its executors.
                let again = rng.millis(0, 300);
                eprintln!(
                    "round {round}: the restarted jobmaster killed {again:?} after its start"
                );
                tokio::time::sleep(again).await;
                cluster.kill_jobmaster();
                cluster.restart_jobmaster().await;
            }

            let (after, after_pids) =
                running_with_one_process_each(&cluster, &job, "stream.sh").await;
            for (name, t) in &after {
                let before = &tasks[name];
                if touched.contains(&before.region) {
                    assert!(
                        t.attempt > before.attempt,
                        "round {round}: {name} of a touched region ran again: {}",
                        describe(&after)
                    );
                } else {
                    assert_eq!(
                        (t.attempt, t.executor.as_str(), after_pids[name]),
                        (before.attempt, before.executor.as_str(), pids[name]),
                        "round {round}: {name} of an untouched region kept its attempt and \
                         process: {}",
                        describe(&after)
                    );
                }
            }
            if killed {
                cluster.start_executor(&target.executor, 4);
                cluster.wait_registered(&executors).await;
            }
            tasks = after;
            pids = after_pids;
        }
        assert_never_two_live_attempts(&watch.finish());
    })
    .await;
}

/// The word count with a pause before every task, so that kills land in every phase.
fn slow_wordcount(
    cluster: &Cluster,
    ledger: &Ledger,
) -> (serde_json::Value, String, BTreeMap<String, u64>) {
    let (spec, output, expected) = wordcount_job(&cluster.root, &[]);
    (ledger.wrap(spec, "0.3"), output, expected)
}

/// Item 5, a batch job progressing through kills: word counts are run one after the other
/// and the JobMaster is killed with -9 at random moments of each. After every restart the
/// tasks that had finished are still FINISHED with the same attempt (their partitions
/// survived on live executors: nothing to run again); every job finishes with exactly the
/// expected counts, no attempt started twice, never two attempts of a task alive at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_job_progresses_through_repeated_kill_9_of_its_jobmaster() {
    bounded(TEST_LIMIT, async {
        let mut rng = Rng::new(3);
        let executors = [("tm-1", 3), ("tm-2", 3), ("tm-3", 3)];
        let mut cluster = Cluster::start("crash-batch", &executors, ENV).await;
        let ids: Vec<&str> = executors.iter().map(|(e, _)| *e).collect();
        let ledger = Ledger::new(&cluster.root);
        let watch = AttemptWatch::start(&cluster.root, Ledger::MARKER, SAMPLE);
        let mut kills = 0;
        for round in 0..rounds(12).div_ceil(3) {
            let (spec, output, expected) = slow_wordcount(&cluster, &ledger);
            let _ = std::fs::remove_file(&output);
            let job = cluster.submit(&spec).await;
            // Tasks seen FINISHED, with their attempt: they must never run again.
            let mut finished: BTreeMap<String, u32> = BTreeMap::new();
            for _ in 0..5 {
                tokio::time::sleep(rng.millis(0, 600)).await;
                let before = cluster.job(&job).await;
                if before.state == "FINISHED" {
                    break;
                }
                for t in before.tasks.iter().filter(|t| t.state == "FINISHED") {
                    finished.insert(t.name.clone(), t.attempt);
                }
                cluster.kill_jobmaster();
                kills += 1;
                cluster.restart_jobmaster().await;
                cluster.wait_registered(&ids).await;
                let after = by_name(&cluster.job(&job).await);
                for (name, attempt) in &finished {
                    let t = &after[name];
                    assert_eq!(
                        (t.state.as_str(), t.attempt),
                        ("FINISHED", *attempt),
                        "round {round}: {name} had finished before the kill: {}",
                        describe(&after)
                    );
                }
            }
            let done = cluster.wait_job_state(&job, "FINISHED", WAIT).await;
            let text = std::fs::read_to_string(&output).expect("the job wrote its output");
            assert_eq!(parse_counts(&text), expected, "round {round}: exact counts");
            let tasks = by_name(&done);
            for (name, attempt) in &finished {
                assert_eq!(
                    tasks[name].attempt, *attempt,
                    "round {round}: {name} ran again"
                );
            }
            eprintln!(
                "round {round}: {kills} kills so far; finished with {}",
                describe(&tasks)
            );
            let starts = ledger.starts_of(&job);
            for (name, attempt) in &finished {
                assert!(
                    starts[name].iter().all(|s| s.attempt <= *attempt),
                    "round {round}: {name} started after it had finished: {:?}",
                    starts[name]
                );
            }
        }
        eprintln!("{kills} kills");
        assert!(kills > 0, "the jobmaster was killed at least once");
        ledger.assert_no_attempt_started_twice();
        assert_never_two_live_attempts(&watch.finish());
    })
    .await;
}

/// Item 5, the batch word count: the JobMaster is killed with -9 twice in the middle of the
/// job — with the reads finished and the counts running, then with the counts finished and
/// the write running — and the job still gives exactly the expected counts. No task runs
/// twice: every attempt number stays 0, and each task noted exactly one start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordcount_is_exact_and_reruns_nothing_with_its_jobmaster_killed_twice() {
    bounded(TEST_LIMIT, async {
        let executors = [("tm-1", 3), ("tm-2", 3), ("tm-3", 3)];
        let mut cluster = Cluster::start("crash-wordcount", &executors, ENV).await;
        let ids: Vec<&str> = executors.iter().map(|(e, _)| *e).collect();
        let ledger = Ledger::new(&cluster.root);
        let watch = AttemptWatch::start(&cluster.root, Ledger::MARKER, SAMPLE);
        let (spec, output, expected) = wordcount_job(&cluster.root, &["count", "write"]);
        let job = cluster.submit(&ledger.wrap(spec, "0")).await;

        // First kill: the reads are done (their partitions on the executors' disks), the
        // counts are running (held at their gate).
        cluster
            .wait_tasks(
                &job,
                "reads FINISHED, counts RUNNING",
                WAIT,
                |t| match vertex(&t.name) {
                    "read" => t.state == "FINISHED",
                    "count" => t.state == "RUNNING",
                    _ => t.state == "CREATED",
                },
            )
            .await;
        cluster.kill_jobmaster();
        cluster.restart_jobmaster().await;
        cluster.wait_registered(&ids).await;
        let after = cluster
            .wait_tasks(
                &job,
                "reads FINISHED, counts RUNNING again",
                WAIT,
                |t| match vertex(&t.name) {
                    "read" => t.state == "FINISHED",
                    "count" => t.state == "RUNNING",
                    _ => t.state == "CREATED",
                },
            )
            .await;
        assert!(
            after.values().all(|t| t.attempt == 0),
            "nothing restarted: {}",
            describe(&after)
        );

        // Second kill: the counts are done (persistent partitions), the write runs.
        open_gate(&cluster.root, "count");
        cluster
            .wait_tasks(&job, "counts FINISHED, write RUNNING", WAIT, |t| {
                t.state
                    == if t.name == "write#0" {
                        "RUNNING"
                    } else {
                        "FINISHED"
                    }
            })
            .await;
        cluster.kill_jobmaster();
        cluster.restart_jobmaster().await;
        cluster.wait_registered(&ids).await;
        open_gate(&cluster.root, "write");
        let done = cluster.wait_job_state(&job, "FINISHED", WAIT).await;
        let text = std::fs::read_to_string(&output).expect("the job wrote its output");
        assert_eq!(parse_counts(&text), expected, "the word counts are exact");
        let tasks = by_name(&done);
        assert!(
            tasks.values().all(|t| t.attempt == 0),
            "every task kept attempt 0: {}",
            describe(&tasks)
        );
        assert_eq!(done.counters.expect("counters").failovers, 0);
        let starts = ledger.starts_of(&job);
        assert_eq!(
            starts.keys().collect::<Vec<_>>(),
            tasks.keys().collect::<Vec<_>>(),
            "every task started"
        );
        for (name, s) in &starts {
            assert_eq!(s.len(), 1, "{name} started once: {s:?}");
        }
        assert_never_two_live_attempts(&watch.finish());
    })
    .await;
}

/// Item 5, tasks that end while the JobMaster is down: the counts of the word count finish
/// (their output written) after the JobMaster was killed with -9; their executors keep the
/// reports and list the attempts as FINISHED when they register with the restarted one, which
/// takes them as finished — nothing runs again — and the job finishes with exact counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_finishing_while_the_jobmaster_is_down_are_not_run_again() {
    bounded(TEST_LIMIT, async {
        let executors = [("tm-1", 3), ("tm-2", 3), ("tm-3", 3)];
        let mut cluster = Cluster::start("crash-finish-down", &executors, ENV).await;
        let ids: Vec<&str> = executors.iter().map(|(e, _)| *e).collect();
        let ledger = Ledger::new(&cluster.root);
        let watch = AttemptWatch::start(&cluster.root, Ledger::MARKER, SAMPLE);
        let (spec, output, expected) = wordcount_job(&cluster.root, &["count"]);
        let job = cluster.submit(&ledger.wrap(spec, "0")).await;
        cluster
            .wait_tasks(
                &job,
                "reads FINISHED, counts RUNNING",
                WAIT,
                |t| match vertex(&t.name) {
                    "read" => t.state == "FINISHED",
                    "count" => t.state == "RUNNING",
                    _ => t.state == "CREATED",
                },
            )
            .await;
        cluster.kill_jobmaster();
        open_gate(&cluster.root, "count");
        let (c, j) = (&cluster, job.as_str());
        eventually(
            "the counts ended while the jobmaster is down",
            WAIT,
            || async move {
                let left: Vec<String> = c
                    .processes()
                    .into_iter()
                    .filter(|p| p.job == j && p.task.starts_with("count#"))
                    .map(|p| format!("{} {}", p.task, p.pid))
                    .collect();
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("still running: {left:?}"))
                }
            },
        )
        .await;
        cluster.restart_jobmaster().await;
        cluster.wait_registered(&ids).await;
        let done = cluster.wait_job_state(&job, "FINISHED", WAIT).await;
        let text = std::fs::read_to_string(&output).expect("the job wrote its output");
        assert_eq!(parse_counts(&text), expected, "the word counts are exact");
        let tasks = by_name(&done);
        assert!(
            tasks.values().all(|t| t.attempt == 0),
            "every task kept attempt 0: {}",
            describe(&tasks)
        );
        assert_eq!(done.counters.expect("counters").failovers, 0);
        for (name, s) in &ledger.starts_of(&job) {
            assert_eq!(s.len(), 1, "{name} started once: {s:?}");
        }
        assert_never_two_live_attempts(&watch.finish());
    })
    .await;
}

/// Item 5, adoption after a kill -9: a 100-task streaming job on 5 executors keeps running
/// through a JobMaster killed with -9 and started again: every task is RUNNING again with the
/// same attempt number, on the same executor, as the same process (nothing was restarted),
/// without a failover, and the restarted JobMaster counts 100 adopted attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_jobmaster_adopts_every_running_task_of_a_kill_9() {
    bounded(TEST_LIMIT, async {
        let executors = [
            ("tm-1", 20),
            ("tm-2", 20),
            ("tm-3", 20),
            ("tm-4", 20),
            ("tm-5", 20),
        ];
        let mut cluster = Cluster::start("crash-adopt", &executors, ENV).await;
        let ids: Vec<&str> = executors.iter().map(|(e, _)| *e).collect();
        let watch = AttemptWatch::start(&cluster.root, "stream.sh", SAMPLE);
        let spec = streaming_job(
            "adopt",
            &["beijing", "shanghai", "shenzhen", "chengdu", "wuhan"],
            10,
            &stream_command(),
            quick_restarts("100ms"),
        );
        let job = cluster.submit(&spec).await;
        let (before, pids) = running_with_one_process_each(&cluster, &job, "stream.sh").await;
        assert_eq!(before.len(), 100);
        let used: BTreeSet<&str> = before.values().map(|t| t.executor.as_str()).collect();
        assert!(
            used.len() > 1,
            "spread over executors: {}",
            describe(&before)
        );

        cluster.kill_jobmaster();
        cluster.restart_jobmaster().await;
        cluster.wait_registered(&ids).await;
        let (after, after_pids) = running_with_one_process_each(&cluster, &job, "stream.sh").await;
        for (name, t) in &before {
            let now = &after[name];
            assert_eq!(
                (now.attempt, now.executor.as_str(), after_pids[name]),
                (t.attempt, t.executor.as_str(), pids[name]),
                "{name}: same attempt, executor and process"
            );
        }
        let job_now = cluster.job(&job).await;
        assert_eq!(job_now.counters.expect("counters").failovers, 0);
        let adopted = cluster
            .metric(&format!("jobmaster_adopted_attempts_total{{job=\"{job}\""))
            .await;
        assert_eq!(adopted, Some(100.0), "{}", cluster.metrics().await);
        assert_never_two_live_attempts(&watch.finish());
    })
    .await;
}

/// A `jobmaster --local` in `root` (so its store is `root/jobmaster-state`), with its
/// temporary folders under `root/tmp`, logging JSON to `root/local.log`.
struct Local {
    child: Child,
    client: JobMasterServiceClient<tonic::transport::Channel>,
}

impl Local {
    async fn start(root: &Path) -> Local {
        let log = root.join("local.log");
        let offset = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the log");
        std::fs::create_dir_all(root.join("tmp")).expect("tmp");
        let mut child = Command::new(JOBMASTER)
            .args(["--local", "2", "--local-slots", "4"])
            .args([
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .env("TMPDIR", root.join("tmp"))
            .env("RUST_LOG", "info")
            .env("JOBMASTER__HEARTBEAT__INTERVAL", "100ms")
            .env("JOBMASTER__HEARTBEAT__TIMEOUT", "3s")
            .env("JOBMASTER__EXECUTOR__CANCEL_GRACE", "2s")
            .env("JOBMASTER__EXECUTOR__MIN_FREE_DISK_BYTES", "0")
            .env("JOBMASTER__RECOVERY__RECONCILE_TIMEOUT", "4s")
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log handle"))
            .stderr(out)
            .spawn()
            .expect("start jobmaster --local");
        let grpc = eventually("the jobmaster listens", WAIT, || {
            let text = std::fs::read(&log)
                .map(|b| String::from_utf8_lossy(b.get(offset..).unwrap_or_default()).into_owned())
                .unwrap_or_default();
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            async move {
                if exited {
                    panic!("jobmaster --local exited at start:\n{text}");
                }
                text.lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .find(|v| v["fields"]["message"] == "jobmaster listening")
                    .and_then(|v| v["fields"]["grpc"].as_str().map(str::to_owned))
                    .ok_or_else(|| "no `jobmaster listening` line yet".to_owned())
            }
        })
        .await;
        let url = format!("http://{grpc}");
        let client = eventually("connect to the jobmaster", WAIT, || {
            let url = url.clone();
            async move {
                JobMasterServiceClient::connect(url)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await;
        let local = Local { child, client };
        eventually("the local executors register", WAIT, || async {
            let mut ids: Vec<String> = local
                .client
                .clone()
                .list_executors(ListExecutorsRequest::default())
                .await
                .map_err(|s| s.to_string())?
                .into_inner()
                .executors
                .into_iter()
                .map(|e| e.id)
                .collect();
            ids.sort();
            if ids == ["local-0", "local-1"] {
                Ok(())
            } else {
                Err(format!("{ids:?}"))
            }
        })
        .await;
        local
    }

    async fn job(&self, job: &str) -> GetJobResponse {
        self.client
            .clone()
            .get_job(GetJobRequest {
                job_id: job.to_owned(),
                task_limit: 10_000,
                ..GetJobRequest::default()
            })
            .await
            .unwrap_or_else(|s| panic!("GetJob: {}", s.message()))
            .into_inner()
    }

    async fn wait_job(
        &self,
        job: &str,
        what: &str,
        ok: impl Fn(&GetJobResponse) -> bool,
    ) -> GetJobResponse {
        let ok = &ok;
        eventually(what, WAIT, || async move {
            let j = self.job(job).await;
            if ok(&j) {
                Ok(j)
            } else {
                Err(format!("job {}: {}", j.state, describe(&by_name(&j))))
            }
        })
        .await
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Item 5, `jobmaster --local 2` killed with -9 and started again: its executors were in the
/// process, so its tasks and the partitions on their disks died with it. The restarted
/// daemon (same working directory, so the same `./jobmaster-state`) loads the job, sees its
/// new executors register without them, and fails over once by the rules — the running
/// counts and the reads whose output is gone run again, the write that never ran is placed —
/// and the word count finishes with exactly the expected counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_cluster_finishes_its_job_after_the_whole_process_is_killed() {
    bounded(TEST_LIMIT, async {
        let dir = TestDir::new("local");
        let root = &dir.0;
        let mut local = Local::start(root).await;
        let (spec, output, expected) = wordcount_job(root, &["count"]);
        let job = process_support::submit_to(local.client.clone(), &spec).await;
        let before = local
            .wait_job(&job, "reads FINISHED, counts RUNNING", |j| {
                j.tasks.iter().all(|t| match vertex(&t.name) {
                    "read" => t.state == "FINISHED",
                    "count" => t.state == "RUNNING",
                    _ => t.state == "CREATED",
                })
            })
            .await;
        let failovers = before.counters.expect("counters").failovers;
        assert_eq!(failovers, 0);

        local.kill();
        assert!(
            root.join("jobmaster-state/jobmaster.redb").is_file(),
            "the store is in the working directory"
        );
        let local = Local::start(root).await;
        let after = local
            .wait_job(&job, "the counts and the reads ran again", |j| {
                j.state == "RUNNING"
                    && j.tasks.iter().all(|t| match vertex(&t.name) {
                        "read" => t.state == "FINISHED" && t.attempt == 1,
                        "count" => t.state == "RUNNING" && t.attempt == 1,
                        _ => t.state == "CREATED" && t.attempt == 0,
                    })
            })
            .await;
        assert_eq!(
            after.counters.expect("counters").failovers,
            1,
            "one failover for the whole job: {}",
            describe(&by_name(&after))
        );
        open_gate(root, "count");
        let done = local
            .wait_job(&job, "the job FINISHED", |j| j.state == "FINISHED")
            .await;
        let text = std::fs::read_to_string(&output).expect("the job wrote its output");
        assert_eq!(parse_counts(&text), expected, "the word counts are exact");
        assert_eq!(done.counters.expect("counters").failovers, 1);
    })
    .await;
}
