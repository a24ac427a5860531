//! `jmctl`'s operator commands: calls to a running JobMaster's `JobMasterService`, rendered as
//! tables or JSON ([`logs`]: raw task output; [`leader`]: who leads). [`follow`] runs a command
//! at the leader among several JobMaster endpoints.

mod checkpoints;
pub mod follow;
mod leader;
mod logs;

pub use checkpoints::{checkpoint, checkpoints};
pub use leader::leader;
pub use logs::{LogsRequest, logs};

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::json;
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use std::sync::Arc;

use crate::api::leader::Hint;
use crate::api::reason::NamedReason;
use crate::api::v1::job_master_service_client::JobMasterServiceClient;
use crate::api::v1::{
    CancelJobRequest, ExecutorInfo, ExplainFailoverRequest, GetBlastRadiusRequest,
    GetExceptionHistoryRequest, GetJobRequest, InjectFailureRequest, ListExecutorsRequest,
    ListJobsRequest, ReleaseExecutorRequest, SubmitJobRequest, WatchEvent, WatchEventsRequest,
    explain_failover_request, inject_failure_request,
};
use crate::blast_report;
use crate::core::domain::labels_text;
use crate::core::{FailureDomain, JobSpec, Labels, SpecFormat};
use crate::security::auth::BearerToken;
use crate::security::connector::{self, Expect};
use crate::security::tls::{ClientAuth, Tls, TlsFiles};

/// A failed command: exit code 1 (server or connection) or 2 (usage or input), one line.
#[derive(Debug)]
pub struct CtlError {
    pub code: u8,
    pub message: String,
    /// A standby answered the command's first call: what it said about the leader (for
    /// [`follow`]; `None` for any other error, and for errors later in a command).
    standby: Option<Hint>,
}

impl CtlError {
    pub fn input(message: impl Into<String>) -> CtlError {
        CtlError::new(2, message)
    }

    /// An error with exit `code`.
    pub fn new(code: u8, message: impl Into<String>) -> CtlError {
        CtlError {
            code,
            message: message.into(),
            standby: None,
        }
    }

    /// A failed call after the first of a command (a poll, a stream's next item): a command
    /// that already did something at one JobMaster is not repeated at another one.
    fn later(status: tonic::Status) -> CtlError {
        CtlError {
            standby: None,
            ..CtlError::server(status)
        }
    }

    fn server(status: tonic::Status) -> CtlError {
        // A plain-text call to a TLS port fails inside HTTP/2 with no better words.
        let hint = if status.code() == tonic::Code::Unknown
            && status.message().contains("protocol error")
        {
            " (if the jobmaster uses TLS, use an https:// endpoint and --tls-ca)"
        } else {
            ""
        };
        CtlError {
            code: 1,
            message: format!("{:?}: {}{hint}", status.code(), status.message()),
            standby: crate::api::leader::standby(&status),
        }
    }
}

pub type Client = JobMasterServiceClient<InterceptedService<Channel, BearerToken>>;

/// How jmctl reaches the JobMaster: its URL (`https://` for TLS), or the URLs of several
/// separated by commas (the command runs at the leader, see [`follow`]), the TLS files and an
/// operator token.
pub struct Connection<'a> {
    pub endpoint: &'a str,
    pub tls: Option<TlsFiles>,
    pub token: Option<&'a str>,
}

