//! Fuzz-style tests of the job-spec parser: whatever the text, `JobSpec::parse_with_limits`
//! returns `Ok` or `Err` and never panics, and whatever it accepts, the core (execution graph,
//! regions, restart sets) handles without panicking. Plus deterministic tests that error
//! messages name the offending field.
//!
//! Every parse uses a small `max_parallelism`, so a mutated spec cannot build a huge graph.

use std::collections::{BTreeSet, HashMap, HashSet};

use jobmaster::core::{
    ExecutionGraph, FailoverStrategy, JobSpec, PartitionId, Regions, SpecError, SpecFormat,
    SpecLimits, TaskId, compute_restart_set,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

const MAX_PARALLELISM: u32 = 64;
const LIMITS: SpecLimits = SpecLimits {
    max_parallelism: MAX_PARALLELISM,
};

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle: parse, and when the spec is accepted, check its validation contract and run the
// core over it.

/// Parses `text`; on success checks what a validated spec promises and runs the core on it.
fn parse_and_run(text: &str, format: SpecFormat) -> Result<JobSpec, SpecError> {
    let result = JobSpec::parse_with_limits(text, format, LIMITS);
    match &result {
        Err(e) => {
            let message = e.to_string();
            assert!(!message.trim().is_empty(), "empty error message for {e:?}");
            assert!(
                !message.contains('\n'),
                "error message spans lines: {message:?}"
            );
        }
        Ok(spec) => {
            assert_validated(spec);
            run_core(spec);
        }
    }
    result
}

/// What `JobSpec::parse` guarantees about a spec it accepts.
fn assert_validated(spec: &JobSpec) {
    assert!(!spec.name.trim().is_empty(), "blank job name accepted");
    assert!(!spec.name.chars().any(char::is_control));
    assert!(!spec.vertices.is_empty(), "a job without vertices accepted");
    let mut index = HashMap::new();
    for (i, v) in spec.vertices.iter().enumerate() {
        assert!(
            index.insert(v.id.as_str(), i).is_none(),
            "duplicate id {:?}",
            v.id
        );
        assert!(!v.id.is_empty() && v.id.len() <= 128, "bad id {:?}", v.id);
        assert!(
            !v.id
                .chars()
                .any(|c| c == '#' || c.is_whitespace() || c.is_control()),
            "bad id {:?}",
            v.id
        );
        assert!(
            (1..=MAX_PARALLELISM).contains(&v.parallelism),
            "parallelism {} of {:?} accepted",
            v.parallelism,
            v.id
        );
        assert!(v.command.first().is_some_and(|p| !p.is_empty()));
    }
    let mut pairs = HashSet::new();
    let mut successors = vec![Vec::new(); spec.vertices.len()];
    let mut indegree = vec![0usize; spec.vertices.len()];
    for e in &spec.edges {
        let from = index[e.from.as_str()];
        let to = index[e.to.as_str()];
        assert_ne!(from, to, "self-loop accepted");
        assert!(pairs.insert((from, to)), "duplicate edge accepted");
        successors[from].push(to);
        indegree[to] += 1;
    }
    // Kahn: every vertex must be removable, or the edges have a cycle.
    let mut ready: Vec<usize> = (0..indegree.len()).filter(|&v| indegree[v] == 0).collect();
    let mut removed = 0;
    while let Some(v) = ready.pop() {
        removed += 1;
        for &w in &successors[v] {
            indegree[w] -= 1;
            if indegree[w] == 0 {
                ready.push(w);
            }
        }
    }
    assert_eq!(removed, spec.vertices.len(), "a cyclic spec was accepted");
}

/// Builds the graph and regions and computes a restart set under every strategy.
fn run_core(spec: &JobSpec) {
    let graph = ExecutionGraph::build(spec);
    assert_eq!(graph.task_count() as u64, spec.task_count());
    let regions = Regions::compute(&graph);
    let covered: usize = regions.ids().map(|r| regions.tasks(r).len()).sum();
    assert_eq!(covered, graph.task_count());
    let last = TaskId(graph.task_count() as u32 - 1);
    let failed = [TaskId(0), last];
    for strategy in [
        FailoverStrategy::Full,
        FailoverStrategy::Region,
        FailoverStrategy::Individual,
    ] {
        let set = compute_restart_set(&graph, &regions, strategy, &failed, |p: PartitionId| {
            p.0 % 3 != 0
        });
        assert!(set.tasks.windows(2).all(|w| w[0] < w[1]));
        assert!(set.tasks.contains(&TaskId(0)) && set.tasks.contains(&last));
    }
}

// ---------------------------------------------------------------------------------------------
// Random text.

/// Fragments of spec syntax, so random concatenations reach deeper into both parsers than
/// random bytes do.
const TOKENS: &[&str] = &[
    "name",
    "failover",
    "restart",
    "vertices",
    "edges",
    "id",
    "parallelism",
    "command",
    "from",
    "to",
    "pattern",
    "exchange",
    "strategy",
    "delay",
    "attempts",
    "\"job\"",
    "\"v0\"",
    "\"v1\"",
    "\"pointwise\"",
    "\"all-to-all\"",
    "\"blocking\"",
    "\"pipelined\"",
    "\"region\"",
    "\"1s\"",
    "[[vertices]]",
    "[[edges]]",
    "[restart]",
    " = ",
    ": ",
    "=",
    ":",
    ",",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'",
    "\n",
    " ",
    "#",
    "0",
    "1",
    "-1",
    "4",
    "1e999",
    "99999999999999999999",
    "true",
    "null",
    "nan",
    "inf",
    "\\",
    "\\u0000",
    "\u{feff}",
    "é",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..80).prop_map(|t| t.concat())
}

