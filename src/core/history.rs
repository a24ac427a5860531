//! Exception history: the last N root failures of a job, each with the failures that joined it
//! and the restart set it caused.

use std::collections::VecDeque;

use super::attempt::AttemptId;
use super::event::FailureClass;
use super::graph::TaskId;
use super::{ExecutorId, Millis};

/// Default number of root failures kept per job (Flink's `web.exception-history-size`).
pub const DEFAULT_HISTORY_SIZE: usize = 16;

/// One failure: what failed, where, when, why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailureRecord {
    pub time: Millis,
    /// The failed attempt; `None` for a failure that hit no task (a lost partition).
    pub attempt: Option<AttemptId>,
    pub executor: Option<ExecutorId>,
    pub class: FailureClass,
    pub message: String,
}

/// A root failure and everything that came with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExceptionEntry {
    pub root: FailureRecord,
    /// Failures of the same event (e.g. every task of a lost executor) or merged into this
    /// entry's pending restart.
    pub concurrent: Vec<FailureRecord>,
    /// Tasks restarted because of this entry (including merged failures), ascending.
    pub restarted: Vec<TaskId>,
    /// What the JobMaster decided: e.g. "restart in 1000 ms" or "job failed: ...".
    pub outcome: String,
}

/// A bounded list of [`ExceptionEntry`], newest last.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExceptionHistory {
    capacity: usize,
    entries: VecDeque<ExceptionEntry>,
    /// Root failures ever recorded, including those that fell off the end.
    total: u64,
}

impl ExceptionHistory {
    pub fn new(capacity: usize) -> ExceptionHistory {
        ExceptionHistory {
            capacity: capacity.max(1),
            entries: VecDeque::new(),
            total: 0,
        }
    }

    /// Adds a root failure, dropping the oldest entry when full.
    pub fn push(&mut self, entry: ExceptionEntry) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
        self.total += 1;
    }

    /// The newest entry, to attach concurrent failures to.
    pub fn latest_mut(&mut self) -> Option<&mut ExceptionEntry> {
        self.entries.back_mut()
    }

    /// Entries, oldest first.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &ExceptionEntry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when older entries were dropped.
    pub fn truncated(&self) -> bool {
        self.total > self.entries.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(time: Millis) -> ExceptionEntry {
        ExceptionEntry {
            root: FailureRecord {
                time,
                attempt: None,
                executor: None,
                class: FailureClass::Recoverable,
                message: format!("boom {time}"),
            },
            concurrent: Vec::new(),
            restarted: Vec::new(),
            outcome: String::new(),
        }
    }

    #[test]
    fn history_keeps_the_newest_entries() {
        let mut h = ExceptionHistory::new(3);
        for t in 0..5 {
            h.push(entry(t));
        }
        let times: Vec<Millis> = h.entries().map(|e| e.root.time).collect();
        assert_eq!(times, vec![2, 3, 4]);
        assert!(h.truncated());
    }
}
