//! `jmctl plan`: the regions of a job spec and the restart set of a hypothetical failure,
//! computed offline by the same core the daemon runs, rendered as a table or as JSON.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;

use serde::Serialize;

use crate::api::reason::{NamedReason, scope_name};

use crate::core::{
    BlastRadius, CoreConfig, Event, ExecutionGraph, ExecutorId, FailoverStrategy, JobId, JobMaster,
    JobSpec, PartitionId, PlacementPolicy, Regions, RestartReason, RestartScope, RestartSet,
    TaskId, blast_radius, compute_restart_set,
};

/// What to plan for.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// Overrides the spec's failover strategy.
    pub strategy: Option<FailoverStrategy>,
    /// Tasks that fail (`vertex#subtask`).
    pub fail: Vec<String>,
    /// Tasks whose blocking and persistent output partitions are unavailable.
    pub lost: Vec<String>,
}

/// A blast-radius plan: the cluster `jmctl plan --executors N --slots S` places the job on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterPlan {
    /// Executors `e0`, `e1`, ...
    pub executors: u32,
    /// Slots of each.
    pub slots: u32,
    pub placement: PlacementPolicy,
}

/// The blast radius of `spec` placed by the real core (with `cluster.placement`) on a fresh
/// cluster, every task deployed and no output produced yet.
pub fn blast_radius_offline(
    spec: &JobSpec,
    cluster: ClusterPlan,
) -> Result<BlastRadius, PlanError> {
    let mut jm = JobMaster::new(CoreConfig {
        placement: cluster.placement,
        ..CoreConfig::default()
    });
    let rejected = |e: crate::core::Rejected| PlanError::Rejected(e.error.to_string());
    for i in 0..cluster.executors {
        jm.handle(
            Event::ExecutorRegistered {
                executor: ExecutorId(format!("e{i}")),
                slots: cluster.slots,
                labels: Default::default(),
                holds: Default::default(),
            },
            0,
        )
        .map_err(rejected)?;
    }
    let job = JobId(1);
    jm.handle(
        Event::SubmitJob {
            job,
            spec: spec.clone(),
        },
        0,
    )
    .map_err(rejected)?;
    Ok(blast_radius(&jm, job).expect("the job was just submitted"))
}

/// Why a plan request cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{flag} {name:?}: {problem}")]
    UnknownTask {
        flag: &'static str,
        name: String,
        problem: String,
    },
    #[error("the core refused the plan: {0}")]
    Rejected(String),
}

/// The computed plan.
pub struct Plan {
    pub graph: ExecutionGraph,
    pub regions: Regions,
    pub strategy: FailoverStrategy,
    pub failed: Vec<TaskId>,
    pub restart: Option<RestartSet>,
}

impl Plan {
    /// Builds the graph and regions of `spec` and, when `request.fail` names tasks, the restart
    /// set of their failure. Every task counts as deployed and every partition as available,
    /// except the blocking and persistent outputs of the `lost` tasks.
    pub fn compute(spec: &JobSpec, request: &PlanRequest) -> Result<Plan, PlanError> {
        let graph = ExecutionGraph::build(spec);
        let regions = Regions::compute(&graph);
        let strategy = request.strategy.unwrap_or(spec.failover);
        let failed = resolve(&graph, "--fail", &request.fail)?;
        let lost: HashSet<TaskId> = resolve(&graph, "--lost", &request.lost)?
            .into_iter()
            .collect();
        let restart = (!failed.is_empty()).then(|| {
            let available = |p: PartitionId| {
                !(graph.exchange_of(p).is_reconsumable() && lost.contains(&graph.producer_of(p)))
            };
            compute_restart_set(&graph, &regions, strategy, &failed, available)
        });
        Ok(Plan {
            graph,
            regions,
            strategy,
            failed,
            restart,
        })
    }

    /// The plan as one JSON document on one line (lists, or counts with `summary`).
    pub fn to_json(&self, summary: bool) -> String {
        let text = if summary {
            serde_json::to_string(&self.summary_json())
        } else {
            serde_json::to_string(&self.full_json())
        };
        // Only strings, numbers and maps with string keys: serialization cannot fail.
        text.unwrap_or_default()
    }