// ---------------------------------------------------------------------------------------------
// Near-valid specs: a model of a spec whose every field is usually valid and sometimes not,
// rendered as TOML or JSON, then optionally mutated line by line.

/// A value of a spec field, rendered in either format.
#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Int(i128),
    Float(f64),
    Bool(bool),
    Array(Vec<Val>),
    Table(Vec<(String, Val)>),
    /// `depth` nested empty arrays.
    Nested(usize),
}

fn quoted(s: &str) -> String {
    // A JSON string literal is also a valid TOML basic string for everything but DEL, which
    // merely makes the TOML text invalid: fine for a fuzz test.
    serde_json::to_string(s).unwrap()
}

impl Val {
    fn s(text: &str) -> Val {
        Val::Str(text.to_string())
    }

    fn render(&self, format: SpecFormat) -> String {
        match self {
            Val::Str(s) => quoted(s),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => match (format, f.is_finite()) {
                (_, true) => format!("{f:?}"),
                (SpecFormat::Toml, false) if f.is_nan() => "nan".into(),
                (SpecFormat::Toml, false) => if *f > 0.0 { "inf" } else { "-inf" }.into(),
                (SpecFormat::Json, false) => "NaN".into(),
            },
            Val::Bool(b) => b.to_string(),
            Val::Array(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(|v| v.render(format))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Val::Table(entries) => {
                let sep = match format {
                    SpecFormat::Toml => " = ",
                    SpecFormat::Json => ": ",
                };
                format!(
                    "{{{}}}",
                    entries
                        .iter()
                        .map(|(k, v)| format!("{}{sep}{}", quoted(k), v.render(format)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            Val::Nested(depth) => format!("{}{}", "[".repeat(*depth), "]".repeat(*depth)),
        }
    }
}

/// Any value at all: wrong types, extreme numbers, odd strings, deep nesting.
fn odd_value() -> impl Strategy<Value = Val> {
    let leaf = prop_oneof![
        Just(Val::Int(0)),
        Just(Val::Int(-1)),
        Just(Val::Int(i128::from(i64::MAX))),
        Just(Val::Int(i128::from(i64::MIN))),
        Just(Val::Int(i128::from(u64::MAX) + 1)),
        Just(Val::Int(i128::from(u32::MAX) + 1)),
        any::<i64>().prop_map(|i| Val::Int(i.into())),
        Just(Val::Float(f64::NAN)),
        Just(Val::Float(f64::INFINITY)),
        Just(Val::Float(-0.0)),
        Just(Val::Float(1e308)),
        any::<f64>().prop_map(Val::Float),
        any::<bool>().prop_map(Val::Bool),
        Just(Val::s("")),
        Just(Val::s("a#b")),
        Just(Val::s("\u{0}\u{7}\t\n")),
        (1usize..20_000).prop_map(|n| Val::Str("x".repeat(n))),
        "\\PC{0,12}".prop_map(Val::Str),
        (1usize..3_000).prop_map(Val::Nested),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Val::Array),
            prop::collection::vec(("[a-z-]{1,8}", inner), 0..3).prop_map(Val::Table),
        ]
    })
}

/// A spec as a model: top-level entries, an optional `[restart]` table, vertex and edge tables.
#[derive(Debug, Clone)]
struct Model {
    top: Vec<(String, Val)>,
    restart: Option<Vec<(String, Val)>>,
    vertices: Vec<Vec<(String, Val)>>,
    edges: Vec<Vec<(String, Val)>>,
}

fn entry(key: &str, value: Val) -> (String, Val) {
    (key.to_string(), value)
}

/// A valid `[restart]` table of a random strategy with a random subset of its keys.
fn valid_restart() -> impl Strategy<Value = Vec<(String, Val)>> {
    let s = |v: &str| Val::s(v);
    prop_oneof![
        Just(vec![entry("strategy", s("none"))]),
        (any::<bool>(), 0i128..10).prop_map(move |(delay, attempts)| {
            let mut t = vec![
                entry("strategy", s("fixed-delay")),
                entry("attempts", Val::Int(attempts)),
            ];
            if delay {
                t.push(entry("delay", s("250ms")));
            }
            t
        }),
        (1i128..5).prop_map(move |n| vec![
            entry("strategy", s("failure-rate")),
            entry("max-failures-per-interval", Val::Int(n)),
            entry("failure-rate-interval", s("5min")),
        ]),
        (1.0f64..10.0, 0.0f64..=1.0).prop_map(move |(m, j)| vec![
            entry("strategy", s("exponential-delay")),
            entry("initial-backoff", s("2s")),
            entry("max-backoff", s("1h")),
            entry("backoff-multiplier", Val::Float(m)),
            entry("jitter-factor", Val::Float(j)),
            entry("attempts-before-reset-backoff", Val::Int(4)),
        ]),
    ]
}

/// One deliberate fault in an otherwise valid model.
#[derive(Debug, Clone)]
enum Fault {
    /// Set (or add) one of the table's own fields to `value`.
    Set(Index, Index, Val),
    /// Remove an entry of a table.
    Remove(Index, Index),
    /// Add an unknown key to a table.
    Unknown(Index, String, Val),
    /// Drop a whole vertex or edge table.
    DropTable(Index),
    /// Duplicate a whole vertex or edge table (duplicate ids, duplicate edges).
    DuplicateTable(Index),
    /// Add an edge between any two names (self-loops, unknown vertices, back edges).
    Edge(Val, Val),
    /// Add the reverse of an existing edge: a cycle.
    BackEdge(Index),
    /// Set a vertex's parallelism to a number, often out of range.
    Parallelism(Index, i128),
}

/// The fields of each kind of table.
const TOP_FIELDS: &[&str] = &["name", "failover"];
const RESTART_FIELDS: &[&str] = &[
    "strategy",
    "attempts",
    "delay",
    "max-failures-per-interval",
    "failure-rate-interval",
    "initial-backoff",
    "max-backoff",
    "backoff-multiplier",
    "reset-backoff-threshold",
    "jitter-factor",
    "attempts-before-reset-backoff",
];
const VERTEX_FIELDS: &[&str] = &["id", "parallelism", "command"];
const EDGE_FIELDS: &[&str] = &["from", "to", "pattern", "exchange"];

/// Values a fault writes: unknown enum strings, bad ids, extreme numbers, wrong types.
fn fault_value() -> impl Strategy<Value = Val> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "", " ", "pointwize", "ALL-TO-ALL", "durable", "pipeline", "regional", "Region",
            "exponential", "v#0", "has space", "w9", "v0", "v1", "1s", "-1s", "soon", "400days",
            "100000000000000000000000s", "a\u{7}b",
        ])
        .prop_map(Val::s),
        2 => prop::sample::select(vec![
            0i128, -1, 1, 64, 65, 1001, i128::from(u32::MAX), i128::from(u32::MAX) + 1,
            i128::from(i64::MAX), i128::from(i64::MAX) + 1, i128::from(i64::MIN) - 1,
        ])
        .prop_map(Val::Int),
        1 => prop::sample::select(vec![0.0, 0.5, 1.5, 1000.5, -1.0, f64::NAN, f64::INFINITY])
            .prop_map(Val::Float),
        1 => (100usize..=140).prop_map(|n| Val::Str("x".repeat(n))),
        2 => odd_value(),
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    let name = prop_oneof![
        4 => (0u8..6).prop_map(|i| Val::Str(format!("v{i}"))),
        1 => fault_value(),
    ];
    prop_oneof![
        4 => (any::<Index>(), any::<Index>(), fault_value())
            .prop_map(|(t, k, v)| Fault::Set(t, k, v)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(t, e)| Fault::Remove(t, e)),
        1 => (any::<Index>(), "[a-z-]{1,10}", odd_value()).prop_map(|(t, k, v)| Fault::Unknown(t, k, v)),
        1 => any::<Index>().prop_map(Fault::DropTable),
        1 => any::<Index>().prop_map(Fault::DuplicateTable),
        2 => (name.clone(), name).prop_map(|(a, b)| Fault::Edge(a, b)),
        2 => any::<Index>().prop_map(Fault::BackEdge),
        1 => (
            any::<Index>(),
            prop::sample::select(vec![
                0i128, -1, 1, 64, 65, i128::from(u32::MAX) + 1, i128::from(i64::MAX) + 1,
            ]),
        )
            .prop_map(|(v, p)| Fault::Parallelism(v, p)),
    ]
}

