//! The `jobmaster` daemon.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use jobmaster::executor::ExecutorConfig;
use jobmaster::settings::Settings;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Parser)]
#[command(
    name = "jobmaster",
    version,
    about = "The JobMaster daemon: fine-grained failover for distributed jobs"
)]
struct Cli {
    /// Configuration file (TOML, keys as in config/default.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// gRPC address [default: server.listen, 0.0.0.0:6123].
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// HTTP address [default: server.http, 0.0.0.0:8081].
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// Also start N in-process executors with temporary data dirs (a local cluster).
    #[arg(long, value_name = "N")]
    local: Option<u32>,
    /// Slots of each local executor.
    #[arg(long, value_name = "N", default_value_t = 4, requires = "local")]
    local_slots: u32,
    /// Submit this job spec once the daemon is up, and print how to watch it.
    #[arg(long, value_name = "SPEC")]
    submit: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match cli.log_format {
        // A failover is one span (job, cause, restart-set size); its close line carries how
        // long it lasted, so a log shows each failover as one unit.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_span_events(FmtSpan::CLOSE)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_span_events(FmtSpan::CLOSE)
            .init(),
    }
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(a) = cli.listen {
        settings.server.listen = a;
    }
    if let Some(a) = cli.http {
        settings.server.http = a;
    }
    let grpc = tokio::net::TcpListener::bind(settings.server.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (server.listen)",
                settings.server.listen
            )
        })?;
    let http = tokio::net::TcpListener::bind(settings.server.http)
        .await
        .with_context(|| format!("cannot listen on {} (server.http)", settings.server.http))?;
    let grpc_addr = grpc.local_addr()?;
    let endpoint = format!(
        "http://{}",
        if grpc_addr.ip().is_unspecified() {
            std::net::SocketAddr::new([127, 0, 0, 1].into(), grpc_addr.port())
        } else {
            grpc_addr
        }
    );
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut waiters = Vec::new();
    let local_root = std::env::temp_dir().join(format!("jobmaster-local-{}", std::process::id()));
    if let Some(n) = cli.local {
        let root = local_root.clone();
        for i in 0..n {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let config = jobmaster::executor::resolve(
                ExecutorConfig {
                    jobmaster: endpoint.clone(),
                    id: format!("local-{i}"),
                    advertise: String::new(),
                    slots: cli.local_slots,
                    data_dir: root.join(format!("executor-{i}")),
                    persistent_dir: root.join("persistent"),
                    jobmaster_reconnect_timeout: settings.executor.jobmaster_reconnect_timeout,
                    cancel_grace: settings.executor.cancel_grace,
                    min_free_disk: settings.executor.min_free_disk_bytes,
                    rpc_timeout: settings.rpc.timeout,
                    labels: Default::default(),
                    run_as: None,
                },
                listener.local_addr()?,
            )?;
            let mut rx = stop.subscribe();
            waiters.push(tokio::spawn(jobmaster::executor::run(
                config,
                listener,
                async move {
                    let _ = rx.recv().await;
                },
            )));
        }
        eprintln!(
            "local cluster: {n} executors, data under {}",
            root.display()
        );
    }
    if let Some(spec) = cli.submit {
        let text = std::fs::read_to_string(&spec)
            .with_context(|| format!("cannot read job spec {}", spec.display()))?;
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            match submit(&endpoint, text).await {
                Ok(job) => eprintln!(
                    "submitted job {job}\n\
                     in another terminal (cargo run --release --bin jmctl -- ... or target/release/jmctl):\n  \
                     jmctl --endpoint {endpoint} status {job}        # tasks by region\n  \
                     jmctl --endpoint {endpoint} watch {job}         # live events\n  \
                     jmctl --endpoint {endpoint} explain {job} --task TASK   # what a failure would restart\n  \
                     jmctl --endpoint {endpoint} inject {job} --task TASK    # fail it: only its region restarts\n  \
                     jmctl --endpoint {endpoint} exceptions {job}"
                ),
                Err(e) => eprintln!("jobmaster: submitting the job failed: {e}"),
            }
        });
    }
    let stop_executors = stop.clone();
    let result = jobmaster::server::serve(settings, grpc, http, async move {
        shutdown_signal().await;
        let _ = stop_executors.send(());
    })
    .await;
    // Local executors stop with the daemon, also when it ends on an error.
    let _ = stop.send(());
    let local = !waiters.is_empty();
    for w in waiters {
        let _ = w.await;
    }
    if local {
        let _ = std::fs::remove_dir_all(&local_root);
    }
    Ok(result?)
}

/// Submits a spec to the daemon at `endpoint`, retrying while it starts.
async fn submit(endpoint: &str, spec: String) -> anyhow::Result<String> {
    use backon::{ConstantBuilder, Retryable};
    use jobmaster::api::v1::SubmitJobRequest;
    use jobmaster::api::v1::job_master_service_client::JobMasterServiceClient;
    let wait_for_start = ConstantBuilder::default()
        .with_delay(std::time::Duration::from_millis(100))
        .with_max_times(50);
    let mut client = (|| JobMasterServiceClient::connect(endpoint.to_owned()))
        .retry(wait_for_start)
        .await?;
    // Give local executors a moment to register so the job is placed at once.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let response = client
        .submit_job(SubmitJobRequest {
            spec,
            format: String::new(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    Ok(response.into_inner().job_id)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
