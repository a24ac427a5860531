//! The fencing rule of [`super::connection`] (see its module comment) as a pure function of
//! the instants it is told: when the executor must have killed its attempts.

use std::time::{Duration, Instant};

/// The fencing rule (see the module's comment): when the executor must have killed its
/// attempts, from what it has been told. Pure: every instant is an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FenceClock {
    /// The JobMaster's `heartbeat.timeout`, from the last registration answer (`None` before
    /// the first one: no attempt can run yet).
    timeout: Option<Duration>,
    /// How long before the JobMaster's deadline the attempts are killed ([`margin`]).
    margin: Duration,
    /// The JobMaster declares this executor lost by timeout no sooner than `proof + timeout`:
    /// the send time of the last heartbeat answered without `reregister`, or the start of the
    /// last reconnect attempt refused.
    proof: Option<Instant>,
    /// The attempts were fenced and the executor has not registered since.
    fenced: bool,
    /// Registrations sent to other JobMasters (endpoint, send time) that may have registered
    /// this executor there: the deadline counts from no later than the earliest (see the
    /// module's comment).
    pins: Vec<(String, Instant)>,
}

impl FenceClock {
    pub(crate) fn new() -> FenceClock {
        FenceClock {
            timeout: None,
            margin: Duration::ZERO,
            proof: None,
            fenced: false,
            pins: Vec::new(),
        }
    }

    /// A registration was answered with the JobMaster's heartbeat `timeout` and `interval`;
    /// `floor` is `executor.fence-margin`. `fresh`: it was sent then under a session id never
    /// registered before, so the JobMaster counts the executor alive from no earlier than that
    /// (a session it knows already keeps its last heartbeat: that is no proof).
    pub(crate) fn registered(
        &mut self,
        timeout: Duration,
        interval: Duration,
        floor: Duration,
        fresh: Option<Instant>,
    ) {
        self.timeout = Some(timeout);
        self.margin = margin(floor, interval, timeout);
        self.fenced = false;
        if let Some(sent) = fresh {
            self.answered(sent);
        }
    }

    /// A heartbeat sent at `sent` was answered without `reregister`.
    pub(crate) fn answered(&mut self, sent: Instant) {
        self.proof = Some(self.proof.map_or(sent, |p| p.max(sent)));
    }

    /// A heartbeat sent at `sent` to `endpoint` was answered without `reregister`: proof, and
    /// that JobMaster counts this executor alive from its heartbeats now (its pin goes).
    pub(crate) fn answered_by(&mut self, endpoint: &str, sent: Instant) {
        self.answered(sent);
        self.unpin(endpoint);
    }

    /// A registration is sent to `endpoint`, not followed now, at `sent`: it may register this
    /// executor there whatever comes back, so the deadline counts from no later than `sent`.
    pub(crate) fn pin(&mut self, endpoint: &str, sent: Instant) {
        match self.pins.iter_mut().find(|(e, _)| e == endpoint) {
            Some((_, at)) => *at = (*at).min(sent),
            None => self.pins.push((endpoint.to_owned(), sent)),
        }
    }

    /// `endpoint` did not register this executor, or cannot act on it: it refused the
    /// connection, answered as a standby (its term, if it had one, is over), or registered it
    /// in a term no newer than the one followed.
    pub(crate) fn unpin(&mut self, endpoint: &str) {
        self.pins.retain(|(e, _)| e != endpoint);
    }

    /// A reconnect attempt started at `started` was refused, seen at `now`. Returns whether it
    /// kept the attempts alive (false once the fence deadline has passed or they were fenced).
    pub(crate) fn refused(&mut self, started: Instant, now: Instant) -> bool {
        if self.fenced || self.due(now) {
            return false;
        }
        self.proof = Some(self.proof.map_or(started, |p| p.max(started)));
        true
    }

    /// When the attempts must be dead, if they still may run.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.fenced {
            return None;
        }
        let pinned = self.pins.iter().map(|(_, at)| *at).min();
        let from = match (self.proof, pinned) {
            (Some(proof), Some(pin)) => proof.min(pin),
            (proof, pin) => proof.or(pin)?,
        };
        Some(from + self.timeout?.saturating_sub(self.margin))
    }

    /// Whether the attempts must be dead by `now`.
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    /// The attempts were killed (fenced, or declared lost): no deadline until the next
    /// registration (or [`FenceClock::reopen`]).
    pub(crate) fn fence(&mut self) {
        self.fenced = true;
        // The attempts die now: whoever registered them may fail them over.
        self.pins.clear();
    }

    /// A heartbeat sent after the registration was answered: the deadline runs again, from
    /// that fresh proof (told by [`FenceClock::answered`]).
    pub(crate) fn reopen(&mut self) {
        self.fenced = false;
    }

    pub(crate) fn margin(&self) -> Duration {
        self.margin
    }

    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    pub(crate) fn proof(&self) -> Option<Instant> {
        self.proof
    }
}

