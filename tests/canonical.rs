//! The canonical cases of DESIGN §7 tier 1, each with its exact regions and restart sets.

use std::collections::HashSet;

use jobmaster::core::{
    ExecutionGraph, FailoverStrategy, JobSpec, PartitionId, Regions, RestartReason, RestartScope,
    RestartSet, TaskId, compute_restart_set,
};

/// A job from `vertices` (id, parallelism) and `edges` (from, to, pattern, exchange).
fn job(vertices: &[(&str, u32)], edges: &[(&str, &str, &str, &str)]) -> JobSpec {
    let mut text = String::from("name = \"t\"\n");
    for (id, p) in vertices {
        text += &format!("[[vertices]]\nid = \"{id}\"\nparallelism = {p}\ncommand = [\"true\"]\n");
    }
    for (from, to, pattern, exchange) in edges {
        text += &format!(
            "[[edges]]\nfrom = \"{from}\"\nto = \"{to}\"\npattern = \"{pattern}\"\nexchange = \"{exchange}\"\n"
        );
    }
    JobSpec::from_toml(&text).expect("test spec is valid")
}

struct Planned {
    graph: ExecutionGraph,
    regions: Regions,
}

impl Planned {
    fn new(spec: &JobSpec) -> Planned {
        let graph = ExecutionGraph::build(spec);
        let regions = Regions::compute(&graph);
        Planned { graph, regions }
    }

    fn names(&self, tasks: &[TaskId]) -> Vec<String> {
        tasks
            .iter()
            .map(|&t| self.graph.task_name(t).to_string())
            .collect()
    }

    /// Regions as lists of task names, in region order.
    fn regions(&self) -> Vec<Vec<String>> {
        self.regions
            .ids()
            .map(|r| self.names(self.regions.tasks(r)))
            .collect()
    }

    fn task(&self, name: &str) -> TaskId {
        self.graph.find_task(name).expect("task exists")
    }

    /// The restart set when `failed` fail and the blocking outputs of `lost` are gone.
    fn restart(&self, strategy: FailoverStrategy, failed: &[&str], lost: &[&str]) -> RestartSet {
        let failed: Vec<TaskId> = failed.iter().map(|n| self.task(n)).collect();
        let lost: HashSet<TaskId> = lost.iter().map(|n| self.task(n)).collect();
        compute_restart_set(
            &self.graph,
            &self.regions,
            strategy,
            &failed,
            |p: PartitionId| !lost.contains(&self.graph.producer_of(p)),
        )
    }

