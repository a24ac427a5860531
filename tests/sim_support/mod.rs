//! Shared helpers for the simulator tests: parse inline scenarios, run them, and read the
//! recorded timeline.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use jobmaster::core::SpecFormat;
use jobmaster::simulate::{FinalTask, Scenario, SimEvent, SimReport, simulate};

/// Parses a TOML scenario with an inline `[job]` table (no spec files to load).
pub fn scenario(text: &str) -> Scenario {
    Scenario::parse(text, SpecFormat::Toml, |path| {
        Err(format!(
            "inline scenarios load no files (asked for {path:?})"
        ))
    })
    .unwrap_or_else(|e| panic!("scenario does not parse: {e}\n{text}"))
}

/// Parses and runs a TOML scenario, recording every event.
pub fn run(text: &str) -> SimReport {
    simulate(&scenario(text), true)
}

/// The events of one kind, in order.
pub fn events<'a>(report: &'a SimReport, kind: &str) -> Vec<&'a SimEvent> {
    report.events.iter().filter(|e| e.kind == kind).collect()
}

/// The task sets of the `restart-scheduled` events, in order.
pub fn restart_sets(report: &SimReport) -> Vec<Vec<String>> {
    events(report, "restart-scheduled")
        .into_iter()
        .map(|e| e.tasks.clone().expect("restart-scheduled names its tasks"))
        .collect()
}

/// `(task, attempt)` of every `cancel` event, in order.
pub fn cancels(report: &SimReport) -> Vec<(String, u32)> {
    events(report, "cancel")
        .into_iter()
        .map(|e| {
            (
                e.task.clone().expect("cancel names a task"),
                e.attempt.expect("cancel names an attempt"),
            )
        })
        .collect()
}

/// `(task, attempt, executor)` of every `deploy` event, in order.
pub fn deploys(report: &SimReport) -> Vec<(String, u32, String)> {
    events(report, "deploy")
        .into_iter()
        .map(|e| {
            (
                e.task.clone().expect("deploy names a task"),
                e.attempt.expect("deploy names an attempt"),
                e.executor.clone().expect("deploy names an executor"),
            )
        })
        .collect()
}

/// The final state of one task.
pub fn final_task<'a>(report: &'a SimReport, task: &str) -> &'a FinalTask {
    report
        .final_state
        .tasks
        .iter()
        .find(|t| t.task == task)
        .unwrap_or_else(|| panic!("no task {task} in the final state"))
}

/// Final attempt number of every task, by name.
pub fn final_attempts(report: &SimReport) -> BTreeMap<String, u32> {
    report
        .final_state
        .tasks
        .iter()
        .map(|t| (t.task.clone(), t.attempt))
        .collect()
}

/// Tasks whose final attempt is above 0 (they were restarted at least once).
pub fn restarted_tasks(report: &SimReport) -> BTreeSet<String> {
    report
        .final_state
        .tasks
        .iter()
        .filter(|t| t.attempt > 0)
        .map(|t| t.task.clone())
        .collect()
}

/// Owned names, for comparing with the report's `Vec<String>`s.
pub fn names(tasks: &[&str]) -> Vec<String> {
    tasks.iter().map(|t| (*t).to_owned()).collect()
}

/// Owned name set.
pub fn name_set(tasks: &[&str]) -> BTreeSet<String> {
    tasks.iter().map(|t| (*t).to_owned()).collect()
}

/// The report's timeline as text, for assertion messages.
pub fn timeline(report: &SimReport) -> String {
    report.to_table(false)
}
