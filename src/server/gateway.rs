//! `TaskExecutorGateway`: registration, the heartbeat stream, task state reports (one by one
//! or in batches), and the heartbeat watchdog — every way the JobMaster learns that an executor
//! is gone.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request as GrpcRequest, Response, Status, Streaming};
use tracing::{debug, info};

use super::coordinator::{Coordinator, Report, Request};
use super::{ApiError, Shared};
use crate::api::batch::outcome;
use crate::api::v1::task_executor_gateway_server::TaskExecutorGateway;
use crate::api::v1::{
    AttemptRef, DisconnectRequest, DisconnectResponse, HeartbeatRequest, HeartbeatResponse,
    PartitionRef, RegisterExecutorRequest, RegisterExecutorResponse, TaskOutcome,
    UpdateTaskStateRequest, UpdateTaskStateResponse, UpdateTaskStatesRequest,
    UpdateTaskStatesResponse,
};
use crate::core::{AttemptState, ExecutorId};
use crate::log_text::Escaped;
use crate::security::auth::{Caller, caller_of};

mod validate;

pub(crate) struct Gateway {
    shared: Arc<Shared>,
}

impl Gateway {
    pub(crate) fn new(shared: Arc<Shared>) -> Gateway {
        Gateway { shared }
    }

    /// The executor must be registered under this session (both well-formed).
    fn check_session(&self, executor: &str, session: &str) -> Result<ExecutorId, ApiError> {
        validate::executor_id(executor)?;
        validate::session_id(session)?;
        let id = ExecutorId(executor.to_owned());
        match self.shared.executors.get(&id) {
            Some(s) if s.session == session => Ok(id),
            // Either an older session (the executor registered again since) or one that never
            // registered: the message must fit both.
            Some(_) => Err(ApiError::FailedPrecondition(format!(
                "executor {executor}: session {session:?} is not its current session (it \
                 registered again since, or this session never registered): register again"
            ))),
            // A JobMaster that just restarted: its executors' reports may overtake their
            // registration; they are retried, not dropped (a FINISHED report must not be lost).
            None if self
                .shared
                .reconciling
                .load(std::sync::atomic::Ordering::Relaxed) =>
            {
                Err(ApiError::Unavailable(format!(
                    "executor {executor} is not registered yet: the jobmaster restarted and \
                     reconciles; retry after registering"
                )))
            }
            None => Err(ApiError::FailedPrecondition(format!(
                "executor {executor} is not registered (or was declared lost): register again"
            ))),
        }
    }
}

/// Over TLS the caller's certificate must name the executor a message is about: no executor
/// speaks for another, so none can be impersonated.
fn speaks_for(caller: &Caller, executor: &str) -> Result<(), ApiError> {
    if caller.may_act_as_executor(executor) {
        return Ok(());
    }
    let who = match caller {
        Caller::Executor(own) => format!("the certificate of executor {own:?}"),
        other => format!("{other:?}"),
    };
    Err(ApiError::PermissionDenied(format!(
        "{who} may not speak for executor {executor:?}: an executor's certificate must name \
         its executor id (jobmaster://executor/ID)"
    )))
}

/// The states an executor reports.
const REPORTABLE: [AttemptState; 5] = [
    AttemptState::Initializing,
    AttemptState::Running,
    AttemptState::Finished,
    AttemptState::Canceled,
    AttemptState::Failed,
];

/// Checks one report as UpdateTaskState (or one update of UpdateTaskStates) carries it: the
/// attempt is named, the state is one an executor reports, the failure class is known.
fn validate(
    attempt: Option<AttemptRef>,
    state: &str,
    failure_class: &str,
    message: &str,
    missing_partition: Option<PartitionRef>,
) -> Result<Report, ApiError> {
    let attempt = attempt.ok_or_else(|| ApiError::InvalidArgument("attempt is missing".into()))?;
    let state = state
        .parse::<AttemptState>()
        .ok()
        .filter(|s| REPORTABLE.contains(s))
        .ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "state {state:?} is not reportable; expected {}",
                REPORTABLE.map(AttemptState::name).join(", ")
            ))
        })?;
    let failure = if state == AttemptState::Failed {
        Some(Coordinator::failure(failure_class, message)?)
    } else {
        None
    };
    Ok(Report {
        attempt,
        state,
        failure,
        missing_partition,
        checkpoint: None,
    })
}

