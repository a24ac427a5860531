//! The reference `taskexecutor` agent.

use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use jobmaster::core::Labels;
use jobmaster::core::domain::parse_label;
use jobmaster::executor::{ExecutorConfig, ExecutorSecurity};
use jobmaster::logging::LogArgs;
use jobmaster::security::flags::TlsArgs;
use jobmaster::settings::Settings;
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Parser)]
#[command(
    name = "taskexecutor",
    version,
    about = "Runs jobmaster tasks as processes on this machine"
)]
struct Cli {
    /// Configuration file (TOML, keys as in config/default.toml, section [executor]).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The JobMaster's gRPC URL [default: http://127.0.0.1:6123], or the URLs of several
    /// (HA) separated by commas: the executor follows the elected leader.
    #[arg(long, value_name = "URL[,URL...]")]
    jobmaster: Option<String>,
    /// Tasks run at once [default: 4].
    #[arg(long)]
    slots: Option<u32>,
    /// Blocking partitions, logs and descriptors.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Persistent partitions (storage that outlives this executor).
    #[arg(long, value_name = "DIR")]
    persistent_dir: Option<PathBuf>,
    /// TaskExecutorService address [default: 127.0.0.1:6124]; port 0 picks one. A
    /// non-loopback address needs TLS or --insecure.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Address to register, host:port [default: the listen address].
    #[arg(long, value_name = "ADDR")]
    advertise: Option<String>,
    /// Executor id [default: host name and port].
    #[arg(long)]
    id: Option<String>,
    /// A label naming one of its failure domains, key=value (e.g. zone=a); repeat for
    /// several (`--label zone=a --label rack=r1`). Keys and values: ASCII letters, digits,
    /// - _ . /
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = label)]
    labels: Vec<(String, String)>,
    /// Run tasks as this user (name or uid) with its groups instead of the executor's own
    /// user; switching needs the executor to run as root [default: executor.run-as].
    #[arg(long, value_name = "USER")]
    run_as: Option<String>,
    /// Attempt folders (logs) kept per task; older ones go when a new attempt starts
    /// [default: executor.retain-attempts, 3].
    #[arg(long, value_name = "N")]
    retain_attempts: Option<u32>,
    #[command(flatten)]
    log: LogArgs,
    /// TLS: the cluster's CA and this executor's certificate (naming its id) and key.
    #[command(flatten)]
    tls: TlsArgs,
    /// Listen on a non-loopback address without TLS: anyone who reaches the port can run
    /// commands on this machine.
    #[arg(long)]
    insecure: bool,
}

fn label(text: &str) -> Result<(String, String), String> {
    parse_label(text).map_err(|e| e.to_string())
}

fn main() -> anyhow::Result<()> {
    // Each attempt runs under this program started again as its shim: that mode must not
    // parse flags or start a runtime.
    jobmaster::executor::shim::run_if_requested();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(agent())
}

async fn agent() -> anyhow::Result<()> {
    let cli = Cli::parse();
    jobmaster::logging::init(cli.log.format(), FmtSpan::NONE);
    let mut settings = Settings::load(cli.config.as_deref())?;
    cli.tls.apply(&mut settings.tls);
    let security = ExecutorSecurity {
        tls: settings.tls.files()?,
        reload_interval: settings.tls.reload_interval,
        insecure: cli.insecure || settings.executor.insecure,
    };
    let s = settings.executor;
    // Labels from the configuration (executor.labels), then the flags, which win per key.
    let mut labels = Labels::new();
    for text in s.labels.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (key, value) =
            parse_label(text).with_context(|| format!("executor.labels: {text:?}"))?;
        labels.insert(key, value);
    }
    let mut from_flags = Labels::new();
    for (key, value) in &cli.labels {
        if let Some(first) = from_flags.insert(key.clone(), value.clone()) {
            Cli::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "--label: key {key:?} is given twice ({key}={first} and {key}={value})"
                    ),
                )
                .exit();
        }
    }
    labels.extend(from_flags);
    let listen = cli.listen.unwrap_or(s.listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let config = jobmaster::executor::resolve(
        ExecutorConfig {
            jobmaster: cli.jobmaster.unwrap_or(s.jobmaster),
            id: cli.id.unwrap_or(s.id),
            advertise: cli.advertise.unwrap_or(s.advertise),
            slots: cli.slots.unwrap_or(s.slots),
            data_dir: cli.data_dir.unwrap_or_else(|| PathBuf::from(&s.data_dir)),
            persistent_dir: cli
                .persistent_dir
                .unwrap_or_else(|| PathBuf::from(&s.persistent_dir)),
            jobmaster_reconnect_timeout: s.jobmaster_reconnect_timeout,
            fence_margin: s.fence_margin,
            cancel_grace: s.cancel_grace,
            task_nice: s.task_nice,
            min_free_disk: s.min_free_disk_bytes,
            rpc_timeout: settings.rpc.timeout,
            labels,
            security,
            run_as: Some(cli.run_as.unwrap_or(s.run_as)).filter(|u| !u.trim().is_empty()),
            retain_attempts: cli.retain_attempts.unwrap_or(s.retain_attempts),
            retain_ended_jobs: s.retain_ended_jobs,
            // This program, started again as each attempt's shim.
            shim: PathBuf::new(),
        },
        listener.local_addr()?,
    )?;
    jobmaster::executor::run(config, listener, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
