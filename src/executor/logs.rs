//! Task logs: where an attempt's `stdout.log` and `stderr.log` lie, and `ReadTaskLog`, which
//! streams one of them back to the JobMaster — to the end of the file, or, when following,
//! on as the attempt writes until it has ended and the file is read to its end.
//!
//! Following polls the file (every [`FOLLOW_POLL`]) rather than watching it with inotify: a
//! log is read by a person at a terminal, a tenth of a second is soon enough, and polling
//! works on every file system the data dir may sit on.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::debug;

use super::error::ExecutorError;
use super::{Agent, AttemptKey, key};
use crate::api::logs::{LOG_CHUNK_BYTES, LogStream};
use crate::api::v1::{AttemptRef, LogChunk, ReadTaskLogRequest};
use crate::core::names::check_name;
use crate::log_text::Escaped;

/// How often a followed log is checked for new bytes.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

pub(crate) type LogChunks = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;

/// The folder of an attempt under the data dir: `attempts/JOB/VERTEX#SUBTASK.ATTEMPT`. The
/// caller made sure the job id and vertex are plain names.
pub(crate) fn attempt_dir(data_dir: &Path, a: &AttemptRef) -> PathBuf {
    data_dir
        .join("attempts")
        .join(&a.job_id)
        .join(format!("{}#{}.{}", a.vertex, a.subtask, a.attempt))
}

/// Checks a `ReadTaskLog` request and starts streaming the log.
pub(crate) fn read(agent: Arc<Agent>, r: ReadTaskLogRequest) -> Result<LogChunks, ExecutorError> {
    let attempt = r.attempt.ok_or(ExecutorError::Missing("attempt"))?;
    check_name("job_id", &attempt.job_id)?;
    // The one rule of names refuses '/', "." and "..": each name is one path component.
    check_name("vertex", &attempt.vertex)?;
    let stream = LogStream::from_wire(&r.stream)?;
    let dir = attempt_dir(&agent.config.data_dir, &attempt);
    let k = key(&attempt);
    // Ran here: its folder is here (also after a restart of the executor), or it was just
    // accepted and its folder is still being made.
    let is_dir = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
    if !is_dir && !agent.holds(&k) {
        return Err(ExecutorError::AttemptNotHere {
            attempt: attempt.attempt,
            task: format!("{}#{}", attempt.vertex, attempt.subtask),
            job: attempt.job_id,
            executor: agent.config.id.clone(),
        });
    }
    let path = dir.join(stream.file_name());
    let (tx, rx) = mpsc::channel(4);
    let follow = r.follow.then_some(k);
    tokio::spawn(async move {
        if let Err(e) = pump(&agent, &path, r.offset, follow, &tx).await {
            let path = path.display().to_string();
            debug!(path = %Escaped(&path), error = %e, "log not read to the end");
            let _ = tx.send(Err(e.into())).await;
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

impl Agent {
    /// Whether the attempt holds a slot here (its process may still write).
    fn holds(&self, k: &AttemptKey) -> bool {
        self.lock().attempts.contains_key(k)
    }
}

/// Opens the log at `offset`; `None` while the task has not created it.
async fn open(path: &Path, offset: u64) -> Result<Option<tokio::fs::File>, ExecutorError> {
    let unreadable = |error| ExecutorError::LogUnreadable {
        path: path.to_owned(),
        error,
    };
    // Not through a symbolic link: the log is the file the executor created, nothing else.
    let opened = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .await;
    let mut file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    if offset > 0 {
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(unreadable)?;
    }
    Ok(Some(file))
}

/// Sends the log from `offset` in chunks. With `follow` (the attempt's key), keeps polling
/// for new bytes while the attempt holds its slot here, then reads to the end once more.
/// Returns when done or when the caller has gone away.
async fn pump(
    agent: &Agent,
    path: &Path,
    mut offset: u64,
    follow: Option<AttemptKey>,
    tx: &mpsc::Sender<Result<LogChunk, Status>>,
) -> Result<(), ExecutorError> {
    let mut file = None;
    let mut buf = vec![0u8; LOG_CHUNK_BYTES];
    loop {
        // Asked before reading: when the attempt has ended, its process wrote its last byte
        // before this, and the reading below gets it.
        let running = follow.as_ref().is_some_and(|k| agent.holds(k));
        if file.is_none() {
            file = open(path, offset).await?;
        }
        if let Some(f) = file.as_mut() {
            loop {
                let n = f
                    .read(&mut buf)
                    .await
                    .map_err(|error| ExecutorError::LogRead {
                        path: path.to_owned(),
                        error,
                    })?;
                if n == 0 {
                    break;
                }
                let chunk = LogChunk {
                    data: buf[..n].to_vec(),
                    offset,
                };
                offset += n as u64;
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(()); // the caller went away
                }
            }
        }
        if !running {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_POLL) => {}
            () = tx.closed() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_folder_is_named_after_its_task_and_attempt() {
        let a = AttemptRef {
            job_id: "00000000000000a1".into(),
            vertex: "map".into(),
            subtask: 1,
            attempt: 3,
        };
        assert_eq!(
            attempt_dir(Path::new("/data"), &a),
            Path::new("/data/attempts/00000000000000a1/map#1.3")
        );
    }
}
