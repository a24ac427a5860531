//! Snapshots as answers: GetJob/ListJobs messages and the dashboard's JSON, paged and
//! filtered by a [`Query`]. Runs on the reader's task, never on the coordinator.

use std::str::FromStr;

use serde_json::{Value, json};

use crate::api::v1::{
    GetJobRequest, GetJobResponse, JobCounters as WireCounters, JobSummary, RegionSummary,
    StateCount, TaskInfo, VertexSummary,
};
use crate::core::AttemptState;
use crate::server::ApiError;

use super::{Counts, JobSnapshot, TaskFilter, TaskRow};

/// Tasks (or region summaries) per page when the reader does not say.
pub(crate) const DEFAULT_PAGE: usize = 1_000;
/// Most tasks (or region summaries) one page holds.
pub(crate) const MAX_PAGE: usize = 10_000;

/// What a reader asks of a job: a page of tasks (filtered) and a page of region summaries.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub(crate) task_offset: usize,
    pub(crate) task_limit: usize,
    pub(crate) filter: TaskFilter,
    pub(crate) region_offset: usize,
    pub(crate) region_limit: usize,
}

impl Default for Query {
    fn default() -> Query {
        Query {
            task_offset: 0,
            task_limit: DEFAULT_PAGE,
            filter: TaskFilter::default(),
            region_offset: 0,
            region_limit: DEFAULT_PAGE,
        }
    }
}

fn limit(asked: usize, what: &str) -> Result<usize, ApiError> {
    match asked {
        0 => Ok(DEFAULT_PAGE),
        n if n <= MAX_PAGE => Ok(n),
        n => Err(ApiError::InvalidArgument(format!(
            "{what} {n} is too large: at most {MAX_PAGE} per page; page with the offset"
        ))),
    }
}

