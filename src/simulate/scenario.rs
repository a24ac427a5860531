//! Scenario files: parsing and validating what `jmctl simulate` runs (the job, executors,
//! run times, latencies, the fault timeline and the end time).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::core::domain::check_label;
use crate::core::duration::parse_duration;
use crate::core::{
    CheckpointConfig, CoreConfig, ExecutorId, Failure, FailureClass, FailureDomain, JobSpec,
    LabelError, Labels, Millis, PartitionId, SpecFormat, TaskId, UnknownName,
};

/// Why a scenario was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    #[error("invalid {format} scenario: {message}")]
    Syntax { format: SpecFormat, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// How long a vertex's tasks run once deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunTime {
    For(Millis),
    /// Streaming: until cancelled.
    Forever,
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// The task's current attempt fails (if it is running).
    FailTask { task: TaskId, failure: Failure },
    /// The executor dies: its tasks die with it; the JobMaster learns after `detection`.
    LoseExecutor { executor: ExecutorId },
    /// A new executor registers (or a known one registers again), with its labels.
    AddExecutor {
        executor: ExecutorId,
        slots: u32,
        labels: Labels,
    },
    /// Every live executor labelled with the domain dies at once (each as `LoseExecutor`).
    LoseDomain { domain: FailureDomain },
    /// A result partition disappears.
    LosePartition { partition: PartitionId },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub at: Millis,
    pub kind: FaultKind,
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub spec: JobSpec,
    /// The cluster at time 0: id, slots, labels.
    pub executors: Vec<(ExecutorId, u32, Labels)>,
    /// Per vertex (spec order).
    pub runtime: Vec<RunTime>,
    /// Per vertex (spec order): how long its tasks take to acknowledge a checkpoint trigger
    /// (`[checkpoint-ack]`, default 100 ms).
    pub checkpoint_ack: Vec<Millis>,
    pub deploy_latency: Millis,
    pub cancel_latency: Millis,
    pub detection_latency: Millis,
    pub faults: Vec<Fault>,
    pub until: Millis,
    pub core: CoreConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawScenario {
    job: Option<serde_json::Value>,
    #[serde(default)]
    executors: Vec<RawExecutor>,
    #[serde(default)]
    runtime: BTreeMap<String, String>,
    #[serde(default)]
    latency: RawLatency,
    /// `[checkpoint-ack]`: per vertex (and `default`), the acknowledgement latency.
    #[serde(default)]
    checkpoint_ack: BTreeMap<String, String>,
    /// Overrides (or sets) the job's `checkpoint.interval`: to compare intervals on one spec.
    checkpoint_interval: Option<String>,
    #[serde(default)]
    faults: Vec<RawFault>,
    until: Option<String>,
    seed: Option<u64>,
    slot_request_timeout: Option<String>,
    cancel_timeout: Option<String>,
    /// `[quarantine]`: the daemon's `scheduler.quarantine` keys.
    quarantine: Option<RawQuarantine>,
    /// `[region-restart-budget]`: the daemon's `scheduler.region-restart-budget` keys.
    region_restart_budget: Option<RawBudget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawQuarantine {
    max_task_failures: Option<u32>,
    max_losses: Option<u32>,
    window: Option<String>,
    duration: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawBudget {
    max_restarts: Option<u32>,
    window: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExecutor {
    id: String,
    slots: u32,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLatency {
    deploy: Option<String>,
    cancel: Option<String>,
    detection: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at: String,
    kind: String,
    task: Option<String>,
    class: Option<String>,
    message: Option<String>,
    executor: Option<String>,
    slots: Option<u32>,
    partition: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    domain: Option<String>,
}

/// How long a task takes to acknowledge a checkpoint trigger when the scenario does not say.
pub const DEFAULT_CHECKPOINT_ACK: Millis = 100;

fn duration(field: &str, text: &str) -> Result<Millis, ScenarioError> {
    parse_duration(text)
        .map(|d| d.as_millis() as Millis)
        .map_err(|e| invalid(field, e))
}

impl Scenario {
    /// Parses a scenario. `load(path)` returns the text of a job spec named by path (relative
    /// paths are the caller's business: `jmctl` resolves them against the scenario's folder).
    pub fn parse(
        text: &str,
        format: SpecFormat,
        load: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Scenario, ScenarioError> {
        let syntax = |message: String| ScenarioError::Syntax { format, message };
        let raw: RawScenario = match format {
            SpecFormat::Toml => {
                toml::from_str(text).map_err(|e| syntax(flatten(&e.to_string())))?
            }
            SpecFormat::Json => {
                serde_json::from_str(text).map_err(|e| syntax(flatten(&e.to_string())))?
            }
        };
        let spec = match raw.job {
            None => {
                return Err(invalid(
                    "job",
                    "missing: give a spec path or an inline spec table",
                ));
            }
            Some(serde_json::Value::String(path)) => {
                let spec_text = load(&path).map_err(|e| invalid("job", e))?;
                let spec_format = SpecFormat::detect(Some(&path), &spec_text);
                JobSpec::parse(&spec_text, spec_format)
                    .map_err(|e| invalid("job", format!("{path}: {e}")))?
            }
            Some(value @ serde_json::Value::Object(_)) => {
                let json =
                    serde_json::to_string(&value).map_err(|e| invalid("job", e.to_string()))?;
                JobSpec::from_json(&json).map_err(|e| invalid("job", e.to_string()))?
            }
            Some(_) => {
                return Err(invalid(
                    "job",
                    "must be a spec path or an inline spec table",
                ));
            }
        };

        let mut executors = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, e) in raw.executors.iter().enumerate() {
            if e.id.is_empty() {
                return Err(invalid(format!("executors[{i}].id"), "must not be empty"));
            }
            if e.slots == 0 {
                return Err(invalid(
                    format!("executors[{i}].slots"),
                    "must be at least 1",
                ));
            }
            if !seen.insert(e.id.clone()) {
                return Err(invalid(
                    format!("executors[{i}].id"),
                    format!("{:?} is declared twice", e.id),
                ));
            }
            let labels = check_labels(&format!("executors[{i}].labels"), &e.labels)?;
            executors.push((ExecutorId(e.id.clone()), e.slots, labels));
        }

        let default_runtime = match raw.runtime.get("default") {
            Some(text) => parse_runtime("runtime.default", text)?,
            None => RunTime::Forever,
        };
        let mut runtime = vec![default_runtime; spec.vertices.len()];
        for (vertex, text) in &raw.runtime {
            if vertex == "default" {
                continue;
            }
            let field = format!("runtime.{vertex}");
            let i = spec
                .vertices
                .iter()
                .position(|v| &v.id == vertex)
                .ok_or_else(|| invalid(&field, "no such vertex in the job"))?;
            runtime[i] = parse_runtime(&field, text)?;
        }

        let default_ack = match raw.checkpoint_ack.get("default") {
            Some(text) => duration("checkpoint-ack.default", text)?,
            None => DEFAULT_CHECKPOINT_ACK,
        };
        let mut checkpoint_ack = vec![default_ack; spec.vertices.len()];
        for (vertex, text) in &raw.checkpoint_ack {
            if vertex == "default" {
                continue;
            }
            let field = format!("checkpoint-ack.{vertex}");
            let i = spec
                .vertices
                .iter()
                .position(|v| &v.id == vertex)
                .ok_or_else(|| invalid(&field, "no such vertex in the job"))?;
            checkpoint_ack[i] = duration(&field, text)?;
        }
        let mut spec = spec;
        if let Some(text) = &raw.checkpoint_interval {
            let interval = parse_duration(text).map_err(|e| invalid("checkpoint-interval", e))?;
            if interval.is_zero() {
                return Err(invalid("checkpoint-interval", "must be greater than 0"));
            }
            match spec.checkpoint.as_mut() {
                Some(c) => c.interval = interval,
                None => spec.checkpoint = Some(CheckpointConfig::every(interval)),
            }
        }

        let latency = |field: &str, v: &Option<String>, default: Millis| match v {
            Some(t) => duration(field, t),
            None => Ok(default),
        };
        let deploy_latency = latency("latency.deploy", &raw.latency.deploy, 10)?;
        let cancel_latency = latency("latency.cancel", &raw.latency.cancel, 10)?;
        let detection_latency = latency("latency.detection", &raw.latency.detection, 0)?;
        let until = duration(
            "until",
            raw.until.as_deref().ok_or_else(|| {
                invalid("until", "missing: when the simulation ends, e.g. \"60s\"")
            })?,
        )?;

        let graph = crate::core::ExecutionGraph::build(&spec);
        let mut faults = Vec::new();
        let mut known: BTreeSet<String> = seen;
        // Every label any executor carries at some point: a lost domain must name one.
        let mut domains: BTreeSet<FailureDomain> = executors
            .iter()
            .flat_map(|(_, _, labels)| labels.iter())
            .map(|(key, value)| FailureDomain {
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        for (i, f) in raw.faults.iter().enumerate() {
            let field = |k: &str| format!("faults[{i}].{k}");
            let at = duration(&field("at"), &f.at)?;
            let need = |v: &Option<String>, k: &str| {
                v.clone()
                    .ok_or_else(|| invalid(field(k), format!("missing for kind {:?}", f.kind)))
            };
            let kind = match f.kind.as_str() {
                "fail-task" => {
                    let name = need(&f.task, "task")?;
                    let task = graph.find_task(&name).ok_or_else(|| {
                        invalid(field("task"), format!("no task {name:?} in the job"))
                    })?;
                    let class = match &f.class {
                        None => FailureClass::Recoverable,
                        Some(c) => c.parse().map_err(|e: UnknownName| {
                            invalid(
                                field("class"),
                                format!("unknown class {c:?}; expected one of {}", e.expected),
                            )
                        })?,
                    };
                    let message = f
                        .message
                        .clone()
                        .unwrap_or_else(|| format!("injected {} failure", class.name()));
                    FaultKind::FailTask {
                        task,
                        failure: Failure::new(class, message),
                    }
                }
                "lose-executor" => {
                    let id = need(&f.executor, "executor")?;
                    if !known.contains(&id) {
                        return Err(invalid(field("executor"), format!("no executor {id:?}")));
                    }
                    FaultKind::LoseExecutor {
                        executor: ExecutorId(id),
                    }
                }
                "add-executor" => {
                    let id = need(&f.executor, "executor")?;
                    if id.is_empty() {
                        return Err(invalid(field("executor"), "must not be empty"));
                    }
                    let slots = f.slots.unwrap_or(1);
                    if slots == 0 {
                        return Err(invalid(field("slots"), "must be at least 1"));
                    }
                    known.insert(id.clone());
                    let labels = match &f.labels {
                        Some(l) => check_labels(&field("labels"), l)?,
                        None => Labels::new(),
                    };
                    domains.extend(labels.iter().map(|(key, value)| FailureDomain {
                        key: key.clone(),
                        value: value.clone(),
                    }));
                    FaultKind::AddExecutor {
                        executor: ExecutorId(id),
                        slots,
                        labels,
                    }
                }
                "lose-domain" => {
                    let text = need(&f.domain, "domain")?;
                    let domain: FailureDomain = text
                        .parse()
                        .map_err(|e: LabelError| invalid(field("domain"), e.to_string()))?;
                    if !domains.contains(&domain) {
                        return Err(invalid(
                            field("domain"),
                            format!(
                                "no executor is labelled {domain} (in executors or an earlier \
                                 add-executor)"
                            ),
                        ));
                    }
                    FaultKind::LoseDomain { domain }
                }
                "lose-partition" => {
                    let name = need(&f.partition, "partition")?;
                    let partition = find_partition(&graph, &name).ok_or_else(|| {
                        invalid(
                            field("partition"),
                            format!(
                                "no partition {name:?}; name it producer-task->consumer-vertex, \
                                 e.g. read#1->count"
                            ),
                        )
                    })?;
                    FaultKind::LosePartition { partition }
                }
                other => {
                    return Err(invalid(
                        field("kind"),
                        format!(
                            "unknown fault {other:?}; expected one of fail-task, lose-executor, \
                             lose-domain, add-executor, lose-partition"
                        ),
                    ));
                }
            };
            faults.push(Fault { at, kind });
        }
        let mut core = CoreConfig {
            seed: raw.seed.unwrap_or(0),
            ..CoreConfig::default()
        };
        if let Some(t) = &raw.slot_request_timeout {
            core.slot_request_timeout_ms = duration("slot-request-timeout", t)?;
        }
        if let Some(t) = &raw.cancel_timeout {
            core.cancel_timeout_ms = duration("cancel-timeout", t)?;
        }
        if let Some(q) = &raw.quarantine {
            let c = &mut core.quarantine;
            c.max_task_failures = q.max_task_failures.unwrap_or(c.max_task_failures);
            c.max_losses = q.max_losses.unwrap_or(c.max_losses);
            if let Some(t) = &q.window {
                c.window_ms = duration("quarantine.window", t)?;
            }
            if let Some(t) = &q.duration {
                c.duration_ms = duration("quarantine.duration", t)?;
            }
        }
        if let Some(b) = &raw.region_restart_budget {
            let c = &mut core.region_restart_budget;
            c.max_restarts = b.max_restarts.unwrap_or(c.max_restarts);
            if let Some(t) = &b.window {
                c.window_ms = duration("region-restart-budget.window", t)?;
            }
        }
        Ok(Scenario {
            spec,
            executors,
            runtime,
            checkpoint_ack,
            deploy_latency,
            cancel_latency,
            detection_latency,
            faults,
            until,
            core,
        })
    }
}

/// Checks the labels of one executor (`field` names where they are).
fn check_labels(field: &str, labels: &BTreeMap<String, String>) -> Result<Labels, ScenarioError> {
    for (key, value) in labels {
        check_label(key, value).map_err(|e| invalid(field, e.to_string()))?;
    }
    Ok(labels.clone())
}

fn parse_runtime(field: &str, text: &str) -> Result<RunTime, ScenarioError> {
    if text.trim() == "forever" {
        Ok(RunTime::Forever)
    } else {
        duration(field, text).map(RunTime::For)
    }
}

fn flatten(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && l.chars().any(char::is_alphanumeric))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Finds `producer#i->consumer`.
fn find_partition(graph: &crate::core::ExecutionGraph, name: &str) -> Option<PartitionId> {
    let (producer, consumer) = name.split_once("->")?;
    let task = graph.find_task(producer.trim())?;
    let consumer = graph.find_vertex(consumer.trim())?;
    graph.partition_to(task, consumer)
}
