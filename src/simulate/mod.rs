//! `jmctl simulate`: the real JobMaster core against virtual executors and a virtual clock.
//!
//! A scenario gives a job spec, executors, per-vertex run times, deploy/cancel/detection
//! latencies, a fault timeline and an end time. The simulator turns the core's commands into
//! virtual executor behaviour (a deploy runs the task after the deploy latency, a cancel stops it
//! after the cancel latency, a lost executor's tasks die with it) and feeds the outcomes back as
//! events. Everything is ordered by (time, sequence number), so the same scenario always yields
//! the same output, byte for byte.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::{
    AttemptId, AttemptState, Command, CoreConfig, Event, ExecutorId, Failure, FailureClass, JobId,
    JobMaster, JobSpec, Millis, Notice, PartitionId, SpecFormat, TaskId, TimerId,
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
    /// A new executor registers (or a known one registers again).
    AddExecutor { executor: ExecutorId, slots: u32 },
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
    pub executors: Vec<(ExecutorId, u32)>,
    /// Per vertex (spec order).
    pub runtime: Vec<RunTime>,
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
    #[serde(default)]
    faults: Vec<RawFault>,
    until: Option<String>,
    seed: Option<u64>,
    slot_request_timeout: Option<String>,
    cancel_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExecutor {
    id: String,
    slots: u32,
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
}

/// Longest simulated time: a year of virtual time is plenty and keeps arithmetic far from
/// overflow.
const MAX_TIME: Duration = Duration::from_secs(366 * 24 * 3600);

fn duration(field: &str, text: &str) -> Result<Millis, ScenarioError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        invalid(
            field,
            format!("{text:?} is not a duration ({e}); write e.g. \"250ms\", \"10s\", \"1min\""),
        )
    })?;
    if d > MAX_TIME {
        return Err(invalid(field, format!("{text:?} is longer than a year")));
    }
    Ok(d.as_millis() as Millis)
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
            executors.push((ExecutorId(e.id.clone()), e.slots));
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
                        Some(c) => FailureClass::parse(c).ok_or_else(|| {
                            invalid(
                                field("class"),
                                format!(
                                    "unknown class {c:?}; expected one of recoverable, \
                                     non-recoverable, executor-lost, partition-lost"
                                ),
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
                    FaultKind::AddExecutor {
                        executor: ExecutorId(id),
                        slots,
                    }
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
                             add-executor, lose-partition"
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
        Ok(Scenario {
            spec,
            executors,
            runtime,
            deploy_latency,
            cancel_latency,
            detection_latency,
            faults,
            until,
            core,
        })
    }
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
    let vertex = graph.vertex(graph.vertex_of(task));
    vertex
        .outputs()
        .iter()
        .zip(graph.produced_partitions(task))
        .find(|(e, _)| graph.edge(**e).to == consumer)
        .map(|(_, p)| p)
}

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
    fn new(t_ms: Millis, kind: &'static str) -> SimEvent {
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

/// What a simulation produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    pub events: Vec<SimEvent>,
    #[serde(rename = "final")]
    pub final_state: FinalState,
}

#[derive(Debug, Clone)]
enum Item {
    Fault(usize),
    Timer(TimerId),
    /// A virtual executor reports on an attempt it runs.
    Report {
        executor: ExecutorId,
        attempt: AttemptId,
        state: AttemptState,
    },
    /// A virtual executor finishes cancelling an attempt.
    CancelDone {
        executor: ExecutorId,
        attempt: AttemptId,
    },
    /// The deploy RPC to a dead executor fails.
    DeployFailed {
        executor: ExecutorId,
        attempt: AttemptId,
    },
    /// The JobMaster notices a dead executor (this incarnation of it).
    Detect(ExecutorId, u64),
}

struct VirtualExecutor {
    alive: bool,
    running: BTreeSet<AttemptId>,
    /// Bumped when the id registers again: a late detection of an earlier incarnation's death
    /// must not take the new one down (the new registration already fenced the old session).
    incarnation: u64,
}

struct Sim<'a> {
    scenario: &'a Scenario,
    core: JobMaster,
    job: JobId,
    queue: BTreeMap<(Millis, u64), Item>,
    seq: u64,
    /// Where each set timer sits in `queue`, so a cancelled one can be taken out.
    timers: HashMap<TimerId, (Millis, u64)>,
    executors: BTreeMap<ExecutorId, VirtualExecutor>,
    events: Vec<SimEvent>,
    record: bool,
}

