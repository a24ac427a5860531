//! Issue 12's attacks, each refused: a plaintext client, a direct command to an executor, a
//! fake executor without a certificate, an executor certificate registering as another id,
//! an operator without a token, a viewer writing, a plain-text listener on the network; and
//! a secure cluster that still runs jobs, with certificates rotated in place.

mod daemon_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use daemon_support::*;
use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
use jobmaster::api::v1::task_executor_gateway_client::TaskExecutorGatewayClient;
use jobmaster::api::v1::task_executor_service_client::TaskExecutorServiceClient;
use jobmaster::api::v1::{
    AttemptRef, CancelJobRequest, InjectFailureRequest, ListExecutorsRequest, ListJobsRequest,
    RegisterExecutorRequest, SubmitJobRequest, SubmitTaskRequest, SubmitTasksRequest,
    inject_failure_request,
};
use jobmaster::executor::{ExecutorConfig, ExecutorSecurity};
use jobmaster::security::auth::BearerToken;
use jobmaster::security::certs::{self, CertsOptions};
use jobmaster::security::connector::{self, Expect};
use jobmaster::security::tls::{ClientAuth, Tls, TlsFiles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

const TEST_LIMIT: Duration = Duration::from_secs(90);

/// A fresh folder with a CA and the certificates of the jobmaster, `executors` and an
/// operator, and the tokens.
fn make_certs(executors: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jobmaster-security-{}", session_id()));
    let mut options = CertsOptions::new(&dir);
    options.executors = executors.iter().map(|s| (*s).to_owned()).collect();
    certs::generate(&options).expect("certificates");
    dir
}

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}

/// Daemon settings with TLS from `dir` and its token file.
fn secure(dir: &Path, extra: &[(&str, &str)]) -> jobmaster::settings::Settings {
    let (ca, cert, key, tokens) = (
        path(dir, certs::CA_CERT),
        path(dir, certs::JOBMASTER_CERT),
        path(dir, certs::JOBMASTER_KEY),
        path(dir, certs::TOKENS),
    );
    let mut env = vec![
        ("JOBMASTER__TLS__CA", ca.as_str()),
        ("JOBMASTER__TLS__CERT", cert.as_str()),
        ("JOBMASTER__TLS__KEY", key.as_str()),
        ("JOBMASTER__AUTH__TOKEN_FILE", tokens.as_str()),
        ("JOBMASTER__TLS__RELOAD_INTERVAL", "100ms"),
    ];
    env.extend_from_slice(extra);
    settings(&env)
}

/// A client side TLS with the CA of `dir` and, if given, a certificate (`cert`, `key` files).
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

async fn tls_channel(addr: SocketAddr, tls: Arc<Tls>, expect: Expect) -> Channel {
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .expect("url")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5));
    connector::connect(endpoint, Some(tls), expect)
        .await
        .expect("tls connection")
}

/// An operator client with `token` (CA only, no certificate).
async fn with_token(
    daemon: &Daemon,
    dir: &Path,
    token: Option<&str>,
) -> JobMasterServiceClient<tonic::service::interceptor::InterceptedService<Channel, BearerToken>> {
    let channel = tls_channel(daemon.addr, client_tls(dir, None), Expect::JobMaster).await;
    JobMasterServiceClient::with_interceptor(channel, BearerToken::new(token).expect("token"))
}

fn read_token(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .expect("token file")
        .trim()
        .to_owned()
}

fn register_request(id: &str, address: &str) -> RegisterExecutorRequest {
    RegisterExecutorRequest {
        executor_id: id.into(),
        address: address.into(),
        slots: 2,
        session_id: session_id(),
        free_disk_bytes: 1 << 30,
        ..Default::default()
    }
}

/// A real executor with its certificate, registered with `daemon` over TLS.
struct SecureExecutor;

impl SecureExecutor {
    async fn start(daemon: &Daemon, dir: &Path, id: &str, slots: u32) -> RealExecutor {
        let security = ExecutorSecurity {
            tls: Some(TlsFiles {
                ca: dir.join(certs::CA_CERT),
                cert: Some((
                    dir.join(certs::executor_cert_file(id)),
                    dir.join(certs::executor_key_file(id)),
                )),
            }),
            reload_interval: Duration::from_secs(10),
            insecure: false,
        };
        RealExecutor::start(format!("https://{}", daemon.addr), id, slots, security).await
    }
}

