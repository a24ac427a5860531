//! Which JobMaster endpoint the executor tries next, and when a round of tries is evidence that
//! no JobMaster leads (DESIGN §4 with HA; [`super::connection`] acts on it).
//!
//! The rule:
//! - A round starts at the endpoint that led last (one a standby named counts), else at the
//!   first of `executor.jobmaster`, and walks the list from there.
//! - A standby that names the leader (`jobmaster-leader`) sends the round straight there, even
//!   to an endpoint outside the list; a refusal or a standby that knows no leader sends it to
//!   the next endpoint of the list. Each endpoint is tried at most once a round; the round ends
//!   when none is left, or when one answers as the leader.
//! - The backoff between reconnects counts rounds, not endpoints: a longer list does not slow
//!   the first retries.
//! - A round is **evidence that no JobMaster leads** when every endpoint tried in it refused
//!   the connection or answered as a standby without a leader, or named a leader that refused
//!   or, tried in the same round, itself answered as a standby without a leader.
//!   It keeps the attempts as one refused connection did before HA (from the round's start:
//!   any leader elected later counts its heartbeat timeout from its election). Anything else —
//!   a timeout, a named leader that does not answer, an unusable hint — is no evidence.
//!
//! - **Switching** while the leader is silent (its heartbeats unanswered, before the fence
//!   deadline): the executor keeps its heartbeat stream to the silent leader and searches the
//!   *other* endpoints in rounds (never the silent one; a standby's hint naming another
//!   endpoint goes first). Only an endpoint that *registers* it and answers with an epoch
//!   greater than the silent leader's is a new leader: it switches there. Nothing else a search
//!   finds — "nobody leads", refusals, the silent leader named again, a registration answered
//!   with the same epoch (the silent leader under another URL) — changes anything: the fence
//!   deadline stands.
//!
//! [`Follower`] is that rule as a pure state machine of what it is told; [`Search`] the
//! search for a new leader.

use std::collections::VecDeque;
use std::time::Instant;

use crate::api::leader::Hint;

/// What one try at an endpoint found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// The connection was refused: nothing listens there.
    Refused,
    /// A standby answered; what it says about the leader.
    Standby(Hint),
    /// Anything else failed: a timeout, a reset, an endpoint that cannot be used. No evidence
    /// either way.
    Failed,
}

/// What to do after a try that did not reach the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Try this endpoint at once, in the same round; `hinted`: a standby named it the leader.
    Try { endpoint: String, hinted: bool },
    /// The round is over: back off, then start the next one (at [`Follower::current`]).
    /// `no_leader`: the round is evidence that no JobMaster led since `since` (its start).
    RoundOver { no_leader: bool, since: Instant },
}

/// The endpoint choice of the module's rule.
#[derive(Debug, Clone)]
pub(crate) struct Follower {
    /// `executor.jobmaster`, in order (never empty).
    list: Vec<String>,
    /// The endpoint that led last.
    leader: Option<String>,
    /// The endpoint being tried.
    current: String,
    /// The endpoints left to try this round, in order.
    pending: VecDeque<String>,
    /// What the endpoints tried this round found, in order.
    tried: Vec<(String, Found)>,
    /// When the round's first try started.
    since: Option<Instant>,
}

impl Follower {
    /// A follower of `list`; `None` if it is empty.
    pub(crate) fn new(list: Vec<String>) -> Option<Follower> {
        let first = list.first()?.clone();
        let mut f = Follower {
            list,
            leader: None,
            current: first,
            pending: VecDeque::new(),
            tried: Vec::new(),
            since: None,
        };
        f.new_round(None);
        Some(f)
    }

    /// The endpoint to try now.
    pub(crate) fn current(&self) -> &str {
        &self.current
    }

    /// The endpoint that led last, if any did.
    #[cfg(test)]
    pub(crate) fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// A try of [`Follower::current`] starts at `at` (the first one starts the round).
    pub(crate) fn trying(&mut self, at: Instant) {
        self.since.get_or_insert(at);
    }

    /// The current endpoint answered as the leader (it registered this executor, or refused
    /// the registration itself): the next round starts there.
    pub(crate) fn led(&mut self) {
        self.leader = Some(self.current.clone());
        self.new_round(None);
    }

