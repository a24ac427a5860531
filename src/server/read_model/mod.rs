//! The read model: what operators and the dashboard read, kept apart from the coordinator.
//!
//! The coordinator owns [`Views`]: one editable [`JobSnapshot`] per job, updated from the
//! core's notices in O(change) (a task's row, its region's and vertex's counts). After each
//! turn that changed a job it publishes a copy into the [`ReadModel`] — cheap, because task
//! rows and region counts live in copy-on-write chunks ([`chunked`]). Readers take the latest
//! `Arc<JobSnapshot>` from the `ReadModel` and page, filter and serialise it on their own
//! task: a reader never waits for the coordinator and the coordinator never waits for a
//! reader or serialises a job for one.

mod chunked;
pub(crate) mod render;
mod snapshot;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;

use crate::core::{AttemptId, AttemptState, ExecutorId, JobId, JobMaster, JobState, TaskId};
use crate::server::metrics::Metrics;

pub(crate) use chunked::Chunked;
pub(crate) use render::Query;
pub(crate) use snapshot::{
    Counts, ExceptionRow, JobCounters, JobShape, JobSnapshot, RegionRow, STATES, TaskFilter,
    TaskRow, state_index,
};

/// Large answers rendered at once: readers beyond wait their turn (renders run on blocking
/// threads, so the runtime's workers stay free for everything else).
const CONCURRENT_RENDERS: usize = 2;

/// The published snapshots, one per job the JobMaster still holds.
pub(crate) struct ReadModel {
    jobs: DashMap<JobId, Arc<JobSnapshot>>,
    renders: Arc<tokio::sync::Semaphore>,
}

impl Default for ReadModel {
    fn default() -> ReadModel {
        ReadModel {
            jobs: DashMap::new(),
            renders: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_RENDERS)),
        }
    }
}

impl ReadModel {
    pub(crate) fn job(&self, job: JobId) -> Option<Arc<JobSnapshot>> {
        self.jobs.get(&job).map(|s| s.value().clone())
    }

    /// Runs `render` on a blocking thread, at most [`CONCURRENT_RENDERS`] at once.
    pub(crate) async fn render<T: Send + 'static>(
        &self,
        render: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let _permit = self.renders.clone().acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(render).await.ok()
    }

    /// Every job's latest snapshot, by job id.
    pub(crate) fn jobs(&self) -> Vec<Arc<JobSnapshot>> {
        let mut all: Vec<_> = self.jobs.iter().map(|e| e.value().clone()).collect();
        all.sort_by_key(|s| s.shape.job);
        all
    }
}

struct View {
    /// The next snapshot; its `version` is the one it will be published with.
    next: JobSnapshot,
    /// The exception history or failover list may have changed.
    history_dirty: bool,
}

/// The coordinator's side of the read model.
pub(crate) struct Views {
    model: Arc<ReadModel>,
    views: HashMap<JobId, View>,
    dirty: BTreeSet<JobId>,
    /// Wall-clock time of the core's time 0 (ms since the Unix epoch).
    start_unix_ms: u64,
    /// Executor ids as shared strings (rows hold a pointer, not a copy).
    executors: HashMap<ExecutorId, Arc<str>>,
}

impl Views {
    pub(crate) fn new(model: Arc<ReadModel>, start_unix_ms: u64) -> Views {
        Views {
            model,
            views: HashMap::new(),
            dirty: BTreeSet::new(),
            start_unix_ms,
            executors: HashMap::new(),
        }
    }

    fn wall(&self, core_ms: u64) -> u64 {
        self.start_unix_ms + core_ms
    }

    fn executor(&mut self, e: &ExecutorId) -> Arc<str> {
        self.executors
            .entry(e.clone())
            .or_insert_with(|| Arc::from(e.0.as_str()))
            .clone()
    }

