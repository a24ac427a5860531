//! The fake's `TaskExecutorService`: one server for any number of simulated executors.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::executor::Submitted;
use super::{Executor, Observer, Options, Reports, Rpc, RunningReport};
use crate::api::v1::task_executor_service_server::{
    TaskExecutorService, TaskExecutorServiceServer,
};
use crate::api::v1::{
    AttemptRef, CancelTaskRequest, CancelTaskResponse, CancelTasksRequest, CancelTasksResponse,
    CheckpointAnswer, DiscardCheckpointsRequest, DiscardCheckpointsResponse, FetchPartitionRequest,
    LogChunk, NotifyCheckpointRequest, NotifyCheckpointResponse, PartitionChunk,
    ReadTaskLogRequest, ReleaseJobRequest, ReleaseJobResponse, ReleasePartitionsRequest,
    ReleasePartitionsResponse, SubmitTaskRequest, SubmitTaskResponse, SubmitTasksRequest,
    SubmitTasksResponse, TaskOutcome, TaskStateUpdate, TriggerCheckpointRequest,
    TriggerCheckpointResponse,
};
use crate::core::AttemptState;

/// The executors one fake `TaskExecutorService` serves, by the local port their calls arrive
/// on, with the options, run-time faults and observer they share.
pub struct Fleet {
    options: Options,
    observer: Arc<dyn Observer>,
    executors: RwLock<HashMap<u16, Arc<Executor>>>,
    auto_confirm: AtomicBool,
    submit_delay_ms: AtomicU64,
    lose_submit_answers: AtomicU32,
}

impl Fleet {
    pub fn new(options: Options, observer: Arc<dyn Observer>) -> Arc<Fleet> {
        Arc::new(Fleet {
            options,
            observer,
            executors: RwLock::new(HashMap::new()),
            auto_confirm: AtomicBool::new(true),
            submit_delay_ms: AtomicU64::new(0),
            lose_submit_answers: AtomicU32::new(0),
        })
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Serves `exec` for the calls that arrive on local port `port` (its listener's).
    pub fn add(&self, port: u16, exec: Arc<Executor>) {
        self.executors
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port, exec);
    }

    /// Stops serving `exec`: its calls are refused NOT_FOUND from now on.
    pub fn remove(&self, exec: &Arc<Executor>) {
        self.executors
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, x| !Arc::ptr_eq(x, exec));
    }

    /// The gRPC service to add to a `tonic` server whose connections come from the executors'
    /// listeners.
    pub fn service(self: &Arc<Self>) -> TaskExecutorServiceServer<FakeService> {
        TaskExecutorServiceServer::new(FakeService(self.clone()))
            .max_decoding_message_size(self.options.max_message)
            .max_encoding_message_size(self.options.max_message)
    }

    /// With `false`, cancels are recorded and held until [`Executor::take_unconfirmed`]
    /// (default `true`: confirmed at once).
    pub fn set_auto_confirm_cancels(&self, on: bool) {
        self.auto_confirm.store(on, Ordering::SeqCst);
    }

    /// Each SubmitTask or SubmitTasks from now on takes `delay` to handle (it is observed, and
    /// the attempt held, after the delay), as on a busy executor.
    pub fn set_submit_delay(&self, delay: Duration) {
        self.submit_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// The next `n` SubmitTasks calls are applied (the attempts start) but answered
    /// UNAVAILABLE, as when the answer is lost on the way back.
    pub fn lose_submit_answers(&self, n: u32) {
        self.lose_submit_answers.store(n, Ordering::SeqCst);
    }

    fn exec_for<T>(&self, request: &Request<T>) -> Result<Arc<Executor>, Status> {
        let port = request
            .local_addr()
            .map(|a| a.port())
            .ok_or_else(|| Status::internal("no local address"))?;
        self.executors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&port)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no fake executor on port {port}")))
    }

