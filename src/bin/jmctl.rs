//! jmctl: the operators' CLI. Offline tools (`plan`, `simulate`) work without a daemon; the
//! other commands call a running JobMaster.
//!
//! Exit codes: 0 success, 1 server or connection error, 2 bad usage or bad input (one line on
//! stderr); `submit --wait`: 3 when the job ended FAILED, 4 when it ended CANCELED.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use jobmaster::api::logs::LogStream;
use jobmaster::blast_report;
use jobmaster::core::{CoreConfig, FailoverStrategy, JobSpec, PlacementPolicy, SpecFormat};
use jobmaster::ctl;
use jobmaster::plan::{ClusterPlan, Plan, PlanRequest, blast_radius_offline};
use jobmaster::security::flags::TlsArgs;
use jobmaster::simulate::{self, Scenario};

#[derive(Parser)]
#[command(name = "jmctl", version, about = "Operate and plan jobmaster jobs")]
struct Cli {
    /// The JobMaster's gRPC URL, or several separated by commas (with HA): the command runs
    /// at the one that leads.
    #[arg(
        long,
        global = true,
        value_name = "URL[,URL...]",
        env = "JOBMASTER_ENDPOINT",
        default_value = "http://127.0.0.1:6123"
    )]
    endpoint: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// TLS: the cluster's CA, and an operator certificate and key (or use --token).
    #[command(flatten)]
    tls: TlsArgs,
    /// An operator's bearer token (viewer or operator role). Prefer the environment variable:
    /// a flag is visible to other users in the process list.
    #[arg(long, global = true, env = "JOBMASTER_TOKEN", hide_env_values = true)]
    token: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Show a job spec's pipelined regions and what a failure would restart (offline).
    Plan {
        /// Job spec file (TOML or JSON; `-` reads standard input).
        spec: String,
        /// A task that fails, as `vertex#subtask`; repeat for several.
        #[arg(long = "fail", value_name = "TASK")]
        fail: Vec<String>,
        /// A task whose blocking and persistent output partitions are lost; repeat for several.
        #[arg(long = "lost", value_name = "TASK", requires = "fail")]
        lost: Vec<String>,
        /// Failover strategy to plan with (default: the spec's `failover`).
        #[arg(long, value_parser = ["full", "region", "individual"])]
        strategy: Option<String>,
        /// Print counts instead of lists (for big graphs).
        #[arg(long)]
        summary: bool,
        /// Blast-radius report instead: place the job on N executors (`e0`, `e1`, ...) with
        /// the real core and show what each executor's loss would restart.
        #[arg(long, value_name = "N", requires = "slots", conflicts_with_all = ["fail", "lost", "summary"],
              value_parser = clap::value_parser!(u32).range(1..))]
        executors: Option<u32>,
        /// Slots of each executor (with --executors).
        #[arg(long, value_name = "S", requires = "executors",
              value_parser = clap::value_parser!(u32).range(1..))]
        slots: Option<u32>,
        /// Placement policy for --executors: pack-regions or spread (default: the core's).
        #[arg(long, value_name = "POLICY", requires = "executors")]
        placement: Option<String>,
    },
    /// Run a failure scenario on the real JobMaster core with virtual executors and a virtual
    /// clock (offline).
    Simulate {
        /// Scenario file (TOML or JSON; `-` reads standard input).
        scenario: String,
        /// Print only the final state, not the timeline.
        #[arg(long)]
        summary: bool,
    },
    /// Submit a job spec; prints the job id.
    Submit {
        /// Job spec file (TOML or JSON; `-` reads standard input).
        spec: String,
        /// Wait until the job ends; exit 0 if it FINISHED, 3 if it FAILED, 4 if it was
        /// CANCELED (the job id and cause on stderr).
        #[arg(long)]
        wait: bool,
    },
    /// List jobs.
    List,
    /// Who leads: the leader's endpoint, the HA mode, its epoch, since when, its election key.
    Leader,
    /// A job's state, start time and duration, its tasks per state by vertex, and a page of
    /// its tasks (1,000 by default) grouped by region.
    Status {
        job: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Cancel a job.
    Cancel { job: String },
    /// A job's checkpoints: id, state, trigger time, duration, size, tasks acknowledged
    /// (in progress, retained and the last 32 ended, newest first).
    Checkpoints { job: String },
    /// Trigger a checkpoint of a job now, whatever its interval; prints its id.
    Checkpoint { job: String },
    /// What would restart, and why, if a task failed, an executor or a whole failure domain
    /// were lost now; or, with --blast-radius, what each executor's loss would restart.
    Explain {
        job: String,
        #[command(flatten)]
        target: ExplainArgs,
    },
    /// A job's exception history, newest first.
    Exceptions { job: String },
    /// Registered executors (with their quarantine); `release ID` ends a quarantine early.
    Executors {
        #[command(subcommand)]
        action: Option<ExecutorsAction>,
    },
    /// Live events (of one job, or all) until interrupted.
    Watch { job: Option<String> },
    /// A task's output (stdout, or stderr with --stderr), raw, from the executor that ran it.
    Logs {
        job: String,
        /// The task, vertex#subtask.
        task: String,
        /// Which attempt (default: the current one); earlier ones are kept on their executors.
        #[arg(long)]
        attempt: Option<u32>,
        /// Keep writing what the attempt writes until it ends (or until interrupted).
        #[arg(long, short = 'f')]
        follow: bool,
        /// The task's standard error instead of its standard output.
        #[arg(long, conflicts_with = "stdout")]
        stderr: bool,
        /// The task's standard output (the default).
        #[arg(long)]
        stdout: bool,
    },
    /// Drill: fail a task's current attempt, or declare an executor lost.
    Inject {
        job: String,
        #[command(flatten)]
        target: TargetArgs,
        /// Failure class for a task: recoverable, non-recoverable, partition-lost.
        #[arg(long, default_value = "recoverable")]
        class: String,
        /// Failure message.
        #[arg(long, default_value = "")]
        message: String,
    },
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum ExecutorsAction {
    /// End an executor's quarantine early: it takes new placements again at once (its
    /// recent failures are forgiven).
    Release {
        /// The executor id, as `jmctl executors` lists it.
        id: String,
    },
}

/// Which tasks `status` lists.
#[derive(clap::Args)]
struct PageArgs {
    /// First task index listed (the hint under a long list says where the next page starts).
    #[arg(long, default_value_t = 0)]
    offset: u32,
    /// Tasks listed (at most 10,000; default 1,000).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    limit: u32,
    /// Only tasks in this state (e.g. FAILED, RUNNING).
    #[arg(long, default_value = "", hide_default_value = true)]
    state: String,
    /// Only tasks of this vertex.
    #[arg(long, default_value = "", hide_default_value = true)]
    vertex: String,
    /// Only tasks of this region.
    #[arg(long)]
    region: Option<u32>,
}

impl PageArgs {
    fn page(&self) -> ctl::TaskPage {
        ctl::TaskPage {
            offset: self.offset,
            limit: self.limit,
            state: self.state.clone(),
            vertex: self.vertex.clone(),
            region: self.region,
        }
    }
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct TargetArgs {
    /// A task, vertex#subtask.
    #[arg(long)]
    task: Option<String>,
    /// An executor id.
    #[arg(long)]
    executor: Option<String>,
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct ExplainArgs {
    /// A task, vertex#subtask.
    #[arg(long)]
    task: Option<String>,
    /// An executor id.
    #[arg(long)]
    executor: Option<String>,
    /// A failure domain, key=value (e.g. zone=a): every executor with that label is lost.
    #[arg(long, value_name = "KEY=VALUE")]
    domain: Option<String>,
    /// Per executor: the tasks and regions its loss would restart, and the expected fraction
    /// of the job restarted by one random executor loss.
    #[arg(long)]
    blast_radius: bool,
}

impl ExplainArgs {
    fn target(&self) -> ctl::Target {
        match (&self.task, &self.executor, &self.domain) {
            (Some(t), _, _) => ctl::Target::Task(t.clone()),
            (None, Some(e), _) => ctl::Target::Executor(e.clone()),
            (None, None, Some(d)) => ctl::Target::Domain(d.clone()),
            (None, None, None) => ctl::Target::Task(String::new()),
        }
    }
}

impl TargetArgs {
    fn target(&self) -> ctl::Target {
        match (&self.task, &self.executor) {
            (Some(t), _) => ctl::Target::Task(t.clone()),
            (None, Some(e)) => ctl::Target::Executor(e.clone()),
            (None, None) => ctl::Target::Task(String::new()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = &cli.command {
        use clap::CommandFactory;
        clap_complete::generate(*shell, &mut Cli::command(), "jmctl", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if !matches!(cli.command, Command::Plan { .. } | Command::Simulate { .. }) {
        return remote(&cli);
    }
    match run(&cli) {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`jmctl plan ... | head`) is not an error worth reporting.
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("jmctl: error: cannot write output: {e}");
                    ExitCode::from(1)
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(message) => {
            eprintln!("jmctl: error: {message}");
            ExitCode::from(2)
        }
    }
}

/// Runs a command against the JobMaster.
fn remote(cli: &Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jmctl: error: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let json = cli.output == Output::Json;
    let result = runtime.block_on(async {
        // A bad spec is an input error, reported before any connection is tried.
        let spec = match &cli.command {
            Command::Submit { spec, .. } => Some(ctl::read_spec(spec)?),
            _ => None,
        };
        let tls = cli
            .tls
            .files()
            .map_err(|e| ctl::CtlError::input(e.to_string()))?;
        let connection = ctl::Connection {
            endpoint: &cli.endpoint,
            tls,
            token: cli.token.as_deref(),
        };
        ctl::follow::call(&connection, async |c: &mut ctl::Client| {
            command(cli, c, spec.as_ref(), json).await
        })
        .await
    });
    match result {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jmctl: error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// Runs one remote command at the JobMaster `c` reaches (again, at the leader, when a standby
/// answered its first call: see `ctl::follow`).
async fn command(
    cli: &Cli,
    c: &mut ctl::Client,
    spec: Option<&ctl::SpecText>,
    json: bool,
) -> Result<String, ctl::CtlError> {
    match &cli.command {
        Command::Submit { wait, .. } => match spec.cloned() {
            Some(spec) if *wait => ctl::submit_and_wait(c, spec, json).await,
            Some(spec) => ctl::submit(c, spec, json).await,
            None => Err(ctl::CtlError::input("no spec")),
        },
        Command::List => ctl::list(c, json).await,
        Command::Leader => ctl::leader(c, json).await,
        Command::Status { job, page } => ctl::status(c, job, &page.page(), json).await,
        Command::Cancel { job } => ctl::cancel(c, job, json).await,
        Command::Checkpoints { job } => ctl::checkpoints(c, job, json).await,
        Command::Checkpoint { job } => ctl::checkpoint(c, job, json).await,
        Command::Explain { job, target } if target.blast_radius => {
            ctl::blast_radius(c, job, json).await
        }
        Command::Explain { job, target } => ctl::explain(c, job, target.target(), json).await,
        Command::Exceptions { job } => ctl::exceptions(c, job, json).await,
        Command::Executors { action: None } => ctl::executors(c, json).await,
        Command::Executors {
            action: Some(ExecutorsAction::Release { id }),
        } => ctl::release_executor(c, id, json).await,
        Command::Inject {
            job,
            target,
            class,
            message,
        } => ctl::inject(c, job, target.target(), class, message).await,
        Command::Logs {
            job,
            task,
            attempt,
            follow,
            stderr,
            stdout: _,
        } => {
            let request = ctl::LogsRequest {
                job,
                task,
                attempt: *attempt,
                stream: if *stderr {
                    LogStream::Stderr
                } else {
                    LogStream::Stdout
                },
                follow: *follow,
            };
            let mut out = std::io::stdout();
            tokio::select! {
                r = ctl::logs(c, request, &mut out) => r.map(|()| String::new()),
                _ = tokio::signal::ctrl_c() => Ok(String::new()),
            }
        }
        Command::Watch { job } => {
            let mut out = std::io::stdout();
            tokio::select! {
                r = ctl::watch(c, job.as_deref(), json, &mut out) => r.map(|()| String::new()),
                _ = tokio::signal::ctrl_c() => Ok(String::new()),
            }
        }
        _ => Ok(String::new()),
    }
}

fn run(cli: &Cli) -> Result<String, String> {
    match &cli.command {
        Command::Plan {
            spec,
            fail,
            lost,
            strategy,
            summary,
            executors,
            slots,
            placement,
        } => {
            let job = read_spec(spec)?;
            if let (Some(executors), Some(slots)) = (executors, slots) {
                return plan_blast_radius(
                    &job,
                    *executors,
                    *slots,
                    placement.as_deref(),
                    cli.output,
                );
            }
            let request = PlanRequest {
                strategy: strategy
                    .as_deref()
                    .map(str::parse::<FailoverStrategy>)
                    .transpose()?,
                fail: fail.clone(),
                lost: lost.clone(),
            };
            let plan = Plan::compute(&job, &request).map_err(|e| e.to_string())?;
            Ok(match cli.output {
                Output::Json => plan.to_json(*summary) + "\n",
                Output::Table => plan.to_table(*summary),
            })
        }
        Command::Simulate { scenario, summary } => simulate(scenario, *summary, cli.output),
        _ => Ok(String::new()),
    }
}

fn plan_blast_radius(
    job: &JobSpec,
    executors: u32,
    slots: u32,
    placement: Option<&str>,
    output: Output,
) -> Result<String, String> {
    let placement = match placement {
        Some(p) => p
            .parse::<PlacementPolicy>()
            .map_err(|e| format!("--placement: {e}"))?,
        None => CoreConfig::default().placement,
    };
    let cluster = ClusterPlan {
        executors,
        slots,
        placement,
    };
    let b = blast_radius_offline(job, cluster).map_err(|e| e.to_string())?;
    Ok(match output {
        Output::Json => {
            let mut extra = serde_json::Map::new();
            extra.insert("job".into(), job.name.clone().into());
            extra.insert("placement".into(), placement.name().into());
            extra.insert("slots_per_executor".into(), slots.into());
            blast_report::to_json(&b, extra) + "\n"
        }
        Output::Table => {
            let placed: usize = b.per_executor.iter().map(|e| e.hosted).sum();
            let mut title = format!(
                "job {}: {} tasks in {} regions on {executors} executors x {slots} slots, \
                 placement {placement}",
                job.name, b.tasks, b.regions
            );
            if placed < b.tasks {
                title.push_str(&format!(
                    "\nnot enough slots: {} tasks are not placed",
                    b.tasks - placed
                ));
            }
            blast_report::to_table(&b, &title)
        }
    })
}

fn simulate(path: &str, summary: bool, output: Output) -> Result<String, String> {
    let (text, name) = read_input(path, "scenario")?;
    let base = match name {
        Some(p) => std::path::Path::new(p)
            .parent()
            .map(|d| d.to_path_buf())
            .unwrap_or_default(),
        None => std::path::PathBuf::new(),
    };
    let load = |spec: &str| {
        let full = base.join(spec);
        std::fs::read_to_string(&full)
            .map_err(|e| format!("cannot read job spec {}: {e}", full.display()))
    };
    let format = SpecFormat::detect(name, &text);
    let scenario = Scenario::parse(&text, format, load).map_err(|e| match name {
        Some(p) => format!("{p}: {e}"),
        None => e.to_string(),
    })?;
    let report = simulate::simulate(&scenario, !summary);
    Ok(match output {
        Output::Json => report.to_json() + "\n",
        Output::Table => report.to_table(summary),
    })
}

fn read_input<'a>(path: &'a str, what: &str) -> Result<(String, Option<&'a str>), String> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the {what} from standard input: {e}"))?;
        Ok((text, None))
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {what} {path:?}: {e}"))?;
        Ok((text, Some(path)))
    }
}

fn read_spec(path: &str) -> Result<JobSpec, String> {
    let (text, name) = read_input(path, "job spec")?;
    let format = SpecFormat::detect(name, &text);
    JobSpec::parse(&text, format).map_err(|e| match name {
        Some(path) => format!("{path}: {e}"),
        None => e.to_string(),
    })
}
