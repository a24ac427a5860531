//! `TaskExecutorService`: what the JobMaster (and other executors) ask of this executor, and
//! the runner that takes one attempt from its inputs to its exit.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status};
use tracing::{info, warn};

use super::{Agent, Running, key, partitions, process};
use crate::api::v1::task_executor_service_client::TaskExecutorServiceClient;
use crate::api::v1::task_executor_service_server::TaskExecutorService;
use crate::api::v1::{
    AttemptRef, CancelTaskRequest, CancelTaskResponse, CancelTasksRequest, CancelTasksResponse,
    FetchPartitionRequest, PartitionChunk, PartitionRef, ReleasePartitionsRequest,
    ReleasePartitionsResponse, SubmitTaskRequest, SubmitTaskResponse, SubmitTasksRequest,
    SubmitTasksResponse, TaskOutcome, TaskStateUpdate,
};

const CHUNK: usize = 64 * 1024;

pub(crate) struct Service {
    agent: Arc<Agent>,
}

impl Service {
    pub(crate) fn new(agent: Arc<Agent>) -> Service {
        Service { agent }
    }

    /// Refuses commands from an older JobMaster; adopts a newer epoch.
    fn fence(&self, epoch: u64) -> Result<(), Status> {
        let mut state = self.agent.lock();
        if epoch < state.epoch {
            return Err(Status::failed_precondition(format!(
                "epoch {epoch} is older than the current jobmaster's epoch {}",
                state.epoch
            )));
        }
        state.epoch = epoch;
        Ok(())
    }

    /// Starts one attempt (the epoch was checked by the caller).
    fn start(&self, r: SubmitTaskRequest) -> Result<(), Status> {
        let attempt = r
            .attempt
            .clone()
            .ok_or_else(|| Status::invalid_argument("attempt is missing"))?;
        if !partitions::safe_component(&attempt.job_id)
            || !partitions::safe_component(&attempt.vertex)
        {
            return Err(Status::invalid_argument(
                "job_id and vertex must be plain names",
            ));
        }
        if r.command.first().is_none_or(|p| p.is_empty()) {
            return Err(Status::invalid_argument("command is empty"));
        }
        let free = self.agent.free_disk();
        if free < self.agent.config.min_free_disk {
            return Err(Status::failed_precondition(format!(
                "free disk {free} bytes is below the threshold of {} bytes: refusing new tasks",
                self.agent.config.min_free_disk
            )));
        }
        let cancel = Arc::new(Notify::new());
        {
            let mut state = self.agent.lock();
            let k = key(&attempt);
            if state.attempts.contains_key(&k) {
                return Ok(()); // a retried submit
            }
            if state.attempts.len() >= self.agent.config.slots as usize {
                return Err(Status::failed_precondition(format!(
                    "no free slot: all {} slots are busy",
                    self.agent.config.slots
                )));
            }
            state.attempts.insert(
                k,
                Running {
                    attempt: attempt.clone(),
                    pid: None,
                    cancel: cancel.clone(),
                    cancelled: false,
                },
            );
        }
        tokio::spawn(run_attempt(self.agent.clone(), r, cancel));
        Ok(())
    }

    /// Stops one attempt (the epoch was checked by the caller); unknown ones are fine.
    fn stop(&self, attempt: &AttemptRef) {
        let target = {
            let mut state = self.agent.lock();
            state.attempts.get_mut(&key(attempt)).map(|running| {
                running.cancelled = true;
                (running.pid, running.cancel.clone())
            })
        };
        if let Some((pid, cancel)) = target {
            if let Some(pid) = pid {
                process::signal_group(pid, libc::SIGTERM);
            }
            cancel.notify_one();
        }
    }
}

