//! Property tests of the failover core over random DAGs, against the naive reference in
//! `tests/naive` (DESIGN §7, tier 1).
//!
//! Every case builds a random DAG (up to 30 vertices, parallelism 1–8, edges only from a lower to
//! a higher vertex index, mixed patterns and exchanges), declares its vertices in a shuffled
//! order, renders it as TOML or JSON text and parses it with `JobSpec::parse`, so the parser is
//! exercised too. Failures pick 1–3 random tasks and a random set of unavailable partitions; the
//! crate and the reference see the very same availability.

mod naive;

use std::collections::{BTreeSet, HashMap, HashSet};

use jobmaster::core::graph::EdgeIdx;
use jobmaster::core::{
    Exchange, ExecutionGraph, FailoverStrategy, JobSpec, PartitionId, Pattern, RegionId, Regions,
    RestartReason, RestartScope, RestartSet, SpecFormat, TaskId, compute_restart_set,
};
use naive::{Link, NaiveJob};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// A random DAG. Vertex `i` is named `v{i}`; edges go from a lower to a higher index.
#[derive(Debug, Clone)]
struct Dag {
    parallelism: Vec<u32>,
    /// `(from, to, pattern, exchange)`, `from < to`, at most one edge per pair, in declaration
    /// order.
    edges: Vec<(usize, usize, Pattern, Exchange)>,
    /// Declaration order of the vertices (a permutation of `0..n`).
    order: Vec<usize>,
    format: SpecFormat,
}

fn pattern() -> impl Strategy<Value = Pattern> {
    prop_oneof![Just(Pattern::Pointwise), Just(Pattern::AllToAll)]
}

fn exchange() -> impl Strategy<Value = Exchange> {
    prop_oneof![
        5 => Just(Exchange::Pipelined),
        3 => Just(Exchange::Blocking),
        2 => Just(Exchange::Persistent),
    ]
}

fn dag() -> impl Strategy<Value = Dag> {
    dag_with(30, 8)
}

fn dag_with(max_vertices: usize, max_parallelism: u32) -> impl Strategy<Value = Dag> {
    (1usize..=max_vertices)
        .prop_flat_map(move |n| {
            (
                prop::collection::vec(1u32..=max_parallelism, n),
                prop::collection::vec((0..n, 0..n, pattern(), exchange()), 0..=2 * n),
                Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
                prop_oneof![Just(SpecFormat::Toml), Just(SpecFormat::Json)],
            )
        })
        .prop_map(|(parallelism, raw_edges, order, format)| {
            let mut pairs = HashSet::new();
            let edges = raw_edges
                .into_iter()
                .filter(|(a, b, _, _)| a != b)
                .map(|(a, b, p, x)| (a.min(b), a.max(b), p, x))
                .filter(|(a, b, _, _)| pairs.insert((*a, *b)))
                .collect();
            Dag {
                parallelism,
                edges,
                order,
                format,
            }
        })
}

fn pattern_name(p: Pattern) -> &'static str {
    match p {
        Pattern::Pointwise => "pointwise",
        Pattern::AllToAll => "all-to-all",
    }
}

fn exchange_name(x: Exchange) -> &'static str {
    match x {
        Exchange::Pipelined => "pipelined",
        Exchange::Blocking => "blocking",
        Exchange::Persistent => "persistent",
    }
}

impl Dag {
    fn to_toml(&self) -> String {
        let mut text = String::from("name = \"random-dag\"\nfailover = \"region\"\n");
        for &v in &self.order {
            text += &format!(
                "\n[[vertices]]\nid = \"v{v}\"\nparallelism = {}\ncommand = [\"true\"]\n",
                self.parallelism[v]
            );
        }
        for &(from, to, p, x) in &self.edges {
            text += &format!(
                "\n[[edges]]\nfrom = \"v{from}\"\nto = \"v{to}\"\npattern = \"{}\"\nexchange = \"{}\"\n",
                pattern_name(p),
                exchange_name(x)
            );
        }
        text
    }

    fn to_json(&self) -> String {
        let vertices: Vec<_> = self
            .order
            .iter()
            .map(|&v| {
                serde_json::json!({
                    "id": format!("v{v}"),
                    "parallelism": self.parallelism[v],
                    "command": ["true"],
                })
            })
            .collect();
        let edges: Vec<_> = self
            .edges
            .iter()
            .map(|&(from, to, p, x)| {
                serde_json::json!({
                    "from": format!("v{from}"),
                    "to": format!("v{to}"),
                    "pattern": pattern_name(p),
                    "exchange": exchange_name(x),
                })
            })
            .collect();
        serde_json::json!({
            "name": "random-dag",
            "failover": "region",
            "vertices": vertices,
            "edges": edges,
        })
        .to_string()
    }

