//! The job spec: what a user submits (DESIGN §2, §6), parsed from TOML or JSON and validated.
//!
//! Parsing goes through loosely typed "raw" structs first, so that every value error names the
//! field it is in (`edges[2].pattern`) instead of a deserializer's generic message. Validation
//! checks everything the execution graph relies on (known, unique vertices; no self-loops, no
//! duplicate edges, no cycles; bounded parallelism), so graph construction itself cannot fail.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use super::duration::parse_duration;
use super::names::check_name;
use super::placement::PlacementPolicy;
use serde::Deserialize;

mod checkpoint;
pub use checkpoint::CheckpointConfig;

/// Default upper bound on a vertex's parallelism.
pub const DEFAULT_MAX_PARALLELISM: u32 = 100_000;

/// Longest vertex id we accept; ids end up in task names, logs and metric labels.
pub const MAX_VERTEX_ID_LEN: usize = super::names::MAX_NAME_LEN;

/// Bounds a spec must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecLimits {
    /// Highest parallelism a single vertex may have.
    pub max_parallelism: u32,
}

impl SpecLimits {
    /// No bound: for specs accepted before (a store), whose limits may have changed since.
    pub const NONE: SpecLimits = SpecLimits {
        max_parallelism: u32::MAX,
    };
}

impl Default for SpecLimits {
    fn default() -> Self {
        SpecLimits {
            max_parallelism: DEFAULT_MAX_PARALLELISM,
        }
    }
}

/// How a consumer's subtasks are wired to a producer's subtasks (DESIGN §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    Pointwise,
    AllToAll,
}

/// How data crosses an edge, which decides region boundaries and what survives a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exchange {
    /// In-memory stream: producer and consumer run together; couples them into one region.
    Pipelined,
    /// Whole output on the producer executor's disk before consumers start.
    Blocking,
    /// Like blocking, on storage that outlives the executor.
    Persistent,
}

impl Exchange {
    /// True for exchanges that keep a whole result partition that can be read again.
    pub fn is_reconsumable(self) -> bool {
        !matches!(self, Exchange::Pipelined)
    }
}

/// Which tasks restart when a task fails (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FailoverStrategy {
    /// Every task of the job.
    Full,
    /// The pipelined regions that must restart: failed, producers of lost inputs, consumers.
    #[default]
    Region,
    /// The failed task and the producers of its unavailable inputs; consumers are not restarted.
    Individual,
}

/// When a restart may happen and when the job gives up, with Flink's names and defaults.
#[derive(Debug, Clone, PartialEq)]
pub enum RestartStrategyConfig {
    /// Never restart: the first failure fails the job.
    None,
    /// Restart up to `attempts` times in total, each after `delay`.
    FixedDelay { attempts: u32, delay: Duration },
    /// Restart unless more than `max_failures_per_interval` failures fall within `interval`.
    FailureRate {
        max_failures_per_interval: u32,
        interval: Duration,
        delay: Duration,
    },
    /// Backoff growing by `multiplier` from `initial_backoff` up to `max_backoff`; reset after
    /// `reset_backoff_threshold` without failures; failures during a pending restart merge into it.
    ExponentialDelay {
        initial_backoff: Duration,
        max_backoff: Duration,
        multiplier: f64,
        reset_backoff_threshold: Duration,
        jitter_factor: f64,
        /// `None`: unlimited.
        attempts_before_reset_backoff: Option<u32>,
    },
}

impl RestartStrategyConfig {
    /// The strategy a job gets when its spec has no `[restart]` table.
    pub fn default_exponential() -> Self {
        RestartStrategyConfig::ExponentialDelay {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            multiplier: 1.5,
            reset_backoff_threshold: Duration::from_secs(3600),
            jitter_factor: 0.1,
            attempts_before_reset_backoff: None,
        }
    }

    /// The name used in specs.
    pub fn name(&self) -> &'static str {
        match self {
            RestartStrategyConfig::None => "none",
            RestartStrategyConfig::FixedDelay { .. } => "fixed-delay",
            RestartStrategyConfig::FailureRate { .. } => "failure-rate",
            RestartStrategyConfig::ExponentialDelay { .. } => "exponential-delay",
        }
    }
}

impl Default for RestartStrategyConfig {
    fn default() -> Self {
        RestartStrategyConfig::default_exponential()
    }
}

