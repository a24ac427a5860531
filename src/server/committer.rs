//! The store's writer: a thread that commits the coordinator's turns in the order they ended,
//! so the coordinator serves the next requests while a commit runs. Turns that queue up
//! behind a running commit are committed together, in one transaction, by the next one.
//!
//! The coordinator holds each turn's orders and answers until the commit it waits for is
//! reported done (write-ahead stays: nothing of a turn leaves before its changes are stored).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::mpsc;
use tracing::error;

use crate::server::Shared;
use crate::store::{Batch, Store, StoreError};

/// How long a commit that needs no sync waits for more to commit with it.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(3);

/// The outcome of the commits up to `upto` (numbered from 1 in the order submitted).
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) upto: u64,
    pub(crate) result: Result<(), StoreError>,
}

/// Where a submitted commit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Submitted {
    /// Done already (a store that keeps nothing commits in place).
    Done(u64),
    /// Running or queued on the writer thread; its [`Done`] follows.
    Pending(u64),
}

/// The coordinator's handle on the writer thread. Dropping it lets the thread commit what was
/// submitted (and make an unsynced tail durable), then waits for it: the store is closed, and
/// its lock released, when the handle is gone.
pub(crate) struct Committer {
    mode: Mode,
    done: Option<mpsc::UnboundedReceiver<Done>>,
    /// Commits submitted so far (the number of the last one).
    submitted: u64,
}

enum Mode {
    /// A store that keeps nothing ([`Store::volatile`]): no thread, no wait.
    Inline {
        store: Box<dyn Store>,
        /// Keeps the outcomes' channel open (nothing is ever sent on it).
        _done: mpsc::UnboundedSender<Done>,
    },
    Thread {
        queue: Option<std_mpsc::Sender<Batch>>,
        thread: Option<JoinHandle<()>>,
    },
}

impl Committer {
    /// Starts the writer thread, which owns `store` from now on.
    pub(crate) fn spawn(
        store: Box<dyn Store>,
        shared: Arc<Shared>,
        commits: Histogram,
    ) -> Committer {
        let (done_tx, done) = mpsc::unbounded_channel();
        let mode = if store.volatile() {
            Mode::Inline {
                store,
                _done: done_tx,
            }
        } else {
            let (queue, rx) = std_mpsc::channel();
            let thread = std::thread::Builder::new()
                .name("jobmaster-store".into())
                .spawn(move || write(store, rx, done_tx, shared, commits))
                .expect("the store's thread starts");
            Mode::Thread {
                queue: Some(queue),
                thread: Some(thread),
            }
        };
        Committer {
            mode,
            done: Some(done),
            submitted: 0,
        }
    }

    /// Queues `batch` (numbered from 1 in the order submitted). A pending commit's outcome
    /// arrives on [`Committer::take_done`]'s receiver, in order, possibly together with the
    /// commits queued after it.
    pub(crate) fn submit(&mut self, batch: Batch) -> Result<Submitted, StoreError> {
        self.submitted += 1;
        match &mut self.mode {
            Mode::Inline { store, .. } => {
                store.commit(batch)?;
                Ok(Submitted::Done(self.submitted))
            }
            Mode::Thread { queue, .. } => {
                if let Some(queue) = queue {
                    // The thread ends only when this handle drops the queue, or after a
                    // failed commit: then the failure is already on its way.
                    let _ = queue.send(batch);
                }
                Ok(Submitted::Pending(self.submitted))
            }
        }
    }

    /// The number of the last commit submitted (0: none yet).
    pub(crate) fn submitted(&self) -> u64 {
        self.submitted
    }

    /// The outcomes of the commits (taken once, by the loop that waits for them).
    pub(crate) fn take_done(&mut self) -> mpsc::UnboundedReceiver<Done> {
        self.done
            .take()
            .expect("the commits' outcomes are taken once")
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        if let Mode::Thread { queue, thread } = &mut self.mode {
            *queue = None;
            if let Some(thread) = thread.take() {
                // At most the commit running now and the ones queued: they hold decisions
                // that must not be lost.
                let _ = thread.join();
            }
        }
    }
}

