//! `GetTaskLog`: an operator reads a task attempt's stdout or stderr. The JobMaster keeps no
//! logs: it finds the executor that ran the attempt (one short coordinator request), opens a
//! `ReadTaskLog` stream to it — over TLS, expecting that executor's certificate, like the
//! dispatcher — and relays the chunks. The coordinator is never held while bytes flow.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tracing::debug;

use super::coordinator::{Coordinator, is_transient};
use super::{ApiError, Shared, parse_job_id};
use crate::api::convert;
use crate::api::logs::LogStream;
use crate::api::v1::task_executor_service_client::TaskExecutorServiceClient;
use crate::api::v1::{AttemptRef, GetTaskLogRequest, LogChunk, ReadTaskLogRequest};
use crate::core::{AttemptId, AttemptState, ExecutorId, JobId};
use crate::log_text::Escaped;
use crate::security::connector::{self, Expect};

pub(crate) type LogChunks = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;

/// How often a log request retries an executor that has not received its attempt yet.
const DEPLOY_POLL: Duration = Duration::from_millis(50);

/// Where an attempt ran, as the coordinator knows it.
struct Located {
    attempt: AttemptRef,
    /// `vertex#subtask`, for messages.
    task: String,
    executor: ExecutorId,
    /// Its TaskExecutorService; `None` when it is not registered (any more).
    address: Option<String>,
    /// The task's current attempt, sent to the executor but maybe not received yet: a
    /// NOT_FOUND from the executor is retried for a while.
    deploying: bool,
}

