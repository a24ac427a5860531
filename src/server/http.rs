//! The HTTP port: liveness, Prometheus metrics at `/metrics`, the dashboard at `/` and the JSON
//! it reads (`/api/overview`, `/api/jobs/{id}`).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::coordinator::Coordinator;
use super::metrics::label;
use super::{ApiError, Shared, parse_job_id};
use crate::core::{AttemptState, JobId, JobState};

const DASHBOARD: &str = include_str!("dashboard.html");

pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { Html(DASHBOARD) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/overview", get(overview))
        .route("/api/jobs/{id}", get(job))
        .with_state(shared)
}

fn error(e: ApiError) -> Response {
    let code = match e {
        ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        ApiError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, format!("{e}\n")).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match shared.with(|c| Ok(render_metrics(c))).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => error(e),
    }
}

async fn overview(State(shared): State<Arc<Shared>>) -> Response {
    match shared.with(|c| Ok(overview_json(c))).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error(e),
    }
}

async fn job(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let job = match parse_job_id(&id) {
        Ok(j) => j,
        Err(e) => return error(e),
    };
    match shared.with(move |c| job_json(c, job)).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error(e),
    }
}

fn overview_json(c: &Coordinator) -> Value {
    let jobs: Vec<Value> = c
        .core
        .job_ids()
        .map(|job| {
            json!({
                "job_id": job.to_string(),
                "name": c.core.job_name(job).to_owned(),
                "state": c.core.job_state(job).map(|s| s.name()).unwrap_or_default(),
                "tasks": c.core.graph(job).map_or(0, |g| g.task_count()),
                "regions": c.core.regions(job).map_or(0, |r| r.len()),
                "restarts": c.core.counters(job).map_or(0, |k| k.restarts),
            })
        })
        .collect();
    let executors: Vec<Value> = c
        .core
        .executors()
        .map(|(id, slots, free, partitions)| {
            let status = c.shared.executors.get(id);
            json!({
                "id": id.0,
                "address": status.as_ref().map(|s| s.address.clone()).unwrap_or_default(),
                "slots": slots,
                "free_slots": free,
                "heartbeat_age_ms": status.as_ref().map_or(0, |s| s.last_heartbeat.elapsed().as_millis() as u64),
                "partitions": partitions,
                "free_disk_bytes": status.as_ref().map_or(0, |s| s.free_disk),
            })
        })
        .collect();
    json!({ "jobs": jobs, "executors": executors })
}

