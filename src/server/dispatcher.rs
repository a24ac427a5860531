//! Per-executor dispatch of the core's commands: one queue and one task per registered executor.
//!
//! The coordinator only enqueues [`Order`]s and never awaits an executor: it holds the orders
//! of one request and hands them over together when it is done with the request, so one core
//! step's orders for an executor usually make one batch. The executor's task owns its gRPC
//! client: it takes whatever has piled up, cuts it into runs of one kind in queue order, and
//! sends each run as one batch RPC (submits → `SubmitTasks`, cancels → `CancelTasks`, releases
//! → `ReleasePartitions`; an ended job → `ReleaseJob`; each checkpoint command on its own),
//! awaiting each RPC before the next. So commands reach the executor in the order the core decided them (a cancel never overtakes its attempt's submit), at most one
//! RPC per executor is in flight, and while one batch is in flight the next one accumulates. A
//! partition list that several tasks of a batch read (all consumers of an all-to-all exchange)
//! goes into the batch once (`SubmitTasksRequest.shared_partitions`). Dropping the
//! [`Dispatcher`] (the executor was lost or replaced) aborts its task.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tracing::{debug, warn};

use super::Shared;
use super::coordinator::{Report, Request, is_transient};
use crate::api::v1::task_executor_service_client::TaskExecutorServiceClient;
use crate::api::v1::{
    AttemptRef, CancelTasksRequest, CheckpointAnswer, CheckpointStorage, DiscardCheckpointsRequest,
    InputPartition, NotifyCheckpointRequest, PartitionList, PartitionRef, ReleaseJobRequest,
    ReleasePartitionsRequest, SubmitTaskRequest, SubmitTasksRequest, TriggerCheckpointRequest,
};
use crate::core::{AttemptState, ExecutorId, Failure};
use crate::log_text::Escaped;

/// Most orders in one batch RPC.
const MAX_BATCH: usize = 2000;

/// A partition list several tasks read, built once by the coordinator.
pub(crate) struct SharedInputs {
    partitions: Vec<InputPartition>,
    /// Its encoded size as a `PartitionList` element of a batch.
    encoded_len: usize,
}

impl SharedInputs {
    pub(crate) fn new(partitions: Vec<InputPartition>) -> Arc<SharedInputs> {
        let list = PartitionList { partitions };
        let encoded_len = element_len(&list);
        Arc::new(SharedInputs {
            partitions: list.partitions,
            encoded_len,
        })
    }

    fn key(list: &Arc<SharedInputs>) -> usize {
        Arc::as_ptr(list) as usize
    }
}

/// An attempt to start: its descriptor, whose gates named in `shared` have an empty
/// partition list that the batch fills in.
pub(crate) struct Deploy {
    pub(crate) request: SubmitTaskRequest,
    /// (index of the gate in `request.inputs`, its partitions).
    pub(crate) shared: Vec<(usize, Arc<SharedInputs>)>,
}

/// One command for an executor.
pub(crate) enum Order {
    /// Start an attempt.
    Submit(Deploy),
    /// Stop an attempt.
    Cancel(AttemptRef),
    /// Delete result partitions.
    Release(Vec<PartitionRef>),
    /// A job ended: remove its folders, and its checkpoints when it had some (one job per
    /// call).
    ReleaseJob {
        job: String,
        checkpoints: Option<CheckpointStorage>,
    },
    /// A checkpoint command (one per call).
    Checkpoint(CheckpointOrder),
}

/// The checkpoint commands, as sent.
#[derive(Debug, Clone)]
pub(crate) enum CheckpointOrder {
    Trigger(TriggerCheckpointRequest),
    Notify(NotifyCheckpointRequest),
    Discard(DiscardCheckpointsRequest),
}

impl CheckpointOrder {
    /// Sends it once through `client` (the answers carry nothing).
    async fn send(
        self,
        mut client: TaskExecutorServiceClient<Channel>,
    ) -> Result<tonic::Response<()>, tonic::Status> {
        match self {
            CheckpointOrder::Trigger(r) => client.trigger_checkpoint(r).await.map(|_| ()),
            CheckpointOrder::Notify(r) => client.notify_checkpoint(r).await.map(|_| ()),
            CheckpointOrder::Discard(r) => client.discard_checkpoints(r).await.map(|_| ()),
        }
        .map(tonic::Response::new)
    }
}

