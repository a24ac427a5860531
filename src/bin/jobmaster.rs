//! The `jobmaster` daemon.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use jobmaster::settings::Settings;
use tracing_subscriber::EnvFilter;

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
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
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
    jobmaster::server::serve(settings, grpc, http, shutdown_signal()).await
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