    fn full_json(&self) -> FullJson {
        let names = |tasks: &[TaskId]| tasks.iter().map(|&t| self.task_name(t)).collect();
        FullJson {
            job: self.graph.name().to_owned(),
            strategy: self.strategy.name(),
            tasks: self.graph.task_count(),
            regions: self
                .regions
                .ids()
                .map(|r| names(self.regions.tasks(r)))
                .collect(),
            failed: self.restart.as_ref().map(|_| names(&self.failed)),
            restart: self.restart.as_ref().map(|rs| names(&rs.tasks)),
            reasons: self.restart.as_ref().map(|rs| {
                rs.entries
                    .iter()
                    .map(|e| {
                        let named = NamedReason::new(&self.graph, e.reason);
                        ReasonJson {
                            region: match e.scope {
                                RestartScope::Region(r) => Some(r.0),
                                RestartScope::Task(_) => None,
                            },
                            tasks: names(&self.scope_tasks(e.scope)),
                            reason: e.reason.kind(),
                            failed_task: named.failed_task,
                            partition: named.partition,
                            consumer: match e.reason {
                                RestartReason::ProducerOfLostInput { consumer, .. } => {
                                    Some(self.scope_json(consumer))
                                }
                                _ => None,
                            },
                            producer: match e.reason {
                                RestartReason::ConsumerOfRestartedRegion { producer } => {
                                    Some(self.scope_json(producer))
                                }
                                _ => None,
                            },
                        }
                    })
                    .collect()
            }),
        }
    }

    fn summary_json(&self) -> SummaryJson {
        SummaryJson {
            job: self.graph.name().to_owned(),
            strategy: self.strategy.name(),
            tasks: self.graph.task_count(),
            regions: self.regions.len(),
            largest_region: self.regions.largest(),
            failed: self.restart.as_ref().map(|_| self.failed.len()),
            restart: self.restart.as_ref().map(|rs| rs.tasks.len()),
            restart_entries: self.restart.as_ref().map(|rs| rs.entries.len()),
            reasons: self.restart.as_ref().map(reason_counts),
        }
    }

    /// The plan as a readable report.
    pub fn to_table(&self, summary: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "job {:?}: {} in {} (largest {}), failover strategy {}",
            self.graph.name(),
            plural(self.graph.task_count(), "task"),
            plural(self.regions.len(), "region"),
            self.regions.largest(),
            self.strategy
        );
        if !summary {
            let _ = writeln!(out, "\nREGION  TASKS");
            for r in self.regions.ids() {
                let _ = writeln!(out, "{:<7} {}", r.0, self.compact(self.regions.tasks(r)));
            }
        }
        let Some(rs) = &self.restart else {
            return out;
        };
        let _ = writeln!(
            out,
            "\nfailure of {} restarts {} of {} tasks ({}):",
            self.compact(&self.failed),
            rs.tasks.len(),
            self.graph.task_count(),
            match rs.strategy {
                FailoverStrategy::Individual => plural(rs.entries.len(), "task"),
                _ => plural(rs.entries.len(), "region"),
            }
        );
        if summary {
            for (kind, count) in reason_counts(rs) {
                if count > 0 {
                    let _ = writeln!(out, "  {count:>8}  {kind}");
                }
            }
            return out;
        }
        let rows: Vec<[String; 3]> = rs
            .entries
            .iter()
            .map(|e| {
                [
                    scope_name(&self.graph, e.scope),
                    NamedReason::new(&self.graph, e.reason).to_string(),
                    self.compact(&self.scope_tasks(e.scope)),
                ]
            })
            .collect();
        let width = |i: usize, title: &str| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        };
        let (w0, w1) = (width(0, "RESTART"), width(1, "REASON"));
        let _ = writeln!(out, "\n{:<w0$}  {:<w1$}  TASKS", "RESTART", "REASON");
        for [scope, reason, tasks] in &rows {
            let _ = writeln!(out, "{scope:<w0$}  {reason:<w1$}  {tasks}");
        }
        out
    }

    fn task_name(&self, t: TaskId) -> String {
        self.graph.task_name(t).to_string()
    }

    fn scope_tasks(&self, scope: RestartScope) -> Cow<'_, [TaskId]> {
        match scope {
            RestartScope::Region(r) => Cow::Borrowed(self.regions.tasks(r)),
            RestartScope::Task(t) => Cow::Owned(vec![t]),
        }
    }

    fn scope_json(&self, scope: RestartScope) -> ScopeJson {
        match scope {
            RestartScope::Region(r) => ScopeJson::Region(r.0),
            RestartScope::Task(t) => ScopeJson::Task(self.task_name(t)),
        }
    }

    /// Task names with consecutive subtasks of a vertex folded: `map#0-3,7 sink#0`.
    fn compact(&self, tasks: &[TaskId]) -> String {
        let mut sorted = tasks.to_vec();
        sorted.sort_unstable();
        let mut out = String::new();
        let mut previous = None;
        let mut i = 0;
        while i < sorted.len() {
            let vertex = self.graph.vertex_of(sorted[i]);
            let mut j = i;
            while j + 1 < sorted.len()
                && sorted[j + 1].0 == sorted[j].0 + 1
                && self.graph.vertex_of(sorted[j + 1]) == vertex
            {
                j += 1;
            }
            if previous == Some(vertex) {
                out.push(',');
            } else {
                if !out.is_empty() {
                    out.push(' ');
                }
                let _ = write!(out, "{}#", self.graph.vertex(vertex).id);
            }
            let (a, b) = (
                self.graph.subtask_of(sorted[i]),
                self.graph.subtask_of(sorted[j]),
            );
            let _ = if a == b {
                write!(out, "{a}")
            } else {
                write!(out, "{a}-{b}")
            };
            previous = Some(vertex);
            i = j + 1;
        }
        out
    }
}

