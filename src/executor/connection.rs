//! The executor's link to its JobMaster (DESIGN §4, "Keeping tasks vs. fencing them"): the
//! session (registration, then the heartbeat stream), reconnection with backoff, and what
//! becomes of the attempts when the link fails.
//!
//! The rule, with the JobMaster's side of it in `server::gateway`:
//! - The JobMaster declares the executor lost once no heartbeat was *read* for its
//!   `heartbeat.timeout`. So once a heartbeat *sent* at `S` is answered (without `reregister`),
//!   the JobMaster cannot declare the executor lost by timeout before `S + timeout`. The same
//!   holds for a registration sent at `S` under a session id never registered before (the
//!   JobMaster counts a new session alive from its registration).
//! - **Fence**: when no answer moves that proof on, the executor kills its attempts (SIGKILL)
//!   at `proof + timeout − margin`, strictly before the JobMaster's deadline, then registers
//!   again under a new session. Timeouts, unreachable hosts, hung streams and resets are not
//!   evidence that the JobMaster is gone — a live JobMaster may be behind them.
//! - **Keep**: a reconnect attempt *refused* (nothing listens at the JobMaster's address: it
//!   crashed or is restarting) started at `R` proves no JobMaster ran then; one that starts
//!   later declares nobody lost before its own start plus its timeout. So a refusal moves the
//!   proof on to `R`, and the executor keeps its attempts for a restarted JobMaster to adopt,
//!   up to `jobmaster-reconnect-timeout` (then it stops them). A refusal seen once the fence
//!   deadline has passed changes nothing: the attempts are dead by then.
//! - **With several JobMasters** (`executor.jobmaster = "URL,URL,…"`, one elected leader, the
//!   others standbys answering `UNAVAILABLE`): a *round* of tries over the endpoints in which
//!   every one refused or answered as a standby without a leader (or named a leader that
//!   refused) is that evidence, from the round's start; backoff counts rounds. The choice of
//!   the endpoint and this rule are [`super::follow`]'s.
//! - **Switching**: while the leader's heartbeats go unanswered (one interval or more), the
//!   executor keeps its heartbeat stream open — closing it makes a live JobMaster lose it at
//!   once — and searches the other endpoints by registering there ([`super::follow::Search`]).
//!   One that registers it with a greater epoch leads in a newer term: the silent leader's
//!   lease lapsed, so it never sends a command again, and the executor refuses its epoch from
//!   now on. The executor switches there (the registration listed its attempts: the new
//!   leader adopts them) without fencing. Whatever else the search finds, the fence deadline
//!   stands.
//! - A registration sent elsewhere may register the executor there even if no answer comes
//!   (a timeout): that JobMaster would then count it alive from that send time, not from the
//!   silent leader's answers. So every such registration *pins* the deadline to count from no
//!   later than its send time, until that JobMaster answers a heartbeat (the executor follows
//!   it), says it does not lead or refuses the connection (its term is over), or the attempts
//!   are fenced.
//!
//! [`FenceClock`] is that rule as a pure function of the instants it is told; [`run`] feeds it
//! and a watchdog acts on its deadline.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, error, info, warn};

use super::Agent;
use super::fence::FenceClock;
use super::follow::{Follower, Found, Next, Probed, Search, Step};
use crate::api::leader::{Hint, endpoints, standby};
use crate::api::v1::{HeartbeatRequest, RegisterExecutorResponse};
use crate::log_text::Escaped;
use crate::security::connector::connection_refused;