/// The states a registering executor may list its attempts in.
const HELD: [AttemptState; 6] = [
    AttemptState::Deploying,
    AttemptState::Initializing,
    AttemptState::Running,
    AttemptState::Finished,
    AttemptState::Canceled,
    AttemptState::Failed,
];

type HeartbeatStream = Pin<Box<dyn Stream<Item = Result<HeartbeatResponse, Status>> + Send>>;

/// What a heartbeat's executor and session are to the registry.
enum Known {
    /// Its current session: the heartbeat counts.
    Current,
    /// Its current session, asked to fence itself ([`super::ExecutorStatus::fencing`]).
    Fencing,
    /// Declared lost, replaced, or never registered.
    No,
}

#[tonic::async_trait]
impl TaskExecutorGateway for Gateway {
    async fn register_executor(
        &self,
        request: GrpcRequest<RegisterExecutorRequest>,
    ) -> Result<Response<RegisterExecutorResponse>, Status> {
        let caller = caller_of(&request);
        let r = request.into_inner();
        speaks_for(&caller, &r.executor_id)?;
        let checked = validate::registration(&r, self.shared.settings.server.max_executor_slots)?;
        let mut held = Vec::with_capacity(r.attempts.len());
        for (i, h) in r.attempts.into_iter().enumerate() {
            let state = AttemptState::ALL
                .into_iter()
                .find(|s| s.name() == h.state && HELD.contains(s))
                .ok_or_else(|| {
                    ApiError::InvalidArgument(format!(
                        "attempts[{i}].state {:?} is not a state an executor holds; expected {}",
                        Escaped(&h.state),
                        HELD.map(AttemptState::name).join(", ")
                    ))
                })?;
            let attempt = h.attempt.ok_or_else(|| {
                ApiError::InvalidArgument(format!("attempts[{i}].attempt is missing"))
            })?;
            held.push((attempt, state));
        }
        self.shared
            .ask(|reply| Request::Register {
                executor: ExecutorId(r.executor_id),
                address: r.address,
                slots: r.slots,
                session: r.session_id,
                free_disk: r.free_disk_bytes,
                labels: checked.labels,
                holds: (held, r.partitions),
                reply,
            })
            .await?;
        let hb = &self.shared.settings.heartbeat;
        Ok(Response::new(RegisterExecutorResponse {
            epoch: self.shared.epoch,
            heartbeat_interval_ms: hb.interval.as_millis() as u64,
            heartbeat_timeout_ms: hb.timeout.as_millis() as u64,
        }))
    }

    type HeartbeatStream = HeartbeatStream;