/// Splits a SubmitTasks batch into the SubmitTask requests it stands for, in order: each task
/// gets the batch's epoch and its shared partition lists filled in. A task naming a shared list
/// the batch lacks is refused alone (INVALID_ARGUMENT).
pub fn unbatch(batch: SubmitTasksRequest) -> Vec<Result<SubmitTaskRequest, Status>> {
    let SubmitTasksRequest {
        epoch,
        tasks,
        shared_partitions: shared,
    } = batch;
    tasks
        .into_iter()
        .map(|mut task| {
            task.epoch = epoch;
            for gate in &mut task.inputs {
                if gate.shared_partitions == 0 {
                    continue;
                }
                let list = (gate.shared_partitions as usize)
                    .checked_sub(1)
                    .and_then(|i| shared.get(i))
                    .ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "input {:?} names shared partition list {} of {}",
                            gate.producer_vertex,
                            gate.shared_partitions,
                            shared.len()
                        ))
                    })?;
                gate.partitions.extend_from_slice(&list.partitions);
                gate.shared_partitions = 0;
            }
            Ok(task)
        })
        .collect()
}

/// The outcome of one task of a batch (SubmitTasks, UpdateTaskStates), as the one-by-one call
/// would have answered it.
pub fn outcome(result: Result<(), Status>) -> TaskOutcome {
    match result {
        Ok(()) => TaskOutcome {
            accepted: true,
            ..TaskOutcome::default()
        },
        Err(status) => TaskOutcome {
            accepted: false,
            code: code_name(status.code()).to_owned(),
            message: status.message().to_owned(),
        },
    }
}

