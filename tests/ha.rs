//! JobMaster high availability on etcd, with real processes (DESIGN §4): a 3-member etcd on
//! loopback, two `jobmaster --ha etcd`, real taskexecutors that know both jobmasters, and
//! task processes found through /proc.
//!
//! Skipped (with a message) when the `etcd` binary is missing; `.ci/run` installs
//! `etcd-server`.

mod process_support;

use std::collections::BTreeMap;
use std::time::Duration;

use jobmaster::api::v1::{ListJobsRequest, TaskInfo};
use process_support::ha::{HaCluster, etcd_available};
use process_support::{bounded, describe, quick_restarts, stream_command, streaming_job};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const WAIT: Duration = Duration::from_secs(60);

/// Fast leases and heartbeats, so failovers take seconds.
const ENV: &[(&str, &str)] = &[("JOBMASTER__HA__LEASE_TTL", "2s")];

macro_rules! need_etcd {
    () => {
        if !etcd_available() {
            eprintln!("skipped: etcd is not installed (apt-get install etcd-server)");
            return;
        }
    };
}

async fn submit(ha: &HaCluster, spec: &serde_json::Value) -> String {
    process_support::submit_to(ha.client().await, spec).await
}

/// `job` RUNNING with every task RUNNING and exactly one live task process each, of its
/// current attempt on its executor; returns (task → (attempt, executor, pid)).
async fn running(ha: &HaCluster, job: &str) -> BTreeMap<String, (u32, String, i32)> {
    process_support::eventually(
        "every task RUNNING with exactly one live process",
        WAIT,
        || async move {
            let j = ha.job(job).await?;
            let tasks: BTreeMap<String, TaskInfo> = j
                .tasks
                .iter()
                .map(|t| (t.name.clone(), t.clone()))
                .collect();
            if j.state != "RUNNING" || tasks.values().any(|t| t.state != "RUNNING") {
                return Err(format!("job {}: {}", j.state, describe(&tasks)));
            }
            let mut out = BTreeMap::new();
            let processes = ha.cluster.processes();
            for (name, t) in &tasks {
                let own: Vec<_> = processes
                    .iter()
                    // The task's shell, not the `sleep` it runs now and then.
                    .filter(|p| p.job == job && p.task == *name && p.cmdline.contains("stream.sh"))
                    .collect();
                match own.as_slice() {
                    [p] if p.attempt == t.attempt && p.executor == t.executor => {
                        out.insert(name.clone(), (t.attempt, t.executor.clone(), p.pid));
                    }
                    other => {
                        return Err(format!(
                            "{name} (attempt {} on {}) has {} processes",
                            t.attempt,
                            t.executor,
                            other.len()
                        ));
                    }
                }
            }
            Ok(out)
        },
    )
    .await
}

/// The health service's overall status at `url`.
async fn health(url: &str) -> ServingStatus {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status;
    ServingStatus::try_from(status).expect("a status")
}