/// A valid spec model: 1–6 vertices `v0…`, edges from a lower to a higher vertex, an optional
/// valid restart table; then 0–3 faults.
fn model() -> impl Strategy<Value = Model> {
    (1usize..=6)
        .prop_flat_map(|n| {
            (
                prop::collection::vec(
                    prop_oneof![8 => 1i128..=8, 1 => 1i128..=i128::from(MAX_PARALLELISM)],
                    n,
                ),
                prop::collection::vec(
                    (
                        0..n,
                        0..n,
                        prop::sample::select(vec!["pointwise", "all-to-all"]),
                        prop::sample::select(vec!["pipelined", "blocking", "persistent"]),
                    ),
                    0..8,
                ),
                prop::option::weighted(
                    0.4,
                    prop::sample::select(vec!["full", "region", "individual"]),
                ),
                prop::option::weighted(0.4, valid_restart()),
                prop::collection::vec(fault(), 0..=3),
            )
        })
        .prop_map(|(parallelism, raw_edges, failover, restart, faults)| {
            let vertices = parallelism
                .iter()
                .enumerate()
                .map(|(i, &p)| {
                    vec![
                        entry("id", Val::Str(format!("v{i}"))),
                        entry("parallelism", Val::Int(p)),
                        entry(
                            "command",
                            Val::Array(vec![Val::s("sh"), Val::s("-c"), Val::s("exec true")]),
                        ),
                    ]
                })
                .collect();
            let mut pairs = HashSet::new();
            let edges = raw_edges
                .into_iter()
                .filter(|(a, b, ..)| a != b)
                .map(|(a, b, p, x)| (a.min(b), a.max(b), p, x))
                .filter(|(a, b, ..)| pairs.insert((*a, *b)))
                .map(|(a, b, p, x)| {
                    vec![
                        entry("from", Val::Str(format!("v{a}"))),
                        entry("to", Val::Str(format!("v{b}"))),
                        entry("pattern", Val::s(p)),
                        entry("exchange", Val::s(x)),
                    ]
                })
                .collect();
            let mut top = vec![entry("name", Val::s("job"))];
            top.extend(failover.map(|f| entry("failover", Val::s(f))));
            let mut model = Model {
                top,
                restart,
                vertices,
                edges,
            };
            for f in &faults {
                model.apply(f);
            }
            model
        })
}

