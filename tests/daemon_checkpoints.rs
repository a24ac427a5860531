//! Checkpoints through the daemon (issue 16): triggers reach the executors running the tasks,
//! acknowledgements complete a checkpoint, completion is notified only after it is durable,
//! operators list and trigger checkpoints, and a restarted region's deploys name the
//! checkpoint to restore from while the other region keeps running. Executors are faked
//! (`daemon_support`): the fake acknowledges every trigger at once.

mod daemon_support;

use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
use jobmaster::api::v1::{
    CheckpointInfo, InjectFailureRequest, ListCheckpointsRequest, TriggerJobCheckpointRequest,
    inject_failure_request,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use daemon_support::*;

/// Two independent regions (one per city), checkpointed every 100 ms.
const CHECKPOINTED: &str = r#"
name = "two-cities"
failover = "region"
checkpoint = { interval = "100ms", retained = 2 }

[restart]
strategy = "fixed-delay"
attempts = 1000
delay = "0s"

[[vertices]]
id = "beijing-source"
parallelism = 2
command = ["my-source"]

[[vertices]]
id = "beijing-orders"
parallelism = 2
command = ["my-orders"]

[[vertices]]
id = "shanghai-source"
parallelism = 2
command = ["my-source"]

[[vertices]]
id = "shanghai-orders"
parallelism = 2
command = ["my-orders"]

[[edges]]
from = "beijing-source"
to = "beijing-orders"
pattern = "all-to-all"
exchange = "pipelined"

[[edges]]
from = "shanghai-source"
to = "shanghai-orders"
pattern = "all-to-all"
exchange = "pipelined"
"#;

async fn try_list(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
) -> Result<Vec<CheckpointInfo>, Status> {
    let mut c = client.clone();
    bounded(
        "ListCheckpoints",
        c.list_checkpoints(ListCheckpointsRequest {
            job_id: job.to_owned(),
        }),
    )
    .await
    .map(|r| r.into_inner().checkpoints)
}

/// Waits until checkpoint `at_least` or a later one has completed; returns the newest completed.
async fn wait_completed(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
    at_least: u64,
) -> CheckpointInfo {
    eventually(
        &format!("checkpoint {at_least} or later COMPLETED"),
        DEADLINE,
        || async move {
            let list = try_list(client, job).await.map_err(|s| s.to_string())?;
            list.iter()
                .find(|c| c.state == "COMPLETED" && c.id >= at_least)
                .cloned()
                .ok_or_else(|| format!("{list:?}"))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_completes_once_every_task_acknowledged_and_is_notified_after() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let executor = FakeExecutor::start(&daemon, "e1", 8).await;
        let job = submit(&client, CHECKPOINTED).await;
        wait_all_running(&client, &job).await;

        let done = wait_completed(&client, &job, 1).await;
        assert_eq!((done.acknowledged, done.tasks), (8, 8), "{done:?}");
        assert!(done.retained, "{done:?}");
        // Every task was told it completed, in one call (one executor).
        eventually("the completion notice", DEADLINE, || async {
            let notices = executor.checkpoint_notices();
            notices
                .contains(&(done.id, true, 8))
                .then_some(())
                .ok_or_else(|| format!("{notices:?}"))
        })
        .await;

        // Only `retained` completed checkpoints stay retained.
        let later = wait_completed(&client, &job, done.id + 3).await;
        let list = try_list(&client, &job).await.expect("list");
        let retained: Vec<u64> = list.iter().filter(|c| c.retained).map(|c| c.id).collect();
        assert_eq!(retained.len(), 2, "{list:?}");
        assert!(retained.contains(&later.id), "{list:?}");
        // Newest first.
        let ids: Vec<u64> = list.iter().map(|c| c.id).collect();
        let mut sorted = ids.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(ids, sorted);

        // Metrics name the latest one.
        let (status, page) = http_get(daemon.http_addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(page.contains("jobmaster_last_checkpoint_id{"), "{page}");
        assert!(
            page.contains("jobmaster_checkpoint_duration_seconds_bucket{"),
            "{page}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_triggers_a_checkpoint_and_a_job_without_checkpoints_says_so() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let _executor = FakeExecutor::start(&daemon, "e1", 16).await;
        let slow = CHECKPOINTED.replace("interval = \"100ms\"", "interval = \"1h\"");
        let job = submit(&client, &slow).await;
        wait_all_running(&client, &job).await;
        assert!(try_list(&client, &job).await.expect("list").is_empty());

        let mut c = client.clone();
        let id = bounded(
            "TriggerCheckpoint",
            c.trigger_checkpoint(TriggerJobCheckpointRequest {
                job_id: job.clone(),
            }),
        )
        .await
        .expect("trigger")
        .into_inner()
        .checkpoint_id;
        assert_eq!(id, 1);
        let done = wait_completed(&client, &job, id).await;
        assert_eq!(done.id, id);

        let plain =
            CHECKPOINTED.replace("checkpoint = { interval = \"100ms\", retained = 2 }\n", "");
        let other = submit(&client, &plain).await;
        let e = try_list(&client, &other).await.expect_err("no checkpoints");
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(
            e.message().contains("checkpointing is off"),
            "{}",
            e.message()
        );
        let e = c
            .trigger_checkpoint(TriggerJobCheckpointRequest { job_id: other })
            .await
            .expect_err("no checkpoints");
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_region_restores_from_the_latest_checkpoint_and_the_other_keeps_running() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let executor = FakeExecutor::start(&daemon, "e1", 8).await;
        let slow = CHECKPOINTED.replace("interval = \"100ms\"", "interval = \"1h\"");
        let job = submit(&client, &slow).await;
        wait_all_running(&client, &job).await;
        let mut c = client.clone();
        c.trigger_checkpoint(TriggerJobCheckpointRequest {
            job_id: job.clone(),
        })
        .await
        .expect("trigger");
        let done = wait_completed(&client, &job, 1).await;

        let first = executor.descriptors().len();
        assert!(
            executor
                .descriptors()
                .iter()
                .all(|d| d.restore_checkpoint == 0),
            "first attempts start without state"
        );
        bounded(
            "InjectFailure",
            c.inject_failure(InjectFailureRequest {
                job_id: job.clone(),
                target: Some(inject_failure_request::Target::Task(
                    "beijing-orders#0".into(),
                )),
                class: String::new(),
                message: "boom".into(),
            }),
        )
        .await
        .expect("inject");
        let after = wait_job(&client, &job, "beijing restarted and running", |j| {
            j.state == "RUNNING"
                && j.tasks.iter().all(|t| t.state == "RUNNING")
                && task(j, "beijing-orders#0").attempt == 1
        })
        .await;
        for t in &after.tasks {
            let restarted = t.name.starts_with("beijing");
            assert_eq!(t.attempt, u32::from(restarted), "{}", t.name);
        }
        let redeployed: Vec<_> = executor.descriptors()[first..].to_vec();
        assert_eq!(redeployed.len(), 4, "{redeployed:?}");
        for d in &redeployed {
            let a = d.attempt.as_ref().expect("attempt");
            assert!(a.vertex.starts_with("beijing"), "{a:?}");
            assert_eq!(d.restore_checkpoint, done.id, "{a:?}");
            assert!(d.checkpoint_storage.is_some(), "{a:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_jobmaster_knows_the_completed_checkpoints_from_its_store() {
    within(TEST_LIMIT, async {
        let s = settings(&[]);
        let first = Daemon::start(s.clone()).await;
        let addr = first.addr;
        let client = first.client().await;
        let executor = FakeExecutor::start(&first, "e1", 8).await;
        let slow = CHECKPOINTED.replace("interval = \"100ms\"", "interval = \"1h\"");
        let job = submit(&client, &slow).await;
        wait_all_running(&client, &job).await;
        let mut c = client.clone();
        c.trigger_checkpoint(TriggerJobCheckpointRequest {
            job_id: job.clone(),
        })
        .await
        .expect("trigger");
        let done = wait_completed(&client, &job, 1).await;
        // The tasks were told only once it was durable: a new JobMaster must know it.
        eventually("the completion notice", DEADLINE, || async {
            let notices = executor.checkpoint_notices();
            notices
                .iter()
                .any(|n| n.0 == done.id && n.1)
                .then_some(())
                .ok_or_else(|| format!("{notices:?}"))
        })
        .await;
        let _ = first.shutdown().await;

        let second = Daemon::start_on(s, addr).await;
        let client = second.client().await;
        let list = try_list(&client, &job)
            .await
            .expect("list after the restart");
        let kept = list
            .iter()
            .find(|k| k.id == done.id)
            .unwrap_or_else(|| panic!("checkpoint {} kept: {list:?}", done.id));
        assert_eq!(
            (kept.state.as_str(), kept.retained, kept.tasks),
            ("COMPLETED", true, 8),
            "{kept:?}"
        );
        let _ = second.shutdown().await;
    })
    .await;
}