/// The fence margin: the largest of `executor.fence-margin` (`floor`: the kill, a late
/// timer), one heartbeat interval and a quarter of the heartbeat timeout. With the JobMaster's
/// rule `timeout ≥ 3 × interval`, `timeout − margin` still spans two intervals, so one late
/// answer does not fence a healthy executor.
pub(crate) fn margin(floor: Duration, interval: Duration, timeout: Duration) -> Duration {
    floor.max(interval).max(timeout / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A clock registered with timeout 4 s, interval 1 s, floor 500 ms: margin 1 s.
    fn registered() -> FenceClock {
        let mut c = FenceClock::new();
        c.registered(4 * S, S, ms(500), None);
        c
    }

    #[test]
    fn the_margin_is_the_largest_of_the_floor_an_interval_and_a_quarter_of_the_timeout() {
        assert_eq!(margin(ms(500), S, 4 * S), S);
        assert_eq!(margin(ms(500), ms(100), 3 * S), ms(750));
        assert_eq!(margin(ms(500), ms(100), S), ms(500));
        assert_eq!(margin(3 * S, S, 4 * S), 3 * S);
    }

    #[test]
    fn the_fence_deadline_counts_from_the_send_time_of_the_last_answered_heartbeat() {
        let t0 = Instant::now();
        let mut c = registered();
        assert_eq!(c.deadline(), None, "no proof yet: nothing can be due");
        // Sent at t0, its answer arrives much later: the deadline counts from t0.
        c.answered(t0);
        assert_eq!(c.deadline(), Some(t0 + 3 * S));
        assert!(!c.due(t0 + ms(2999)));
        assert!(c.due(t0 + 3 * S));
        // The JobMaster read that heartbeat at t0 or later, so it declares the executor lost at
        // t0 + 4 s at the earliest: the deadline is a whole margin before.
        assert!(c.deadline().expect("due") + c.margin() <= t0 + 4 * S);
        // A later answer moves it on; an answer to an older heartbeat does not move it back.
        c.answered(t0 + S);
        c.answered(t0 + ms(500));
        assert_eq!(c.deadline(), Some(t0 + 4 * S));
    }

    #[test]
    fn a_refused_reconnect_keeps_the_attempts_other_failures_do_not() {
        let t0 = Instant::now();
        let mut c = registered();
        c.answered(t0);
        // Timeouts and the like are not told to the clock at all: the deadline stays.
        assert_eq!(c.deadline(), Some(t0 + 3 * S));
        // Refused at t0 + 2 s (the attempt started then): no JobMaster listened; a new one
        // counts its timeout from its start, later than that.
        assert!(c.refused(t0 + 2 * S, t0 + 2 * S + ms(1)));
        assert_eq!(c.deadline(), Some(t0 + 5 * S));
        // Each refusal moves it on, by the attempt's start, not by when the refusal was seen.
        assert!(c.refused(t0 + 4 * S, t0 + 4 * S + ms(900)));
        assert_eq!(c.deadline(), Some(t0 + 7 * S));
        // Then the JobMaster's address stops refusing (a partition): the deadline holds.
        assert!(!c.due(t0 + 7 * S - ms(1)));
        assert!(c.due(t0 + 7 * S));
    }

    #[test]
    fn a_refusal_seen_after_the_deadline_changes_nothing() {
        let t0 = Instant::now();
        let mut c = registered();
        c.answered(t0);
        // Started before the deadline, seen after it: the attempts are due to be dead.
        assert!(!c.refused(t0 + ms(2900), t0 + ms(3100)));
        assert_eq!(c.deadline(), Some(t0 + 3 * S));
        // Once fenced, nothing brings a deadline back until the next registration.
        c.fence();
        assert_eq!(c.deadline(), None);
        assert!(!c.refused(t0 + 4 * S, t0 + 4 * S));
        c.answered(t0 + 5 * S);
        assert_eq!(c.deadline(), None);
        c.registered(4 * S, S, ms(500), None);
        assert_eq!(c.deadline(), Some(t0 + 8 * S));
    }

    #[test]
    fn a_registration_under_a_new_session_is_proof_and_one_under_a_known_session_is_not() {
        let t0 = Instant::now();
        let mut c = registered();
        c.answered(t0);
        c.fence();
        // Fenced long ago; registered again under the same id: the JobMaster kept its last
        // heartbeat, so the old proof stands (and is due).
        c.registered(4 * S, S, ms(500), None);
        assert!(c.due(t0 + 10 * S));
        // Under a new id, sent at t0 + 10 s: the JobMaster counts it alive from then.
        c.registered(4 * S, S, ms(500), Some(t0 + 10 * S));
        assert_eq!(c.deadline(), Some(t0 + 13 * S));
        // The first registration of all has no other proof.
        let mut first = FenceClock::new();
        first.registered(4 * S, S, ms(500), Some(t0));
        assert_eq!(first.deadline(), Some(t0 + 3 * S));
    }

    #[test]
    fn a_registration_due_already_waits_for_an_answer_without_a_deadline() {
        let t0 = Instant::now();
        let mut c = registered();
        c.answered(t0);
        c.fence();
        // Sent at t0 + 1 s under a new id, answered at t0 + 5 s (a partition healed): due.
        c.registered(4 * S, S, ms(500), Some(t0 + S));
        assert!(c.due(t0 + 5 * S));
        // The executor holds nothing (fenced): it keeps the door closed, no deadline...
        c.fence();
        assert_eq!(c.deadline(), None);
        // ...until a heartbeat sent at t0 + 5 s is answered.
        c.answered(t0 + 5 * S);
        c.reopen();
        assert_eq!(c.deadline(), Some(t0 + 8 * S));
    }

    #[test]
    fn a_registration_sent_elsewhere_pins_the_deadline_until_that_jobmaster_answers_a_heartbeat() {
        let t0 = Instant::now();
        let mut c = registered();
        c.answered_by("a", t0);
        // A search registers at "b" at t0 + 1 s; no answer (a timeout): "b" may count this
        // executor alive from then on, and declare it lost at t0 + 5 s.
        c.pin("b", t0 + S);
        // The silent leader answers again, heartbeats sent up to t0 + 4 s: the deadline still
        // counts from the registration, a whole margin before "b"'s.
        c.answered_by("a", t0 + 4 * S);
        assert_eq!(c.deadline(), Some(t0 + 4 * S));
        assert!(c.deadline().expect("due") + c.margin() <= t0 + S + 4 * S);
        // A second registration there does not move the pin on.
        c.pin("b", t0 + 2 * S);
        assert_eq!(c.deadline(), Some(t0 + 4 * S));
        // "b" answers a heartbeat sent at t0 + 4 s: it counts from its heartbeats now.
        c.answered_by("b", t0 + 4 * S);
        assert_eq!(c.deadline(), Some(t0 + 7 * S));
    }

    #[test]
    fn a_pin_goes_when_that_jobmaster_stands_by_or_the_attempts_are_fenced() {
        let t0 = Instant::now();
        let mut c = registered();
        c.answered(t0 + 4 * S);
        c.pin("b", t0);
        c.pin("c", t0 + S);
        assert_eq!(c.deadline(), Some(t0 + 3 * S), "the earliest pin counts");
        // "b" answers as a standby or refuses: no term of it can act on the registration.
        c.unpin("b");
        assert_eq!(c.deadline(), Some(t0 + 4 * S));
        // A fence kills the attempts: nobody's registration of them matters any more.
        c.fence();
        c.registered(4 * S, S, ms(500), Some(t0 + 5 * S));
        assert_eq!(c.deadline(), Some(t0 + 8 * S));
        // A pin before any proof still bounds the deadline.
        let mut first = FenceClock::new();
        first.registered(4 * S, S, ms(500), None);
        assert_eq!(first.deadline(), None);
        first.pin("b", t0);
        assert_eq!(first.deadline(), Some(t0 + 3 * S));
    }

    #[test]
    fn a_timeout_shorter_than_the_margin_fences_at_once() {
        let t0 = Instant::now();
        let mut c = FenceClock::new();
        c.registered(ms(400), ms(100), S, None);
        c.answered(t0);
        assert_eq!(c.deadline(), Some(t0));
    }
}