impl Query {
    /// Checks a query's values against the job (`vertex`: a vertex id or empty).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        s: &JobSnapshot,
        task_offset: usize,
        task_limit: usize,
        state: &str,
        vertex: &str,
        region: Option<u32>,
        region_offset: usize,
        region_limit: usize,
        since: u64,
    ) -> Result<Query, ApiError> {
        let state = if state.is_empty() {
            None
        } else {
            Some(
                AttemptState::from_str(&state.to_ascii_uppercase())
                    .map_err(|e| ApiError::InvalidArgument(e.to_string()))?,
            )
        };
        let vertex = if vertex.is_empty() {
            None
        } else {
            Some(
                s.shape
                    .vertices
                    .iter()
                    .position(|(id, ..)| id == vertex)
                    .ok_or_else(|| {
                        ApiError::NotFound(format!(
                            "job {} has no vertex {vertex:?}; its vertices are {}",
                            s.shape.job,
                            s.shape
                                .vertices
                                .iter()
                                .map(|(id, ..)| id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?,
            )
        };
        if let Some(r) = region
            && r as usize >= s.shape.regions
        {
            return Err(ApiError::NotFound(format!(
                "job {} has no region {r}: it has {} (0 to {})",
                s.shape.job,
                s.shape.regions,
                s.shape.regions.saturating_sub(1)
            )));
        }
        Ok(Query {
            task_offset,
            task_limit: limit(task_limit, "task limit")?,
            filter: TaskFilter {
                region,
                vertex,
                state,
                since: (since > 0).then_some(since),
            },
            region_offset,
            region_limit: limit(region_limit, "region limit")?,
        })
    }

    pub(crate) fn from_request(s: &JobSnapshot, r: &GetJobRequest) -> Result<Query, ApiError> {
        Query::new(
            s,
            r.task_offset as usize,
            r.task_limit as usize,
            &r.task_state,
            &r.vertex,
            r.region_plus_one.checked_sub(1),
            r.region_offset as usize,
            r.region_limit as usize,
            r.changed_since,
        )
    }
}

fn state_counts(counts: &Counts) -> Vec<StateCount> {
    AttemptState::ALL
        .iter()
        .zip(counts)
        .filter(|&(_, &n)| n > 0)
        .map(|(s, &n)| StateCount {
            state: s.name().to_owned(),
            count: n,
        })
        .collect()
}

fn up(counts: &Counts) -> u32 {
    counts[super::state_index(AttemptState::Running)]
        + counts[super::state_index(AttemptState::Finished)]
}

/// A job's line in ListJobs.
pub(crate) fn summary(s: &JobSnapshot) -> JobSummary {
    JobSummary {
        job_id: s.shape.job.to_string(),
        name: s.shape.name.clone(),
        state: s.state.name().to_owned(),
        tasks: s.shape.task_count() as u32,
        regions: s.shape.regions as u32,
        restarts: s.counters.restarts,
        start_time_ms: s.shape.submitted_ms,
        end_time_ms: s.ended_ms.unwrap_or(0),
        tasks_up: up(&s.totals()),
    }
}

fn task_info(s: &JobSnapshot, i: usize, row: &TaskRow) -> TaskInfo {
    TaskInfo {
        name: s.shape.task_name(i),
        state: row.state.name().to_owned(),
        attempt: row.attempt,
        executor: row.executor.as_deref().unwrap_or_default().to_owned(),
        region: s.shape.task_region.get(i).copied().unwrap_or(0),
        index: i as u32,
        start_time_ms: row.started_ms,
        state_since_ms: row.since_ms,
        restarting: row.restarting,
    }
}

/// GetJob's answer.
pub(crate) fn get_job(s: &JobSnapshot, q: &Query, now_ms: u64) -> GetJobResponse {
    let (rows, next) = s.page(q.task_offset, q.task_limit, &q.filter);
    GetJobResponse {
        job_id: s.shape.job.to_string(),
        name: s.shape.name.clone(),
        state: s.state.name().to_owned(),
        cause: s.cause.clone().unwrap_or_default(),
        failover: s.shape.failover.to_owned(),
        tasks: rows.iter().map(|&(i, row)| task_info(s, i, row)).collect(),
        counters: Some(WireCounters {
            failovers: s.counters.failovers,
            restarts: s.counters.restarts,
            full_restarts: s.counters.full_restarts,
            tasks_restarted: s.counters.tasks_restarted,
            restarting_ms: s.restarting_ms_at(now_ms),
            adopted_attempts: s.counters.adopted,
            recoveries: s.counters.recoveries,
        }),
        total_tasks: s.shape.task_count() as u32,
        next_task_offset: next.unwrap_or(0) as u32,
        has_more_tasks: next.is_some(),
        vertices: s
            .shape
            .vertices
            .iter()
            .zip(&s.vertices)
            .map(|((id, parallelism, _), counts)| VertexSummary {
                vertex: id.clone(),
                parallelism: *parallelism,
                states: state_counts(counts),
            })
            .collect(),
        regions: s
            .regions
            .iter_from(q.region_offset)
            .take(q.region_limit)
            .map(|(r, row)| RegionSummary {
                region: r as u32,
                tasks: row.counts.iter().sum(),
                states: state_counts(&row.counts),
                restarting: row.restarting,
            })
            .collect(),
        total_regions: s.shape.regions as u32,
        states: state_counts(&s.totals()),
        start_time_ms: s.shape.submitted_ms,
        end_time_ms: s.ended_ms.unwrap_or(0),
        version: s.version,
    }
}

fn counts_json(counts: &Counts) -> Value {
    let mut m = serde_json::Map::new();
    for (s, &n) in AttemptState::ALL.iter().zip(counts) {
        if n > 0 {
            m.insert(s.name().to_owned(), json!(n));
        }
    }
    Value::Object(m)
}

/// A job as the dashboard reads it: everything but the tasks is summarised; `with_tasks`
/// adds the query's page of tasks.
///
/// Nothing in it depends on the time it is read (durations are computed by the reader from
/// the times), so one rendering serves every reader of a snapshot ([`JobSnapshot::dashboard`]).
pub(crate) fn job_json(s: &JobSnapshot, q: &Query, with_tasks: bool) -> Value {
    let totals = s.totals();
    let regions: Vec<Value> = s
        .regions
        .iter_from(q.region_offset)
        .take(q.region_limit)
        .map(|(r, row)| {
            json!({"region": r, "tasks": row.counts.iter().sum::<u32>(),
                   "states": counts_json(&row.counts), "restarting": row.restarting})
        })
        .collect();
    let vertices: Vec<Value> = s
        .shape
        .vertices
        .iter()
        .zip(&s.vertices)
        .map(|((id, parallelism, _), counts)| {
            json!({"vertex": id, "parallelism": parallelism, "states": counts_json(counts)})
        })
        .collect();
    let mut v = json!({
        "job_id": s.shape.job.to_string(),
        "name": s.shape.name,
        "state": s.state.name(),
        "cause": s.cause.as_deref().unwrap_or_default(),
        "failover": s.shape.failover,
        "version": s.version,
        "start_time_ms": s.shape.submitted_ms,
        "end_time_ms": s.ended_ms,
        "state_since_ms": s.state_since_ms,
        "duration_ms": s.ended_ms.map(|e| e.saturating_sub(s.shape.submitted_ms)),
        "published_ms": s.published_ms,
        "total_tasks": s.shape.task_count(),
        "tasks_up": up(&totals),
        "states": counts_json(&totals),
        "counters": {
            "failovers": s.counters.failovers, "restarts": s.counters.restarts,
            "full_restarts": s.counters.full_restarts,
            "tasks_restarted": s.counters.tasks_restarted,
            "restarting_ms": s.restarting_ms,
            "adopted_attempts": s.counters.adopted,
            "recoveries": s.counters.recoveries,
        },
        "vertices": vertices,
        "total_regions": s.shape.regions,
        "region_offset": q.region_offset,
        "regions": regions,
        "edges": s.shape.edges.iter().map(|[from, to, pattern, exchange]| {
            json!({"from": from, "to": to, "pattern": pattern, "exchange": exchange})
        }).collect::<Vec<_>>(),
        "failovers": s.failovers.as_ref(),
        "exceptions": s.exceptions.iter().map(|e| json!({
            "time_ms": e.time_ms, "task": e.task, "attempt": e.attempt,
            "executor": e.executor, "class": e.class, "message": &*e.message,
            "concurrent": e.concurrent, "restarted": e.restarted, "outcome": e.outcome,
        })).collect::<Vec<_>>(),
    });
    if with_tasks {
        v["tasks"] = tasks_json(s, q);
    }
    v
}

/// A task row as JSON.
#[derive(serde::Serialize)]
struct TaskJson<'a> {
    index: usize,
    name: String,
    region: u32,
    state: &'static str,
    attempt: u32,
    executor: &'a str,
    start_time_ms: u64,
    state_since_ms: u64,
    restarting: bool,
}

/// One page of tasks: `{"version": v, "offset": o, "next_offset": n|null, "rows": [...]}`.
pub(crate) fn tasks_json(s: &JobSnapshot, q: &Query) -> Value {
    let (rows, next) = s.page(q.task_offset, q.task_limit, &q.filter);
    let rows: Vec<TaskJson<'_>> = rows
        .iter()
        .map(|&(i, row)| TaskJson {
            index: i,
            name: s.shape.task_name(i),
            region: s.shape.task_region.get(i).copied().unwrap_or(0),
            state: row.state.name(),
            attempt: row.attempt,
            executor: row.executor.as_deref().unwrap_or_default(),
            start_time_ms: row.started_ms,
            state_since_ms: row.since_ms,
            restarting: row.restarting,
        })
        .collect();
    json!({
        "version": s.version,
        "offset": q.task_offset,
        "next_offset": next,
        "rows": rows,
    })
}