/// Whether `endpoint`'s host is this machine (`localhost` or a loopback address).
fn loopback(endpoint: &str) -> bool {
    let Ok(uri) = endpoint.parse::<tonic::transport::Uri>() else {
        return false;
    };
    let host = uri.host().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What every connection of one command uses: the TLS files loaded and the token checked once.
pub(crate) struct Setup {
    tls: Option<Arc<Tls>>,
    token: BearerToken,
    has_token: bool,
}

/// Why a connection to an endpoint failed.
pub(crate) struct Unreached {
    /// Nothing listens there.
    pub(crate) refused: bool,
    /// The cause, `a: b: c`.
    pub(crate) why: String,
}

impl Setup {
    pub(crate) fn new(c: &Connection<'_>) -> Result<Setup, CtlError> {
        let tls = match &c.tls {
            Some(files) => Some(
                Tls::load(files.clone(), ClientAuth::Optional, None)
                    .map_err(|e| CtlError::input(format!("tls: {e}")))?,
            ),
            None => None,
        };
        Ok(Setup {
            tls,
            token: BearerToken::new(c.token).map_err(CtlError::input)?,
            has_token: c.token.is_some_and(|t| !t.trim().is_empty()),
        })
    }

    /// Whether `endpoint` can be used with these TLS files and token (exit 2 if not).
    pub(crate) fn check(&self, endpoint: &str) -> Result<(), CtlError> {
        let https = endpoint.starts_with("https://");
        if https && self.tls.is_none() {
            return Err(CtlError::input(format!(
                "endpoint {endpoint:?} is https: give the cluster's CA with --tls-ca (or tls.ca)"
            )));
        }
        if !https && self.tls.is_some() {
            return Err(CtlError::input(format!(
                "endpoint {endpoint:?} is not https but TLS files are given: use https://"
            )));
        }
        if !https && self.has_token && !loopback(endpoint) {
            return Err(CtlError::input(format!(
                "refusing to send a token in plain text to {endpoint}: use an https:// endpoint \
                 with --tls-ca"
            )));
        }
        Ok(())
    }

    /// Connects to the JobMaster at `endpoint` ([`Setup::check`]ed); over TLS the server must
    /// hold the jobmaster's certificate.
    pub(crate) async fn connect(&self, endpoint: &str) -> Result<Client, Unreached> {
        let ep = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| Unreached {
                refused: false,
                why: format!("not a valid URL: {e}"),
            })?
            .connect_timeout(std::time::Duration::from_secs(3));
        let channel = connector::connect(ep, self.tls.clone(), Expect::JobMaster)
            .await
            .map_err(|e| Unreached {
                refused: connector::refused_error(&e),
                why: connector::describe(&e),
            })?;
        Ok(
            JobMasterServiceClient::with_interceptor(channel, self.token.clone())
                .max_decoding_message_size(64 << 20),
        )
    }
}

/// Connects to the JobMaster at `c.endpoint` (one URL; [`follow::call`] takes several); over
/// TLS the server must hold the jobmaster's certificate.
pub async fn connect(c: Connection<'_>) -> Result<Client, CtlError> {
    let setup = Setup::new(&c)?;
    setup.check(c.endpoint)?;
    setup.connect(c.endpoint).await.map_err(|e| {
        CtlError::new(
            1,
            format!(
                "cannot connect to the jobmaster at {}: {}",
                c.endpoint, e.why
            ),
        )
    })
}

/// A target of explain/inject: a task or an executor (or, for explain, a failure domain).
pub enum Target {
    Task(String),
    Executor(String),
    /// `key=value`: every executor with that label (explain only).
    Domain(String),
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default() + "\n"
}

/// Submits a spec file (validated locally first, so input errors exit with 2).
/// Reads a job spec file (`-`: standard input) and validates it locally, so that a bad spec
/// is reported as such before any connection is made.
pub fn read_spec(path: &str) -> Result<SpecText, CtlError> {
    let text = if path == "-" {
        let mut t = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut t).map_err(|e| {
            CtlError::input(format!("cannot read the spec from standard input: {e}"))
        })?;
        t
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| CtlError::input(format!("cannot read job spec {path:?}: {e}")))?
    };
    let format = SpecFormat::detect((path != "-").then_some(path), &text);
    JobSpec::parse(&text, format).map_err(|e| CtlError::input(format!("{path}: {e}")))?;
    Ok(SpecText { text, format })
}

/// A spec read and validated by [`read_spec`].
#[derive(Debug, Clone)]
pub struct SpecText {
    text: String,
    format: SpecFormat,
}

/// Submits, then waits for the job to end (polling its state): FINISHED is success; FAILED
/// (exit 3) and CANCELED (exit 4) are errors naming the job and its cause.
pub async fn submit_and_wait(
    client: &mut Client,
    spec: SpecText,
    json_out: bool,
) -> Result<String, CtlError> {
    let job = submit_job(client, spec).await?;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tick.tick().await;
        let j = client
            .get_job(GetJobRequest {
                job_id: job.clone(),
                task_limit: 1,
                ..GetJobRequest::default()
            })
            .await
            .map_err(CtlError::later)?
            .into_inner();
        let ended =
            |code: u8| CtlError::new(code, format!("job {job} ended {}: {}", j.state, j.cause));
        match j.state.as_str() {
            "FINISHED" => {
                return Ok(if json_out {
                    to_json(&json!({ "job_id": job, "state": j.state }))
                } else {
                    format!("{job} FINISHED\n")
                });
            }
            "FAILED" => return Err(ended(3)),
            "CANCELED" => return Err(ended(4)),
            _ => {}
        }
    }
}

