//! The HTTP port: liveness, Prometheus metrics at `/metrics`, the dashboard at `/` and the JSON
//! it reads (`/api/overview`, `/api/jobs/{id}`, `/api/jobs/{id}/tasks`,
//! `/api/jobs/{id}/checkpoints`) — jobs from the read model, never from the coordinator; the
//! short lists (executors, a job's last checkpoints) from the coordinator.

use std::sync::Arc;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Path, Query as Params, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::coordinator::Coordinator;
use super::exposition::{CONTENT_TYPE, render_metrics};
use super::read_model::{JobSnapshot, Query, render};
use super::{ApiError, Shared, parse_job_id};
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
        .route("/api/jobs/{id}/tasks", get(tasks))
        .route("/api/jobs/{id}/checkpoints", get(checkpoints))
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
        ApiError::ResourceExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
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
    // Jobs from the read model; executors (a short list) from the coordinator.
    let jobs: Vec<Value> = shared
        .read
        .jobs()
        .iter()
        .map(|s| {
            let j = render::summary(s);
            json!({
                "job_id": j.job_id, "name": j.name, "state": j.state, "tasks": j.tasks,
                "tasks_up": j.tasks_up, "regions": j.regions, "restarts": j.restarts,
                "start_time_ms": j.start_time_ms, "end_time_ms": j.end_time_ms,
            })
        })
        .collect();
    match shared.with(|c| Ok(executors_json(c))).await {
        Ok(executors) => axum::Json(json!({
            "jobs": jobs,
            "executors": executors,
            "now_ms": shared.wall_ms(),
            "leader": {
                "ha_mode": shared.leader.ha_mode,
                "endpoint": shared.leader.endpoint,
                "epoch": shared.epoch,
                "since_ms": shared.leader.since_unix_ms,
                "key": shared.leader.key,
            },
        }))
        .into_response(),
        Err(e) => error(e),
    }
}

/// Query parameters of `/api/jobs/{id}` and `/api/jobs/{id}/tasks`.
#[derive(Debug, Default, serde::Deserialize)]
struct JobParams {
    /// Answer 304 Not Modified when the job's version is still this one; for `/tasks`, only
    /// the tasks changed after it.
    since: Option<u64>,
    /// `/api/jobs/{id}`: include a page of tasks (`true`), none (`false`), or only when the
    /// job has at most [`DASHBOARD_TASKS`] tasks (absent).
    tasks: Option<bool>,
    offset: Option<usize>,
    limit: Option<usize>,
    state: Option<String>,
    vertex: Option<String>,
    region: Option<u32>,
    region_offset: Option<usize>,
    region_limit: Option<usize>,
}

/// Jobs with at most this many tasks come with their tasks; larger ones are summarised (per
/// vertex and region) and their tasks read in pages.
pub(crate) const DASHBOARD_TASKS: usize = 2_000;

fn snapshot_and_query(
    shared: &Shared,
    id: &str,
    p: &JobParams,
    since_filters: bool,
) -> Result<(Arc<JobSnapshot>, Query), ApiError> {
    let job = parse_job_id(id)?;
    let s = shared
        .read
        .job(job)
        .ok_or_else(|| ApiError::NotFound(format!("job {job} does not exist")))?;
    let q = Query::new(
        &s,
        p.offset.unwrap_or(0),
        p.limit.unwrap_or(0),
        p.state.as_deref().unwrap_or(""),
        p.vertex.as_deref().unwrap_or(""),
        p.region,
        p.region_offset.unwrap_or(0),
        p.region_limit.unwrap_or(0),
        if since_filters {
            p.since.unwrap_or(0)
        } else {
            0
        },
    )?;
    Ok((s, q))
}

async fn job(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Params(p): Params<JobParams>,
) -> Response {
    let (s, q) = match snapshot_and_query(&shared, &id, &p, false) {
        Ok(x) => x,
        Err(e) => return error(e),
    };
    if p.since == Some(s.version) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let auto = p.tasks.is_none();
    let with_tasks = p.tasks.unwrap_or(s.shape.task_count() <= DASHBOARD_TASKS);
    let q = if with_tasks && auto {
        Query {
            task_limit: DASHBOARD_TASKS,
            ..q
        }
    } else {
        q
    };
    // The dashboard's request (no paging or filter) is rendered once per snapshot.
    let default = auto
        && p.offset.is_none()
        && p.limit.is_none()
        && p.state.is_none()
        && p.vertex.is_none()
        && p.region.is_none()
        && p.region_offset.is_none()
        && p.region_limit.is_none();
    if default && let Some(body) = s.dashboard.get() {
        return json_bytes(body.clone());
    }
    let rendered = shared
        .read
        .render(move || {
            let body: Arc<[u8]> = serde_json::to_vec(&render::job_json(&s, &q, with_tasks))
                .unwrap_or_default()
                .into();
            if default {
                let _ = s.dashboard.set(body.clone());
            }
            body
        })
        .await;
    match rendered {
        Some(body) => json_bytes(body),
        None => error(ApiError::ShuttingDown),
    }
}

async fn tasks(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Params(p): Params<JobParams>,
) -> Response {
    let (s, q) = match snapshot_and_query(&shared, &id, &p, true) {
        Ok(x) => x,
        Err(e) => return error(e),
    };
    let rendered = shared
        .read
        .render(move || -> Arc<[u8]> {
            serde_json::to_vec(&render::tasks_json(&s, &q))
                .unwrap_or_default()
                .into()
        })
        .await;
    match rendered {
        Some(body) => json_bytes(body),
        None => error(ApiError::ShuttingDown),
    }
}

/// A job's checkpoints as `jmctl checkpoints --output json` lists them, newest first, with the
/// interval; `{"enabled": false}` for a job that does not checkpoint.
async fn checkpoints(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let job = match parse_job_id(&id) {
        Ok(job) => job,
        Err(e) => return error(e),
    };
    let listed = shared
        .with(move |c| {
            if c.core.checkpoints(job).is_none() {
                return if c.core.graph(job).is_some() {
                    Ok(None)
                } else {
                    Err(ApiError::NotFound(format!("job {job} does not exist")))
                };
            }
            c.list_checkpoints(job).map(Some)
        })
        .await;
    match listed {
        Ok(None) => axum::Json(json!({ "enabled": false })).into_response(),
        Ok(Some(r)) => {
            let list: Vec<Value> = r
                .checkpoints
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id, "state": c.state, "trigger_time": c.trigger_time_unix_ms,
                        "duration_ms": c.duration_ms, "size_bytes": c.size_bytes,
                        "acknowledged": c.acknowledged, "tasks": c.tasks,
                        "retained": c.retained, "reason": c.reason,
                    })
                })
                .collect();
            axum::Json(json!({
                "enabled": true,
                "interval_ms": r.interval_ms,
                "checkpoints": list,
            }))
            .into_response()
        }
        Err(e) => error(e),
    }
}

fn json_bytes(body: Arc<[u8]>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Bytes::from_owner(body),
    )
        .into_response()
}

fn executors_json(c: &Coordinator) -> Vec<Value> {
    let now = c.shared.now();
    c.core
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
        .collect()
}
