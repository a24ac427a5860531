//! What an executor keeps on disk (issue 13, item 3): the folders of only the last
//! `executor.retain-attempts` attempts of a task, and nothing of a job once it ended
//! (FINISHED, FAILED or CANCELED), not even after a late submit of it.

mod daemon_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use daemon_support::*;
use jobmaster::api::v1::task_executor_service_client::TaskExecutorServiceClient;
use jobmaster::api::v1::{CancelJobRequest, RegisterExecutorRequest, SubmitTaskRequest};
use tonic::Code;

const TEST_LIMIT: Duration = Duration::from_secs(120);
/// Generous: a noisy 2-core machine starts processes slowly.
const WAIT: Duration = Duration::from_secs(60);

/// The names of the folders in `dir` (none when it does not exist).
fn folders(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_registered(
    client: &jobmaster::api::v1::job_master_service_client::JobMasterServiceClient<
        tonic::transport::Channel,
    >,
    id: &str,
) {
    eventually("the executor registers", WAIT, || async {
        let ids = executor_ids(client).await;
        if ids.iter().any(|i| i == id) {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    })
    .await;
}

/// Waits until `dir` is gone.
async fn wait_gone(what: &str, dir: &Path) {
    eventually(what, WAIT, || async {
        if dir.exists() {
            Err(format!("{} still holds {:?}", dir.display(), folders(dir)))
        } else {
            Ok(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_keeps_the_folders_of_only_the_last_retain_attempts_attempts_of_a_task() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let executor = RealExecutor::start_configured(daemon.url(), "tm-retain", 1, |c| {
            c.retain_attempts = 2;
        })
        .await;
        let client = daemon.client().await;
        wait_registered(&client, "tm-retain").await;
        // Attempts 0..=3 fail at once; attempt 4 runs on.
        let spec = serde_json::json!({
            "name": "retain",
            "restart": { "strategy": "fixed-delay", "attempts": 100, "delay": "10ms" },
            "vertices": [{ "id": "v", "parallelism": 1, "command": ["sh", "-c",
                "echo attempt $JM_ATTEMPT; [ \"$JM_ATTEMPT\" -ge 4 ] || exit 3; exec sleep 3600"] }],
        });
        let job = submit(&client, &spec.to_string()).await;
        eventually("attempt 4 runs", WAIT, || async {
            let j = get_job(&client, &job).await;
            let t = task(&j, "v#0");
            if t.state == "RUNNING" && t.attempt == 4 {
                Ok(())
            } else {
                Err(describe(&j))
            }
        })
        .await;
        let job_dir: PathBuf = executor.root.join("data/attempts").join(&job);
        let kept: BTreeSet<String> = ["v#0.3", "v#0.4"].map(str::to_owned).into();
        eventually("only the last two attempt folders remain", WAIT, || async {
            let now = folders(&job_dir);
            if now == kept {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        })
        .await;
        // What is kept is whole: the previous attempt's log tells why it failed.
        let log = std::fs::read_to_string(job_dir.join("v#0.3/stdout.log")).unwrap_or_default();
        assert_eq!(log.trim(), "attempt 3");
        executor.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_jobs_folders_are_removed_whether_it_finished_failed_or_was_canceled() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let executor = RealExecutor::start_configured(daemon.url(), "tm-ended", 2, |c| {
            c.retain_ended_jobs = std::time::Duration::ZERO;
        })
        .await;
        let mut client = daemon.client().await;
        wait_registered(&client, "tm-ended").await;
        let data = executor.root.join("data");

        // FINISHED, with a blocking exchange: attempt and partition folders.
        let finished = submit(
            &client,
            &serde_json::json!({
                "name": "finished",
                "vertices": [
                    { "id": "a", "parallelism": 1, "command": ["sh", "-c", "echo x > $JM_OUTPUT_FILES"] },
                    { "id": "b", "parallelism": 1, "command": ["sh", "-c", "cat $JM_INPUT_FILES"] },
                ],
                "edges": [{ "from": "a", "to": "b", "pattern": "pointwise", "exchange": "blocking" }],
            })
            .to_string(),
        )
        .await;
        // FAILED: no restart.
        let failed = submit(
            &client,
            &serde_json::json!({
                "name": "failed",
                "restart": { "strategy": "none" },
                "vertices": [{ "id": "v", "parallelism": 1, "command": ["sh", "-c", "exit 1"] }],
            })
            .to_string(),
        )
        .await;
        for (job, state) in [(&finished, "FINISHED"), (&failed, "FAILED")] {
            eventually(&format!("job {job} is {state}"), WAIT, || async {
                let j = get_job(&client, job).await;
                if j.state == state { Ok(()) } else { Err(describe(&j)) }
            })
            .await;
        }
        wait_gone("the finished job's attempt folders go", &data.join("attempts").join(&finished)).await;
        wait_gone("the finished job's partition folders go", &data.join("partitions").join(&finished)).await;
        wait_gone("the failed job's attempt folders go", &data.join("attempts").join(&failed)).await;

        // CANCELED while its task runs.
        let canceled = submit(
            &client,
            &serde_json::json!({
                "name": "canceled",
                "vertices": [{ "id": "v", "parallelism": 1, "command": ["sleep", "3600"] }],
            })
            .to_string(),
        )
        .await;
        wait_all_running(&client, &canceled).await;
        let canceled_dir = data.join("attempts").join(&canceled);
        assert!(canceled_dir.join("v#0.0").is_dir(), "the running attempt has its folder");
        client
            .cancel_job(CancelJobRequest {
                job_id: canceled.clone(),
            })
            .await
            .expect("cancel the job");
        eventually("the job is CANCELED", WAIT, || async {
            let j = get_job(&client, &canceled).await;
            if j.state == "CANCELED" { Ok(()) } else { Err(describe(&j)) }
        })
        .await;
        wait_gone("the canceled job's attempt folders go", &canceled_dir).await;

        // A late submit of an ended job is refused and does not bring its folders back.
        let mut gateway = daemon.gateway().await;
        let epoch = gateway
            .register_executor(RegisterExecutorRequest {
                executor_id: "tm-probe".into(),
                address: "127.0.0.1:1".into(),
                slots: 1,
                session_id: session_id(),
                free_disk_bytes: 1 << 30,
                labels: Default::default(),
                attempts: Vec::new(),
                partitions: Vec::new(),
            })
            .await
            .expect("register a probe to learn the epoch")
            .into_inner()
            .epoch;
        let mut direct = TaskExecutorServiceClient::connect(format!("http://{}", executor.addr))
            .await
            .expect("connect to the executor");
        let late = direct
            .submit_task(SubmitTaskRequest {
                epoch,
                attempt: Some(attempt_ref(&canceled, "v#0", 1)),
                job_name: "canceled".into(),
                parallelism: 1,
                command: vec!["sleep".into(), "3600".into()],
                ..SubmitTaskRequest::default()
            })
            .await
            .expect_err("a submit of an ended job is refused");
        assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");
        assert!(late.message().contains("ended"), "{late:?}");
        assert!(!canceled_dir.exists(), "no folder came back: {:?}", folders(&canceled_dir));
        executor.stop().await;
    })
    .await;
}