/// The handle the coordinator holds for one registered executor.
pub(crate) struct Dispatcher {
    queue: mpsc::UnboundedSender<Vec<Order>>,
    /// Orders of the turn being served (see [`Dispatcher::seal`]).
    held: Vec<Order>,
    /// Orders of ended turns, each with the commit it waits for, oldest first.
    sealed: VecDeque<(u64, Vec<Order>)>,
    task: JoinHandle<()>,
}

impl Dispatcher {
    /// Starts the executor's sending task.
    /// `client` connects on first use; `connecting`, if it succeeds first, replaces it with a
    /// connection made in advance.
    pub(crate) fn start(
        executor: ExecutorId,
        client: TaskExecutorServiceClient<Channel>,
        connecting: JoinHandle<Result<Channel, tonic::transport::Error>>,
        shared: Arc<Shared>,
    ) -> Dispatcher {
        let (queue, rx) = mpsc::unbounded_channel();
        // Batches stay well under both our message limit and the reference executor's.
        let budget = shared
            .settings
            .server
            .max_message_bytes
            .min(crate::executor::MAX_MESSAGE_BYTES)
            / 2;
        let sender = Sender {
            executor,
            client,
            connecting: Some(connecting),
            shared,
            budget,
        };
        Dispatcher {
            queue,
            held: Vec::new(),
            sealed: VecDeque::new(),
            task: tokio::spawn(sender.run(rx)),
        }
    }

    /// Adds an order of the turn being served. Returns whether it is the turn's first one.
    pub(crate) fn push(&mut self, order: Order) -> bool {
        self.held.push(order);
        self.held.len() == 1
    }

    /// Ends the turn: its orders leave once commit `after` is done ([`Dispatcher::release`]).
    pub(crate) fn seal(&mut self, after: u64) {
        if !self.held.is_empty() {
            self.sealed
                .push_back((after, std::mem::take(&mut self.held)));
        }
    }

