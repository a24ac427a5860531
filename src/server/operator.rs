//! `JobMasterService`: the operators' API.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, WatchStream as WatchValues};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request as GrpcRequest, Response, Status};

use super::coordinator::{Coordinator, Request};
use super::read_model::{Query, render};
use super::{ApiError, Shared, parse_job_id};
use crate::api::reason::NamedReason;
use crate::api::v1::job_master_service_server::JobMasterService;
use crate::api::v1::{
    CancelJobRequest, CancelJobResponse, ExceptionEntryInfo, ExecutorBlastRadius, ExecutorInfo,
    ExplainFailoverRequest, ExplainFailoverResponse, FailureInfo, GetBlastRadiusRequest,
    GetBlastRadiusResponse, GetExceptionHistoryRequest, GetExceptionHistoryResponse, GetJobRequest,
    GetJobResponse, InjectFailureRequest, InjectFailureResponse, ListCheckpointsRequest,
    ListCheckpointsResponse, ListExecutorsRequest, ListExecutorsResponse, ListJobsRequest,
    ListJobsResponse, ReleaseExecutorRequest, ReleaseExecutorResponse, RestartReasonInfo,
    SubmitJobRequest, SubmitJobResponse, TriggerJobCheckpointRequest, TriggerJobCheckpointResponse,
    WatchEvent, WatchEventsRequest, explain_failover_request, inject_failure_request,
};
use crate::core::history::FailureRecord;
use crate::core::{
    BlastRadius, Event, ExecutorId, FailureClass, FailureDomain, JobId, JobSpec, RestartScope,
    RestartSet, SpecFormat, SpecLimits, blast_radius,
};

pub(crate) struct Operator {
    shared: Arc<Shared>,
}

impl Operator {
    pub(crate) fn new(shared: Arc<Shared>) -> Operator {
        Operator { shared }
    }
}

fn known_job(c: &Coordinator, job: JobId) -> Result<(), ApiError> {
    if c.core.job_state(job).is_some() {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("job {job} does not exist")))
    }
}

fn restart_set_info(c: &Coordinator, job: JobId, set: &RestartSet) -> ExplainFailoverResponse {
    let Some(graph) = c.core.graph(job) else {
        return ExplainFailoverResponse::default();
    };
    let Some(regions) = c.core.regions(job) else {
        return ExplainFailoverResponse::default();
    };
    let name = |t| graph.task_name(t).to_string();
    ExplainFailoverResponse {
        strategy: set.strategy.name().to_owned(),
        restart: set.tasks.iter().map(|&t| name(t)).collect(),
        reasons: set
            .entries
            .iter()
            .map(|e| {
                let (region, tasks) = match e.scope {
                    RestartScope::Region(r) => (
                        Some(r.0),
                        regions.tasks(r).iter().map(|&t| name(t)).collect(),
                    ),
                    RestartScope::Task(t) => (None, vec![name(t)]),
                };
                let mut info = RestartReasonInfo {
                    region,
                    tasks,
                    ..RestartReasonInfo::default()
                };
                NamedReason::new(graph, e.reason).to_wire(&mut info);
                info
            })
            .collect(),
    }
}

/// The registered executors in failure domain `text` (`key=value`): INVALID_ARGUMENT for a
/// malformed domain, NOT_FOUND when no executor carries that label.
fn domain_executors(c: &Coordinator, text: &str) -> Result<Vec<ExecutorId>, ApiError> {
    let domain: FailureDomain = text
        .parse()
        .map_err(|e| ApiError::InvalidArgument(format!("domain: {e}")))?;
    let mut executors: Vec<ExecutorId> = c
        .core
        .executors()
        .map(|(id, ..)| id)
        .filter(|id| {
            c.shared
                .executors
                .get(*id)
                .is_some_and(|s| domain.contains(&s.labels))
        })
        .cloned()
        .collect();
    executors.sort();
    if executors.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no registered executor is labelled {domain} (see jmctl executors)"
        )));
    }
    Ok(executors)
}

