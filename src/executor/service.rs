//! `TaskExecutorService`: what the JobMaster (and other executors) ask of this executor:
//! start and cancel attempts, release partitions and serve them to consumers. Starting hands
//! the attempt to the [runner](super::runner).

use std::pin::Pin;
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{debug, warn};

use super::error::ExecutorError;

/// How long a command with a newer epoch than the registered one waits for a registration
/// answer still on its way before it is refused.
const REGISTRATION_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
use super::{Agent, Running, checkpoints, key, logs, partitions, retention, runner};
use crate::api::batch::{outcome, unbatch};
use crate::api::v1::task_executor_service_server::TaskExecutorService;
use crate::api::v1::{
    AttemptRef, CancelTaskRequest, CancelTaskResponse, CancelTasksRequest, CancelTasksResponse,
    DiscardCheckpointsRequest, DiscardCheckpointsResponse, FetchPartitionRequest,
    NotifyCheckpointRequest, NotifyCheckpointResponse, PartitionChunk, ReadTaskLogRequest,
    ReleaseJobRequest, ReleaseJobResponse, ReleasePartitionsRequest, ReleasePartitionsResponse,
    SubmitTaskRequest, SubmitTaskResponse, SubmitTasksRequest, SubmitTasksResponse,
    TriggerCheckpointRequest, TriggerCheckpointResponse,
};
use crate::core::AttemptState;
use crate::log_text::Escaped;

const CHUNK: usize = 64 * 1024;

pub(crate) struct Service {
    agent: Arc<Agent>,
}

impl Service {
    pub(crate) fn new(agent: Arc<Agent>) -> Service {
        Service { agent }
    }

    /// Refuses commands from an older JobMaster; adopts a newer epoch.
    async fn fence(&self, epoch: u64) -> Result<(), ExecutorError> {
        let mut registered = self.agent.epoch.subscribe();
        let deadline = tokio::time::Instant::now() + REGISTRATION_GRACE;
        loop {
            let current = *registered.borrow_and_update();
            if epoch == current {
                return Ok(());
            }
            if epoch < current {
                return Err(ExecutorError::StaleEpoch { epoch, current });
            }
            // A newer epoch: only a registration whose answer is still on its way explains it
            // (the JobMaster may send commands the moment it has registered us). Anything else
            // is refused, and never adopted.
            match tokio::time::timeout_at(deadline, registered.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Err(ExecutorError::UnknownEpoch { epoch, current }),
            }
        }
    }

    /// Starts one attempt (the epoch was checked by the caller).
    fn start(&self, r: SubmitTaskRequest) -> Result<(), ExecutorError> {
        let attempt = r.attempt.clone().ok_or(ExecutorError::Missing("attempt"))?;
        // The spec's rule of names: whatever a spec accepts deploys.
        crate::core::names::check_name("job_id", &attempt.job_id)?;
        crate::core::names::check_name("vertex", &attempt.vertex)?;
        if r.command.first().is_none_or(|p| p.is_empty()) {
            return Err(ExecutorError::EmptyCommand);
        }
        let free = self.agent.free_disk();
        if free < self.agent.config.min_free_disk {
            return Err(ExecutorError::LowDisk {
                free,
                min: self.agent.config.min_free_disk,
            });
        }
        let cancel = Arc::new(Notify::new());
        {
            let mut state = self.agent.lock();
            // Checked under the lock that inserts the attempt, so that a ReleaseJob cannot
            // pass in between: its folders are gone, a late submit must not bring them back.
            if state.ended_jobs.contains(&attempt.job_id) {
                return Err(ExecutorError::JobEnded {
                    job: attempt.job_id,
                });
            }
            // Under the lock that kills the attempts when the executor fences itself.
            if state.fenced {
                return Err(ExecutorError::Fenced);
            }
            let k = key(&attempt);
            if state.attempts.contains_key(&k) {
                return Ok(()); // a retried submit
            }
            if state.attempts.len() >= self.agent.config.slots as usize {
                return Err(ExecutorError::NoFreeSlot {
                    slots: self.agent.config.slots,
                });
            }
            state.attempts.insert(
                k,
                Running {
                    attempt: attempt.clone(),
                    control: None,
                    cancel: cancel.clone(),
                    cancelled: false,
                    state: AttemptState::Deploying,
                    killed: false,
                    channel: None,
                },
            );
        }
        let restore = checkpoints::restore_dir(
            &self.agent.config.persistent_dir,
            r.checkpoint_storage.as_ref(),
            &attempt,
            r.restore_checkpoint,
        );
        if r.restore_checkpoint != 0 {
            debug!(task = %format!("{}#{}", attempt.vertex, attempt.subtask), attempt = attempt.attempt,
                   checkpoint = r.restore_checkpoint, state = restore.is_some(), "attempt restores from a checkpoint");
        }
        tokio::spawn(runner::run_attempt(self.agent.clone(), r, cancel, restore));
        Ok(())
    }