/// A job vertex: `parallelism` tasks running `command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexSpec {
    pub id: String,
    pub parallelism: u32,
    pub command: Vec<String>,
}

/// A data exchange between two vertices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSpec {
    pub from: String,
    pub to: String,
    pub pattern: Pattern,
    pub exchange: Exchange,
}

/// A validated job spec. Construct it with [`JobSpec::parse`] (or the format-specific helpers);
/// every `JobSpec` obtained that way satisfies the validation rules of this module.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub name: String,
    pub failover: FailoverStrategy,
    pub restart: RestartStrategyConfig,
    /// `placement`: how the job's regions are placed; `None`: the configured default
    /// (`scheduler.placement`).
    pub placement: Option<PlacementPolicy>,
    /// `placement-domain`: the executor label key (e.g. `zone`) a region is kept inside;
    /// `None`: the configured default (`scheduler.placement-domain`); `Some("")`: no domain.
    pub placement_domain: Option<String>,
    /// `[checkpoint]`: how the job is checkpointed; `None`: checkpointing is off.
    pub checkpoint: Option<CheckpointConfig>,
    pub vertices: Vec<VertexSpec>,
    pub edges: Vec<EdgeSpec>,
}

/// The text format of a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    Toml,
    Json,
}

impl SpecFormat {
    /// Picks the format from a file name (`.json` → JSON, `.toml` → TOML), else from the text
    /// itself: a document whose first non-blank character is `{` is JSON.
    pub fn detect(file_name: Option<&str>, text: &str) -> SpecFormat {
        if let Some(name) = file_name {
            let lower = name.to_ascii_lowercase();
            if lower.ends_with(".json") {
                return SpecFormat::Json;
            }
            if lower.ends_with(".toml") {
                return SpecFormat::Toml;
            }
        }
        // JSON is an object (or, mistakenly, an array or a scalar); TOML starts with a key, a
        // comment or a table header (`[name]`, `[[name]]`).
        let start = text.trim_start();
        let mut chars = start.chars();
        match (chars.next(), chars.find(|c| !c.is_whitespace())) {
            (Some('{'), _) => SpecFormat::Json,
            (Some('['), Some(c)) if !(c.is_ascii_alphabetic() || c == '[' || c == '_') => {
                SpecFormat::Json
            }
            _ => SpecFormat::Toml,
        }
    }
}

impl fmt::Display for SpecFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecFormat::Toml => "TOML",
            SpecFormat::Json => "JSON",
        })
    }
}

/// Why a spec was rejected. Each message names the offending field or vertices and says what
/// is accepted instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("invalid {format} job spec: {message}")]
    Syntax { format: SpecFormat, message: String },
    #[error("{field} is missing")]
    Missing { field: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{field}: unknown value {value:?}; expected one of {expected}")]
    UnknownValue {
        field: String,
        value: String,
        expected: &'static str,
    },
    #[error("the job has no vertices: add at least one [[vertices]] entry")]
    Empty,
    #[error("{field}: vertex id {id:?} is used by another vertex; vertex ids must be unique")]
    DuplicateVertex { field: String, id: String },
    #[error("{field}: parallelism of vertex {vertex:?} is {value}; it must be between 1 and {max}")]
    Parallelism {
        field: String,
        vertex: String,
        value: i64,
        max: u32,
    },
    #[error("{field}: unknown vertex {id:?}; declare it under [[vertices]] first")]
    UnknownVertex { field: String, id: String },
    #[error("{field}: edge from {vertex:?} to itself; a vertex cannot consume its own output")]
    SelfLoop { field: String, vertex: String },
    #[error(
        "{field}: a second edge from {from:?} to {to:?}; at most one edge may join two vertices"
    )]
    DuplicateEdge {
        field: String,
        from: String,
        to: String,
    },
    #[error("the edges form a cycle: {}; a job must be a DAG", cycle_text(.vertices))]
    Cycle { vertices: Vec<String> },
}

fn cycle_text(vertices: &[String]) -> String {
    let mut text = vertices.join(" -> ");
    if let Some(first) = vertices.first() {
        text.push_str(" -> ");
        text.push_str(first);
    }
    text
}

impl JobSpec {
    /// Parses and validates a spec with the default limits.
    pub fn parse(text: &str, format: SpecFormat) -> Result<JobSpec, SpecError> {
        JobSpec::parse_with_limits(text, format, SpecLimits::default())
    }

