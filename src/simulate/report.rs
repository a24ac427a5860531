//! What a simulation produces: the timeline of events and the final state, as JSON or as a
//! readable table.

use std::fmt::Write as _;

use serde::Serialize;

use crate::core::Millis;

/// One line of the simulated timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimEvent {
    pub t_ms: Millis,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<Millis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl SimEvent {
    pub(super) fn new(t_ms: Millis, kind: &'static str) -> SimEvent {
        SimEvent {
            t_ms,
            kind,
            task: None,
            attempt: None,
            executor: None,
            state: None,
            tasks: None,
            partitions: None,
            delay_ms: None,
            merged: None,
            slots: None,
            detail: None,
        }
    }
}

/// Final state of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinalTask {
    pub task: String,
    pub attempt: u32,
    pub state: &'static str,
    pub executor: Option<String>,
    pub region: u32,
}

/// Per-region outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinalRegion {
    pub region: u32,
    pub tasks: usize,
    pub restarts: u64,
    pub downtime_ms: Millis,
}

/// The state at `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinalState {
    pub t_ms: Millis,
    pub job_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    pub restarts: u64,
    pub failovers: u64,
    pub full_restarts: u64,
    pub tasks_restarted: u64,
    pub restarting_ms: Millis,
    pub exceptions: usize,
    pub tasks: Vec<FinalTask>,
    pub regions: Vec<FinalRegion>,
}

/// The work one failover makes its restarted tasks replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureReplay {
    /// When the JobMaster decided the restart.
    pub t_ms: Millis,
    pub cause: String,
    /// Tasks restarted (and redeployed before the end).
    pub tasks: usize,
    /// The checkpoint they restored from (the oldest, if they differ); `None`: from scratch.
    pub restored_from: Option<u64>,
    /// The longest replay among them: `t_ms` − the restore checkpoint's trigger time, or −
    /// the job's start when a task restored from none.
    pub replay_ms: Millis,
}

/// Checkpoints of the run and the replay per failure, to choose an interval by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointReport {
    pub interval_ms: Millis,
    pub triggered: u64,
    pub completed: u64,
    pub aborted: u64,
    pub failures: Vec<FailureReplay>,
    pub mean_replay_ms: Millis,
    pub max_replay_ms: Millis,
}

/// What a simulation produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    pub events: Vec<SimEvent>,
    #[serde(rename = "final")]
    pub final_state: FinalState,
    /// Only for a job with checkpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<CheckpointReport>,
}

impl SimReport {
    /// `{"events": [...], "final": {...}}` on one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A readable timeline (unless `summary`) and a summary.
    pub fn to_table(&self, summary: bool) -> String {
        let mut out = String::new();
        if !summary {
            for e in &self.events {
                let _ = write!(out, "{:>10.3}s  {:<20}", e.t_ms as f64 / 1000.0, e.kind);
                if let Some(t) = &e.task {
                    let _ = write!(out, " {t}");
                }
                if let Some(a) = e.attempt {
                    let _ = write!(out, " attempt {a}");
                }
                if let Some(s) = e.state {
                    let _ = write!(out, " {s}");
                }
                if let Some(x) = &e.executor {
                    let _ = write!(out, " on {x}");
                }
                if let Some(ts) = &e.tasks {
                    let _ = write!(out, " {} tasks", ts.len());
                }
                if let Some(d) = e.delay_ms {
                    let _ = write!(out, " in {d} ms");
                }
                if e.merged == Some(true) {
                    out.push_str(" (merged into the pending restart)");
                }
                if let Some(ps) = &e.partitions {
                    let _ = write!(out, " {}", ps.join(" "));
                }
                if let Some(d) = &e.detail {
                    let _ = write!(out, " — {d}");
                }
                out.push('\n');
            }
            out.push('\n');
        }
        let f = &self.final_state;
        let _ = writeln!(
            out,
            "at {:.3}s the job is {}",
            f.t_ms as f64 / 1000.0,
            f.job_state
        );
        if let Some(cause) = &f.cause {
            let _ = writeln!(out, "cause: {cause}");
        }
        let restarted = f.tasks.iter().filter(|t| t.attempt > 0).count();
        let _ = writeln!(
            out,
            "failovers {}, restarts {}, full restarts {}, task restarts {}, tasks ever restarted {} of {}, time restarting {} ms",
            f.failovers,
            f.restarts,
            f.full_restarts,
            f.tasks_restarted,
            restarted,
            f.tasks.len(),
            f.restarting_ms
        );
        let _ = writeln!(out, "\nREGION  TASKS  RESTARTS  DOWNTIME_MS");
        for r in &f.regions {
            let _ = writeln!(
                out,
                "{:<7} {:<6} {:<9} {}",
                r.region, r.tasks, r.restarts, r.downtime_ms
            );
        }
        if let Some(c) = &self.checkpoints {
            let _ = writeln!(
                out,
                "\ncheckpoints every {} ms: triggered {}, completed {}, aborted {}",
                c.interval_ms, c.triggered, c.completed, c.aborted
            );
            let _ = writeln!(out, "FAILURE_AT_MS  TASKS  RESTORED_FROM  REPLAY_MS  CAUSE");
            for r in &c.failures {
                let from = r
                    .restored_from
                    .map_or_else(|| "-".to_owned(), |id| format!("chk-{id}"));
                let _ = writeln!(
                    out,
                    "{:<14} {:<6} {:<14} {:<10} {}",
                    r.t_ms, r.tasks, from, r.replay_ms, r.cause
                );
            }
            let _ = writeln!(
                out,
                "replay per failure: mean {} ms, max {} ms",
                c.mean_replay_ms, c.max_replay_ms
            );
        }
        out
    }
}
