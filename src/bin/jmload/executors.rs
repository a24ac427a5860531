//! The simulated executors: the library's shared fake ([`jobmaster::fake_executor`]) with
//! jmload's options (batched reports, RUNNING at once, one attempt held per task, a cancel that
//! overtook its submit remembered), the [`Hub`] that counts and times what they get and send,
//! and their measuring heartbeat loop.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use jobmaster::api::v1::{AttemptRef, HeartbeatRequest, SubmitTaskRequest};
use jobmaster::core::AttemptState;
use jobmaster::fake_executor::{
    Executor, Holding, Observer, Options, Reports, RunningReport, UnknownCancels,
};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::{MAX_MESSAGE, RPC_TIMEOUT};

/// The fake's options for jmload; `unary_reports` is `--unary-reports`.
pub(crate) fn options(unary_reports: bool) -> Options {
    Options {
        reports: if unary_reports {
            Reports::Unary
        } else {
            Reports::Batched
        },
        running: RunningReport::AtOnce,
        holding: Holding::PerTask,
        unknown_cancels: UnknownCancels::Remember,
        unpack_batches: false,
        max_message: MAX_MESSAGE,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    Submit,
    Cancel,
    CanceledSent,
}

/// What every simulated executor shares: counters, and (while a failover run records) the
/// time of every SubmitTask, CancelTask and CANCELED report. The fake's [`Observer`].
#[derive(Default)]
pub(crate) struct Hub {
    pub(crate) submits: AtomicU64,
    pub(crate) cancels: AtomicU64,
    pub(crate) running_ok: AtomicU64,
    pub(crate) canceled_ok: AtomicU64,
    pub(crate) report_errors: AtomicU64,
    /// CancelTask calls that arrived before their attempt's SubmitTask.
    pub(crate) cancel_before_submit: AtomicU64,
    recording: AtomicBool,
    marks: Mutex<Vec<(Mark, Instant, u32)>>,
    /// SubmitTask calls for attempt number `target_attempt` since `begin`.
    pub(crate) target_attempt: AtomicU32,
    pub(crate) target_submits: AtomicU64,
    /// UpdateTaskStates calls made, and the reports they carried.
    report_batches: AtomicU64,
    batched_reports: AtomicU64,
    /// NotifyCheckpoint(complete) calls: (checkpoint, attempts, arrival).
    completions: Mutex<Vec<(u64, usize, Instant)>>,
}

impl Hub {
    pub(crate) fn new() -> Hub {
        Hub {
            target_attempt: AtomicU32::new(u32::MAX),
            ..Hub::default()
        }
    }

    fn mark(&self, mark: Mark, at: Instant, attempt: u32) {
        if self.recording.load(Ordering::Relaxed) {
            self.marks.lock().unwrap().push((mark, at, attempt));
        }
    }

    /// Starts recording for a run whose new attempts have number `target`.
    pub(crate) fn begin(&self, target: u32) {
        self.marks.lock().unwrap().clear();
        self.target_attempt.store(target, Ordering::SeqCst);
        self.target_submits.store(0, Ordering::SeqCst);
        self.recording.store(true, Ordering::SeqCst);
    }

    /// "calls (reports)" of UpdateTaskStates so far.
    pub(crate) fn report_calls(&self) -> String {
        format!(
            "{} ({})",
            self.report_batches.load(Ordering::Relaxed),
            self.batched_reports.load(Ordering::Relaxed)
        )
    }

    /// The completion notices of checkpoint `id` so far: attempts told, and the last arrival.
    pub(crate) fn completed(&self, id: u64) -> (usize, Option<Instant>) {
        let notices = self.completions.lock().unwrap();
        notices
            .iter()
            .filter(|(c, _, _)| *c == id)
            .fold((0, None), |(n, last), (_, k, at)| {
                (n + k, Some(last.map_or(*at, |l: Instant| l.max(*at))))
            })
    }

    pub(crate) fn end(&self) -> Vec<(Mark, Instant, u32)> {
        self.recording.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.marks.lock().unwrap())
    }
}

impl Observer for Hub {
    fn checkpoint_notified(
        &self,
        _exec: &Executor,
        checkpoint: u64,
        complete: bool,
        attempts: usize,
        at: Instant,
    ) {
        if complete {
            self.completions
                .lock()
                .unwrap()
                .push((checkpoint, attempts, at));
        }
    }

    fn submitted(&self, _exec: &Executor, task: &SubmitTaskRequest, at: Instant) {
        let Some(attempt) = &task.attempt else { return };
        self.submits.fetch_add(1, Ordering::Relaxed);
        if attempt.attempt == self.target_attempt.load(Ordering::Relaxed) {
            self.target_submits.fetch_add(1, Ordering::SeqCst);
        }
        self.mark(Mark::Submit, at, attempt.attempt);
    }