    /// Parses a TOML spec with the default limits.
    pub fn from_toml(text: &str) -> Result<JobSpec, SpecError> {
        JobSpec::parse(text, SpecFormat::Toml)
    }

    /// Parses a JSON spec with the default limits.
    pub fn from_json(text: &str) -> Result<JobSpec, SpecError> {
        JobSpec::parse(text, SpecFormat::Json)
    }

    /// Parses and validates a spec.
    pub fn parse_with_limits(
        text: &str,
        format: SpecFormat,
        limits: SpecLimits,
    ) -> Result<JobSpec, SpecError> {
        let raw = parse_raw(text, format)?;
        raw.validate(limits)
    }

    /// Total number of tasks (sum of parallelisms).
    pub fn task_count(&self) -> u64 {
        self.vertices.iter().map(|v| u64::from(v.parallelism)).sum()
    }
}

/// Deserializes the loosely typed layer. Type errors name the field's path
/// (`vertices[0].parallelism`) and, for TOML, the line and column.
fn parse_raw(text: &str, format: SpecFormat) -> Result<RawSpec, SpecError> {
    let syntax = |message: String| SpecError::Syntax { format, message };
    if text.trim().is_empty() {
        return Err(syntax(
            "the spec is empty: give a name and at least one [[vertices]] entry (see examples/)"
                .into(),
        ));
    }
    let with_path = |path: &serde_path_to_error::Path, message: &str| {
        // A key may hold any character (a quoted TOML key, a JSON string): shown escaped, so
        // the message stays one line.
        let path: String = path
            .to_string()
            .chars()
            .flat_map(|c| match c.is_control() {
                true => c.escape_default().collect::<Vec<_>>(),
                false => vec![c],
            })
            .collect();
        // Our types' names mean nothing to the user; the spec itself is an object (a table).
        let message = message.replace("struct RawSpec", "a job spec object");
        // `?` is serde_path_to_error's path of a syntax error before any field.
        if path.is_empty() || path == "." || path == "?" {
            one_line(&message)
        } else {
            format!("{path}: {}", one_line(&message))
        }
    };
    match format {
        SpecFormat::Toml => {
            let toml_error = |e: &toml::de::Error, path: Option<&serde_path_to_error::Path>| {
                let message = match path {
                    Some(path) => with_path(path, e.message()),
                    None => one_line(e.message()),
                };
                match e.span() {
                    Some(span) => format!("{}: {message}", position(text, span.start)),
                    None => message,
                }
            };
            let de = toml::Deserializer::parse(text).map_err(|e| syntax(toml_error(&e, None)))?;
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().clone();
                syntax(toml_error(&e.into_inner(), Some(&path)))
            })
        }
        SpecFormat::Json => {
            if !text.trim_start().starts_with('{') {
                return Err(syntax(
                    "a JSON job spec is an object: {\"name\": …, \"vertices\": [ … ]}".into(),
                ));
            }
            let mut de = serde_json::Deserializer::from_str(text);
            let raw: RawSpec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().clone();
                syntax(with_path(&path, &e.into_inner().to_string()))
            })?;
            de.end().map_err(|e| syntax(one_line(&e.to_string())))?;
            Ok(raw)
        }
    }
}

/// `line L, column C` (1-based, columns in characters) of a byte offset.
fn position(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("line {line}, column {column}")
}