/// The canonical gRPC name of a status code, as `TaskOutcome.code` carries it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
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
        self.fence(r.epoch)?;
        if let Some(gate) = r.inputs.iter().find(|g| g.shared_partitions != 0) {
            return Err(Status::invalid_argument(format!(
                "input {:?}: shared partition lists only exist in SubmitTasks",
                gate.producer_vertex
            )));
        }
        self.start(r)?;
        Ok(Response::new(SubmitTaskResponse {}))
    }

    async fn submit_tasks(
        &self,
        request: Request<SubmitTasksRequest>,
    ) -> Result<Response<SubmitTasksResponse>, Status> {
        let r = request.into_inner();
        self.fence(r.epoch)?;
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
                let result = task.and_then(|task| self.start(task));
                if let Err(status) = &result {
                    warn!(task = %name, code = ?status.code(), message = status.message(), "task refused");
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
        self.fence(r.epoch)?;
        let attempt = r
            .attempt
            .ok_or_else(|| Status::invalid_argument("attempt is missing"))?;
        self.stop(&attempt);
        Ok(Response::new(CancelTaskResponse {}))
    }

    async fn cancel_tasks(
        &self,
        request: Request<CancelTasksRequest>,
    ) -> Result<Response<CancelTasksResponse>, Status> {
        let r = request.into_inner();
        self.fence(r.epoch)?;
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
        self.fence(r.epoch)?;
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

    type FetchPartitionStream = ChunkStream;

    async fn fetch_partition(
        &self,
        request: Request<FetchPartitionRequest>,
    ) -> Result<Response<Self::FetchPartitionStream>, Status> {
        let r = request.into_inner();
        let p = r
            .partition
            .ok_or_else(|| Status::invalid_argument("partition is missing"))?;
        let file = [
            &self.agent.config.data_dir,
            &self.agent.config.persistent_dir,
        ]
        .into_iter()
        .filter_map(|root| partitions::ref_dir(root, &p))
        .map(|dir| dir.join(r.subpartition.to_string()))
        .find(|f| f.is_file())
        .ok_or_else(|| {
            Status::not_found(format!(
                "partition {}.{}->{} subpartition {} is not here",
                p.producer, p.attempt, p.consumer_vertex, r.subpartition
            ))
        })?;
        let mut f = tokio::fs::File::open(&file)
            .await
            .map_err(|e| Status::not_found(format!("{}: {e}", file.display())))?;
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
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// What a task process learns from its descriptor file (`JM_DESCRIPTOR`).
#[derive(Serialize)]
struct Descriptor<'a> {
    job_id: &'a str,
    job_name: &'a str,
    vertex: &'a str,
    subtask: u32,
    parallelism: u32,
    attempt: u32,
    inputs: Vec<InputDescriptor>,
    outputs: Vec<OutputDescriptor>,
    state_dir: String,
}

#[derive(Serialize)]
struct InputDescriptor {
    producer_vertex: String,
    exchange: String,
    /// Local files to read (blocking and persistent inputs), one per producer subtask.
    files: Vec<String>,
    /// For pipelined inputs: where each producer subtask runs (executor ids).
    producers: Vec<String>,
}

#[derive(Serialize)]
struct OutputDescriptor {
    consumer_vertex: String,
    exchange: String,
    /// Files to write, one per consumer subtask (blocking and persistent outputs).
    files: Vec<String>,
}

/// A failure before the process started.
struct Early {
    class: &'static str,
    message: String,
    missing: Option<PartitionRef>,
}

async fn run_attempt(agent: Arc<Agent>, r: SubmitTaskRequest, cancel: Arc<Notify>) {
    let attempt = r.attempt.clone().unwrap_or_default();
    let name = format!("{}#{}", attempt.vertex, attempt.subtask);
    let dir = agent
        .config
        .data_dir
        .join("attempts")
        .join(&attempt.job_id)
        .join(format!("{name}.{}", attempt.attempt));
    let outcome = tokio::select! {
        result = prepare_and_run(&agent, &r, &attempt, &name, &dir) => result,
        _ = cancel.notified() => Ok(None),
    };
    // A cancel may also have arrived while the process ran.
    let result = match outcome {
        Ok(Some(child)) => supervise(&agent, &attempt, &name, &dir, child, &cancel).await,
        Ok(None) => Outcome::Canceled,
        Err(early) => Outcome::Failed(early),
    };
    let cancelled = {
        let mut state = agent.lock();
        let cancelled = state
            .attempts
            .remove(&key(&attempt))
            .is_some_and(|r| r.cancelled);
        // Named in heartbeats until the final report below is answered.
        state.reporting.insert(key(&attempt), attempt.clone());
        if let Outcome::Finished(ref outputs) = result
            && !cancelled
        {
            state.partitions.extend(outputs.iter().cloned());
        }
        cancelled
    };
    let _ = std::fs::remove_file(agent.config.data_dir.join("pids").join(pid_name(&attempt)));
    match result {
        _ if cancelled => agent.report(&attempt, "CANCELED", "", String::new()),
        Outcome::Canceled => agent.report(&attempt, "CANCELED", "", String::new()),
        Outcome::Finished(_) => {
            info!(job = %attempt.job_id, task = %name, attempt = attempt.attempt, "task finished");
            agent.report(&attempt, "FINISHED", "", String::new())
        }
        Outcome::Failed(early) => {
            warn!(job = %attempt.job_id, task = %name, attempt = attempt.attempt, message = %early.message, "task failed");
            let _ = agent.reports.send(TaskStateUpdate {
                attempt: Some(attempt.clone()),
                state: "FAILED".into(),
                failure_class: early.class.into(),
                message: early.message,
                missing_partition: early.missing,
            });
        }
    }
}

enum Outcome {
    Finished(Vec<PartitionRef>),
    Failed(Early),
    Canceled,
}

fn pid_name(a: &AttemptRef) -> String {
    format!("{}_{}#{}.{}", a.job_id, a.vertex, a.subtask, a.attempt)
}

/// Fetches inputs, lays out outputs, writes the descriptor and starts the process.
async fn prepare_and_run(
    agent: &Arc<Agent>,
    r: &SubmitTaskRequest,
    attempt: &AttemptRef,
    name: &str,
    dir: &Path,
) -> Result<Option<(tokio::process::Child, Vec<PartitionRef>)>, Early> {
    let io_err = |what: &str, e: std::io::Error| Early {
        class: "recoverable",
        message: format!("{what}: {e}"),
        missing: None,
    };
    tokio::fs::create_dir_all(dir.join("inputs"))
        .await
        .map_err(|e| io_err("cannot create the attempt directory", e))?;
    tokio::fs::create_dir_all(dir.join("state"))
        .await
        .map_err(|e| io_err("cannot create the state directory", e))?;
    let config = &agent.config;

    let mut inputs = Vec::new();
    let mut input_files = Vec::new();
    for gate in &r.inputs {
        let mut files = Vec::new();
        let mut producers = Vec::new();
        for p in &gate.partitions {
            producers.push(p.executor.clone());
            if gate.exchange == "pipelined" {
                continue;
            }
            let producer = format!("{}#{}", gate.producer_vertex, p.subtask);
            let pref = PartitionRef {
                job_id: attempt.job_id.clone(),
                producer: producer.clone(),
                attempt: p.attempt,
                consumer_vertex: attempt.vertex.clone(),
            };
            let missing = |message: String| Early {
                class: "partition-lost",
                message,
                missing: Some(pref.clone()),
            };
            let file = if p.location == "persistent" || p.location == config.advertise {
                let root = if p.location == "persistent" {
                    &config.persistent_dir
                } else {
                    &config.data_dir
                };
                let path = partitions::ref_dir(root, &pref)
                    .map(|d| d.join(attempt.subtask.to_string()))
                    .ok_or_else(|| missing(format!("bad partition name {producer}")))?;
                if !path.is_file() {
                    return Err(missing(format!(
                        "input {producer}.{}->{} is missing at {}",
                        p.attempt,
                        attempt.vertex,
                        path.display()
                    )));
                }
                path
            } else if p.location.is_empty() {
                return Err(missing(format!("input {producer} has no location")));
            } else {
                let path = dir.join("inputs").join(format!("{producer}.{}", p.attempt));
                fetch(agent, &p.location, &pref, attempt.subtask, &path)
                    .await
                    .map_err(|e| {
                        missing(format!(
                            "cannot fetch input {producer} from {}: {e}",
                            p.location
                        ))
                    })?;
                path
            };
            let text = file.display().to_string();
            input_files.push(text.clone());
            files.push(text);
        }
        inputs.push(InputDescriptor {
            producer_vertex: gate.producer_vertex.clone(),
            exchange: gate.exchange.clone(),
            files,
            producers,
        });
    }

    let mut outputs = Vec::new();
    let mut produced = Vec::new();
    let mut output_files = Vec::new();
    for gate in &r.outputs {
        let mut files = Vec::new();
        if gate.exchange != "pipelined" {
            let root: &PathBuf = if gate.exchange == "persistent" {
                &config.persistent_dir
            } else {
                &config.data_dir
            };
            let out_dir = partitions::partition_dir(
                root,
                &attempt.job_id,
                name,
                attempt.attempt,
                &gate.consumer_vertex,
            )
            .ok_or_else(|| Early {
                class: "non-recoverable",
                message: format!(
                    "consumer vertex {:?} is not a plain name",
                    gate.consumer_vertex
                ),
                missing: None,
            })?;
            tokio::fs::create_dir_all(&out_dir)
                .await
                .map_err(|e| io_err("cannot create the output directory", e))?;
            for j in gate.first_consumer..gate.first_consumer + gate.consumers {
                let f = out_dir.join(j.to_string());
                tokio::fs::File::create(&f)
                    .await
                    .map_err(|e| io_err("cannot create an output file", e))?;
                let text = f.display().to_string();
                output_files.push(text.clone());
                files.push(text);
            }
            if gate.exchange == "blocking" {
                produced.push(PartitionRef {
                    job_id: attempt.job_id.clone(),
                    producer: name.to_owned(),
                    attempt: attempt.attempt,
                    consumer_vertex: gate.consumer_vertex.clone(),
                });
            }
        }
        outputs.push(OutputDescriptor {
            consumer_vertex: gate.consumer_vertex.clone(),
            exchange: gate.exchange.clone(),
            files,
        });
    }

    let state_dir = dir.join("state").display().to_string();
    let descriptor = Descriptor {
        job_id: &attempt.job_id,
        job_name: &r.job_name,
        vertex: &attempt.vertex,
        subtask: attempt.subtask,
        parallelism: r.parallelism,
        attempt: attempt.attempt,
        inputs,
        outputs,
        state_dir: state_dir.clone(),
    };
    let descriptor_path = dir.join("descriptor.json");
    let json = serde_json::to_vec_pretty(&descriptor).unwrap_or_default();
    tokio::fs::write(&descriptor_path, json)
        .await
        .map_err(|e| io_err("cannot write the descriptor", e))?;
    let env = vec![
        ("JM_JOB_ID".to_owned(), attempt.job_id.clone()),
        ("JM_JOB_NAME".to_owned(), r.job_name.clone()),
        ("JM_VERTEX".to_owned(), attempt.vertex.clone()),
        ("JM_SUBTASK".to_owned(), attempt.subtask.to_string()),
        ("JM_PARALLELISM".to_owned(), r.parallelism.to_string()),
        ("JM_ATTEMPT".to_owned(), attempt.attempt.to_string()),
        (
            "JM_DESCRIPTOR".to_owned(),
            descriptor_path.display().to_string(),
        ),
        ("JM_INPUT_FILES".to_owned(), input_files.join(" ")),
        ("JM_OUTPUT_FILES".to_owned(), output_files.join(" ")),
        ("JM_STATE_DIR".to_owned(), state_dir),
        ("JM_EXECUTOR_ID".to_owned(), config.id.clone()),
    ];
    // Tasks run in the executor's working directory, so relative paths in a job's commands
    // resolve where the cluster was started; their own files live in JM_ATTEMPT_DIR.
    let mut env = env;
    env.push(("JM_ATTEMPT_DIR".to_owned(), dir.display().to_string()));
    let cwd = std::env::current_dir().unwrap_or_else(|_| dir.to_path_buf());
    let child = process::spawn(
        &r.command,
        &env,
        &cwd,
        &dir.join("stdout.log"),
        &dir.join("stderr.log"),
    )
    .map_err(|e| Early {
        class: "recoverable",
        message: format!("cannot start {:?}: {e}", r.command[0]),
        missing: None,
    })?;
    let pid = child.id().unwrap_or(0);
    {
        let mut state = agent.lock();
        if let Some(running) = state.attempts.get_mut(&key(attempt)) {
            running.pid = Some(pid);
            if running.cancelled {
                process::signal_group(pid, libc::SIGTERM);
            }
        }
    }
    process::record(&config.data_dir.join("pids"), &pid_name(attempt), pid);
    agent.report(attempt, "RUNNING", "", String::new());
    Ok(Some((child, produced)))
}

/// Waits for the process, turning a cancel into SIGTERM, then SIGKILL after the grace period.
async fn supervise(
    agent: &Arc<Agent>,
    attempt: &AttemptRef,
    name: &str,
    dir: &Path,
    (mut child, produced): (tokio::process::Child, Vec<PartitionRef>),
    cancel: &Notify,
) -> Outcome {
    let pid = child.id().unwrap_or(0);
    let status = tokio::select! {
        status = child.wait() => status,
        _ = cancel.notified() => {
            process::signal_group(pid, libc::SIGTERM);
            match tokio::time::timeout(agent.config.cancel_grace, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    process::signal_group(pid, libc::SIGKILL);
                    child.wait().await
                }
            }
        }
    };
    // Whatever the task left behind in its group dies with it.
    process::signal_group(pid, libc::SIGKILL);
    match status {
        Ok(s) if s.success() => Outcome::Finished(produced),
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            let how = match (s.code(), s.signal()) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                _ => "unknown exit".to_owned(),
            };
            let tail = process::tail(&dir.join("stderr.log"), 2048);
            Outcome::Failed(Early {
                class: "recoverable",
                message: if tail.is_empty() {
                    format!("task {name} attempt {} failed: {how}", attempt.attempt)
                } else {
                    format!(
                        "task {name} attempt {} failed: {how}; stderr: {tail}",
                        attempt.attempt
                    )
                },
                missing: None,
            })
        }
        Err(e) => Outcome::Failed(Early {
            class: "recoverable",
            message: format!("cannot wait for task {name}: {e}"),
            missing: None,
        }),
    }
}

/// Copies one subpartition from another executor into `to`.
async fn fetch(
    agent: &Arc<Agent>,
    location: &str,
    partition: &PartitionRef,
    subpartition: u32,
    to: &Path,
) -> Result<(), String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{location}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(agent.config.rpc_timeout.max(Duration::from_secs(30)));
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    let mut client = TaskExecutorServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let mut stream = client
        .fetch_partition(FetchPartitionRequest {
            partition: Some(partition.clone()),
            subpartition,
        })
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    let mut file = tokio::fs::File::create(to)
        .await
        .map_err(|e| e.to_string())?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|s| s.message().to_owned())?;
        file.write_all(&chunk.data)
            .await
            .map_err(|e| e.to_string())?;
    }
    file.flush().await.map_err(|e| e.to_string())?;
    Ok(())
}