    /// The current endpoint led but stopped answering, and the executor fenced its attempts:
    /// the next round starts at the endpoint after it and tries it last (a frozen leader's
    /// socket still accepts connections, and a try there lasts a whole RPC timeout).
    pub(crate) fn suspect(&mut self) {
        let n = self.list.len();
        let next = self
            .list
            .iter()
            .position(|e| *e == self.current)
            .map(|i| self.list[(i + 1) % n].clone());
        self.leader = None;
        self.new_round(next);
    }

    /// A search found `leader` leading in a newer term and registered there: it leads now,
    /// and the next round starts there.
    pub(crate) fn switched(&mut self, leader: String) {
        self.leader = Some(leader);
        self.new_round(None);
    }

    /// The leader's session ended with a standby's answer naming `leader`: the next round
    /// starts there.
    pub(crate) fn redirect(&mut self, leader: String) {
        self.new_round(Some(leader));
    }

    /// The current endpoint did not lead: what it found, and what to do next.
    pub(crate) fn found(&mut self, found: Found) -> Next {
        let endpoint = std::mem::take(&mut self.current);
        let mut hinted = false;
        if let Found::Standby(Hint::Leader(leader)) = &found
            && !self.tried(leader)
            && *leader != endpoint
        {
            self.pending.retain(|e| e != leader);
            self.pending.push_front(leader.clone());
            hinted = true;
        }
        self.tried.push((endpoint, found));
        while let Some(next) = self.pending.pop_front() {
            if !self.tried(&next) {
                self.current = next.clone();
                return Next::Try {
                    endpoint: next,
                    hinted,
                };
            }
        }
        let no_leader = no_leader(&self.tried);
        let since = self.since.unwrap_or_else(Instant::now);
        self.new_round(None);
        Next::RoundOver { no_leader, since }
    }

    /// What the endpoints tried this round found.
    #[cfg(test)]
    pub(crate) fn round(&self) -> &[(String, Found)] {
        &self.tried
    }

    fn tried(&self, endpoint: &str) -> bool {
        self.tried.iter().any(|(e, _)| e == endpoint)
    }

    /// Starts a round at `first`, else at the last leader, else at the first of the list; the
    /// list follows from there (from its start when the first endpoint is not in it).
    fn new_round(&mut self, first: Option<String>) {
        let start = first
            .or_else(|| self.leader.clone())
            .unwrap_or_else(|| self.list[0].clone());
        let at = self.list.iter().position(|e| *e == start);
        let n = self.list.len();
        self.pending = match at {
            Some(i) => (1..n).map(|k| self.list[(i + k) % n].clone()).collect(),
            None => self.list.iter().cloned().collect(),
        };
        self.current = start;
        self.tried.clear();
        self.since = None;
    }
}

/// What one try of a [`Search`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probed {
    /// It did not register the executor: what it was.
    Found(Found),
    /// It registered the executor and answered with this epoch.
    Registered(u64),
}

/// What a [`Search`] does after a try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Try this endpoint at once, in the same round.
    Try(String),
    /// This endpoint leads in a newer term than the silent leader: switch to it.
    Switch(String),
    /// The round found no new leader: wait, then start another ([`Search::round`]).
    RoundOver,
}

/// The search for a new leader while the followed one (`silent`) does not answer (the module's
/// rule, "Switching"): rounds over the other endpoints, a hint first, the silent one never.
#[derive(Debug, Clone)]
pub(crate) struct Search {
    /// `executor.jobmaster`, in order.
    list: Vec<String>,
    /// The endpoint followed now, whose heartbeats go unanswered.
    silent: String,
    /// Its epoch: only a registration answered with a greater one is a new leader.
    epoch: u64,
    /// The endpoint being tried.
    current: Option<String>,
    /// The endpoints left to try this round, in order.
    pending: VecDeque<String>,
    /// The endpoints tried this round.
    tried: Vec<String>,
}

impl Search {
    /// A search for a leader newer than `silent`, which leads with `epoch`.
    pub(crate) fn new(list: Vec<String>, silent: String, epoch: u64) -> Search {
        Search {
            list,
            silent,
            epoch,
            current: None,
            pending: VecDeque::new(),
            tried: Vec::new(),
        }
    }

    /// The endpoint followed now, silent.
    pub(crate) fn silent(&self) -> &str {
        &self.silent
    }

    /// Its epoch.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether there is any endpoint to search (one listed endpoint, followed now: none).
    pub(crate) fn any(&self) -> bool {
        self.list.iter().any(|e| *e != self.silent)
    }