/// Folds a multi-line deserializer message (TOML errors draw a source excerpt) into one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && l.chars().any(|c| c.is_alphanumeric()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: Option<String>,
    failover: Option<String>,
    restart: Option<RawRestart>,
    placement: Option<String>,
    #[serde(rename = "placement-domain")]
    placement_domain: Option<String>,
    checkpoint: Option<checkpoint::RawCheckpoint>,
    #[serde(default)]
    vertices: Vec<RawVertex>,
    #[serde(default)]
    edges: Vec<RawEdge>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVertex {
    id: Option<String>,
    parallelism: Option<i64>,
    command: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdge {
    from: Option<String>,
    to: Option<String>,
    pattern: Option<String>,
    exchange: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRestart {
    strategy: Option<String>,
    attempts: Option<i64>,
    delay: Option<String>,
    max_failures_per_interval: Option<i64>,
    failure_rate_interval: Option<String>,
    initial_backoff: Option<String>,
    max_backoff: Option<String>,
    backoff_multiplier: Option<f64>,
    reset_backoff_threshold: Option<String>,
    jitter_factor: Option<f64>,
    attempts_before_reset_backoff: Option<i64>,
}

fn missing(field: impl Into<String>) -> SpecError {
    SpecError::Missing {
        field: field.into(),
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl RawSpec {
    fn validate(self, limits: SpecLimits) -> Result<JobSpec, SpecError> {
        let name = self.name.ok_or_else(|| missing("name"))?;
        if name.trim().is_empty() {
            return Err(invalid("name", "the job name must not be empty"));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid(
                "name",
                "the job name must not contain control characters",
            ));
        }
        let failover = match self.failover.as_deref() {
            None => FailoverStrategy::default(),
            Some(v) => parse_failover(v).ok_or_else(|| SpecError::UnknownValue {
                field: "failover".into(),
                value: v.into(),
                expected: "full, region, individual",
            })?,
        };
        let restart = match self.restart {
            None => RestartStrategyConfig::default(),
            Some(r) => r.validate()?,
        };
        let placement = match self.placement.as_deref() {
            None => None,
            Some(v) => Some(
                v.parse::<PlacementPolicy>()
                    .map_err(|_| SpecError::UnknownValue {
                        field: "placement".into(),
                        value: v.into(),
                        expected: "pack-regions, spread",
                    })?,
            ),
        };
        if let Some(key) = &self.placement_domain {
            validate_label_key(key).map_err(|m| invalid("placement-domain", m))?;
        }
        let checkpoint = self.checkpoint.map(|c| c.validate()).transpose()?;
        if self.vertices.is_empty() {
            return Err(SpecError::Empty);
        }

        let mut vertices = Vec::with_capacity(self.vertices.len());
        let mut index: HashMap<String, usize> = HashMap::with_capacity(self.vertices.len());
        for (i, raw) in self.vertices.into_iter().enumerate() {
            let vertex = raw.validate(i, limits)?;
            if index.insert(vertex.id.clone(), i).is_some() {
                return Err(SpecError::DuplicateVertex {
                    field: format!("vertices[{i}].id"),
                    id: vertex.id,
                });
            }
            vertices.push(vertex);
        }

        let mut edges = Vec::with_capacity(self.edges.len());
        let mut seen: HashMap<(usize, usize), usize> = HashMap::with_capacity(self.edges.len());
        for (i, raw) in self.edges.into_iter().enumerate() {
            let edge = raw.validate(i)?;
            let from = *index
                .get(&edge.from)
                .ok_or_else(|| SpecError::UnknownVertex {
                    field: format!("edges[{i}].from"),
                    id: edge.from.clone(),
                })?;
            let to = *index
                .get(&edge.to)
                .ok_or_else(|| SpecError::UnknownVertex {
                    field: format!("edges[{i}].to"),
                    id: edge.to.clone(),
                })?;
            if from == to {
                return Err(SpecError::SelfLoop {
                    field: format!("edges[{i}]"),
                    vertex: edge.from,
                });
            }
            if seen.insert((from, to), i).is_some() {
                return Err(SpecError::DuplicateEdge {
                    field: format!("edges[{i}]"),
                    from: edge.from,
                    to: edge.to,
                });
            }
            edges.push((from, to, edge));
        }

        if let Some(cycle) = find_cycle(vertices.len(), edges.iter().map(|(f, t, _)| (*f, *t))) {
            return Err(SpecError::Cycle {
                vertices: cycle.into_iter().map(|v| vertices[v].id.clone()).collect(),
            });
        }

        Ok(JobSpec {
            name,
            failover,
            restart,
            placement,
            placement_domain: self.placement_domain,
            checkpoint,
            vertices,
            edges: edges.into_iter().map(|(_, _, e)| e).collect(),
        })
    }
}

impl RawVertex {
    fn validate(self, i: usize, limits: SpecLimits) -> Result<VertexSpec, SpecError> {
        let id = self
            .id
            .ok_or_else(|| missing(format!("vertices[{i}].id")))?;
        validate_vertex_id(&id).map_err(|m| invalid(format!("vertices[{i}].id"), m))?;
        let field = format!("vertices[{i}].parallelism");
        let value = self.parallelism.ok_or_else(|| missing(field.clone()))?;
        if value < 1 || value > i64::from(limits.max_parallelism) {
            return Err(SpecError::Parallelism {
                field,
                vertex: id,
                value,
                max: limits.max_parallelism,
            });
        }
        let command = self
            .command
            .ok_or_else(|| missing(format!("vertices[{i}].command")))?;
        if command.first().is_none_or(|program| program.is_empty()) {
            return Err(invalid(
                format!("vertices[{i}].command"),
                "the command must name a program, e.g. [\"sh\", \"-c\", \"exec my-task\"]",
            ));
        }
        // exec(2) takes C strings: an argument with a NUL byte can never start.
        if let Some(j) = command.iter().position(|arg| arg.contains('\0')) {
            return Err(invalid(
                format!("vertices[{i}].command[{j}]"),
                "contains a NUL byte, which no program argument can hold",
            ));
        }
        Ok(VertexSpec {
            id,
            parallelism: value as u32,
            command,
        })
    }
}

/// A failure-domain label key: a word such as `zone` or `rack` (`""`: no domain).
pub fn validate_label_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_VERTEX_ID_LEN {
        return Err(format!(
            "the label key is {} bytes long; at most {MAX_VERTEX_ID_LEN} are allowed",
            key.len()
        ));
    }
    // The same plain rule as the labels executors register with (`core::domain`), so a
    // domain key is one an executor can carry.
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        return Err(format!(
            "label key {key:?} contains {c:?}; use an executor label key such as \"zone\" \
             (ASCII letters, digits and - _ . /; or \"\" for no failure domain)"
        ));
    }
    Ok(())
}

/// Vertex ids appear in task names (`vertex#subtask`), so `#` is reserved; they also end up
/// in logs and metric labels: [`check_name`]'s rule.
fn validate_vertex_id(id: &str) -> Result<(), String> {
    check_name("vertex id", id).map_err(|e| e.to_string())
}

impl RawEdge {
    fn validate(self, i: usize) -> Result<EdgeSpec, SpecError> {
        let from = self
            .from
            .ok_or_else(|| missing(format!("edges[{i}].from")))?;
        let to = self.to.ok_or_else(|| missing(format!("edges[{i}].to")))?;
        let pattern_field = format!("edges[{i}].pattern");
        let pattern = match self.pattern.as_deref() {
            None => return Err(missing(pattern_field + " (pointwise | all-to-all)")),
            Some("pointwise") => Pattern::Pointwise,
            Some("all-to-all") => Pattern::AllToAll,
            Some(v) => {
                return Err(SpecError::UnknownValue {
                    field: pattern_field,
                    value: v.into(),
                    expected: "pointwise, all-to-all",
                });
            }
        };
        let exchange_field = format!("edges[{i}].exchange");
        let exchange = match self.exchange.as_deref() {
            None => {
                return Err(missing(
                    exchange_field + " (pipelined | blocking | persistent)",
                ));
            }
            Some("pipelined") => Exchange::Pipelined,
            Some("blocking") => Exchange::Blocking,
            Some("persistent") => Exchange::Persistent,
            Some(v) => {
                return Err(SpecError::UnknownValue {
                    field: exchange_field,
                    value: v.into(),
                    expected: "pipelined, blocking, persistent",
                });
            }
        };
        Ok(EdgeSpec {
            from,
            to,
            pattern,
            exchange,
        })
    }
}

fn parse_failover(value: &str) -> Option<FailoverStrategy> {
    match value {
        "full" => Some(FailoverStrategy::Full),
        "region" => Some(FailoverStrategy::Region),
        "individual" => Some(FailoverStrategy::Individual),
        _ => None,
    }
}

impl std::str::FromStr for FailoverStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_failover(s).ok_or_else(|| {
            format!("unknown failover strategy {s:?}; expected one of full, region, individual")
        })
    }
}

