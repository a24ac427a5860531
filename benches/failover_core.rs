//! Failover-core benchmarks on Flink's scheduler-benchmark shapes.
//!
//! Two vertices, `source` → `sink`, joined by one all-to-all edge, both at the same
//! parallelism (4,000 and 10,000), once with a `pipelined` and once with a `blocking` exchange.
//! For each shape we time:
//!
//! * `build_graph/<exchange>/<p>`: `ExecutionGraph::build` from an already parsed `JobSpec`;
//! * `regions/<exchange>/<p>`: `Regions::compute` on an already built graph;
//! * `graph_and_regions/<exchange>/<p>`: both of the above, back to back;
//! * `restart_set/<exchange>/<p>`: `compute_restart_set` with the `region` strategy for the
//!   failure of `source#0`, every partition available.
//!
//! Before timing, each shape's results are checked once against the expected semantics
//! (pipelined: one region of 2p tasks, everything restarts; blocking: 2p singleton regions,
//! `source#0` and every sink restart), so a wrong answer fails the run instead of being timed.
//!
//! `placement/<policy>/<shape>` times submitting a 100,000-task job to a core with 1,000
//! registered executors of 100 slots (graph, regions and placing every task; target for
//! `pack-regions`: well under a second). Shapes: `pairs` (source 50,000 → pointwise,
//! pipelined → sink 50,000: 50,000 regions of 2), `fan-4` (source 20,000 → pointwise,
//! pipelined → sink 80,000: 20,000 regions of 5) and `one-region` (50,000 → all-to-all,
//! pipelined → 50,000: one region split over all 1,000 executors).
//!
//! Run with `cargo bench --bench failover_core`; BENCHMARKS.md records the results.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main,
};
use jobmaster::core::{
    Command, CoreConfig, Event, ExecutionGraph, ExecutorId, FailoverStrategy, JobId, JobMaster,
    JobSpec, PlacementPolicy, Regions, RestartSet, TaskId, compute_restart_set,
};

const PARALLELISMS: [u32; 2] = [4_000, 10_000];
const EXCHANGES: [&str; 2] = ["pipelined", "blocking"];

/// One benchmark shape and its parsed spec.
struct Shape {
    exchange: &'static str,
    parallelism: u32,
    spec: JobSpec,
}

impl Shape {
    fn new(exchange: &'static str, parallelism: u32) -> Shape {
        let text = format!(
            r#"
name = "bench-{exchange}-{parallelism}"
failover = "region"

[[vertices]]
id = "source"
parallelism = {parallelism}
command = ["true"]

[[vertices]]
id = "sink"
parallelism = {parallelism}
command = ["true"]

[[edges]]
from = "source"
to = "sink"
pattern = "all-to-all"
exchange = "{exchange}"
"#
        );
        let spec = JobSpec::from_toml(&text)
            .unwrap_or_else(|e| panic!("benchmark spec {exchange}/{parallelism} is invalid: {e}"));
        Shape {
            exchange,
            parallelism,
            spec,
        }
    }

    fn id(&self) -> BenchmarkId {
        BenchmarkId::new(self.exchange, self.parallelism)
    }
}

fn failed_task(graph: &ExecutionGraph) -> TaskId {
    graph
        .find_task("source#0")
        .expect("the benchmark graph has a task source#0")
}

fn restart_for_source0(graph: &ExecutionGraph, regions: &Regions) -> RestartSet {
    compute_restart_set(
        graph,
        regions,
        FailoverStrategy::Region,
        &[failed_task(graph)],
        |_| true,
    )
}

/// Checks the shape's graph, regions and restart set once, outside any timing loop.
fn check_semantics(shape: &Shape, graph: &ExecutionGraph, regions: &Regions) {
    let p = shape.parallelism as usize;
    let label = format!("{}/{}", shape.exchange, shape.parallelism);
    assert_eq!(graph.task_count(), 2 * p, "{label}: task count");
    assert_eq!(
        graph.group_count(),
        1,
        "{label}: an all-to-all edge is one group"
    );
    assert_eq!(graph.partition_count(), p, "{label}: partition count");

    let source = graph.find_vertex("source").expect("vertex source");
    let sink = graph.find_vertex("sink").expect("vertex sink");
    let restart = restart_for_source0(graph, regions);
    match shape.exchange {
        "pipelined" => {
            assert_eq!(
                regions.len(),
                1,
                "{label}: pipelined all-to-all is one region"
            );
            assert_eq!(
                regions.largest(),
                2 * p,
                "{label}: the region holds every task"
            );
            let all: Vec<TaskId> = graph.tasks().collect();
            assert_eq!(restart.tasks, all, "{label}: every task restarts");
        }
        "blocking" => {
            assert_eq!(regions.len(), 2 * p, "{label}: one region per task");
            assert_eq!(regions.largest(), 1, "{label}: singleton regions");
            let mut expected = vec![failed_task(graph)];
            expected.extend(graph.vertex(sink).tasks());
            assert_eq!(
                restart.tasks.len(),
                1 + p,
                "{label}: source#0 and every sink restart"
            );
            assert_eq!(
                restart.tasks, expected,
                "{label}: source#0 and every sink restart"
            );
            // No other source task restarts: its partitions are all available.
            let sources: Vec<TaskId> = graph.vertex(source).tasks().collect();
            assert!(
                sources[1..]
                    .iter()
                    .all(|t| restart.tasks.binary_search(t).is_err()),
                "{label}: only source#0 restarts among the sources"
            );
        }
        other => unreachable!("unknown exchange {other}"),
    }
}