pub async fn submit(
    client: &mut Client,
    spec: SpecText,
    json_out: bool,
) -> Result<String, CtlError> {
    let job_id = submit_job(client, spec).await?;
    Ok(if json_out {
        to_json(&json!({ "job_id": job_id }))
    } else {
        format!("{job_id}\n")
    })
}

/// Submits a validated spec; returns the job id.
async fn submit_job(client: &mut Client, spec: SpecText) -> Result<String, CtlError> {
    let SpecText { text, format } = spec;
    let r = client
        .submit_job(SubmitJobRequest {
            spec: text,
            format: match format {
                SpecFormat::Toml => "toml".into(),
                SpecFormat::Json => "json".into(),
            },
        })
        .await
        .map_err(CtlError::server)?
        .into_inner();
    Ok(r.job_id)
}

pub async fn list(client: &mut Client, json_out: bool) -> Result<String, CtlError> {
    let jobs = client
        .list_jobs(ListJobsRequest {})
        .await
        .map_err(CtlError::server)?
        .into_inner()
        .jobs;
    let now = now_ms();
    if json_out {
        return Ok(to_json(
            &jobs
                .iter()
                .map(|j| {
                    json!({"job_id": j.job_id, "name": j.name, "state": j.state, "tasks": j.tasks,
                           "tasks_up": j.tasks_up, "regions": j.regions, "restarts": j.restarts,
                           "start_time_ms": j.start_time_ms, "end_time_ms": j.end_time_ms})
                })
                .collect::<Vec<_>>(),
        ));
    }
    let mut out = format!(
        "{:<18} {:<24} {:<11} {:>13} {:>8} {:>9}  {:<20} {:>10}\n",
        "JOB", "NAME", "STATE", "TASKS UP", "REGIONS", "RESTARTS", "STARTED (UTC)", "DURATION"
    );
    for j in jobs {
        let _ = writeln!(
            out,
            "{:<18} {:<24} {:<11} {:>13} {:>8} {:>9}  {:<20} {:>10}",
            j.job_id,
            j.name,
            j.state,
            format!("{}/{}", j.tasks_up, j.tasks),
            j.regions,
            j.restarts,
            wall_time(j.start_time_ms),
            duration(j.start_time_ms, j.end_time_ms, now),
        );
    }
    Ok(out)
}

/// Which tasks `jmctl status` lists: a page (`offset`, `limit`), optionally only one state,
/// vertex or region.
#[derive(Debug, Clone, Default)]
pub struct TaskPage {
    pub offset: u32,
    /// 0: the server's default (1,000).
    pub limit: u32,
    pub state: String,
    pub vertex: String,
    pub region: Option<u32>,
}