fn job_spec(name: &str) -> serde_json::Value {
    streaming_job(
        name,
        &["north", "south"],
        2,
        &stream_command(),
        quick_restarts("100ms"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_by_a_standby_that_adopts_every_task_without_a_restart() {
    need_etcd!();
    bounded(Duration::from_secs(240), async {
        let mut ha = HaCluster::start("ha-kill", 3, 2, &[("a", 8), ("b", 8)], ENV).await;
        let (old, first) = ha.wait_leader(WAIT).await;
        assert_eq!(health(&ha.url(old)).await, ServingStatus::Serving);
        assert_eq!(
            health(&ha.url(1 - old)).await,
            ServingStatus::NotServing,
            "the standby"
        );
        let job = submit(&ha, &job_spec("kill-leader")).await;
        let before = running(&ha, &job).await;

        ha.signal_jm(old, libc::SIGKILL);
        let (new, lead) = ha.wait_leader_other_than(old, WAIT).await;
        assert_ne!(new, old);
        assert!(
            lead.epoch > first.epoch,
            "the epoch grows: {} then {}",
            first.epoch,
            lead.epoch
        );
        assert_eq!(lead.ha_mode, "etcd");
        assert_eq!(lead.leader_endpoint, ha.url(new));

        let after = running(&ha, &job).await;
        assert_eq!(
            after, before,
            "same attempts on the same executors, same processes"
        );
        let j = ha.job(&job).await.expect("GetJob");
        let counters = j.counters.expect("counters");
        assert_eq!(
            counters.adopted_attempts,
            before.len() as u64,
            "every attempt adopted"
        );
        assert_eq!(counters.restarts, 0, "no restart");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_is_replaced_and_on_waking_steps_down_without_a_command_or_a_write() {
    need_etcd!();
    bounded(Duration::from_secs(240), async {
        let mut ha = HaCluster::start("ha-stop", 3, 2, &[("a", 8), ("b", 8)], ENV).await;
        let (old, _) = ha.wait_leader(WAIT).await;
        let job = submit(&ha, &job_spec("freeze-leader")).await;
        running(&ha, &job).await;

        ha.signal_jm(old, libc::SIGSTOP);
        let (new, _) = ha.wait_leader_other_than(old, WAIT).await;
        assert_ne!(new, old);
        // Under the new leader (it may have restarted tasks the executors fenced).
        let settled = running(&ha, &job).await;
        let etcd = ha.etcd.client();
        let revisions = || async {
            etcd.range_prefix(b"/jobmaster/default/")
                .await
                .expect("read etcd")
                .into_iter()
                .map(|kv| {
                    (
                        String::from_utf8_lossy(&kv.key).into_owned(),
                        kv.mod_revision,
                    )
                })
                .collect::<BTreeMap<_, _>>()
        };
        let stored = revisions().await;

        ha.signal_jm(old, libc::SIGCONT);
        process_support::eventually("the woken leader steps down", WAIT, || async {
            let messages = ha.jm_messages(old);
            let stepped = messages
                .iter()
                .any(|m| m == "leadership lost: stepped down");
            let standby = messages.iter().rev().any(|m| m == "standing by");
            if stepped && standby {
                Ok(())
            } else {
                Err(format!(
                    "{:?}",
                    messages.iter().rev().take(5).collect::<Vec<_>>()
                ))
            }
        })
        .await;
        let (leader, _) = ha.wait_leader(WAIT).await;
        assert_eq!(leader, new, "the new leader still leads");
        assert_eq!(
            running(&ha, &job).await,
            settled,
            "no executor took a command from it"
        );
        let changed: Vec<_> = revisions()
            .await
            .into_iter()
            .filter(|(k, r)| stored.get(k) != Some(r))
            .collect();
        // The leader key of the woken jobmaster's new campaign is the only new key it may
        // write (as a standby): nothing under the state.
        assert!(
            changed
                .iter()
                .all(|(k, _)| k.starts_with("/jobmaster/default/leader/")),
            "state keys written after the wake-up: {changed:?}"
        );
    })
    .await;
}

/// A lease shorter than the executors' fence deadline: 2 s against a heartbeat timeout of 6 s
/// (fence margin 1.5 s, so the executors fence 4.5 s after their last answered heartbeat).
const SWITCH_ENV: &[(&str, &str)] = &[
    ("JOBMASTER__HA__LEASE_TTL", "2s"),
    ("JOBMASTER__HEARTBEAT__TIMEOUT", "6s"),
];

/// Lines of executor `id`'s log from byte `from` on.
fn executor_log(ha: &HaCluster, id: &str, from: usize) -> String {
    let log =
        std::fs::read_to_string(ha.cluster.root.join(format!("{id}.log"))).unwrap_or_default();
    log.get(from..).unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_with_a_lease_shorter_than_the_fence_deadline_costs_no_task_restart() {
    need_etcd!();
    bounded(Duration::from_secs(240), async {
        let executors = ["a", "b"];
        let mut ha = HaCluster::start("ha-switch", 3, 2, &[("a", 8), ("b", 8)], SWITCH_ENV).await;
        let (old, first) = ha.wait_leader(WAIT).await;
        let job = submit(&ha, &job_spec("switch-leader")).await;
        let before = running(&ha, &job).await;

        let frozen = std::time::Instant::now();
        ha.signal_jm(old, libc::SIGSTOP);
        let (new, lead) = ha.wait_leader_other_than(old, WAIT).await;
        assert!(lead.epoch > first.epoch, "a newer term");
        // Every task adopted by the new leader: same attempts, same executors, same processes.
        let adopted = process_support::eventually(
            "every attempt adopted by the new leader",
            WAIT,
            || async {
                let j = ha.job(&job).await?;
                let counters = j.counters.unwrap_or_default();
                if counters.adopted_attempts == before.len() as u64 {
                    Ok(j)
                } else {
                    Err(format!(
                        "adopted {} of {}",
                        counters.adopted_attempts,
                        before.len()
                    ))
                }
            },
        )
        .await;
        let took = frozen.elapsed();
        assert_eq!(running(&ha, &job).await, before, "no task restarted");
        assert_eq!(
            adopted.counters.expect("counters").restarts,
            0,
            "no restart"
        );
        eprintln!("leader frozen → every attempt adopted by the new leader: {took:?}");
        for id in executors {
            let log = executor_log(&ha, id, 0);
            assert!(
                log.contains("a newer leader registered this executor"),
                "{id} switched to the new leader: {log}"
            );
            assert!(!log.contains("self-fencing"), "{id} did not fence: {log}");
        }

        // The old leader wakes up: it steps down, and no executor takes a command from it.
        let logged: Vec<usize> = executors
            .iter()
            .map(|id| executor_log(&ha, id, 0).len())
            .collect();
        ha.signal_jm(old, libc::SIGCONT);
        process_support::eventually("the woken leader steps down", WAIT, || async {
            let messages = ha.jm_messages(old);
            let stepped = messages
                .iter()
                .any(|m| m == "leadership lost: stepped down");
            let standby = messages.iter().rev().any(|m| m == "standing by");
            if stepped && standby {
                Ok(())
            } else {
                Err(format!(
                    "{:?}",
                    messages.iter().rev().take(5).collect::<Vec<_>>()
                ))
            }
        })
        .await;
        let (leader, _) = ha.wait_leader(WAIT).await;
        assert_eq!(leader, new, "the new leader still leads");
        assert_eq!(running(&ha, &job).await, before, "still the same processes");
        for (id, from) in executors.iter().zip(logged) {
            let since = executor_log(&ha, id, from);
            for taken in ["killing attempt", "stopping attempt", "self-fencing"] {
                assert!(!since.contains(taken), "{id} after the wake-up: {since}");
            }
        }
        let j = ha.job(&job).await.expect("GetJob");
        assert_eq!(j.counters.expect("counters").restarts, 0, "no restart");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_etcd_member_of_three_changes_nothing() {
    need_etcd!();
    bounded(Duration::from_secs(240), async {
        let mut ha = HaCluster::start("ha-member", 3, 2, &[("a", 8)], ENV).await;
        let (leader, lead) = ha.wait_leader(WAIT).await;
        let job = submit(&ha, &job_spec("member-loss")).await;
        let before = running(&ha, &job).await;
        // The first member is every client's first choice.
        ha.etcd.kill(0);
        // Observed over three lease periods: same leader, same epoch, same processes.
        let until = std::time::Instant::now() + Duration::from_secs(6);
        while std::time::Instant::now() < until {
            let (now, l) = ha.wait_leader(WAIT).await;
            assert_eq!((now, l.epoch), (leader, lead.epoch), "leadership unchanged");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(running(&ha, &job).await, before);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_etcd_quorum_the_leader_steps_down_tasks_keep_running_and_are_adopted_later() {
    need_etcd!();
    bounded(Duration::from_secs(300), async {
        let mut ha = HaCluster::start("ha-quorum", 3, 2, &[("a", 8), ("b", 8)], ENV).await;
        let (_, lead) = ha.wait_leader(WAIT).await;
        let job = submit(&ha, &job_spec("quorum-loss")).await;
        let before = running(&ha, &job).await;

        ha.etcd.kill(1);
        ha.etcd.kill(2);
        process_support::eventually("no jobmaster leads", WAIT, || async {
            match ha.leader().await {
                Ok((i, _)) => Err(format!("jobmaster {i} still leads")),
                Err(_) => Ok(()),
            }
        })
        .await;
        // The executors keep their tasks while nobody leads.
        let pids: Vec<i32> = before.values().map(|(_, _, pid)| *pid).collect();
        let alive = |pid: &i32| std::path::Path::new(&format!("/proc/{pid}")).exists();
        assert!(
            pids.iter().all(alive),
            "task processes kept while nobody leads"
        );

        ha.etcd.restart(1);
        ha.etcd.restart(2);
        let (_, again) = ha.wait_leader(WAIT).await;
        assert!(again.epoch > lead.epoch);
        assert_eq!(
            running(&ha, &job).await,
            before,
            "adopted: same attempts and processes"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_or_failed_job_is_not_resurrected_by_a_leadership_change() {
    need_etcd!();
    bounded(Duration::from_secs(240), async {
        let mut ha = HaCluster::start("ha-ended", 3, 2, &[("a", 4)], ENV).await;
        let (old, _) = ha.wait_leader(WAIT).await;
        let done = submit(
            &ha,
            &serde_json::json!({
                "name": "done", "vertices": [{"id": "v", "parallelism": 2, "command": ["true"]}]
            }),
        )
        .await;
        let failed = submit(
            &ha,
            &serde_json::json!({
                "name": "failed", "restart": {"strategy": "none"},
                "vertices": [{"id": "v", "parallelism": 2, "command": ["false"]}]
            }),
        )
        .await;
        for (job, state) in [(&done, "FINISHED"), (&failed, "FAILED")] {
            process_support::eventually(&format!("{job} {state}"), WAIT, || async {
                let j = ha.job(job).await?;
                (j.state == state).then_some(()).ok_or(j.state)
            })
            .await;
        }
        let attempts = |j: &jobmaster::api::v1::GetJobResponse| {
            j.tasks.iter().map(|t| t.attempt).collect::<Vec<_>>()
        };
        let done_before = attempts(&ha.job(&done).await.unwrap());
        let failed_before = attempts(&ha.job(&failed).await.unwrap());

        ha.signal_jm(old, libc::SIGKILL);
        ha.wait_leader_other_than(old, WAIT).await;
        ha.start_jm(old);
        // Reconciled and settled under the new leader: still ended, nothing run again.
        let j = ha.job(&done).await.expect("the finished job is kept");
        assert_eq!(j.state, "FINISHED");
        assert_eq!(attempts(&j), done_before);
        let j = ha.job(&failed).await.expect("the failed job is kept");
        assert_eq!(j.state, "FAILED");
        assert_eq!(attempts(&j), failed_before);
        assert!(
            ha.cluster.processes().is_empty(),
            "no task process of an ended job started again"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_forced_failovers_in_a_row_lose_no_job() {
    need_etcd!();
    bounded(Duration::from_secs(420), async {
        let mut ha = HaCluster::start("ha-ten", 3, 2, &[("a", 32)], ENV).await;
        let mut jobs = Vec::new();
        for round in 0..10 {
            let (leader, _) = ha.wait_leader(WAIT).await;
            let spec = streaming_job(
                &format!("round-{round}"),
                &["x"],
                1,
                &stream_command(),
                quick_restarts("100ms"),
            );
            jobs.push(submit(&ha, &spec).await);
            ha.signal_jm(leader, libc::SIGKILL);
            ha.wait_leader_other_than(leader, WAIT).await;
            ha.start_jm(leader);
            let listed: Vec<String> = ha
                .client()
                .await
                .list_jobs(ListJobsRequest {})
                .await
                .expect("ListJobs")
                .into_inner()
                .jobs
                .into_iter()
                .map(|j| j.job_id)
                .collect();
            for job in &jobs {
                assert!(
                    listed.contains(job),
                    "round {round}: job {job} lost: {listed:?}"
                );
            }
        }
        for job in &jobs {
            running(&ha, job).await;
        }
    })
    .await;
}

/// The HA failover figure of BENCHMARKS.md: a 100-task streaming job on 5 executors; 20 times
/// the leader is killed with -9 (then, second series, frozen with SIGSTOP): time from the signal
/// to the new leader having every task RUNNING, with how many tasks were restarted. Run with
/// `cargo test --release --test ha -- --ignored --nocapture ha_failover_bench`
/// (`JM_BENCH_RUNS` changes the 20 runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn ha_failover_bench() {
    need_etcd!();
    let runs: usize = std::env::var("JM_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let lease = std::env::var("JM_BENCH_LEASE").unwrap_or_else(|_| "2s".into());
    let env = [("JOBMASTER__HA__LEASE_TTL", lease.as_str())];
    let executors = [("e1", 24), ("e2", 24), ("e3", 24), ("e4", 24), ("e5", 24)];
    let mut ha = HaCluster::start("ha-bench", 3, 2, &executors, &env).await;
    let spec = streaming_job(
        "bench",
        &["a", "b"],
        25,
        &stream_command(),
        quick_restarts("0ms"),
    );
    let job = submit(&ha, &spec).await;
    running(&ha, &job).await;
    for signal in [libc::SIGKILL, libc::SIGSTOP] {
        let mut took = Vec::new();
        let mut restarted = Vec::new();
        for _ in 0..runs {
            let (old, _) = ha.wait_leader(WAIT).await;
            let before = ha.job(&job).await.expect("GetJob");
            let attempts: BTreeMap<String, u32> = before
                .tasks
                .iter()
                .map(|t| (t.name.clone(), t.attempt))
                .collect();
            let start = std::time::Instant::now();
            ha.signal_jm(old, signal);
            let after =
                process_support::eventually("the new leader runs every task", WAIT, || async {
                    let (i, _) = ha.leader().await?;
                    if i == old {
                        return Err("the old leader still leads".into());
                    }
                    let j = ha.job(&job).await?;
                    if j.state == "RUNNING" && j.tasks.iter().all(|t| t.state == "RUNNING") {
                        Ok(j)
                    } else {
                        Err(j.state)
                    }
                })
                .await;
            took.push(start.elapsed());
            restarted.push(
                after
                    .tasks
                    .iter()
                    .filter(|t| attempts.get(&t.name) != Some(&t.attempt))
                    .count(),
            );
            if signal == libc::SIGSTOP {
                let stepped = |m: &[String]| {
                    m.iter()
                        .filter(|m| *m == "leadership lost: stepped down")
                        .count()
                };
                let before = stepped(&ha.jm_messages(old));
                ha.signal_jm(old, libc::SIGCONT);
                process_support::eventually("the woken leader steps down", WAIT, || async {
                    let m = ha.jm_messages(old);
                    (stepped(&m) > before)
                        .then_some(())
                        .ok_or(format!("{:?}", m.last()))
                })
                .await;
            } else {
                ha.start_jm(old);
            }
        }
        took.sort();
        let pct = |p: f64| took[((took.len() as f64 * p).ceil() as usize).clamp(1, took.len()) - 1];
        println!(
            "{}: lease {lease}, {runs} runs: signal → every task RUNNING on the new leader p50 {:?} p99 {:?} max {:?}; tasks restarted per run {:?}",
            if signal == libc::SIGKILL {
                "kill -9"
            } else {
                "SIGSTOP"
            },
            pct(0.5),
            pct(0.99),
            took.last().unwrap(),
            restarted
        );
    }
}
