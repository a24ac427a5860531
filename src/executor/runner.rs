//! The process runner: takes one attempt from its inputs to its exit. It fetches the inputs,
//! lays out the outputs, writes the descriptor, starts the task process, watches it (turning a
//! cancel into SIGTERM, then SIGKILL) and reports how it ended.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio_stream::StreamExt;
use tracing::{info, warn};

use super::descriptor::{Descriptor, InputDescriptor, OutputDescriptor};
use super::{Agent, key, logs, partitions, process};
use crate::api::PERSISTENT_LOCATION;
use crate::api::v1::task_executor_service_client::TaskExecutorServiceClient;
use crate::api::v1::{
    AttemptRef, FetchPartitionRequest, PartitionRef, SubmitTaskRequest, TaskStateUpdate,
};
use crate::core::{AttemptState, Exchange, FailureClass};
use crate::log_text::Escaped;

/// A failure before the process started.
struct Early {
    class: FailureClass,
    message: String,
    missing: Option<PartitionRef>,
}

pub(crate) async fn run_attempt(agent: Arc<Agent>, r: SubmitTaskRequest, cancel: Arc<Notify>) {
    let attempt = r.attempt.clone().unwrap_or_default();
    let name = format!("{}#{}", attempt.vertex, attempt.subtask);
    let dir = logs::attempt_dir(&agent.config.data_dir, &attempt);
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
        _ if cancelled => agent.report(&attempt, AttemptState::Canceled),
        Outcome::Canceled => agent.report(&attempt, AttemptState::Canceled),
        Outcome::Finished(_) => {
            info!(job = %attempt.job_id, task = %name, attempt = attempt.attempt, "task finished");
            agent.report(&attempt, AttemptState::Finished)
        }
        Outcome::Failed(early) => {
            warn!(job = %attempt.job_id, task = %name, attempt = attempt.attempt, message = %Escaped(&early.message), "task failed");
            let _ = agent.reports.send(TaskStateUpdate {
                attempt: Some(attempt.clone()),
                state: AttemptState::Failed.name().to_owned(),
                failure_class: early.class.name().to_owned(),
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
        class: FailureClass::Recoverable,
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
    let user = agent.task_user.as_ref();
    // What the task writes belongs to its user; the folders around stay the executor's.
    let hand_over = |path: &Path, mode: u32| -> Result<(), Early> {
        match user {
            Some(u) => u.hand_over(path, mode).map_err(|e| {
                io_err(
                    &format!("cannot give {} to user {}", path.display(), u.name),
                    e,
                )
            }),
            None => Ok(()),
        }
    };
    hand_over(&dir.join("state"), 0o700)?;

    let mut inputs = Vec::new();
    for gate in &r.inputs {
        let mut files = Vec::new();
        let mut producers = Vec::new();
        for p in &gate.partitions {
            producers.push(p.executor.clone());
            if gate.exchange == Exchange::Pipelined.name() {
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
                class: FailureClass::PartitionLost,
                message,
                missing: Some(pref.clone()),
            };
            let file = if p.location == PERSISTENT_LOCATION || p.location == config.advertise {
                let root = if p.location == PERSISTENT_LOCATION {
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
                fetch(
                    agent,
                    &p.location,
                    &p.executor,
                    &pref,
                    attempt.subtask,
                    &path,
                )
                .await
                .map_err(|e| {
                    missing(format!(
                        "cannot fetch input {producer} from {}: {e}",
                        p.location
                    ))
                })?;
                path
            };
            files.push(file.display().to_string());
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
    for gate in &r.outputs {
        let mut files = Vec::new();
        if gate.exchange != Exchange::Pipelined.name() {
            let root: &PathBuf = if gate.exchange == Exchange::Persistent.name() {
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
                class: FailureClass::NonRecoverable,
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
                hand_over(&f, 0o644)?;
                files.push(f.display().to_string());
            }
            if gate.exchange == Exchange::Blocking.name() {
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

    let descriptor = Descriptor {
        job_id: &attempt.job_id,
        job_name: &r.job_name,
        vertex: &attempt.vertex,
        subtask: attempt.subtask,
        parallelism: r.parallelism,
        attempt: attempt.attempt,
        inputs,
        outputs,
        state_dir: dir.join("state").display().to_string(),
    };
    let descriptor_path = dir.join("descriptor.json");
    tokio::fs::write(&descriptor_path, descriptor.to_json())
        .await
        .map_err(|e| io_err("cannot write the descriptor", e))?;
    hand_over(&descriptor_path, 0o600)?;
    let mut env = descriptor.env(&descriptor_path, &config.id, dir);
    env.extend(user.map(|u| u.env()).into_iter().flatten());
    let cwd = std::env::current_dir().unwrap_or_else(|_| dir.to_path_buf());
    let child = process::spawn(
        &r.command,
        &env,
        &cwd,
        &dir.join("stdout.log"),
        &dir.join("stderr.log"),
        user,
    )
    .map_err(|e| Early {
        // A program that is missing or not executable will not start on a retry: fail the
        // job with the OS error rather than restart it without end.
        class: if e.is_permanent() {
            FailureClass::NonRecoverable
        } else {
            FailureClass::Recoverable
        },
        message: format!("cannot start {:?}: {e}", r.command[0]),
        missing: None,
    })?;
    let pid = child.id().unwrap_or(0);
    {
        let mut state = agent.lock();
        if let Some(running) = state.attempts.get_mut(&key(attempt)) {
            running.pid = Some(pid);
            if running.cancelled {
                process::signal_group(pid, Signal::SIGTERM);
            }
        }
    }
    process::record(&config.data_dir.join("pids"), &pid_name(attempt), pid);
    agent.report(attempt, AttemptState::Running);
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
            process::signal_group(pid, Signal::SIGTERM);
            match tokio::time::timeout(agent.config.cancel_grace, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    process::signal_group(pid, Signal::SIGKILL);
                    child.wait().await
                }
            }
        }
    };
    // Whatever the task left behind in its group dies with it.
    process::signal_group(pid, Signal::SIGKILL);
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
                class: FailureClass::Recoverable,
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
            class: FailureClass::Recoverable,
            message: format!("cannot wait for task {name}: {e}"),
            missing: None,
        }),
    }
}

/// Copies one subpartition from another executor into `to`.
async fn fetch(
    agent: &Arc<Agent>,
    location: &str,
    host: &str,
    partition: &PartitionRef,
    subpartition: u32,
    to: &Path,
) -> Result<(), String> {
    let scheme = if agent.tls.is_some() { "https" } else { "http" };
    let endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{location}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(agent.config.rpc_timeout.max(Duration::from_secs(30)));
    // Over TLS only the executor that hosts the partition may serve it (any executor if the
    // JobMaster did not name it).
    let expect = if host.is_empty() {
        crate::security::connector::Expect::AnyExecutor
    } else {
        crate::security::connector::Expect::Executor(host.to_owned())
    };
    let channel = crate::security::connector::connect(endpoint, agent.tls.clone(), expect)
        .await
        .map_err(|e| crate::security::connector::describe(&e))?;
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