impl FailoverStrategy {
    pub fn name(self) -> &'static str {
        match self {
            FailoverStrategy::Full => "full",
            FailoverStrategy::Region => "region",
            FailoverStrategy::Individual => "individual",
        }
    }
}

impl fmt::Display for FailoverStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Pattern {
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Pointwise => "pointwise",
            Pattern::AllToAll => "all-to-all",
        }
    }
}

impl Exchange {
    pub const ALL: [Exchange; 3] = [
        Exchange::Pipelined,
        Exchange::Blocking,
        Exchange::Persistent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Exchange::Pipelined => "pipelined",
            Exchange::Blocking => "blocking",
            Exchange::Persistent => "persistent",
        }
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A duration key (`field`: its path, for errors), `default` when absent.
fn duration_field(
    field: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, SpecError> {
    let Some(text) = value else {
        return Ok(default);
    };
    parse_duration(text).map_err(|e| invalid(field, e))
}

/// A count key (`field`: its path, for errors) between `min` and `u32::MAX`, `default` when
/// absent.
fn count_field(field: &str, value: Option<i64>, default: u32, min: i64) -> Result<u32, SpecError> {
    match value {
        None => Ok(default),
        Some(v) if v >= min && v <= i64::from(u32::MAX) => Ok(v as u32),
        Some(v) => Err(invalid(
            field,
            format!(
                "{v} is out of range; it must be between {min} and {}",
                u32::MAX
            ),
        )),
    }
}

impl RawRestart {
    fn validate(self) -> Result<RestartStrategyConfig, SpecError> {
        let strategy = self.strategy.clone().ok_or_else(|| {
            missing("restart.strategy (none | fixed-delay | failure-rate | exponential-delay)")
        })?;
        // Keys that belong to another strategy are an error, not silently ignored: a user who
        // wrote `attempts = 3` under exponential-delay expects it to mean something.
        let given: [(&str, bool); 10] = [
            ("attempts", self.attempts.is_some()),
            ("delay", self.delay.is_some()),
            (
                "max-failures-per-interval",
                self.max_failures_per_interval.is_some(),
            ),
            (
                "failure-rate-interval",
                self.failure_rate_interval.is_some(),
            ),
            ("initial-backoff", self.initial_backoff.is_some()),
            ("max-backoff", self.max_backoff.is_some()),
            ("backoff-multiplier", self.backoff_multiplier.is_some()),
            (
                "reset-backoff-threshold",
                self.reset_backoff_threshold.is_some(),
            ),
            ("jitter-factor", self.jitter_factor.is_some()),
            (
                "attempts-before-reset-backoff",
                self.attempts_before_reset_backoff.is_some(),
            ),
        ];
        let allowed: &[&str] = match strategy.as_str() {
            "none" => &[],
            "fixed-delay" => &["attempts", "delay"],
            "failure-rate" => &[
                "max-failures-per-interval",
                "failure-rate-interval",
                "delay",
            ],
            "exponential-delay" => &[
                "initial-backoff",
                "max-backoff",
                "backoff-multiplier",
                "reset-backoff-threshold",
                "jitter-factor",
                "attempts-before-reset-backoff",
            ],
            other => {
                return Err(SpecError::UnknownValue {
                    field: "restart.strategy".into(),
                    value: other.into(),
                    expected: "none, fixed-delay, failure-rate, exponential-delay",
                });
            }
        };
        if let Some((key, _)) = given.iter().find(|(k, set)| *set && !allowed.contains(k)) {
            return Err(invalid(
                format!("restart.{key}"),
                format!(
                    "does not apply to strategy {strategy:?}; remove it or change the strategy"
                ),
            ));
        }
        let one_second = Duration::from_secs(1);
        Ok(match strategy.as_str() {
            "none" => RestartStrategyConfig::None,
            "fixed-delay" => RestartStrategyConfig::FixedDelay {
                attempts: count_field("restart.attempts", self.attempts, 1, 0)?,
                delay: duration_field("restart.delay", self.delay.as_deref(), one_second)?,
            },
            "failure-rate" => RestartStrategyConfig::FailureRate {
                max_failures_per_interval: count_field(
                    "restart.max-failures-per-interval",
                    self.max_failures_per_interval,
                    1,
                    1,
                )?,
                interval: duration_field(
                    "restart.failure-rate-interval",
                    self.failure_rate_interval.as_deref(),
                    Duration::from_secs(60),
                )?,
                delay: duration_field("restart.delay", self.delay.as_deref(), one_second)?,
            },
            _ => {
                let initial_backoff = duration_field(
                    "restart.initial-backoff",
                    self.initial_backoff.as_deref(),
                    one_second,
                )?;
                let max_backoff = duration_field(
                    "restart.max-backoff",
                    self.max_backoff.as_deref(),
                    Duration::from_secs(60),
                )?;
                if max_backoff < initial_backoff {
                    return Err(invalid(
                        "restart.max-backoff",
                        "must not be shorter than restart.initial-backoff",
                    ));
                }
                // A zero initial backoff stays zero (the delay is clamped to at least it, and
                // zero times the multiplier is zero): with no attempt limit a task that always
                // fails would restart without end and without pause.
                if initial_backoff.is_zero() && self.attempts_before_reset_backoff.is_none() {
                    return Err(invalid(
                        "restart.initial-backoff",
                        "0 with no attempts-before-reset-backoff would restart a failing task \
                         without end and without pause (a restart storm); give it at least 1ms, \
                         or limit restart.attempts-before-reset-backoff",
                    ));
                }
                let multiplier = self.backoff_multiplier.unwrap_or(1.5);
                if !(multiplier.is_finite() && (1.0..=1000.0).contains(&multiplier)) {
                    return Err(invalid(
                        "restart.backoff-multiplier",
                        format!("{multiplier} is out of range; it must be between 1 and 1000"),
                    ));
                }
                let jitter_factor = self.jitter_factor.unwrap_or(0.1);
                if !(jitter_factor.is_finite() && (0.0..=1.0).contains(&jitter_factor)) {
                    return Err(invalid(
                        "restart.jitter-factor",
                        format!("{jitter_factor} is out of range; it must be between 0 and 1"),
                    ));
                }
                RestartStrategyConfig::ExponentialDelay {
                    initial_backoff,
                    max_backoff,
                    multiplier,
                    reset_backoff_threshold: duration_field(
                        "restart.reset-backoff-threshold",
                        self.reset_backoff_threshold.as_deref(),
                        Duration::from_secs(3600),
                    )?,
                    jitter_factor,
                    attempts_before_reset_backoff: match self.attempts_before_reset_backoff {
                        None => None,
                        Some(v) => Some(count_field(
                            "restart.attempts-before-reset-backoff",
                            Some(v),
                            0,
                            1,
                        )?),
                    },
                }
            }
        })
    }
}

/// Finds one directed cycle among `n` nodes, returned as its nodes in arc order; `None` for a DAG.
///
/// Kahn's algorithm removes every node that is not on a cycle or downstream of one. Each node
/// left keeps a predecessor that is also left (its in-degree counts only those), so walking
/// predecessors from any node left must revisit a node: the stretch between is a cycle.
fn find_cycle(n: usize, arcs: impl Iterator<Item = (usize, usize)>) -> Option<Vec<usize>> {
    let mut indegree = vec![0usize; n];
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut pred: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (from, to) in arcs {
        indegree[to] += 1;
        out[from].push(to);
        pred[to].push(from);
    }
    let mut ready: Vec<usize> = (0..n).filter(|&v| indegree[v] == 0).collect();
    let mut removed = vec![false; n];
    while let Some(v) = ready.pop() {
        removed[v] = true;
        for &w in &out[v] {
            indegree[w] -= 1;
            if indegree[w] == 0 {
                ready.push(w);
            }
        }
    }
    let start = (0..n).find(|&v| !removed[v])?;
    let mut position = vec![usize::MAX; n];
    let mut path = Vec::new();
    let mut v = start;
    while position[v] == usize::MAX {
        position[v] = path.len();
        path.push(v);
        match pred[v].iter().find(|&&u| !removed[u]) {
            Some(&u) => v = u,
            None => break, // unreachable by the invariant above; report what we walked
        }
    }
    let mut cycle = path.split_off(position[v]);
    cycle.reverse();
    // Start the cycle at its first-declared vertex, so the message is stable.
    if let Some(first) = (0..cycle.len()).min_by_key(|&i| cycle[i]) {
        cycle.rotate_left(first);
    }
    Some(cycle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_cycle_returns_none_for_dag() {
        assert_eq!(find_cycle(3, [(0, 1), (1, 2), (0, 2)].into_iter()), None);
    }

    #[test]
    fn find_cycle_names_the_cycle_in_arc_order() {
        // 0 -> 1 -> 2 -> 3 -> 1, and 3 -> 4 downstream of the cycle.
        let arcs = [(0, 1), (1, 2), (2, 3), (3, 1), (3, 4)];
        assert_eq!(find_cycle(5, arcs.into_iter()), Some(vec![1, 2, 3]));
    }
}
