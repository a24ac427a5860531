//! One simulated executor: identity, session, the attempts it holds, and its calls to the
//! JobMaster's TaskExecutorGateway (registration, heartbeats, state reports).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::Streaming;
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::{Holding, Options, UnknownCancels};
use crate::api::v1::task_executor_gateway_client::TaskExecutorGatewayClient;
use crate::api::v1::{
    AttemptRef, HeartbeatRequest, HeartbeatResponse, HeldAttempt, RegisterExecutorRequest,
    RegisterExecutorResponse, TaskOutcome, TaskStateUpdate, UpdateTaskStateRequest,
    UpdateTaskStatesRequest,
};
use crate::core::{AttemptState, Labels};

/// Who an [`Executor`] is and how it calls the JobMaster.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    pub id: String,
    /// Where its TaskExecutorService listens ("127.0.0.1:PORT").
    pub address: String,
    pub slots: u32,
    pub session: String,
    /// Reported at registration and in every heartbeat.
    pub free_disk_bytes: u64,
    /// Bound of each of its RPCs (also sent as the gRPC timeout).
    pub rpc_timeout: Duration,
    /// Labels it registers with (failure domains such as `zone=a`).
    pub labels: Labels,
}

/// (job, vertex, subtask, attempt).
type AttemptKey = (String, String, u32, u32);

fn key(r: &AttemptRef) -> AttemptKey {
    (r.job_id.clone(), r.vertex.clone(), r.subtask, r.attempt)
}

