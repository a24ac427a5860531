//! The core's timers: one task holds every deadline the core set and delivers
//! [`Event::TimerFired`] to the coordinator when it is due; cancelled timers are dropped.
//!
//! One task and an ordered map instead of a sleeping task per timer: a big job queues one slot
//! timeout per region and a failover one cancel timeout per task, and most are cancelled or
//! ignored long before they are due.

use std::collections::{BTreeSet, HashMap};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::coordinator::Request;
use crate::core::{Event, TimerId};

enum Op {
    Set(TimerId, Instant),
    Cancel(TimerId),
}

/// The coordinator's handle on the timer task. Never blocks.
pub(crate) struct Timers {
    ops: mpsc::UnboundedSender<Op>,
}

impl Timers {
    /// Starts the timer task; fired timers go to `inbox` as core events.
    pub(crate) fn spawn(inbox: mpsc::Sender<Request>) -> Timers {
        let (ops, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, inbox));
        Timers { ops }
    }

    pub(crate) fn set(&self, timer: TimerId, deadline: std::time::Instant) {
        let _ = self.ops.send(Op::Set(timer, deadline.into()));
    }

    pub(crate) fn cancel(&self, timer: TimerId) {
        let _ = self.ops.send(Op::Cancel(timer));
    }
}

/// Serves set and cancel requests and fires due timers, until the handle is dropped or the
/// coordinator is gone.
async fn run(mut ops: mpsc::UnboundedReceiver<Op>, inbox: mpsc::Sender<Request>) {
    let mut due: BTreeSet<(Instant, TimerId)> = BTreeSet::new();
    let mut deadlines: HashMap<TimerId, Instant> = HashMap::new();
    loop {
        let next = due.first().map(|(at, _)| *at);
        tokio::select! {
            op = ops.recv() => match op {
                None => return,
                Some(Op::Set(timer, at)) => {
                    if let Some(old) = deadlines.insert(timer, at) {
                        due.remove(&(old, timer));
                    }
                    due.insert((at, timer));
                }
                Some(Op::Cancel(timer)) => {
                    if let Some(at) = deadlines.remove(&timer) {
                        due.remove(&(at, timer));
                    }
                }
            },
            () = sleep_until(next), if next.is_some() => {
                let now = Instant::now();
                while let Some(&(at, timer)) = due.first() {
                    if at > now {
                        break;
                    }
                    due.pop_first();
                    deadlines.remove(&timer);
                    let fired = Request::Core {
                        event: Event::TimerFired { timer },
                        reply: None,
                    };
                    if inbox.send(fired).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn fired(rx: &mut mpsc::Receiver<Request>) -> TimerId {
        match rx.recv().await {
            Some(Request::Core {
                event: Event::TimerFired { timer },
                ..
            }) => timer,
            _ => panic!("expected a fired timer"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn timers_fire_in_deadline_order_and_cancelled_ones_never() {
        let (tx, mut rx) = mpsc::channel(16);
        let timers = Timers::spawn(tx);
        let now = std::time::Instant::now();
        timers.set(TimerId(1), now + Duration::from_millis(300));
        timers.set(TimerId(2), now + Duration::from_millis(100));
        timers.set(TimerId(3), now + Duration::from_millis(200));
        timers.cancel(TimerId(3));
        assert_eq!(fired(&mut rx).await, TimerId(2));
        assert_eq!(fired(&mut rx).await, TimerId(1));
        // Nothing else is due: the paused clock runs ahead to prove it.
        let rest = tokio::time::timeout(Duration::from_secs(3600), rx.recv()).await;
        assert!(rest.is_err(), "the cancelled timer fired");
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_already_due_fires_at_once() {
        let (tx, mut rx) = mpsc::channel(16);
        let timers = Timers::spawn(tx);
        timers.set(TimerId(9), std::time::Instant::now());
        assert_eq!(fired(&mut rx).await, TimerId(9));
    }
}
