//! Restart sets: which tasks a failure restarts, and why (DESIGN §3).
//!
//! * `full` — every task.
//! * `region` — breadth-first from the failed tasks' regions; a region joins when it is
//!   (1) a failed task's region, (2) the producer region of an unavailable partition that a
//!   region in the set consumes, or (3) a consumer region of a partition produced by a region
//!   in the set, transitively. Each exchange group is inspected at most once as a consumed group
//!   and once as a consumer group, so one failure costs O(restarted tasks + groups they touch).
//! * `individual` — the failed tasks, plus (transitively) the producers of their unavailable
//!   inputs. Consumers are *not* restarted: this is approximate recovery, and records in flight
//!   through pipelined exchanges of a restarted task may be lost or repeated.
//!
//! Which partitions are available is the caller's knowledge (the live job, or `jmctl plan`'s
//! `--lost` flags), passed in as a predicate; this module only walks the graph.

use std::collections::{HashSet, VecDeque};

use super::graph::{ExecutionGraph, PartitionId, TaskId};
use super::region::{RegionId, Regions};
use super::spec::FailoverStrategy;

/// What one restart entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestartScope {
    /// A whole pipelined region (strategies `full` and `region`).
    Region(RegionId),
    /// A single task (strategy `individual`).
    Task(TaskId),
}

/// Why an entry is in the restart set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestartReason {
    /// It holds a failed task (the first failed task it holds).
    Failed { task: TaskId },
    /// It produces `partition`, which is unavailable and consumed by `consumer`, an entry
    /// already in the set.
    ProducerOfLostInput {
        partition: PartitionId,
        consumer: RestartScope,
    },
    /// It consumes a partition produced by `producer`, an entry already in the set, whose
    /// output will be produced again and may differ.
    ConsumerOfRestartedRegion { producer: RestartScope },
    /// It produced `partition`, which was lost (with its executor, or deleted) while
    /// unfinished consumers still need it.
    LostOutput { partition: PartitionId },
    /// Strategy `full` restarts every region.
    FullRestart,
}

impl RestartReason {
    /// A stable, machine-readable name.
    pub fn kind(&self) -> &'static str {
        match self {
            RestartReason::Failed { .. } => "failed",
            RestartReason::ProducerOfLostInput { .. } => "producer-of-lost-input",
            RestartReason::ConsumerOfRestartedRegion { .. } => "consumer-of-restarted-region",
            RestartReason::LostOutput { .. } => "lost-output",
            RestartReason::FullRestart => "full-restart",
        }
    }
}

/// One restarted region (or task) with the reason it restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartEntry {
    pub scope: RestartScope,
    pub reason: RestartReason,
}

/// The outcome of a failover decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartSet {
    pub strategy: FailoverStrategy,
    /// Entries in the order they joined the set: failed ones first.
    pub entries: Vec<RestartEntry>,
    /// Every task to restart, ascending, each once.
    pub tasks: Vec<TaskId>,
}

/// Computes the restart set for the failure of `failed` under `strategy`.
///
/// `available(p)` tells whether partition `p` can be read again by a restarted consumer: for
/// blocking and persistent partitions, whether the output exists and is still hosted; pipelined
/// partitions are never consulted by the `region` strategy (their producers share the consumer's
/// region), and under `individual` a pipelined input counts as available when the caller says
/// so (its producer keeps running; the consumer reconnects).
///
/// Failed tasks outside the graph are a caller bug and are ignored; an empty `failed` yields an
/// empty set.
pub fn compute_restart_set(
    graph: &ExecutionGraph,
    regions: &Regions,
    strategy: FailoverStrategy,
    failed: &[TaskId],
    available: impl Fn(PartitionId) -> bool,
) -> RestartSet {
    compute_restart_set_live(graph, regions, strategy, failed, &[], available, |_| true)
}

