//! Bounded memory and a bounded store: the quotas on held jobs and tasks (`jobs.max-jobs`,
//! `jobs.max-total-tasks`) and the retention of ended jobs (`jobs.retain-ended` and
//! `store.retain-ended-jobs`: the stricter of the two). It decides; the coordinator drops the
//! jobs it names from the core, the read model and the store.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::ApiError;
use crate::core::JobId;
use crate::settings::{JobsSettings, RetainEndedSettings};

pub(crate) struct Retention {
    max_jobs: usize,
    max_total_tasks: u64,
    keep_count: usize,
    keep_for: Duration,
    /// Every held job and its task count.
    held: HashMap<JobId, u64>,
    total_tasks: u64,
    /// Ended jobs still held, oldest end first.
    ended: VecDeque<(JobId, Instant)>,
    /// Tasks of the jobs dropped since memory was last given back to the system.
    dropped_tasks: u64,
}

impl Retention {
    /// Quotas from `s`; an ended job is kept while both `s.retain_ended` and `store` allow.
    pub(crate) fn new(s: &JobsSettings, store: &RetainEndedSettings) -> Retention {
        Retention {
            max_jobs: s.max_jobs,
            max_total_tasks: s.max_total_tasks,
            keep_count: s.retain_ended.count.min(store.count),
            keep_for: s.retain_ended.age.min(store.age),
            held: HashMap::new(),
            total_tasks: 0,
            ended: VecDeque::new(),
            dropped_tasks: 0,
        }
    }

    /// Room for a new job of `tasks` tasks: the ended jobs to drop first (oldest first), or
    /// RESOURCE_EXHAUSTED when the jobs that have not ended leave no room.
    pub(crate) fn admit(&self, tasks: u64) -> Result<Vec<JobId>, ApiError> {
        let active_jobs = self.held.len() - self.ended.len();
        let ended_tasks: u64 = self.ended.iter().map(|(j, _)| self.held[j]).sum();
        let active_tasks = self.total_tasks - ended_tasks;
        if active_jobs + 1 > self.max_jobs {
            return Err(ApiError::ResourceExhausted(format!(
                "the jobmaster holds {active_jobs} jobs that have not ended, its limit \
                 (jobs.max-jobs = {}): cancel a job or raise the limit",
                self.max_jobs
            )));
        }
        if active_tasks + tasks > self.max_total_tasks {
            return Err(ApiError::ResourceExhausted(format!(
                "the job has {tasks} tasks and jobs that have not ended hold {active_tasks}; \
                 together they exceed jobs.max-total-tasks = {}: cancel a job, lower the \
                 job's parallelism or raise the limit",
                self.max_total_tasks
            )));
        }
        let (mut jobs, mut total) = (self.held.len() + 1, self.total_tasks + tasks);
        let mut drop = Vec::new();
        for (job, _) in &self.ended {
            if jobs <= self.max_jobs && total <= self.max_total_tasks {
                break;
            }
            jobs -= 1;
            total -= self.held[job];
            drop.push(*job);
        }
        Ok(drop)
    }

    /// A job of `tasks` tasks is now held.
    pub(crate) fn added(&mut self, job: JobId, tasks: u64) {
        if self.held.insert(job, tasks).is_none() {
            self.total_tasks += tasks;
        }
    }

    /// A held job ended at `at`.
    pub(crate) fn ended(&mut self, job: JobId, at: Instant) {
        if self.held.contains_key(&job) && !self.ended.iter().any(|(j, _)| *j == job) {
            self.ended.push_back((job, at));
        }
    }

    /// Ended jobs whose retention is over at `now`: beyond `retain-ended.count`, or ended
    /// longer than `retain-ended.age` ago. Oldest first.
    pub(crate) fn due(&self, now: Instant) -> Vec<JobId> {
        let over = self.ended.len().saturating_sub(self.keep_count);
        self.ended
            .iter()
            .enumerate()
            .take_while(|&(i, (_, at))| {
                i < over || now.saturating_duration_since(*at) >= self.keep_for
            })
            .map(|(_, (job, _))| *job)
            .collect()
    }