    fn text(&self, format: SpecFormat) -> String {
        match format {
            SpecFormat::Toml => self.to_toml(),
            SpecFormat::Json => self.to_json(),
        }
    }

    fn spec(&self) -> JobSpec {
        let text = self.text(self.format);
        JobSpec::parse(&text, self.format)
            .unwrap_or_else(|e| panic!("a valid random DAG was rejected: {e}\n{text}"))
    }

    fn task_count(&self) -> usize {
        self.parallelism.iter().map(|&p| p as usize).sum()
    }

    /// Number of result partitions: one per producer task per edge.
    fn partition_count(&self) -> usize {
        self.edges
            .iter()
            .map(|&(from, ..)| self.parallelism[from] as usize)
            .sum()
    }
}

/// A failure on a random DAG: failed tasks (by task number) and unavailable partitions.
#[derive(Debug, Clone)]
struct Scenario {
    dag: Dag,
    failed: Vec<usize>,
    /// One flag per partition, edges in declaration order, producer subtasks in order.
    unavailable: Vec<bool>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    dag().prop_flat_map(|dag| {
        let tasks = dag.task_count();
        let partitions = dag.partition_count();
        (
            prop::collection::vec(0..tasks, 1..=3),
            prop::collection::vec(prop::bool::weighted(0.3), partitions),
            Just(dag),
        )
            .prop_map(|(failed, unavailable, dag)| Scenario {
                dag,
                failed,
                unavailable,
            })
    })
}

/// Everything a test needs about one DAG, with the crate's task numbering checked against the
/// reference's.
struct Fixture {
    graph: ExecutionGraph,
    regions: Regions,
    naive: NaiveJob,
}

impl Fixture {
    fn new(dag: &Dag) -> Fixture {
        let spec = dag.spec();
        let graph = ExecutionGraph::build(&spec);
        let regions = Regions::compute(&graph);
        let naive = NaiveJob::new(&spec);
        assert_eq!(graph.task_count(), naive.task_count());
        for (t, name) in naive.task_names.iter().enumerate() {
            assert_eq!(
                graph.find_task(name),
                Some(TaskId(t as u32)),
                "task {name} is not task {t}"
            );
            assert_eq!(graph.task_name(TaskId(t as u32)).to_string(), *name);
        }
        Fixture {
            graph,
            regions,
            naive,
        }
    }

    fn crate_regions(&self) -> BTreeSet<BTreeSet<usize>> {
        self.regions
            .ids()
            .map(|r| self.regions.tasks(r).iter().map(|t| t.index()).collect())
            .collect()
    }

    fn region_labels(&self) -> Vec<usize> {
        (0..self.graph.task_count())
            .map(|t| self.regions.region_of(TaskId(t as u32)).index())
            .collect()
    }

    fn region(&self, task: usize) -> RegionId {
        self.regions.region_of(TaskId(task as u32))
    }

    /// The crate's partition for `(producer task, edge)`.
    fn partition(&self, producer: usize, edge: usize) -> PartitionId {
        let e = self.graph.edge(EdgeIdx(edge as u32));
        let subtask = self.graph.subtask_of(TaskId(producer as u32));
        PartitionId(e.partitions().start + subtask)
    }

    /// `(producer task, edge)` of a crate partition.
    fn partition_key(&self, p: PartitionId) -> (usize, usize) {
        (
            self.graph.producer_of(p).index(),
            self.graph.edge_of_partition(p).0 as usize,
        )
    }
}

impl Scenario {
    /// The unavailable partitions as `(producer task, edge)`, numbered independently of the crate.
    fn unavailable_set(&self) -> HashSet<(usize, usize)> {
        let mut first_task = vec![0usize; self.dag.parallelism.len()];
        let mut next = 0;
        for &v in &self.dag.order {
            first_task[v] = next;
            next += self.dag.parallelism[v] as usize;
        }
        let mut set = HashSet::new();
        let mut flag = self.unavailable.iter();
        for (e, &(from, ..)) in self.dag.edges.iter().enumerate() {
            for i in 0..self.dag.parallelism[from] as usize {
                if *flag.next().unwrap() {
                    set.insert((first_task[from] + i, e));
                }
            }
        }
        set
    }

