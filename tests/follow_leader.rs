//! Clients follow the leader among several JobMasters: `jmctl --endpoint URL,URL…` and
//! `taskexecutor --jobmaster URL,URL…` reach the leader (the daemon, in-process) past fake
//! standbys — gRPC servers on loopback that answer every call `UNAVAILABLE`, with or without
//! the `jobmaster-leader` hint — and endpoints that refuse connections.

mod daemon_support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
/// standby"), naming the leader in the `jobmaster-leader` metadata when it knows one.
struct Standby {
    addr: SocketAddr,
    leader: Arc<Mutex<Option<String>>>,
    task: JoinHandle<()>,
}

impl Standby {
    async fn start(leader: Option<String>) -> Standby {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let leader = Arc::new(Mutex::new(leader));
        let named = leader.clone();
        let router = axum::Router::new().fallback(move || {
            let leader = named.lock().expect("not poisoned").clone();
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
        Standby { addr, leader, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on it names `leader` (`None`: it knows no leader).
    fn name(&self, leader: Option<String>) {
        *self.leader.lock().expect("not poisoned") = leader;
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

        // ... unless the list goes on: the leader may be further down under another address
        // (a container's host name the standby names, published ports the operator uses).
        let jobs = json_of(
            &jmctl(
                &format!("{},{}", stale.url(), daemon.url()),
                &["--output", "json", "list"],
            )
            .await,
        );
        assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");

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

/// Whether process `pid` runs (exists and is no zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_are_kept_while_no_jobmaster_leads_and_fenced_when_the_named_leader_does_not_answer()
 {
    within(TEST_LIMIT, async {
        // Heartbeats every 100 ms, timeout 3 s: unanswered, the executor fences at 2.25 s.
        let daemon = Daemon::start(settings(&[])).await;
        let client = daemon.client().await;
        let standby = Standby::start(Some(daemon.url())).await;
        let executor = RealExecutor::start(
            format!("{},{}", daemon.url(), standby.url()),
            "tm-kept",
            1,
            jobmaster::executor::ExecutorSecurity::default(),
        )
        .await;
        let pid_file = executor.root.join("pid");
        let spec = serde_json::json!({
            "name": "kept",
            "vertices": [{ "id": "v", "parallelism": 1, "command": ["sh", "-c",
                "echo $$ > \"$0\"; exec sleep 3600", pid_file.display().to_string()] }],
        });
        let job = submit(&client, &spec.to_string()).await;
        wait_all_running(&client, &job).await;
        let pid: i32 = eventually("the task writes its pid", DEADLINE, || async {
            std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .ok_or_else(|| "no pid yet".to_owned())
        })
        .await;
        assert!(alive(pid));

        // The leader is gone (its port refuses) and the standby knows no leader: each round is
        // evidence that nobody leads, so the attempt outlives the fence deadline. (A sleep: what
        // is checked is that nothing happens.)
        standby.name(None);
        let gone = Instant::now();
        let _ = daemon.shutdown().await;
        tokio::time::sleep(Duration::from_millis(4_000)).await;
        assert!(
            alive(pid),
            "the task was killed {:?} after the leader went",
            gone.elapsed()
        );

        // Now the standby names a leader that accepts connections but never answers: no
        // evidence any more, and the attempt is fenced within the fence deadline.
        let hung = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let hinted = Instant::now();
        standby.name(Some(format!(
            "http://{}",
            hung.local_addr().expect("address")
        )));
        eventually("the executor fences its attempt", DEADLINE, || async {
            if alive(pid) {
                Err(format!("alive {:?} after the hint", hinted.elapsed()))
            } else {
                Ok(())
            }
        })
        .await;
        assert!(
            hinted.elapsed() < Duration::from_secs(5),
            "fenced {:?} after the hint, later than the 3 s heartbeat timeout",
            hinted.elapsed()
        );
        drop(hung);
        executor.stop().await;
    })
    .await;
}