    /// Starts the view of a job the core has just accepted, from its current state.
    pub(crate) fn add(&mut self, core: &JobMaster, job: JobId, now: u64) {
        let (Some(graph), Some(regions)) = (core.graph(job), core.regions(job)) else {
            return;
        };
        let wall = self.wall(now);
        // A job loaded from the store keeps its submission time and its state's age.
        let transitions = core.job_transitions(job).unwrap_or_default();
        let submitted = self.wall(transitions.first().map_or(now, |(_, at)| *at));
        let state_since = self.wall(transitions.last().map_or(now, |(_, at)| *at));
        let ended = core
            .job_state(job)
            .filter(|s| s.is_terminal())
            .map(|_| state_since);
        let n = graph.task_count();
        let shape = JobShape {
            job,
            name: graph.name().to_owned(),
            failover: core.failover_strategy(job).map_or("", |f| f.name()),
            submitted_ms: submitted,
            vertices: graph
                .vertices()
                .iter()
                .map(|v| {
                    let first = v.tasks().next().map_or(0, |t| t.0);
                    (v.id.clone(), v.parallelism, first)
                })
                .collect(),
            task_region: Chunked::from_iter_len(graph.tasks().map(|t| regions.region_of(t).0), n),
            regions: regions.len(),
            edges: graph
                .edges()
                .iter()
                .map(|e| {
                    [
                        graph.vertex(e.from).id.clone(),
                        graph.vertex(e.to).id.clone(),
                        e.pattern.name().to_owned(),
                        e.exchange.name().to_owned(),
                    ]
                })
                .collect(),
        };
        let mut region_rows = vec![RegionRow::default(); regions.len()];
        let mut vertex_counts = vec![[0u32; STATES]; shape.vertices.len()];
        let mut rows = Vec::with_capacity(n);
        for t in graph.tasks() {
            let (attempt, state, executor) = core
                .task_status(job, t)
                .map(|(a, s, e)| (a, s, e.cloned()))
                .unwrap_or((0, AttemptState::Created, None));
            let i = state_index(state);
            region_rows[regions.region_of(t).0 as usize].counts[i] += 1;
            vertex_counts[graph.vertex_of(t).0 as usize][i] += 1;
            rows.push(TaskRow {
                attempt,
                state,
                executor: executor.map(|e| self.executor(&e)),
                started_ms: wall,
                since_ms: wall,
                restarting: false,
                version: 1,
            });
        }
        let next = JobSnapshot {
            shape: Arc::new(shape),
            version: 1,
            state: core.job_state(job).unwrap_or(JobState::Created),
            cause: None,
            state_since_ms: state_since,
            ended_ms: ended,
            counters: JobCounters::default(),
            restarting_ms: 0,
            published_ms: wall,
            tasks: Chunked::from_iter_len(rows, n),
            regions: Chunked::from_iter_len(region_rows, regions.len()),
            vertices: vertex_counts,
            exceptions: Arc::default(),
            failovers: Arc::default(),
            dashboard: OnceLock::new(),
        };
        self.views.insert(
            job,
            View {
                next,
                history_dirty: true,
            },
        );
        self.dirty.insert(job);
    }

    /// A task's attempt changed state (a new attempt starts in CREATED).
    pub(crate) fn task_state(
        &mut self,
        attempt: AttemptId,
        state: AttemptState,
        executor: Option<&ExecutorId>,
        now: u64,
    ) {
        let wall = self.wall(now);
        let executor = executor.map(|e| self.executor(e));
        let Some(view) = self.views.get_mut(&attempt.job) else {
            return;
        };
        let s = &mut view.next;
        let t = attempt.task.index();
        let region = s.shape.task_region.get(t).copied().unwrap_or(0) as usize;
        let vertex = s.shape.locate(t).0;
        let version = s.version;
        let Some(row) = s.tasks.get_mut(t) else {
            return;
        };
        let (old, new) = (state_index(row.state), state_index(state));
        let ended_restart =
            row.restarting && matches!(state, AttemptState::Running | AttemptState::Finished);
        if row.attempt != attempt.attempt {
            row.started_ms = wall;
        }
        row.attempt = attempt.attempt;
        row.state = state;
        row.executor = executor;
        row.since_ms = wall;
        row.version = version;
        if ended_restart {
            row.restarting = false;
        }
        if let Some(r) = s.regions.get_mut(region) {
            r.counts[old] -= 1;
            r.counts[new] += 1;
            if ended_restart {
                r.restarting -= 1;
            }
        }
        if let Some(v) = s.vertices.get_mut(vertex) {
            v[old] -= 1;
            v[new] += 1;
        }
        if state == AttemptState::Failed {
            view.history_dirty = true;
        }
        self.dirty.insert(attempt.job);
    }

