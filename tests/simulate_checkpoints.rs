//! `jmctl simulate` with checkpoints: virtual executors acknowledge triggers after their
//! vertex's latency, restarted tasks restore from the latest completed checkpoint, and the
//! report gives the work each failure replays.

mod sim_support;

use jobmaster::simulate::CheckpointReport;
use sim_support::{events, run};

fn scenario(interval: &str) -> String {
    format!(
        r#"
until = "60s"
checkpoint-interval = "{interval}"

[job]
name = "ck"
failover = "region"
restart = {{ strategy = "fixed-delay", attempts = 10, delay = "500ms" }}
checkpoint = {{ interval = "30s" }}
vertices = [
  {{ id = "src", parallelism = 2, command = ["x"] }},
  {{ id = "snk", parallelism = 2, command = ["x"] }},
]
edges = [{{ from = "src", to = "snk", pattern = "pointwise", exchange = "pipelined" }}]

[[executors]]
id = "tm-1"
slots = 4

[runtime]
default = "forever"

[checkpoint-ack]
default = "100ms"
snk = "300ms"

[[faults]]
at = "17s"
kind = "fail-task"
task = "snk#0"

[[faults]]
at = "44s"
kind = "fail-task"
task = "src#1"
"#
    )
}

fn report(interval: &str) -> CheckpointReport {
    run(&scenario(interval))
        .checkpoints
        .expect("a job with checkpoints has a checkpoint report")
}

#[test]
fn restarted_tasks_restore_from_the_latest_completed_checkpoint() {
    let r = run(&scenario("5s"));
    let completed = events(&r, "checkpoint-completed");
    assert!(!completed.is_empty());
    // Redeploys after the first failure (at 17s) restore the checkpoint triggered at ~15s.
    let restored: Vec<_> = events(&r, "deploy")
        .into_iter()
        .filter(|e| e.attempt == Some(1))
        .filter_map(|e| e.detail.clone())
        .collect();
    assert_eq!(restored.len(), 4, "{restored:?}");
    let c = r.checkpoints.expect("report");
    assert_eq!(c.interval_ms, 5_000);
    assert_eq!(c.failures.len(), 2);
    for f in &c.failures {
        assert_eq!(f.tasks, 2);
        assert!(f.restored_from.is_some());
        assert!(f.replay_ms <= 5_000 + 300, "{f:?}");
    }
}

#[test]
fn replay_per_failure_shrinks_with_a_shorter_interval() {
    let long = report("20s");
    let short = report("2s");
    assert_eq!(long.failures.len(), 2);
    assert_eq!(short.failures.len(), 2);
    for (l, s) in long.failures.iter().zip(&short.failures) {
        assert!(s.replay_ms < l.replay_ms, "{s:?} vs {l:?}");
    }
    assert!(short.mean_replay_ms < long.mean_replay_ms);
    assert!(short.max_replay_ms < long.max_replay_ms);
    assert!(short.completed > long.completed);
}

#[test]
fn without_a_completed_checkpoint_the_whole_run_is_replayed() {
    let r = report("50s");
    let first = &r.failures[0];
    assert_eq!(first.restored_from, None);
    assert_eq!(first.replay_ms, first.t_ms);
}

#[test]
fn a_job_without_checkpoints_has_no_checkpoint_report() {
    let text = scenario("5s")
        .replace("checkpoint-interval = \"5s\"\n", "")
        .replace("checkpoint = { interval = \"30s\" }\n", "");
    assert!(run(&text).checkpoints.is_none());
}