    async fn heartbeat(
        &self,
        request: GrpcRequest<Streaming<HeartbeatRequest>>,
    ) -> Result<Response<Self::HeartbeatStream>, Status> {
        let caller = caller_of(&request);
        let mut inbound = request.into_inner();
        let shared = self.shared.clone();
        let (out, rx) = mpsc::channel(4);
        let mut stopping = shared.stopping.subscribe();
        let forward = Forwarder::spawn(shared.clone());
        tokio::spawn(async move {
            // The stream's owner: the first heartbeat names it; its closing loses the executor.
            let mut owner: Option<(ExecutorId, String)> = None;
            loop {
                let message = tokio::select! {
                    message = inbound.next() => message,
                    _ = stopping.wait_for(|stopping| *stopping) => {
                        // Shutting down: end the stream; the executor is not lost.
                        let _ = out.try_send(Err(ApiError::ShuttingDown.into()));
                        return;
                    }
                };
                let hb = match message {
                    Some(Ok(hb)) => hb,
                    Some(Err(status)) => {
                        debug!(code = ?status.code(), "heartbeat stream broke");
                        break;
                    }
                    None => break,
                };
                if let Err(e) = speaks_for(&caller, &hb.executor_id)
                    .and_then(|()| validate::executor_id(&hb.executor_id))
                    .and_then(|()| validate::session_id(&hb.session_id))
                {
                    // A malformed or impersonating heartbeat ends the stream (and loses its
                    // owner, if any).
                    let _ = out.try_send(Err(e.into()));
                    break;
                }
                let id = ExecutorId(hb.executor_id.clone());
                let known = match shared.executors.get_mut(&id) {
                    // Asked to fence itself: its heartbeats no longer keep it alive (the
                    // executor's fence deadline counts from the last heartbeat answered
                    // without `reregister`, which is no later than its last refresh here).
                    Some(s) if s.session == hb.session_id && s.fencing => Known::Fencing,
                    Some(mut s) if s.session == hb.session_id => {
                        s.last_heartbeat = Instant::now();
                        s.free_disk = hb.free_disk_bytes;
                        s.partitions = hb.partitions.len() as u32;
                        Known::Current
                    }
                    _ => Known::No,
                };
                // The answer never waits: an executor that does not read its answers only
                // misses some of them. It echoes the heartbeat's number: the executor fences
                // its attempts by the time that heartbeat was sent.
                let answer = |reregister| {
                    out.try_send(Ok(HeartbeatResponse {
                        epoch: shared.epoch,
                        reregister,
                        sequence: hb.sequence,
                    }))
                };
                match known {
                    Known::Current => {}
                    Known::Fencing => {
                        // Still its stream: should it close, the executor is lost at once
                        // (the reference executor kills its attempts before it closes it).
                        owner = Some((id, hb.session_id.clone()));
                        if let Err(mpsc::error::TrySendError::Closed(_)) = answer(true) {
                            break;
                        }
                        continue;
                    }
                    Known::No => {
                        // Declared lost, replaced, or never registered: tell it to start over.
                        if let Err(mpsc::error::TrySendError::Closed(_)) = answer(true) {
                            break;
                        }
                        owner = None;
                        continue;
                    }
                }
                owner = Some((id.clone(), hb.session_id.clone()));
                forward.offer(id, hb.session_id, hb.attempts);
                if let Err(mpsc::error::TrySendError::Closed(_)) = answer(false) {
                    break;
                }
            }
            if let Some((executor, session)) = owner {
                lose(&shared, executor, session, "heartbeat stream closed").await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn update_task_state(
        &self,
        request: GrpcRequest<UpdateTaskStateRequest>,
    ) -> Result<Response<UpdateTaskStateResponse>, Status> {
        let caller = caller_of(&request);
        let r = request.into_inner();
        speaks_for(&caller, &r.executor_id)?;
        let executor = self.check_session(&r.executor_id, &r.session_id)?;
        let report = validate(
            r.attempt,
            &r.state,
            &r.failure_class,
            &r.message,
            r.missing_partition,
        )?;
        let verdicts = self
            .shared
            .ask(|reply| Request::Reports {
                executor,
                reports: vec![report],
                reply,
            })
            .await?;
        // One report, one verdict.
        verdicts
            .into_iter()
            .next()
            .unwrap_or(Err(ApiError::ShuttingDown))?;
        Ok(Response::new(UpdateTaskStateResponse {}))
    }

    async fn update_task_states(
        &self,
        request: GrpcRequest<UpdateTaskStatesRequest>,
    ) -> Result<Response<UpdateTaskStatesResponse>, Status> {
        let caller = caller_of(&request);
        let r = request.into_inner();
        speaks_for(&caller, &r.executor_id)?;
        // An unknown or replaced session refuses the whole batch: nothing of it is applied.
        let executor = self.check_session(&r.executor_id, &r.session_id)?;
        // Updates that fail validation get their outcome here; the valid ones go to the
        // coordinator together, in order, as one request.
        let mut invalid: Vec<Option<ApiError>> = Vec::with_capacity(r.updates.len());
        let mut reports = Vec::with_capacity(r.updates.len());
        for u in r.updates {
            if let Some(answer) = u.checkpoint {
                match u.attempt {
                    Some(attempt) => {
                        reports.push(Report::checkpoint(attempt, answer));
                        invalid.push(None);
                    }
                    None => {
                        invalid.push(Some(ApiError::InvalidArgument("attempt is missing".into())))
                    }
                }
                continue;
            }
            match validate(
                u.attempt,
                &u.state,
                &u.failure_class,
                &u.message,
                u.missing_partition,
            ) {
                Ok(report) => {
                    reports.push(report);
                    invalid.push(None);
                }
                Err(e) => invalid.push(Some(e)),
            }
        }
        let verdicts = if reports.is_empty() {
            Vec::new()
        } else {
            self.shared
                .ask(|reply| Request::Reports {
                    executor: executor.clone(),
                    reports,
                    reply,
                })
                .await?
        };
        let mut verdicts = verdicts.into_iter();
        let outcomes: Vec<TaskOutcome> = invalid
            .into_iter()
            .map(|invalid| match invalid {
                Some(e) => Err(e),
                // The coordinator answers one verdict per report it was given.
                None => verdicts.next().unwrap_or(Err(ApiError::ShuttingDown)),
            })
            .map(|result| outcome(result.map_err(Status::from)))
            .collect();
        let refused = outcomes.iter().filter(|o| !o.accepted).count();
        if refused > 0 {
            debug!(executor = %Escaped(&executor.0), updates = outcomes.len(), refused, "reports refused in a batch");
        }
        Ok(Response::new(UpdateTaskStatesResponse { outcomes }))
    }

    async fn disconnect(
        &self,
        request: GrpcRequest<DisconnectRequest>,
    ) -> Result<Response<DisconnectResponse>, Status> {
        let caller = caller_of(&request);
        let r = request.into_inner();
        speaks_for(&caller, &r.executor_id)?;
        let executor = self.check_session(&r.executor_id, &r.session_id)?;
        info!(executor = %Escaped(&executor.0), reason = %Escaped(&r.reason), "executor disconnects");
        lose(
            &self.shared,
            executor,
            r.session_id,
            &format!("disconnected: {}", r.reason),
        )
        .await;
        Ok(Response::new(DisconnectResponse {}))
    }
}

/// A heartbeat read but not yet handed to the coordinator.
type Pending = (ExecutorId, String, Vec<AttemptRef>);

/// Hands a stream's heartbeats to the coordinator without ever blocking the stream's read
/// loop: the liveness of an executor is recorded when its heartbeat is read, and a busy
/// coordinator must not delay the reading of the next one (that would look like silence). While
/// the coordinator is behind, a newer heartbeat replaces the one still waiting: reconciliation
/// needs only the latest view.
struct Forwarder {
    latest: Arc<std::sync::Mutex<Option<Pending>>>,
    bell: mpsc::Sender<()>,
}

impl Forwarder {
    fn spawn(shared: Arc<Shared>) -> Forwarder {
        let latest = Arc::new(std::sync::Mutex::new(None));
        let (bell, mut rings) = mpsc::channel::<()>(1);
        let slot = latest.clone();
        tokio::spawn(async move {
            // Ends when the read loop drops its Forwarder.
            while rings.recv().await.is_some() {
                let next = slot.lock().map(|mut s| s.take()).unwrap_or(None);
                let Some((executor, session, attempts)) = next else {
                    continue;
                };
                if shared
                    .tx
                    .send(Request::Heartbeat {
                        executor,
                        session,
                        attempts,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Forwarder { latest, bell }
    }

    fn offer(&self, executor: ExecutorId, session: String, attempts: Vec<AttemptRef>) {
        if let Ok(mut slot) = self.latest.lock() {
            *slot = Some((executor, session, attempts));
        }
        // A full bell has already rung: the forwarder will find the new heartbeat.
        let _ = self.bell.try_send(());
    }
}

async fn lose(shared: &Shared, executor: ExecutorId, session: String, reason: &str) {
    let first = shared.executors.get_mut(&executor).is_some_and(|mut s| {
        let first = s.session == session && !s.lost_reported;
        if first {
            s.lost_reported = true;
        }
        first
    });
    if first {
        let _ = shared
            .tx
            .send(Request::Lose {
                executor,
                session: Some(session),
                reason: reason.to_owned(),
                evidence: Instant::now(),
            })
            .await;
    }
}

/// Declares lost every executor whose last heartbeat is older than the heartbeat timeout.
///
/// An executor cut off from the JobMaster fences its attempts strictly before this deadline
/// (the README's "Keeping tasks vs. fencing them"): it counts from the *send* time of its
/// last heartbeat answered here, while this counts from the time that heartbeat was *read*.
///
/// A JobMaster that is shutting down declares nobody lost: its executors' streams end with
/// its shutdown, and they keep their attempts for the next JobMaster.
pub(crate) async fn watchdog(shared: Arc<Shared>) {
    let hb = &shared.settings.heartbeat;
    let period = (hb.interval / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if *shared.stopping.borrow() {
            return;
        }
        let timeout = shared.settings.heartbeat.timeout;
        let mut late = Vec::new();
        for mut entry in shared.executors.iter_mut() {
            let age = entry.last_heartbeat.elapsed();
            if age > timeout && !entry.lost_reported {
                entry.lost_reported = true;
                late.push((
                    entry.key().clone(),
                    entry.session.clone(),
                    age,
                    entry.last_heartbeat,
                ));
            }
        }
        for (executor, session, age, last_heartbeat) in late {
            let _ = shared
                .tx
                .send(Request::Lose {
                    executor,
                    session: Some(session),
                    reason: format!("no heartbeat for {} ms", age.as_millis()),
                    // The executor fell silent at its last heartbeat.
                    evidence: last_heartbeat,
                })
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A registry whose coordinator inbox holds `capacity` requests and is not served.
    fn shared(capacity: usize) -> (Arc<Shared>, mpsc::Receiver<Request>) {
        super::super::unserved(capacity, Arc::default())
    }

    fn attempt(n: u32) -> AttemptRef {
        AttemptRef {
            job_id: "j".into(),
            vertex: "v".into(),
            subtask: 0,
            attempt: n,
        }
    }

    #[tokio::test]
    async fn heartbeats_never_wait_on_a_busy_coordinator_and_the_newest_one_gets_through() {
        let (shared, mut rx) = shared(1);
        // The coordinator is busy: its inbox is full and nobody reads it.
        assert!(
            shared
                .tx
                .try_send(Request::With(Box::new(|_| Box::new(|| {}))))
                .is_ok()
        );
        let forward = Forwarder::spawn(shared.clone());
        for n in 0..1_000 {
            // Returns at once every time; a blocking offer would hang this test.
            forward.offer(ExecutorId("e".into()), "s".into(), vec![attempt(n)]);
            tokio::task::yield_now().await;
        }
        // The coordinator catches up: it gets at most the one heartbeat the forwarder was
        // already handing over, then the newest.
        assert!(matches!(rx.recv().await, Some(Request::With(_))));
        let mut delivered = Vec::new();
        while delivered.last() != Some(&999) {
            let next = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("the newest heartbeat is delivered");
            match next {
                Some(Request::Heartbeat {
                    session, attempts, ..
                }) => {
                    assert_eq!(session, "s");
                    delivered.push(attempts[0].attempt);
                }
                _ => panic!("expected a heartbeat"),
            }
        }
        assert!(
            delivered.len() <= 2,
            "stale heartbeats piled up: {delivered:?}"
        );
    }
}
