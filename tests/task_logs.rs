//! Task logs (issue 13, item 7): `GetTaskLog` on the JobMaster relays an attempt's stdout or
//! stderr from the executor that ran it (`ReadTaskLog`), and `jmctl logs` prints it. The daemon
//! and real executors run in-process; `jmctl` is the built binary.

mod daemon_support;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use daemon_support::*;
use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
use jobmaster::api::v1::task_executor_service_client::TaskExecutorServiceClient;
use jobmaster::api::v1::{AttemptRef, GetTaskLogRequest, LogChunk, ReadTaskLogRequest};
use jobmaster::executor::ExecutorSecurity;
use jobmaster::security::auth::BearerToken;
use jobmaster::security::certs::{self, CertsOptions};
use jobmaster::security::connector::{self, Expect};
use jobmaster::security::tls::{ClientAuth, Tls, TlsFiles};
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

const LIMIT: Duration = Duration::from_secs(90);
/// Real executors register and run real processes: generous on a noisy 2-core machine.
const SLOW: Duration = Duration::from_secs(30);

/// A daemon and real plain-text executors `ids` (one slot each), all registered.
async fn cluster(extra: &[(&str, &str)], ids: &[&str]) -> (Daemon, Vec<RealExecutor>) {
    let daemon = Daemon::start(settings(extra)).await;
    let mut executors = Vec::new();
    for id in ids {
        executors.push(RealExecutor::start(daemon.url(), id, 1, ExecutorSecurity::default()).await);
    }
    let client = daemon.client().await;
    eventually("the executors register", SLOW, || async {
        let listed = executor_ids(&client).await;
        if ids.iter().all(|id| listed.iter().any(|l| l == id)) {
            Ok(())
        } else {
            Err(format!("{listed:?}"))
        }
    })
    .await;
    (daemon, executors)
}

/// Waits (up to [`SLOW`]) until `ready` holds for the job.
async fn wait_for(
    client: &JobMasterServiceClient<Channel>,
    job: &str,
    what: &str,
    ready: impl Fn(&jobmaster::api::v1::GetJobResponse) -> bool,
) -> jobmaster::api::v1::GetJobResponse {
    let ready = &ready;
    eventually(what, SLOW, || async move {
        let j = get_job(client, job).await;
        if ready(&j) { Ok(j) } else { Err(describe(&j)) }
    })
    .await
}

fn request(job: &str, task: &str, attempt: Option<u32>, stream: &str) -> GetTaskLogRequest {
    GetTaskLogRequest {
        job_id: job.to_owned(),
        task: task.to_owned(),
        attempt,
        stream: stream.to_owned(),
        offset: 0,
        follow: false,
    }
}

/// Every chunk of a GetTaskLog stream, or the status it was refused or ended with.
async fn chunks<T>(
    client: &mut JobMasterServiceClient<T>,
    r: GetTaskLogRequest,
) -> Result<Vec<LogChunk>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    bounded("GetTaskLog", async {
        let mut stream = client.get_task_log(r).await?.into_inner();
        let mut all = Vec::new();
        while let Some(chunk) = stream.next().await {
            all.push(chunk?);
        }
        Ok(all)
    })
    .await
}

async fn log_text(
    client: &JobMasterServiceClient<Channel>,
    r: GetTaskLogRequest,
) -> Result<String, Status> {
    let all = chunks(&mut client.clone(), r).await?;
    Ok(String::from_utf8_lossy(&all.concat_data()).into_owned())
}

trait ConcatData {
    fn concat_data(&self) -> Vec<u8>;
}

impl ConcatData for Vec<LogChunk> {
    fn concat_data(&self) -> Vec<u8> {
        self.iter().flat_map(|c| c.data.iter().copied()).collect()
    }
}