    /// A failover decided to restart `tasks`: they are marked until they run again.
    pub(crate) fn restart_scheduled(&mut self, job: JobId, tasks: &[TaskId]) {
        let Some(view) = self.views.get_mut(&job) else {
            return;
        };
        let s = &mut view.next;
        let version = s.version;
        for t in tasks {
            let region = s.shape.task_region.get(t.index()).copied().unwrap_or(0) as usize;
            if let Some(row) = s.tasks.get_mut(t.index())
                && !row.restarting
            {
                row.restarting = true;
                row.version = version;
                if let Some(r) = s.regions.get_mut(region) {
                    r.restarting += 1;
                }
            }
        }
        view.history_dirty = true;
        self.dirty.insert(job);
    }

    /// The job changed state (or something else the rows do not show).
    pub(crate) fn job_changed(&mut self, job: JobId) {
        if let Some(view) = self.views.get_mut(&job) {
            view.history_dirty = true;
            self.dirty.insert(job);
        }
    }

    /// Forgets a job (it was dropped from the JobMaster).
    pub(crate) fn remove(&mut self, job: JobId) {
        self.views.remove(&job);
        self.dirty.remove(&job);
        self.model.jobs.remove(&job);
    }

    /// Publishes every job changed since the last call.
    pub(crate) fn publish(&mut self, core: &JobMaster, metrics: &Metrics, now: u64) {
        if self.dirty.is_empty() {
            return;
        }
        let wall = self.wall(now);
        let start = self.start_unix_ms;
        for job in std::mem::take(&mut self.dirty) {
            let Some(view) = self.views.get_mut(&job) else {
                continue;
            };
            let s = &mut view.next;
            if let Some(state) = core.job_state(job) {
                if state != s.state {
                    s.state_since_ms = core
                        .job_transitions(job)
                        .and_then(|t| t.last())
                        .map_or(wall, |&(_, at)| start + at);
                    if state.is_terminal() {
                        s.ended_ms = Some(s.state_since_ms);
                        clear_restarting(s);
                    }
                }
                s.state = state;
            }
            s.cause = core.job_cause(job).map(str::to_owned);
            if let Some(c) = core.counters(job) {
                s.counters = JobCounters {
                    failovers: c.failovers,
                    restarts: c.restarts,
                    full_restarts: c.full_restarts,
                    tasks_restarted: c.tasks_restarted,
                    adopted: c.adopted,
                    recoveries: c.recoveries,
                };
            }
            s.restarting_ms = core.restarting_ms(job, now).unwrap_or(0);
            s.published_ms = wall;
            if std::mem::take(&mut view.history_dirty) {
                s.exceptions = Arc::new(exception_rows(core, job, start));
                s.failovers = Arc::new(
                    metrics
                        .jobs
                        .get(&job)
                        .map(|m| {
                            m.failovers
                                .iter()
                                .cloned()
                                .map(|mut f| {
                                    f.time_ms += start;
                                    f
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                );
            }
            let mut published = s.clone();
            published.dashboard = OnceLock::new();
            self.model.jobs.insert(job, Arc::new(published));
            s.version += 1;
        }
    }
}

/// A job that ended has no restart pending.
fn clear_restarting(s: &mut JobSnapshot) {
    let version = s.version;
    for i in 0..s.tasks.len() {
        if s.tasks.get(i).is_some_and(|r| r.restarting)
            && let Some(row) = s.tasks.get_mut(i)
        {
            row.restarting = false;
            row.version = version;
        }
    }
    for i in 0..s.regions.len() {
        if s.regions.get(i).is_some_and(|r| r.restarting > 0)
            && let Some(r) = s.regions.get_mut(i)
        {
            r.restarting = 0;
        }
    }
}

fn exception_rows(core: &JobMaster, job: JobId, start_unix_ms: u64) -> Vec<ExceptionRow> {
    let Some(graph) = core.graph(job) else {
        return Vec::new();
    };
    core.exception_history(job)
        .map(|h| {
            h.entries()
                .map(|e| ExceptionRow {
                    time_ms: start_unix_ms + e.root.time,
                    task: e
                        .root
                        .attempt
                        .map(|a| graph.task_name(a.task).to_string())
                        .unwrap_or_default(),
                    attempt: e.root.attempt.map_or(0, |a| a.attempt),
                    executor: e
                        .root
                        .executor
                        .as_ref()
                        .map(|x| x.0.clone())
                        .unwrap_or_default(),
                    class: e.root.class.name(),
                    message: Arc::from(e.root.message.as_str()),
                    concurrent: e.concurrent.len(),
                    restarted: e.restarted.len(),
                    outcome: e.outcome.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