/// Heartbeats whose answer is awaited, at most (older ones are forgotten: their answer, should
/// it come, then proves nothing, which only fences earlier).
const MAX_OUTSTANDING: usize = 1024;
/// The first delay between reconnect attempts; it doubles up to [`reconnect_cap`].
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest delay between two rounds of a search for a newer leader (at most a heartbeat
/// interval too): standbys answer at once, and a new leader found sooner saves the attempts.
const MAX_SEARCH_DELAY: Duration = Duration::from_millis(250);

/// The delay before reconnect attempt `failures + 1` after `failures` failed ones in a row
/// (the first attempt goes at once): 50 ms, doubling, at most `cap`.
pub(crate) fn reconnect_delay(failures: u32, cap: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    FIRST_RETRY
        .saturating_mul(1 << (failures - 1).min(16))
        .min(cap)
}

/// The cap of [`reconnect_delay`]: a heartbeat interval, at most a second. While the
/// JobMaster is gone each refused attempt moves the fence deadline on, and the deadline is at
/// least two intervals away, so refusals keep coming in time.
fn reconnect_cap(interval: Option<Duration>) -> Duration {
    interval
        .unwrap_or(Duration::from_secs(1))
        .clamp(FIRST_RETRY, Duration::from_secs(1))
}

/// The clock shared by the connection loop (which feeds it) and the watchdog (which fences
/// at its deadline).
struct Link {
    clock: Mutex<FenceClock>,
    /// The clock's deadline, for the watchdog.
    deadline: watch::Sender<Option<Instant>>,
    /// Counts the watchdog's fences, once the killed attempts are gone (or given up on): a
    /// session in progress ends then, and only then drops its heartbeat stream.
    fences: watch::Sender<u64>,
    /// The session id registered last (ids are never reused: a new one is new to the
    /// JobMaster too).
    registered: Mutex<Option<String>>,
}

impl Link {
    fn new() -> Link {
        Link {
            clock: Mutex::new(FenceClock::new()),
            deadline: watch::Sender::new(None),
            fences: watch::Sender::new(0),
            registered: Mutex::new(None),
        }
    }

    /// Changes the clock and publishes its new deadline.
    fn update<T>(&self, change: impl FnOnce(&mut FenceClock) -> T) -> T {
        let (result, deadline) = {
            let mut clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
            let result = change(&mut clock);
            (result, clock.deadline())
        };
        self.deadline.send_if_modified(|d| {
            let changed = *d != deadline;
            *d = deadline;
            changed
        });
        result
    }

    fn read(&self) -> FenceClock {
        self.clock.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records that `session_id` registered; whether for the first time.
    fn first_registration(&self, session_id: &str) -> bool {
        let mut last = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        let first = last.as_deref() != Some(session_id);
        *last = Some(session_id.to_owned());
        first
    }
}

/// Aborts a spawned task when dropped (the connection loop is aborted at shutdown).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a session ended (an error before the heartbeat stream opened is an `Err`).
enum End {
    /// The JobMaster answered `reregister`: the attempts were killed.
    Reregister,
    /// The watchdog fenced the attempts, or the session id changed under the registration.
    Fenced,
    /// The heartbeat stream ended (the JobMaster closed it, or the connection broke); whether
    /// any of its heartbeats had been answered, and the leader it named if it ended with a
    /// standby's answer (it lost the election).
    Closed {
        answered: bool,
        leader: Option<String>,
    },
    /// While the JobMaster was silent, `endpoint` registered this executor in a newer term
    /// (its answer, and when that registration was sent): it leads now. Or, without an
    /// answer, `endpoint` refused the registration because it declared this session lost
    /// (registering there again says so, and the attempts are killed).
    Switch {
        endpoint: String,
        registered: Option<Registered>,
    },
}

/// A registration's answer, its send time and the session id it registered.
type Registered = (RegisterExecutorResponse, Instant, String);

/// An outage: since when the JobMaster is unreachable, and what was done about it.
struct Outage {
    since: Instant,
    /// Reconnect attempts that failed in a row.
    failures: u32,
    /// "Keeping the attempts" was logged.
    kept: bool,
    /// The attempts were stopped for `jobmaster-reconnect-timeout`.
    stopped: bool,
}

impl Outage {
    fn new(agent: &Agent, reconnect_timeout: Duration) -> Outage {
        if !agent.lock().attempts.is_empty() {
            warn!(
                timeout = ?reconnect_timeout,
                "lost the jobmaster: reconnecting (attempts are kept while it is gone, fenced if \
                 it is merely unreachable)"
            );
        }
        Outage {
            since: Instant::now(),
            failures: 0,
            kept: false,
            stopped: false,
        }
    }
}

/// Registers, keeps a heartbeat stream open, and reconnects when it ends, until aborted; keeps
/// or fences the attempts as the module's comment says, following the leader among the
/// JobMasters of `executor.jobmaster` as [`follow`](super::follow) says.
pub(crate) async fn run(agent: Arc<Agent>) {
    let link = Arc::new(Link::new());
    let _watchdog = AbortOnDrop(tokio::spawn(watchdog(agent.clone(), link.clone())));
    let reconnect_timeout = agent.config.jobmaster_reconnect_timeout;
    let list = endpoints(&agent.config.jobmaster).unwrap_or_default();
    let several = list.len() > 1;
    let only = list.first().cloned().unwrap_or_default();
    let Some(mut follower) = Follower::new(list.clone()) else {
        // `executor::run` checked the list before it started this loop.
        error!("no jobmaster endpoint: the executor cannot register");
        return;
    };
    let mut interval: Option<Duration> = None;
    let mut outage: Option<Outage> = None;
    // A registration a search made with the new leader, for the next session.
    let mut switched: Option<Registered> = None;
    loop {
        let started = Instant::now();
        let endpoint = follower.current().to_owned();
        follower.trying(started);
        let ended = match agent.gateway.point(&endpoint) {
            Ok(()) => {
                // Which JobMaster it follows is news with HA, or when a standby named it.
                let follows = several || endpoint != only;
                let given = switched.take();
                let link = (&*link, list.as_slice());
                session(&agent, link, &mut interval, &endpoint, follows, given)
                    .await
                    .map_err(Failure::Call)
            }
            Err(error) => Err(Failure::Endpoint(error.to_string())),
        };
        // Whether to try again at once (the next endpoint of the same round).
        let mut at_once = false;
        match ended {
            Ok(End::Reregister) => {
                // The session id is new: register at once.
                follower.led();
                outage = None;
                continue;
            }
            Ok(End::Switch {
                endpoint: leader,
                registered,
            }) => {
                // No outage: the attempts go on, adopted by the new leader.
                follower.switched(leader);
                outage = None;
                switched = registered;
                continue;
            }
            Ok(End::Fenced) => {
                // The attempts are dead and the session id is new: register at once, with
                // another JobMaster first (this one stopped answering).
                follower.led();
                follower.suspect();
                outage = None;
                continue;
            }
            // A registered session ended: the outage starts now, not at an earlier one.
            Ok(End::Closed {
                answered: true,
                leader,
            }) => {
                follower.led();
                redirect(&mut follower, leader);
                outage = Some(Outage::new(&agent, reconnect_timeout))
            }
            // Closed before any answer: a failed try, which backs off (a JobMaster that keeps
            // closing new streams must not be hammered).
            Ok(End::Closed {
                answered: false,
                leader,
            }) => {
                follower.led();
                redirect(&mut follower, leader);
                outage
                    .get_or_insert_with(|| Outage::new(&agent, reconnect_timeout))
                    .failures += 1;
            }
            // Registration refused: this session was declared lost while the stream was down.
            // The next try, under a new session, waits a backoff step: should the refusal
            // persist, the executor must not hammer the JobMaster.
            Err(Failure::Call(status)) if status.code() == tonic::Code::FailedPrecondition => {
                follower.led();
                warn!("declared lost by the jobmaster: killing attempts and registering again");
                kill_and_wait(&agent, &link, "declared lost by the jobmaster").await;
                outage
                    .get_or_insert_with(|| Outage::new(&agent, reconnect_timeout))
                    .failures += 1;
            }
            Err(failure) => {
                let current = outage.get_or_insert_with(|| Outage::new(&agent, reconnect_timeout));
                let found = found(&endpoint, &failure);
                if matches!(found, Found::Refused | Found::Standby(_)) {
                    // Whatever a registration sent there earlier did, that term is over.
                    link.update(|c| c.unpin(&endpoint));
                }
                match follower.found(found) {
                    Next::Try {
                        endpoint: next,
                        hinted,
                    } => {
                        at_once = true;
                        if hinted {
                            info!(endpoint = %Escaped(&next), standby = %Escaped(&endpoint),
                                  "a standby names the leader: trying it");
                        } else {
                            debug!(endpoint = %Escaped(&next), after = %Escaped(&endpoint),
                                   "trying the next jobmaster endpoint");
                        }
                    }
                    Next::RoundOver { no_leader, since } => {
                        current.failures += 1;
                        if no_leader {
                            let now = Instant::now();
                            let kept = link.update(|c| c.refused(since, now));
                            if kept && !current.kept && !agent.lock().attempts.is_empty() {
                                current.kept = true;
                                let left =
                                    reconnect_timeout.saturating_sub(current.since.elapsed());
                                if several {
                                    info!(keep_for = ?left, "no jobmaster leads (each endpoint refused \
                                          connections or is a standby without a leader): keeping \
                                          the attempts for the next leader to adopt");
                                } else {
                                    info!(keep_for = ?left, "jobmaster gone (connection refused): \
                                          keeping the attempts for it to adopt when it is back");
                                }
                            }
                        }
                    }
                }
            }
        }
        let Some(current) = outage.as_mut() else {
            continue;
        };
        if !current.stopped && current.since.elapsed() >= reconnect_timeout {
            current.stopped = true;
            if !agent.lock().attempts.is_empty() {
                warn!(
                    "jobmaster unreachable for too long: stopping attempts (SIGTERM, then SIGKILL)"
                );
                agent.stop_all("jobmaster unreachable");
            }
        }
        if !at_once {
            tokio::time::sleep(reconnect_delay(current.failures, reconnect_cap(interval))).await;
        }
    }
}

/// Why a try at an endpoint failed: its call failed, or the endpoint cannot be used (a standby
/// named a URL whose scheme does not match this executor's TLS).
enum Failure {
    Call(tonic::Status),
    Endpoint(String),
}

/// What a failed try at `endpoint` found, for [`Follower::found`] (logged).
fn found(endpoint: &str, failure: &Failure) -> Found {
    let status = match failure {
        Failure::Endpoint(why) => {
            warn!(endpoint = %Escaped(endpoint), why = %Escaped(why), "cannot use this jobmaster endpoint");
            return Found::Failed;
        }
        Failure::Call(status) => status,
    };
    if connection_refused(status) {
        debug!(endpoint = %Escaped(endpoint), "jobmaster endpoint refused the connection");
        return Found::Refused;
    }
    match standby(status) {
        Some(hint) => {
            if let Hint::Unusable(value) = &hint {
                warn!(endpoint = %Escaped(endpoint), leader = %Escaped(value),
                      "a standby jobmaster named a leader that is no URL");
            } else {
                debug!(endpoint = %Escaped(endpoint), leader = ?hint, "jobmaster endpoint is a standby");
            }
            Found::Standby(hint)
        }
        None => {
            debug!(endpoint = %Escaped(endpoint), code = ?status.code(),
                   message = %Escaped(status.message()), "jobmaster unreachable");
            Found::Failed
        }
    }
}

/// A leader's session ended with a standby's answer naming `leader`: start there.
fn redirect(follower: &mut Follower, leader: Option<String>) {
    if let Some(leader) = leader {
        info!(endpoint = %Escaped(&leader), "the jobmaster lost the lead: following the leader");
        follower.redirect(leader);
    }
}

/// One session: registers under the current session id (unless `given` is a registration a
/// search made there already), then heartbeats every interval until the stream ends, the
/// JobMaster says `reregister`, the watchdog fences, or a search finds a newer leader among
/// `list` (`executor.jobmaster`) while this one is silent. `endpoint` is the JobMaster's;
/// `follows`: say that the executor follows it as the leader.
async fn session(
    agent: &Arc<Agent>,
    (link, list): (&Link, &[String]),
    interval_seen: &mut Option<Duration>,
    endpoint: &str,
    follows: bool,
    given: Option<Registered>,
) -> Result<End, tonic::Status> {
    let mut fences = link.fences.subscribe();
    let session_id = agent.session();
    let (registered, sent) = match given {
        // Made under this very session (a fence since then changed the id: register again).
        Some((registered, sent, id)) if id == session_id => (registered, sent),
        _ => {
            let sent = Instant::now();
            (super::register(agent).await?, sent)
        }
    };
    let interval = Duration::from_millis(registered.heartbeat_interval_ms.max(10));
    let timeout = Duration::from_millis(registered.heartbeat_timeout_ms);
    *interval_seen = Some(interval);
    // A fresh session is proof in itself; without it, an executor fenced (its last answer
    // long past) would fence again the moment it registers.
    let fresh = link.first_registration(&session_id).then_some(sent);
    // Whether the door to new attempts stays closed until the first answer (see below).
    let mut closed = {
        // Under the lock that fences: a fence since the id was read (it changed the id)
        // makes this registration stale, and it must not reopen the door to attempts.
        let mut state = agent.lock();
        if agent.session() != session_id {
            return Ok(End::Fenced);
        }
        let now = Instant::now();
        link.update(|c| {
            c.registered(timeout, interval, agent.config.fence_margin, fresh);
            // A registration that took long (sent before a partition healed) may be due
            // already. With the door closed since the last fence nothing runs here: keep it
            // closed, without a deadline, until a heartbeat of this session is answered,
            // rather than fence (and register) again at once.
            let hold = state.fenced && c.due(now);
            if hold {
                c.fence();
            } else {
                state.fenced = false;
            }
            hold
        })
    };
    let margin = link.read().margin();
    if follows {
        info!(endpoint = %Escaped(endpoint), epoch = registered.epoch, "following the leader");
    }
    info!(endpoint = %Escaped(endpoint), epoch = registered.epoch, interval = ?interval,
          timeout = ?timeout, fence_margin = ?margin, "registered with the jobmaster");
    if timeout.saturating_sub(margin) < interval * 2 {
        warn!(timeout = ?timeout, interval = ?interval, fence_margin = ?margin,
              "heartbeat timeout minus the fence margin is under two heartbeat intervals: a \
               late answer fences this executor's attempts (raise heartbeat.timeout or lower \
               executor.fence-margin)");
    }
    let (tx, rx) = mpsc::channel(4);
    let mut responses = agent
        .gateway
        .client()
        .heartbeat(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // (sequence, send time) of the heartbeats whose answer is awaited, oldest first.
    let mut sent: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut sequence = 0u64;
    let mut answered_any = false;
    let epoch = (*agent.epoch.borrow()).max(registered.epoch);
    let mut seeker = Seeker::new(
        Search::new(list.to_vec(), endpoint.to_owned(), epoch),
        interval,
    );
    loop {
        tokio::select! {
            _ = tick.tick() => {
                sequence += 1;
                let hb = heartbeat(agent, &session_id, sequence);
                match tx.try_send(hb) {
                    Ok(()) => {
                        if sent.len() == MAX_OUTSTANDING {
                            sent.pop_front();
                        }
                        sent.push_back((sequence, Instant::now()));
                    }
                    // Not even queued (the stream is backed up): it was not sent.
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        debug!(sequence, "heartbeat stream backed up: heartbeat skipped");
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        return Ok(End::Closed { answered: answered_any, leader: None });
                    }
                }
                seeker.maybe_start(agent, link, silent_for(&sent, Instant::now()));
            }
            _ = tokio::time::sleep_until(seeker.next_round.into()), if seeker.waiting() => {
                seeker.maybe_start(agent, link, silent_for(&sent, Instant::now()));
            }
            result = async {
                match seeker.probe.as_mut() {
                    Some(probe) => probe.call.as_mut().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(end) = seeker.done(agent, link, result).await {
                    return Ok(end);
                }
            }
            response = responses.next() => match response {
                Some(Ok(r)) => {
                    answered_any = true;
                    agent.adopt_epoch(r.epoch);
                    let at = answered(&mut sent, r.sequence);
                    if r.reregister {
                        // Killed while the stream is still open: the JobMaster loses this
                        // session at once when it closes, and may redeploy the attempts.
                        warn!("the jobmaster asks this executor to register again: killing attempts");
                        kill_and_wait(agent, link, "the jobmaster asked to register again").await;
                        return Ok(End::Reregister);
                    }
                    if let Some(at) = at {
                        link.update(|c| c.answered_by(endpoint, at));
                        if closed {
                            // Sent after the registration, answered: fresh proof.
                            closed = false;
                            let mut state = agent.lock();
                            link.update(FenceClock::reopen);
                            state.fenced = false;
                        }
                    }
                }
                // A registered session ended, cleanly or not (e.g. UNAVAILABLE while the
                // jobmaster shuts down): the outage starts now.
                Some(Err(status)) => {
                    debug!(code = ?status.code(), "heartbeat stream ended with an error");
                    let leader = match standby(&status) {
                        Some(Hint::Leader(url)) => Some(url),
                        _ => None,
                    };
                    return Ok(End::Closed { answered: answered_any, leader });
                }
                None => return Ok(End::Closed { answered: answered_any, leader: None }),
            },
            // A fence during this session (it changed the session id) whose attempts are dead
            // now: the stream may close. Never for an older fence: a closing stream makes the
            // JobMaster lose this session at once, its attempts alive or not.
            _ = fences.changed() => {
                if agent.session() != session_id {
                    return Ok(End::Fenced);
                }
            }
        }
    }
}

/// How long the oldest heartbeat still awaiting its answer has waited at `now` (`None`: every
/// heartbeat sent was answered).
fn silent_for(sent: &VecDeque<(u64, Instant)>, now: Instant) -> Option<Duration> {
    sent.front()
        .map(|(_, at)| now.saturating_duration_since(*at))
}

/// A registration a [`Seeker`] sent to another JobMaster, awaiting its answer.
struct Probe {
    endpoint: String,
    /// No later than its send time (the clock is pinned to it).
    sent: Instant,
    /// The session id it registers.
    session_id: String,
    call: std::pin::Pin<
        Box<dyn Future<Output = Result<RegisterExecutorResponse, tonic::Status>> + Send>,
    >,
}

/// A session's search for a newer leader while its JobMaster is silent (the module's
/// "Switching"; the choice of endpoints is [`Search`]'s): one registration at a time, rounds
/// apart by a growing delay.
struct Seeker {
    search: Search,
    /// The session's heartbeat interval: a heartbeat unanswered for that long starts a search.
    interval: Duration,
    probe: Option<Probe>,
    /// Rounds that found no new leader during this silence.
    rounds: u32,
    /// When the next round may start.
    next_round: Instant,
    /// A search runs (the JobMaster was silent when last looked at).
    active: bool,
}

impl Seeker {
    fn new(search: Search, interval: Duration) -> Seeker {
        Seeker {
            search,
            interval,
            probe: None,
            rounds: 0,
            next_round: Instant::now(),
            active: false,
        }
    }

    /// Whether it waits for its next round.
    fn waiting(&self) -> bool {
        self.active && self.probe.is_none()
    }

    /// Starts a round if the JobMaster has been silent for an interval (`silent`: how long
    /// the oldest heartbeat awaits its answer), none is in flight and the delay is over; ends
    /// the search once the JobMaster answers again.
    fn maybe_start(&mut self, agent: &Arc<Agent>, link: &Link, silent: Option<Duration>) {
        if silent.is_none_or(|s| s < self.interval) || !self.search.any() {
            if self.active {
                debug!("the jobmaster answers again: search for a new leader ended");
            }
            self.active = false;
            self.rounds = 0;
            self.next_round = Instant::now();
            return;
        }
        let now = Instant::now();
        if self.probe.is_some() || now < self.next_round {
            return;
        }
        if !self.active {
            info!(silent_for = ?silent.unwrap_or_default(),
                  "heartbeats unanswered: looking for a newer leader among the other jobmasters \
                   (the fence deadline stands)");
            self.active = true;
        }
        let first = self.search.round();
        self.launch(agent, link, first);
    }

    /// Sends a registration to `next`, or to the first endpoint after it that can be used;
    /// the round is over when there is none.
    fn launch(&mut self, agent: &Arc<Agent>, link: &Link, mut next: Option<String>) {
        while let Some(endpoint) = next.take() {
            match agent.gateway.client_of(&endpoint) {
                Ok(client) => {
                    // Pinned before it leaves: it may register this executor there.
                    let sent = Instant::now();
                    link.update(|c| c.pin(&endpoint, sent));
                    debug!(endpoint = %Escaped(&endpoint), "asking a jobmaster whether it leads");
                    let agent = agent.clone();
                    let session_id = agent.session();
                    let id = session_id.clone();
                    self.probe = Some(Probe {
                        endpoint,
                        sent,
                        session_id,
                        call: Box::pin(async move { super::register_at(&agent, client, id).await }),
                    });
                    return;
                }
                Err(error) => {
                    let _ = found(&endpoint, &Failure::Endpoint(error.to_string()));
                    if let Step::Try(after) = self.search.found(Probed::Found(Found::Failed)) {
                        next = Some(after);
                    }
                }
            }
        }
        self.rounds += 1;
        self.next_round =
            Instant::now() + reconnect_delay(self.rounds, self.interval.min(MAX_SEARCH_DELAY));
    }

    /// The registration in flight was answered: the end of the session if it found a newer
    /// leader (or one that declared this session lost: the attempts are killed first), else
    /// the next try.
    async fn done(
        &mut self,
        agent: &Arc<Agent>,
        link: &Link,
        result: Result<RegisterExecutorResponse, tonic::Status>,
    ) -> Option<End> {
        let probe = self.probe.take()?;
        let endpoint = probe.endpoint;
        let step = match result {
            Ok(registered) => {
                let step = self.search.found(Probed::Registered(registered.epoch));
                if let Step::Switch(leader) = step {
                    info!(endpoint = %Escaped(&leader), epoch = registered.epoch,
                          silent = %Escaped(self.search.silent()), silent_epoch = self.search.epoch(),
                          "a newer leader registered this executor while the jobmaster it followed \
                           was silent: switching to it, keeping the attempts for it to adopt");
                    return Some(End::Switch {
                        endpoint: leader,
                        registered: Some((registered, probe.sent, probe.session_id)),
                    });
                }
                // The silent leader under another URL, or an older term: nothing to act on.
                link.update(|c| c.unpin(&endpoint));
                step
            }
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                // It declared this session lost: its attempts are failed over there.
                warn!(endpoint = %Escaped(&endpoint),
                      "declared lost by a jobmaster: killing attempts and registering again");
                kill_and_wait(agent, link, "declared lost by the jobmaster").await;
                return Some(End::Switch {
                    endpoint,
                    registered: None,
                });
            }
            Err(status) => {
                let found = found(&endpoint, &Failure::Call(status));
                if matches!(found, Found::Refused | Found::Standby(_)) {
                    link.update(|c| c.unpin(&endpoint));
                }
                self.search.found(Probed::Found(found))
            }
        };
        match step {
            Step::Try(next) => self.launch(agent, link, Some(next)),
            Step::Switch(_) | Step::RoundOver => {
                self.rounds += 1;
                self.next_round = Instant::now()
                    + reconnect_delay(self.rounds, self.interval.min(MAX_SEARCH_DELAY));
            }
        }
        None
    }
}

/// The heartbeat numbered `sequence` of session `session_id`: every attempt held (running, or
/// ended with its report not yet answered) and every partition hosted.
fn heartbeat(agent: &Agent, session_id: &str, sequence: u64) -> HeartbeatRequest {
    let (attempts, partitions) = {
        let state = agent.lock();
        (
            state
                .attempts
                .values()
                .map(|r| r.attempt.clone())
                .chain(state.reporting.values().map(|(a, _)| a.clone()))
                .collect(),
            state.partitions.clone(),
        )
    };
    HeartbeatRequest {
        executor_id: agent.config.id.clone(),
        session_id: session_id.to_owned(),
        attempts,
        partitions,
        free_disk_bytes: agent.free_disk(),
        sequence,
    }
}

/// The send time of the heartbeat an answer echoing `sequence` answers, taken off `sent`
/// with every older one (answers come in order; an older one left was not answered). An
/// answer without a number (0, an older JobMaster) is taken for the oldest heartbeat awaiting
/// one, which is never later than the one it answers.
fn answered(sent: &mut VecDeque<(u64, Instant)>, sequence: u64) -> Option<Instant> {
    if sequence == 0 {
        return sent.pop_front().map(|(_, at)| at);
    }
    while let Some(&(n, at)) = sent.front() {
        if n > sequence {
            return None;
        }
        sent.pop_front();
        if n == sequence {
            return Some(at);
        }
    }
    None
}

/// Fences at the clock's deadline: kills the attempts, waits for them to be gone (at most the
/// margin), then ends the session in progress.
async fn watchdog(agent: Arc<Agent>, link: Arc<Link>) {
    let mut deadlines = link.deadline.subscribe();
    loop {
        let deadline = *deadlines.borrow_and_update();
        let Some(deadline) = deadline else {
            if deadlines.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => {}
            changed = deadlines.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        // An answer may have moved the deadline on just now: decide under the clock's lock.
        let now = Instant::now();
        let clock = link.update(|c| {
            let due = c.due(now);
            if due {
                c.fence();
            }
            due.then(|| c.clone())
        });
        let Some(clock) = clock else {
            continue;
        };
        let killed = agent.kill_all("self-fencing: heartbeats unanswered", true);
        warn!(
            attempts = killed,
            unanswered_for = ?clock.proof().map(|p| now.saturating_duration_since(p)),
            heartbeat_timeout = ?clock.timeout(),
            margin = ?clock.margin(),
            "self-fencing: heartbeats unanswered, killing the attempts before the jobmaster \
             declares this executor lost"
        );
        let started = Instant::now();
        if wait_attempts_gone(&agent, clock.margin()).await {
            if killed > 0 {
                info!(attempts = killed, took = ?started.elapsed(), "self-fenced: the attempts are dead");
            }
        } else {
            warn!(left = agent.lock().attempts.len(), margin = ?clock.margin(),
                  "attempts still alive a fence margin after the fence: the jobmaster may \
                   redeploy them while they run");
        }
        link.fences.send_modify(|n| *n += 1);
    }
}

/// Kills every attempt under a new session id, then waits (bounded) until they are gone.
async fn kill_and_wait(agent: &Agent, link: &Link, why: &str) {
    link.update(FenceClock::fence);
    let started = Instant::now();
    let killed = agent.kill_all(why, true);
    if !wait_attempts_gone(agent, Duration::from_secs(5)).await {
        warn!(
            left = agent.lock().attempts.len(),
            "killed attempts still alive after 5 s"
        );
    } else if killed > 0 {
        info!(attempts = killed, took = ?started.elapsed(), "the killed attempts are dead");
    }
}

/// Waits until the executor holds no attempt (each one leaves once its shim has exited, i.e.
/// once every process of it is dead), for at most `within`; returns whether it got there.
pub(crate) async fn wait_attempts_gone(agent: &Agent, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if agent.lock().attempts.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_search_waits_for_a_heartbeat_unanswered_for_an_interval() {
        let t0 = Instant::now();
        let mut sent: VecDeque<(u64, Instant)> = VecDeque::new();
        assert_eq!(silent_for(&sent, t0), None, "nothing awaited");
        sent.push_back((1, t0));
        sent.push_back((2, t0 + ms(100)));
        assert_eq!(
            silent_for(&sent, t0 + ms(150)),
            Some(ms(150)),
            "the oldest counts"
        );
        assert_eq!(answered(&mut sent, 1), Some(t0));
        assert_eq!(silent_for(&sent, t0 + ms(150)), Some(ms(50)));
    }

    #[test]
    fn an_answer_matches_its_heartbeat_by_number_and_an_unnumbered_one_the_oldest() {
        let t0 = Instant::now();
        let at = |n: u64| t0 + ms(100 * n);
        let mut sent: VecDeque<(u64, Instant)> = (1..=5).map(|n| (n, at(n))).collect();
        // Answer 2: heartbeat 1's answer was dropped; both leave.
        assert_eq!(answered(&mut sent, 2), Some(at(2)));
        assert_eq!(sent.front().map(|s| s.0), Some(3));
        // An answer to a heartbeat forgotten already proves nothing.
        assert_eq!(answered(&mut sent, 1), None);
        assert_eq!(sent.len(), 3);
        // Unnumbered: the oldest awaiting, never later than the one it answers.
        assert_eq!(answered(&mut sent, 0), Some(at(3)));
        assert_eq!(answered(&mut sent, 9), None);
        assert!(sent.is_empty());
    }

    #[test]
    fn reconnects_retry_at_once_then_within_200ms_doubling_up_to_the_cap() {
        let delays: Vec<u128> = (0..8).map(|n| reconnect_delay(n, S).as_millis()).collect();
        assert_eq!(delays, vec![0, 50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(reconnect_delay(40, S), S);
        // The cap is an interval (at most a second), so refusals keep moving the deadline on.
        assert_eq!(reconnect_cap(Some(ms(100))), ms(100));
        assert_eq!(reconnect_cap(Some(5 * S)), S);
        assert_eq!(reconnect_cap(None), S);
        assert_eq!(reconnect_delay(5, reconnect_cap(Some(ms(100)))), ms(100));
    }
}