impl Model {
    /// All tables with their fields: 0 = top level, then `[restart]` if present, vertices,
    /// edges.
    fn table_mut(&mut self, i: &Index) -> (&'static [&'static str], &mut Vec<(String, Val)>) {
        let restart = usize::from(self.restart.is_some());
        let count = 1 + restart + self.vertices.len() + self.edges.len();
        let mut k = i.index(count);
        if k == 0 {
            return (TOP_FIELDS, &mut self.top);
        }
        k -= 1;
        if k < restart {
            return (RESTART_FIELDS, self.restart.as_mut().unwrap());
        }
        k -= restart;
        if k < self.vertices.len() {
            return (VERTEX_FIELDS, &mut self.vertices[k]);
        }
        (EDGE_FIELDS, &mut self.edges[k - self.vertices.len()])
    }

    fn apply(&mut self, fault: &Fault) {
        match fault {
            Fault::Set(t, key, value) => {
                let (fields, table) = self.table_mut(t);
                let key = fields[key.index(fields.len())];
                match table.iter_mut().find(|(k, _)| k == key) {
                    Some((_, v)) => *v = value.clone(),
                    None => table.push(entry(key, value.clone())),
                }
            }
            Fault::Remove(t, e) => {
                let (_, table) = self.table_mut(t);
                if !table.is_empty() {
                    let at = e.index(table.len());
                    table.remove(at);
                }
            }
            Fault::Unknown(t, key, value) => {
                let (_, table) = self.table_mut(t);
                if !table.iter().any(|(k, _)| k == key) {
                    table.push(entry(key, value.clone()));
                }
            }
            Fault::DropTable(i) | Fault::DuplicateTable(i) => {
                let n = self.vertices.len() + self.edges.len();
                if n == 0 {
                    return;
                }
                let k = i.index(n);
                let (list, k) = if k < self.vertices.len() {
                    (&mut self.vertices, k)
                } else {
                    let v = self.vertices.len();
                    (&mut self.edges, k - v)
                };
                if matches!(fault, Fault::DropTable(_)) {
                    list.remove(k);
                } else {
                    let copy = list[k].clone();
                    list.insert(k, copy);
                }
            }
            Fault::Edge(from, to) => self.edges.push(vec![
                entry("from", from.clone()),
                entry("to", to.clone()),
                entry("pattern", Val::s("all-to-all")),
                entry("exchange", Val::s("blocking")),
            ]),
            Fault::BackEdge(i) => {
                if self.edges.is_empty() {
                    return;
                }
                let mut reversed = self.edges[i.index(self.edges.len())].clone();
                for (k, _) in reversed.iter_mut() {
                    *k = match k.as_str() {
                        "from" => "to".into(),
                        "to" => "from".into(),
                        other => other.into(),
                    };
                }
                self.edges.push(reversed);
            }
            Fault::Parallelism(i, p) => {
                let n = self.vertices.len();
                if n > 0 {
                    let vertex = &mut self.vertices[i.index(n)];
                    match vertex.iter_mut().find(|(k, _)| k == "parallelism") {
                        Some((_, v)) => *v = Val::Int(*p),
                        None => vertex.push(entry("parallelism", Val::Int(*p))),
                    }
                }
            }
        }
    }
    fn render(&self, format: SpecFormat) -> String {
        match format {
            SpecFormat::Toml => self.to_toml(),
            SpecFormat::Json => self.to_json(),
        }
    }

    fn to_toml(&self) -> String {
        let lines = |entries: &[(String, Val)]| -> String {
            entries
                .iter()
                .map(|(k, v)| format!("{k} = {}\n", v.render(SpecFormat::Toml)))
                .collect()
        };
        let mut text = lines(&self.top);
        if let Some(restart) = &self.restart {
            text += "\n[restart]\n";
            text += &lines(restart);
        }
        for v in &self.vertices {
            text += "\n[[vertices]]\n";
            text += &lines(v);
        }
        for e in &self.edges {
            text += "\n[[edges]]\n";
            text += &lines(e);
        }
        text
    }

    /// JSON with one key per line, so line mutations act on single fields.
    fn to_json(&self) -> String {
        fn object(entries: &[(String, String)]) -> String {
            let body: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}: {v}", quoted(k)))
                .collect();
            format!("{{\n{}\n}}", body.join(",\n"))
        }
        fn rendered(entries: &[(String, Val)]) -> Vec<(String, String)> {
            entries
                .iter()
                .map(|(k, v)| (k.clone(), v.render(SpecFormat::Json)))
                .collect()
        }
        fn list(tables: &[Vec<(String, Val)>]) -> String {
            let items: Vec<String> = tables.iter().map(|t| object(&rendered(t))).collect();
            format!("[\n{}\n]", items.join(",\n"))
        }
        let mut top = rendered(&self.top);
        if let Some(restart) = &self.restart {
            top.push(("restart".into(), object(&rendered(restart))));
        }
        top.push(("vertices".into(), list(&self.vertices)));
        top.push(("edges".into(), list(&self.edges)));
        object(&top)
    }
}

/// A line-level edit of a spec text.
#[derive(Debug, Clone)]
enum LineMutation {
    Delete(Index),
    Duplicate(Index),
    Swap(Index, Index),
    /// Replace the value of a `key = value` / `"key": value` line.
    ReplaceValue(Index, Val),
    /// Insert a raw line.
    Insert(Index, String),
    /// Cut the text at a byte position (rounded down to a char boundary).
    Truncate(Index),
}

