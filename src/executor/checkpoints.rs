//! Checkpoints on the executor (README, "Checkpoints"): where a job's checkpoints are stored,
//! and the JobMaster's checkpoint commands carried to the tasks' control channels
//! ([`super::control`]): trigger (the answers go back as reports), notify, discard, and the
//! folder a restarted attempt restores from.
//!
//! Layout: `STORAGE/JOB/chk-ID/VERTEX-SUBTASK/`, where STORAGE is the spec's `checkpoint.dir`
//! or, by default, a `checkpoints` folder beside the executor's persistent-partition folder
//! (shared storage that outlives executors: a task restarted elsewhere finds its state).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::user::TaskUser;
use super::{Agent, key, partitions};
use crate::api::v1::{AttemptRef, CheckpointAnswer, CheckpointStorage, TaskStateUpdate};
use crate::log_text::Escaped;

/// The default checkpoint storage of an executor whose persistent partitions are in
/// `persistent_dir`: `checkpoints` beside it, or inside it when it is a filesystem root.
pub(crate) fn default_root(persistent_dir: &Path) -> PathBuf {
    match persistent_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() && parent != Path::new("/") => {
            parent.join("checkpoints")
        }
        _ => persistent_dir.join("checkpoints"),
    }
}

/// Where a job's checkpoints are: `STORAGE/JOB`, or why not.
pub(crate) fn job_dir(
    persistent_dir: &Path,
    storage: Option<&CheckpointStorage>,
    job: &str,
) -> Result<PathBuf, String> {
    if !partitions::safe_component(job) {
        return Err(format!("job id {} is not a plain name", Escaped(job)));
    }
    let root = match storage.map(|s| s.dir.as_str()).filter(|d| !d.is_empty()) {
        None => default_root(persistent_dir),
        Some(dir) if Path::new(dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => {
            return Err(format!(
                "checkpoint.dir {} is not an absolute path",
                Escaped(dir)
            ));
        }
    };
    Ok(root.join(job))
}

/// A checkpoint's folder in its job's.
pub(crate) fn checkpoint_dir(job_dir: &Path, id: u64) -> PathBuf {
    job_dir.join(format!("chk-{id}"))
}

/// A task's folder in a checkpoint, or `None` when its vertex is not a plain name.
pub(crate) fn task_dir(checkpoint_dir: &Path, attempt: &AttemptRef) -> Option<PathBuf> {
    partitions::safe_component(&attempt.vertex)
        .then(|| checkpoint_dir.join(format!("{}-{}", attempt.vertex, attempt.subtask)))
}

/// The folder a restarted attempt resumes from (`JM_RESTORE_DIR`): its task's folder in
/// checkpoint `id`, if the task wrote one (a stateless task did not).
pub(crate) fn restore_dir(
    persistent_dir: &Path,
    storage: Option<&CheckpointStorage>,
    attempt: &AttemptRef,
    id: u64,
) -> Option<PathBuf> {
    if id == 0 {
        return None;
    }
    let job = match job_dir(persistent_dir, storage, &attempt.job_id) {
        Ok(job) => job,
        Err(e) => {
            warn!(error = %e, "no checkpoint to restore from");
            return None;
        }
    };
    let dir = task_dir(&checkpoint_dir(&job, id), attempt)?;
    dir.is_dir().then_some(dir)
}

/// Bytes in the files under `dir` (symbolic links are not followed).
fn size_of(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => size_of(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Copies the files and folders under `from` into `to` (created), handing each to `owner`
/// when tasks run as another user; returns the bytes copied. Symbolic links and special files
/// are skipped. For a restored attempt's own copy of its state, and for the state of a task
/// that has not opened its control channel since it was restored.
pub(crate) fn copy_tree(from: &Path, to: &Path, owner: Option<&TaskUser>) -> std::io::Result<u64> {
    std::fs::create_dir_all(to)?;
    if let Some(user) = owner {
        user.hand_over(to, 0o700)?;
    }
    let mut bytes = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            bytes += copy_tree(&source, &target, owner)?;
        } else if kind.is_file() {
            bytes += std::fs::copy(&source, &target)?;
            if let Some(user) = owner {
                user.hand_over(&target, 0o600)?;
            }
        }
    }
    Ok(bytes)
}

/// Queues the answer of `attempt` to checkpoint `id` as a report.
/// Why a task did not acknowledge: the reason, and whether it is because the attempt does not
/// run (any more).
type Decline = (String, bool);

fn answer(agent: &Agent, attempt: &AttemptRef, id: u64, result: Result<u64, Decline>) {
    let (acknowledged, size_bytes, decline_reason, task_not_running) = match result {
        Ok(size) => (true, size, String::new(), false),
        Err((reason, gone)) => (false, 0, reason, gone),
    };
    let _ = agent.reports.send(TaskStateUpdate {
        attempt: Some(attempt.clone()),
        checkpoint: Some(CheckpointAnswer {
            checkpoint_id: id,
            acknowledged,
            size_bytes,
            decline_reason,
            task_not_running,
        }),
        ..TaskStateUpdate::default()
    });
}

/// Triggers checkpoint `id` on `attempts` of `job`: each task is asked on its control channel
/// (in parallel) and its answer is reported. An attempt that does not run here, or whose
/// channel is not open yet, is declined.
pub(crate) fn trigger(
    agent: &Arc<Agent>,
    job: &str,
    id: u64,
    storage: Option<&CheckpointStorage>,
    attempts: Vec<AttemptRef>,
    timeout: Duration,
) {
    let folder =
        job_dir(&agent.config.persistent_dir, storage, job).map(|d| checkpoint_dir(&d, id));
    debug!(job = %job, checkpoint = id, tasks = attempts.len(), "checkpoint triggered");
    for attempt in attempts {
        let channel = {
            let state = agent.lock();
            state
                .attempts
                .get(&key(&attempt))
                .map(|r| r.channel.clone())
        };
        let dir = match &folder {
            Ok(folder) => task_dir(folder, &attempt)
                .ok_or_else(|| format!("vertex {} is not a plain name", Escaped(&attempt.vertex))),
            Err(e) => Err(e.clone()),
        };
        let gone = |reason: &str| Err((reason.to_owned(), true));
        let (channel, dir) = match (channel, dir) {
            (None, _) => {
                answer(
                    agent,
                    &attempt,
                    id,
                    gone("the attempt does not run on this executor"),
                );
                continue;
            }
            (Some(None), _) => {
                answer(
                    agent,
                    &attempt,
                    id,
                    gone("the attempt's process has not started yet"),
                );
                continue;
            }
            (_, Err(e)) => {
                answer(agent, &attempt, id, Err((e, false)));
                continue;
            }
            (Some(Some(channel)), Ok(dir)) => (channel, dir),
        };
        let agent = agent.clone();
        tokio::spawn(async move {
            let result = match channel.checkpoint(id, &dir, timeout).await {
                Ok(ack) if ack.size_bytes > 0 => Ok(ack.size_bytes),
                // The task did not say: what its folder holds.
                Ok(_) => {
                    let d = dir.clone();
                    Ok(tokio::task::spawn_blocking(move || size_of(&d))
                        .await
                        .unwrap_or(0))
                }
                Err(declined) => Err((declined.reason, declined.task_gone)),
            };
            if let Err((reason, _)) = &result {
                info!(task = %format!("{}#{}", attempt.vertex, attempt.subtask), checkpoint = id,
                      reason = %Escaped(reason), "checkpoint declined");
            }
            answer(&agent, &attempt, id, result);
        });
    }
}

/// Tells `attempts` that checkpoint `id` completed or was aborted (best effort, in parallel).
pub(crate) fn notify(agent: &Agent, id: u64, complete: bool, attempts: &[AttemptRef]) {
    let state = agent.lock();
    for attempt in attempts {
        if let Some(channel) = state
            .attempts
            .get(&key(attempt))
            .and_then(|r| r.channel.clone())
        {
            tokio::spawn(async move { channel.notify(id, complete).await });
        }
    }
}

/// Deletes checkpoints `ids` of `job` in the background (idempotent).
pub(crate) fn discard(
    persistent_dir: &Path,
    storage: Option<&CheckpointStorage>,
    job: &str,
    ids: &[u64],
) -> Result<(), String> {
    let job_dir = job_dir(persistent_dir, storage, job)?;
    let dirs: Vec<PathBuf> = ids.iter().map(|&id| checkpoint_dir(&job_dir, id)).collect();
    debug!(job = %job, checkpoints = ?ids, "discarding checkpoints");
    remove_in_background(dirs);
    Ok(())
}

/// Deletes every checkpoint of an ended job in the background.
pub(crate) fn remove_job(persistent_dir: &Path, storage: Option<&CheckpointStorage>, job: &str) {
    match job_dir(persistent_dir, storage, job) {
        Ok(dir) => remove_in_background(vec![dir]),
        Err(e) => warn!(job = %job, error = %e, "the checkpoints of an ended job are not removed"),
    }
}

fn remove_in_background(dirs: Vec<PathBuf>) {
    tokio::task::spawn_blocking(move || {
        for dir in dirs {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => debug!(dir = %dir.display(), "checkpoint folder removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "cannot remove a checkpoint folder")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "jm-checkpoints-{name}-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn attempt(vertex: &str, subtask: u32) -> AttemptRef {
        AttemptRef {
            job_id: "j1".into(),
            vertex: vertex.into(),
            subtask,
            attempt: 1,
        }
    }

    #[test]
    fn the_default_storage_is_beside_the_persistent_folder_and_inside_a_root() {
        assert_eq!(
            default_root(Path::new("/data/persistent")),
            PathBuf::from("/data/checkpoints")
        );
        assert_eq!(
            default_root(Path::new("/shared")),
            PathBuf::from("/shared/checkpoints")
        );
    }

    #[test]
    fn a_task_folder_is_storage_job_checkpoint_and_task() {
        let storage = CheckpointStorage {
            dir: "/mnt/ck".into(),
        };
        let job = job_dir(Path::new("/p"), Some(&storage), "j1").unwrap();
        let dir = task_dir(&checkpoint_dir(&job, 7), &attempt("count", 2)).unwrap();
        assert_eq!(dir, PathBuf::from("/mnt/ck/j1/chk-7/count-2"));
    }

    #[test]
    fn a_relative_storage_or_a_job_id_with_a_slash_is_refused() {
        let relative = CheckpointStorage { dir: "ck".into() };
        let e = job_dir(Path::new("/p"), Some(&relative), "j1").unwrap_err();
        assert!(e.contains("not an absolute path"), "{e}");
        assert!(job_dir(Path::new("/p"), None, "../x").is_err());
        assert!(task_dir(Path::new("/c"), &attempt("..", 0)).is_none());
    }

    #[test]
    fn a_restore_folder_is_given_only_when_the_task_wrote_one() {
        let tmp = scratch("restore");
        let persistent = tmp.join("persistent");
        let a = attempt("count", 0);
        assert_eq!(restore_dir(&persistent, None, &a, 3), None);
        let dir = tmp.join("checkpoints/j1/chk-3/count-0");
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(restore_dir(&persistent, None, &a, 3), Some(dir));
        assert_eq!(restore_dir(&persistent, None, &a, 0), None);
        std::fs::remove_dir_all(tmp).unwrap();
    }

    #[test]
    fn a_copied_tree_has_the_same_files_and_its_size_is_returned() {
        let tmp = scratch("copy");
        std::fs::create_dir_all(tmp.join("from/sub")).unwrap();
        std::fs::write(tmp.join("from/a"), b"12345").unwrap();
        std::fs::write(tmp.join("from/sub/b"), b"678").unwrap();
        assert_eq!(
            copy_tree(&tmp.join("from"), &tmp.join("to"), None).unwrap(),
            8
        );
        assert_eq!(std::fs::read(tmp.join("to/a")).unwrap(), b"12345");
        assert_eq!(std::fs::read(tmp.join("to/sub/b")).unwrap(), b"678");
        std::fs::remove_dir_all(tmp).unwrap();
    }

    #[test]
    fn the_size_of_a_folder_counts_its_files_recursively() {
        let tmp = scratch("size");
        std::fs::create_dir_all(tmp.join("a/b")).unwrap();
        std::fs::write(tmp.join("a/x"), [0u8; 10]).unwrap();
        std::fs::write(tmp.join("a/b/y"), [0u8; 5]).unwrap();
        assert_eq!(size_of(&tmp), 15);
        std::fs::remove_dir_all(tmp).unwrap();
    }
}