/// Runs a scenario. With `record_events` false only the final state is kept (for big runs).
pub fn simulate(scenario: &Scenario, record_events: bool) -> SimReport {
    let mut sim = Sim {
        scenario,
        core: JobMaster::new(scenario.core.clone()),
        job: JobId(1),
        queue: BTreeMap::new(),
        seq: 0,
        timers: HashMap::new(),
        executors: BTreeMap::new(),
        events: Vec::new(),
        record: record_events,
    };
    for (id, slots) in &scenario.executors {
        sim.executors.insert(
            id.clone(),
            VirtualExecutor {
                alive: true,
                running: BTreeSet::new(),
                incarnation: 0,
            },
        );
        sim.feed(
            Event::ExecutorRegistered {
                executor: id.clone(),
                slots: *slots,
            },
            0,
        );
    }
    sim.feed(
        Event::SubmitJob {
            job: sim.job,
            spec: scenario.spec.clone(),
        },
        0,
    );
    for (i, f) in scenario.faults.iter().enumerate() {
        sim.push(f.at, Item::Fault(i));
    }
    while let Some(entry) = sim.queue.first_entry() {
        let (now, _) = *entry.key();
        if now > scenario.until {
            break;
        }
        let item = entry.remove();
        sim.step(item, now);
    }
    let final_state = sim.final_state();
    SimReport {
        events: sim.events,
        final_state,
    }
}