    /// Hands the orders of the turns whose commit is done (`upto` and before) to the sending
    /// task, in order; never waits.
    pub(crate) fn release(&mut self, upto: u64) {
        while let Some((after, _)) = self.sealed.front()
            && *after <= upto
        {
            let (_, orders) = self.sealed.pop_front().expect("a front");
            // The receiving task lives as long as this handle (it is aborted only on drop).
            let _ = self.queue.send(orders);
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The task that owns one executor's client.
struct Sender {
    executor: ExecutorId,
    client: TaskExecutorServiceClient<Channel>,
    /// The connection made at registration, taken over before the first command.
    connecting: Option<JoinHandle<Result<Channel, tonic::transport::Error>>>,
    shared: Arc<Shared>,
    /// Largest encoded size of one batch, in bytes (one order alone may exceed it).
    budget: usize,
}

/// Encoded size of `m` as an element of a repeated field (tag, length, body).
fn element_len(m: &impl Message) -> usize {
    let len = m.encoded_len();
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

impl Order {
    /// What the order adds to the encoded size of a batch that already holds the shared
    /// partition lists in `seen`.
    fn encoded_len(&self, seen: &HashSet<usize>) -> usize {
        match self {
            Order::Submit(d) => {
                element_len(&d.request)
                    + d.shared
                        .iter()
                        .filter(|(_, l)| !seen.contains(&SharedInputs::key(l)))
                        .map(|(_, l)| l.encoded_len)
                        .sum::<usize>()
            }
            Order::Cancel(a) => element_len(a),
            Order::Release(p) => p.iter().map(element_len).sum(),
            Order::ReleaseJob { job, .. } => job.len(),
            Order::Checkpoint(CheckpointOrder::Trigger(r)) => r.encoded_len(),
            Order::Checkpoint(CheckpointOrder::Notify(r)) => r.encoded_len(),
            Order::Checkpoint(CheckpointOrder::Discard(r)) => r.encoded_len(),
        }
    }
}

/// The SubmitTasks request of a run: each shared partition list once, named by the gates.
fn batch(epoch: u64, deploys: Vec<Deploy>) -> SubmitTasksRequest {
    let mut lists: Vec<PartitionList> = Vec::new();
    let mut index: HashMap<usize, u32> = HashMap::new();
    let tasks = deploys
        .into_iter()
        .map(
            |Deploy {
                 mut request,
                 shared,
             }| {
                for (gate, list) in shared {
                    let n = *index.entry(SharedInputs::key(&list)).or_insert_with(|| {
                        lists.push(PartitionList {
                            partitions: list.partitions.clone(),
                        });
                        lists.len() as u32
                    });
                    if let Some(g) = request.inputs.get_mut(gate) {
                        g.shared_partitions = n;
                    }
                }
                request
            },
        )
        .collect();
    SubmitTasksRequest {
        epoch,
        tasks,
        shared_partitions: lists,
    }
}

/// Takes the longest run of orders of the front order's kind, at most [`MAX_BATCH`] orders and
/// `budget` encoded bytes, but at least one order.
fn take_run(pending: &mut VecDeque<Order>, budget: usize) -> Vec<Order> {
    let mut run: Vec<Order> = Vec::new();
    let mut bytes = 0;
    let mut seen = HashSet::new();
    while run.len() < MAX_BATCH {
        let Some(next) = pending.front() else {
            break;
        };
        if let Some(first) = run.first()
            && (std::mem::discriminant(first) != std::mem::discriminant(next)
                || matches!(first, Order::ReleaseJob { .. } | Order::Checkpoint(_)))
        {
            break;
        }
        let n = next.encoded_len(&seen);
        if !run.is_empty() && bytes + n > budget {
            break;
        }
        bytes += n;
        if let Order::Submit(d) = next {
            seen.extend(d.shared.iter().map(|(_, l)| SharedInputs::key(l)));
        }
        run.extend(pending.pop_front());
    }
    run
}

impl Sender {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Vec<Order>>) {
        let mut pending: VecDeque<Order> = VecDeque::new();
        loop {
            if pending.is_empty() {
                match rx.recv().await {
                    Some(orders) => pending.extend(orders),
                    None => return,
                }
            }
            if let Some(connecting) = self.connecting.take() {
                // Commands wait for the connection either way; a failed one leaves the lazy
                // client, which tries again.
                if let Ok(Ok(channel)) = connecting.await {
                    let limit = self.shared.settings.server.max_message_bytes;
                    self.client = TaskExecutorServiceClient::new(channel)
                        .max_decoding_message_size(limit)
                        .max_encoding_message_size(limit);
                }
            }
            // Everything that piled up meanwhile joins the batch.
            while let Ok(orders) = rx.try_recv() {
                pending.extend(orders);
            }
            let run = take_run(&mut pending, self.budget);
            if !self.shared.leads() {
                // Deposed (its lease lapsed): nothing more leaves; the new leader decides.
                debug!(executor = %Escaped(&self.executor.0), dropped = run.len() + pending.len(),
                       "orders dropped: this jobmaster no longer leads");
                pending.clear();
                continue;
            }
            match run.first() {
                Some(Order::Submit(_)) => {
                    let deploys = run
                        .into_iter()
                        .filter_map(|o| match o {
                            Order::Submit(d) => Some(d),
                            _ => None,
                        })
                        .collect();
                    self.submit(deploys).await;
                }
                Some(Order::Cancel(_)) => {
                    let attempts = run
                        .into_iter()
                        .filter_map(|o| match o {
                            Order::Cancel(a) => Some(a),
                            _ => None,
                        })
                        .collect();
                    self.cancel(attempts).await;
                }
                Some(Order::Release(_)) => {
                    let partitions = run
                        .into_iter()
                        .filter_map(|o| match o {
                            Order::Release(p) => Some(p),
                            _ => None,
                        })
                        .flatten()
                        .collect();
                    self.release(partitions).await;
                }
                Some(Order::ReleaseJob { job, checkpoints }) => {
                    let (job, checkpoints) = (job.clone(), checkpoints.clone());
                    self.release_job(job, checkpoints).await;
                }
                Some(Order::Checkpoint(order)) => {
                    let order = order.clone();
                    self.checkpoint(order).await;
                }
                None => {}
            }
        }
    }

    /// Sends a run of submits, retrying transient failures (a repeated submit of an attempt the
    /// executor already started is a no-op there); every attempt that was not accepted is
    /// reported FAILED, all in one report batch so they make one failover decision.
    async fn submit(&mut self, deploys: Vec<Deploy>) {
        let attempts: Vec<AttemptRef> = deploys
            .iter()
            .map(|d| d.request.attempt.clone().unwrap_or_default())
            .collect();
        let request = batch(self.shared.epoch, deploys);
        let client = &self.client;
        let answer = self
            .retrying(|| {
                let mut client = client.clone();
                let request = request.clone();
                async move { client.submit_tasks(request).await }
            })
            .await;
        let mut failed = Vec::new();
        match answer {
            Ok(answer) => {
                self.shared.rpc_succeeded(&self.executor);
                let outcomes = answer.into_inner().outcomes;
                debug!(executor = %Escaped(&self.executor.0), tasks = attempts.len(), "tasks submitted");
                for (i, attempt) in attempts.into_iter().enumerate() {
                    let message = match outcomes.get(i) {
                        Some(o) if o.accepted => continue,
                        Some(o) => {
                            warn!(executor = %Escaped(&self.executor.0), task = %Escaped(&format!("{}#{}", attempt.vertex, attempt.subtask)),
                                  attempt = attempt.attempt, code = %Escaped(&o.code), message = %Escaped(&o.message),
                                  "deploy refused");
                            o.message.clone()
                        }
                        None => {
                            warn!(executor = %Escaped(&self.executor.0), task = %Escaped(&format!("{}#{}", attempt.vertex, attempt.subtask)),
                                  attempt = attempt.attempt, "deploy answered without an outcome");
                            "the executor answered no outcome for the task".to_owned()
                        }
                    };
                    failed.push((attempt, message));
                }
            }
            Err(status) => {
                warn!(executor = %Escaped(&self.executor.0), tasks = attempts.len(), code = ?status.code(),
                      message = %Escaped(status.message()), "deploy failed");
                self.shared.rpc_failed(&self.executor, &status).await;
                let message = status.message().to_owned();
                failed.extend(attempts.into_iter().map(|a| (a, message.clone())));
            }
        }
        self.fail(failed).await;
    }

    /// Reports attempts whose deploy failed as FAILED (recoverable), as if they had run, in
    /// one batch.
    async fn fail(&self, failed: Vec<(AttemptRef, String)>) {
        if failed.is_empty() {
            return;
        }
        let reports = failed
            .into_iter()
            .map(|(attempt, message)| Report {
                attempt,
                state: AttemptState::Failed,
                failure: Some(Failure::recoverable(format!(
                    "deploy to executor {} failed: {message}",
                    self.executor
                ))),
                missing_partition: None,
                checkpoint: None,
            })
            .collect();
        let (reply, _) = oneshot::channel();
        let _ = self
            .shared
            .tx
            .send(Request::Reports {
                executor: self.executor.clone(),
                reports,
                reply,
            })
            .await;
    }

    /// Sends a run of cancels, retrying transient failures (cancels are idempotent).
    async fn cancel(&mut self, attempts: Vec<AttemptRef>) {
        let count = attempts.len();
        let request = CancelTasksRequest {
            epoch: self.shared.epoch,
            attempts,
        };
        let client = &self.client;
        let answer = self
            .retrying(|| {
                let mut client = client.clone();
                let request = request.clone();
                async move { client.cancel_tasks(request).await }
            })
            .await;
        match answer {
            Ok(_) => {
                debug!(executor = %Escaped(&self.executor.0), attempts = count, "cancels sent");
                self.shared.rpc_succeeded(&self.executor);
            }
            Err(status) => {
                warn!(executor = %Escaped(&self.executor.0), attempts = count, code = ?status.code(),
                      message = %Escaped(status.message()), "cancel failed");
                self.shared.rpc_failed(&self.executor, &status).await;
            }
        }
    }

    /// Sends a run of releases as one call, retrying transient failures (idempotent).
    async fn release(&mut self, partitions: Vec<PartitionRef>) {
        let count = partitions.len();
        let request = ReleasePartitionsRequest {
            epoch: self.shared.epoch,
            partitions,
        };
        let client = &self.client;
        let answer = self
            .retrying(|| {
                let mut client = client.clone();
                let request = request.clone();
                async move { client.release_partitions(request).await }
            })
            .await;
        match answer {
            Ok(_) => self.shared.rpc_succeeded(&self.executor),
            Err(status) => {
                debug!(executor = %Escaped(&self.executor.0), partitions = count, code = ?status.code(),
                       message = %Escaped(status.message()), "release failed");
                self.shared.rpc_failed(&self.executor, &status).await;
            }
        }
    }

    /// Tells the executor a job ended, retrying transient failures (idempotent). Best effort:
    /// a failure is not counted against the executor (its heartbeats tell whether it is
    /// gone), and an executor without the call (UNIMPLEMENTED) keeps the job's folders.
    async fn release_job(&mut self, job: String, checkpoints: Option<CheckpointStorage>) {
        let request = ReleaseJobRequest {
            epoch: self.shared.epoch,
            job_id: job.clone(),
            checkpoint_storage: checkpoints,
        };
        let client = &self.client;
        let answer = self
            .retrying(|| {
                let mut client = client.clone();
                let request = request.clone();
                async move { client.release_job(request).await }
            })
            .await;
        match answer {
            Ok(_) => self.shared.rpc_succeeded(&self.executor),
            Err(status) => {
                debug!(executor = %Escaped(&self.executor.0), job = %job, code = ?status.code(),
                       message = %Escaped(status.message()), "job release failed");
            }
        }
    }

    /// Sends a checkpoint command, retrying transient failures (each is idempotent on the
    /// executor). A trigger that does not get through is declined on behalf of its attempts
    /// as not running (not a checkpoint failure: the executor is most likely gone), so the
    /// checkpoint is aborted now rather than at its timeout; notifications and discards are
    /// best effort.
    async fn checkpoint(&mut self, order: CheckpointOrder) {
        let client = &self.client;
        let answer = self.retrying(|| order.clone().send(client.clone())).await;
        let status = match answer {
            Ok(_) => {
                self.shared.rpc_succeeded(&self.executor);
                return;
            }
            Err(status) => status,
        };
        debug!(executor = %Escaped(&self.executor.0), code = ?status.code(),
               message = %Escaped(status.message()), "checkpoint command failed");
        let CheckpointOrder::Trigger(r) = order else {
            return;
        };
        let reason = format!(
            "the trigger did not reach executor {}: {}",
            self.executor,
            status.message()
        );
        let reports = r
            .attempts
            .into_iter()
            .map(|attempt| {
                Report::checkpoint(
                    attempt,
                    CheckpointAnswer {
                        checkpoint_id: r.checkpoint_id,
                        acknowledged: false,
                        size_bytes: 0,
                        decline_reason: reason.clone(),
                        // Most likely the executor is gone: its loss fails the task over.
                        task_not_running: true,
                    },
                )
            })
            .collect();
        let (reply, _) = oneshot::channel();
        let _ = self
            .shared
            .tx
            .send(Request::Reports {
                executor: self.executor.clone(),
                reports,
                reply,
            })
            .await;
    }

    /// Runs `rpc`, retrying it at once up to `rpc.retries` times while it fails transiently
    /// (the executor unreachable or the answer lost): every command is idempotent on the
    /// executor, so a repeat is harmless.
    async fn retrying<T, Fut>(
        &self,
        rpc: impl FnMut() -> Fut,
    ) -> Result<tonic::Response<T>, tonic::Status>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let policy = ConstantBuilder::default()
            .with_delay(Duration::ZERO)
            .with_max_times(self.shared.settings.rpc.retries as usize);
        let mut rpc = rpc;
        let shared = self.shared.clone();
        (move || {
            let call = (shared.leads()).then(&mut rpc);
            async move {
                match call {
                    Some(call) => call.await,
                    None => Err(tonic::Status::failed_precondition(
                        "this jobmaster no longer leads",
                    )),
                }
            }
        })
        .retry(policy)
            .when(is_transient)
            .notify(|status, _| {
                debug!(executor = %Escaped(&self.executor.0), code = ?status.code(), "command retried")
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1::InputGate;

    fn request(subtask: u32) -> SubmitTaskRequest {
        SubmitTaskRequest {
            attempt: Some(AttemptRef {
                subtask,
                ..AttemptRef::default()
            }),
            ..SubmitTaskRequest::default()
        }
    }

    fn submit(subtask: u32) -> Order {
        Order::Submit(Deploy {
            request: request(subtask),
            shared: Vec::new(),
        })
    }

    fn cancel(subtask: u32) -> Order {
        Order::Cancel(AttemptRef {
            subtask,
            ..AttemptRef::default()
        })
    }

    fn subtasks(run: &[Order]) -> Vec<(bool, u32)> {
        run.iter()
            .map(|o| match o {
                Order::Submit(d) => (true, d.request.attempt.as_ref().map_or(0, |a| a.subtask)),
                Order::Cancel(a) => (false, a.subtask),
                Order::Release(_) | Order::ReleaseJob { .. } | Order::Checkpoint(_) => {
                    (false, u32::MAX)
                }
            })
            .collect()
    }

    fn partitions(n: u32) -> Vec<InputPartition> {
        (0..n)
            .map(|i| InputPartition {
                subtask: i,
                attempt: 2,
                location: String::new(),
                executor: format!("exec-{i}"),
            })
            .collect()
    }

    /// A consumer reading `list` through its first gate and a private list through its second.
    fn consumer(subtask: u32, list: &Arc<SharedInputs>) -> Order {
        let mut r = request(subtask);
        r.inputs = vec![
            InputGate {
                producer_vertex: "source".into(),
                ..InputGate::default()
            },
            InputGate {
                producer_vertex: "side".into(),
                partitions: partitions(1),
                ..InputGate::default()
            },
        ];
        Order::Submit(Deploy {
            request: r,
            shared: vec![(0, list.clone())],
        })
    }

    #[test]
    fn a_run_stops_at_the_next_kind_and_keeps_the_queue_order() {
        let mut pending: VecDeque<Order> =
            [submit(1), submit(2), cancel(1), cancel(2), submit(3)].into();
        let runs: Vec<Vec<(bool, u32)>> = std::iter::from_fn(|| {
            let run = take_run(&mut pending, usize::MAX);
            (!run.is_empty()).then(|| subtasks(&run))
        })
        .collect();
        assert_eq!(
            runs,
            vec![
                vec![(true, 1), (true, 2)],
                vec![(false, 1), (false, 2)],
                vec![(true, 3)]
            ]
        );
    }

    #[test]
    fn a_run_is_capped_by_count_and_by_size_but_takes_at_least_one() {
        let mut pending: VecDeque<Order> = (0..MAX_BATCH as u32 + 5).map(submit).collect();
        assert_eq!(take_run(&mut pending, usize::MAX).len(), MAX_BATCH);
        assert_eq!(pending.len(), 5);
        // A budget smaller than one order still sends that order alone.
        assert_eq!(
            subtasks(&take_run(&mut pending, 1)),
            vec![(true, MAX_BATCH as u32)]
        );
        let one = pending[0].encoded_len(&HashSet::new());
        assert_eq!(take_run(&mut pending, 2 * one).len(), 2);
        assert_eq!(pending.len(), 2);
    }

    #[test]
    fn a_shared_list_counts_once_per_batch_and_travels_once() {
        let list = SharedInputs::new(partitions(500));
        let orders = || -> VecDeque<Order> { (0..3).map(|i| consumer(i, &list)).collect() };
        let none = HashSet::new();
        let own: usize = orders()
            .iter()
            .map(|o| o.encoded_len(&none) - list.encoded_len)
            .sum();
        // Three consumers and the list once fit; the list three times would not.
        let mut pending = orders();
        let run = take_run(&mut pending, own + list.encoded_len);
        assert_eq!(run.len(), 3);
        let mut pending = orders();
        assert_eq!(take_run(&mut pending, own + list.encoded_len - 1).len(), 2);

        let deploys: Vec<Deploy> = run
            .into_iter()
            .filter_map(|o| match o {
                Order::Submit(d) => Some(d),
                _ => None,
            })
            .collect();
        let request = batch(7, deploys);
        assert_eq!(request.shared_partitions.len(), 1);
        assert_eq!(request.shared_partitions[0].partitions, partitions(500));
        for t in &request.tasks {
            assert_eq!(t.inputs[0].shared_partitions, 1);
            assert!(t.inputs[0].partitions.is_empty());
            assert_eq!(t.inputs[1].shared_partitions, 0);
        }
        // Unpacked, every task reads the full list, as a unary SubmitTask would carry it.
        let tasks = crate::api::batch::unbatch(request);
        assert_eq!(tasks.len(), 3);
        for (i, t) in tasks.into_iter().enumerate() {
            let t = t.expect("every shared list is in the batch");
            assert_eq!(t.epoch, 7);
            assert_eq!(t.attempt.as_ref().map(|a| a.subtask), Some(i as u32));
            assert_eq!(t.inputs[0].partitions, partitions(500));
            assert_eq!(t.inputs[0].shared_partitions, 0);
            assert_eq!(t.inputs[1].partitions, partitions(1));
        }
    }

    #[test]
    fn a_gate_naming_a_missing_shared_list_refuses_only_its_task() {
        let mut bad = request(1);
        bad.inputs = vec![InputGate {
            shared_partitions: 2,
            ..InputGate::default()
        }];
        let batch = SubmitTasksRequest {
            epoch: 1,
            tasks: vec![request(0), bad, request(2)],
            shared_partitions: vec![PartitionList::default()],
        };
        let tasks = crate::api::batch::unbatch(batch);
        assert!(tasks[0].is_ok() && tasks[2].is_ok());
        let status = tasks[1].as_ref().expect_err("list 2 of 1 does not exist");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
}