fn line_mutation() -> impl Strategy<Value = LineMutation> {
    let raw_line = prop_oneof![
        prop::sample::select(
            &[
                "[[vertices]]",
                "[[edges]]",
                "[restart]",
                "[vertices]",
                "bogus = 1",
                "id = \"v1\"",
                "from = \"v0\"",
                "to = \"v0\"",
                "\"bogus\": 1,",
                "\"id\": \"v1\",",
                "{",
                "}",
                "[",
                "]",
                ",",
                "",
                "# comment",
                "name = \"again\"",
            ][..]
        )
        .prop_map(String::from),
        "\\PC{0,20}",
    ];
    prop_oneof![
        3 => any::<Index>().prop_map(LineMutation::Delete),
        2 => any::<Index>().prop_map(LineMutation::Duplicate),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| LineMutation::Swap(a, b)),
        4 => (any::<Index>(), odd_value()).prop_map(|(i, v)| LineMutation::ReplaceValue(i, v)),
        2 => (any::<Index>(), raw_line).prop_map(|(i, l)| LineMutation::Insert(i, l)),
        1 => any::<Index>().prop_map(LineMutation::Truncate),
    ]
}

fn mutate(text: &str, mutations: &[LineMutation], format: SpecFormat) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for m in mutations {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let n = lines.len();
        match m {
            LineMutation::Delete(i) => {
                lines.remove(i.index(n));
            }
            LineMutation::Duplicate(i) => {
                let i = i.index(n);
                lines.insert(i, lines[i].clone());
            }
            LineMutation::Swap(a, b) => lines.swap(a.index(n), b.index(n)),
            LineMutation::ReplaceValue(i, v) => {
                let separator = match format {
                    SpecFormat::Toml => " = ",
                    SpecFormat::Json => "\": ",
                };
                let candidates: Vec<usize> =
                    (0..n).filter(|&l| lines[l].contains(separator)).collect();
                if candidates.is_empty() {
                    continue;
                }
                let l = candidates[i.index(candidates.len())];
                let at = lines[l].find(separator).unwrap() + separator.len();
                let comma = if lines[l].ends_with(',') { "," } else { "" };
                lines[l] = format!("{}{}{comma}", &lines[l][..at], v.render(format));
            }
            LineMutation::Insert(i, line) => lines.insert(i.index(n + 1), line.clone()),
            LineMutation::Truncate(i) => {
                let joined = lines.join("\n");
                let mut at = i.index(joined.len() + 1);
                while !joined.is_char_boundary(at) {
                    at -= 1;
                }
                lines = joined[..at].lines().map(String::from).collect();
            }
        }
    }
    lines.join("\n")
}

/// Valid specs the mutations start from: every restart strategy, both formats.
const BASE_TOML: &str = r#"name = "city-orders"
failover = "region"

[restart]
strategy = "exponential-delay"
initial-backoff = "1s"
max-backoff = "1min"
backoff-multiplier = 2.0
jitter-factor = 0.1
attempts-before-reset-backoff = 3

[[vertices]]
id = "source"
parallelism = 4
command = ["sh", "-c", "exec my-source"]

[[vertices]]
id = "map"
parallelism = 3
command = ["map"]

[[vertices]]
id = "sink"
parallelism = 2
command = ["sink"]

[[edges]]
from = "source"
to = "map"
pattern = "pointwise"
exchange = "pipelined"

[[edges]]
from = "map"
to = "sink"
pattern = "all-to-all"
exchange = "blocking"

[[edges]]
from = "source"
to = "sink"
pattern = "pointwise"
exchange = "persistent"
"#;

const BASE_TOML_FIXED_DELAY: &str = r#"name = "batch"
failover = "individual"
[restart]
strategy = "fixed-delay"
attempts = 3
delay = "10s"
[[vertices]]
id = "a"
parallelism = 2
command = ["a"]
[[vertices]]
id = "b"
parallelism = 5
command = ["b"]
[[edges]]
from = "a"
to = "b"
pattern = "all-to-all"
exchange = "blocking"
"#;

const BASE_TOML_FAILURE_RATE: &str = r#"name = "rate"
failover = "full"
[restart]
strategy = "failure-rate"
max-failures-per-interval = 2
failure-rate-interval = "5min"
delay = "1s"
[[vertices]]
id = "only"
parallelism = 1
command = ["x"]
"#;

const BASE_JSON: &str = r#"{
"name": "city-orders",
"failover": "region",
"restart": {
"strategy": "none"
},
"vertices": [
{
"id": "source",
"parallelism": 4,
"command": ["src"]
},
{
"id": "map",
"parallelism": 6,
"command": ["map"]
},
{
"id": "sink",
"parallelism": 2,
"command": ["sink"]
}
],
"edges": [
{
"from": "source",
"to": "map",
"pattern": "pointwise",
"exchange": "blocking"
},
{
"from": "map",
"to": "sink",
"pattern": "all-to-all",
"exchange": "pipelined"
}
]
}"#;

const BASES: &[(&str, SpecFormat)] = &[
    (BASE_TOML, SpecFormat::Toml),
    (BASE_TOML_FIXED_DELAY, SpecFormat::Toml),
    (BASE_TOML_FAILURE_RATE, SpecFormat::Toml),
    (BASE_JSON, SpecFormat::Json),
];

fn format() -> impl Strategy<Value = SpecFormat> {
    prop_oneof![Just(SpecFormat::Toml), Just(SpecFormat::Json)]
}

#[test]
fn base_specs_of_the_fuzz_tests_are_valid() {
    for (text, format) in BASES {
        let spec = parse_and_run(text, *format).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(!spec.vertices.is_empty());
    }
}

/// A random directed graph over `n` vertices without self-loops or duplicate edges, often
/// cyclic.
fn digraph() -> impl Strategy<Value = (usize, Vec<(usize, usize)>)> {
    (2usize..=8).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::vec((0..n, 0..n), 0..=2 * n).prop_map(|raw| {
                let mut seen = HashSet::new();
                raw.into_iter()
                    .filter(|&(a, b)| a != b && seen.insert((a, b)))
                    .collect::<Vec<_>>()
            }),
        )
    })
}

