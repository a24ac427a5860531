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
//! [`Follower`] is that rule as a pure state machine of what it is told.

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
