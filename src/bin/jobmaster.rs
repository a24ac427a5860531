//! The `jobmaster` daemon.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jobmaster::executor::{ExecutorConfig, ExecutorSecurity};
use jobmaster::logging::LogArgs;
use jobmaster::security::Role;
use jobmaster::security::certs::{self, CertsOptions, CertsReport};
use jobmaster::security::flags::TlsArgs;
use jobmaster::settings::{HaMode, Settings};
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Parser)]
#[command(
    name = "jobmaster",
    version,
    about = "The JobMaster daemon: fine-grained failover for distributed jobs",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Without a subcommand: run the daemon.
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (TOML, keys as in config/default.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// gRPC address [default: server.listen, 127.0.0.1:6123].
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// HTTP address [default: server.http, 127.0.0.1:8081].
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// Also start N in-process executors with temporary data dirs (a local cluster).
    #[arg(long, value_name = "N")]
    local: Option<u32>,
    /// Slots of each local executor.
    #[arg(long, value_name = "N", default_value_t = 4, requires = "local")]
    local_slots: u32,
    /// Where the jobmaster keeps what survives its restart [default: store.dir,
    /// ./jobmaster-state]. Two jobmasters cannot share one.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// High availability: `etcd` elects a leader among the jobmasters started with the same
    /// etcd and namespace, and keeps the state in etcd [default: ha.mode, none].
    #[arg(long, value_name = "none|etcd")]
    ha: Option<String>,
    /// etcd client URLs, comma-separated [default: ha.etcd-endpoints].
    #[arg(long, value_name = "URL,URL,...")]
    etcd_endpoints: Option<String>,
    /// The gRPC URL this jobmaster proclaims when it leads [default: ha.advertise, else
    /// http(s):// + --listen].
    #[arg(long, value_name = "URL")]
    advertise: Option<String>,
    /// Submit this job spec once the daemon is up, and print how to watch it.
    #[arg(long, value_name = "SPEC")]
    submit: Option<PathBuf>,
    #[command(flatten)]
    log: LogArgs,
    /// TLS for the gRPC and HTTP ports and the calls to executors.
    #[command(flatten)]
    tls: TlsArgs,
    /// Operators' tokens: `<role> <name> sha256:<hex>` per line [default: auth.token-file].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Listen on a non-loopback address without TLS (server.insecure): anyone who reaches
    /// the ports can run commands on every executor.
    #[arg(long)]
    insecure: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create a CA (or reuse the one in DIR) and the certificates, keys and operator tokens of
    /// a secure cluster, then print how to start it.
    Certs {
        /// Folder to write into (created with mode 0700 if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Executor ids, one certificate each (ASCII letters, digits, '-', '_', '.').
        #[arg(long, value_name = "ID,ID,...", value_delimiter = ',', required = true)]
        executors: Vec<String>,
        /// DNS names and IP addresses the daemon is reached by, for its certificate
        /// [default: localhost, 127.0.0.1, ::1 and this machine's host name].
        #[arg(long, value_name = "H,H,...", value_delimiter = ',')]
        hosts: Vec<String>,
        /// Name of the operator in operator.pem and operator.token.
        #[arg(long, value_name = "N", default_value = certs::DEFAULT_OPERATOR_NAME)]
        operator_name: String,
        /// Validity of the certificates, in days (the CA's is 10 years).
        #[arg(long, value_name = "N", default_value_t = certs::DEFAULT_DAYS)]
        days: u32,
        /// Overwrite existing certificates and keys (never the CA, never a token).
        #[arg(long)]
        force: bool,
    },
    /// Print a new operator token on stdout, and on stderr its line for the token file.
    Token {
        /// What the token may do: viewer (reads) or operator (also submit, cancel, inject,
        /// release).
        #[arg(long, value_name = "viewer|operator")]
        role: Role,
        /// Who holds the token (ASCII letters, digits, '-', '_', '.', '@').
        #[arg(long, value_name = "NAME")]
        name: String,
    },
}

// jemalloc, with its options (see the macro).
jobmaster::daemon_allocator!();

fn main() -> anyhow::Result<()> {
    // `--local` runs each attempt under this program started again as its shim: that mode
    // must not parse flags or start a runtime.
    jobmaster::executor::shim::run_if_requested();
    jobmaster::server::memory::tune_allocator();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(daemon())
}