fn job_json(c: &Coordinator, job: JobId) -> Result<Value, ApiError> {
    let graph = c
        .core
        .graph(job)
        .ok_or_else(|| ApiError::NotFound(format!("job {job} does not exist")))?;
    let tasks = c.core.tasks(job).unwrap_or_default();
    let regions: Vec<Value> = c
        .core
        .regions(job)
        .map(|rs| {
            rs.ids()
                .map(|r| {
                    json!({
                        "region": r.0,
                        "tasks": rs.tasks(r).iter().map(|t| {
                            let v = &tasks[t.index()];
                            json!({"name": v.name, "state": v.state.name(), "attempt": v.attempt,
                                   "executor": v.executor.as_ref().map(|e| e.0.clone()).unwrap_or_default()})
                        }).collect::<Vec<_>>(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let edges: Vec<Value> = graph
        .edges()
        .iter()
        .map(|e| {
            json!({"from": graph.vertex(e.from).id, "to": graph.vertex(e.to).id,
                   "pattern": e.pattern.name(), "exchange": e.exchange.name()})
        })
        .collect();
    let counters = c.core.counters(job).cloned().unwrap_or_default();
    let now = c.shared.now();
    let exceptions: Vec<Value> = c
        .core
        .exception_history(job)
        .map(|h| {
            h.entries()
                .map(|e| {
                    json!({
                        "time_ms": e.root.time,
                        "task": e.root.attempt.map(|a| graph.task_name(a.task).to_string()).unwrap_or_default(),
                        "attempt": e.root.attempt.map_or(0, |a| a.attempt),
                        "executor": e.root.executor.as_ref().map(|x| x.0.clone()).unwrap_or_default(),
                        "class": e.root.class.name(),
                        "message": e.root.message,
                        "concurrent": e.concurrent.len(),
                        "restarted": e.restarted.len(),
                        "outcome": e.outcome,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let failovers: Vec<Value> = c
        .metrics
        .jobs
        .get(&job)
        .map(|m| m.failovers.iter().map(|f| json!(f)).collect())
        .unwrap_or_default();
    Ok(json!({
        "job_id": job.to_string(),
        "name": graph.name(),
        "state": c.core.job_state(job).map(|s| s.name()).unwrap_or_default(),
        "cause": c.core.job_cause(job).unwrap_or_default(),
        "failover": c.core.failover_strategy(job).map(|f| f.name()).unwrap_or_default(),
        "counters": {
            "failovers": counters.failovers, "restarts": counters.restarts,
            "full_restarts": counters.full_restarts, "tasks_restarted": counters.tasks_restarted,
            "restarting_ms": c.core.restarting_ms(job, now).unwrap_or(0),
        },
        "regions": regions,
        "edges": edges,
        "failovers": failovers,
        "exceptions": exceptions,
    }))
}

/// Uptime (time since the job last became RUNNING, while it runs) and downtime (time since
/// it stopped running, while restarting or failing), as Flink defines them.
fn up_and_down(c: &Coordinator, job: JobId, now: u64) -> (u64, u64) {
    let Some(log) = c.core.job_transitions(job) else {
        return (0, 0);
    };
    let Some(&(state, since)) = log.last() else {
        return (0, 0);
    };
    match state {
        JobState::Running => (now.saturating_sub(since), 0),
        JobState::Restarting | JobState::Failing => (0, now.saturating_sub(since)),
        _ => (0, 0),
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole `/metrics` page.
pub(crate) fn render_metrics(c: &Coordinator) -> String {
    let now = c.shared.now();
    let jobs: Vec<(JobId, String)> = c
        .core
        .job_ids()
        .map(|j| {
            let name = c
                .core
                .graph(j)
                .map(|g| g.name().to_owned())
                .unwrap_or_default();
            (j, format!("job=\"{j}\",name=\"{}\"", label(&name)))
        })
        .collect();
    let mut out = String::new();
    let counter = |out: &mut String, name: &str, help: &str, f: &dyn Fn(JobId) -> f64| {
        family(out, name, "counter", help);
        for (j, l) in &jobs {
            let _ = writeln!(out, "{name}{{{l}}} {}", f(*j));
        }
    };
    let k = |j: JobId| c.core.counters(j).cloned().unwrap_or_default();
    counter(
        &mut out,
        "jobmaster_restarts_total",
        "Restarts counted by the job's restart strategy (failures merged into a pending restart excluded).",
        &|j| k(j).restarts as f64,
    );
    counter(
        &mut out,
        "jobmaster_failovers_total",
        "Failover decisions, merged ones included.",
        &|j| k(j).failovers as f64,
    );
    counter(
        &mut out,
        "jobmaster_full_restarts_total",
        "Failovers that restarted every task of the job.",
        &|j| k(j).full_restarts as f64,
    );
    counter(
        &mut out,
        "jobmaster_region_restarts_total",
        "Failovers that restarted only some regions (fine-grained).",
        &|j| (k(j).failovers - k(j).full_restarts) as f64,
    );
    counter(
        &mut out,
        "jobmaster_tasks_restarted_total",
        "Tasks restarted, summed over failovers.",
        &|j| k(j).tasks_restarted as f64,
    );
    counter(
        &mut out,
        "jobmaster_restarting_seconds_total",
        "Time the job spent RESTARTING.",
        &|j| c.core.restarting_ms(j, now).unwrap_or(0) as f64 / 1000.0,
    );

    family(
        &mut out,
        "jobmaster_tasks_restarted",
        "histogram",
        "Tasks restarted per failover.",
    );
    for (j, l) in &jobs {
        if let Some(m) = c.metrics.jobs.get(j) {
            m.tasks_restarted
                .render(&mut out, "jobmaster_tasks_restarted", l);
        }
    }
    family(
        &mut out,
        "jobmaster_failure_detection_seconds",
        "histogram",
        "Time from the fault's first evidence (last heartbeat, closed stream, failed RPC, failure report) to the failover decision.",
    );
    for (j, l) in &jobs {
        if let Some(m) = c.metrics.jobs.get(j) {
            m.detection
                .render(&mut out, "jobmaster_failure_detection_seconds", l);
        }
    }
    family(
        &mut out,
        "jobmaster_recovery_seconds",
        "histogram",
        "Time from a failover decision until every restarted task runs (or finished) again.",
    );
    for (j, l) in &jobs {
        if let Some(m) = c.metrics.jobs.get(j) {
            m.recovery.render(&mut out, "jobmaster_recovery_seconds", l);
        }
    }

    family(
        &mut out,
        "jobmaster_uptime_seconds",
        "gauge",
        "Time since the job last became RUNNING, while it is RUNNING; 0 otherwise.",
    );
    for (j, l) in &jobs {
        let _ = writeln!(
            out,
            "jobmaster_uptime_seconds{{{l}}} {}",
            up_and_down(c, *j, now).0 as f64 / 1000.0
        );
    }
    family(
        &mut out,
        "jobmaster_downtime_seconds",
        "gauge",
        "Time since the job stopped running, while it is RESTARTING or FAILING; 0 otherwise.",
    );
    for (j, l) in &jobs {
        let _ = writeln!(
            out,
            "jobmaster_downtime_seconds{{{l}}} {}",
            up_and_down(c, *j, now).1 as f64 / 1000.0
        );
    }
    family(
        &mut out,
        "jobmaster_job_state",
        "gauge",
        "1 for the job's current state.",
    );
    for (j, l) in &jobs {
        let state = c.core.job_state(*j).map(|s| s.name()).unwrap_or_default();
        let _ = writeln!(out, "jobmaster_job_state{{{l},state=\"{state}\"}} 1");
    }
    family(
        &mut out,
        "jobmaster_tasks",
        "gauge",
        "Tasks by the state of their current attempt.",
    );
    for (j, l) in &jobs {
        let mut counts = [0u64; AttemptState::ALL.len()];
        for t in c.core.tasks(*j).unwrap_or_default() {
            if let Some(i) = AttemptState::ALL.iter().position(|s| *s == t.state) {
                counts[i] += 1;
            }
        }
        for (s, n) in AttemptState::ALL.iter().zip(counts) {
            let _ = writeln!(out, "jobmaster_tasks{{{l},state=\"{}\"}} {n}", s.name());
        }
    }

    let executors: Vec<_> = c.core.executors().collect();
    let gauge = |out: &mut String, name: &str, help: &str, f: &dyn Fn(usize) -> f64| {
        family(out, name, "gauge", help);
        for (i, (id, ..)) in executors.iter().enumerate() {
            let _ = writeln!(out, "{name}{{executor=\"{}\"}} {}", label(&id.0), f(i));
        }
    };
    let status = |i: usize| c.shared.executors.get(executors[i].0);
    gauge(
        &mut out,
        "jobmaster_executor_registered",
        "1 for every registered executor.",
        &|_| 1.0,
    );
    gauge(
        &mut out,
        "jobmaster_executor_slots",
        "Slots the executor offers.",
        &|i| f64::from(executors[i].1),
    );
    gauge(
        &mut out,
        "jobmaster_executor_free_slots",
        "Slots not holding a task.",
        &|i| f64::from(executors[i].2),
    );
    gauge(
        &mut out,
        "jobmaster_executor_partitions",
        "Result partitions the executor hosts.",
        &|i| executors[i].3 as f64,
    );
    gauge(
        &mut out,
        "jobmaster_executor_heartbeat_age_seconds",
        "Time since the executor's last heartbeat.",
        &|i| status(i).map_or(0.0, |s| s.last_heartbeat.elapsed().as_secs_f64()),
    );
    gauge(
        &mut out,
        "jobmaster_executor_free_disk_bytes",
        "Free disk the executor reported.",
        &|i| status(i).map_or(0.0, |s| s.free_disk as f64),
    );
    out
}
