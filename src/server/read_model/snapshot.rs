//! What readers see of a job: an immutable [`JobSnapshot`], published by the coordinator after
//! each turn that changed the job, and read without it — ListJobs, GetJob and the dashboard
//! never wait for the coordinator, and never make it serialise a job.

use std::sync::{Arc, OnceLock};

use crate::core::{AttemptState, JobId, JobState, Millis};
use crate::server::metrics::FailoverRecord;

use super::chunked::Chunked;

/// Number of attempt states (the index of a state in per-state counts).
pub(crate) const STATES: usize = AttemptState::ALL.len();

/// Tasks per state, indexed like [`AttemptState::ALL`].
pub(crate) type Counts = [u32; STATES];

pub(crate) fn state_index(s: AttemptState) -> usize {
    AttemptState::ALL
        .iter()
        .position(|&x| x == s)
        .unwrap_or_default()
}

/// One task as readers see it. Times are wall-clock milliseconds since the Unix epoch.
#[derive(Debug, Clone)]
pub(crate) struct TaskRow {
    pub(crate) attempt: u32,
    pub(crate) state: AttemptState,
    pub(crate) executor: Option<Arc<str>>,
    /// When the current attempt was created.
    pub(crate) started_ms: u64,
    /// When the task entered its current state.
    pub(crate) since_ms: u64,
    /// Part of a scheduled restart, not yet running again.
    pub(crate) restarting: bool,
    /// The job's snapshot version that last changed this row.
    pub(crate) version: u64,
}

/// A region's tasks per state, and how many of them wait for a scheduled restart.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegionRow {
    pub(crate) counts: Counts,
    pub(crate) restarting: u32,
}

/// What never changes after submission: names, shape, regions.
#[derive(Debug)]
pub(crate) struct JobShape {
    pub(crate) job: JobId,
    pub(crate) name: String,
    pub(crate) failover: &'static str,
    /// Wall-clock submission time.
    pub(crate) submitted_ms: u64,
    /// Per vertex: id, parallelism, first task index.
    pub(crate) vertices: Vec<(String, u32, u32)>,
    /// Per task, its region.
    pub(crate) task_region: Chunked<u32>,
    pub(crate) regions: usize,
    /// Per edge: from, to, pattern, exchange.
    pub(crate) edges: Vec<[String; 4]>,
}

impl JobShape {
    /// The vertex index and subtask of task `t`.
    pub(crate) fn locate(&self, t: usize) -> (usize, u32) {
        let v = self
            .vertices
            .partition_point(|(_, _, first)| *first as usize <= t)
            .saturating_sub(1);
        (v, (t as u32).saturating_sub(self.vertices[v].2))
    }

    /// The name of task `t` (`vertex#subtask`).
    pub(crate) fn task_name(&self, t: usize) -> String {
        let (v, subtask) = self.locate(t);
        format!("{}#{subtask}", self.vertices[v].0)
    }

    pub(crate) fn task_count(&self) -> usize {
        self.task_region.len()
    }
}

/// One entry of the exception history as readers see it.
#[derive(Debug, Clone)]
pub(crate) struct ExceptionRow {
    /// Wall-clock time.
    pub(crate) time_ms: u64,
    pub(crate) task: String,
    pub(crate) attempt: u32,
    pub(crate) executor: String,
    pub(crate) class: &'static str,
    pub(crate) message: Arc<str>,
    pub(crate) concurrent: usize,
    pub(crate) restarted: usize,
    pub(crate) outcome: String,
}

/// The job's failover counters (the scalars of the core's `Counters`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct JobCounters {
    pub(crate) failovers: u64,
    pub(crate) restarts: u64,
    pub(crate) full_restarts: u64,
    pub(crate) tasks_restarted: u64,
    pub(crate) adopted: u64,
    pub(crate) recoveries: u64,
}