impl Sim<'_> {
    fn push(&mut self, at: Millis, item: Item) {
        self.queue.insert((at, self.seq), item);
        self.seq += 1;
    }

    fn log(&mut self, event: SimEvent) {
        if self.record {
            self.events.push(event);
        }
    }

    fn task_name(&self, t: TaskId) -> String {
        self.core
            .graph(self.job)
            .map(|g| g.task_name(t).to_string())
            .unwrap_or_default()
    }

    fn feed(&mut self, event: Event, now: Millis) {
        match self.core.handle(event, now) {
            Ok(commands) => self.carry_out(commands, now),
            Err(rejected) => {
                let mut e = SimEvent::new(now, "rejected");
                e.detail = Some(rejected.error.to_string());
                self.log(e);
                self.carry_out(rejected.commands, now);
            }
        }
    }

    fn carry_out(&mut self, commands: Vec<Command>, now: Millis) {
        for command in commands {
            match command {
                Command::SetTimer { timer, at } => {
                    let key = (at.max(now), self.seq);
                    self.timers.insert(timer, key);
                    self.push(key.0, Item::Timer(timer));
                }
                Command::CancelTimer { timer } => {
                    if let Some(key) = self.timers.remove(&timer) {
                        self.queue.remove(&key);
                    }
                }
                Command::Deploy { attempt, executor } => {
                    let mut e = SimEvent::new(now, "deploy");
                    e.task = Some(self.task_name(attempt.task));
                    e.attempt = Some(attempt.attempt);
                    e.executor = Some(executor.0.clone());
                    self.log(e);
                    let vertex = self
                        .core
                        .graph(self.job)
                        .map(|g| g.vertex_of(attempt.task).0 as usize)
                        .unwrap_or(0);
                    let runtime = self.scenario.runtime[vertex];
                    let deploy = self.scenario.deploy_latency;
                    match self.executors.get_mut(&executor) {
                        Some(vx) if vx.alive => {
                            vx.running.insert(attempt);
                            self.push(
                                now + deploy,
                                Item::Report {
                                    executor: executor.clone(),
                                    attempt,
                                    state: AttemptState::Running,
                                },
                            );
                            if let RunTime::For(ms) = runtime {
                                self.push(
                                    now + deploy + ms,
                                    Item::Report {
                                        executor,
                                        attempt,
                                        state: AttemptState::Finished,
                                    },
                                );
                            }
                        }
                        _ => self.push(now + deploy, Item::DeployFailed { executor, attempt }),
                    }
                }
                Command::Cancel { attempt, executor } => {
                    let mut e = SimEvent::new(now, "cancel");
                    e.task = Some(self.task_name(attempt.task));
                    e.attempt = Some(attempt.attempt);
                    e.executor = Some(executor.0.clone());
                    self.log(e);
                    if self.executors.get(&executor).is_some_and(|vx| vx.alive) {
                        self.push(
                            now + self.scenario.cancel_latency,
                            Item::CancelDone { executor, attempt },
                        );
                    }
                }
                Command::ReleasePartitions {
                    executor,
                    partitions,
                    ..
                } => {
                    let mut e = SimEvent::new(now, "release-partitions");
                    e.executor = executor.map(|x| x.0);
                    if let Some(g) = self.core.graph(self.job) {
                        e.partitions =
                            Some(partitions.iter().map(|p| g.partition_name(*p)).collect());
                    }
                    self.log(e);
                }
                Command::Notify(notice) => self.notice(notice, now),
            }
        }
    }

    fn notice(&mut self, notice: Notice, now: Millis) {
        if !self.record {
            return;
        }
        let e = match notice {
            Notice::JobState { state, cause, .. } => {
                let mut e = SimEvent::new(now, "job-state");
                e.state = Some(state.name());
                e.detail = cause;
                e
            }
            Notice::TaskState {
                attempt,
                state,
                executor,
            } => {
                let mut e = SimEvent::new(now, "task-state");
                e.task = Some(self.task_name(attempt.task));
                e.attempt = Some(attempt.attempt);
                e.state = Some(state.name());
                e.executor = executor.map(|x| x.0);
                e
            }
            Notice::RestartScheduled {
                tasks,
                delay_ms,
                merged,
                cause,
                ..
            } => {
                let mut e = SimEvent::new(now, "restart-scheduled");
                e.tasks = Some(tasks.iter().map(|t| self.task_name(*t)).collect());
                e.delay_ms = Some(delay_ms);
                e.merged = Some(merged);
                e.detail = Some(cause);
                e
            }
            Notice::ExecutorRegistered { executor, slots } => {
                let mut e = SimEvent::new(now, "executor-registered");
                e.executor = Some(executor.0);
                e.slots = Some(slots);
                e
            }
            Notice::ExecutorLost { executor, reason } => {
                let mut e = SimEvent::new(now, "executor-lost");
                e.executor = Some(executor.0);
                e.detail = Some(reason);
                e
            }
        };
        self.events.push(e);
    }

    fn step(&mut self, item: Item, now: Millis) {
        match item {
            Item::Timer(timer) => {
                self.timers.remove(&timer);
                self.feed(Event::TimerFired { timer }, now)
            }
            Item::Report {
                executor,
                attempt,
                state,
            } => {
                let running = self
                    .executors
                    .get_mut(&executor)
                    .filter(|vx| vx.alive)
                    .map(|vx| {
                        if state.is_terminal() {
                            vx.running.remove(&attempt)
                        } else {
                            vx.running.contains(&attempt)
                        }
                    })
                    .unwrap_or(false);
                if running {
                    self.feed(
                        Event::TaskStateChanged {
                            executor,
                            attempt,
                            state,
                            failure: None,
                        },
                        now,
                    );
                }
            }
            Item::CancelDone { executor, attempt } => {
                let was_running = self
                    .executors
                    .get_mut(&executor)
                    .filter(|vx| vx.alive)
                    .is_some_and(|vx| vx.running.remove(&attempt));
                if was_running {
                    self.feed(
                        Event::TaskStateChanged {
                            executor,
                            attempt,
                            state: AttemptState::Canceled,
                            failure: None,
                        },
                        now,
                    );
                }
            }
            Item::DeployFailed { executor, attempt } => self.feed(
                Event::TaskStateChanged {
                    failure: Some(Failure::recoverable(format!(
                        "deploy to executor {executor} failed: unreachable"
                    ))),
                    executor,
                    attempt,
                    state: AttemptState::Failed,
                },
                now,
            ),
            Item::Detect(executor, incarnation) => {
                let current = self
                    .executors
                    .get(&executor)
                    .is_some_and(|vx| vx.incarnation == incarnation);
                if current {
                    self.feed(
                        Event::ExecutorLost {
                            executor,
                            reason: "lost in the scenario".into(),
                        },
                        now,
                    );
                }
            }
            Item::Fault(i) => self.fault(i, now),
        }
    }

    fn fault(&mut self, i: usize, now: Millis) {
        let fault = self.scenario.faults[i].clone();
        let mut e = SimEvent::new(now, "fault");
        match fault.kind {
            FaultKind::FailTask { task, failure } => {
                e.detail = Some(format!("fail-task ({})", failure.class));
                e.task = Some(self.task_name(task));
                let view = self.core.task(self.job, task);
                let running_on = view.as_ref().and_then(|v| {
                    let executor = v.executor.clone()?;
                    let attempt = AttemptId {
                        job: self.job,
                        task,
                        attempt: v.attempt,
                    };
                    let vx = self.executors.get_mut(&executor)?;
                    (vx.alive && vx.running.remove(&attempt)).then_some((executor, attempt))
                });
                match running_on {
                    Some((executor, attempt)) => {
                        e.attempt = Some(attempt.attempt);
                        e.executor = Some(executor.0.clone());
                        self.log(e);
                        self.feed(
                            Event::TaskStateChanged {
                                executor,
                                attempt,
                                state: AttemptState::Failed,
                                failure: Some(failure),
                            },
                            now,
                        );
                    }
                    None => {
                        e.detail = Some(format!(
                            "fail-task skipped: the task is {}",
                            view.map_or("unknown", |v| v.state.name())
                        ));
                        self.log(e);
                    }
                }
            }
            FaultKind::LoseExecutor { executor } => {
                e.detail = Some("lose-executor".into());
                e.executor = Some(executor.0.clone());
                self.log(e);
                if let Some(vx) = self.executors.get_mut(&executor)
                    && vx.alive
                {
                    vx.alive = false;
                    vx.running.clear();
                    let incarnation = vx.incarnation;
                    self.push(
                        now + self.scenario.detection_latency,
                        Item::Detect(executor, incarnation),
                    );
                }
            }
            FaultKind::AddExecutor { executor, slots } => {
                e.detail = Some("add-executor".into());
                e.executor = Some(executor.0.clone());
                e.slots = Some(slots);
                self.log(e);
                let incarnation = self
                    .executors
                    .get(&executor)
                    .map_or(0, |vx| vx.incarnation + 1);
                self.executors.insert(
                    executor.clone(),
                    VirtualExecutor {
                        alive: true,
                        running: BTreeSet::new(),
                        incarnation,
                    },
                );
                self.feed(Event::ExecutorRegistered { executor, slots }, now);
            }
            FaultKind::LosePartition { partition } => {
                e.detail = Some("lose-partition".into());
                if let Some(g) = self.core.graph(self.job) {
                    e.partitions = Some(vec![g.partition_name(partition)]);
                }
                self.log(e);
                self.feed(
                    Event::PartitionLost {
                        job: self.job,
                        partition,
                    },
                    now,
                );
            }
        }
    }

    fn final_state(&self) -> FinalState {
        let now = self.scenario.until;
        let job = self.job;
        let core = &self.core;
        let counters = core.counters(job).cloned().unwrap_or_default();
        let regions = core.regions(job);
        let downtime = core.region_downtime_ms(job, now).unwrap_or_default();
        FinalState {
            t_ms: now,
            job_state: core.job_state(job).map_or("UNKNOWN", |s| s.name()),
            cause: core.job_cause(job).map(str::to_owned),
            restarts: counters.restarts,
            failovers: counters.failovers,
            full_restarts: counters.full_restarts,
            tasks_restarted: counters.tasks_restarted,
            restarting_ms: core.restarting_ms(job, now).unwrap_or(0),
            exceptions: core.exception_history(job).map_or(0, |h| h.len()),
            tasks: core
                .tasks(job)
                .unwrap_or_default()
                .into_iter()
                .map(|v| FinalTask {
                    task: v.name,
                    attempt: v.attempt,
                    state: v.state.name(),
                    executor: v.executor.map(|e| e.0),
                    region: v.region.0,
                })
                .collect(),
            regions: regions
                .map(|rs| {
                    rs.ids()
                        .map(|r| FinalRegion {
                            region: r.0,
                            tasks: rs.tasks(r).len(),
                            restarts: counters
                                .region_restarts
                                .get(r.index())
                                .copied()
                                .unwrap_or(0),
                            downtime_ms: downtime.get(r.index()).copied().unwrap_or(0),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
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
        out
    }
}
