//! A durable JobMaster (issue 14): restarted on its store, it loads its jobs, adopts the
//! attempts its executors still run (no task restarts), keeps ended jobs ended, and keeps the
//! exception history and counters.

mod daemon_support;

use std::time::Duration;

use daemon_support::*;
use jobmaster::executor::ExecutorSecurity;

const TEST_LIMIT: Duration = Duration::from_secs(120);

/// Two independent pipelined regions of two tasks each.
fn streaming() -> String {
    serde_json::json!({
        "name": "durable",
        "vertices": [
            { "id": "a", "parallelism": 2, "command": ["sleep", "3600"] },
            { "id": "b", "parallelism": 2, "command": ["sleep", "3600"] },
        ],
        "edges": [{ "from": "a", "to": "b", "pattern": "pointwise", "exchange": "pipelined" }],
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_jobmaster_adopts_the_running_tasks_and_restarts_none() {
    within(TEST_LIMIT, async {
        let s = settings(&[]);
        let first = Daemon::start(s.clone()).await;
        let addr = first.addr;
        let e1 = RealExecutor::start(first.url(), "dur-1", 2, ExecutorSecurity::default()).await;
        let e2 = RealExecutor::start(first.url(), "dur-2", 2, ExecutorSecurity::default()).await;
        let client = first.client().await;
        eventually("both executors register", DEADLINE, || async {
            let ids = executor_ids(&client).await;
            if ids.len() == 2 {
                Ok(())
            } else {
                Err(format!("{ids:?}"))
            }
        })
        .await;
        let job = submit(&client, &streaming()).await;
        let before = wait_all_running(&client, &job).await;
        // A failure before the restart: the history and counters must survive it.
        let failed = before.tasks[0].name.clone();
        client
            .clone()
            .inject_failure(jobmaster::api::v1::InjectFailureRequest {
                job_id: job.clone(),
                target: Some(jobmaster::api::v1::inject_failure_request::Target::Task(
                    failed.clone(),
                )),
                ..Default::default()
            })
            .await
            .expect("inject");
        let before = wait_job(&client, &job, "the failed region runs again", |j| {
            j.state == "RUNNING"
                && j.tasks.iter().all(|t| t.state == "RUNNING")
                && task(j, &failed).attempt == 1
        })
        .await;

        let _ = first.shutdown().await;
        let second = Daemon::start_on(s.clone(), addr).await;
        let client = second.client().await;
        let after = wait_all_running(&client, &job).await;
        for t in &before.tasks {
            let now = task(&after, &t.name);
            assert_eq!(now.attempt, t.attempt, "{}: attempt unchanged", t.name);
            assert_eq!(now.executor, t.executor, "{}: same executor", t.name);
        }
        let exceptions = client
            .clone()
            .get_exception_history(jobmaster::api::v1::GetExceptionHistoryRequest {
                job_id: job.clone(),
            })
            .await
            .expect("exceptions")
            .into_inner();
        assert_eq!(exceptions.entries.len(), 1, "the history survived");
        let (_, metrics) = http_get(second.http_addr, "/metrics").await;
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("jobmaster_adopted_attempts_total") && l.ends_with(" 4")),
            "{metrics}"
        );
        let _ = second.shutdown().await;
        e1.stop().await;
        e2.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_job_is_still_ended_and_readable_after_a_restart() {
    within(TEST_LIMIT, async {
        let s = settings(&[]);
        let first = Daemon::start(s.clone()).await;
        let addr = first.addr;
        let e1 = RealExecutor::start(first.url(), "dur-end", 2, ExecutorSecurity::default()).await;
        let client = first.client().await;
        let spec = serde_json::json!({
            "name": "short",
            "vertices": [{ "id": "v", "parallelism": 2, "command": ["true"] }],
        })
        .to_string();
        let job = submit(&client, &spec).await;
        let ended = wait_job(&client, &job, "the job finishes", |j| j.state == "FINISHED").await;
        let _ = first.shutdown().await;
        let restarted_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        let second = Daemon::start_on(s, addr).await;
        let client = second.client().await;
        let j = get_job(&client, &job).await;
        assert_eq!(j.state, "FINISHED");
        assert_eq!(
            j.start_time_ms, ended.start_time_ms,
            "submitted when it was, not at the restart"
        );
        assert!(
            j.start_time_ms <= j.end_time_ms && j.end_time_ms < restarted_ms,
            "ended before the restart: {} .. {} (restart at {restarted_ms})",
            j.start_time_ms,
            j.end_time_ms
        );
        assert!(
            j.tasks
                .iter()
                .all(|t| t.state == "FINISHED" && t.attempt == 0)
        );
        let _ = second.shutdown().await;
        e1.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_jobmaster_on_the_same_state_dir_refuses_to_start() {
    within(TEST_LIMIT, async {
        let s = settings(&[]);
        let first = Daemon::start(s.clone()).await;
        // Up (its store open) before the second one tries.
        list_jobs(&first.client().await).await;
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let second = jobmaster::server::serve(s, grpc, http, std::future::pending()).await;
        match second {
            Err(e @ jobmaster::server::ServeError::Store(_)) => {
                assert!(e.to_string().contains("in use by another jobmaster"), "{e}")
            }
            other => panic!("expected a locked store, got {other:?}"),
        }
        let _ = first.shutdown().await;
    })
    .await;
}

/// A store that accepts commits until it is told to fail, then refuses every one.
struct FailingStore {
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl jobmaster::store::Store for FailingStore {
    fn load(&self) -> Result<jobmaster::store::Loaded, jobmaster::store::StoreError> {
        Ok(Default::default())
    }

    fn commit(
        &mut self,
        _batch: jobmaster::store::Batch,
    ) -> Result<(), jobmaster::store::StoreError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(jobmaster::store::StoreError::Write {
                file: "test".into(),
                message: "disk full".into(),
            });
        }
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        0
    }
}

/// Write-ahead: a turn whose commit fails sends nothing — no deploy reaches an executor, the
/// caller is not told the job was accepted — and the jobmaster stops with the store error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_that_could_not_be_made_durable_never_leaves_the_jobmaster() {
    within(TEST_LIMIT, async {
        let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let store = Box::new(FailingStore { fail: fail.clone() });
        let daemon = Daemon::start_with_store(
            settings(&[]),
            store,
            "127.0.0.1:0".parse().expect("address"),
        )
        .await;
        let executor = FakeExecutor::start(&daemon, "wal-1", 4).await;
        let client = daemon.client().await;
        list_jobs(&client).await;
        fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let spec = serde_json::json!({
            "name": "never",
            "vertices": [{ "id": "v", "parallelism": 2, "command": ["true"] }],
        })
        .to_string();
        let refused = try_submit(&client, &spec, "").await;
        assert!(refused.is_err(), "the submit was answered: {refused:?}");
        let (result, _) = daemon.shutdown().await;
        match result {
            Err(e @ jobmaster::server::ServeError::Store(_)) => {
                assert!(e.to_string().contains("disk full"), "{e}")
            }
            other => panic!("expected the store error, got {other:?}"),
        }
        assert!(
            executor.descriptors().is_empty(),
            "a deploy left before its commit: {:?}",
            executor.descriptors()
        );
    })
    .await;
}