/// A job at one moment, shared by every reader of that moment.
#[derive(Debug, Clone)]
pub(crate) struct JobSnapshot {
    pub(crate) shape: Arc<JobShape>,
    /// Grows with every published change of the job.
    pub(crate) version: u64,
    pub(crate) state: JobState,
    pub(crate) cause: Option<String>,
    /// Wall-clock time the job entered its state.
    pub(crate) state_since_ms: u64,
    /// Wall-clock time the job ended (FINISHED, FAILED or CANCELED).
    pub(crate) ended_ms: Option<u64>,
    pub(crate) counters: JobCounters,
    /// Time spent RESTARTING up to `published_ms`.
    pub(crate) restarting_ms: Millis,
    /// Wall-clock time of publication.
    pub(crate) published_ms: u64,
    pub(crate) tasks: Chunked<TaskRow>,
    pub(crate) regions: Chunked<RegionRow>,
    /// Per vertex, its tasks per state.
    pub(crate) vertices: Vec<Counts>,
    pub(crate) exceptions: Arc<Vec<ExceptionRow>>,
    pub(crate) failovers: Arc<Vec<FailoverRecord>>,
    /// The dashboard's default answer for this snapshot, rendered by its first reader and
    /// shared by the others.
    pub(crate) dashboard: OnceLock<Arc<[u8]>>,
}

impl JobSnapshot {
    /// Time spent RESTARTING up to the wall-clock time `now_ms`.
    pub(crate) fn restarting_ms_at(&self, now_ms: u64) -> Millis {
        if self.state == JobState::Restarting {
            self.restarting_ms + now_ms.saturating_sub(self.published_ms)
        } else {
            self.restarting_ms
        }
    }

    /// Tasks per state over the whole job.
    pub(crate) fn totals(&self) -> Counts {
        let mut total = [0; STATES];
        for v in &self.vertices {
            for (t, n) in total.iter_mut().zip(v) {
                *t += n;
            }
        }
        total
    }

    /// One page of tasks matching `filter`, from task index `offset` on: at most `limit`
    /// rows, and the index to continue from (`None` at the end).
    pub(crate) fn page(
        &self,
        offset: usize,
        limit: usize,
        filter: &TaskFilter,
    ) -> (Vec<(usize, &TaskRow)>, Option<usize>) {
        let mut rows = Vec::with_capacity(limit.min(1024));
        let mut next = None;
        for (i, row) in self.tasks.iter_from(offset) {
            if !filter.matches(self, i, row) {
                continue;
            }
            if rows.len() == limit {
                next = Some(i);
                break;
            }
            rows.push((i, row));
        }
        (rows, next)
    }
}

/// Which tasks a page holds.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskFilter {
    pub(crate) region: Option<u32>,
    pub(crate) vertex: Option<usize>,
    pub(crate) state: Option<AttemptState>,
    /// Only rows changed after this version.
    pub(crate) since: Option<u64>,
}

impl TaskFilter {
    fn matches(&self, s: &JobSnapshot, i: usize, row: &TaskRow) -> bool {
        self.since.is_none_or(|v| row.version > v)
            && self.state.is_none_or(|st| row.state == st)
            && self
                .region
                .is_none_or(|r| s.shape.task_region.get(i) == Some(&r))
            && self.vertex.is_none_or(|v| s.shape.locate(i).0 == v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> JobShape {
        JobShape {
            job: JobId(1),
            name: "j".into(),
            failover: "region",
            submitted_ms: 1000,
            vertices: vec![("a".into(), 2, 0), ("b".into(), 3, 2)],
            task_region: Chunked::from_iter_len([0, 1, 0, 1, 1], 5),
            regions: 2,
            edges: vec![],
        }
    }

    #[test]
    fn task_names_follow_vertices_and_subtasks() {
        let s = shape();
        let names: Vec<_> = (0..5).map(|t| s.task_name(t)).collect();
        assert_eq!(names, ["a#0", "a#1", "b#0", "b#1", "b#2"]);
        assert_eq!(s.locate(4), (1, 2));
    }
}
