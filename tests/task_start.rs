//! A task that can never start fails its job at once with the OS error, instead of restarting
//! without end (issue 13, case 3): a missing program, a file that is not executable, and an
//! argument with a NUL byte (refused at submit). And a task that ran and failed is reported
//! with its exit code or the signal that killed it.

mod daemon_support;

use std::time::Duration;

use daemon_support::*;
use jobmaster::api::v1::SubmitJobRequest;
use jobmaster::executor::ExecutorSecurity;
use tonic::Code;

const TEST_LIMIT: Duration = Duration::from_secs(60);

fn spec(command: &serde_json::Value) -> String {
    serde_json::json!({
        "name": "cannot-start",
        "vertices": [{ "id": "v", "parallelism": 1, "command": command }],
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_cannot_start_fails_its_job_with_the_os_error() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let executor =
            RealExecutor::start(daemon.url(), "tm-start", 2, ExecutorSecurity::default()).await;
        let root = std::env::temp_dir().join(format!("jobmaster-start-{}", session_id()));
        let mut client = daemon.client().await;
        eventually(
            "the executor registers",
            Duration::from_secs(20),
            || async {
                let ids = executor_ids(&client).await;
                if ids.contains(&"tm-start".to_owned()) {
                    Ok(())
                } else {
                    Err(format!("{ids:?}"))
                }
            },
        )
        .await;

        std::fs::create_dir_all(&root).unwrap();
        let not_executable = root.join("plain.txt");
        std::fs::write(&not_executable, "echo hi\n").unwrap();
        for (command, os_error) in [
            (serde_json::json!(["/nonexistent/prog"]), "No such file"),
            (
                serde_json::json!([not_executable.display().to_string()]),
                "Permission denied",
            ),
        ] {
            // The default strategy (exponential-delay, unlimited) would retry forever.
            let job = submit(&client, &spec(&command)).await;
            let ended = wait_job(&client, &job, "the job fails", |j| {
                j.state == "FAILED" || j.state == "FINISHED"
            })
            .await;
            assert_eq!(ended.state, "FAILED", "{}", describe(&ended));
            assert!(
                ended.cause.contains("cannot start") && ended.cause.contains(os_error),
                "the cause names the OS error: {}",
                ended.cause
            );
            assert_eq!(
                ended.counters.as_ref().map_or(0, |c| c.restarts),
                0,
                "no restart: {}",
                describe(&ended)
            );
        }

        let refused = client
            .submit_job(SubmitJobRequest {
                spec: spec(&serde_json::json!(["echo", "a\u{0}b"])),
                format: "json".into(),
            })
            .await
            .expect_err("a NUL byte is refused at submit");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().contains("vertices[0].command[1]"),
            "{refused:?}"
        );

        executor.stop().await;
        let _ = std::fs::remove_dir_all(&root);
    })
    .await;
}

/// A task's failure still tells an exit code from a death by signal (each attempt runs under
/// a shim that exits the way its command did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_reported_with_its_exit_code_or_the_signal_that_killed_it() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let executor =
            RealExecutor::start(daemon.url(), "tm-status", 2, ExecutorSecurity::default()).await;
        let client = daemon.client().await;
        eventually(
            "the executor registers",
            Duration::from_secs(20),
            || async {
                let ids = executor_ids(&client).await;
                if ids.contains(&"tm-status".to_owned()) {
                    Ok(())
                } else {
                    Err(format!("{ids:?}"))
                }
            },
        )
        .await;
        for (script, how) in [
            ("echo oops >&2; exit 7", "failed: exit code 7; stderr: oops"),
            ("kill -USR1 $$", "failed: killed by signal 10"),
        ] {
            let spec = serde_json::json!({
                "name": "status",
                "restart": { "strategy": "none" },
                "vertices": [{ "id": "v", "parallelism": 1, "command": ["sh", "-c", script] }],
            });
            let job = submit(&client, &spec.to_string()).await;
            let ended = wait_job(&client, &job, "the job fails", |j| {
                j.state == "FAILED" || j.state == "FINISHED"
            })
            .await;
            assert_eq!(ended.state, "FAILED", "{}", describe(&ended));
            assert!(ended.cause.contains(how), "{how:?} in {:?}", ended.cause);
        }
        executor.stop().await;
    })
    .await;
}