    fn restart_names(
        &self,
        strategy: FailoverStrategy,
        failed: &[&str],
        lost: &[&str],
    ) -> Vec<String> {
        self.names(&self.restart(strategy, failed, lost).tasks)
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn two_cities(cross: Option<(&str, &str)>) -> JobSpec {
    let mut edges = vec![
        ("beijing-source", "beijing-orders", "pointwise", "pipelined"),
        (
            "shanghai-source",
            "shanghai-orders",
            "pointwise",
            "pipelined",
        ),
    ];
    if let Some((pattern, exchange)) = cross {
        edges.push(("beijing-source", "shanghai-orders", pattern, exchange));
    }
    job(
        &[
            ("beijing-source", 2),
            ("beijing-orders", 2),
            ("shanghai-source", 2),
            ("shanghai-orders", 2),
        ],
        &edges,
    )
}

#[test]
fn independent_cities_form_one_region_per_pipeline_and_restart_alone() {
    let p = Planned::new(&two_cities(None));
    assert_eq!(
        p.regions(),
        vec![
            names(&["beijing-source#0", "beijing-orders#0"]),
            names(&["beijing-source#1", "beijing-orders#1"]),
            names(&["shanghai-source#0", "shanghai-orders#0"]),
            names(&["shanghai-source#1", "shanghai-orders#1"]),
        ]
    );
    let rs = p.restart(FailoverStrategy::Region, &["beijing-orders#1"], &[]);
    assert_eq!(
        p.names(&rs.tasks),
        names(&["beijing-source#1", "beijing-orders#1"])
    );
    assert_eq!(rs.entries.len(), 1);
    assert_eq!(
        rs.entries[0].reason,
        RestartReason::Failed {
            task: p.task("beijing-orders#1")
        }
    );
}

#[test]
fn pipelined_cross_edge_joins_the_cities_into_one_region() {
    let p = Planned::new(&two_cities(Some(("all-to-all", "pipelined"))));
    assert_eq!(p.regions.len(), 1);
    assert_eq!(p.regions.tasks(p.regions.ids().next().unwrap()).len(), 8);
    assert_eq!(
        p.restart_names(FailoverStrategy::Region, &["shanghai-orders#0"], &[])
            .len(),
        8
    );
}

#[test]
fn blocking_cross_edge_keeps_regions_but_restarts_the_consuming_city() {
    let p = Planned::new(&two_cities(Some(("all-to-all", "blocking"))));
    assert_eq!(p.regions.len(), 4);

    // Beijing fails: its region, plus every Shanghai region that reads from it.
    let rs = p.restart(FailoverStrategy::Region, &["beijing-source#0"], &[]);
    assert_eq!(
        p.names(&rs.tasks),
        names(&[
            "beijing-source#0",
            "beijing-orders#0",
            "shanghai-source#0",
            "shanghai-source#1",
            "shanghai-orders#0",
            "shanghai-orders#1",
        ])
    );
    let failed_region = p.regions.region_of(p.task("beijing-source#0"));
    for entry in &rs.entries[1..] {
        assert_eq!(
            entry.reason,
            RestartReason::ConsumerOfRestartedRegion {
                producer: RestartScope::Region(failed_region)
            }
        );
    }

    // Shanghai fails: Beijing's output is still on disk, so Beijing is untouched.
    assert_eq!(
        p.restart_names(FailoverStrategy::Region, &["shanghai-orders#1"], &[]),
        names(&["shanghai-source#1", "shanghai-orders#1"])
    );
    // ... unless that output was lost with its executor: then its producers re-run too, and
    // so does everything that consumes their new output.
    let rs = p.restart(
        FailoverStrategy::Region,
        &["shanghai-orders#1"],
        &["beijing-source#1"],
    );
    assert_eq!(
        p.names(&rs.tasks),
        names(&[
            "beijing-source#1",
            "beijing-orders#1",
            "shanghai-source#0",
            "shanghai-source#1",
            "shanghai-orders#0",
            "shanghai-orders#1",
        ])
    );
    assert!(rs.entries.iter().any(|e| matches!(
        e.reason,
        RestartReason::ProducerOfLostInput { partition, .. }
            if p.graph.partition_name(partition) == "beijing-source#1->shanghai-orders"
    )));
}

#[test]
fn blocking_all_to_all_cycle_merges_the_regions_on_it() {
    // a -> b and a -> c pipelined pointwise make {a0,b0,c0} and {a1,b1,c1}; the blocking
    // all-to-all b -> c links b0 -> c1 and b1 -> c0, a cycle between them (FLINK-17330).
    let p = Planned::new(&job(
        &[("a", 2), ("b", 2), ("c", 2)],
        &[
            ("a", "b", "pointwise", "pipelined"),
            ("a", "c", "pointwise", "pipelined"),
            ("b", "c", "all-to-all", "blocking"),
        ],
    ));
    assert_eq!(
        p.regions(),
        vec![names(&["a#0", "a#1", "b#0", "b#1", "c#0", "c#1"])]
    );
}

#[test]
fn blocking_pointwise_without_cycle_keeps_regions_apart() {
    // Same shape, but b -> c pointwise: b0 -> c0 stays inside {a0,b0,c0}; no cycle.
    let p = Planned::new(&job(
        &[("a", 2), ("b", 2), ("c", 2)],
        &[
            ("a", "b", "pointwise", "pipelined"),
            ("a", "c", "pointwise", "pipelined"),
            ("b", "c", "pointwise", "blocking"),
        ],
    ));
    assert_eq!(
        p.regions(),
        vec![names(&["a#0", "b#0", "c#0"]), names(&["a#1", "b#1", "c#1"])]
    );
}

#[test]
fn cycle_across_pipelined_sets_merges_where_flink_does_not_look() {
    // x -> y pipelined; z -> w pipelined; x -> z and w -> y blocking. Region {x0,y0} feeds
    // {z0,w0}, which feeds {x0,y0} back: a cycle across two pipelined-connected vertex sets.
    let p = Planned::new(&job(
        &[("x", 2), ("y", 2), ("z", 2), ("w", 2)],
        &[
            ("x", "y", "pointwise", "pipelined"),
            ("z", "w", "pointwise", "pipelined"),
            ("x", "z", "pointwise", "blocking"),
            ("w", "y", "pointwise", "blocking"),
        ],
    ));
    assert_eq!(
        p.regions(),
        vec![
            names(&["x#0", "y#0", "z#0", "w#0"]),
            names(&["x#1", "y#1", "z#1", "w#1"])
        ]
    );
}

#[test]
fn streaming_all_to_all_is_one_region_and_any_failure_restarts_everything() {
    let p = Planned::new(&job(
        &[("source", 3), ("map", 3), ("sink", 2)],
        &[
            ("source", "map", "all-to-all", "pipelined"),
            ("map", "sink", "pointwise", "pipelined"),
        ],
    ));
    assert_eq!(p.regions.len(), 1);
    assert_eq!(
        p.restart_names(FailoverStrategy::Region, &["sink#1"], &[])
            .len(),
        8
    );
}

fn batch() -> JobSpec {
    job(
        &[("read", 4), ("count", 2), ("write", 1)],
        &[
            ("read", "count", "all-to-all", "blocking"),
            ("count", "write", "all-to-all", "persistent"),
        ],
    )
}

#[test]
fn batch_failure_restarts_the_failed_task_and_its_consumers_only() {
    let p = Planned::new(&batch());
    assert_eq!(p.regions.len(), 7);
    assert_eq!(
        p.restart_names(FailoverStrategy::Region, &["read#2"], &[]),
        names(&["read#2", "count#0", "count#1", "write#0"])
    );
    assert_eq!(
        p.restart_names(FailoverStrategy::Region, &["count#1"], &[]),
        names(&["count#1", "write#0"])
    );
    assert_eq!(
        p.restart_names(FailoverStrategy::Region, &["write#0"], &[]),
        names(&["write#0"])
    );
}

#[test]
fn lost_input_restarts_its_producer_and_the_producers_consumers() {
    let p = Planned::new(&batch());
    let rs = p.restart(
        FailoverStrategy::Region,
        &["count#0"],
        &["read#1", "read#3"],
    );
    assert_eq!(
        p.names(&rs.tasks),
        names(&["read#1", "read#3", "count#0", "count#1", "write#0"])
    );
    let count0 = RestartScope::Region(p.regions.region_of(p.task("count#0")));
    let producers: Vec<String> = rs
        .entries
        .iter()
        .filter_map(|e| match e.reason {
            RestartReason::ProducerOfLostInput {
                partition,
                consumer,
            } => {
                assert_eq!(consumer, count0);
                Some(p.graph.partition_name(partition))
            }
            _ => None,
        })
        .collect();
    assert_eq!(producers, names(&["read#1->count", "read#3->count"]));
}

#[test]
fn full_strategy_restarts_every_task_and_names_the_failed_region() {
    let p = Planned::new(&batch());
    let rs = p.restart(FailoverStrategy::Full, &["count#1"], &[]);
    assert_eq!(rs.tasks.len(), 7);
    assert_eq!(rs.entries.len(), 7);
    assert_eq!(
        rs.entries[0].reason,
        RestartReason::Failed {
            task: p.task("count#1")
        }
    );
    assert!(
        rs.entries[1..]
            .iter()
            .all(|e| e.reason == RestartReason::FullRestart)
    );
}

#[test]
fn individual_strategy_restarts_lost_producers_transitively_but_no_consumers() {
    let p = Planned::new(&job(
        &[("a", 1), ("b", 1), ("c", 1), ("d", 1)],
        &[
            ("a", "b", "pointwise", "blocking"),
            ("b", "c", "pointwise", "blocking"),
            ("c", "d", "pointwise", "pipelined"),
        ],
    ));
    // c fails; b's output is lost, and so is a's, which b needs to run again.
    assert_eq!(
        p.restart_names(FailoverStrategy::Individual, &["c#0"], &["a#0", "b#0"]),
        names(&["a#0", "b#0", "c#0"])
    );
    // Only b's output is lost: a's is still there.
    assert_eq!(
        p.restart_names(FailoverStrategy::Individual, &["c#0"], &["b#0"]),
        names(&["b#0", "c#0"])
    );
    // Nothing lost: the failed task alone, even though d consumes it through a pipeline.
    assert_eq!(
        p.restart_names(FailoverStrategy::Individual, &["c#0"], &[]),
        names(&["c#0"])
    );
}

#[test]
fn several_failures_in_one_region_make_one_entry() {
    let p = Planned::new(&two_cities(None));
    let rs = p.restart(
        FailoverStrategy::Region,
        &["beijing-source#0", "beijing-orders#0", "shanghai-orders#1"],
        &[],
    );
    assert_eq!(rs.entries.len(), 2);
    assert_eq!(
        p.names(&rs.tasks),
        names(&[
            "beijing-source#0",
            "beijing-orders#0",
            "shanghai-source#1",
            "shanghai-orders#1"
        ])
    );
}

#[test]
fn no_failure_restarts_nothing() {
    let p = Planned::new(&batch());
    for strategy in [
        FailoverStrategy::Full,
        FailoverStrategy::Region,
        FailoverStrategy::Individual,
    ] {
        let rs = p.restart(strategy, &[], &[]);
        assert!(rs.tasks.is_empty() && rs.entries.is_empty(), "{strategy}");
    }
}