fn failure_info(c: &Coordinator, f: &FailureRecord) -> FailureInfo {
    let task = f
        .attempt
        .and_then(|a| c.core.graph(a.job).map(|g| g.task_name(a.task).to_string()))
        .unwrap_or_default();
    FailureInfo {
        time_ms: f.time,
        task,
        attempt: f.attempt.map_or(0, |a| a.attempt),
        executor: f.executor.as_ref().map(|e| e.0.clone()).unwrap_or_default(),
        class: f.class.name().to_owned(),
        message: f.message.clone(),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl JobMasterService for Operator {
    async fn submit_job(
        &self,
        request: GrpcRequest<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        let r = request.into_inner();
        let format = match r.format.to_ascii_lowercase().as_str() {
            "toml" => SpecFormat::Toml,
            "json" => SpecFormat::Json,
            "" => SpecFormat::detect(None, &r.spec),
            other => {
                return Err(ApiError::InvalidArgument(format!(
                    "format {other:?} is unknown; expected toml, json or empty"
                ))
                .into());
            }
        };
        let limits = SpecLimits {
            max_parallelism: self.shared.settings.spec.max_parallelism,
        };
        let spec = JobSpec::parse_with_limits(&r.spec, format, limits).map_err(ApiError::from)?;
        let job = self
            .shared
            .ask(|reply| Request::Submit { spec, reply })
            .await?;
        Ok(Response::new(SubmitJobResponse {
            job_id: job.to_string(),
        }))
    }

    async fn cancel_job(
        &self,
        request: GrpcRequest<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        let job = parse_job_id(&request.into_inner().job_id)?;
        let state = self
            .shared
            .with(move |c| {
                c.feed(Event::CancelJob { job })?;
                Ok(c.core.job_state(job).map(|s| s.name()).unwrap_or_default())
            })
            .await?;
        Ok(Response::new(CancelJobResponse {
            state: state.to_owned(),
        }))
    }

    async fn list_jobs(
        &self,
        _request: GrpcRequest<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        // From the read model: never waits for the coordinator.
        let jobs = self
            .shared
            .read
            .jobs()
            .iter()
            .map(|s| render::summary(s))
            .collect();
        Ok(Response::new(ListJobsResponse { jobs }))
    }

    async fn get_job(
        &self,
        request: GrpcRequest<GetJobRequest>,
    ) -> Result<Response<GetJobResponse>, Status> {
        let r = request.into_inner();
        let job = parse_job_id(&r.job_id)?;
        let snapshot = self
            .shared
            .read
            .job(job)
            .ok_or_else(|| ApiError::NotFound(format!("job {job} does not exist")))?;
        let query = Query::from_request(&snapshot, &r)?;
        let now = self.shared.wall_ms();
        let answer = self
            .shared
            .read
            .render(move || render::get_job(&snapshot, &query, now))
            .await
            .ok_or(ApiError::ShuttingDown)?;
        Ok(Response::new(answer))
    }

    async fn list_executors(
        &self,
        _request: GrpcRequest<ListExecutorsRequest>,
    ) -> Result<Response<ListExecutorsResponse>, Status> {
        let executors = self
            .shared
            .with(|c| {
                let now = c.shared.now();
                Ok(c.core
                    .executors()
                    .map(|(id, slots, free, partitions)| {
                        let status = c.shared.executors.get(id);
                        let quarantine = c.core.quarantine(id);
                        ExecutorInfo {
                            id: id.0.clone(),
                            address: status
                                .as_ref()
                                .map(|s| s.address.clone())
                                .unwrap_or_default(),
                            slots,
                            free_slots: free,
                            heartbeat_age_ms: status
                                .as_ref()
                                .map_or(0, |s| s.last_heartbeat.elapsed().as_millis() as u64),
                            partitions: partitions as u32,
                            free_disk_bytes: status.as_ref().map_or(0, |s| s.free_disk),
                            quarantined: quarantine.is_some(),
                            quarantine_remaining_ms: quarantine
                                .map_or(0, |q| q.until.saturating_sub(now)),
                            quarantine_reason: quarantine
                                .map(|q| q.reason.clone())
                                .unwrap_or_default(),
                            labels: status
                                .as_ref()
                                .map(|s| s.labels.clone().into_iter().collect())
                                .unwrap_or_default(),
                        }
                    })
                    .collect())
            })
            .await?;
        Ok(Response::new(ListExecutorsResponse { executors }))
    }

    async fn explain_failover(
        &self,
        request: GrpcRequest<ExplainFailoverRequest>,
    ) -> Result<Response<ExplainFailoverResponse>, Status> {
        let r = request.into_inner();
        let job = parse_job_id(&r.job_id)?;
        let target = r.target.ok_or_else(|| {
            ApiError::InvalidArgument(
                "give a task (vertex#subtask), an executor or a domain (key=value)".into(),
            )
        })?;
        let response = self
            .shared
            .with(move |c| {
                known_job(c, job)?;
                let set = match target {
                    explain_failover_request::Target::Task(name) => {
                        let task = c
                            .core
                            .graph(job)
                            .and_then(|g| g.find_task(&name))
                            .ok_or_else(|| {
                                ApiError::NotFound(format!("job {job} has no task {name:?}"))
                            })?;
                        c.core.explain_task_failure(job, task)
                    }
                    explain_failover_request::Target::Executor(id) => c
                        .core
                        .explain_executor_loss(job, &ExecutorId(id.clone()))
                        .ok_or_else(|| {
                            ApiError::NotFound(format!("executor {id:?} is not registered"))
                        })
                        .map(Some)?,
                    explain_failover_request::Target::Domain(text) => {
                        let executors = domain_executors(c, &text)?;
                        c.core.explain_executors_loss(job, &executors)
                    }
                };
                Ok(set
                    .map(|s| restart_set_info(c, job, &s))
                    .unwrap_or_default())
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_blast_radius(
        &self,
        request: GrpcRequest<GetBlastRadiusRequest>,
    ) -> Result<Response<GetBlastRadiusResponse>, Status> {
        let job = parse_job_id(&request.into_inner().job_id)?;
        let response = self
            .shared
            .with(move |c| {
                known_job(c, job)?;
                let b = blast_radius(&c.core, job).unwrap_or_else(|| BlastRadius {
                    tasks: 0,
                    regions: 0,
                    executors: 0,
                    per_executor: Vec::new(),
                    expected_fraction: 0.0,
                });
                Ok(GetBlastRadiusResponse {
                    tasks: b.tasks as u32,
                    regions: b.regions as u32,
                    executors: b.executors as u32,
                    per_executor: b
                        .per_executor
                        .into_iter()
                        .map(|e| ExecutorBlastRadius {
                            executor: e.executor.0,
                            hosted_tasks: e.hosted as u32,
                            restart_tasks: e.restart_tasks as u32,
                            restart_regions: e.restart_regions as u32,
                        })
                        .collect(),
                    expected_fraction: b.expected_fraction,
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_exception_history(
        &self,
        request: GrpcRequest<GetExceptionHistoryRequest>,
    ) -> Result<Response<GetExceptionHistoryResponse>, Status> {
        let job = parse_job_id(&request.into_inner().job_id)?;
        let response = self
            .shared
            .with(move |c| {
                known_job(c, job)?;
                let Some(history) = c.core.exception_history(job) else {
                    return Ok(GetExceptionHistoryResponse::default());
                };
                let graph = c.core.graph(job);
                Ok(GetExceptionHistoryResponse {
                    entries: history
                        .entries()
                        .map(|e| ExceptionEntryInfo {
                            root: Some(failure_info(c, &e.root)),
                            concurrent: e.concurrent.iter().map(|f| failure_info(c, f)).collect(),
                            restarted: e
                                .restarted
                                .iter()
                                .filter_map(|&t| graph.map(|g| g.task_name(t).to_string()))
                                .collect(),
                            outcome: e.outcome.clone(),
                        })
                        .collect(),
                    truncated: history.truncated(),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    type WatchEventsStream = WatchStream;

    async fn watch_events(
        &self,
        request: GrpcRequest<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let filter = request.into_inner().job_id;
        if !filter.is_empty() {
            let job = parse_job_id(&filter)?;
            self.shared.with(move |c| known_job(c, job)).await?;
        }
        let stream =
            BroadcastStream::new(self.shared.events.subscribe()).filter_map(
                move |item| match item {
                    Ok(e) if filter.is_empty() || e.job_id.is_empty() || e.job_id == filter => {
                        Some(Ok(e))
                    }
                    Ok(_) => None,
                    Err(BroadcastStreamRecvError::Lagged(n)) => Some(Ok(WatchEvent {
                        kind: "lagged".into(),
                        detail: format!("{n} events missed"),
                        ..WatchEvent::default()
                    })),
                },
            );
        // Shutdown ends the stream with UNAVAILABLE, so graceful shutdown need not wait it out.
        let stop = WatchValues::new(self.shared.stopping.subscribe())
            .filter_map(|stopping| stopping.then(|| Err(ApiError::ShuttingDown.into())));
        Ok(Response::new(Box::pin(stream.merge(stop))))
    }

    async fn release_executor(
        &self,
        request: GrpcRequest<ReleaseExecutorRequest>,
    ) -> Result<Response<ReleaseExecutorResponse>, Status> {
        let id = request.into_inner().executor_id;
        if id.is_empty() {
            return Err(ApiError::InvalidArgument(
                "executor_id is empty: give the id `jmctl executors` lists".into(),
            )
            .into());
        }
        let executor = ExecutorId(id);
        self.shared
            .with(move |c| c.feed(Event::ReleaseExecutor { executor }))
            .await?;
        Ok(Response::new(ReleaseExecutorResponse {}))
    }

    async fn inject_failure(
        &self,
        request: GrpcRequest<InjectFailureRequest>,
    ) -> Result<Response<InjectFailureResponse>, Status> {
        let r = request.into_inner();
        let target = r.target.ok_or_else(|| {
            ApiError::InvalidArgument("give a task (vertex#subtask) or an executor".into())
        })?;
        match target {
            inject_failure_request::Target::Executor(id) => {
                let executor = ExecutorId(id.clone());
                if !self.shared.executors.contains_key(&executor) {
                    return Err(
                        ApiError::NotFound(format!("executor {id:?} is not registered")).into(),
                    );
                }
                self.shared
                    .tx
                    .send(Request::Lose {
                        executor,
                        session: None,
                        reason: "declared lost by an operator (InjectFailure)".into(),
                        evidence: std::time::Instant::now(),
                    })
                    .await
                    .map_err(|_| ApiError::ShuttingDown)?;
            }
            inject_failure_request::Target::Task(name) => {
                let job = parse_job_id(&r.job_id)?;
                let message = if r.message.is_empty() {
                    "failure injected by an operator".to_owned()
                } else {
                    r.message
                };
                let failure = Coordinator::failure(&r.class, &message)?;
                // A task fails; losing an executor or a partition is not something a task does
                // (inject `--executor` to lose an executor).
                if !matches!(
                    failure.class,
                    FailureClass::Recoverable | FailureClass::NonRecoverable
                ) {
                    return Err(ApiError::InvalidArgument(format!(
                        "class {:?} cannot be injected into a task; use recoverable or \
                         non-recoverable (or target an executor to lose it)",
                        r.class
                    ))
                    .into());
                }
                self.shared
                    .with(move |c| {
                        known_job(c, job)?;
                        let task = c
                            .core
                            .graph(job)
                            .and_then(|g| g.find_task(&name))
                            .ok_or_else(|| {
                                ApiError::NotFound(format!("job {job} has no task {name:?}"))
                            })?;
                        c.feed(Event::InjectFailure { job, task, failure })
                    })
                    .await?;
            }
        }
        Ok(Response::new(InjectFailureResponse {}))
    }

    type GetTaskLogStream = super::logs::LogChunks;

    async fn get_task_log(
        &self,
        request: GrpcRequest<crate::api::v1::GetTaskLogRequest>,
    ) -> Result<Response<Self::GetTaskLogStream>, Status> {
        let chunks = super::logs::get_task_log(&self.shared, request.into_inner()).await?;
        Ok(Response::new(chunks))
    }

    async fn list_checkpoints(
        &self,
        request: GrpcRequest<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        let job = parse_job_id(&request.into_inner().job_id)?;
        let list = self.shared.with(move |c| c.list_checkpoints(job)).await?;
        Ok(Response::new(list))
    }

    async fn trigger_checkpoint(
        &self,
        request: GrpcRequest<TriggerJobCheckpointRequest>,
    ) -> Result<Response<TriggerJobCheckpointResponse>, Status> {
        let job = parse_job_id(&request.into_inner().job_id)?;
        let checkpoint_id = self
            .shared
            .with(move |c| c.trigger_checkpoint_now(job))
            .await?;
        Ok(Response::new(TriggerJobCheckpointResponse {
            checkpoint_id,
        }))
    }

    async fn get_leader(
        &self,
        _request: GrpcRequest<crate::api::v1::GetLeaderRequest>,
    ) -> Result<Response<crate::api::v1::GetLeaderResponse>, Status> {
        let l = &self.shared.leader;
        Ok(Response::new(crate::api::v1::GetLeaderResponse {
            ha_mode: l.ha_mode.to_owned(),
            leader_endpoint: l.endpoint.clone(),
            epoch: self.shared.epoch,
            since_unix_ms: l.since_unix_ms,
            leader_key: l.key.clone(),
        }))
    }
}