    fn failed_tasks(&self) -> Vec<TaskId> {
        self.failed.iter().map(|&t| TaskId(t as u32)).collect()
    }
}

/// Runs the crate's restart-set computation with the scenario's availability.
fn crate_restart_set(
    fx: &Fixture,
    sc: &Scenario,
    unavailable: &HashSet<(usize, usize)>,
    strategy: FailoverStrategy,
) -> RestartSet {
    compute_restart_set(
        &fx.graph,
        &fx.regions,
        strategy,
        &sc.failed_tasks(),
        |p: PartitionId| !unavailable.contains(&fx.partition_key(p)),
    )
}

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Links of the crate's exchange groups, expanded.
fn crate_links(graph: &ExecutionGraph) -> Vec<Link> {
    let mut links = Vec::new();
    for (e, edge) in graph.edges().iter().enumerate() {
        for g in edge.groups() {
            let group = graph.group(g);
            assert_eq!(group.edge, EdgeIdx(e as u32));
            assert_eq!(group.exchange, edge.exchange);
            for p in group.producer_tasks() {
                for c in group.consumer_tasks() {
                    links.push(Link {
                        producer: p.index(),
                        consumer: c.index(),
                        edge: e,
                    });
                }
            }
        }
    }
    links
}

/// The region of a `region`/`full` restart entry.
fn entry_region(scope: RestartScope) -> RegionId {
    match scope {
        RestartScope::Region(r) => r,
        RestartScope::Task(t) => panic!("a region strategy returned a task entry {t:?}"),
    }
}

/// The task of an `individual` restart entry.
fn entry_task(scope: RestartScope) -> TaskId {
    match scope {
        RestartScope::Task(t) => t,
        RestartScope::Region(r) => panic!("strategy individual returned a region entry {r:?}"),
    }
}

fn assert_tasks_sorted_and_unique(set: &RestartSet) {
    assert!(
        set.tasks.windows(2).all(|w| w[0] < w[1]),
        "tasks not strictly ascending: {:?}",
        set.tasks
    );
}

proptest! {
    #![proptest_config(config())]

    /// The exchange groups of every edge, expanded, are exactly the links of the DESIGN §2
    /// formulas; per-task group lookups and partition numbering agree with them.
    #[test]
    fn exchange_groups_expand_to_the_design_links_on_random_dags(dag in dag()) {
        check_groups_against_naive_links(&dag)?;
    }

    /// The same, with few vertices of parallelism up to 100, so pointwise edges see many
    /// uneven ratios (e.g. 7 → 64, 97 → 3).
    #[test]
    fn exchange_groups_expand_to_the_design_links_at_high_parallelism(dag in dag_with(4, 100)) {
        check_groups_against_naive_links(&dag)?;
    }

    /// Failed tasks outside the graph are ignored, and no failed task restarts nothing.
    #[test]
    fn restart_sets_ignore_unknown_failed_tasks_and_are_empty_without_failures(sc in scenario()) {
        let fx = Fixture::new(&sc.dag);
        let unavailable = sc.unavailable_set();
        let available = |p: PartitionId| !unavailable.contains(&fx.partition_key(p));
        let n = fx.graph.task_count() as u32;
        let mut with_unknown = sc.failed_tasks();
        with_unknown.insert(0, TaskId(n));
        with_unknown.push(TaskId(u32::MAX));
        for strategy in [FailoverStrategy::Full, FailoverStrategy::Region, FailoverStrategy::Individual] {
            let plain = compute_restart_set(&fx.graph, &fx.regions, strategy, &sc.failed_tasks(), available);
            let noisy = compute_restart_set(&fx.graph, &fx.regions, strategy, &with_unknown, available);
            prop_assert_eq!(&plain, &noisy);
            let none = compute_restart_set(&fx.graph, &fx.regions, strategy, &[], available);
            prop_assert!(none.entries.is_empty() && none.tasks.is_empty(), "{:?}", none);
            let only_unknown = compute_restart_set(&fx.graph, &fx.regions, strategy, &[TaskId(n)], available);
            prop_assert!(only_unknown.tasks.is_empty(), "{:?}", only_unknown);
        }
    }
}

