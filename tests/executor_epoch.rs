//! An executor takes the JobMaster's epoch only from its registration, never from a command:
//! one command with a forged epoch must not lock its JobMaster out (issue 12's denial of
//! service: `CancelTasks` with epoch 2^64-1 and no tasks).

mod daemon_support;

use std::time::Duration;

use daemon_support::*;
use jobmaster::api::v1::CancelTasksRequest;
use jobmaster::api::v1::task_executor_service_client::TaskExecutorServiceClient;
use jobmaster::executor::ExecutorSecurity;
use tonic::Code;

const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Whether a refusal names no epoch but the forged one (u64::MAX).
fn get_job_epoch_free(status: &tonic::Status) -> bool {
    status
        .message()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| w.len() >= 10)
        .all(|w| w == u64::MAX.to_string())
}

const ONE: &str = r#"
name = "one"
[[vertices]]
id = "work"
parallelism = 2
command = ["sleep", "3600"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_with_a_forged_epoch_is_refused_and_the_jobmaster_keeps_its_executor() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let executor =
            RealExecutor::start(daemon.url(), "tm-epoch", 2, ExecutorSecurity::default()).await;
        let addr = executor.addr;
        let client = daemon.client().await;
        eventually(
            "the executor registers",
            Duration::from_secs(20),
            || async {
                let ids = executor_ids(&client).await;
                if ids.contains(&"tm-epoch".to_owned()) {
                    Ok(())
                } else {
                    Err(format!("{ids:?}"))
                }
            },
        )
        .await;

        let mut direct = TaskExecutorServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect to the executor");
        let forged = direct
            .cancel_tasks(CancelTasksRequest {
                epoch: u64::MAX,
                attempts: vec![],
            })
            .await
            .expect_err("a forged epoch is refused");
        assert_eq!(forged.code(), Code::FailedPrecondition, "{forged:?}");
        assert!(forged.message().contains("registered with"), "{forged:?}");
        // The refusal does not tell the forger the epoch to use instead.
        let epoch = get_job_epoch_free(&forged);
        assert!(epoch, "{forged:?}");

        // The real JobMaster still commands it: a job deploys and runs there.
        let job = submit(&client, ONE).await;
        wait_all_running(&client, &job).await;

        executor.stop().await;
    })
    .await;
}
