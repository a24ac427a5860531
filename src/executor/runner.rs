//! The process runner: takes one attempt from its inputs to its exit. It fetches the inputs,
//! lays out the outputs, writes the descriptor, starts the task process, watches it (turning a
//! cancel into SIGTERM, then SIGKILL) and reports how it ended.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio_stream::StreamExt;
use tracing::{debug, info, warn};

use super::descriptor::{Descriptor, InputDescriptor, OutputDescriptor};
use super::{Agent, checkpoints, control, key, logs, partitions, process, retention};
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

/// Runs attempt `r` to its end. `restore_dir`, when given, is the task's state in the
/// checkpoint it resumes from (`JM_RESTORE_DIR`).
pub(crate) async fn run_attempt(
    agent: Arc<Agent>,
    r: SubmitTaskRequest,
    cancel: Arc<Notify>,
    restore_dir: Option<PathBuf>,
) {
    let attempt = r.attempt.clone().unwrap_or_default();
    let name = format!("{}#{}", attempt.vertex, attempt.subtask);
    let dir = logs::attempt_dir(&agent.config.data_dir, &attempt);
    prune_attempts(&agent, &attempt);
    let outcome = tokio::select! {
        result = prepare_and_run(&agent, &r, &attempt, &name, &dir, restore_dir.as_deref()) => result,
        _ = cancel.notified() => Ok(None),
    };
    // A cancel may also have arrived while the process ran.
    let result = match outcome {
        Ok(Some(child)) => supervise(&agent, &attempt, &name, &dir, child, &cancel).await,
        Ok(None) => Outcome::Canceled,
        Err(early) => Outcome::Failed(early),
    };
    let (cancelled, job_ended) = {
        let mut state = agent.lock();
        let running = state.attempts.remove(&key(&attempt));
        // The attempt ended: its control socket goes.
        if let Some(channel) = running.as_ref().and_then(|r| r.channel.as_ref()) {
            channel.close();
        }
        let cancelled = running.is_some_and(|r| r.cancelled);
        // Named in heartbeats (and a registration) until the final report below is answered.
        let last = match &result {
            _ if cancelled => AttemptState::Canceled,
            Outcome::Canceled => AttemptState::Canceled,
            Outcome::Finished(_) => AttemptState::Finished,
            Outcome::Failed(_) => AttemptState::Failed,
        };
        state
            .reporting
            .insert(key(&attempt), (attempt.clone(), last));
        let ended = state.ended_jobs.contains(&attempt.job_id);
        if let Outcome::Finished(ref outputs) = result
            && !cancelled
            && !ended
        {
            state.partitions.extend(outputs.iter().cloned());
        }
        // The job ended while this attempt still ran: its folders go with its last attempt.
        let last = ended && !state.attempts.keys().any(|k| k.0 == attempt.job_id);
        (cancelled, last)
    };
    let _ = std::fs::remove_file(agent.config.data_dir.join("pids").join(pid_name(&attempt)));
    if job_ended {
        retention::remove_job(
            &agent.config.data_dir,
            &attempt.job_id,
            agent.config.retain_ended_jobs,
        );
    }
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
                checkpoint: None,
            });
        }
    }
}

/// Removes the folders of this task's older attempts beyond `executor.retain-attempts`
/// (never one of an attempt that still runs here).
fn prune_attempts(agent: &Agent, attempt: &AttemptRef) {
    let running: Vec<u32> = {
        let state = agent.lock();
        state
            .attempts
            .keys()
            .filter(|k| k.0 == attempt.job_id && k.1 == attempt.vertex && k.2 == attempt.subtask)
            .map(|k| k.3)
            .collect()
    };
    let stale = retention::stale_attempt_dirs(
        &agent.config.data_dir.join("attempts"),
        &attempt.job_id,
        &attempt.vertex,
        attempt.subtask,
        attempt.attempt,
        agent.config.retain_attempts,
        |n| running.contains(&n),
    );
    if !stale.is_empty() {
        debug!(job = %attempt.job_id, task = %format!("{}#{}", attempt.vertex, attempt.subtask),
               attempt = attempt.attempt, removed = stale.len(), "removing older attempt folders");
    }
    retention::remove_in_background(stale, "older attempt");
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
    restore_dir: Option<&Path>,
) -> Result<Option<(process::Task, Vec<PartitionRef>)>, Early> {
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
    // The control channel exists before the task starts, so it may connect at once.
    let mut channel =
        control::Control::open_as(dir, &config.data_dir, name, user).map_err(|e| Early {
            class: FailureClass::Recoverable,
            message: e.to_string(),
            missing: None,
        })?;
    // The task's own copy of its state: a discard of the checkpoint (a newer one completed)
    // cannot pull it away while the task reads it.
    let restore = match restore_dir {
        Some(from) => {
            let to = dir.join("restore");
            let owner = user.cloned();
            let from = from.to_owned();
            let copy_to = to.clone();
            let copied = tokio::task::spawn_blocking(move || {
                let _ = std::fs::remove_dir_all(&copy_to);
                checkpoints::copy_tree(&from, &copy_to, owner.as_ref())
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            copied.map_err(|e| {
                io_err("cannot copy the state of the checkpoint to restore from", e)
            })?;
            Some(to)
        }
        None => None,
    };
    env.extend(channel.env(restore.as_deref()));
    let channel = Arc::new(channel);
    match agent.lock().attempts.get_mut(&key(attempt)) {
        Some(running) => running.channel = Some(channel.clone()),
        // Cancelled meanwhile: the socket goes with `channel`.
        None => return Ok(None),
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| dir.to_path_buf());
    let task = process::spawn(
        &config.shim,
        &r.command,
        &env,
        &cwd,
        &dir.join("stdout.log"),
        &dir.join("stderr.log"),
        &dir.join("launch.json"),
        config.cancel_grace,
        config.task_nice,
        user,
    )
    .await
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
    {
        let mut state = agent.lock();
        if let Some(running) = state.attempts.get_mut(&key(attempt)) {
            running.control = Some(task.control.clone());
            if running.killed {
                task.control.kill();
            } else if running.cancelled {
                task.control.terminate();
            }
        }
    }
    process::record(
        &config.data_dir.join("pids"),
        &pid_name(attempt),
        task.control.shim,
    );
    agent.report(attempt, AttemptState::Running);
    Ok(Some((task, produced)))
}

/// Waits for the shim, turning a cancel into SIGTERM, then SIGKILL after the grace period (a
/// kill, [`Agent::kill_all`], into SIGKILL at once). Whatever the task left behind is stopped
/// by the shim before it exits.
async fn supervise(
    agent: &Arc<Agent>,
    attempt: &AttemptRef,
    name: &str,
    dir: &Path,
    (task, produced): (process::Task, Vec<PartitionRef>),
    cancel: &Notify,
) -> Outcome {
    let process::Task { mut child, control } = task;
    let status = tokio::select! {
        status = child.wait() => status,
        _ = cancel.notified() => {
            let killed = agent.lock().attempts.get(&key(attempt)).is_some_and(|r| r.killed);
            if killed {
                control.kill();
                child.wait().await
            } else {
                control.terminate();
                match tokio::time::timeout(agent.config.cancel_grace, child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        control.kill();
                        child.wait().await
                    }
                }
            }
        }
    };
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