/// Expanded exchange groups equal the DESIGN §2 links; per-task group lookups and partition ids
/// agree with them.
fn check_groups_against_naive_links(dag: &Dag) -> Result<(), TestCaseError> {
    let fx = Fixture::new(dag);
    let mut expected = fx.naive.links.clone();
    expected.sort();
    let mut actual = crate_links(&fx.graph);
    actual.sort();
    prop_assert_eq!(&actual, &expected);
    // Group lists never repeat a link: groups of an edge are disjoint.
    let mut deduped = actual.clone();
    deduped.dedup();
    prop_assert_eq!(deduped.len(), actual.len());

    // consumed_groups / produced_groups name the groups a task really is in.
    for t in fx.graph.tasks() {
        let vertex = fx.graph.vertex(fx.graph.vertex_of(t));
        let consumed: Vec<_> = fx.graph.consumed_groups(t).collect();
        prop_assert_eq!(consumed.len(), vertex.inputs().len());
        for g in consumed {
            prop_assert!(fx.graph.group(g).consumers.contains(&t.0));
        }
        let produced: Vec<_> = fx.graph.produced_groups(t).collect();
        prop_assert_eq!(produced.len(), vertex.outputs().len());
        for g in produced {
            prop_assert!(fx.graph.group(g).producers.contains(&t.0));
        }
        for p in fx.graph.produced_partitions(t) {
            prop_assert_eq!(fx.graph.producer_of(p), t);
        }
    }
    // Partition ids: each (producer task, edge) has one, mapping back to itself.
    let mut seen = HashSet::new();
    for l in &fx.naive.links {
        let p = fx.partition(l.producer, l.edge);
        prop_assert_eq!(fx.partition_key(p), (l.producer, l.edge));
        prop_assert_eq!(fx.graph.exchange_of(p), fx.naive.exchanges[l.edge]);
        seen.insert(p);
    }
    prop_assert_eq!(seen.len(), fx.graph.partition_count());
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// The crate's regions are exactly the naive reference's (DESIGN §3 definition).
    #[test]
    fn regions_match_naive_reference_on_random_dags(dag in dag()) {
        let fx = Fixture::new(&dag);
        prop_assert_eq!(fx.crate_regions(), fx.naive.region_sets());
    }

    /// Regions partition the tasks, keep both ends of every pipelined link together, leave an
    /// acyclic region graph over blocking/persistent links, list their tasks ascending and are
    /// numbered by their smallest task.
    #[test]
    fn regions_satisfy_the_definition_invariants_on_random_dags(dag in dag()) {
        let fx = Fixture::new(&dag);
        let n = fx.graph.task_count();
        let mut owner = vec![None; n];
        let mut smallest = Vec::new();
        for r in fx.regions.ids() {
            let tasks = fx.regions.tasks(r);
            prop_assert!(!tasks.is_empty(), "region {r:?} is empty");
            prop_assert!(tasks.windows(2).all(|w| w[0] < w[1]), "region {r:?} not ascending");
            for &t in tasks {
                prop_assert_eq!(owner[t.index()], None, "task {:?} in two regions", t);
                owner[t.index()] = Some(r);
                prop_assert_eq!(fx.regions.region_of(t), r);
            }
            smallest.push(tasks[0]);
        }
        prop_assert!(owner.iter().all(Option::is_some), "some task has no region");
        prop_assert!(smallest.windows(2).all(|w| w[0] < w[1]), "regions not numbered by smallest task");
        prop_assert_eq!(fx.regions.largest(), fx.regions.ids().map(|r| fx.regions.tasks(r).len()).max().unwrap());

        for l in fx.naive.links.iter().filter(|l| fx.naive.is_pipelined(l)) {
            prop_assert_eq!(fx.region(l.producer), fx.region(l.consumer), "pipelined link {:?} crosses regions", l);
        }
        prop_assert!(fx.naive.region_graph_is_acyclic(&fx.region_labels()), "region graph has a cycle");
    }

    /// For `full`, `region` and `individual`, the crate restarts exactly the tasks the naive
    /// fixpoint iteration of the DESIGN §3 rules restarts.
    #[test]
    fn restart_sets_match_naive_reference_for_every_strategy(sc in scenario()) {
        let fx = Fixture::new(&sc.dag);
        let unavailable = sc.unavailable_set();
        let available = |producer: usize, edge: usize| !unavailable.contains(&(producer, edge));
        for strategy in [FailoverStrategy::Full, FailoverStrategy::Region, FailoverStrategy::Individual] {
            let set = crate_restart_set(&fx, &sc, &unavailable, strategy);
            prop_assert_eq!(set.strategy, strategy);
            let actual: BTreeSet<usize> = set.tasks.iter().map(|t| t.index()).collect();
            let expected = fx.naive.restart_tasks(strategy, &sc.failed, &available);
            prop_assert_eq!(actual, expected, "strategy {}", strategy);
        }
    }

    /// The `region` restart set is closed under the three rules, and every entry's reason is
    /// true: failed regions hold the first failed task named, a producer of a lost input really
    /// produces an unavailable partition that its `consumer` entry reads, a consumer really
    /// reads from its `producer` entry, and both joined before it.
    #[test]
    fn region_restart_set_is_closed_and_every_reason_is_truthful(sc in scenario()) {
        let fx = Fixture::new(&sc.dag);
        let unavailable = sc.unavailable_set();
        let set = crate_restart_set(&fx, &sc, &unavailable, FailoverStrategy::Region);
        assert_tasks_sorted_and_unique(&set);

        let mut position: HashMap<RegionId, usize> = HashMap::new();
        for (i, entry) in set.entries.iter().enumerate() {
            let r = entry_region(entry.scope);
            prop_assert!(position.insert(r, i).is_none(), "region {r:?} listed twice");
        }
        // The entries' tasks are `tasks`.
        let union: BTreeSet<usize> = position
            .keys()
            .flat_map(|&r| fx.regions.tasks(r).iter().map(|t| t.index()))
            .collect();
        let tasks: BTreeSet<usize> = set.tasks.iter().map(|t| t.index()).collect();
        prop_assert_eq!(&union, &tasks);

        // Closed under the rules.
        let in_set = |t: usize| position.contains_key(&fx.region(t));
        for &t in &sc.failed {
            prop_assert!(in_set(t), "failed task {t} not restarted");
        }
        for l in &fx.naive.links {
            if in_set(l.consumer) && unavailable.contains(&(l.producer, l.edge)) {
                prop_assert!(in_set(l.producer), "rule 2 violated by {l:?}");
            }
            if in_set(l.producer) {
                prop_assert!(in_set(l.consumer), "rule 3 violated by {l:?}");
            }
        }

        // Reasons.
        let failed_regions: HashSet<RegionId> = sc.failed.iter().map(|&t| fx.region(t)).collect();
        let mut seen_other = false;
        for (i, entry) in set.entries.iter().enumerate() {
            let r = entry_region(entry.scope);
            match entry.reason {
                RestartReason::Failed { task } => {
                    prop_assert!(!seen_other, "failed entry {i} after a non-failed one");
                    let first = sc.failed.iter().copied().find(|&t| fx.region(t) == r);
                    prop_assert_eq!(Some(task.index()), first, "entry {} names the wrong failed task", i);
                }
                RestartReason::ProducerOfLostInput { partition, consumer } => {
                    seen_other = true;
                    prop_assert!(!failed_regions.contains(&r), "failed region {r:?} has reason {:?}", entry.reason);
                    let c = entry_region(consumer);
                    prop_assert!(position.get(&c).is_some_and(|&j| j < i), "consumer {c:?} did not join before entry {i}");
                    let (producer, edge) = fx.partition_key(partition);
                    prop_assert!(unavailable.contains(&(producer, edge)), "partition {partition:?} is available");
                    prop_assert_eq!(fx.region(producer), r);
                    prop_assert!(
                        fx.naive.consumers_of(producer, edge).iter().any(|&t| fx.region(t) == c),
                        "region {c:?} does not consume partition {partition:?}"
                    );
                }
                RestartReason::ConsumerOfRestartedRegion { producer } => {
                    seen_other = true;
                    prop_assert!(!failed_regions.contains(&r), "failed region {r:?} has reason {:?}", entry.reason);
                    let p = entry_region(producer);
                    prop_assert!(position.get(&p).is_some_and(|&j| j < i), "producer {p:?} did not join before entry {i}");
                    prop_assert!(
                        fx.naive.links.iter().any(|l| fx.region(l.producer) == p && fx.region(l.consumer) == r),
                        "region {r:?} consumes nothing from {p:?}"
                    );
                }
                other => prop_assert!(false, "unexpected reason {other:?} under strategy region"),
            }
        }
    }

    /// The `individual` restart set lists each task once, with `tasks` equal to its entries; the
    /// failed tasks come first and every other entry produces an unavailable partition read by
    /// an earlier entry. Consumers are never added.
    #[test]
    fn individual_restart_set_reasons_are_truthful(sc in scenario()) {
        let fx = Fixture::new(&sc.dag);
        let unavailable = sc.unavailable_set();
        let set = crate_restart_set(&fx, &sc, &unavailable, FailoverStrategy::Individual);
        assert_tasks_sorted_and_unique(&set);
        let mut position: HashMap<TaskId, usize> = HashMap::new();
        for (i, entry) in set.entries.iter().enumerate() {
            prop_assert!(position.insert(entry_task(entry.scope), i).is_none(), "entry {i} repeats a task");
        }
        let entry_tasks: BTreeSet<TaskId> = position.keys().copied().collect();
        prop_assert_eq!(entry_tasks, set.tasks.iter().copied().collect::<BTreeSet<_>>());

        let failed: HashSet<TaskId> = sc.failed_tasks().into_iter().collect();
        let mut seen_other = false;
        for (i, entry) in set.entries.iter().enumerate() {
            let t = entry_task(entry.scope);
            match entry.reason {
                RestartReason::Failed { task } => {
                    prop_assert!(!seen_other, "failed entry {i} after a non-failed one");
                    prop_assert_eq!(task, t);
                    prop_assert!(failed.contains(&t));
                }
                RestartReason::ProducerOfLostInput { partition, consumer } => {
                    seen_other = true;
                    prop_assert!(!failed.contains(&t), "failed task {t:?} has reason {:?}", entry.reason);
                    let c = entry_task(consumer);
                    prop_assert!(position.get(&c).is_some_and(|&j| j < i), "consumer {c:?} did not join before entry {i}");
                    let (producer, edge) = fx.partition_key(partition);
                    prop_assert_eq!(producer, t.index());
                    prop_assert!(unavailable.contains(&(producer, edge)), "partition {partition:?} is available");
                    prop_assert!(fx.naive.consumers_of(producer, edge).contains(&c.index()),
                        "task {c:?} does not read partition {partition:?}");
                }
                other => prop_assert!(false, "unexpected reason {other:?} under strategy individual"),
            }
        }
        for &t in &failed {
            prop_assert!(position.contains_key(&t), "failed task {t:?} missing");
        }
    }

    /// The `full` restart set restarts every task and lists every region exactly once: the
    /// regions holding failed tasks first, as failed (naming their first failed task), all
    /// others as full-restart.
    #[test]
    fn full_restart_set_lists_every_region_once_with_failed_regions_first(sc in scenario()) {
        let fx = Fixture::new(&sc.dag);
        let unavailable = sc.unavailable_set();
        let set = crate_restart_set(&fx, &sc, &unavailable, FailoverStrategy::Full);
        prop_assert_eq!(set.tasks.clone(), fx.graph.tasks().collect::<Vec<_>>());
        let regions: BTreeSet<RegionId> = set.entries.iter().map(|e| entry_region(e.scope)).collect();
        prop_assert_eq!(regions.len(), set.entries.len(), "a region is listed twice");
        prop_assert_eq!(regions, fx.regions.ids().collect::<BTreeSet<_>>());
        let failed_regions: HashSet<RegionId> = sc.failed.iter().map(|&t| fx.region(t)).collect();
        for (i, entry) in set.entries.iter().enumerate() {
            let r = entry_region(entry.scope);
            if i < failed_regions.len() {
                let first = sc.failed.iter().copied().find(|&t| fx.region(t) == r);
                prop_assert!(first.is_some(), "entry {i} is not a failed region");
                prop_assert_eq!(entry.reason, RestartReason::Failed { task: TaskId(first.unwrap() as u32) });
            } else {
                prop_assert_eq!(entry.reason, RestartReason::FullRestart);
            }
        }
    }

    /// The TOML and JSON texts of the same job parse to equal specs, vertices in declaration
    /// order.
    #[test]
    fn toml_and_json_texts_of_one_job_parse_to_equal_specs(dag in dag()) {
        let toml = JobSpec::parse(&dag.to_toml(), SpecFormat::Toml).unwrap();
        let json = JobSpec::parse(&dag.to_json(), SpecFormat::Json).unwrap();
        prop_assert_eq!(&toml, &json);
        let ids: Vec<String> = toml.vertices.iter().map(|v| v.id.clone()).collect();
        let expected: Vec<String> = dag.order.iter().map(|v| format!("v{v}")).collect();
        prop_assert_eq!(ids, expected);
        prop_assert_eq!(toml.edges.len(), dag.edges.len());
        prop_assert_eq!(toml.task_count(), dag.task_count() as u64);
    }
}
