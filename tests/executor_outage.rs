//! An executor without its JobMaster keeps its attempts for `jobmaster-reconnect-timeout`
//! counted from the start of *this* outage (not an earlier one), then stops them as a cancel
//! does: SIGTERM first, so a task can clean up (issue 13, item 5).

mod daemon_support;

use std::time::{Duration, Instant};

use daemon_support::*;
use jobmaster::executor::ExecutorSecurity;

const TEST_LIMIT: Duration = Duration::from_secs(90);
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_outage_waits_the_whole_reconnect_timeout_then_stops_tasks_with_sigterm() {
    within(TEST_LIMIT, async {
        let first = Daemon::start(settings(&[])).await;
        let addr = first.addr;
        let executor = RealExecutor::start_with(
            first.url(),
            "tm-outage",
            1,
            ExecutorSecurity::default(),
            RECONNECT_TIMEOUT,
        )
        .await;
        let registered = |daemon: &Daemon| {
            let url = daemon.url();
            async move {
                let client =
                    jobmaster::api::v1::job_master_service_client::JobMasterServiceClient::connect(
                        url,
                    )
                    .await
                    .expect("connect");
                eventually(
                    "the executor registers",
                    Duration::from_secs(30),
                    || async {
                        let ids = executor_ids(&client).await;
                        if ids.contains(&"tm-outage".to_owned()) {
                            Ok(client.clone())
                        } else {
                            Err(format!("{ids:?}"))
                        }
                    },
                )
                .await
            }
        };
        registered(&first).await;
        // A first, short outage: the jobmaster restarts on the same port.
        let _ = first.shutdown().await;
        let second = Daemon::start_on(settings(&[]), addr).await;
        let client = registered(&second).await;
        // Longer than the timeout passes with the jobmaster up.
        tokio::time::sleep(RECONNECT_TIMEOUT + Duration::from_millis(500)).await;
        let marker = executor.root.join("sigterm");
        let spec = serde_json::json!({
            "name": "outage",
            "vertices": [{ "id": "v", "parallelism": 1, "command": ["sh", "-c",
                "trap 'echo term > \"$0\"; exit 0' TERM; sleep 3600 & wait",
                marker.display().to_string()] }],
        });
        let job = submit(&client, &spec.to_string()).await;
        wait_all_running(&client, &job).await;

        // The second outage: the attempt must live on for the whole timeout, then get SIGTERM.
        let lost_at = Instant::now();
        let _ = second.shutdown().await;
        eventually("the task got SIGTERM", Duration::from_secs(30), || async {
            if marker.exists() {
                Ok(())
            } else {
                Err("no marker yet".to_owned())
            }
        })
        .await;
        let after = lost_at.elapsed();
        assert!(
            after >= RECONNECT_TIMEOUT - Duration::from_millis(300),
            "tasks stopped {after:?} into the outage, before the {RECONNECT_TIMEOUT:?} timeout"
        );
        executor.stop().await;
    })
    .await;
}