    fn submit_after_cancel(&self, _exec: &Executor, _attempt: &AttemptRef) {
        self.cancel_before_submit.fetch_add(1, Ordering::Relaxed);
    }

    fn cancel_received(&self, _exec: &Executor, attempt: &AttemptRef, _epoch: u64, at: Instant) {
        self.cancels.fetch_add(1, Ordering::Relaxed);
        self.mark(Mark::Cancel, at, attempt.attempt);
    }

    /// A CANCELED report counts as sent when the call carrying it is sent.
    fn reports_sending(
        &self,
        _exec: &Executor,
        reports: &[(AttemptRef, AttemptState)],
        batched: bool,
        at: Instant,
    ) {
        let mut canceled: Vec<u32> = reports
            .iter()
            .filter(|(_, state)| *state == AttemptState::Canceled)
            .map(|(a, _)| a.attempt)
            .collect();
        canceled.sort_unstable();
        canceled.dedup();
        for attempt in canceled {
            self.mark(Mark::CanceledSent, at, attempt);
        }
        if batched {
            self.report_batches.fetch_add(1, Ordering::Relaxed);
            self.batched_reports
                .fetch_add(reports.len() as u64, Ordering::Relaxed);
        }
    }

    /// Counts a report the daemon accepted or refused.
    fn report_answered(&self, _exec: &Executor, state: AttemptState, accepted: bool) {
        match (accepted, state) {
            (true, AttemptState::Running) => {
                self.running_ok.fetch_add(1, Ordering::Relaxed);
            }
            (true, _) => {
                self.canceled_ok.fetch_add(1, Ordering::Relaxed);
            }
            (false, _) => {
                self.report_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Registers `exec`; returns the heartbeat interval the daemon asks for.
pub(crate) async fn register_one(exec: &Executor) -> Result<Duration> {
    let answer = tokio::time::timeout(RPC_TIMEOUT, exec.register())
        .await
        .context("RegisterExecutor timed out")?
        .with_context(|| format!("RegisterExecutor {}", exec.id()))?;
    Ok(Duration::from_millis(answer.heartbeat_interval_ms.max(1)))
}

// ----- heartbeats ---------------------------------------------------------------------------

#[derive(Default)]
pub(crate) struct HbStats {
    pub(crate) sent: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) reregister: AtomicU64,
    /// Streams that ended without being asked to.
    pub(crate) ended: AtomicU64,
    /// Longest time between two answers on one stream while recording, in µs.
    pub(crate) max_gap_us: AtomicU64,
    /// Gaps longer than twice the interval while recording.
    pub(crate) late: AtomicU64,
    pub(crate) recording: AtomicBool,
    /// Registrations again after a stream ended (executors that reconnect only).
    pub(crate) reconnected: AtomicU64,
    /// Registration attempts that failed while reconnecting.
    pub(crate) register_retries: AtomicU64,
    /// New sessions taken after a `reregister` answer.
    pub(crate) reregistered: AtomicU64,
}

pub(crate) struct HbResult {
    /// Send → answer latencies in µs while recording.
    pub(crate) latencies: Vec<u32>,
    /// When the stream was closed on request.
    pub(crate) closed_at: Option<Instant>,
}

pub(crate) struct HbHandle {
    pub(crate) close: Arc<Notify>,
    pub(crate) first: Option<oneshot::Receiver<()>>,
    pub(crate) join: JoinHandle<HbResult>,
}

impl HbHandle {
    pub(crate) async fn first_answer(&mut self, timeout: Duration) -> Result<()> {
        let first = self.first.take().context("first answer already awaited")?;
        tokio::time::timeout(timeout, first)
            .await
            .context("no heartbeat answer in time")?
            .map_err(|_| anyhow!("the heartbeat stream ended before its first answer"))
    }
}

/// One executor's heartbeat stream: a heartbeat at once, then one every `interval` from
/// `phase`; each lists the attempts the executor holds.
///
/// When the stream ends (the JobMaster went away) the loop returns, unless `reconnect` is set:
/// then it registers again every `reconnect` until the JobMaster answers (a restarted one, on
/// the same address), listing the attempts it still holds, and opens a new stream — as a
/// real executor's connection loop does (it retries every 200 ms). Told to register again
/// (`reregister`: this session was declared lost), it drops its attempts and takes a new
/// session first.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn heartbeat_loop(
    exec: Arc<Executor>,
    interval: Duration,
    phase: Duration,
    stats: Arc<HbStats>,
    mut stop: watch::Receiver<bool>,
    close: Arc<Notify>,
    first: oneshot::Sender<()>,
    reconnect: Option<Duration>,
) -> HbResult {
    let mut result = HbResult {
        latencies: Vec::new(),
        closed_at: None,
    };
    let mut first = Some(first);
    let mut interval = interval;
    let mut phase = phase;
    loop {
        match one_stream(
            &exec,
            interval,
            phase,
            &stats,
            &mut stop,
            &close,
            &mut first,
            &mut result,
            reconnect.is_some(),
        )
        .await
        {
            StreamEnd::Stopped => return result,
            StreamEnd::Ended | StreamEnd::Reregister if reconnect.is_none() => return result,
            StreamEnd::Ended => {}
            StreamEnd::Reregister => exec.new_session(format!(
                "{}-{}-{}",
                exec.id(),
                std::process::id(),
                stats.reregistered.fetch_add(1, Ordering::Relaxed)
            )),
        }
        let retry = reconnect.unwrap_or_default();
        // Register again until the JobMaster answers (or the run stops).
        loop {
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = stop.changed() => return result,
            }
            match tokio::time::timeout(RPC_TIMEOUT, exec.register()).await {
                Ok(Ok(answer)) => {
                    interval = Duration::from_millis(answer.heartbeat_interval_ms.max(1));
                    stats.reconnected.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                _ => {
                    stats.register_retries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        phase = interval;
    }
}

/// How one heartbeat stream ended.
enum StreamEnd {
    /// The run stopped, or the stream was closed on request.
    Stopped,
    /// The JobMaster ended it (or could not be reached).
    Ended,
    /// The JobMaster does not know this session: register again with a new one.
    Reregister,
}

#[allow(clippy::too_many_arguments)]
async fn one_stream(
    exec: &Arc<Executor>,
    interval: Duration,
    phase: Duration,
    stats: &HbStats,
    stop: &mut watch::Receiver<bool>,
    close: &Notify,
    first: &mut Option<oneshot::Sender<()>>,
    result: &mut HbResult,
    follow_reregister: bool,
) -> StreamEnd {
    let (tx, rx) = mpsc::channel::<HeartbeatRequest>(4);
    let mut sent_at = VecDeque::new();
    let Some(hb) = exec.next_heartbeat() else {
        return StreamEnd::Stopped;
    };
    if tx.send(hb).await.is_err() {
        return StreamEnd::Stopped;
    }
    sent_at.push_back(Instant::now());
    stats.sent.fetch_add(1, Ordering::Relaxed);
    let mut client = exec.gateway();
    let mut inbound =
        match tokio::time::timeout(RPC_TIMEOUT, client.heartbeat(ReceiverStream::new(rx))).await {
            Ok(Ok(response)) => response.into_inner(),
            _ => {
                stats.ended.fetch_add(1, Ordering::Relaxed);
                return StreamEnd::Ended;
            }
        };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_answer: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = close.notified() => {
                let at = Instant::now();
                drop(inbound);
                drop(tx);
                result.closed_at = Some(at);
                return StreamEnd::Stopped;
            }
            _ = stop.changed() => return StreamEnd::Stopped,
            _ = tick.tick() => {
                let Some(hb) = exec.next_heartbeat() else {
                    continue;
                };
                if tx.send(hb).await.is_err() {
                    if stats.ended.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("jmload: heartbeat stream of {} closed for sending", exec.id());
                    }
                    return StreamEnd::Ended;
                }
                sent_at.push_back(Instant::now());
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            message = inbound.message() => match message {
                Ok(Some(answer)) => {
                    let now = Instant::now();
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                    let recording = stats.recording.load(Ordering::Relaxed);
                    if let Some(sent) = sent_at.pop_front()
                        && recording
                    {
                        result.latencies.push(micros(now - sent));
                    }
                    if let Some(last) = last_answer
                        && recording
                    {
                        let gap = now - last;
                        stats.max_gap_us.fetch_max(u64::from(micros(gap)), Ordering::Relaxed);
                        if gap > interval * 2 {
                            stats.late.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    last_answer = Some(now);
                    exec.heartbeat_answered(&answer);
                    if let Some(f) = first.take() {
                        let _ = f.send(());
                    }
                    if answer.reregister {
                        stats.reregister.fetch_add(1, Ordering::Relaxed);
                        if follow_reregister {
                            return StreamEnd::Reregister;
                        }
                    }
                }
                other => {
                    if !*stop.borrow() {
                        let n = stats.ended.fetch_add(1, Ordering::Relaxed);
                        if n < 5 {
                            let why = match other {
                                Err(status) => format!("{:?}: {}", status.code(), status.message()),
                                _ => "ended by the daemon".to_owned(),
                            };
                            eprintln!("jmload: heartbeat stream of {} ended: {why}", exec.id());
                        }
                    }
                    return StreamEnd::Ended;
                }
            },
        }
    }
}

pub(crate) fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}