async fn daemon() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Certs {
            out,
            executors,
            hosts,
            operator_name,
            days,
            force,
        }) => {
            let options = CertsOptions {
                out,
                executors,
                hosts,
                operator_name,
                days,
                force,
            };
            let report = certs::generate(&options)?;
            print_certs_report(&options, &report);
            return Ok(());
        }
        Some(Command::Token { role, name }) => {
            certs::check_name(&name)?;
            let token = certs::try_new_token()?;
            println!("{token}");
            eprintln!(
                "add this line to the JobMaster's token file (--token-file):\n{}",
                certs::token_line(role, &name, &token)
            );
            return Ok(());
        }
        None => {}
    }
    // A failover is one span (job, cause, restart-set size); its close line carries how long
    // it lasted, so a log shows each failover as one unit.
    jobmaster::logging::init(cli.log.format(), FmtSpan::CLOSE);
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(a) = cli.listen {
        settings.server.listen = a;
    }
    if let Some(a) = cli.http {
        settings.server.http = a;
    }
    cli.tls.apply(&mut settings.tls);
    if let Some(path) = &cli.token_file {
        settings.auth.token_file = path.to_string_lossy().into_owned();
    }
    settings.server.insecure |= cli.insecure;
    if let Some(dir) = &cli.state_dir {
        settings.store.dir = dir.clone();
    }
    match cli.ha.as_deref() {
        None => {}
        Some("none") => settings.ha.mode = HaMode::None,
        Some("etcd") => settings.ha.mode = HaMode::Etcd,
        Some(other) => anyhow::bail!("--ha {other:?}: use none or etcd"),
    }
    if let Some(e) = cli.etcd_endpoints {
        settings.ha.etcd_endpoints = e;
    }
    if let Some(a) = cli.advertise {
        settings.ha.advertise = a;
    }
    if settings.ha.mode == HaMode::Etcd {
        settings = Settings::validated(settings)?;
        if cli.local.is_some() || cli.submit.is_some() {
            anyhow::bail!(
                "--local and --submit run one jobmaster on this machine: drop --ha etcd, or \
                 start taskexecutors and submit with jmctl"
            );
        }
        return run_ha(settings).await;
    }
    // Before any port is bound: a state dir in use, unreadable or from a newer version is
    // one clear error and exit code 2, never a silent start from nothing.
    let store = match jobmaster::store::open(&settings) {
        Ok(store) => store,
        Err(e) => bad_state(&e),
    };
    let tls = settings.tls.files()?.is_some();
    if tls && cli.local.is_some() {
        anyhow::bail!(
            "--local runs a plain-text cluster on loopback: drop the TLS settings, or start \
             taskexecutors with their certificates"
        );
    }
    if (tls || !settings.auth.token_file.is_empty()) && cli.submit.is_some() {
        anyhow::bail!(
            "--submit has no operator credentials: with TLS or a token file, submit with jmctl \
             (--token or an operator certificate)"
        );
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
        "{}://{}",
        if tls { "https" } else { "http" },
        if grpc_addr.ip().is_unspecified() {
            std::net::SocketAddr::new([127, 0, 0, 1].into(), grpc_addr.port())
        } else {
            grpc_addr
        }
    );
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut waiters = Vec::new();
    let local_root = jobmaster::executor::local::root(&std::env::temp_dir());
    if let Some(n) = cli.local {
        reap_local_leftovers();
        jobmaster::executor::local::claim(&local_root)
            .with_context(|| format!("cannot create {}", local_root.display()))?;
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
                    fence_margin: settings.executor.fence_margin,
                    cancel_grace: settings.executor.cancel_grace,
                    task_nice: settings.executor.task_nice,
                    min_free_disk: settings.executor.min_free_disk_bytes,
                    rpc_timeout: settings.rpc.timeout,
                    labels: Default::default(),
                    security: ExecutorSecurity::default(),
                    run_as: None,
                    retain_attempts: settings.executor.retain_attempts,
                    retain_ended_jobs: settings.executor.retain_ended_jobs,
                    // This program, started again as each attempt's shim.
                    shim: PathBuf::new(),
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
    let result = jobmaster::server::serve_with_store(settings, store, grpc, http, async move {
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
    match result {
        Err(
            e @ (jobmaster::server::ServeError::Store(_)
            | jobmaster::server::ServeError::Restore(_)),
        ) => bad_state(&e),
        other => Ok(other?),
    }
}

/// A jobmaster with `ha.mode = "etcd"`: standby, leader when elected, until a signal.
async fn run_ha(settings: Settings) -> anyhow::Result<()> {
    // tokio's bind reuses the address (a restarted jobmaster need not wait out TIME_WAIT).
    async fn bind(addr: std::net::SocketAddr, key: &str) -> anyhow::Result<std::net::TcpListener> {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} ({key})"))?;
        Ok(l.into_std()?)
    }
    let grpc = bind(settings.server.listen, "server.listen").await?;
    let http = bind(settings.server.http, "server.http").await?;
    tracing::info!(etcd = %settings.ha.etcd_endpoints, namespace = %settings.ha.namespace,
                   lease_ttl = ?settings.ha.lease_ttl, "high availability on etcd");
    Ok(jobmaster::ha::run(settings, grpc, http, shutdown_signal()).await?)
}

/// The store cannot be used: says why, and exits with code 2.
fn bad_state(e: &dyn std::fmt::Display) -> ! {
    tracing::error!(error = %e, "cannot use the store");
    eprintln!("jobmaster: {e}");
    std::process::exit(2)
}

/// Removes the folders of earlier local clusters whose daemon is gone (killed with -9, so it
/// could not remove its own), killing what their pid files still name.
fn reap_local_leftovers() {
    for reaped in jobmaster::executor::local::reap_stale(&std::env::temp_dir()) {
        match reaped.error {
            None => tracing::warn!(folder = %reaped.folder.display(), killed = reaped.killed,
                                   "removed the folder of an earlier local cluster whose daemon is gone"),
            Some(e) => {
                tracing::warn!(folder = %reaped.folder.display(), killed = reaped.killed, error = %e,
                                      "cannot remove the folder of an earlier local cluster whose daemon is gone")
            }
        }
    }
}

/// Prints what `jobmaster certs` wrote and the commands that start a secure cluster.
fn print_certs_report(options: &CertsOptions, report: &CertsReport) {
    let dir = std::fs::canonicalize(&options.out).unwrap_or_else(|_| options.out.clone());
    let file = |name: &str| shell_quote(&dir.join(name).to_string_lossy());
    if report.ca_reused {
        println!("reused the CA in {}", dir.display());
    }
    println!("wrote:");
    for path in &report.written {
        println!("  {}", path.display());
    }
    if !report.kept.is_empty() {
        println!("kept (already there; --force replaces certificates and keys):");
        for path in &report.kept {
            println!("  {}", path.display());
        }
    }
    // The host name executors and operators reach the daemon by: the first that is not a
    // loopback name or address.
    let host = report
        .hosts
        .iter()
        .find(|h| {
            let bare = h.trim_start_matches('[').trim_end_matches(']');
            h.as_str() != "localhost"
                && !bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
        .map(|h| {
            if h.parse::<std::net::Ipv6Addr>().is_ok() {
                format!("[{h}]")
            } else {
                h.clone()
            }
        })
        .unwrap_or_else(|| "localhost".to_owned());
    println!("\nto start a secure cluster:");
    println!(
        "  jobmaster --tls-ca {} --tls-cert {} --tls-key {} --token-file {} --listen 0.0.0.0:6123",
        file(certs::CA_CERT),
        file(certs::JOBMASTER_CERT),
        file(certs::JOBMASTER_KEY),
        file(certs::TOKENS),
    );
    for id in &options.executors {
        println!(
            "  taskexecutor --jobmaster https://{host}:6123 --id {id} --tls-ca {} --tls-cert {} --tls-key {}",
            file(certs::CA_CERT),
            file(&certs::executor_cert_file(id)),
            file(&certs::executor_key_file(id)),
        );
    }
    println!(
        "  JOBMASTER_TOKEN=\"$(cat {1})\" jmctl --endpoint https://{host}:6123 --tls-ca {0} list",
        file(certs::CA_CERT),
        file(certs::OPERATOR_TOKEN),
    );
    println!(
        "copy {} and each executor's two files to its machine; keep {} off the cluster if you can",
        certs::CA_CERT,
        certs::CA_KEY
    );
}

/// `text` as one shell word.
fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@=+,".contains(&b))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
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
