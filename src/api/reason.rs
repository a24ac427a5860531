//! One rendering of a restart reason for people: `jmctl plan` (from the core), the
//! ExplainFailover answer (core → wire) and `jmctl explain` (from the wire) all go through
//! [`NamedReason`], so the three read alike.

use std::fmt;

use super::v1::RestartReasonInfo;
use crate::core::{ExecutionGraph, RestartReason, RestartScope};

/// A restart reason with every id resolved to a name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedReason {
    /// [`RestartReason::kind`]: `failed`, `producer-of-lost-input`, …
    pub kind: String,
    pub failed_task: Option<String>,
    pub partition: Option<String>,
    /// The scope that reads the lost input (`region 3` or a task name).
    pub consumer: Option<String>,
    /// The restarted scope whose output this one consumes.
    pub producer: Option<String>,
}

/// A restart scope as people read it: `region 3`, or the task's name.
pub fn scope_name(graph: &ExecutionGraph, scope: RestartScope) -> String {
    match scope {
        RestartScope::Region(r) => format!("region {}", r.0),
        RestartScope::Task(t) => graph.task_name(t).to_string(),
    }
}

impl NamedReason {
    pub fn new(graph: &ExecutionGraph, reason: RestartReason) -> NamedReason {
        let mut named = NamedReason {
            kind: reason.kind().to_owned(),
            ..NamedReason::default()
        };
        match reason {
            RestartReason::Failed { task } => {
                named.failed_task = Some(graph.task_name(task).to_string())
            }
            RestartReason::ProducerOfLostInput {
                partition,
                consumer,
            } => {
                named.partition = Some(graph.partition_name(partition));
                named.consumer = Some(scope_name(graph, consumer));
            }
            RestartReason::ConsumerOfRestartedRegion { producer } => {
                named.producer = Some(scope_name(graph, producer))
            }
            RestartReason::LostOutput { partition } => {
                named.partition = Some(graph.partition_name(partition))
            }
            RestartReason::FullRestart => {}
        }
        named
    }

    /// Reads the reason fields of an ExplainFailover answer (empty fields are absent).
    pub fn from_wire(info: &RestartReasonInfo) -> NamedReason {
        let some = |s: &String| (!s.is_empty()).then(|| s.clone());
        NamedReason {
            kind: info.reason.clone(),
            failed_task: some(&info.failed_task),
            partition: some(&info.partition),
            consumer: some(&info.consumer),
            producer: some(&info.producer),
        }
    }

    /// Writes the reason fields of an ExplainFailover answer.
    pub fn to_wire(&self, info: &mut RestartReasonInfo) {
        let text = |s: &Option<String>| s.clone().unwrap_or_default();
        info.reason = self.kind.clone();
        info.failed_task = text(&self.failed_task);
        info.partition = text(&self.partition);
        info.consumer = text(&self.consumer);
        info.producer = text(&self.producer);
    }
}

/// `failed: map#3`, `producer of lost input src#0->map (read by region 2)`, …
impl fmt::Display for NamedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |s: &Option<String>| s.clone().unwrap_or_default();
        match self.kind.as_str() {
            "failed" => write!(f, "failed: {}", name(&self.failed_task)),
            "producer-of-lost-input" => write!(
                f,
                "producer of lost input {} (read by {})",
                name(&self.partition),
                name(&self.consumer)
            ),
            "consumer-of-restarted-region" => {
                write!(f, "consumer of restarted {}", name(&self.producer))
            }
            "lost-output" => write!(f, "lost output {} still needed", name(&self.partition)),
            "full-restart" => f.write_str("full restart"),
            other => f.write_str(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_reads_the_same_after_a_round_trip_over_the_wire() {
        let named = NamedReason {
            kind: "producer-of-lost-input".into(),
            partition: Some("src#0->map".into()),
            consumer: Some("region 2".into()),
            ..NamedReason::default()
        };
        let mut info = RestartReasonInfo::default();
        named.to_wire(&mut info);
        let back = NamedReason::from_wire(&info);
        assert_eq!(back, named);
        assert_eq!(
            back.to_string(),
            "producer of lost input src#0->map (read by region 2)"
        );
    }
}