    /// A job was dropped.
    pub(crate) fn dropped(&mut self, job: JobId) {
        if let Some(tasks) = self.held.remove(&job) {
            self.total_tasks -= tasks;
            self.dropped_tasks += tasks;
        }
        self.ended.retain(|(j, _)| *j != job);
    }

    /// After jobs were dropped, gives the freed memory back to the system (at most once per
    /// call; the coordinator calls it once a second). glibc's allocator keeps freed small
    /// blocks in its arenas otherwise, and the RSS of a daemon that held a large job would
    /// never come down.
    pub(crate) fn trim_if_dropped(&mut self) {
        if std::mem::take(&mut self.dropped_tasks) == 0 {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        tokio::task::spawn_blocking(|| {
            // SAFETY: malloc_trim only walks the allocator's own arenas.
            unsafe {
                libc::malloc_trim(0);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(max_jobs: usize, max_tasks: u64, count: usize, age_s: u64) -> Retention {
        let keep = RetainEndedSettings {
            count,
            age: Duration::from_secs(age_s),
        };
        let store = RetainEndedSettings {
            count: usize::MAX,
            age: Duration::MAX,
        };
        Retention::new(
            &JobsSettings {
                max_jobs,
                max_total_tasks: max_tasks,
                retain_ended: keep,
            },
            &store,
        )
    }

    #[test]
    fn the_stricter_of_memory_and_store_retention_applies() {
        let jobs = JobsSettings {
            max_jobs: 10,
            max_total_tasks: 1000,
            retain_ended: RetainEndedSettings {
                count: 5,
                age: Duration::from_secs(60),
            },
        };
        let store = RetainEndedSettings {
            count: 1,
            age: Duration::from_secs(3600),
        };
        let mut r = Retention::new(&jobs, &store);
        let t0 = Instant::now();
        for i in 1..=2 {
            r.added(JobId(i), 1);
            r.ended(JobId(i), t0);
        }
        assert_eq!(r.due(t0), vec![JobId(1)], "store.retain-ended-jobs.count");
        assert_eq!(
            r.due(t0 + Duration::from_secs(61)),
            vec![JobId(1), JobId(2)],
            "jobs.retain-ended.age"
        );
    }

    #[test]
    fn ended_jobs_go_beyond_the_count_or_after_the_age_oldest_first() {
        let mut r = retention(10, 1000, 2, 60);
        let t0 = Instant::now();
        for i in 1..=3 {
            r.added(JobId(i), 10);
            r.ended(JobId(i), t0 + Duration::from_secs(i));
        }
        assert_eq!(r.due(t0 + Duration::from_secs(5)), vec![JobId(1)]);
        r.dropped(JobId(1));
        assert!(r.due(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(r.due(t0 + Duration::from_secs(62)), vec![JobId(2)]);
        assert_eq!(
            r.due(t0 + Duration::from_secs(70)),
            vec![JobId(2), JobId(3)]
        );
    }

    #[test]
    fn a_submission_beyond_the_quota_drops_ended_jobs_first_then_is_refused() {
        let mut r = retention(3, 100, 10, 3600);
        let t0 = Instant::now();
        r.added(JobId(1), 40);
        r.added(JobId(2), 40);
        r.ended(JobId(1), t0);
        // 40 + 40 + 30 > 100: the ended job makes room.
        assert_eq!(r.admit(30).unwrap(), vec![JobId(1)]);
        r.dropped(JobId(1));
        r.added(JobId(3), 30);
        // Jobs that have not ended are never dropped: 40 + 30 + 40 > 100.
        let e = r.admit(40).unwrap_err().to_string();
        assert!(e.contains("jobs.max-total-tasks = 100"), "{e}");
        r.added(JobId(4), 1);
        let e = r.admit(1).unwrap_err().to_string();
        assert!(e.contains("jobs.max-jobs = 3"), "{e}");
    }
}