/// Now, in ms since the Unix epoch (durations of jobs and tasks that have not ended).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A wall-clock time as `2026-12-06 07:30:01` (UTC); `-` for 0.
fn wall_time(ms: u64) -> String {
    if ms == 0 {
        return "-".to_owned();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .trim_end_matches('Z')
        .replace('T', " ")
}

/// From `start` to `end` (or to `now` when `end` is 0), e.g. `1h2m3s`, `850ms`.
fn duration(start: u64, end: u64, now: u64) -> String {
    if start == 0 {
        return "-".to_owned();
    }
    let ms = if end == 0 { now } else { end }.saturating_sub(start);
    let d = if ms >= 1000 {
        std::time::Duration::from_secs(ms / 1000)
    } else {
        std::time::Duration::from_millis(ms)
    };
    humantime::format_duration(d).to_string().replace(' ', "")
}

fn counts_text(states: &[crate::api::v1::StateCount]) -> String {
    states
        .iter()
        .map(|c| format!("{} {}", c.state, c.count))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn status(
    client: &mut Client,
    job: &str,
    page: &TaskPage,
    json_out: bool,
) -> Result<String, CtlError> {
    let j = client
        .get_job(GetJobRequest {
            job_id: job.into(),
            task_offset: page.offset,
            task_limit: page.limit,
            task_state: page.state.clone(),
            vertex: page.vertex.clone(),
            region_plus_one: page.region.map_or(0, |r| r + 1),
            ..GetJobRequest::default()
        })
        .await
        .map_err(CtlError::server)?
        .into_inner();
    let now = now_ms();
    if json_out {
        return Ok(to_json(&json!({
            "job_id": j.job_id, "name": j.name, "state": j.state, "cause": j.cause,
            "failover": j.failover, "start_time_ms": j.start_time_ms,
            "end_time_ms": j.end_time_ms, "total_tasks": j.total_tasks,
            "states": j.states.iter().map(|c| (c.state.clone(), c.count))
                .collect::<std::collections::BTreeMap<_, _>>(),
            "vertices": j.vertices.iter().map(|v| json!({"vertex": v.vertex,
                "parallelism": v.parallelism,
                "states": v.states.iter().map(|c| (c.state.clone(), c.count))
                    .collect::<std::collections::BTreeMap<_, _>>()})).collect::<Vec<_>>(),
            "tasks": j.tasks.iter().map(|t| json!({"name": t.name, "state": t.state,
                "attempt": t.attempt, "executor": t.executor, "region": t.region,
                "start_time_ms": t.start_time_ms, "state_since_ms": t.state_since_ms,
                "restarting": t.restarting})).collect::<Vec<_>>(),
            "next_task_offset": j.has_more_tasks.then_some(j.next_task_offset),
            "counters": j.counters.map(|c| json!({"failovers": c.failovers, "restarts": c.restarts,
                "full_restarts": c.full_restarts, "tasks_restarted": c.tasks_restarted,
                "restarting_ms": c.restarting_ms, "adopted_attempts": c.adopted_attempts,
                "recoveries": c.recoveries})),
        })));
    }
    let mut out = format!(
        "job {} ({}): {}, failover {}\n",
        j.job_id, j.name, j.state, j.failover
    );
    let _ = writeln!(
        out,
        "started {} UTC, {} {}",
        wall_time(j.start_time_ms),
        if j.end_time_ms == 0 {
            "running for"
        } else {
            "ran"
        },
        duration(j.start_time_ms, j.end_time_ms, now)
    );
    if !j.cause.is_empty() {
        let _ = writeln!(out, "cause: {}", j.cause);
    }
    if let Some(c) = &j.counters {
        let _ = writeln!(
            out,
            "failovers {}, restarts {}, full restarts {}, tasks restarted {}, time restarting {} ms",
            c.failovers, c.restarts, c.full_restarts, c.tasks_restarted, c.restarting_ms
        );
        if c.recoveries > 0 || j.state == "RECONCILING" {
            let _ = writeln!(
                out,
                "jobmaster restarts survived {}, attempts adopted (kept running) {}",
                c.recoveries, c.adopted_attempts
            );
        }
    }
    let _ = writeln!(out, "tasks {}: {}", j.total_tasks, counts_text(&j.states));
    let _ = writeln!(out, "\n{:<24} {:>11}  STATES", "VERTEX", "PARALLELISM");
    for v in &j.vertices {
        let _ = writeln!(
            out,
            "{:<24} {:>11}  {}",
            v.vertex,
            v.parallelism,
            counts_text(&v.states)
        );
    }
    let mut tasks = j.tasks;
    tasks.sort_by_key(|t| (t.region, t.index));
    let _ = writeln!(
        out,
        "\n{:<7} {:<28} {:<13} {:>7}  {:<20} {:>10}  EXECUTOR",
        "REGION", "TASK", "STATE", "ATTEMPT", "STARTED (UTC)", "DURATION"
    );
    for t in &tasks {
        let ended = matches!(t.state.as_str(), "FINISHED" | "FAILED" | "CANCELED");
        let state = if t.restarting {
            format!("{} (restarting)", t.state)
        } else {
            t.state.clone()
        };
        let _ = writeln!(
            out,
            "{:<7} {:<28} {:<13} {:>7}  {:<20} {:>10}  {}",
            t.region,
            t.name,
            state,
            t.attempt,
            wall_time(t.start_time_ms),
            duration(
                t.start_time_ms,
                if ended { t.state_since_ms } else { 0 },
                now
            ),
            t.executor
        );
    }
    if j.has_more_tasks {
        let _ = writeln!(
            out,
            "\n{} task(s) shown from index {}; more from --offset {} (--limit N, --state S, \
             --vertex V, --region R narrow the list)",
            tasks.len(),
            page.offset,
            j.next_task_offset
        );
    }
    Ok(out)
}

pub async fn cancel(client: &mut Client, job: &str, json_out: bool) -> Result<String, CtlError> {
    let r = client
        .cancel_job(CancelJobRequest { job_id: job.into() })
        .await
        .map_err(CtlError::server)?
        .into_inner();
    Ok(if json_out {
        to_json(&json!({"job_id": job, "state": r.state}))
    } else {
        format!("job {job}: {}\n", r.state)
    })
}

pub async fn explain(
    client: &mut Client,
    job: &str,
    target: Target,
    json_out: bool,
) -> Result<String, CtlError> {
    let target = match target {
        Target::Task(t) => explain_failover_request::Target::Task(t),
        Target::Executor(e) => explain_failover_request::Target::Executor(e),
        Target::Domain(d) => {
            // Checked here too, so a typo exits with 2 before any call.
            d.parse::<FailureDomain>()
                .map_err(|e| CtlError::input(format!("--domain: {e}")))?;
            explain_failover_request::Target::Domain(d)
        }
    };
    let r = client
        .explain_failover(ExplainFailoverRequest {
            job_id: job.into(),
            target: Some(target),
        })
        .await
        .map_err(CtlError::server)?
        .into_inner();
    if json_out {
        return Ok(to_json(&json!({
            "strategy": r.strategy, "restart": r.restart,
            "reasons": r.reasons.iter().map(|x| json!({"region": x.region, "tasks": x.tasks,
                "reason": x.reason, "failed_task": x.failed_task, "partition": x.partition,
                "consumer": x.consumer, "producer": x.producer})).collect::<Vec<_>>(),
        })));
    }
    let mut out = format!(
        "strategy {}: {} tasks would restart\n\n",
        r.strategy,
        r.restart.len()
    );
    if !r.reasons.is_empty() {
        let _ = writeln!(out, "{:<12} {:<50} TASKS", "SCOPE", "WHY");
    }
    for x in r.reasons {
        let scope = x
            .region
            .map_or_else(|| x.tasks.join(" "), |r| format!("region {r}"));
        let why = NamedReason::from_wire(&x).to_string();
        let _ = writeln!(out, "{scope:<12} {why:<50} {}", x.tasks.join(" "));
    }
    Ok(out)
}

/// `jmctl explain JOB --blast-radius`: the daemon's GetBlastRadius, one snapshot of the job.
pub async fn blast_radius(
    client: &mut Client,
    job: &str,
    json_out: bool,
) -> Result<String, CtlError> {
    let r = client
        .get_blast_radius(GetBlastRadiusRequest { job_id: job.into() })
        .await
        .map_err(CtlError::server)?
        .into_inner();
    let b = blast_report::from_wire(&r);
    Ok(if json_out {
        let mut extra = serde_json::Map::new();
        extra.insert("job_id".into(), json!(job));
        blast_report::to_json(&b, extra) + "\n"
    } else {
        blast_report::to_table(
            &b,
            &format!(
                "job {job}: {} tasks in {} regions on {} executors",
                b.tasks, b.regions, b.executors
            ),
        )
    })
}

pub async fn exceptions(
    client: &mut Client,
    job: &str,
    json_out: bool,
) -> Result<String, CtlError> {
    let r = client
        .get_exception_history(GetExceptionHistoryRequest { job_id: job.into() })
        .await
        .map_err(CtlError::server)?
        .into_inner();
    let failure = |f: &crate::api::v1::FailureInfo| {
        json!({"time_ms": f.time_ms, "task": f.task, "attempt": f.attempt, "executor": f.executor,
               "class": f.class, "message": f.message})
    };
    if json_out {
        return Ok(to_json(&json!({
            "truncated": r.truncated,
            "entries": r.entries.iter().map(|e| json!({
                "root": e.root.as_ref().map(failure),
                "concurrent": e.concurrent.iter().map(failure).collect::<Vec<_>>(),
                "restarted": e.restarted, "outcome": e.outcome})).collect::<Vec<_>>(),
        })));
    }
    let mut out = String::new();
    if r.entries.is_empty() {
        out.push_str("no failures\n");
    } else {
        // Newest first; under each root failure its concurrent ones (+) and the decision (=>).
        let _ = writeln!(
            out,
            "{:>11}  ROOT FAILURE: TASK attempt N on EXECUTOR  [CLASS] MESSAGE",
            "AT"
        );
    }
    for e in r.entries.iter().rev() {
        if let Some(f) = &e.root {
            let _ = writeln!(
                out,
                "{:>10.3}s  {} attempt {} on {}  [{}] {}",
                f.time_ms as f64 / 1000.0,
                f.task,
                f.attempt,
                f.executor,
                f.class,
                f.message
            );
        }
        for f in &e.concurrent {
            let _ = writeln!(
                out,
                "             + {} attempt {} on {}  [{}] {}",
                f.task, f.attempt, f.executor, f.class, f.message
            );
        }
        let _ = writeln!(out, "             => {}", e.outcome);
    }
    if r.truncated {
        out.push_str("(older entries were dropped)\n");
    }
    Ok(out)
}

pub async fn executors(client: &mut Client, json_out: bool) -> Result<String, CtlError> {
    let list = client
        .list_executors(ListExecutorsRequest {})
        .await
        .map_err(CtlError::server)?
        .into_inner()
        .executors;
    if json_out {
        return Ok(to_json(
            &list
                .iter()
                .map(|e| {
                    json!({"id": e.id, "address": e.address, "slots": e.slots,
                    "free_slots": e.free_slots, "heartbeat_age_ms": e.heartbeat_age_ms,
                    "partitions": e.partitions, "free_disk_bytes": e.free_disk_bytes,
                    "labels": e.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
                    "quarantined": e.quarantined,
                    "quarantine_remaining_ms": e.quarantine_remaining_ms,
                    "quarantine_reason": e.quarantine_reason})
                })
                .collect::<Vec<_>>(),
        ));
    }
    let mut out = format!(
        "{:<20} {:<22} {:>5} {:>5} {:>9} {:>10} {:>14}  {:<20} QUARANTINE\n",
        "EXECUTOR", "ADDRESS", "SLOTS", "FREE", "HB_AGE_MS", "PARTITIONS", "FREE_DISK", "LABELS"
    );
    for e in list {
        let labels: Labels = e
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let _ = writeln!(
            out,
            "{:<20} {:<22} {:>5} {:>5} {:>9} {:>10} {:>14}  {:<20} {}",
            e.id,
            e.address,
            e.slots,
            e.free_slots,
            e.heartbeat_age_ms,
            e.partitions,
            e.free_disk_bytes,
            labels_text(&labels),
            quarantine_text(&e)
        );
    }
    Ok(out)
}

/// `jmctl executors release ID`: ends the executor's quarantine early.
pub async fn release_executor(
    client: &mut Client,
    executor: &str,
    json_out: bool,
) -> Result<String, CtlError> {
    client
        .release_executor(ReleaseExecutorRequest {
            executor_id: executor.into(),
        })
        .await
        .map_err(CtlError::server)?;
    Ok(if json_out {
        to_json(&json!({"executor_id": executor, "released": true}))
    } else {
        format!("executor {executor}: released, it takes new placements\n")
    })
}

/// The QUARANTINE cell: `41m left: 2 task failures in 1h`, or `-`.
fn quarantine_text(e: &ExecutorInfo) -> String {
    if !e.quarantined {
        return "-".to_owned();
    }
    let left = coarse_duration(e.quarantine_remaining_ms);
    if e.quarantine_reason.is_empty() {
        format!("{left} left")
    } else {
        format!("{left} left: {}", e.quarantine_reason)
    }
}

/// `1h5m`, `41m`, `12s`: the largest units only.
fn coarse_duration(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        _ if s % 3600 / 60 == 0 => format!("{}h", s / 3600),
        _ => format!("{}h{}m", s / 3600, s % 3600 / 60),
    }
}

pub async fn inject(
    client: &mut Client,
    job: &str,
    target: Target,
    class: &str,
    message: &str,
) -> Result<String, CtlError> {
    let (target, what) = match target {
        Target::Task(t) => (
            inject_failure_request::Target::Task(t.clone()),
            format!("task {t}"),
        ),
        Target::Executor(e) => (
            inject_failure_request::Target::Executor(e.clone()),
            format!("executor {e}"),
        ),
        Target::Domain(_) => {
            return Err(CtlError::input(
                "inject takes a task or an executor, not a domain",
            ));
        }
    };
    client
        .inject_failure(InjectFailureRequest {
            job_id: job.into(),
            target: Some(target),
            class: class.into(),
            message: message.into(),
        })
        .await
        .map_err(CtlError::server)?;
    Ok(format!("injected a failure into {what}\n"))
}

/// Streams events to `out` until the server ends the stream or the process is interrupted.
pub async fn watch(
    client: &mut Client,
    job: Option<&str>,
    json_out: bool,
    out: &mut (dyn std::io::Write + Send),
) -> Result<(), CtlError> {
    let mut stream = client
        .watch_events(WatchEventsRequest {
            job_id: job.unwrap_or_default().into(),
        })
        .await
        .map_err(CtlError::server)?
        .into_inner();
    while let Some(event) = stream.next().await {
        let e = event.map_err(CtlError::later)?;
        let line = if json_out {
            event_json(&e)
        } else {
            event_line(&e)
        };
        if out
            .write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(()); // the reader went away
        }
    }
    Ok(())
}