    /// Starts a round: the endpoints after the silent one in the list, wrapping around (the
    /// whole list when it is not listed). Returns the first one to try, if any.
    pub(crate) fn round(&mut self) -> Option<String> {
        let n = self.list.len();
        let at = self.list.iter().position(|e| *e == self.silent);
        self.pending = match at {
            Some(i) => (1..n).map(|k| self.list[(i + k) % n].clone()).collect(),
            None => self.list.iter().cloned().collect(),
        };
        self.tried.clear();
        self.current = self.pending.pop_front();
        self.current.clone()
    }

    /// The current endpoint's try found `probed`: what to do next.
    pub(crate) fn found(&mut self, probed: Probed) -> Step {
        let Some(endpoint) = self.current.take() else {
            return Step::RoundOver;
        };
        match probed {
            Probed::Registered(epoch) if epoch > self.epoch => return Step::Switch(endpoint),
            // The silent leader under another URL (same epoch), or an older term's: no news.
            Probed::Registered(_) => {}
            Probed::Found(Found::Standby(Hint::Leader(leader))) => {
                if leader != self.silent && leader != endpoint && !self.tried.contains(&leader) {
                    self.pending.retain(|e| *e != leader);
                    self.pending.push_front(leader);
                }
            }
            Probed::Found(_) => {}
        }
        self.tried.push(endpoint);
        while let Some(next) = self.pending.pop_front() {
            if !self.tried.contains(&next) {
                self.current = Some(next.clone());
                return Step::Try(next);
            }
        }
        Step::RoundOver
    }
}

