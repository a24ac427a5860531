//! Clients follow the leader among several JobMasters: `jmctl --endpoint URL,URL…` and
//! `taskexecutor --jobmaster URL,URL…` reach the leader (the daemon, in-process) past fake
//! standbys — gRPC servers on loopback that answer every call `UNAVAILABLE`, with or without
//! the `jobmaster-leader` hint — and endpoints that refuse connections.

mod daemon_support;

use std::net::SocketAddr;
use std::process::Stdio;

use daemon_support::*;
use jobmaster::api::LEADER_METADATA;
use jobmaster::api::v1::GetLeaderRequest;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

const SPEC: &str = r#"
name = "followed"
[[vertices]]
id = "only"
parallelism = 1
command = ["x"]
"#;

/// A fake standby: answers every call of every service `UNAVAILABLE` ("this jobmaster is a
/// standby"), naming `leader` in the `jobmaster-leader` metadata when given.
struct Standby {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Standby {
    async fn start(leader: Option<String>) -> Standby {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let router = axum::Router::new().fallback(move || {
            let leader = leader.clone();
            async move {
                let mut status =
                    tonic::Status::unavailable("this jobmaster is a standby: it does not lead");
                if let Some(url) = leader {
                    status
                        .metadata_mut()
                        .insert(LEADER_METADATA, url.parse().expect("an ascii url"));
                }
                status.into_http::<axum::body::Body>()
            }
        });
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_routes(tonic::service::Routes::from(router))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Standby { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The URL of a loopback port nothing listens on (bound, then closed).
async fn refusing() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{addr}")
}

/// Runs the real `jmctl --endpoint ENDPOINTS ARGS…` (without `JOBMASTER_*` from the outside).
async fn jmctl(endpoints: &str, args: &[&str]) -> std::process::Output {
    bounded(
        "jmctl",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_jmctl"))
            .arg("--endpoint")
            .arg(endpoints)
            .args(args)
            .env_remove("JOBMASTER_ENDPOINT")
            .env_remove("JOBMASTER_TOKEN")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("jmctl runs")
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "jmctl failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmctl_reaches_the_leader_past_refusals_and_standbys_and_says_when_none_leads() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let job = submit(&client, SPEC).await;
        let hinting = Standby::start(Some(daemon.url())).await;
        let lost = Standby::start(None).await;
        let refused = refusing().await;

        // In order: a refusal, a standby without a leader, then the leader.
        let want = client
            .clone()
            .get_leader(GetLeaderRequest {})
            .await
            .expect("the leader answers")
            .into_inner();
        let list = format!("{refused},{},{}", lost.url(), daemon.url());
        let leader = json_of(&jmctl(&list, &["--output", "json", "leader"]).await);
        assert_eq!(
            leader,
            serde_json::json!({
                "ha_mode": want.ha_mode, "leader_endpoint": want.leader_endpoint,
                "epoch": want.epoch, "since_unix_ms": want.since_unix_ms,
                "leader_key": want.leader_key,
            })
        );
        assert!(!want.ha_mode.is_empty(), "{want:?}");

        // A standby naming the leader: the call is repeated there.
        let jobs = json_of(&jmctl(&hinting.url(), &["--output", "json", "list"]).await);
        let ids: Vec<&str> = jobs
            .as_array()
            .expect("an array of jobs")
            .iter()
            .filter_map(|j| j["job_id"].as_str())
            .collect();
        assert_eq!(ids, [job.as_str()]);
        let table = jmctl(&format!("{},{}", lost.url(), hinting.url()), &["leader"]).await;
        assert!(table.status.success(), "{}", stderr(&table));
        let text = String::from_utf8_lossy(&table.stdout);
        for row in ["LEADER ", "HA MODE ", "EPOCH ", "SINCE ", "KEY "] {
            assert!(text.contains(row), "no {row:?} row in\n{text}");
        }

        // Nobody leads: exit 1, naming what each endpoint said.
        let none = jmctl(&format!("{refused},{}", lost.url()), &["leader"]).await;
        assert_eq!(none.status.code(), Some(1), "{}", stderr(&none));
        let message = stderr(&none);
        assert!(
            message.contains(&format!(
                "no jobmaster of {refused}, {} answers as leader",
                lost.url()
            )),
            "{message}"
        );
        assert!(message.contains("refused the connection"), "{message}");
        assert!(
            message.contains("is a standby and no leader is elected"),
            "{message}"
        );

        // A named leader that cannot be reached: exit 1, saying so.
        let stale = Standby::start(Some(refused.clone())).await;
        let out = jmctl(&stale.url(), &["list"]).await;
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!(
                "names {refused} as the leader, but it cannot be reached"
            )),
            "{}",
            stderr(&out)
        );

        // A bad list is a usage error.
        let out = jmctl(&format!("{},", daemon.url()), &["list"]).await;
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        daemon.shutdown().await.0.expect("clean shutdown");
    })
    .await;
}