async fn wait_registered(client: &mut JobMasterServiceClient<Channel>, ids: &[&str]) {
    let client = client.clone();
    eventually(
        "executors register over tls",
        Duration::from_secs(30),
        || {
            let mut client = client.clone();
            async move {
                let listed: Vec<String> = client
                    .list_executors(ListExecutorsRequest {})
                    .await
                    .map_err(|s| s.to_string())?
                    .into_inner()
                    .executors
                    .into_iter()
                    .map(|e| e.id)
                    .collect();
                if ids.iter().all(|id| listed.iter().any(|l| l == id)) {
                    Ok(())
                } else {
                    Err(format!("{listed:?}"))
                }
            }
        },
    )
    .await;
}

/// The ids of the registered executors, as the operator sees them.
async fn executor_ids_of(daemon: &Daemon, dir: &Path) -> Vec<String> {
    operator_client(daemon, dir)
        .await
        .list_executors(ListExecutorsRequest {})
        .await
        .expect("the operator lists executors")
        .into_inner()
        .executors
        .into_iter()
        .map(|e| e.id)
        .collect()
}

/// An operator client authenticated by the operator certificate.
async fn operator_client(daemon: &Daemon, dir: &Path) -> JobMasterServiceClient<Channel> {
    let tls = client_tls(dir, Some((certs::OPERATOR_CERT, certs::OPERATOR_KEY)));
    JobMasterServiceClient::new(tls_channel(daemon.addr, tls, Expect::JobMaster).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_is_refused_by_a_tls_jobmaster() {
    within(TEST_LIMIT, async {
        let dir = make_certs(&[]);
        let daemon = Daemon::start(secure(&dir, &[])).await;
        let plain = Endpoint::from_shared(format!("http://{}", daemon.addr))
            .expect("url")
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(3));
        // The connection itself may open (TCP); no call gets through without TLS.
        if let Ok(channel) = plain.connect().await {
            let listed = JobMasterServiceClient::new(channel.clone())
                .list_jobs(ListJobsRequest {})
                .await;
            assert!(listed.is_err(), "a plaintext ListJobs was answered");
            let registered = TaskExecutorGatewayClient::new(channel)
                .register_executor(register_request("fake", "127.0.0.1:1"))
                .await;
            assert!(registered.is_err(), "a plaintext registration was answered");
        }
        let executors = executor_ids_of(&daemon, &dir).await;
        assert!(executors.is_empty(), "{executors:?}");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_executor_without_a_certificate_cannot_register() {
    within(TEST_LIMIT, async {
        let dir = make_certs(&[]);
        let daemon = Daemon::start(secure(&dir, &[])).await;
        // TLS with the right CA, but no client certificate.
        let channel = tls_channel(daemon.addr, client_tls(&dir, None), Expect::JobMaster).await;
        let refused = TaskExecutorGatewayClient::new(channel)
            .register_executor(register_request("fake", "127.0.0.1:1"))
            .await
            .expect_err("a registration without a certificate is refused");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        // An operator's certificate does not make an executor either.
        let tls = client_tls(&dir, Some((certs::OPERATOR_CERT, certs::OPERATOR_KEY)));
        let channel = tls_channel(daemon.addr, tls, Expect::JobMaster).await;
        let refused = TaskExecutorGatewayClient::new(channel)
            .register_executor(register_request("fake", "127.0.0.1:1"))
            .await
            .expect_err("an operator certificate cannot register an executor");
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        let executors = executor_ids_of(&daemon, &dir).await;
        assert!(executors.is_empty(), "{executors:?}");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_certificate_for_a_cannot_register_as_b() {
    within(TEST_LIMIT, async {
        let dir = make_certs(&["tm-a"]);
        let daemon = Daemon::start(secure(&dir, &[])).await;
        let tls = client_tls(
            &dir,
            Some((
                &certs::executor_cert_file("tm-a"),
                &certs::executor_key_file("tm-a"),
            )),
        );
        let channel = tls_channel(daemon.addr, tls, Expect::JobMaster).await;
        let mut gateway = TaskExecutorGatewayClient::new(channel);
        let refused = gateway
            .register_executor(register_request("tm-b", "127.0.0.1:1"))
            .await
            .expect_err("tm-a's certificate cannot register tm-b");
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        assert!(refused.message().contains("tm-b"), "{refused:?}");
        // Under its own id it registers.
        gateway
            .register_executor(register_request("tm-a", "127.0.0.1:1"))
            .await
            .expect("tm-a registers as itself");
        let ids = executor_ids_of(&daemon, &dir).await;
        assert_eq!(ids, vec!["tm-a".to_owned()]);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

/// A SubmitTasks straight to an executor, running `touch MARKER`.
fn direct_submit(marker: &Path) -> SubmitTasksRequest {
    SubmitTasksRequest {
        epoch: 1,
        tasks: vec![SubmitTaskRequest {
            attempt: Some(AttemptRef {
                job_id: "0000000000000001".into(),
                vertex: "evil".into(),
                subtask: 0,
                attempt: 0,
            }),
            command: vec!["touch".into(), marker.display().to_string()],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_takes_commands_only_from_the_jobmasters_certificate() {
    within(TEST_LIMIT, async {
        let dir = make_certs(&["tm-1", "tm-2"]);
        let daemon = Daemon::start(secure(&dir, &[])).await;
        let executor = SecureExecutor::start(&daemon, &dir, "tm-1", 2).await;
        wait_registered(&mut operator_client(&daemon, &dir).await, &["tm-1"]).await;
        let marker = dir.join("marker");

        // Plain text: no TLS handshake, no call.
        if let Ok(channel) = Endpoint::from_shared(format!("http://{}", executor.addr))
            .expect("url")
            .timeout(Duration::from_secs(3))
            .connect()
            .await
        {
            let answered = TaskExecutorServiceClient::new(channel)
                .submit_tasks(direct_submit(&marker))
                .await;
            assert!(answered.is_err(), "a plaintext SubmitTasks was answered");
        }
        // TLS without a client certificate: the executor requires one.
        let endpoint = Endpoint::from_shared(format!("https://{}", executor.addr))
            .expect("url")
            .timeout(Duration::from_secs(3));
        if let Ok(channel) = connector::connect(
            endpoint.clone(),
            Some(client_tls(&dir, None)),
            Expect::AnyExecutor,
        )
        .await
        {
            let answered = TaskExecutorServiceClient::new(channel)
                .submit_tasks(direct_submit(&marker))
                .await;
            assert!(answered.is_err(), "a SubmitTasks without a certificate was answered");
        }
        // Valid certificates of the cluster, but not the jobmaster's.
        for (cert, key) in [
            (certs::OPERATOR_CERT.to_owned(), certs::OPERATOR_KEY.to_owned()),
            (
                certs::executor_cert_file("tm-2"),
                certs::executor_key_file("tm-2"),
            ),
        ] {
            let tls = client_tls(&dir, Some((&cert, &key)));
            let channel = tls_channel(executor.addr, tls, Expect::Executor("tm-1".into())).await;
            let refused = TaskExecutorServiceClient::new(channel)
                .submit_tasks(direct_submit(&marker))
                .await
                .expect_err("only the jobmaster commands an executor");
            assert_eq!(refused.code(), Code::PermissionDenied, "{cert}: {refused:?}");
        }
        assert!(!marker.exists(), "a command ran without the jobmaster");

        // The jobmaster still commands it.
        let mut op = operator_client(&daemon, &dir).await;
        let job = op
            .submit_job(SubmitJobRequest {
                spec: "name = \"one\"\n[[vertices]]\nid = \"work\"\nparallelism = 2\ncommand = [\"sleep\", \"3600\"]\n".into(),
                format: String::new(),
            })
            .await
            .expect("submit")
            .into_inner()
            .job_id;
        wait_all_running(&op, &job).await;
        executor.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_without_a_token_is_refused_and_a_viewer_cannot_write() {
    within(TEST_LIMIT, async {
        let dir = make_certs(&[]);
        let daemon = Daemon::start(secure(&dir, &[])).await;
        let viewer_token = read_token(&dir, certs::VIEWER_TOKEN);
        let operator_token = read_token(&dir, certs::OPERATOR_TOKEN);

        let refused = with_token(&daemon, &dir, None)
            .await
            .list_jobs(ListJobsRequest {})
            .await
            .expect_err("no credentials");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        let refused = with_token(&daemon, &dir, Some("jm_0000"))
            .await
            .list_jobs(ListJobsRequest {})
            .await
            .expect_err("an unknown token");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

        let mut viewer = with_token(&daemon, &dir, Some(&viewer_token)).await;
        viewer
            .list_jobs(ListJobsRequest {})
            .await
            .expect("a viewer lists jobs");
        let spec =
            "name = \"w\"\n[[vertices]]\nid = \"v\"\nparallelism = 1\ncommand = [\"true\"]\n";
        let denied = viewer
            .submit_job(SubmitJobRequest {
                spec: spec.into(),
                format: String::new(),
            })
            .await
            .expect_err("a viewer cannot submit");
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
        assert!(denied.message().contains("operator role"), "{denied:?}");

        let mut operator = with_token(&daemon, &dir, Some(&operator_token)).await;
        let job = operator
            .submit_job(SubmitJobRequest {
                spec: spec.into(),
                format: String::new(),
            })
            .await
            .expect("an operator submits")
            .into_inner()
            .job_id;
        let denied = viewer
            .inject_failure(InjectFailureRequest {
                job_id: job.clone(),
                target: Some(inject_failure_request::Target::Task("v#0".into())),
                ..Default::default()
            })
            .await
            .expect_err("a viewer cannot inject");
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
        let denied = viewer
            .cancel_job(CancelJobRequest {
                job_id: job.clone(),
            })
            .await
            .expect_err("a viewer cannot cancel");
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
        operator
            .cancel_job(CancelJobRequest { job_id: job })
            .await
            .expect("an operator cancels");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

/// One HTTP/1.1 GET over TLS; returns the status code.
async fn https_get(daemon: &Daemon, dir: &Path, target: &str, token: Option<&str>) -> u16 {
    let tls = client_tls(dir, None);
    let mut config = (*tls.client_config()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(daemon.http_addr)
        .await
        .expect("connect http");
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("tls handshake with the http port");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    stream
        .write_all(
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_port_serves_tls_and_its_data_needs_a_token() {
    within(TEST_LIMIT, async {
        let dir = make_certs(&[]);
        let daemon = Daemon::start(secure(&dir, &[])).await;
        let viewer = read_token(&dir, certs::VIEWER_TOKEN);
        assert_eq!(https_get(&daemon, &dir, "/healthz", None).await, 200);
        assert_eq!(
            https_get(&daemon, &dir, "/", None).await,
            200,
            "the page asks for a token"
        );
        assert_eq!(https_get(&daemon, &dir, "/api/overview", None).await, 401);
        assert_eq!(https_get(&daemon, &dir, "/metrics", None).await, 401);
        assert_eq!(
            https_get(&daemon, &dir, "/api/overview", Some("jm_x")).await,
            401
        );
        assert_eq!(
            https_get(&daemon, &dir, "/api/overview", Some(&viewer)).await,
            200
        );
        assert_eq!(
            https_get(&daemon, &dir, "/metrics", Some(&viewer)).await,
            200
        );

        let open = Daemon::start(secure(&dir, &[("JOBMASTER__AUTH__METRICS_OPEN", "true")])).await;
        assert_eq!(https_get(&open, &dir, "/metrics", None).await, 200);
        assert_eq!(https_get(&open, &dir, "/api/overview", None).await, 401);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_cluster_runs_a_job_whose_consumer_fetches_over_tls() {
    within(TEST_LIMIT, async {
        let dir = make_certs(&["tm-1", "tm-2"]);
        let daemon = Daemon::start(secure(&dir, &[])).await;
        let one = SecureExecutor::start(&daemon, &dir, "tm-1", 1).await;
        let two = SecureExecutor::start(&daemon, &dir, "tm-2", 1).await;
        let mut op = operator_client(&daemon, &dir).await;
        wait_registered(&mut op, &["tm-1", "tm-2"]).await;
        let result = dir.join("result.txt");
        let spec = serde_json::json!({
            "name": "fetch-over-tls",
            "restart": { "strategy": "none" },
            "vertices": [
                { "id": "produce", "parallelism": 2,
                  "command": ["sh", "-c", "echo data > \"$JM_OUTPUT_FILES\""] },
                { "id": "consume", "parallelism": 1,
                  "command": ["sh", "-c", "cat $JM_INPUT_FILES > \"$0\"", result.display().to_string()] },
            ],
            "edges": [
                { "from": "produce", "to": "consume", "pattern": "all-to-all",
                  "exchange": "blocking" },
            ],
        });
        let job = op
            .submit_job(SubmitJobRequest {
                spec: spec.to_string(),
                format: "json".into(),
            })
            .await
            .expect("submit")
            .into_inner()
            .job_id;
        let done = wait_job(&op, &job, "the job ends", |j: &jobmaster::api::v1::GetJobResponse| j.state == "FINISHED" || j.state == "FAILED").await;
        assert_eq!(done.state, "FINISHED", "{}", describe(&done));
        let on = |name: &str| task(&done, name).executor.clone();
        assert_ne!(on("produce#0"), on("produce#1"), "{}", describe(&done));
        assert_eq!(
            std::fs::read_to_string(&result).expect("result"),
            "data\ndata\n",
            "the consumer read both partitions, one fetched from the other executor"
        );
        one.stop().await;
        two.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_replaced_in_place_are_used_without_a_restart() {
    within(TEST_LIMIT, async {
        // The daemon reads its files from `live`; a second CA's files replace them.
        let first = make_certs(&[]);
        let second = make_certs(&[]);
        let live = std::env::temp_dir().join(format!("jobmaster-security-live-{}", session_id()));
        std::fs::create_dir_all(&live).expect("live dir");
        let copy = |from: &Path| {
            for file in [
                certs::CA_CERT,
                certs::JOBMASTER_CERT,
                certs::JOBMASTER_KEY,
                certs::TOKENS,
            ] {
                // Write then rename, as a rotation tool does: never half a file.
                let tmp = live.join(format!("{file}.tmp"));
                std::fs::copy(from.join(file), &tmp).expect("copy");
                std::fs::rename(&tmp, live.join(file)).expect("rename");
            }
        };
        copy(&first);
        let daemon = Daemon::start(secure(&live, &[])).await;
        operator_client(&daemon, &first)
            .await
            .list_jobs(ListJobsRequest {})
            .await
            .expect("the first CA's operator is served");

        copy(&second);
        let addr = daemon.addr;
        eventually(
            "the rotated certificate is served",
            Duration::from_secs(30),
            || {
                let tls = client_tls(&second, Some((certs::OPERATOR_CERT, certs::OPERATOR_KEY)));
                async move {
                    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
                        .expect("url")
                        .timeout(Duration::from_secs(3));
                    let channel = connector::connect(endpoint, Some(tls), Expect::JobMaster)
                        .await
                        .map_err(|e| connector::describe(&e))?;
                    JobMasterServiceClient::new(channel)
                        .list_jobs(ListJobsRequest {})
                        .await
                        .map(|_| ())
                        .map_err(|s| s.to_string())
                }
            },
        )
        .await;
        // The old CA's clients no longer get in.
        let endpoint = Endpoint::from_shared(format!("https://{addr}"))
            .expect("url")
            .timeout(Duration::from_secs(3));
        let old = client_tls(&first, Some((certs::OPERATOR_CERT, certs::OPERATOR_KEY)));
        if let Ok(channel) = connector::connect(endpoint, Some(old), Expect::JobMaster).await {
            let answered = JobMasterServiceClient::new(channel)
                .list_jobs(ListJobsRequest {})
                .await;
            assert!(answered.is_err(), "the replaced CA is still trusted");
        }
        for d in [&first, &second, &live] {
            let _ = std::fs::remove_dir_all(d);
        }
    })
    .await;
}

/// Runs `binary` with `args` until it logs `ready` (then kills it: `Ok(log)`) or exits
/// (`Err(log)`).
async fn run_until(binary: &str, args: &[&str], ready: &str) -> Result<String, String> {
    let mut child = tokio::process::Command::new(binary)
        .args(args)
        .env("RUST_LOG", "info")
        // These runs are about ports, not state: nothing written to the working directory.
        .env("JOBMASTER__STORE__BACKEND", "memory")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the binary");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut text = String::new();
    let mut out_buf = [0u8; 4096];
    let mut err_buf = [0u8; 4096];
    loop {
        tokio::select! {
            n = stdout.read(&mut out_buf) => match n {
                Ok(0) | Err(_) => {}
                Ok(n) => text.push_str(&String::from_utf8_lossy(&out_buf[..n])),
            },
            n = stderr.read(&mut err_buf) => match n {
                Ok(0) | Err(_) => {}
                Ok(n) => text.push_str(&String::from_utf8_lossy(&err_buf[..n])),
            },
            status = child.wait() => {
                let mut rest = String::new();
                let _ = stdout.read_to_string(&mut rest).await;
                let _ = stderr.read_to_string(&mut rest).await;
                text.push_str(&rest);
                let status = status.expect("wait");
                return Err(format!("exit {status}: {text}"));
            }
        }
        if text.contains(ready) {
            let _ = child.kill().await;
            return Ok(text);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_listen_address_without_tls_refuses_to_start() {
    within(TEST_LIMIT, async {
        let jobmaster = env!("CARGO_BIN_EXE_jobmaster");
        let refused = run_until(
            jobmaster,
            &["--listen", "0.0.0.0:0", "--http", "127.0.0.1:0"],
            "jobmaster listening",
        )
        .await
        .expect_err("an exposed plain-text jobmaster does not start");
        assert!(
            refused.contains("refusing to listen on 0.0.0.0") && refused.contains("--insecure"),
            "{refused}"
        );
        let started = run_until(
            jobmaster,
            &[
                "--listen",
                "0.0.0.0:0",
                "--http",
                "127.0.0.1:0",
                "--insecure",
            ],
            "jobmaster listening",
        )
        .await
        .expect("--insecure starts it");
        assert!(started.contains("INSECURE"), "one loud warning: {started}");

        let refused = run_until(
            env!("CARGO_BIN_EXE_taskexecutor"),
            &["--listen", "0.0.0.0:0", "--id", "exposed"],
            "executor started",
        )
        .await
        .expect_err("an exposed plain-text executor does not start");
        assert!(refused.contains("refusing to listen"), "{refused}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmctl_speaks_tls_with_a_token_from_the_environment_or_an_operator_certificate() {
    within(TEST_LIMIT, async {
        let dir = make_certs(&[]);
        let daemon = Daemon::start(secure(&dir, &[])).await;
        let endpoint = format!("https://{}", daemon.addr);
        let ca = path(&dir, certs::CA_CERT);
        let jmctl = |env: Vec<(&'static str, String)>, extra: Vec<String>| {
            let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_jmctl"));
            command
                .args(["--endpoint", &endpoint, "--tls-ca", &ca])
                .args(extra)
                .arg("list")
                .env_remove("JOBMASTER_TOKEN")
                .envs(env);
            async move {
                let out = command.output().await.expect("run jmctl");
                (
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            }
        };
        let token = read_token(&dir, certs::VIEWER_TOKEN);
        let (code, stderr) = jmctl(vec![("JOBMASTER_TOKEN", token)], vec![]).await;
        assert_eq!(code, Some(0), "{stderr}");
        let (code, stderr) = jmctl(
            vec![],
            vec![
                "--tls-cert".into(),
                path(&dir, certs::OPERATOR_CERT),
                "--tls-key".into(),
                path(&dir, certs::OPERATOR_KEY),
            ],
        )
        .await;
        assert_eq!(code, Some(0), "{stderr}");
        let (code, stderr) = jmctl(vec![], vec![]).await;
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("Unauthenticated"), "{stderr}");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_from_one_address_hold_up_nobody_else() {
    within(TEST_LIMIT, async {
        // Room for both ends of every connection in this one process.
        let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .expect("getrlimit");
        let _ = nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            hard.min(8192),
            hard,
        );
        let dir = make_certs(&[]);
        let daemon = Daemon::start(secure(&dir, &[])).await;
        // 600 connections from 127.0.0.2 that never say hello: more than the jobmaster would
        // handshake at once in all.
        let mut silent = Vec::new();
        for _ in 0..600 {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind("127.0.0.2:0".parse().expect("addr"))
                .expect("bind 127.0.0.2");
            if let Ok(stream) = socket.connect(daemon.addr).await {
                silent.push(stream);
            }
        }
        assert!(silent.len() > 512, "{} connections", silent.len());
        // A client from another address is served at once.
        operator_client(&daemon, &dir)
            .await
            .list_jobs(ListJobsRequest {})
            .await
            .expect("served while others stay silent");
        drop(silent);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_asks_for_a_token_and_shows_no_data_without_one() {
    within(TEST_LIMIT, async {
        // A token file without TLS (loopback): the page loads, its data does not.
        let dir = std::env::temp_dir().join(format!("jobmaster-security-{}", session_id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let tokens = dir.join("tokens");
        std::fs::write(
            &tokens,
            certs::token_line(jobmaster::security::Role::Viewer, "v", "jm_secret") + "\n",
        )
        .expect("token file");
        let tokens = tokens.display().to_string();
        let daemon = Daemon::start(settings(&[("JOBMASTER__AUTH__TOKEN_FILE", &tokens)])).await;
        let out = tokio::time::timeout(
            Duration::from_secs(40),
            tokio::process::Command::new("chromium")
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    &format!("--user-data-dir={}", dir.join("profile").display()),
                    "--virtual-time-budget=3000",
                    "--dump-dom",
                    &format!("http://{}/", daemon.http_addr),
                ])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("chromium finishes")
        .expect("chromium runs (apt-get install chromium; .ci/run does)");
        let dom = String::from_utf8_lossy(&out.stdout);
        let form = dom
            .split("<form id=\"login\"")
            .nth(1)
            .and_then(|rest| rest.split('>').next())
            .unwrap_or_else(|| panic!("a login form:\n{dom}"));
        assert!(!form.contains("hidden"), "the login form is shown:\n{dom}");
        assert!(
            dom.contains("needs credentials"),
            "the page says why:\n{dom}"
        );
        assert!(
            dom.contains("none registered") || !dom.contains("<td>"),
            "{dom}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

/// Starts an executor on `data` (plain text, no daemon needed: it stops at its checks).
async fn start_on(data: &Path) -> Result<(), jobmaster::executor::StartError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = jobmaster::executor::resolve(
        ExecutorConfig {
            jobmaster: "http://127.0.0.1:1".into(),
            id: "tm-dirs".into(),
            advertise: String::new(),
            slots: 1,
            data_dir: data.to_owned(),
            persistent_dir: data.join("persistent"),
            jobmaster_reconnect_timeout: Duration::from_secs(1),
            fence_margin: Duration::from_millis(500),
            cancel_grace: Duration::from_secs(1),
            task_nice: 10,
            min_free_disk: 0,
            rpc_timeout: Duration::from_secs(1),
            labels: Default::default(),
            security: ExecutorSecurity::default(),
            run_as: None,
            retain_attempts: 3,
            retain_ended_jobs: std::time::Duration::ZERO,
            shim: env!("CARGO_BIN_EXE_taskexecutor").into(),
        },
        addr,
    )
    .expect("config");
    jobmaster::executor::run(config, listener, async {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_refuses_a_data_dir_another_user_could_change() {
    use std::os::unix::fs::PermissionsExt;
    within(TEST_LIMIT, async {
        let root = std::env::temp_dir().join(format!("jobmaster-security-dirs-{}", session_id()));
        // World-writable (as a planted folder in /tmp would be).
        let open = root.join("open");
        std::fs::create_dir_all(open.join("pids")).expect("dirs");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let refused = start_on(&open)
            .await
            .expect_err("a world-writable data dir");
        assert!(
            refused.to_string().contains("any user may write"),
            "{refused}"
        );
        // Owned by another user, with a forged pid file in it (root only can set this up).
        if nix::unistd::geteuid().is_root() {
            let planted = root.join("planted");
            std::fs::create_dir_all(planted.join("pids")).expect("dirs");
            std::fs::write(planted.join("pids").join("forged"), "1 0\n").expect("pid file");
            for dir in [planted.clone(), planted.join("pids")] {
                std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown");
            }
            let refused = start_on(&planted)
                .await
                .expect_err("a data dir of another user");
            assert!(
                refused.to_string().contains("belongs to uid 65534"),
                "{refused}"
            );
        }
        // Its own folder is fine (it then fails later, connecting to nobody, or runs).
        let own = root.join("own");
        let outcome = tokio::time::timeout(Duration::from_secs(1), start_on(&own)).await;
        if let Ok(Err(e)) = outcome {
            assert!(!e.to_string().contains("refusing to use"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&root);
    })
    .await;
}