    /// Stops one attempt (the epoch was checked by the caller); unknown ones are fine.
    fn stop(&self, attempt: &AttemptRef) {
        let target = {
            let mut state = self.agent.lock();
            state.attempts.get_mut(&key(attempt)).map(|running| {
                running.cancelled = true;
                (running.control.clone(), running.cancel.clone())
            })
        };
        if let Some((control, cancel)) = target {
            if let Some(control) = control {
                control.terminate();
            }
            cancel.notify_one();
        }
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<PartitionChunk, Status>> + Send>>;

#[tonic::async_trait]
impl TaskExecutorService for Service {
    async fn submit_task(
        &self,
        request: Request<SubmitTaskRequest>,
    ) -> Result<Response<SubmitTaskResponse>, Status> {
        let r = request.into_inner();
        self.fence(r.epoch).await?;
        if let Some(gate) = r.inputs.iter().find(|g| g.shared_partitions != 0) {
            return Err(ExecutorError::SharedListOutsideBatch {
                input: gate.producer_vertex.clone(),
            }
            .into());
        }
        self.start(r)?;
        Ok(Response::new(SubmitTaskResponse {}))
    }

    async fn submit_tasks(
        &self,
        request: Request<SubmitTasksRequest>,
    ) -> Result<Response<SubmitTasksResponse>, Status> {
        let r = request.into_inner();
        self.fence(r.epoch).await?;
        let names: Vec<String> = r
            .tasks
            .iter()
            .map(|t| {
                t.attempt
                    .as_ref()
                    .map(|a| format!("{}#{}.{}", a.vertex, a.subtask, a.attempt))
                    .unwrap_or_default()
            })
            .collect();
        let outcomes = unbatch(r)
            .into_iter()
            .zip(names)
            .map(|(task, name)| {
                let result = task.and_then(|task| self.start(task).map_err(Status::from));
                if let Err(status) = &result {
                    warn!(task = %Escaped(&name), code = ?status.code(), message = %Escaped(status.message()), "task refused");
                }
                outcome(result)
            })
            .collect();
        Ok(Response::new(SubmitTasksResponse { outcomes }))
    }

    async fn cancel_task(
        &self,
        request: Request<CancelTaskRequest>,
    ) -> Result<Response<CancelTaskResponse>, Status> {
        let r = request.into_inner();
        self.fence(r.epoch).await?;
        let attempt = r.attempt.ok_or(ExecutorError::Missing("attempt"))?;
        self.stop(&attempt);
        Ok(Response::new(CancelTaskResponse {}))
    }

    async fn cancel_tasks(
        &self,
        request: Request<CancelTasksRequest>,
    ) -> Result<Response<CancelTasksResponse>, Status> {
        let r = request.into_inner();
        self.fence(r.epoch).await?;
        for attempt in &r.attempts {
            self.stop(attempt);
        }
        Ok(Response::new(CancelTasksResponse {}))
    }

    async fn release_partitions(
        &self,
        request: Request<ReleasePartitionsRequest>,
    ) -> Result<Response<ReleasePartitionsResponse>, Status> {
        let r = request.into_inner();
        self.fence(r.epoch).await?;
        // Deleting can take long (big outputs, a slow shared mount): it runs in the background
        // so the answer, and the JobMaster's next command to this executor, need not wait.
        let dirs: Vec<std::path::PathBuf> = r
            .partitions
            .iter()
            .flat_map(|p| {
                [
                    &self.agent.config.data_dir,
                    &self.agent.config.persistent_dir,
                ]
                .into_iter()
                .filter_map(move |root| partitions::ref_dir(root, p))
            })
            .collect();
        tokio::spawn(async move {
            for dir in dirs {
                match tokio::fs::remove_dir_all(&dir).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => warn!(dir = %dir.display(), error = %e, "partition not deleted"),
                }
            }
        });
        let mut state = self.agent.lock();
        state.partitions.retain(|held| {
            !r.partitions.iter().any(|p| {
                p.job_id == held.job_id
                    && p.producer == held.producer
                    && p.attempt == held.attempt
                    && p.consumer_vertex == held.consumer_vertex
            })
        });
        Ok(Response::new(ReleasePartitionsResponse {}))
    }

    async fn release_job(
        &self,
        request: Request<ReleaseJobRequest>,
    ) -> Result<Response<ReleaseJobResponse>, Status> {
        let r = request.into_inner();
        self.fence(r.epoch).await?;
        if !partitions::safe_component(&r.job_id) {
            return Err(ExecutorError::NotPlainJob { job: r.job_id }.into());
        }
        let running: Vec<AttemptRef> = {
            let mut state = self.agent.lock();
            if !state.ended_jobs.insert(&r.job_id) {
                return Ok(Response::new(ReleaseJobResponse {})); // a repeated release
            }
            state.partitions.retain(|p| p.job_id != r.job_id);
            state
                .attempts
                .values()
                .filter(|a| a.attempt.job_id == r.job_id)
                .map(|a| a.attempt.clone())
                .collect()
        };
        if r.checkpoint_storage.is_some() {
            checkpoints::remove_job(
                &self.agent.config.persistent_dir,
                r.checkpoint_storage.as_ref(),
                &r.job_id,
            );
        }
        if running.is_empty() {
            retention::remove_job(
                &self.agent.config.data_dir,
                &r.job_id,
                self.agent.config.retain_ended_jobs,
            );
        } else {
            // Stragglers of an ended job must not run on; the last one to end removes the
            // job's folders (see the runner).
            warn!(job = %r.job_id, attempts = running.len(),
                  "job ended with attempts still running here: stopping them");
            for attempt in &running {
                self.stop(attempt);
            }
        }
        Ok(Response::new(ReleaseJobResponse {}))
    }

    async fn trigger_checkpoint(
        &self,
        request: Request<TriggerCheckpointRequest>,
    ) -> Result<Response<TriggerCheckpointResponse>, Status> {
        let r = request.into_inner();
        self.fence(r.epoch).await?;
        let timeout = std::time::Duration::from_millis(r.timeout_ms.max(1));
        checkpoints::trigger(
            &self.agent,
            &r.job_id,
            r.checkpoint_id,
            r.storage.as_ref(),
            r.attempts,
            timeout,
        );
        Ok(Response::new(TriggerCheckpointResponse {}))
    }

    async fn notify_checkpoint(
        &self,
        request: Request<NotifyCheckpointRequest>,
    ) -> Result<Response<NotifyCheckpointResponse>, Status> {
        let r = request.into_inner();
        self.fence(r.epoch).await?;
        checkpoints::notify(&self.agent, r.checkpoint_id, r.complete, &r.attempts);
        Ok(Response::new(NotifyCheckpointResponse {}))
    }

    async fn discard_checkpoints(
        &self,
        request: Request<DiscardCheckpointsRequest>,
    ) -> Result<Response<DiscardCheckpointsResponse>, Status> {
        let r = request.into_inner();
        self.fence(r.epoch).await?;
        checkpoints::discard(
            &self.agent.config.persistent_dir,
            r.storage.as_ref(),
            &r.job_id,
            &r.checkpoint_ids,
        )
        .map_err(Status::invalid_argument)?;
        Ok(Response::new(DiscardCheckpointsResponse {}))
    }

    type FetchPartitionStream = ChunkStream;

    async fn fetch_partition(
        &self,
        request: Request<FetchPartitionRequest>,
    ) -> Result<Response<Self::FetchPartitionStream>, Status> {
        let r = request.into_inner();
        let p = r.partition.ok_or(ExecutorError::Missing("partition"))?;
        let file = [
            &self.agent.config.data_dir,
            &self.agent.config.persistent_dir,
        ]
        .into_iter()
        .filter_map(|root| partitions::ref_dir(root, &p))
        .map(|dir| dir.join(r.subpartition.to_string()))
        .find(|f| f.is_file())
        .ok_or_else(|| ExecutorError::PartitionNotHere {
            producer: p.producer.clone(),
            attempt: p.attempt,
            consumer: p.consumer_vertex.clone(),
            subpartition: r.subpartition,
        })?;
        let mut f = tokio::fs::File::open(&file).await.map_err(|error| {
            ExecutorError::PartitionUnreadable {
                path: file.clone(),
                error,
            }
        })?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match f.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx
                            .send(Ok(PartitionChunk {
                                data: buf[..n].to_vec(),
                            }))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(ExecutorError::PartitionRead(e).into())).await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type ReadTaskLogStream = logs::LogChunks;

    async fn read_task_log(
        &self,
        request: Request<ReadTaskLogRequest>,
    ) -> Result<Response<Self::ReadTaskLogStream>, Status> {
        let chunks = logs::read(self.agent.clone(), request.into_inner())?;
        Ok(Response::new(chunks))
    }
}