/// Entries per reason, every reason listed, in the order the rules apply.
fn reason_counts(rs: &RestartSet) -> IndexedCounts {
    let mut counts: IndexedCounts = [
        "failed",
        "producer-of-lost-input",
        "consumer-of-restarted-region",
        "lost-output",
        "full-restart",
    ]
    .map(|k| (k, 0))
    .into();
    for e in &rs.entries {
        if let Some(slot) = counts.iter_mut().find(|(k, _)| *k == e.reason.kind()) {
            slot.1 += 1;
        }
    }
    counts
}

/// `(reason, count)` pairs; serialized as a JSON object in this order.
type IndexedCounts = Vec<(&'static str, usize)>;

fn serialize_counts<S: serde::Serializer>(
    counts: &Option<IndexedCounts>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let counts = counts.as_deref().unwrap_or_default();
    let mut map = serializer.serialize_map(Some(counts.len()))?;
    for (k, v) in counts {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Resolves task names, with an error that says what exists instead.
fn resolve(
    graph: &ExecutionGraph,
    flag: &'static str,
    names: &[String],
) -> Result<Vec<TaskId>, PlanError> {
    names
        .iter()
        .map(|name| {
            graph.find_task(name).ok_or_else(|| PlanError::UnknownTask {
                flag,
                name: name.clone(),
                problem: unknown_task_problem(graph, name),
            })
        })
        .collect()
}

fn unknown_task_problem(graph: &ExecutionGraph, name: &str) -> String {
    let Some((vertex, _)) = name.rsplit_once('#') else {
        return "a task is named vertex#subtask, e.g. map#0".to_owned();
    };
    match graph.find_vertex(vertex) {
        Some(v) => format!(
            "vertex {vertex:?} has subtasks 0 to {}",
            graph.vertex(v).parallelism - 1
        ),
        None => {
            let known: Vec<&str> = graph
                .vertices()
                .iter()
                .take(8)
                .map(|v| v.id.as_str())
                .collect();
            let more = if graph.vertices().len() > known.len() {
                ", ..."
            } else {
                ""
            };
            format!(
                "no vertex {vertex:?}; the vertices are {}{more}",
                known.join(", ")
            )
        }
    }
}

#[derive(Serialize)]
struct FullJson {
    job: String,
    strategy: &'static str,
    tasks: usize,
    regions: Vec<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasons: Option<Vec<ReasonJson>>,
}

#[derive(Serialize)]
struct ReasonJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<u32>,
    tasks: Vec<String>,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_task: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumer: Option<ScopeJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    producer: Option<ScopeJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum ScopeJson {
    Region(u32),
    Task(String),
}

#[derive(Serialize)]
struct SummaryJson {
    job: String,
    strategy: &'static str,
    tasks: usize,
    regions: usize,
    largest_region: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart_entries: Option<usize>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_counts"
    )]
    reasons: Option<IndexedCounts>,
}
