//! Leadership as a lease that must be renewed: [`Leadership`] says whether this JobMaster may
//! still act as the leader, and [`keep_alive`] renews its etcd lease. The rule that keeps a
//! deposed leader from acting (no zombie leader): leadership is held only until
//! `send time of the last renewal that etcd granted + its TTL`, on this process's monotonic
//! clock. etcd counts the same TTL from when it *received* that renewal, so this JobMaster
//! stops acting strictly before etcd can let another one lead. A process that was frozen
//! (SIGSTOP) wakes up past that deadline and acts no more: every order to an executor and
//! every store write checks [`Leadership::is_held`] first, and etcd refuses its writes anyway
//! (they are guarded by its leader key).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::etcd::Etcd;
use super::etcd::pb::etcdserverpb::LeaseKeepAliveRequest;

/// Whether this JobMaster still leads, and why not once it does not.
pub struct Leadership {
    base: Instant,
    /// Milliseconds after `base` until which leadership is held.
    valid_until_ms: AtomicU64,
    /// Set once leadership is lost (for good: a new term needs a new campaign).
    lost: watch::Sender<Option<String>>,
    /// The etcd lease it rides on.
    pub lease: i64,
    /// Renewals and their latency, for the metrics.
    renewals: AtomicU64,
    last_renew_us: AtomicU64,
    /// Latency of each granted renewal (`jobmaster_lease_renew_seconds`).
    pub renew_seconds: Histogram,
}

impl Leadership {
    /// Leadership on `lease`, held until `valid_until`.
    pub fn new(lease: i64, valid_until: Instant) -> Arc<Leadership> {
        let base = Instant::now();
        let l = Leadership {
            base,
            valid_until_ms: AtomicU64::new(0),
            lost: watch::Sender::new(None),
            lease,
            renewals: AtomicU64::new(0),
            last_renew_us: AtomicU64::new(0),
            renew_seconds: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        };
        l.extend(valid_until);
        Arc::new(l)
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_millis() as u64
    }

    /// Held until `until` now (never shortened by a late answer).
    pub fn extend(&self, until: Instant) {
        self.valid_until_ms
            .fetch_max(self.ms(until), Ordering::AcqRel);
    }

    /// Whether this JobMaster may act as the leader now.
    pub fn is_held(&self) -> bool {
        self.lost.borrow().is_none()
            && self.ms(Instant::now()) < self.valid_until_ms.load(Ordering::Acquire)
    }

    /// Until when it is held.
    pub fn deadline(&self) -> Instant {
        self.base + Duration::from_millis(self.valid_until_ms.load(Ordering::Acquire))
    }

    /// Gives leadership up for good, saying why (the first reason stays).
    pub fn lose(&self, why: impl Into<String>) {
        let why = why.into();
        self.lost.send_if_modified(|lost| {
            if lost.is_none() {
                *lost = Some(why);
                true
            } else {
                false
            }
        });
    }

    /// Why leadership was lost, if it was.
    pub fn reason(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// Resolves with the reason once leadership is lost.
    pub async fn lost(&self) -> String {
        let mut rx = self.lost.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                return "leadership dropped".into();
            }
        }
    }

    /// Renewals granted so far, and the latency of the last one.
    pub fn renewals(&self) -> (u64, Duration) {
        (
            self.renewals.load(Ordering::Relaxed),
            Duration::from_micros(self.last_renew_us.load(Ordering::Relaxed)),
        )
    }

    fn renewed(&self, sent: Instant, ttl: Duration) {
        self.extend(sent + ttl);
        self.renewals.fetch_add(1, Ordering::Relaxed);
        let took = sent.elapsed();
        self.last_renew_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
        self.renew_seconds.observe(took.as_secs_f64());
    }
}

/// Renews `leadership`'s lease every third of `ttl` (moving to another etcd member when one
/// stops answering) until it is lost: by etcd saying the lease is gone, or by the deadline
/// passing without a granted renewal. Also renews a standby's lease while it campaigns.
pub async fn keep_alive(etcd: Arc<Etcd>, leadership: Arc<Leadership>, ttl: Duration) {
    let every = (ttl / 3).max(Duration::from_millis(100));
    'streams: loop {
        if !leadership.is_held() {
            break;
        }
        let (member, mut client) = etcd.lease_client();
        let (tx, rx) = mpsc::channel(4);
        // The first renewal goes with the call: etcd answers the call's headers with it.
        let mut sent = Instant::now();
        let first = LeaseKeepAliveRequest {
            id: leadership.lease,
        };
        if tx.send(first).await.is_err() {
            break;
        }
        let opened = tokio::select! {
            r = client.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)) => r,
            _ = tokio::time::sleep_until(leadership.deadline().into()) => break 'streams,
            _ = tokio::time::sleep(every) => {
                debug!(member = etcd.member(), "lease keep-alive stream not answered in time; next member");
                etcd.lease_failed(member);
                continue 'streams;
            }
        };
        let mut answers = match opened {
            Ok(r) => r.into_inner(),
            Err(status) => {
                debug!(member = etcd.member(), error = %status, "lease keep-alive stream refused; next member");
                etcd.lease_failed(member);
                if tokio::time::timeout_at(
                    leadership.deadline().into(),
                    tokio::time::sleep(every / 4),
                )
                .await
                .is_err()
                {
                    break;
                }
                continue;
            }
        };
        let mut first = true;
        loop {
            if !first {
                sent = Instant::now();
                if tx
                    .send(LeaseKeepAliveRequest {
                        id: leadership.lease,
                    })
                    .await
                    .is_err()
                {
                    etcd.lease_failed(member);
                    continue 'streams;
                }
            }
            first = false;
            let answer = tokio::select! {
                a = answers.message() => a,
                _ = tokio::time::sleep_until(leadership.deadline().into()) => break 'streams,
                _ = tokio::time::sleep(every) => {
                    debug!(member = etcd.member(), "lease renewal not answered in time; next member");
                    etcd.lease_failed(member);
                    continue 'streams;
                }
            };
            match answer {
                Ok(Some(a)) if a.ttl > 0 => {
                    leadership.renewed(sent, Duration::from_secs(a.ttl as u64));
                }
                Ok(Some(_)) => {
                    leadership.lose("etcd says the lease expired");
                    return;
                }
                Ok(None) | Err(_) => {
                    etcd.lease_failed(member);
                    continue 'streams;
                }
            }
            let next = sent + every;
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                _ = tokio::time::sleep_until(leadership.deadline().into()) => break 'streams,
            }
        }
    }
    warn!(
        lease = leadership.lease,
        "lease not renewed before it expired"
    );
    leadership.lose("the lease was not renewed before it expired (etcd unreachable or this process was stalled)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_ends_at_its_deadline_and_a_late_answer_does_not_shorten_it() {
        let now = Instant::now();
        let l = Leadership::new(7, now + Duration::from_secs(60));
        assert!(l.is_held());
        l.extend(now + Duration::from_secs(1));
        assert!(l.deadline() >= now + Duration::from_secs(59));
        let past = Leadership::new(7, now);
        assert!(!past.is_held(), "held only strictly before the deadline");
    }

    #[tokio::test]
    async fn lost_leadership_stays_lost_with_its_first_reason() {
        let l = Leadership::new(1, Instant::now() + Duration::from_secs(60));
        l.lose("first");
        l.lose("second");
        assert!(!l.is_held());
        assert_eq!(l.lost().await, "first");
        l.extend(Instant::now() + Duration::from_secs(120));
        assert!(!l.is_held(), "a renewal does not bring it back");
    }
}