fn event_json(e: &WatchEvent) -> String {
    to_json(
        &json!({"time_ms": e.time_ms, "kind": e.kind, "job_id": e.job_id, "task": e.task,
        "attempt": e.attempt, "executor": e.executor, "state": e.state, "detail": e.detail,
        "tasks": e.tasks, "delay_ms": e.delay_ms, "merged": e.merged}),
    )
}

fn event_line(e: &WatchEvent) -> String {
    let mut s = format!("{:>10.3}s  {:<20}", e.time_ms as f64 / 1000.0, e.kind);
    if !e.job_id.is_empty() {
        let _ = write!(s, " job {}", e.job_id);
    }
    if !e.task.is_empty() {
        let _ = write!(s, " {} attempt {}", e.task, e.attempt);
    }
    if !e.state.is_empty() {
        let _ = write!(s, " {}", e.state);
    }
    if !e.executor.is_empty() {
        let _ = write!(s, " on {}", e.executor);
    }
    if !e.tasks.is_empty() {
        let _ = write!(
            s,
            " {} tasks in {} ms{}",
            e.tasks.len(),
            e.delay_ms,
            if e.merged { " (merged)" } else { "" }
        );
    }
    if !e.detail.is_empty() {
        let _ = write!(s, " — {}", e.detail);
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quarantine_cell_says_how_long_is_left_and_why() {
        let mut e = ExecutorInfo::default();
        assert_eq!(quarantine_text(&e), "-");
        e.quarantined = true;
        e.quarantine_remaining_ms = 41 * 60_000 - 300;
        e.quarantine_reason = "2 task failures in 1h".into();
        assert_eq!(quarantine_text(&e), "41m left: 2 task failures in 1h");
        assert_eq!(coarse_duration(12_000), "12s");
        assert_eq!(coarse_duration(3_900_000), "1h5m");
        assert_eq!(coarse_duration(7_200_000), "2h");
    }
}

#[cfg(test)]
mod connect_tests {
    use super::*;

    #[tokio::test]
    async fn a_token_is_never_sent_in_plain_text_beyond_this_machine() {
        let Err(refused) = connect(Connection {
            endpoint: "http://10.0.0.1:6123",
            tls: None,
            token: Some("jm_secret"),
        })
        .await
        else {
            panic!("a token over plain text to another machine must be refused")
        };
        assert_eq!(refused.code, 2);
        assert!(refused.message.contains("https://"), "{}", refused.message);
        assert!(loopback("http://127.0.0.1:6123") && loopback("http://localhost:1"));
        assert!(loopback("http://[::1]:6123") && !loopback("http://jm.example.com:6123"));
    }
}
