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