/// Whether a round that found `tried` is evidence that no JobMaster leads (see the module's
/// rule): every endpoint refused, or was a standby without a leader, or named a leader that
/// refused in this round or itself answered as a standby without a leader (a leader that
/// stepped down while its key still names it in etcd: nobody else can lead before that key
/// goes, and it says nobody leads only within its trust of a fresh etcd read).
pub(crate) fn no_leader(tried: &[(String, Found)]) -> bool {
    let refused = |endpoint: &str| {
        tried.iter().any(|(e, f)| {
            e == endpoint && matches!(f, Found::Refused | Found::Standby(Hint::NoLeader))
        })
    };
    !tried.is_empty()
        && tried.iter().all(|(_, found)| match found {
            Found::Refused | Found::Standby(Hint::NoLeader) => true,
            Found::Standby(Hint::Leader(leader)) => refused(leader),
            Found::Standby(Hint::Unusable(_)) | Found::Failed => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follower(list: &[&str]) -> Follower {
        Follower::new(list.iter().map(|s| (*s).to_owned()).collect()).expect("not empty")
    }

    fn try_(endpoint: &str, hinted: bool) -> Next {
        Next::Try {
            endpoint: endpoint.into(),
            hinted,
        }
    }

    fn leader(url: &str) -> Found {
        Found::Standby(Hint::Leader(url.into()))
    }

    #[test]
    fn an_empty_list_has_no_follower_and_a_round_starts_at_the_first_endpoint() {
        assert!(Follower::new(Vec::new()).is_none());
        let f = follower(&["a", "b", "c"]);
        assert_eq!(f.current(), "a");
        assert_eq!(f.leader(), None);
    }

    #[test]
    fn refusals_and_standbys_without_a_leader_walk_the_list_and_a_round_of_them_is_evidence() {
        let t0 = Instant::now();
        let mut f = follower(&["a", "b", "c"]);
        f.trying(t0);
        assert_eq!(f.found(Found::Refused), try_("b", false));
        f.trying(t0 + std::time::Duration::from_millis(5));
        assert_eq!(f.found(Found::Standby(Hint::NoLeader)), try_("c", false));
        assert_eq!(
            f.found(Found::Refused),
            Next::RoundOver {
                no_leader: true,
                since: t0
            }
        );
        // The next round starts over at the first endpoint (none led).
        assert_eq!(f.current(), "a");
        assert!(f.round().is_empty());
    }

    #[test]
    fn a_hint_goes_straight_to_the_leader_even_outside_the_list_and_the_next_round_starts_there() {
        let mut f = follower(&["a", "b", "c"]);
        f.trying(Instant::now());
        assert_eq!(f.found(leader("http://x")), try_("http://x", true));
        assert_eq!(f.current(), "http://x");
        f.led();
        assert_eq!(f.leader(), Some("http://x"));
        assert_eq!(f.current(), "http://x");
        // It stops leading (refused): the list follows, from its start.
        assert_eq!(f.found(Found::Refused), try_("a", false));
        // Later in the list: the walk goes on after the hinted endpoint.
        assert_eq!(f.found(leader("c")), try_("c", true));
        assert_eq!(f.found(Found::Refused), try_("b", false));
        assert!(matches!(
            f.found(Found::Refused),
            Next::RoundOver {
                no_leader: true,
                ..
            }
        ));
    }

    #[test]
    fn a_named_leader_that_says_it_stands_by_with_no_leader_is_evidence() {
        let stepped_down = [
            ("a".to_owned(), leader("b")),
            ("b".to_owned(), Found::Standby(Hint::NoLeader)),
        ];
        assert!(no_leader(&stepped_down));
        let answering_elsewhere = [
            ("a".to_owned(), leader("b")),
            ("b".to_owned(), leader("c")),
            ("c".to_owned(), Found::Failed),
        ];
        assert!(!no_leader(&answering_elsewhere));
    }

    #[test]
    fn after_a_fence_the_next_round_tries_the_silent_leader_last() {
        let mut f = follower(&["a", "b", "c"]);
        assert_eq!(f.found(Found::Refused), try_("b", false));
        f.led();
        assert_eq!(f.current(), "b");
        f.suspect();
        assert_eq!(f.current(), "c", "the next endpoint first");
        assert_eq!(f.found(Found::Failed), try_("a", false));
        assert_eq!(
            f.found(Found::Failed),
            try_("b", false),
            "the silent one last"
        );
        let mut one = follower(&["a"]);
        one.suspect();
        assert_eq!(one.current(), "a", "one endpoint: tried again");
    }

    #[test]
    fn a_round_starts_at_the_endpoint_that_led_last_and_wraps_around_the_list() {
        let mut f = follower(&["a", "b", "c"]);
        assert_eq!(f.found(Found::Refused), try_("b", false));
        f.led();
        assert_eq!(f.current(), "b");
        assert_eq!(f.found(Found::Refused), try_("c", false));
        assert_eq!(f.found(Found::Refused), try_("a", false));
        assert!(matches!(f.found(Found::Refused), Next::RoundOver { .. }));
        assert_eq!(f.current(), "b");
    }

    #[test]
    fn a_hinted_leader_that_does_not_answer_is_no_evidence_but_one_that_refuses_is() {
        // The named leader times out: a live leader may be behind it.
        let t0 = Instant::now();
        let mut f = follower(&["a", "b"]);
        f.trying(t0);
        assert_eq!(f.found(leader("b")), try_("b", true));
        assert_eq!(
            f.found(Found::Failed),
            Next::RoundOver {
                no_leader: false,
                since: t0
            }
        );
        // The named leader refuses (it just crashed): as good as no leader.
        let mut f = follower(&["a", "b"]);
        assert_eq!(f.found(leader("b")), try_("b", true));
        assert!(matches!(
            f.found(Found::Refused),
            Next::RoundOver {
                no_leader: true,
                ..
            }
        ));
        // Named by a standby after it refused in this round: not tried again, still evidence.
        let mut f = follower(&["a", "b"]);
        assert_eq!(f.found(Found::Refused), try_("b", false));
        assert!(matches!(
            f.found(leader("a")),
            Next::RoundOver {
                no_leader: true,
                ..
            }
        ));
    }

    #[test]
    fn stale_hints_and_unusable_ones_end_the_round_without_evidence() {
        // Two standbys naming each other: each is tried once; neither refused.
        let mut f = follower(&["a", "b"]);
        assert_eq!(f.found(leader("b")), try_("b", true));
        assert!(matches!(
            f.found(leader("a")),
            Next::RoundOver {
                no_leader: false,
                ..
            }
        ));
        let mut f = follower(&["a"]);
        assert!(matches!(
            f.found(Found::Standby(Hint::Unusable("x:1".into()))),
            Next::RoundOver {
                no_leader: false,
                ..
            }
        ));
        // A timeout anywhere in the round spoils it.
        let mut f = follower(&["a", "b"]);
        assert_eq!(f.found(Found::Failed), try_("b", false));
        assert!(matches!(
            f.found(Found::Refused),
            Next::RoundOver {
                no_leader: false,
                ..
            }
        ));
    }

    #[test]
    fn one_endpoint_makes_one_try_a_round_as_before_ha() {
        let t0 = Instant::now();
        let mut f = follower(&["a"]);
        f.trying(t0);
        assert_eq!(
            f.found(Found::Refused),
            Next::RoundOver {
                no_leader: true,
                since: t0
            }
        );
        assert_eq!(f.current(), "a");
        assert!(matches!(
            f.found(Found::Failed),
            Next::RoundOver {
                no_leader: false,
                ..
            }
        ));
    }

    fn search(list: &[&str], silent: &str, epoch: u64) -> Search {
        Search::new(
            list.iter().map(|s| (*s).to_owned()).collect(),
            silent.into(),
            epoch,
        )
    }

    #[test]
    fn a_search_walks_the_endpoints_after_the_silent_leader_and_never_tries_it() {
        let mut s = search(&["a", "b", "c"], "b", 7);
        assert!(s.any());
        assert_eq!(s.round().as_deref(), Some("c"));
        assert_eq!(
            s.found(Probed::Found(Found::Standby(Hint::NoLeader))),
            Step::Try("a".into())
        );
        assert_eq!(s.found(Probed::Found(Found::Refused)), Step::RoundOver);
        // The next round walks the same way.
        assert_eq!(s.round().as_deref(), Some("c"));
        // A leader that is not listed: the whole list.
        let mut s = search(&["a", "b"], "http://x", 7);
        assert_eq!(s.round().as_deref(), Some("a"));
        // One listed endpoint, followed now: nothing to search.
        let mut one = search(&["a"], "a", 7);
        assert!(!one.any());
        assert_eq!(one.round(), None);
        assert_eq!(one.found(Probed::Registered(9)), Step::RoundOver);
    }

    #[test]
    fn only_a_registration_answered_with_a_newer_epoch_is_a_new_leader() {
        let mut s = search(&["a", "b", "c"], "a", 7);
        assert_eq!(s.round().as_deref(), Some("b"));
        // The silent leader under another URL, or an older term: no switch.
        assert_eq!(s.found(Probed::Registered(7)), Step::Try("c".into()));
        assert_eq!(s.found(Probed::Registered(6)), Step::RoundOver);
        assert_eq!(s.round().as_deref(), Some("b"));
        // Nobody leads, refusals, failures: no switch either (the fence deadline stands).
        assert_eq!(
            s.found(Probed::Found(Found::Standby(Hint::NoLeader))),
            Step::Try("c".into())
        );
        assert_eq!(s.found(Probed::Found(Found::Failed)), Step::RoundOver);
        assert_eq!(s.round().as_deref(), Some("b"));
        assert_eq!(s.found(Probed::Registered(8)), Step::Switch("b".into()));
    }

    #[test]
    fn a_search_follows_a_hint_to_another_endpoint_but_not_back_to_the_silent_leader() {
        let mut s = search(&["a", "b", "c"], "a", 7);
        assert_eq!(s.round().as_deref(), Some("b"));
        // The standby still names the silent leader (its lease has not lapsed): walk on.
        assert_eq!(s.found(leader_("a")), Step::Try("c".into()));
        assert_eq!(s.found(leader_("b")), Step::RoundOver, "tried already");
        // Named: tried next, even outside the list, before the rest of the round.
        assert_eq!(s.round().as_deref(), Some("b"));
        assert_eq!(s.found(leader_("http://x")), Step::Try("http://x".into()));
        assert_eq!(
            s.found(Probed::Registered(8)),
            Step::Switch("http://x".into())
        );
        // After the switch the follower starts its rounds at the new leader.
        let mut f = follower(&["a", "b", "c"]);
        f.led();
        f.switched("http://x".into());
        assert_eq!(f.leader(), Some("http://x"));
        assert_eq!(f.current(), "http://x");
    }

    fn leader_(url: &str) -> Probed {
        Probed::Found(leader(url))
    }

    #[test]
    fn a_leader_that_becomes_a_standby_sends_the_next_round_to_the_new_one() {
        let mut f = follower(&["a", "b"]);
        f.led();
        f.redirect("b".into());
        assert_eq!(f.current(), "b");
        assert_eq!(f.leader(), Some("a"));
        assert_eq!(f.found(Found::Refused), try_("a", false));
    }
}