/// [`compute_restart_set`] for a live job, with two more inputs:
///
/// * `lost_outputs`: partitions lost while unfinished consumers still need them, so their
///   producers must run again although no task of theirs failed (one executor loss is one
///   failover over its tasks *and* its partitions). Their producers enter with reason
///   [`RestartReason::LostOutput`].
/// * `deployed(t)`: whether task `t` ever left CREATED in its current attempt. A region (or,
///   under `individual`, a task) none of whose tasks is deployed joins the set but does not
///   spread it: it has consumed nothing yet, so it needs no inputs re-produced, and it has
///   produced nothing, so no consumer depends on it. It will just be scheduled as usual.
pub fn compute_restart_set_live(
    graph: &ExecutionGraph,
    regions: &Regions,
    strategy: FailoverStrategy,
    failed: &[TaskId],
    lost_outputs: &[PartitionId],
    available: impl Fn(PartitionId) -> bool,
    deployed: impl Fn(TaskId) -> bool,
) -> RestartSet {
    let failed: Vec<TaskId> = failed
        .iter()
        .copied()
        .filter(|t| t.index() < graph.task_count())
        .collect();
    let lost: Vec<(TaskId, PartitionId)> = lost_outputs
        .iter()
        .filter(|p| (p.0 as usize) < graph.partition_count())
        .map(|&p| (graph.producer_of(p), p))
        .collect();
    match strategy {
        FailoverStrategy::Full => full(regions, &failed, &lost),
        FailoverStrategy::Region => region(graph, regions, &failed, &lost, available, deployed),
        FailoverStrategy::Individual => individual(graph, &failed, &lost, available, deployed),
    }
}

fn full(regions: &Regions, failed: &[TaskId], lost: &[(TaskId, PartitionId)]) -> RestartSet {
    if failed.is_empty() && lost.is_empty() {
        return RestartSet {
            strategy: FailoverStrategy::Full,
            entries: Vec::new(),
            tasks: Vec::new(),
        };
    }
    let mut first_reason: Vec<Option<RestartReason>> = vec![None; regions.len()];
    for &task in failed {
        first_reason[regions.region_of(task).index()].get_or_insert(RestartReason::Failed { task });
    }
    for &(producer, partition) in lost {
        first_reason[regions.region_of(producer).index()]
            .get_or_insert(RestartReason::LostOutput { partition });
    }
    let mut entries: Vec<RestartEntry> = Vec::with_capacity(regions.len());
    let mut rest = Vec::new();
    for r in regions.ids() {
        let scope = RestartScope::Region(r);
        match first_reason[r.index()] {
            Some(reason) => entries.push(RestartEntry { scope, reason }),
            None => rest.push(RestartEntry {
                scope,
                reason: RestartReason::FullRestart,
            }),
        }
    }
    entries.extend(rest);
    let mut tasks: Vec<TaskId> = regions
        .ids()
        .flat_map(|r| regions.tasks(r))
        .copied()
        .collect();
    tasks.sort_unstable();
    RestartSet {
        strategy: FailoverStrategy::Full,
        entries,
        tasks,
    }
}

