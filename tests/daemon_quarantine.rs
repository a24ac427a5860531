//! Executor quarantine over real gRPC: a failure reported by a (fake) executor quarantines it,
//! ListExecutors shows the quarantine, ReleaseExecutor and `jmctl executors release` end it.

mod daemon_support;

use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
use jobmaster::api::v1::{ExecutorInfo, ListExecutorsRequest, ReleaseExecutorRequest};
use tonic::Code;
use tonic::transport::Channel;

use daemon_support::*;

/// One task, restarted at once.
const ONE: &str = r#"
name = "one"
failover = "region"

[restart]
strategy = "fixed-delay"
attempts = 1000
delay = "0s"

[[vertices]]
id = "work"
parallelism = 1
command = ["work"]
"#;

async fn executor_info(client: &JobMasterServiceClient<Channel>, id: &str) -> ExecutorInfo {
    let mut c = client.clone();
    bounded("ListExecutors", c.list_executors(ListExecutorsRequest {}))
        .await
        .expect("ListExecutors")
        .into_inner()
        .executors
        .into_iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("{id} is not listed"))
}

async fn release(client: &JobMasterServiceClient<Channel>, id: &str) -> Result<(), tonic::Status> {
    let mut c = client.clone();
    bounded(
        "ReleaseExecutor",
        c.release_executor(ReleaseExecutorRequest {
            executor_id: id.to_owned(),
        }),
    )
    .await
    .map(|_| ())
}

/// Runs `jmctl --endpoint URL args...` off the async runtime; (exit code, stdout, stderr).
async fn jmctl(url: &str, args: &[&str]) -> (i32, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_jmctl"));
    command.arg("--endpoint").arg(url).args(args);
    let out = tokio::task::spawn_blocking(move || command.output().expect("jmctl runs"))
        .await
        .expect("jmctl joins");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts a daemon that quarantines an executor at its first task failure, with A and B and
/// the job running; fails the task on its executor and waits until it is quarantined.
/// Returns the daemon, the quarantined executor's id and the fakes (kept alive).
async fn one_quarantined() -> (Daemon, String, [FakeExecutor; 2]) {
    let daemon = Daemon::start(settings(&[(
        "JOBMASTER__SCHEDULER__QUARANTINE__MAX_TASK_FAILURES",
        "1",
    )]))
    .await;
    let client = daemon.client().await;
    let a = FakeExecutor::start(&daemon, "exec-a", 2).await;
    let b = FakeExecutor::start(&daemon, "exec-b", 2).await;
    let job = submit(&client, ONE).await;
    let running = wait_all_running(&client, &job).await;
    let victim = task(&running, "work#0").executor.clone();
    let host = if victim == "exec-a" { &a } else { &b };
    host.fail(
        &attempt_ref(&job, "work#0", 0),
        "recoverable",
        "exit code 1",
    )
    .await
    .expect("the failure report is accepted");
    eventually("the executor quarantined", DEADLINE, || async {
        let info = executor_info(&client, &victim).await;
        if info.quarantined {
            Ok(())
        } else {
            Err(format!("{info:?}"))
        }
    })
    .await;
    // The restart went to the other executor.
    let rerun = wait_all_running_as(&client, &job, 1).await;
    assert_ne!(
        task(&rerun, "work#0").executor,
        victim,
        "{}",
        describe(&rerun)
    );
    (daemon, victim, [a, b])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_executors_shows_the_quarantine_and_release_executor_ends_it() {
    within(TEST_LIMIT, async {
        let (daemon, victim, _fakes) = one_quarantined().await;
        let client = daemon.client().await;
        let info = executor_info(&client, &victim).await;
        assert!(info.quarantined);
        assert_eq!(info.quarantine_reason, "1 task failure within 1h");
        assert!(
            info.quarantine_remaining_ms > 3_500_000 && info.quarantine_remaining_ms <= 3_600_000,
            "{info:?}"
        );
        let metrics = http_get_body(daemon.http_addr, "/metrics").await;
        assert!(
            metrics.contains(&format!(
                "jobmaster_executor_quarantined{{executor=\"{victim}\"}} 1"
            )),
            "{metrics}"
        );
        // The dashboard's overview marks it.
        let overview = http_get_body(daemon.http_addr, "/api/overview").await;
        let json = overview.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let v: serde_json::Value = serde_json::from_str(json).expect("overview json");
        let listed = v["executors"]
            .as_array()
            .expect("executors")
            .iter()
            .find(|e| e["id"] == victim.as_str())
            .expect("listed");
        assert_eq!(listed["quarantined"], true, "{listed}");
        assert_eq!(listed["quarantine_reason"], "1 task failure within 1h");

        release(&client, &victim).await.expect("ReleaseExecutor");
        let info = executor_info(&client, &victim).await;
        assert!(!info.quarantined, "{info:?}");
        assert_eq!(
            (
                info.quarantine_remaining_ms,
                info.quarantine_reason.as_str()
            ),
            (0, "")
        );
        // Releasing again is fine; unknown and empty ids are refused.
        release(&client, &victim)
            .await
            .expect("ReleaseExecutor again");
        let e = release(&client, "ghost").await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert!(e.message().contains("ghost"), "{e:?}");
        let e = release(&client, "").await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmctl_executors_release_ends_a_quarantine_and_refuses_an_unknown_executor() {
    within(TEST_LIMIT, async {
        let (daemon, victim, _fakes) = one_quarantined().await;
        let client = daemon.client().await;
        let (code, out, err) = jmctl(&daemon.url(), &["executors", "release", &victim]).await;
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&victim) && out.contains("released"), "{out}");
        assert!(!executor_info(&client, &victim).await.quarantined);

        let (code, out, err) = jmctl(&daemon.url(), &["executors", "release", "ghost"]).await;
        assert_eq!(code, 1, "{out}");
        assert!(
            err.contains("NotFound") && err.contains("executor ghost"),
            "{err}"
        );
    })
    .await;
}

/// GET `path` on the daemon's HTTP port with a bare HTTP/1.0 request; the body.
async fn http_get_body(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = bounded("connect http", tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut body = String::new();
    bounded("read http", s.read_to_string(&mut body))
        .await
        .expect("read");
    body
}
