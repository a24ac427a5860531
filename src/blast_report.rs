//! The blast-radius report ([`crate::core::BlastRadius`]) as a table or one JSON line: per
//! executor, the tasks it hosts and what its loss would restart, and the expected fraction of
//! the job's tasks restarted by one random executor loss. `jmctl plan --executors` computes it
//! offline, `jmctl explain --blast-radius` fetches it from the daemon (GetBlastRadius).

use std::fmt::Write as _;

use serde_json::json;

use crate::api::v1::GetBlastRadiusResponse;
use crate::core::{BlastRadius, ExecutorBlastRadius, ExecutorId};

/// The daemon's answer as the core's report.
pub fn from_wire(r: &GetBlastRadiusResponse) -> BlastRadius {
    BlastRadius {
        tasks: r.tasks as usize,
        regions: r.regions as usize,
        executors: r.executors as usize,
        per_executor: r
            .per_executor
            .iter()
            .map(|e| ExecutorBlastRadius {
                executor: ExecutorId(e.executor.clone()),
                hosted: e.hosted_tasks as usize,
                restart_tasks: e.restart_tasks as usize,
                restart_regions: e.restart_regions as usize,
            })
            .collect(),
        expected_fraction: r.expected_fraction,
    }
}

fn fraction(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// A readable report; `title` is its first line (the job and, offline, the cluster).
pub fn to_table(b: &BlastRadius, title: &str) -> String {
    let mut out = format!("{title}\n\n");
    let width = b
        .per_executor
        .iter()
        .map(|e| e.executor.0.len())
        .max()
        .unwrap_or(0)
        .max("EXECUTOR".len());
    let _ = writeln!(
        out,
        "{:<width$}  {:>6}  {:>13}  {:>15}  {:>8}",
        "EXECUTOR", "HOSTED", "RESTART_TASKS", "RESTART_REGIONS", "FRACTION"
    );
    for e in &b.per_executor {
        let _ = writeln!(
            out,
            "{:<width$}  {:>6}  {:>13}  {:>15}  {:>8.3}",
            e.executor.0,
            e.hosted,
            e.restart_tasks,
            e.restart_regions,
            fraction(e.restart_tasks, b.tasks)
        );
    }
    let idle = b.executors.saturating_sub(b.per_executor.len());
    if idle > 0 {
        let _ = writeln!(
            out,
            "({idle} more executor{} host nothing of the job; their loss restarts nothing)",
            if idle == 1 { "" } else { "s" }
        );
    }
    let _ = writeln!(
        out,
        "\nexpected fraction of the {} tasks restarted by one random executor loss: {:.3} \
         (mean over {} executor{} with slots)",
        b.tasks,
        b.expected_fraction,
        b.executors,
        if b.executors == 1 { "" } else { "s" }
    );
    out
}

/// The report as one JSON document on one line, with `extra` fields (job, placement, ...).
pub fn to_json(b: &BlastRadius, extra: serde_json::Map<String, serde_json::Value>) -> String {
    let mut doc = extra;
    doc.insert("tasks".into(), json!(b.tasks));
    doc.insert("regions".into(), json!(b.regions));
    doc.insert("executors".into(), json!(b.executors));
    doc.insert(
        "per_executor".into(),
        json!(
            b.per_executor
                .iter()
                .map(|e| json!({
                    "executor": e.executor.0,
                    "hosted_tasks": e.hosted,
                    "restart_tasks": e.restart_tasks,
                    "restart_regions": e.restart_regions,
                    "fraction": fraction(e.restart_tasks, b.tasks),
                }))
                .collect::<Vec<_>>()
        ),
    );
    doc.insert("expected_fraction".into(), json!(b.expected_fraction));
    serde_json::Value::Object(doc).to_string()
}
