//! Failover metrics the shell measures (the core counts; the shell times): histograms of
//! restart-set sizes, detection and recovery times and checkpoint durations, and the recent
//! failovers shown on the dashboard. `/metrics` renders them ([`super::exposition`]).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;

use crate::core::checkpoint::CompletedCheckpoint;
use crate::core::{JobId, TaskId};

/// Bucket bounds of the time histograms, in seconds.
pub(crate) const SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Bucket bounds of the restart-set size histogram, in tasks.
pub(crate) const TASKS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// One failover as the dashboard shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct FailoverRecord {
    pub(crate) time_ms: u64,
    pub(crate) cause: String,
    pub(crate) tasks: usize,
    pub(crate) regions: usize,
    pub(crate) delay_ms: u64,
    pub(crate) merged: bool,
    pub(crate) detection_ms: Option<u64>,
    /// Decision → every restarted task running again; `None` while recovering.
    pub(crate) recovery_ms: Option<u64>,
}

struct Recovery {
    decided: Instant,
    waiting: std::collections::BTreeSet<TaskId>,
    record: usize,
}

/// Per-job shell metrics.
pub(crate) struct JobMetrics {
    pub(crate) tasks_restarted: Histogram,
    pub(crate) detection: Histogram,
    pub(crate) recovery: Histogram,
    /// Trigger to the last acknowledgement of each completed checkpoint, seconds.
    pub(crate) checkpoint_duration: Histogram,
    pub(crate) failovers: VecDeque<FailoverRecord>,
    /// Records dropped from the front of `failovers`.
    dropped: usize,
    recoveries: Vec<Recovery>,
}

const KEEP_FAILOVERS: usize = 50;

impl JobMetrics {
    fn new() -> JobMetrics {
        JobMetrics {
            tasks_restarted: Histogram::new(TASKS.iter().copied()),
            detection: Histogram::new(SECONDS.iter().copied()),
            recovery: Histogram::new(SECONDS.iter().copied()),
            checkpoint_duration: Histogram::new(SECONDS.iter().copied()),
            failovers: VecDeque::new(),
            dropped: 0,
            recoveries: Vec::new(),
        }
    }
}

pub(crate) struct Metrics {
    pub(crate) jobs: BTreeMap<JobId, JobMetrics>,
    /// Store commits (one per turn that changed something), seconds each.
    pub(crate) commits: Histogram,
    /// A restarted JobMaster's reconciliation, from loading the store to the last job leaving
    /// RECONCILING, seconds.
    pub(crate) reconciliation: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            jobs: BTreeMap::new(),
            commits: Histogram::new(SECONDS.iter().copied()),
            reconciliation: Histogram::new(SECONDS.iter().copied()),
        }
    }
}

impl Metrics {
    pub(crate) fn job(&mut self, job: JobId) -> &mut JobMetrics {
        self.jobs.entry(job).or_insert_with(JobMetrics::new)
    }

    /// A failover decision at `now` (with the time its evidence arrived, if known).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn failover(
        &mut self,
        job: JobId,
        now: Instant,
        now_ms: u64,
        evidence: Option<Instant>,
        tasks: &[TaskId],
        regions: usize,
        delay_ms: u64,
        merged: bool,
        cause: &str,
    ) {
        let m = self.job(job);
        m.tasks_restarted.observe(tasks.len() as f64);
        let detection = evidence.map(|e| now.saturating_duration_since(e));
        if let Some(d) = detection {
            m.detection.observe(d.as_secs_f64());
        }
        if m.failovers.len() == KEEP_FAILOVERS {
            m.failovers.pop_front();
            m.dropped += 1;
        }
        m.failovers.push_back(FailoverRecord {
            time_ms: now_ms,
            cause: cause.to_owned(),
            tasks: tasks.len(),
            regions,
            delay_ms,
            merged,
            detection_ms: detection.map(|d| d.as_millis() as u64),
            recovery_ms: None,
        });
        let record = m.dropped + m.failovers.len() - 1;
        if tasks.is_empty() {
            return;
        }
        m.recoveries.push(Recovery {
            decided: now,
            waiting: tasks.iter().copied().collect(),
            record,
        });
    }

    /// A task of `job` runs (or finished) again.
    pub(crate) fn task_up(&mut self, job: JobId, task: TaskId, now: Instant) {
        let Some(m) = self.jobs.get_mut(&job) else {
            return;
        };
        let mut done = Vec::new();
        for (i, r) in m.recoveries.iter_mut().enumerate() {
            if r.waiting.remove(&task) && r.waiting.is_empty() {
                done.push(i);
            }
        }
        for i in done.into_iter().rev() {
            let r = m.recoveries.remove(i);
            let took = now.saturating_duration_since(r.decided);
            m.recovery.observe(took.as_secs_f64());
            if let Some(rec) = r
                .record
                .checked_sub(m.dropped)
                .and_then(|k| m.failovers.get_mut(k))
            {
                rec.recovery_ms = Some(took.as_millis() as u64);
            }
        }
    }

    /// Every participant of a checkpoint of `job` acknowledged it.
    pub(crate) fn checkpoint_completed(&mut self, job: JobId, checkpoint: &CompletedCheckpoint) {
        let ms = checkpoint
            .completion_time
            .saturating_sub(checkpoint.trigger_time);
        self.job(job)
            .checkpoint_duration
            .observe(ms as f64 / 1000.0);
    }

    /// The job ended: pending recoveries will never complete.
    pub(crate) fn job_ended(&mut self, job: JobId) {
        if let Some(m) = self.jobs.get_mut(&job) {
            m.recoveries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_completes_when_every_restarted_task_runs() {
        let mut m = Metrics::default();
        let t0 = Instant::now();
        let job = JobId(1);
        m.failover(
            job,
            t0,
            0,
            None,
            &[TaskId(1), TaskId(2)],
            1,
            0,
            false,
            "boom",
        );
        m.task_up(job, TaskId(1), t0);
        assert_eq!(m.jobs[&job].failovers[0].recovery_ms, None);
        m.task_up(job, TaskId(2), t0 + std::time::Duration::from_millis(30));
        assert_eq!(m.jobs[&job].failovers[0].recovery_ms, Some(30));
    }
}
