//! The HTTP port: liveness, Prometheus metrics at `/metrics`, the dashboard at `/` and the JSON
//! it reads (`/api/overview`, `/api/jobs/{id}`).

use std::sync::Arc;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::coordinator::Coordinator;
use super::exposition::{CONTENT_TYPE, render_metrics};
use super::{ApiError, Shared, parse_job_id};
use crate::core::JobId;
use crate::security::Role;
use crate::security::auth::Denied;
use crate::security::incoming::Peer;

const DASHBOARD: &str = include_str!("dashboard.html");

pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { Html(DASHBOARD) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/overview", get(overview))
        .route("/api/jobs/{id}", get(job))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            authorize,
        ))
        .with_state(shared)
}

/// The dashboard page and `/healthz` are open (the page asks for a token); its data and
/// `/metrics` need a viewer (`/metrics` is open with `auth.metrics-open`).
async fn authorize(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let open =
        path == "/" || path == "/healthz" || (path == "/metrics" && shared.guard.metrics_open);
    if !open {
        let peer = request
            .extensions()
            .get::<ConnectInfo<Peer>>()
            .map(|ConnectInfo(peer)| peer);
        let checked = shared.guard.operator(
            peer,
            request.headers(),
            Role::Viewer,
            "reading the jobmaster's data",
        );
        match checked {
            Ok(_) => {}
            Err(Denied::Unauthenticated(m)) => {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    format!("{m}\n"),
                )
                    .into_response();
            }
            Err(Denied::PermissionDenied(m)) => {
                return (StatusCode::FORBIDDEN, format!("{m}\n")).into_response();
            }
        }
    }
    next.run(request).await
}

fn error(e: ApiError) -> Response {
    let code = match e {
        ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        ApiError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        ApiError::PermissionDenied(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, format!("{e}\n")).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match shared.with(|c| Ok(render_metrics(c))).await {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
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
    let now = c.shared.now();
    let executors: Vec<Value> = c
        .core
        .executors()
        .map(|(id, slots, free, partitions)| {
            let status = c.shared.executors.get(id);
            let quarantine = c.core.quarantine(id);
            json!({
                "id": id.0,
                "address": status.as_ref().map(|s| s.address.clone()).unwrap_or_default(),
                "slots": slots,
                "free_slots": free,
                "heartbeat_age_ms": status.as_ref().map_or(0, |s| s.last_heartbeat.elapsed().as_millis() as u64),
                "partitions": partitions,
                "free_disk_bytes": status.as_ref().map_or(0, |s| s.free_disk),
                "quarantined": quarantine.is_some(),
                "quarantine_remaining_ms": quarantine.map_or(0, |q| q.until.saturating_sub(now)),
                "quarantine_reason": quarantine.map(|q| q.reason.clone()).unwrap_or_default(),
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
