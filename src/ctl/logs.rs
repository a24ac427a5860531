//! `jmctl logs`: a task attempt's stdout or stderr, raw bytes as the task wrote them.

use std::io::Write;

use tokio_stream::StreamExt;

use super::{Client, CtlError};
use crate::api::logs::LogStream;
use crate::api::v1::GetTaskLogRequest;

/// What `jmctl logs` asks for.
pub struct LogsRequest<'a> {
    pub job: &'a str,
    /// `vertex#subtask`.
    pub task: &'a str,
    /// `None`: the task's current attempt.
    pub attempt: Option<u32>,
    pub stream: LogStream,
    /// Keep writing what the attempt writes until it has ended.
    pub follow: bool,
}

/// Writes the log to `out` as it arrives. A reader that goes away (`jmctl logs ... | head`)
/// ends the command without an error.
pub async fn logs(
    client: &mut Client,
    r: LogsRequest<'_>,
    out: &mut (dyn Write + Send),
) -> Result<(), CtlError> {
    let mut stream = client
        .get_task_log(GetTaskLogRequest {
            job_id: r.job.to_owned(),
            task: r.task.to_owned(),
            attempt: r.attempt,
            stream: r.stream.name().to_owned(),
            offset: 0,
            follow: r.follow,
        })
        .await
        .map_err(CtlError::server)?
        .into_inner();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(CtlError::later)?;
        // Flushed at once: a followed log is read as it grows.
        if let Err(e) = out.write_all(&chunk.data).and_then(|()| out.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(CtlError::new(1, format!("cannot write the log: {e}")));
        }
    }
    Ok(())
}