/// Runs `jmctl --endpoint URL ARGS...` to its end: exit code, stdout bytes, stderr text.
async fn jmctl(daemon: &Daemon, args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let out = bounded(
        "jmctl",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_jmctl"))
            .arg("--endpoint")
            .arg(daemon.url())
            .args(args)
            .env_remove("JOBMASTER_TOKEN")
            .env_remove("JOBMASTER_ENDPOINT")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run jmctl");
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_spec(name: &str, vertices: serde_json::Value, restart: serde_json::Value) -> String {
    serde_json::json!({ "name": name, "restart": restart, "vertices": vertices }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_stdout_and_stderr_come_back_through_the_rpc_and_jmctl() {
    within(LIMIT, async {
        let (daemon, executors) = cluster(&[], &["tm-say", "tm-big"]).await;
        let client = daemon.client().await;
        let spec = json_spec(
            "say",
            serde_json::json!([
                { "id": "say", "parallelism": 1,
                  "command": ["sh", "-c", "echo out-one; echo err-one >&2; echo out-two"] },
                // More than three chunks of 64 KiB.
                { "id": "big", "parallelism": 1,
                  "command": ["sh", "-c", "yes 0123456789abcdef | head -c 200000"] },
            ]),
            serde_json::json!({ "strategy": "none" }),
        );
        let job = submit(&client, &spec).await;
        let done = wait_for(&client, &job, "the job finishes", |j| {
            j.state == "FINISHED" || j.state == "FAILED"
        })
        .await;
        assert_eq!(done.state, "FINISHED", "{}", describe(&done));

        let stdout = log_text(&client, request(&job, "say#0", None, "")).await;
        assert_eq!(stdout.expect("stdout"), "out-one\nout-two\n");
        let stderr = log_text(&client, request(&job, "say#0", Some(0), "stderr")).await;
        assert_eq!(stderr.expect("stderr"), "err-one\n");
        let mut from = request(&job, "say#0", None, "stdout");
        from.offset = 4;
        assert_eq!(
            log_text(&client, from).await.expect("from byte 4"),
            "one\nout-two\n",
            "an offset skips the first bytes"
        );

        let big = chunks(&mut client.clone(), request(&job, "big#0", None, ""))
            .await
            .expect("the big log");
        assert!(big.len() >= 4, "{} chunks", big.len());
        let mut next = 0u64;
        for c in &big {
            assert!(
                c.data.len() <= 64 * 1024,
                "a chunk of {} bytes",
                c.data.len()
            );
            assert_eq!(c.offset, next, "chunks follow each other");
            next += c.data.len() as u64;
        }
        assert_eq!(next, 200_000);
        assert!(big.concat_data().starts_with(b"0123456789abcdef\n0123"));

        let (code, out, err) = jmctl(&daemon, &["logs", &job, "say#0"]).await;
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out, b"out-one\nout-two\n");
        let (code, out, err) = jmctl(&daemon, &["logs", &job, "say#0", "--stderr"]).await;
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out, b"err-one\n");
        let (code, out, err) = jmctl(&daemon, &["logs", &job, "big#0"]).await;
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out.len(), 200_000);

        for e in executors {
            e.stop().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_attempt_keeps_its_output_and_a_gone_executor_is_named() {
    within(LIMIT, async {
        let (daemon, executors) = cluster(&[], &["tm-a", "tm-b"]).await;
        let client = daemon.client().await;
        // Attempt 0 fails, attempt 1 finishes; each says where it ran.
        let spec = json_spec(
            "flaky",
            serde_json::json!([
                { "id": "flaky", "parallelism": 1,
                  "command": ["sh", "-c",
                    "echo \"attempt $JM_ATTEMPT on $JM_EXECUTOR_ID\"; \
                     echo \"complaint $JM_ATTEMPT\" >&2; [ \"$JM_ATTEMPT\" -ge 1 ]"] },
            ]),
            serde_json::json!({ "strategy": "fixed-delay", "attempts": 3, "delay": "0s" }),
        );
        let job = submit(&client, &spec).await;
        let done = wait_for(&client, &job, "the job finishes", |j| {
            j.state == "FINISHED" || j.state == "FAILED"
        })
        .await;
        assert_eq!(done.state, "FINISHED", "{}", describe(&done));
        assert_eq!(task(&done, "flaky#0").attempt, 1, "{}", describe(&done));
        let second_on = task(&done, "flaky#0").executor.clone();

        let current = log_text(&client, request(&job, "flaky#0", None, "")).await;
        assert_eq!(
            current.expect("the current attempt's log"),
            format!("attempt 1 on {second_on}\n")
        );
        let first = log_text(&client, request(&job, "flaky#0", Some(0), ""))
            .await
            .expect("attempt 0's log");
        let first_on = first
            .strip_prefix("attempt 0 on ")
            .and_then(|rest| rest.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("attempt 0's own output, got {first:?}"))
            .to_owned();
        let (code, out, err) = jmctl(
            &daemon,
            &["logs", &job, "flaky#0", "--attempt", "0", "--stderr"],
        )
        .await;
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out, b"complaint 0\n");

        // The executor that ran attempt 0 leaves: its logs are out of reach, and the answer
        // says whose they were and where they lie.
        let address = daemon_support::executors(&client)
            .await
            .into_iter()
            .find(|e| e.id == first_on)
            .map(|e| e.address)
            .unwrap_or_else(|| panic!("{first_on} is registered"));
        let mut rest = Vec::new();
        for e in executors {
            if e.addr.to_string() == address {
                e.stop().await;
            } else {
                rest.push(e);
            }
        }
        eventually("the executor is gone", SLOW, || async {
            let ids = executor_ids(&client).await;
            if ids.contains(&first_on) {
                Err(format!("{ids:?}"))
            } else {
                Ok(())
            }
        })
        .await;
        let gone = log_text(&client, request(&job, "flaky#0", Some(0), ""))
            .await
            .expect_err("attempt 0's executor is gone");
        assert_eq!(gone.code(), Code::Unavailable, "{gone:?}");
        assert!(
            gone.message().contains(&format!("executor {first_on}"))
                && gone.message().contains("not registered")
                && gone.message().contains("attempts/"),
            "{gone:?}"
        );
        let (code, _, err) = jmctl(&daemon, &["logs", &job, "flaky#0", "--attempt", "0"]).await;
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("Unavailable") && err.contains(&first_on),
            "{err}"
        );
        for e in rest {
            e.stop().await;
        }
    })
    .await;
}

/// Reads `reader` until `want` has arrived (bounded), returning everything read.
async fn read_until(reader: &mut (impl AsyncReadExt + Unpin), got: &mut Vec<u8>, want: &[u8]) {
    let mut buf = [0u8; 4096];
    bounded("the followed log", async {
        while !got.windows(want.len()).any(|w| w == want) {
            let n = reader.read(&mut buf).await.expect("read jmctl's output");
            assert!(
                n > 0,
                "jmctl ended early: {:?}",
                String::from_utf8_lossy(got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_streams_what_the_task_writes_after_the_call_and_ends_with_the_attempt() {
    within(LIMIT, async {
        let (daemon, executors) = cluster(&[], &["tm-follow"]).await;
        let client = daemon.client().await;
        let dir = std::env::temp_dir().join(format!("jobmaster-logs-{}", session_id()));
        std::fs::create_dir_all(&dir).expect("test dir");
        let go = dir.join("go");
        // Writes a line, waits for the test's go file, writes two more, ends.
        let spec = json_spec(
            "follow",
            serde_json::json!([
                { "id": "tail", "parallelism": 1,
                  "command": ["sh", "-c",
                    "echo before; while [ ! -e \"$0\" ]; do sleep 0.05; done; echo after; cat \"$0\"",
                    go.display().to_string()] },
            ]),
            serde_json::json!({ "strategy": "none" }),
        );
        let job = submit(&client, &spec).await;
        wait_for(&client, &job, "the task runs", |j| {
            task(j, "tail#0").state == "RUNNING"
        })
        .await;

        let mut follower = tokio::process::Command::new(env!("CARGO_BIN_EXE_jmctl"))
            .arg("--endpoint")
            .arg(daemon.url())
            .args(["logs", &job, "tail#0", "--follow"])
            .env_remove("JOBMASTER_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start jmctl logs --follow");
        let mut out = follower.stdout.take().expect("stdout");
        let mut got = Vec::new();
        read_until(&mut out, &mut got, b"before\n").await;
        assert!(
            follower.try_wait().expect("poll jmctl").is_none(),
            "jmctl --follow waits for more while the task runs"
        );

        // Written after the call started: it must still arrive, and the stream then ends.
        let tmp = dir.join("go.tmp");
        std::fs::write(&tmp, "late\n").expect("write the go file");
        std::fs::rename(&tmp, &go).expect("publish the go file");
        bounded("the followed log to end", out.read_to_end(&mut got))
            .await
            .expect("read jmctl's output");
        let status = bounded("jmctl to exit", follower.wait())
            .await
            .expect("jmctl exits");
        let mut err = String::new();
        if let Some(mut e) = follower.stderr.take() {
            let _ = e.read_to_string(&mut err).await;
        }
        assert!(status.success(), "{status}: {err}");
        assert_eq!(String::from_utf8_lossy(&got), "before\nafter\nlate\n");
        let ended = get_job(&client, &job).await;
        assert_eq!(task(&ended, "tail#0").state, "FINISHED", "{}", describe(&ended));

        for e in executors {
            e.stop().await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_are_not_found_and_an_unplaced_attempt_has_no_log_yet() {
    within(LIMIT, async {
        // No executor: the task waits for a slot.
        let daemon = Daemon::start(settings(&[(
            "JOBMASTER__SCHEDULER__SLOT_REQUEST_TIMEOUT",
            "10min",
        )]))
        .await;
        let client = daemon.client().await;
        let spec = json_spec(
            "waiting",
            serde_json::json!([{ "id": "wait", "parallelism": 1, "command": ["true"] }]),
            serde_json::json!({ "strategy": "none" }),
        );
        let job = submit(&client, &spec).await;

        let refused = |r| {
            let client = client.clone();
            async move {
                log_text(&client, r)
                    .await
                    .expect_err("the request is refused")
            }
        };
        let s = refused(request(&job, "wait#0", None, "")).await;
        assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
        assert!(s.message().contains("not placed on an executor"), "{s:?}");

        let s = refused(request("00000000000000ff", "wait#0", None, "")).await;
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
        assert!(s.message().contains("00000000000000ff"), "{s:?}");
        let s = refused(request(&job, "nope#0", None, "")).await;
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
        assert!(s.message().contains("nope#0"), "{s:?}");
        let s = refused(request(&job, "wait#0", Some(5), "")).await;
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
        assert!(s.message().contains("no attempt 5"), "{s:?}");
        let s = refused(request(&job, "wait#0", None, "stdlog")).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        let s = refused(request("x", "wait#0", None, "")).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");

        let (code, out, err) = jmctl(&daemon, &["logs", &job, "nope#0"]).await;
        assert_eq!(code, Some(1), "{err}");
        assert!(out.is_empty());
        assert!(err.contains("NotFound") && err.contains("nope#0"), "{err}");
    })
    .await;
}

fn attempt(job: &str, vertex: &str) -> AttemptRef {
    AttemptRef {
        job_id: job.to_owned(),
        vertex: vertex.to_owned(),
        subtask: 1,
        attempt: 3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_reads_only_logs_of_attempts_it_ran_and_only_plain_names() {
    within(LIMIT, async {
        let (_daemon, executors) = cluster(&[], &["tm-ask"]).await;
        let channel = bounded(
            "connecting to the executor",
            Channel::from_shared(format!("http://{}", executors[0].addr))
                .expect("url")
                .connect(),
        )
        .await
        .expect("connect to the executor");
        let mut direct = TaskExecutorServiceClient::new(channel);
        let read = |attempt: AttemptRef, stream: &str| ReadTaskLogRequest {
            attempt: Some(attempt),
            stream: stream.to_owned(),
            offset: 0,
            follow: false,
        };
        let s = bounded(
            "ReadTaskLog",
            direct.read_task_log(read(attempt("0000000000000007", "map"), "")),
        )
        .await
        .expect_err("no such attempt here");
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
        assert_eq!(
            s.message(),
            "attempt 3 of task map#1 of job 0000000000000007 did not run on executor tm-ask \
             (its logs may have been removed)"
        );
        for (job, vertex, stream) in [
            ("..", "map", ""),
            ("0000000000000007", "..", ""),
            ("0000000000000007", "a/../../b", ""),
            ("../../etc", "map", ""),
            ("0000000000000007", "", ""),
            ("0000000000000007", "map", "../descriptor.json"),
        ] {
            let s = bounded(
                "ReadTaskLog",
                direct.read_task_log(read(attempt(job, vertex), stream)),
            )
            .await
            .expect_err("a name that is not plain is refused");
            assert_eq!(
                s.code(),
                Code::InvalidArgument,
                "{job:?} {vertex:?} {stream:?}: {s:?}"
            );
        }
        for e in executors {
            e.stop().await;
        }
    })
    .await;
}

// ----- with TLS and tokens -----------------------------------------------------------------

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}

fn client_tls(dir: &Path, cert: Option<(&str, &str)>) -> Arc<Tls> {
    Tls::load(
        TlsFiles {
            ca: dir.join(certs::CA_CERT),
            cert: cert.map(|(c, k)| (dir.join(c), dir.join(k))),
        },
        ClientAuth::Optional,
        None,
    )
    .expect("client tls")
}

async fn tls_channel(addr: std::net::SocketAddr, tls: Arc<Tls>, expect: Expect) -> Channel {
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .expect("url")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10));
    bounded(
        "a tls connection",
        connector::connect(endpoint, Some(tls), expect),
    )
    .await
    .expect("tls connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_viewer_reads_logs_and_only_the_jobmaster_may_ask_an_executor() {
    within(LIMIT, async {
        let dir = std::env::temp_dir().join(format!("jobmaster-logs-tls-{}", session_id()));
        let mut options = CertsOptions::new(&dir);
        options.executors = vec!["tm-1".into(), "tm-2".into()];
        certs::generate(&options).expect("certificates");
        let (ca, cert, key, tokens) = (
            path(&dir, certs::CA_CERT),
            path(&dir, certs::JOBMASTER_CERT),
            path(&dir, certs::JOBMASTER_KEY),
            path(&dir, certs::TOKENS),
        );
        let daemon = Daemon::start(settings(&[
            ("JOBMASTER__TLS__CA", ca.as_str()),
            ("JOBMASTER__TLS__CERT", cert.as_str()),
            ("JOBMASTER__TLS__KEY", key.as_str()),
            ("JOBMASTER__AUTH__TOKEN_FILE", tokens.as_str()),
        ]))
        .await;
        let executor = RealExecutor::start(
            format!("https://{}", daemon.addr),
            "tm-1",
            1,
            ExecutorSecurity {
                tls: Some(TlsFiles {
                    ca: dir.join(certs::CA_CERT),
                    cert: Some((
                        dir.join(certs::executor_cert_file("tm-1")),
                        dir.join(certs::executor_key_file("tm-1")),
                    )),
                }),
                reload_interval: Duration::from_secs(10),
                insecure: false,
            },
        )
        .await;
        let operator = JobMasterServiceClient::new(
            tls_channel(
                daemon.addr,
                client_tls(&dir, Some((certs::OPERATOR_CERT, certs::OPERATOR_KEY))),
                Expect::JobMaster,
            )
            .await,
        );
        eventually("the executor registers over tls", SLOW, || async {
            let ids = executor_ids(&operator).await;
            if ids.contains(&"tm-1".to_owned()) {
                Ok(())
            } else {
                Err(format!("{ids:?}"))
            }
        })
        .await;
        let spec = json_spec(
            "secret",
            serde_json::json!([{ "id": "say", "parallelism": 1,
                                 "command": ["sh", "-c", "echo over-tls"] }]),
            serde_json::json!({ "strategy": "none" }),
        );
        let job = submit(&operator, &spec).await;
        let done = wait_for(&operator, &job, "the job finishes", |j| {
            j.state == "FINISHED" || j.state == "FAILED"
        })
        .await;
        assert_eq!(done.state, "FINISHED", "{}", describe(&done));

        let with_token = |token: Option<String>| {
            let (addr, tls) = (daemon.addr, client_tls(&dir, None));
            async move {
                JobMasterServiceClient::with_interceptor(
                    tls_channel(addr, tls, Expect::JobMaster).await,
                    BearerToken::new(token.as_deref()).expect("token"),
                )
            }
        };
        let viewer_token = std::fs::read_to_string(dir.join(certs::VIEWER_TOKEN))
            .expect("viewer token")
            .trim()
            .to_owned();
        let mut viewer = with_token(Some(viewer_token)).await;
        let read = chunks(&mut viewer, request(&job, "say#0", None, ""))
            .await
            .expect("a viewer reads the log");
        assert_eq!(read.concat_data(), b"over-tls\n");
        let refused = chunks(
            &mut with_token(None).await,
            request(&job, "say#0", None, ""),
        )
        .await
        .expect_err("no credentials");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

        // Straight to the executor: only the jobmaster's certificate is answered.
        let ask = ReadTaskLogRequest {
            attempt: Some(AttemptRef {
                job_id: job.clone(),
                vertex: "say".into(),
                subtask: 0,
                attempt: 0,
            }),
            ..ReadTaskLogRequest::default()
        };
        for (cert, key) in [
            (
                certs::OPERATOR_CERT.to_owned(),
                certs::OPERATOR_KEY.to_owned(),
            ),
            (
                certs::executor_cert_file("tm-2"),
                certs::executor_key_file("tm-2"),
            ),
        ] {
            let tls = client_tls(&dir, Some((&cert, &key)));
            let channel = tls_channel(executor.addr, tls, Expect::Executor("tm-1".into())).await;
            let refused = bounded(
                "ReadTaskLog",
                TaskExecutorServiceClient::new(channel).read_task_log(ask.clone()),
            )
            .await
            .expect_err("only the jobmaster reads logs from an executor");
            assert_eq!(
                refused.code(),
                Code::PermissionDenied,
                "{cert}: {refused:?}"
            );
        }
        let tls = client_tls(&dir, Some((certs::JOBMASTER_CERT, certs::JOBMASTER_KEY)));
        let channel = tls_channel(executor.addr, tls, Expect::Executor("tm-1".into())).await;
        let mut stream = bounded(
            "ReadTaskLog",
            TaskExecutorServiceClient::new(channel).read_task_log(ask),
        )
        .await
        .expect("the jobmaster's certificate is answered")
        .into_inner();
        let mut data = Vec::new();
        while let Some(chunk) = bounded("a log chunk", stream.next()).await {
            data.extend(chunk.expect("chunk").data);
        }
        assert_eq!(data, b"over-tls\n");

        executor.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}