fn is_acyclic(n: usize, edges: &[(usize, usize)]) -> bool {
    // Repeatedly remove a vertex without incoming edges.
    let mut alive: BTreeSet<usize> = (0..n).collect();
    while let Some(&v) = alive
        .iter()
        .find(|&&v| !edges.iter().any(|&(a, b)| b == v && alive.contains(&a)))
    {
        alive.remove(&v);
    }
    alive.is_empty()
}

proptest! {
    #![proptest_config(config(1024))]

    /// A spec is rejected as cyclic exactly when its edges have a cycle, and the vertices the
    /// error names form a real cycle of the spec, in arc order, each once.
    #[test]
    fn cycle_error_names_a_real_cycle_exactly_when_the_edges_have_one((n, edges) in digraph()) {
        let mut text = String::from("name = \"job\"\n");
        for v in 0..n {
            text += &format!("[[vertices]]\nid = \"v{v}\"\nparallelism = 1\ncommand = [\"x\"]\n");
        }
        for (a, b) in &edges {
            text += &format!(
                "[[edges]]\nfrom = \"v{a}\"\nto = \"v{b}\"\npattern = \"pointwise\"\nexchange = \"blocking\"\n"
            );
        }
        let result = JobSpec::parse_with_limits(&text, SpecFormat::Toml, LIMITS);
        if is_acyclic(n, &edges) {
            prop_assert!(result.is_ok(), "a DAG was rejected: {:?}", result);
        } else {
            let Err(SpecError::Cycle { vertices }) = result else {
                panic!("a cyclic spec gave {result:?}");
            };
            prop_assert!(!vertices.is_empty());
            let index: Vec<usize> = vertices
                .iter()
                .map(|id| id.strip_prefix('v').and_then(|i| i.parse().ok()).expect("unknown vertex in cycle"))
                .collect();
            let distinct: BTreeSet<usize> = index.iter().copied().collect();
            prop_assert_eq!(distinct.len(), index.len(), "cycle repeats a vertex: {:?}", vertices);
            for k in 0..index.len() {
                let arc = (index[k], index[(k + 1) % index.len()]);
                prop_assert!(edges.contains(&arc), "{:?} is not an edge of the cycle {:?}", arc, vertices);
            }
        }
    }

    /// Random bytes (lossily decoded) are rejected or accepted, never a panic, in both formats.
    #[test]
    fn parser_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_and_run(&text, SpecFormat::Toml);
        let _ = parse_and_run(&text, SpecFormat::Json);
    }

    /// Random concatenations of spec tokens are rejected or accepted, never a panic.
    #[test]
    fn parser_never_panics_on_random_spec_tokens(text in token_soup()) {
        let _ = parse_and_run(&text, SpecFormat::Toml);
        let _ = parse_and_run(&text, SpecFormat::Json);
    }

    /// Specs with wrong, missing, extreme or unknown field values, unknown vertices, self-loops,
    /// duplicate edges and cycles parse to `Ok` or `Err` without panicking, and the core runs on
    /// whatever is accepted.
    #[test]
    fn near_valid_specs_parse_or_fail_cleanly_and_accepted_ones_run_through_the_core(
        model in model(),
        format in format(),
    ) {
        let text = model.render(format);
        let _ = parse_and_run(&text, format);
    }

    /// The same near-valid specs with random line edits (delete, duplicate, swap, replace a
    /// value, insert a line, truncate) never make the parser or the core panic.
    #[test]
    fn line_mutated_specs_parse_or_fail_cleanly_and_accepted_ones_run_through_the_core(
        model in model(),
        format in format(),
        mutations in prop::collection::vec(line_mutation(), 1..4),
    ) {
        let text = mutate(&model.render(format), &mutations, format);
        let _ = parse_and_run(&text, format);
    }

    /// Line edits of known-valid specs (every restart strategy, TOML and JSON) never make the
    /// parser or the core panic.
    #[test]
    fn line_mutated_valid_specs_parse_or_fail_cleanly_and_accepted_ones_run_through_the_core(
        base in any::<Index>(),
        mutations in prop::collection::vec(line_mutation(), 1..6),
    ) {
        let (text, format) = BASES[base.index(BASES.len())];
        let text = mutate(text, &mutations, format);
        let _ = parse_and_run(&text, format);
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic error messages: each names the field it is about.

/// A valid two-vertex TOML spec with `edge` as its only edge's body.
fn toml_with_edge(edge: &str) -> String {
    format!(
        r#"name = "job"
[[vertices]]
id = "up"
parallelism = 2
command = ["true"]
[[vertices]]
id = "down"
parallelism = 2
command = ["true"]
[[edges]]
{edge}
"#
    )
}

fn toml_error(text: &str) -> String {
    match JobSpec::parse_with_limits(text, SpecFormat::Toml, LIMITS) {
        Ok(spec) => panic!("accepted: {spec:?}\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn json_error(text: &str) -> String {
    match JobSpec::parse_with_limits(text, SpecFormat::Json, LIMITS) {
        Ok(spec) => panic!("accepted: {spec:?}\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} does not mention {part:?}"
        );
    }
}

#[test]
fn unknown_pattern_error_names_the_edge_field_and_the_value() {
    let text = toml_with_edge(
        "from = \"up\"\nto = \"down\"\npattern = \"pointwize\"\nexchange = \"blocking\"",
    );
    assert_mentions(
        &toml_error(&text),
        &["edges[0].pattern", "pointwize", "pointwise", "all-to-all"],
    );
}

#[test]
fn unknown_exchange_error_names_the_edge_field_and_the_value() {
    let text = toml_with_edge(
        "from = \"up\"\nto = \"down\"\npattern = \"pointwise\"\nexchange = \"durable\"",
    );
    assert_mentions(
        &toml_error(&text),
        &[
            "edges[0].exchange",
            "durable",
            "pipelined",
            "blocking",
            "persistent",
        ],
    );
}

#[test]
fn missing_pattern_error_names_the_edge_field() {
    let text = toml_with_edge("from = \"up\"\nto = \"down\"\nexchange = \"blocking\"");
    assert_mentions(&toml_error(&text), &["edges[0].pattern", "missing"]);
}

#[test]
fn unknown_vertex_in_an_edge_error_names_the_field_and_the_id() {
    let text = toml_with_edge(
        "from = \"up\"\nto = \"nowhere\"\npattern = \"pointwise\"\nexchange = \"blocking\"",
    );
    assert_mentions(&toml_error(&text), &["edges[0].to", "nowhere"]);
}

#[test]
fn self_loop_error_names_the_edge_and_the_vertex() {
    let text = toml_with_edge(
        "from = \"up\"\nto = \"up\"\npattern = \"pointwise\"\nexchange = \"blocking\"",
    );
    assert_mentions(&toml_error(&text), &["edges[0]", "\"up\"", "itself"]);
}

#[test]
fn duplicate_edge_error_names_the_second_edge() {
    let edge = "from = \"up\"\nto = \"down\"\npattern = \"pointwise\"\nexchange = \"blocking\"";
    let text = toml_with_edge(&format!("{edge}\n[[edges]]\n{edge}"));
    assert_mentions(&toml_error(&text), &["edges[1]", "\"up\"", "\"down\""]);
}

#[test]
fn cycle_error_names_every_vertex_on_the_cycle_and_no_other() {
    let mut text = String::from("name = \"job\"\n");
    for id in ["source", "alpha", "beta", "gamma", "sink"] {
        text += &format!("[[vertices]]\nid = \"{id}\"\nparallelism = 1\ncommand = [\"true\"]\n");
    }
    for (from, to) in [
        ("source", "alpha"),
        ("alpha", "beta"),
        ("beta", "gamma"),
        ("gamma", "alpha"),
        ("gamma", "sink"),
    ] {
        text += &format!(
            "[[edges]]\nfrom = \"{from}\"\nto = \"{to}\"\npattern = \"pointwise\"\nexchange = \"blocking\"\n"
        );
    }
    let message = toml_error(&text);
    assert_mentions(&message, &["cycle", "alpha -> beta -> gamma -> alpha"]);
    assert!(
        !message.contains("source") && !message.contains("sink"),
        "{message}"
    );
}

#[test]
fn two_vertex_cycle_error_names_both_vertices() {
    let mut text = toml_with_edge(
        "from = \"up\"\nto = \"down\"\npattern = \"pointwise\"\nexchange = \"blocking\"",
    );
    text += "[[edges]]\nfrom = \"down\"\nto = \"up\"\npattern = \"all-to-all\"\nexchange = \"pipelined\"\n";
    assert_mentions(&toml_error(&text), &["cycle", "up -> down -> up"]);
}

#[test]
fn parallelism_out_of_range_error_names_the_field_vertex_and_limit() {
    for (value, shown) in [
        ("0", "0"),
        ("-3", "-3"),
        ("65", "65"),
        ("4294967296", "4294967296"),
    ] {
        let text = format!(
            "name = \"job\"\n[[vertices]]\nid = \"ok\"\nparallelism = 1\ncommand = [\"true\"]\n\
             [[vertices]]\nid = \"wide\"\nparallelism = {value}\ncommand = [\"true\"]\n"
        );
        assert_mentions(
            &toml_error(&text),
            &["vertices[1].parallelism", "\"wide\"", shown, "64"],
        );
    }
}

#[test]
fn wrong_typed_parallelism_is_rejected_with_its_line_not_coerced() {
    for value in ["\"4\"", "2.0", "true", "[4]"] {
        let text = format!(
            "name = \"job\"\n[[vertices]]\nid = \"v\"\nparallelism = {value}\ncommand = [\"true\"]\n"
        );
        let message = toml_error(&text);
        assert_mentions(&message, &["TOML", "line 4", "invalid type"]);
    }
}

/// DESIGN §5 and the `spec` module promise that every value error names its field; a value
/// of the wrong type is reported by the deserializer's generic message instead.
#[test]

fn wrong_typed_value_error_names_the_field() {
    let toml =
        "name = \"job\"\n[[vertices]]\nid = \"v\"\nparallelism = \"4\"\ncommand = [\"true\"]\n";
    assert_mentions(&toml_error(toml), &["vertices[0].parallelism"]);
    let json = r#"{"name": "job", "vertices": [{"id": "v", "parallelism": 1, "command": ["x"]}],
        "edges": [{"from": "v", "to": "v", "pattern": 3, "exchange": "blocking"}]}"#;
    assert_mentions(&json_error(json), &["edges[0].pattern"]);
}

#[test]
fn vertex_id_with_hash_error_names_the_id_field() {
    let text =
        "name = \"job\"\n[[vertices]]\nid = \"map#1\"\nparallelism = 1\ncommand = [\"true\"]\n";
    assert_mentions(&toml_error(text), &["vertices[0].id", "'#'"]);
}

#[test]
fn empty_and_overlong_vertex_ids_error_names_the_id_field() {
    let long = "x".repeat(129);
    for id in ["", long.as_str()] {
        let text = format!(
            "name = \"job\"\n[[vertices]]\nid = \"ok\"\nparallelism = 1\ncommand = [\"true\"]\n\
             [[vertices]]\nid = \"{id}\"\nparallelism = 1\ncommand = [\"true\"]\n"
        );
        assert_mentions(&toml_error(&text), &["vertices[1].id"]);
    }
    // 128 bytes is still fine.
    let text = format!(
        "name = \"job\"\n[[vertices]]\nid = \"{}\"\nparallelism = 1\ncommand = [\"true\"]\n",
        "x".repeat(128)
    );
    assert!(JobSpec::parse_with_limits(&text, SpecFormat::Toml, LIMITS).is_ok());
}

#[test]
fn duplicate_vertex_id_error_names_the_second_vertex() {
    let text = "name = \"job\"\n[[vertices]]\nid = \"v\"\nparallelism = 1\ncommand = [\"a\"]\n\
                [[vertices]]\nid = \"v\"\nparallelism = 2\ncommand = [\"b\"]\n";
    assert_mentions(&toml_error(text), &["vertices[1].id", "\"v\"", "unique"]);
}

#[test]
fn empty_command_error_names_the_command_field() {
    for command in ["[]", "[\"\"]"] {
        let text = format!(
            "name = \"job\"\n[[vertices]]\nid = \"v\"\nparallelism = 1\ncommand = {command}\n"
        );
        assert_mentions(&toml_error(&text), &["vertices[0].command"]);
    }
}

#[test]
fn unknown_failover_strategy_error_names_the_field_and_the_choices() {
    let text = "name = \"job\"\nfailover = \"regional\"\n[[vertices]]\nid = \"v\"\nparallelism = 1\ncommand = [\"a\"]\n";
    assert_mentions(
        &toml_error(text),
        &["failover", "regional", "full", "region", "individual"],
    );
}

#[test]
fn restart_key_of_another_strategy_error_names_the_key() {
    let text = "name = \"job\"\n[restart]\nstrategy = \"exponential-delay\"\nattempts = 3\n\
                [[vertices]]\nid = \"v\"\nparallelism = 1\ncommand = [\"a\"]\n";
    assert_mentions(
        &toml_error(text),
        &["restart.attempts", "exponential-delay"],
    );
}

#[test]
fn bad_restart_duration_error_names_the_key() {
    let text = "name = \"job\"\n[restart]\nstrategy = \"fixed-delay\"\ndelay = \"soon\"\n\
                [[vertices]]\nid = \"v\"\nparallelism = 1\ncommand = [\"a\"]\n";
    assert_mentions(&toml_error(text), &["restart.delay", "soon"]);
}

#[test]
fn unknown_key_error_names_the_key() {
    let text = "name = \"job\"\n[[vertices]]\nid = \"v\"\nparallelism = 1\ncommand = [\"a\"]\nparalelism = 2\n";
    assert_mentions(&toml_error(text), &["paralelism"]);
    let json = r#"{"name": "job", "vertices": [{"id": "v", "parallelism": 1, "command": ["a"], "colour": 1}]}"#;
    assert_mentions(&json_error(json), &["colour"]);
}

#[test]
fn job_without_vertices_is_rejected_in_both_formats() {
    assert_mentions(&toml_error("name = \"job\"\n"), &["no vertices"]);
    assert_mentions(
        &json_error(r#"{"name": "job", "vertices": []}"#),
        &["no vertices"],
    );
}

#[test]
fn json_errors_name_the_same_fields_as_toml_errors() {
    let json = r#"{"name": "job",
        "vertices": [{"id": "a", "parallelism": 1, "command": ["x"]},
                     {"id": "b", "parallelism": 1, "command": ["x"]}],
        "edges": [{"from": "a", "to": "b", "pattern": "pointwise", "exchange": "pipelined"},
                  {"from": "b", "to": "a", "pattern": "round-robin", "exchange": "pipelined"}]}"#;
    assert_mentions(&json_error(json), &["edges[1].pattern", "round-robin"]);
}

#[test]
fn syntax_errors_name_the_format_and_fit_on_one_line() {
    let toml = toml_error("name = \"job\"\n[[vertices]\nid = 1\n");
    assert_mentions(&toml, &["TOML"]);
    assert!(!toml.contains('\n'), "{toml:?}");
    let json = json_error("{\"name\": \"job\",\n \"vertices\": [\n");
    assert_mentions(&json, &["JSON"]);
    assert!(!json.contains('\n'), "{json:?}");
}

#[test]
fn deeply_nested_arrays_are_rejected_without_overflowing_the_stack() {
    for depth in [100, 1_000, 100_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let toml = format!(
            "name = \"job\"\n[[vertices]]\nid = \"v\"\nparallelism = 1\ncommand = {nested}\n"
        );
        assert!(JobSpec::parse_with_limits(&toml, SpecFormat::Toml, LIMITS).is_err());
        let json = format!(
            r#"{{"name": "job", "vertices": [{{"id": "v", "parallelism": 1, "command": {nested}}}]}}"#
        );
        assert!(JobSpec::parse_with_limits(&json, SpecFormat::Json, LIMITS).is_err());
    }
}

#[test]
fn base_toml_spec_parses_to_the_vertices_edges_and_strategies_it_declares() {
    // A sanity anchor for the fuzz oracle: a near-valid spec with only valid choices parses to
    // what it says.
    let spec = parse_and_run(BASE_TOML, SpecFormat::Toml).unwrap();
    let ids: BTreeSet<&str> = spec.vertices.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, BTreeSet::from(["source", "map", "sink"]));
    assert_eq!(spec.edges.len(), 3);
    assert_eq!(spec.failover, FailoverStrategy::Region);
    assert_eq!(spec.restart.name(), "exponential-delay");
}