/// The thread: commits whatever is queued as one transaction, synced if any of it asks, and
/// reports each group's outcome. Stops at the first failure (the coordinator then stops the
/// process); when the queue closes, makes an unsynced tail durable first.
fn write(
    mut store: Box<dyn Store>,
    rx: std_mpsc::Receiver<Batch>,
    done: mpsc::UnboundedSender<Done>,
    shared: Arc<Shared>,
    commits: Histogram,
) {
    let mut upto = 0u64;
    let mut unsynced = false;
    let mut groups = 0u64;
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        group.extend(rx.try_iter());
        // Commits that need no sync wait a moment for one that does (a failover's reports
        // are followed by its restart): one transaction and one sync for both.
        if !group.iter().any(|b| b.sync) {
            let until = Instant::now() + COALESCE;
            while let Ok(b) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                let sync = b.sync;
                group.push(b);
                group.extend(rx.try_iter());
                if sync || group.iter().any(|b| b.sync) {
                    break;
                }
            }
        }
        upto += group.len() as u64;
        let sync = group.iter().any(|b| b.sync);
        let started = Instant::now();
        let result = store.commit_group(group);
        if result.is_ok() {
            commits.observe(started.elapsed().as_secs_f64());
            unsynced = !sync;
            groups += 1;
            // The file's size now and then (a stat per commit would cost more than it tells).
            if groups % 64 == 1 {
                shared
                    .store_bytes
                    .store(store.size_bytes(), Ordering::Relaxed);
            }
        }
        let failed = result.is_err();
        if let Err(e) = &result {
            error!(error = %e, "the store refused a commit: stopping (a restart reconciles)");
        }
        if done.send(Done { upto, result }).is_err() || failed {
            return;
        }
    }
    if unsynced && let Err(e) = store.commit(Batch::synced(None)) {
        error!(error = %e, "the store's last flush failed: the newest progress may be lost");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::core::JobId;
    use crate::store::Loaded;

    /// Per group committed, per batch in it: (sync, specs).
    type Groups = Arc<Mutex<Vec<Vec<(bool, usize)>>>>;

    /// Records every group it commits; fails the `fail_at`-th group.
    struct Recording {
        groups: Groups,
        fail_at: Option<usize>,
        gate: Option<std_mpsc::Receiver<()>>,
    }

    impl Store for Recording {
        fn load(&self) -> Result<Loaded, StoreError> {
            Ok(Loaded::default())
        }
        fn commit(&mut self, batch: Batch) -> Result<(), StoreError> {
            self.commit_group(vec![batch])
        }
        fn commit_group(&mut self, batches: Vec<Batch>) -> Result<(), StoreError> {
            if let Some(gate) = &self.gate {
                let _ = gate.recv();
            }
            let mut groups = self.groups.lock().unwrap();
            groups.push(batches.iter().map(|b| (b.sync, b.specs.len())).collect());
            if Some(groups.len()) == self.fail_at {
                return Err(StoreError::Write {
                    file: "test".into(),
                    message: "disk full".into(),
                });
            }
            Ok(())
        }
        fn size_bytes(&self) -> u64 {
            0
        }
    }

    fn batch(sync: bool, jobs: usize) -> Batch {
        let mut b = Batch {
            sync,
            ..Batch::default()
        };
        for j in 0..jobs {
            b.specs.push((JobId(j as u64 + 1), "{}".to_owned()));
        }
        b
    }

    fn shared() -> Arc<Shared> {
        let read = Arc::new(crate::server::read_model::ReadModel::default());
        crate::server::unserved(1, read).0
    }

    #[tokio::test]
    async fn commits_queued_behind_a_running_one_are_one_group_and_reported_in_order() {
        let groups = Arc::new(Mutex::new(Vec::new()));
        let (open, gate) = std_mpsc::channel();
        let store = Recording {
            groups: groups.clone(),
            fail_at: None,
            gate: Some(gate),
        };
        let mut c = Committer::spawn(Box::new(store), shared(), Histogram::new([1.0]));
        let mut done = c.take_done();
        assert_eq!(c.submit(batch(false, 1)).unwrap(), Submitted::Pending(1));
        // The first commit is held at the gate; three more queue up behind it.
        open.send(()).unwrap();
        let first = done.recv().await.unwrap();
        assert_eq!(first.upto, 1);
        assert_eq!(c.submit(batch(false, 2)).unwrap(), Submitted::Pending(2));
        assert_eq!(c.submit(batch(true, 3)).unwrap(), Submitted::Pending(3));
        assert_eq!(c.submit(batch(false, 4)).unwrap(), Submitted::Pending(4));
        assert_eq!(c.submitted(), 4);
        open.send(()).unwrap();
        let mut upto = 0;
        while upto < 4 {
            let d = done.recv().await.unwrap();
            assert!(d.result.is_ok());
            assert!(d.upto > upto, "outcomes arrive in order");
            upto = d.upto;
            open.send(()).ok();
        }
        drop(c);
        let groups = groups.lock().unwrap().clone();
        let flat: Vec<(bool, usize)> = groups.iter().flatten().copied().collect();
        assert_eq!(
            flat[..4],
            [(false, 1), (false, 2), (true, 3), (false, 4)],
            "every batch committed once, in order"
        );
        assert!(groups.len() < 5, "batches queued together share a commit");
    }

    #[tokio::test]
    async fn an_unsynced_tail_is_made_durable_when_the_committer_stops() {
        let groups = Arc::new(Mutex::new(Vec::new()));
        let store = Recording {
            groups: groups.clone(),
            fail_at: None,
            gate: None,
        };
        let mut c = Committer::spawn(Box::new(store), shared(), Histogram::new([1.0]));
        let mut done = c.take_done();
        c.submit(batch(false, 1)).unwrap();
        assert_eq!(done.recv().await.unwrap().upto, 1);
        drop(c);
        let groups = groups.lock().unwrap().clone();
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(groups[1], vec![(true, 0)], "a last, synced, empty commit");
    }

    #[tokio::test]
    async fn a_failed_commit_is_reported_and_nothing_after_it_is_committed() {
        let groups = Arc::new(Mutex::new(Vec::new()));
        let (open, gate) = std_mpsc::channel();
        let store = Recording {
            groups: groups.clone(),
            fail_at: Some(1),
            gate: Some(gate),
        };
        let mut c = Committer::spawn(Box::new(store), shared(), Histogram::new([1.0]));
        let mut done = c.take_done();
        c.submit(batch(true, 1)).unwrap();
        open.send(()).unwrap();
        let d = done.recv().await.unwrap();
        assert_eq!(d.upto, 1);
        assert!(matches!(d.result, Err(StoreError::Write { .. })));
        c.submit(batch(true, 2)).unwrap();
        drop(c);
        assert!(
            done.recv().await.is_none(),
            "the thread stopped at the failure"
        );
        assert_eq!(groups.lock().unwrap().len(), 1);
    }
}