/// Starts the real `taskexecutor --jobmaster ENDPOINTS` as `id` (killed when dropped), its log
/// (standard output) in `root/ID.log`.
fn taskexecutor(endpoints: &str, id: &str, root: &std::path::Path) -> tokio::process::Child {
    std::fs::create_dir_all(root).expect("a test folder");
    let log = std::fs::File::create(root.join(format!("{id}.log"))).expect("a log file");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_taskexecutor"))
        .args([
            "--jobmaster",
            endpoints,
            "--listen",
            "127.0.0.1:0",
            "--id",
            id,
        ])
        .arg("--data-dir")
        .arg(root.join(id))
        .arg("--persistent-dir")
        .arg(root.join("persistent"))
        .env_remove("JOBMASTER__EXECUTOR__JOBMASTER")
        .stdin(Stdio::null())
        .env("RUST_LOG", "info")
        .stdout(log)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("taskexecutor starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taskexecutor_registers_with_the_leader_a_standby_names_or_further_down_its_list() {
    within(TEST_LIMIT, async {
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let hinting = Standby::start(Some(daemon.url())).await;
        let lost = Standby::start(None).await;
        let refused = refusing().await;
        let root = std::env::temp_dir().join(format!("jobmaster-follow-{}", session_id()));

        // Only a standby is listed: it names the leader, which is not in the list.
        let mut hinted = taskexecutor(&hinting.url(), "tm-hinted", &root);
        // A refusal and a standby without a leader come first.
        let mut listed = taskexecutor(
            &format!("{refused},{},{}", lost.url(), daemon.url()),
            "tm-listed",
            &root,
        );
        eventually("both executors register with the leader", DEADLINE, || {
            let client = client.clone();
            async move {
                let mut ids = executor_ids(&client).await;
                ids.sort();
                (ids == ["tm-hinted", "tm-listed"])
                    .then_some(())
                    .ok_or_else(|| format!("registered: {ids:?}"))
            }
        })
        .await;
        // Each says whom it follows.
        let leader = daemon.url();
        for (id, line) in [
            ("tm-hinted", "a standby names the leader: trying it"),
            ("tm-hinted", "following the leader"),
            ("tm-listed", "following the leader"),
        ] {
            let path = root.join(format!("{id}.log"));
            eventually("the executor logs whom it follows", DEADLINE, || async {
                let log = std::fs::read_to_string(&path).unwrap_or_default();
                log.lines()
                    .any(|l| l.contains(line) && l.contains(&format!("endpoint={leader}")))
                    .then_some(())
                    .ok_or(log)
            })
            .await;
        }
        // They stay registered: their heartbeats reach the leader.
        let before = executors(&client).await;
        assert!(
            before.iter().all(|e| e.heartbeat_age_ms < 3_000),
            "{before:?}"
        );
        let _ = hinted.kill().await;
        let _ = listed.kill().await;
        let _ = std::fs::remove_dir_all(&root);
        daemon.shutdown().await.0.expect("clean shutdown");
    })
    .await;
}