fn region(
    graph: &ExecutionGraph,
    regions: &Regions,
    failed: &[TaskId],
    lost: &[(TaskId, PartitionId)],
    available: impl Fn(PartitionId) -> bool,
    deployed: impl Fn(TaskId) -> bool,
) -> RestartSet {
    let mut entries = Vec::new();
    let mut in_set: HashSet<RegionId> = HashSet::new();
    let mut queue: VecDeque<RegionId> = VecDeque::new();
    let seeds = seeds(failed, lost);
    for (task, reason) in seeds {
        let r = regions.region_of(task);
        if in_set.insert(r) {
            entries.push(RestartEntry {
                scope: RestartScope::Region(r),
                reason,
            });
            queue.push_back(r);
        }
    }
    let mut consumed_seen = HashSet::new();
    let mut produced_seen = HashSet::new();
    while let Some(r) = queue.pop_front() {
        let scope = RestartScope::Region(r);
        if !regions.tasks(r).iter().any(|&t| deployed(t)) {
            continue;
        }
        for &task in regions.tasks(r) {
            // Rule 2: producers of unavailable inputs.
            for g in graph.consumed_groups(task) {
                if !consumed_seen.insert(g) {
                    continue;
                }
                for (partition, producer) in graph.group(g).partitions_with_producers() {
                    let pr = regions.region_of(producer);
                    if !in_set.contains(&pr) && !available(partition) {
                        in_set.insert(pr);
                        entries.push(RestartEntry {
                            scope: RestartScope::Region(pr),
                            reason: RestartReason::ProducerOfLostInput {
                                partition,
                                consumer: scope,
                            },
                        });
                        queue.push_back(pr);
                    }
                }
            }
            // Rule 3: consumers of what this region will produce again.
            for g in graph.produced_groups(task) {
                if !produced_seen.insert(g) {
                    continue;
                }
                for consumer in graph.group(g).consumer_tasks() {
                    let cr = regions.region_of(consumer);
                    if in_set.insert(cr) {
                        entries.push(RestartEntry {
                            scope: RestartScope::Region(cr),
                            reason: RestartReason::ConsumerOfRestartedRegion { producer: scope },
                        });
                        queue.push_back(cr);
                    }
                }
            }
        }
    }
    let mut tasks: Vec<TaskId> = entries
        .iter()
        .flat_map(|e| match e.scope {
            RestartScope::Region(r) => regions.tasks(r),
            RestartScope::Task(_) => &[],
        })
        .copied()
        .collect();
    tasks.sort_unstable();
    RestartSet {
        strategy: FailoverStrategy::Region,
        entries,
        tasks,
    }
}

/// Where a restart set starts: the failed tasks, and the producers of lost outputs.
fn seeds<'a>(
    failed: &'a [TaskId],
    lost: &'a [(TaskId, PartitionId)],
) -> impl Iterator<Item = (TaskId, RestartReason)> + 'a {
    failed
        .iter()
        .map(|&task| (task, RestartReason::Failed { task }))
        .chain(
            lost.iter()
                .map(|&(producer, partition)| (producer, RestartReason::LostOutput { partition })),
        )
}

fn individual(
    graph: &ExecutionGraph,
    failed: &[TaskId],
    lost: &[(TaskId, PartitionId)],
    available: impl Fn(PartitionId) -> bool,
    deployed: impl Fn(TaskId) -> bool,
) -> RestartSet {
    let mut entries = Vec::new();
    let mut in_set: HashSet<TaskId> = HashSet::new();
    let mut queue: VecDeque<TaskId> = VecDeque::new();
    let seeds = seeds(failed, lost);
    for (task, reason) in seeds {
        if in_set.insert(task) {
            entries.push(RestartEntry {
                scope: RestartScope::Task(task),
                reason,
            });
            queue.push_back(task);
        }
    }
    let mut consumed_seen = HashSet::new();
    while let Some(task) = queue.pop_front() {
        if !deployed(task) {
            continue;
        }
        for g in graph.consumed_groups(task) {
            if !consumed_seen.insert(g) {
                continue;
            }
            for (partition, producer) in graph.group(g).partitions_with_producers() {
                if !in_set.contains(&producer) && !available(partition) {
                    in_set.insert(producer);
                    entries.push(RestartEntry {
                        scope: RestartScope::Task(producer),
                        reason: RestartReason::ProducerOfLostInput {
                            partition,
                            consumer: RestartScope::Task(task),
                        },
                    });
                    queue.push_back(producer);
                }
            }
        }
    }
    let mut tasks: Vec<TaskId> = in_set.into_iter().collect();
    tasks.sort_unstable();
    RestartSet {
        strategy: FailoverStrategy::Individual,
        entries,
        tasks,
    }
}