/// Kept short: the reference machine has 2 noisy cores, and 16 benchmarks run.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

fn failover_core(c: &mut Criterion) {
    let shapes: Vec<Shape> = PARALLELISMS
        .iter()
        .flat_map(|&p| EXCHANGES.iter().map(move |&x| Shape::new(x, p)))
        .collect();

    // Inputs for the later steps, built once; also the place where semantics are checked.
    let prepared: Vec<(ExecutionGraph, Regions)> = shapes
        .iter()
        .map(|shape| {
            let graph = ExecutionGraph::build(&shape.spec);
            let regions = Regions::compute(&graph);
            check_semantics(shape, &graph, &regions);
            (graph, regions)
        })
        .collect();

    let mut group = c.benchmark_group("build_graph");
    configure(&mut group);
    for shape in &shapes {
        group.bench_with_input(shape.id(), &shape.spec, |b, spec| {
            b.iter(|| ExecutionGraph::build(black_box(spec)));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("regions");
    configure(&mut group);
    for (shape, (graph, _)) in shapes.iter().zip(&prepared) {
        group.bench_with_input(shape.id(), graph, |b, graph| {
            b.iter(|| Regions::compute(black_box(graph)));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("graph_and_regions");
    configure(&mut group);
    for shape in &shapes {
        group.bench_with_input(shape.id(), &shape.spec, |b, spec| {
            b.iter(|| {
                let graph = ExecutionGraph::build(black_box(spec));
                let regions = Regions::compute(&graph);
                (graph, regions)
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("restart_set");
    configure(&mut group);
    for (shape, (graph, regions)) in shapes.iter().zip(&prepared) {
        let failed = [failed_task(graph)];
        group.bench_with_input(shape.id(), &(graph, regions), |b, &(graph, regions)| {
            b.iter(|| {
                compute_restart_set(
                    black_box(graph),
                    black_box(regions),
                    FailoverStrategy::Region,
                    black_box(&failed),
                    |_| true,
                )
            });
        });
    }
    group.finish();
}

/// A job of two vertices with 100,000 tasks in all.
fn placement_spec(shape: &str) -> JobSpec {
    let (source, sink, pattern) = match shape {
        "pairs" => (50_000, 50_000, "pointwise"),
        "fan-4" => (20_000, 80_000, "pointwise"),
        "one-region" => (50_000, 50_000, "all-to-all"),
        other => unreachable!("unknown shape {other}"),
    };
    JobSpec::from_toml(&format!(
        r#"
name = "place-{shape}"
[[vertices]]
id = "source"
parallelism = {source}
command = ["true"]
[[vertices]]
id = "sink"
parallelism = {sink}
command = ["true"]
[[edges]]
from = "source"
to = "sink"
pattern = "{pattern}"
exchange = "pipelined"
"#
    ))
    .expect("valid placement spec")
}

/// 1,000 registered executors of 100 slots: room for exactly 100,000 tasks.
fn thousand_executors(policy: PlacementPolicy) -> JobMaster {
    let mut jm = JobMaster::new(CoreConfig {
        placement: policy,
        ..CoreConfig::default()
    });
    for i in 0..1_000 {
        jm.handle(
            Event::ExecutorRegistered {
                executor: ExecutorId(format!("tm-{i:04}")),
                slots: 100,
                labels: Default::default(),
                holds: Default::default(),
            },
            0,
        )
        .expect("registered");
    }
    jm
}

fn submit(jm: &mut JobMaster, spec: &JobSpec) -> usize {
    let out = jm
        .handle(
            Event::SubmitJob {
                job: JobId(1),
                spec: spec.clone(),
            },
            0,
        )
        .expect("submitted");
    out.iter()
        .filter(|c| matches!(c, Command::Deploy { .. }))
        .count()
}

fn placement(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for policy in [PlacementPolicy::PackRegions, PlacementPolicy::Spread] {
        for shape in ["pairs", "fan-4", "one-region"] {
            let spec = placement_spec(shape);
            let mut jm = thousand_executors(policy);
            assert_eq!(
                submit(&mut jm, &spec),
                100_000,
                "{policy}/{shape}: every task placed"
            );
            group.bench_function(BenchmarkId::new(policy.name(), shape), |b| {
                b.iter_batched(
                    || thousand_executors(policy),
                    |mut jm| {
                        submit(&mut jm, black_box(&spec));
                        jm
                    },
                    BatchSize::LargeInput,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, failover_core, placement);
criterion_main!(benches);