fn same_task(k: &AttemptKey, r: &AttemptRef) -> bool {
    k.0 == r.job_id && k.1 == r.vertex && k.2 == r.subtask
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct State {
    session: String,
    /// Attempts this executor holds (deploying, running or cancelling): in every heartbeat.
    held: BTreeMap<AttemptKey, AttemptRef>,
    /// Cancels of attempts not (yet) held ([`UnknownCancels::Remember`]).
    tombstones: HashSet<AttemptKey>,
    /// Cancels received but not yet confirmed (when confirmation is manual).
    unconfirmed: Vec<AttemptRef>,
    /// Sequence number of the next heartbeat (from 0).
    next_seq: u64,
    paused: bool,
    last_sent: Option<Instant>,
}

/// What a submit did.
pub(super) enum Submitted {
    /// The attempt is held; `seq` is the first heartbeat that lists it.
    Held { seq: u64 },
    /// Its cancel came first: it stopped at once.
    AfterCancel,
}

/// One simulated TaskExecutor. Serve it with a [`super::Fleet`].
pub struct Executor {
    config: ExecutorConfig,
    gateway: TaskExecutorGatewayClient<Channel>,
    state: Mutex<State>,
    /// Heartbeat answers received; the n-th answers heartbeat n-1.
    acked: watch::Sender<u64>,
    reregister_asks: AtomicU64,
    /// RUNNING reports the JobMaster accepted.
    running_accepted: AtomicU64,
    /// Send a heartbeat now.
    nudge: Notify,
}

impl Executor {
    /// An executor (not yet registered) that calls the JobMaster through `gateway`.
    pub fn new(config: ExecutorConfig, gateway: TaskExecutorGatewayClient<Channel>) -> Arc<Self> {
        let (acked, _) = watch::channel(0);
        Arc::new(Executor {
            gateway,
            state: Mutex::new(State {
                session: config.session.clone(),
                held: BTreeMap::new(),
                tombstones: HashSet::new(),
                unconfirmed: Vec::new(),
                next_seq: 0,
                paused: false,
                last_sent: None,
            }),
            config,
            acked,
            reregister_asks: AtomicU64::new(0),
            running_accepted: AtomicU64::new(0),
            nudge: Notify::new(),
        })
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn address(&self) -> &str {
        &self.config.address
    }

    pub fn session(&self) -> String {
        lock(&self.state).session.clone()
    }

    /// A client of the JobMaster's TaskExecutorGateway, as this executor has.
    pub fn gateway(&self) -> TaskExecutorGatewayClient<Channel> {
        self.gateway.clone()
    }

    /// The attempts it holds now.
    pub fn held(&self) -> Vec<AttemptRef> {
        lock(&self.state).held.values().cloned().collect()
    }

    pub fn holds(&self, attempt: &AttemptRef) -> bool {
        lock(&self.state).held.contains_key(&key(attempt))
    }

    /// Stops holding `attempt` (it ended); whether it was held.
    pub fn drop_attempt(&self, attempt: &AttemptRef) -> bool {
        lock(&self.state).held.remove(&key(attempt)).is_some()
    }

    /// Cancels received and not yet confirmed (see [`super::Fleet::set_auto_confirm_cancels`]).
    pub fn unconfirmed(&self) -> Vec<AttemptRef> {
        lock(&self.state).unconfirmed.clone()
    }

    /// Stops the attempts cancelled and not yet confirmed, and hands them over in the order
    /// the cancels arrived (to be reported CANCELED).
    pub fn take_unconfirmed(&self) -> Vec<AttemptRef> {
        let mut s = lock(&self.state);
        let pending = std::mem::take(&mut s.unconfirmed);
        for a in &pending {
            s.held.remove(&key(a));
        }
        pending
    }

    /// Drops every attempt (and remembered cancel) and takes a new session, as a restarted
    /// executor process does; register again afterwards.
    pub fn new_session(&self, session: String) {
        let mut s = lock(&self.state);
        s.session = session;
        s.held.clear();
        s.unconfirmed.clear();
        s.tombstones.clear();
    }

    /// RUNNING reports the JobMaster accepted so far.
    pub fn running_accepted(&self) -> u64 {
        self.running_accepted.load(Ordering::Relaxed)
    }

    pub(super) fn count_accepted_running(&self) {
        self.running_accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A request bounded by the executor's RPC timeout (sent along as the gRPC timeout).
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.config.rpc_timeout);
        request
    }

    /// Awaits one of its RPCs, at most the RPC timeout.
    async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        match tokio::time::timeout(self.config.rpc_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "{what} of {} timed out after {:?}",
                self.config.id, self.config.rpc_timeout
            ))),
        }
    }

    /// RegisterExecutor with its id, address, slots and current session, listing the attempts
    /// it holds as RUNNING (as a real executor lists what it still runs), so that a restarted
    /// JobMaster adopts them. A fresh executor, or one after [`Executor::new_session`], holds
    /// none.
    pub async fn register(&self) -> Result<RegisterExecutorResponse, Status> {
        let attempts = self
            .held()
            .into_iter()
            .map(|attempt| HeldAttempt {
                attempt: Some(attempt),
                state: AttemptState::Running.name().to_owned(),
            })
            .collect();
        let request = self.request(RegisterExecutorRequest {
            executor_id: self.config.id.clone(),
            address: self.config.address.clone(),
            slots: self.config.slots,
            session_id: self.session(),
            free_disk_bytes: self.config.free_disk_bytes,
            labels: self.config.labels.clone().into_iter().collect(),
            attempts,
            partitions: Vec::new(),
        });
        let mut gateway = self.gateway.clone();
        self.bounded("RegisterExecutor", gateway.register_executor(request))
            .await
            .map(tonic::Response::into_inner)
    }

    /// One UpdateTaskState call with its session: `attempt` is in `state` (a failure with
    /// `class` and `message`, empty otherwise).
    pub async fn update(
        &self,
        attempt: &AttemptRef,
        state: &str,
        class: &str,
        message: &str,
    ) -> Result<(), Status> {
        let request = self.request(UpdateTaskStateRequest {
            executor_id: self.config.id.clone(),
            session_id: self.session(),
            attempt: Some(attempt.clone()),
            state: state.to_owned(),
            failure_class: class.to_owned(),
            message: message.to_owned(),
            ..UpdateTaskStateRequest::default()
        });
        let mut gateway = self.gateway.clone();
        self.bounded("UpdateTaskState", gateway.update_task_state(request))
            .await
            .map(|_| ())
    }

    /// One UpdateTaskStates call under `executor_id` and `session` (its own, or any other);
    /// returns one outcome per update.
    pub async fn update_batch(
        &self,
        executor_id: &str,
        session: &str,
        updates: Vec<TaskStateUpdate>,
    ) -> Result<Vec<TaskOutcome>, Status> {
        let request = self.request(UpdateTaskStatesRequest {
            executor_id: executor_id.to_owned(),
            session_id: session.to_owned(),
            updates,
        });
        let mut gateway = self.gateway.clone();
        self.bounded("UpdateTaskStates", gateway.update_task_states(request))
            .await
            .map(|answer| answer.into_inner().outcomes)
    }

    // ----- heartbeats ---------------------------------------------------------------------

    /// The next heartbeat, listing the attempts it holds; `None` while heartbeats are paused.
    /// Every heartbeat an executor sends should come from here (it numbers them).
    pub fn next_heartbeat(&self) -> Option<HeartbeatRequest> {
        let mut s = lock(&self.state);
        if s.paused {
            return None;
        }
        s.next_seq += 1;
        s.last_sent = Some(Instant::now());
        Some(HeartbeatRequest {
            executor_id: self.config.id.clone(),
            session_id: s.session.clone(),
            attempts: s.held.values().cloned().collect(),
            partitions: Vec::new(),
            free_disk_bytes: self.config.free_disk_bytes,
            sequence: s.next_seq,
        })
    }

    /// A heartbeat answer arrived (answers come in the heartbeats' order).
    pub fn heartbeat_answered(&self, answer: &HeartbeatResponse) {
        if answer.reregister {
            self.reregister_asks.fetch_add(1, Ordering::SeqCst);
        }
        self.acked.send_modify(|n| *n += 1);
    }

    /// Heartbeats answered so far.
    pub fn heartbeats_answered(&self) -> u64 {
        *self.acked.borrow()
    }

    /// Follows the number of heartbeats answered.
    pub fn watch_answers(&self) -> watch::Receiver<u64> {
        self.acked.subscribe()
    }

    /// Answers that told the executor to register again.
    pub fn reregister_asks(&self) -> u64 {
        self.reregister_asks.load(Ordering::SeqCst)
    }

    /// Stops [`Executor::next_heartbeat`] (the stream stays open); returns when the last
    /// heartbeat was made, if any.
    pub fn pause_heartbeats(&self) -> Option<Instant> {
        let mut s = lock(&self.state);
        s.paused = true;
        s.last_sent
    }

    /// Asks the heartbeat loop of [`Executor::start_heartbeats`] for a heartbeat now.
    pub(super) fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// Opens the Heartbeat stream and keeps it going: a heartbeat at once, then one every
    /// `interval` (and one whenever an attempt waits to be reported RUNNING); reads the
    /// answers. Returns the sending and the reading task.
    pub async fn start_heartbeats(
        self: &Arc<Self>,
        interval: Duration,
    ) -> Result<[JoinHandle<()>; 2], Status> {
        let (tx, rx) = mpsc::channel(16);
        let mut gateway = self.gateway.clone();
        let stream = self
            .bounded("Heartbeat", gateway.heartbeat(ReceiverStream::new(rx)))
            .await?
            .into_inner();
        let producer = tokio::spawn(self.clone().send_heartbeats(tx, interval));
        let reader = tokio::spawn(self.clone().read_answers(stream));
        Ok([producer, reader])
    }

    async fn send_heartbeats(self: Arc<Self>, tx: mpsc::Sender<HeartbeatRequest>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.nudge.notified() => {}
            }
            let Some(hb) = self.next_heartbeat() else {
                continue;
            };
            if tx.send(hb).await.is_err() {
                return;
            }
        }
    }

    async fn read_answers(self: Arc<Self>, mut stream: Streaming<HeartbeatResponse>) {
        while let Ok(Some(answer)) = stream.message().await {
            self.heartbeat_answered(&answer);
        }
    }

    /// Waits (at most 30 s) until heartbeat `seq` has been answered; whether it was.
    pub(super) async fn heartbeat_seen(&self, seq: u64) -> bool {
        let mut acked = self.acked.subscribe();
        tokio::time::timeout(Duration::from_secs(30), acked.wait_for(|&n| n > seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    // ----- what the service does ----------------------------------------------------------

    /// One task of a SubmitTask(s) call: holds the attempt, unless its cancel came first.
    pub(super) fn submit(&self, options: &Options, attempt: &AttemptRef) -> Submitted {
        let k = key(attempt);
        let mut s = lock(&self.state);
        if options.unknown_cancels == UnknownCancels::Remember && s.tombstones.remove(&k) {
            return Submitted::AfterCancel;
        }
        if options.holding == Holding::PerTask {
            s.held.retain(|held, _| !same_task(held, attempt));
        }
        s.held.insert(k, attempt.clone());
        Submitted::Held { seq: s.next_seq }
    }

    /// One attempt of a CancelTask(s) call; whether to report it CANCELED now. Without
    /// `auto_confirm` it is kept (held) until [`Executor::take_unconfirmed`].
    pub(super) fn cancel(
        &self,
        options: &Options,
        auto_confirm: bool,
        attempt: &AttemptRef,
    ) -> bool {
        let mut s = lock(&self.state);
        if !auto_confirm {
            s.unconfirmed.push(attempt.clone());
            return false;
        }
        let k = key(attempt);
        if s.held.remove(&k).is_some() {
            return true;
        }
        match options.unknown_cancels {
            UnknownCancels::Confirm => true,
            UnknownCancels::Remember => {
                let newer = s
                    .held
                    .keys()
                    .any(|h| same_task(h, attempt) && h.3 > attempt.attempt);
                if !newer {
                    // Not (yet) here: its SubmitTask may still be on the way.
                    s.tombstones.insert(k);
                }
                false
            }
        }
    }
}
