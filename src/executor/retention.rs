//! What the executor keeps on disk of past attempts and ended jobs.
//!
//! An attempt's folder `DATA/attempts/JOB/TASK.ATTEMPT/` holds its logs, descriptor, launch
//! file, state folder and fetched inputs. The executor keeps the folders of the last
//! `executor.retain-attempts` attempts of each task (older ones go when a new attempt of the
//! task starts here, unless one still runs), and removes a job's folders when the JobMaster
//! says the job ended (`ReleaseJob`). Result partitions live elsewhere
//! (`DATA/partitions/JOB/`, see [`super::partitions`]) and are never touched by the first
//! rule: a consumer may still fetch them. When a job ended no consumer will, so its blocking
//! partitions' folder goes with it; persistent partitions stay with the release logic.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use super::partitions::safe_component;

/// Most ended jobs remembered (to refuse their late submits); the oldest are forgotten.
const ENDED_JOBS_KEPT: usize = 10_000;

/// The attempt folders of task `vertex#subtask` of `job` under `attempts` that are not among
/// the `keep` most recent attempts (counting `current`, which may not have a folder yet) and
/// are not `running`.
pub(crate) fn stale_attempt_dirs(
    attempts: &Path,
    job: &str,
    vertex: &str,
    subtask: u32,
    current: u32,
    keep: u32,
    running: impl Fn(u32) -> bool,
) -> Vec<PathBuf> {
    let prefix = format!("{vertex}#{subtask}.");
    let job_dir = attempts.join(job);
    let Ok(entries) = std::fs::read_dir(&job_dir) else {
        return Vec::new();
    };
    let mut numbers: Vec<u32> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let rest = name.to_str()?.strip_prefix(&prefix)?;
            // Digits only: `v#1.2` is attempt 2 of v#1; `v#1.2#0.3` is another vertex's task.
            if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            rest.parse().ok()
        })
        .collect();
    numbers.push(current);
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    numbers.dedup();
    numbers
        .into_iter()
        .skip(keep as usize)
        .filter(|&n| n != current && !running(n))
        .map(|n| job_dir.join(format!("{prefix}{n}")))
        .collect()
}

/// Removes `dirs` in the background (big fetched inputs take a while); a folder already gone
/// is fine.
pub(crate) fn remove_in_background(dirs: Vec<PathBuf>, why: &'static str) {
    if dirs.is_empty() {
        return;
    }
    tokio::task::spawn_blocking(move || {
        for dir in dirs {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => debug!(dir = %dir.display(), why, "folder removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!(dir = %dir.display(), why, error = %e, "folder not removed"),
            }
        }
    });
}

/// The folders of ended job `job` under the data dir: its attempts and its blocking
/// partitions (`None` for a job id that is not a plain name).
pub(crate) fn job_dirs(data_dir: &Path, job: &str) -> Option<Vec<PathBuf>> {
    safe_component(job).then(|| {
        vec![
            data_dir.join("attempts").join(job),
            data_dir.join("partitions").join(job),
        ]
    })
}

/// Removes an ended job's folders in the background after `after` (logs stay readable for
/// `jmctl logs` until then) and says so.
pub(crate) fn remove_job(data_dir: &Path, job: &str, after: std::time::Duration) {
    let Some(dirs) = job_dirs(data_dir, job) else {
        return;
    };
    if after.is_zero() {
        info!(job = %job, "job ended: removing its attempt and partition folders");
        remove_in_background(dirs, "job ended");
        return;
    }
    info!(job = %job, after = %humantime::format_duration(after),
          "job ended: its attempt and partition folders will be removed");
    let job = job.to_owned();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        info!(job = %job, "removing the attempt and partition folders of an ended job");
        remove_in_background(dirs, "job ended");
    });
}

/// Jobs the JobMaster said ended: their late submits are refused and their folders are not
/// created again. Bounded: the oldest are forgotten past [`ENDED_JOBS_KEPT`].
#[derive(Default)]
pub(crate) struct EndedJobs {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl EndedJobs {
    /// Remembers `job`; false when it was known already.
    pub(crate) fn insert(&mut self, job: &str) -> bool {
        if self.set.contains(job) {
            return false;
        }
        if self.order.len() >= ENDED_JOBS_KEPT
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.order.push_back(job.to_owned());
        self.set.insert(job.to_owned());
        true
    }

    pub(crate) fn contains(&self, job: &str) -> bool {
        self.set.contains(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "jobmaster-retention-{name}-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn names(dirs: &[PathBuf]) -> Vec<String> {
        let mut names: Vec<String> = dirs
            .iter()
            .filter_map(|d| d.file_name()?.to_str().map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn only_the_newest_attempts_of_the_same_task_are_kept_and_running_ones_never_go() {
        let root = scratch("keep");
        for name in [
            "v#1.0",
            "v#1.1",
            "v#1.2",
            "v#1.3",
            "v#1.10", // the task's attempts
            "v#10.0",
            "v#1.2#0.0",
            "v#1.x",
            "w#1.0", // other tasks, and a stray folder
        ] {
            std::fs::create_dir_all(root.join("job").join(name)).expect("mkdir");
        }
        // Attempt 11 starts; keep 3: 11 (no folder yet), 10, 3.
        let stale = stale_attempt_dirs(&root, "job", "v", 1, 11, 3, |_| false);
        assert_eq!(names(&stale), vec!["v#1.0", "v#1.1", "v#1.2"]);
        // Attempt 1 still runs (a late cancel): it stays.
        let stale = stale_attempt_dirs(&root, "job", "v", 1, 11, 3, |n| n == 1);
        assert_eq!(names(&stale), vec!["v#1.0", "v#1.2"]);
        // Keep 1: only the starting attempt's folder.
        let stale = stale_attempt_dirs(&root, "job", "v", 1, 11, 1, |_| false);
        assert_eq!(
            names(&stale),
            vec!["v#1.0", "v#1.1", "v#1.10", "v#1.2", "v#1.3"]
        );
        // No folder of the job at all: nothing to do.
        assert!(stale_attempt_dirs(&root, "other", "v", 1, 0, 1, |_| false).is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn an_ended_jobs_folders_are_its_attempts_and_blocking_partitions_only() {
        let data = Path::new("/data");
        assert_eq!(
            job_dirs(data, "j1"),
            Some(vec![
                PathBuf::from("/data/attempts/j1"),
                PathBuf::from("/data/partitions/j1")
            ])
        );
        assert_eq!(job_dirs(data, ".."), None);
        assert_eq!(job_dirs(data, "a/b"), None);
    }

    #[test]
    fn ended_jobs_are_remembered_up_to_a_bound() {
        let mut ended = EndedJobs::default();
        assert!(ended.insert("a"));
        assert!(!ended.insert("a"));
        for i in 0..ENDED_JOBS_KEPT {
            ended.insert(&i.to_string());
        }
        assert!(!ended.contains("a"), "the oldest is forgotten");
        assert!(ended.contains(&(ENDED_JOBS_KEPT - 1).to_string()));
        assert_eq!(ended.order.len(), ENDED_JOBS_KEPT);
        assert_eq!(ended.set.len(), ENDED_JOBS_KEPT);
    }
}