    async fn submit_delay(&self) {
        let ms = self.submit_delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// One task of a SubmitTask(s) call that arrived at `at`; adds the reports to send with
    /// the call's others to `reports`. Refused when the attempt is missing.
    fn submit_one(
        self: &Arc<Self>,
        exec: &Arc<Executor>,
        task: SubmitTaskRequest,
        at: Instant,
        reports: &mut Vec<(AttemptRef, AttemptState)>,
    ) -> Result<(), Status> {
        let attempt = task
            .attempt
            .clone()
            .ok_or_else(|| Status::invalid_argument("attempt is missing"))?;
        match exec.submit(&self.options, &attempt) {
            Submitted::AfterCancel => {
                self.observer.submit_after_cancel(exec, &attempt);
                reports.push((attempt, AttemptState::Canceled));
            }
            Submitted::Held { seq } => {
                self.observer.submitted(exec, &task, at);
                match self.options.running {
                    RunningReport::AtOnce => reports.push((attempt, AttemptState::Running)),
                    RunningReport::AfterHeartbeat => {
                        let (fleet, exec) = (self.clone(), exec.clone());
                        tokio::spawn(async move {
                            exec.nudge();
                            if exec.heartbeat_seen(seq).await && exec.holds(&attempt) {
                                fleet.report(exec, attempt, AttemptState::Running).await;
                            }
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// One attempt of a CancelTask(s) call that arrived at `at`; whether to report it CANCELED.
    fn cancel_one(&self, exec: &Executor, attempt: &AttemptRef, epoch: u64, at: Instant) -> bool {
        self.observer.cancel_received(exec, attempt, epoch, at);
        exec.cancel(
            &self.options,
            self.auto_confirm.load(Ordering::SeqCst),
            attempt,
        )
    }

    /// Sends the reports a call led to: one UpdateTaskStates call for a batch call with
    /// [`Reports::Batched`], else one UpdateTaskState each.
    fn send_reports(
        self: &Arc<Self>,
        exec: &Arc<Executor>,
        reports: Vec<(AttemptRef, AttemptState)>,
        batch_call: bool,
    ) {
        if batch_call && self.options.reports == Reports::Batched {
            if !reports.is_empty() {
                tokio::spawn(self.clone().report_batch(exec.clone(), reports));
            }
        } else {
            for (attempt, state) in reports {
                tokio::spawn(self.clone().report(exec.clone(), attempt, state));
            }
        }
    }

    fn answered(&self, exec: &Executor, state: AttemptState, accepted: bool) {
        if accepted && state == AttemptState::Running {
            exec.count_accepted_running();
        }
        self.observer.report_answered(exec, state, accepted);
    }

    /// One report with one UpdateTaskState call.
    async fn report(
        self: Arc<Self>,
        exec: Arc<Executor>,
        attempt: AttemptRef,
        state: AttemptState,
    ) {
        let sending = [(attempt, state)];
        self.observer
            .reports_sending(&exec, &sending, false, Instant::now());
        let [(attempt, state)] = sending;
        let accepted = exec.update(&attempt, state.name(), "", "").await.is_ok();
        self.answered(&exec, state, accepted);
    }

    /// The reports of a batch call with one UpdateTaskStates call, in the batch's order.
    async fn report_batch(
        self: Arc<Self>,
        exec: Arc<Executor>,
        reports: Vec<(AttemptRef, AttemptState)>,
    ) {
        self.observer
            .reports_sending(&exec, &reports, true, Instant::now());
        let states: Vec<AttemptState> = reports.iter().map(|(_, state)| *state).collect();
        let updates = reports
            .into_iter()
            .map(|(attempt, state)| TaskStateUpdate {
                attempt: Some(attempt),
                state: state.name().to_owned(),
                ..TaskStateUpdate::default()
            })
            .collect();
        let outcomes = exec
            .update_batch(exec.id(), &exec.session(), updates)
            .await
            .unwrap_or_default();
        for (i, state) in states.into_iter().enumerate() {
            let accepted = outcomes.get(i).is_some_and(|o| o.accepted);
            self.answered(&exec, state, accepted);
        }
    }
}

/// The fake `TaskExecutorService` of a [`Fleet`] (see [`Fleet::service`]).
pub struct FakeService(Arc<Fleet>);

type ChunkStream = Pin<Box<dyn Stream<Item = Result<PartitionChunk, Status>> + Send>>;
type LogStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;

#[tonic::async_trait]
impl TaskExecutorService for FakeService {
    async fn submit_task(
        &self,
        request: Request<SubmitTaskRequest>,
    ) -> Result<Response<SubmitTaskResponse>, Status> {
        let fleet = &self.0;
        let exec = fleet.exec_for(&request)?;
        fleet.submit_delay().await;
        let at = Instant::now();
        fleet.observer.rpc(&exec, Rpc::SubmitTask);
        let mut reports = Vec::new();
        fleet.submit_one(&exec, request.into_inner(), at, &mut reports)?;
        fleet.send_reports(&exec, reports, false);
        Ok(Response::new(SubmitTaskResponse {}))
    }

    async fn submit_tasks(
        &self,
        request: Request<SubmitTasksRequest>,
    ) -> Result<Response<SubmitTasksResponse>, Status> {
        let fleet = &self.0;
        let exec = fleet.exec_for(&request)?;
        fleet.submit_delay().await;
        // Every task of the batch arrived with it.
        let at = Instant::now();
        let batch = request.into_inner();
        fleet
            .observer
            .rpc(&exec, Rpc::SubmitTasks(batch.tasks.len()));
        let tasks = if fleet.options.unpack_batches {
            crate::api::batch::unbatch(batch)
        } else {
            let epoch = batch.epoch;
            batch
                .tasks
                .into_iter()
                .map(|task| Ok(SubmitTaskRequest { epoch, ..task }))
                .collect()
        };
        let mut reports = Vec::new();
        let outcomes = tasks
            .into_iter()
            .map(|task| {
                match task.and_then(|task| fleet.submit_one(&exec, task, at, &mut reports)) {
                    Ok(()) => TaskOutcome {
                        accepted: true,
                        ..TaskOutcome::default()
                    },
                    // Both refusals (a malformed entry, a missing attempt) are INVALID_ARGUMENT.
                    Err(status) => TaskOutcome {
                        accepted: false,
                        code: "INVALID_ARGUMENT".into(),
                        message: status.message().to_owned(),
                    },
                }
            })
            .collect();
        fleet.send_reports(&exec, reports, true);
        let lost = fleet
            .lose_submit_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lost {
            return Err(Status::unavailable("the answer was lost (injected)"));
        }
        Ok(Response::new(SubmitTasksResponse { outcomes }))
    }

    async fn cancel_task(
        &self,
        request: Request<CancelTaskRequest>,
    ) -> Result<Response<CancelTaskResponse>, Status> {
        let fleet = &self.0;
        let at = Instant::now();
        let exec = fleet.exec_for(&request)?;
        let r = request.into_inner();
        let attempt = r
            .attempt
            .ok_or_else(|| Status::invalid_argument("attempt is missing"))?;
        fleet.observer.rpc(&exec, Rpc::CancelTask);
        if fleet.cancel_one(&exec, &attempt, r.epoch, at) {
            fleet.send_reports(&exec, vec![(attempt, AttemptState::Canceled)], false);
        }
        Ok(Response::new(CancelTaskResponse {}))
    }

    async fn cancel_tasks(
        &self,
        request: Request<CancelTasksRequest>,
    ) -> Result<Response<CancelTasksResponse>, Status> {
        let fleet = &self.0;
        let at = Instant::now();
        let exec = fleet.exec_for(&request)?;
        let r = request.into_inner();
        fleet
            .observer
            .rpc(&exec, Rpc::CancelTasks(r.attempts.len()));
        let reports = r
            .attempts
            .into_iter()
            .filter(|attempt| fleet.cancel_one(&exec, attempt, r.epoch, at))
            .map(|attempt| (attempt, AttemptState::Canceled))
            .collect();
        fleet.send_reports(&exec, reports, true);
        Ok(Response::new(CancelTasksResponse {}))
    }

    async fn release_partitions(
        &self,
        request: Request<ReleasePartitionsRequest>,
    ) -> Result<Response<ReleasePartitionsResponse>, Status> {
        // The fake holds no partitions: a release always succeeds, also for an executor that
        // is no longer served.
        if let Ok(exec) = self.0.exec_for(&request) {
            self.0.observer.released(&exec, request.get_ref());
        }
        Ok(Response::new(ReleasePartitionsResponse {}))
    }

    async fn release_job(
        &self,
        _request: Request<ReleaseJobRequest>,
    ) -> Result<Response<ReleaseJobResponse>, Status> {
        // The fake keeps no folders: an ended job leaves nothing to remove.
        Ok(Response::new(ReleaseJobResponse {}))
    }

    async fn trigger_checkpoint(
        &self,
        request: Request<TriggerCheckpointRequest>,
    ) -> Result<Response<TriggerCheckpointResponse>, Status> {
        let fleet = &self.0;
        let at = Instant::now();
        let exec = fleet.exec_for(&request)?;
        let r = request.into_inner();
        fleet
            .observer
            .checkpoint_triggered(&exec, r.checkpoint_id, r.attempts.len(), at);
        let updates: Vec<TaskStateUpdate> = r
            .attempts
            .into_iter()
            .map(|attempt| {
                let held = exec.holds(&attempt);
                TaskStateUpdate {
                    attempt: Some(attempt),
                    checkpoint: Some(CheckpointAnswer {
                        checkpoint_id: r.checkpoint_id,
                        acknowledged: held,
                        size_bytes: 0,
                        decline_reason: if held {
                            String::new()
                        } else {
                            "the attempt does not run on this executor".into()
                        },
                        task_not_running: !held,
                    }),
                    ..TaskStateUpdate::default()
                }
            })
            .collect();
        if !updates.is_empty() {
            tokio::spawn(async move {
                let _ = exec.update_batch(exec.id(), &exec.session(), updates).await;
            });
        }
        Ok(Response::new(TriggerCheckpointResponse {}))
    }

    async fn notify_checkpoint(
        &self,
        request: Request<NotifyCheckpointRequest>,
    ) -> Result<Response<NotifyCheckpointResponse>, Status> {
        let fleet = &self.0;
        let at = Instant::now();
        let exec = fleet.exec_for(&request)?;
        let r = request.get_ref();
        fleet.observer.checkpoint_notified(
            &exec,
            r.checkpoint_id,
            r.complete,
            r.attempts.len(),
            at,
        );
        Ok(Response::new(NotifyCheckpointResponse {}))
    }

    async fn discard_checkpoints(
        &self,
        _request: Request<DiscardCheckpointsRequest>,
    ) -> Result<Response<DiscardCheckpointsResponse>, Status> {
        // The fake writes no checkpoint data.
        Ok(Response::new(DiscardCheckpointsResponse {}))
    }

    type FetchPartitionStream = ChunkStream;

    async fn fetch_partition(
        &self,
        _request: Request<FetchPartitionRequest>,
    ) -> Result<Response<Self::FetchPartitionStream>, Status> {
        Err(Status::unimplemented("the fake executor hosts no data"))
    }

    type ReadTaskLogStream = LogStream;

    async fn read_task_log(
        &self,
        _request: Request<ReadTaskLogRequest>,
    ) -> Result<Response<Self::ReadTaskLogStream>, Status> {
        Err(Status::unimplemented(
            "the fake executor runs no processes, so it keeps no task logs",
        ))
    }
}
