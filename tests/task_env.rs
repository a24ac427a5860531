//! A task does not see the executor's own settings: `JOBMASTER…` variables (a token, TLS key
//! paths, configuration overrides) are removed from its environment; it gets its control
//! channel (`JM_CONTROL`).

mod process_support;

use std::time::Duration;

use process_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_does_not_inherit_the_executors_jobmaster_variables() {
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::start(
            "task-env",
            &[("tm-env", 1)],
            &[("JOBMASTER_TOKEN", "jm_leaked"), ("JOBMASTER_EXTRA", "x")],
        )
        .await;
        let out = cluster.root.join("env.txt");
        let spec = serde_json::json!({
            "name": "env",
            "restart": { "strategy": "none" },
            "vertices": [{ "id": "v", "parallelism": 1,
                "command": ["sh", "-c", "env > \"$0\"", out.display().to_string()] }],
        });
        let job = cluster.submit(&spec).await;
        cluster
            .wait_job_state(&job, "FINISHED", Duration::from_secs(60))
            .await;
        let env = std::fs::read_to_string(&out).expect("the task wrote its environment");
        assert!(!env.contains("jm_leaked"), "{env}");
        assert!(!env.contains("JOBMASTER"), "{env}");
        assert!(
            env.contains("JM_"),
            "the task's own variables are there: {env}"
        );
        // Its control channel (a socket), and no checkpoint to
        // restore from on a first start.
        assert!(
            env.lines()
                .any(|l| l.starts_with("JM_CONTROL=") && l.ends_with(".sock")),
            "{env}"
        );
        assert!(!env.contains("JM_RESTORE_DIR="), "{env}");
    })
    .await;
}

/// Field `n` (1-based, as in proc(5)) of `/proc/PID/stat` text.
fn stat_field(stat: &str, n: usize) -> i64 {
    // The command name (field 2) may hold spaces; the fields after its `)` do not.
    let after = stat.rsplit_once(')').expect("a stat line").1;
    after
        .split_whitespace()
        .nth(n - 3)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("field {n} of {stat:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_at_task_nice_above_the_executor_and_their_shims_at_its_priority() {
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::start(
            "task-nice",
            &[("tm-nice", 1)],
            &[("JOBMASTER__EXECUTOR__TASK_NICE", "7")],
        )
        .await;
        let out = cluster.root.join("stat.txt");
        // The task's own stat line, then its parent's (the shim's).
        let spec = serde_json::json!({
            "name": "nice",
            "restart": { "strategy": "none" },
            "vertices": [{ "id": "v", "parallelism": 1,
                "command": ["sh", "-c", "cat /proc/$$/stat /proc/$PPID/stat > \"$0\"",
                            out.display().to_string()] }],
        });
        let job = cluster.submit(&spec).await;
        cluster
            .wait_job_state(&job, "FINISHED", Duration::from_secs(60))
            .await;
        let text = std::fs::read_to_string(&out).expect("the task wrote the stat lines");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let executor =
            std::fs::read_to_string(format!("/proc/{}/stat", cluster.executor_pid("tm-nice")))
                .expect("the executor's stat");
        let base = stat_field(&executor, 19);
        assert_eq!(stat_field(lines[0], 19), (base + 7).min(19), "task: {text}");
        assert_eq!(stat_field(lines[1], 19), base, "shim: {text}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_reads_dev_null_and_inherits_no_socket_of_its_shim() {
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::start("task-fds", &[("tm-fds", 1)], &[]).await;
        let out = cluster.root.join("fds.txt");
        // What each of the shell's descriptors is (its standard output is the task log).
        let spec = serde_json::json!({
            "name": "fds",
            "restart": { "strategy": "none" },
            "vertices": [{ "id": "v", "parallelism": 1,
                "command": ["sh", "-c",
                    "for f in /proc/$$/fd/*; do echo \"${f##*/} $(readlink $f)\"; done > \"$0\"",
                    out.display().to_string()] }],
        });
        let job = cluster.submit(&spec).await;
        cluster
            .wait_job_state(&job, "FINISHED", Duration::from_secs(60))
            .await;
        let fds = std::fs::read_to_string(&out).expect("the task listed its descriptors");
        assert!(fds.lines().any(|l| l == "0 /dev/null"), "{fds}");
        // The shim's channel to the executor (its lifeline) stays with the shim.
        assert!(!fds.contains("socket:"), "{fds}");
    })
    .await;
}