/// Serves a `GetTaskLog` request: checks it, finds the executor and relays its stream.
pub(crate) async fn get_task_log(
    shared: &Arc<Shared>,
    r: GetTaskLogRequest,
) -> Result<LogChunks, ApiError> {
    let job = parse_job_id(&r.job_id)?;
    if r.task.is_empty() {
        return Err(ApiError::InvalidArgument(
            "task is empty: give it as vertex#subtask (e.g. map#0, see jmctl status)".into(),
        ));
    }
    let stream =
        LogStream::from_wire(&r.stream).map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    let (task, attempt) = (r.task, r.attempt);
    let located = shared.with(move |c| locate(c, job, &task, attempt)).await?;
    let address = located.address.clone().ok_or_else(|| {
        ApiError::Unavailable(format!(
            "executor {}, which ran attempt {} of task {} of job {job}, is not registered; its \
             logs stay on that machine, in the executor's data dir (executor.data-dir) under \
             attempts/{job}/{}.{}/{}",
            located.executor,
            located.attempt.attempt,
            located.task,
            located.task,
            located.attempt.attempt,
            stream.file_name()
        ))
    })?;
    debug!(job = %job, task = %Escaped(&located.task), attempt = located.attempt.attempt,
           executor = %Escaped(&located.executor.0), stream = %stream, follow = r.follow,
           "task log requested");
    let request = ReadTaskLogRequest {
        attempt: Some(located.attempt.clone()),
        stream: stream.name().to_owned(),
        offset: r.offset,
        follow: r.follow,
    };
    let chunks = open(shared, &located, &address, request).await?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(relay(
        chunks,
        located.executor,
        shared.stopping.subscribe(),
        tx,
    ));
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Passes the executor's chunks on until its stream ends, the caller goes away (dropping the
/// executor's stream then ends its side too) or the JobMaster shuts down (UNAVAILABLE, so
/// graceful shutdown need not wait for a followed log).
async fn relay(
    mut chunks: tonic::Streaming<LogChunk>,
    executor: ExecutorId,
    mut stopping: watch::Receiver<bool>,
    tx: mpsc::Sender<Result<LogChunk, Status>>,
) {
    loop {
        let item = tokio::select! {
            item = chunks.next() => item,
            _ = stopping.wait_for(|stopping| *stopping) => {
                Some(Err(Status::from(ApiError::ShuttingDown)))
            }
            () = tx.closed() => return,
        };
        let Some(item) = item else {
            return;
        };
        let item = item.map_err(|status| Status::from(executor_error(&executor, &status, true)));
        let last = item.is_err();
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

/// Finds the executor that ran `attempt` (default: the current one) of task `name`.
fn locate(
    c: &Coordinator,
    job: JobId,
    name: &str,
    attempt: Option<u32>,
) -> Result<Located, ApiError> {
    let graph = c
        .core
        .graph(job)
        .ok_or_else(|| ApiError::NotFound(format!("job {job} does not exist")))?;
    let task = graph
        .find_task(name)
        .ok_or_else(|| ApiError::NotFound(format!("job {job} has no task {name:?}")))?;
    let view = c
        .core
        .task(job, task)
        .ok_or_else(|| ApiError::NotFound(format!("job {job} has no task {name:?}")))?;
    let previous = c.core.previous_attempts(job, task).unwrap_or_default();
    let n = attempt.unwrap_or(view.attempt);
    let (executor, deploying) = if n == view.attempt {
        let Some(executor) = view.executor else {
            let hint = previous
                .iter()
                .rev()
                .find_map(|p| p.executor.as_ref().map(|e| (p.attempt, e)))
                .map(|(p, e)| {
                    format!("; its attempt {p} ran on executor {e} (ask for it with --attempt {p})")
                })
                .unwrap_or_default();
            return Err(ApiError::FailedPrecondition(format!(
                "attempt {n} of task {name} of job {job} is {} and not placed on an executor \
                 yet, so it has no log{hint}",
                view.state
            )));
        };
        (executor, view.state == AttemptState::Deploying)
    } else if n > view.attempt {
        return Err(ApiError::NotFound(format!(
            "task {name} of job {job} has no attempt {n}: its current attempt is {}",
            view.attempt
        )));
    } else {
        let Some(past) = previous.iter().find(|p| p.attempt == n) else {
            return Err(ApiError::NotFound(format!(
                "attempt {n} of task {name} of job {job} is older than the attempts the \
                 jobmaster remembers (from attempt {} on)",
                previous.first().map_or(view.attempt, |p| p.attempt)
            )));
        };
        let Some(executor) = past.executor.clone() else {
            return Err(ApiError::FailedPrecondition(format!(
                "attempt {n} of task {name} of job {job} was never placed on an executor, so it \
                 has no log"
            )));
        };
        (executor, false)
    };
    let address = c.shared.executors.get(&executor).map(|s| s.address.clone());
    Ok(Located {
        attempt: convert::attempt_ref(
            &c.core,
            AttemptId {
                job,
                task,
                attempt: n,
            },
        ),
        task: graph.task_name(task).to_string(),
        executor,
        address,
        deploying,
    })
}

/// Connects to the executor (TLS: it must hold its own certificate) and opens its stream.
async fn open(
    shared: &Shared,
    located: &Located,
    address: &str,
    request: ReadTaskLogRequest,
) -> Result<tonic::Streaming<LogChunk>, ApiError> {
    let executor = &located.executor;
    let rpc = &shared.settings.rpc;
    let scheme = if shared.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| ApiError::Internal(format!("executor {executor}'s address {address:?}: {e}")))?
        .connect_timeout(rpc.connect_timeout);
    let unreachable = |why: String| {
        ApiError::Unavailable(format!(
            "cannot reach executor {executor} at {address}, which ran attempt {} of task {}: \
             {why}",
            located.attempt.attempt, located.task
        ))
    };
    let channel: Channel = tokio::time::timeout(
        rpc.connect_timeout + rpc.timeout,
        connector::connect(
            endpoint,
            shared.tls.clone(),
            Expect::Executor(executor.0.clone()),
        ),
    )
    .await
    .map_err(|_| unreachable("the connection timed out".into()))?
    .map_err(|e| unreachable(connector::describe(&e)))?;
    let limit = shared.settings.server.max_message_bytes;
    let mut client = TaskExecutorServiceClient::new(channel).max_decoding_message_size(limit);
    // Only the opening is bounded: a followed log may stream for as long as the task runs.
    let deadline = tokio::time::Instant::now() + rpc.timeout;
    loop {
        let opened = tokio::time::timeout_at(deadline, client.read_task_log(request.clone()))
            .await
            .map_err(|_| unreachable("it did not answer in time".into()))?;
        match opened {
            Ok(response) => return Ok(response.into_inner()),
            // Sent but maybe not received yet: the dispatcher may still be on its way.
            Err(status)
                if status.code() == Code::NotFound
                    && located.deploying
                    && tokio::time::Instant::now() + DEPLOY_POLL < deadline =>
            {
                tokio::time::sleep(DEPLOY_POLL).await;
            }
            Err(status) => return Err(executor_error(executor, &status, false)),
        }
    }
}

/// An executor's refusal or failure, as this API answers it. `streaming`: it happened after
/// the first bytes were relayed.
fn executor_error(executor: &ExecutorId, status: &Status, streaming: bool) -> ApiError {
    let message = status.message();
    match status.code() {
        // The executor's own words name the attempt and the executor.
        Code::NotFound => ApiError::NotFound(message.to_owned()),
        Code::InvalidArgument => {
            ApiError::InvalidArgument(format!("executor {executor}: {message}"))
        }
        Code::Unimplemented => ApiError::FailedPrecondition(format!(
            "executor {executor} does not serve task logs (an older or a fake executor): {message}"
        )),
        Code::PermissionDenied | Code::Unauthenticated => ApiError::Unavailable(format!(
            "executor {executor} refused the jobmaster: {message} (are both certificates issued \
             by the cluster's CA?)"
        )),
        _ if is_transient(status) => ApiError::Unavailable(if streaming {
            format!("executor {executor} stopped answering while sending the log: {message}")
        } else {
            format!("executor {executor} did not answer: {message}")
        }),
        _ => ApiError::Internal(format!("executor {executor}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executor_errors_keep_their_meaning_for_the_operator() {
        let e = ExecutorId("e1".into());
        let code = |status: Status| Status::from(executor_error(&e, &status, false)).code();
        assert_eq!(code(Status::not_found("x")), Code::NotFound);
        assert_eq!(code(Status::invalid_argument("x")), Code::InvalidArgument);
        assert_eq!(code(Status::unavailable("x")), Code::Unavailable);
        assert_eq!(code(Status::permission_denied("x")), Code::Unavailable);
        assert_eq!(code(Status::unimplemented("x")), Code::FailedPrecondition);
        assert_eq!(code(Status::internal("x")), Code::Internal);
        let gone = executor_error(&e, &Status::unavailable("reset"), true).to_string();
        assert_eq!(
            gone,
            "executor e1 stopped answering while sending the log: reset"
        );
    }
}
