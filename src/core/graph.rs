//! The execution graph: a job spec expanded into tasks, result partitions and exchange groups.
//!
//! Tasks are numbered densely, vertex by vertex in spec order, subtask by subtask, so the
//! tasks of one vertex form a contiguous id range. A result partition is the output of one task
//! on one edge; the partitions of an edge are numbered contiguously too.
//!
//! Edges are never expanded into task pairs. Every edge splits into disjoint **exchange groups**:
//! a group is a range of producer subtasks and a range of consumer subtasks such that every
//! consumer of the group reads every producer's partition of the group. The producers' partitions
//! are the *consumed partition group* of each consumer, and the consumers are the *consumer
//! group* of each of those partitions (DESIGN §2). An all-to-all edge is one group; a pointwise
//! edge has `min(p_up, p_down)` groups. Memory and time are therefore O(tasks + edges) whatever
//! the wiring: a 10,000 × 10,000 all-to-all edge costs one group, not 10⁸ links.

use std::fmt;
use std::ops::Range;

use super::spec::{Exchange, JobSpec, Pattern};

/// A task (an `ExecutionVertex`): one parallel instance of a vertex.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TaskId(pub u32);

/// A vertex of the job, by its position in the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VertexIdx(pub u32);

/// An edge of the job, by its position in the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeIdx(pub u32);

/// A result partition: the output of one task on one edge.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct PartitionId(pub u32);

/// An exchange group, numbered across all edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u32);

impl TaskId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A vertex of the graph with the id range of its tasks.
#[derive(Debug, Clone)]
pub struct GraphVertex {
    pub id: String,
    pub parallelism: u32,
    first_task: u32,
    inputs: Vec<EdgeIdx>,
    outputs: Vec<EdgeIdx>,
}

impl GraphVertex {
    /// The tasks of this vertex, subtask 0 first.
    pub fn tasks(&self) -> impl ExactSizeIterator<Item = TaskId> + use<> {
        (self.first_task..self.first_task + self.parallelism).map(TaskId)
    }

    /// The task of the given subtask.
    pub fn task(&self, subtask: u32) -> Option<TaskId> {
        (subtask < self.parallelism).then(|| TaskId(self.first_task + subtask))
    }

    /// Edges this vertex consumes.
    pub fn inputs(&self) -> &[EdgeIdx] {
        &self.inputs
    }

    /// Edges this vertex produces.
    pub fn outputs(&self) -> &[EdgeIdx] {
        &self.outputs
    }
}

/// An edge of the graph and how it is wired.
#[derive(Debug, Clone)]
pub struct GraphEdge {
    pub from: VertexIdx,
    pub to: VertexIdx,
    pub pattern: Pattern,
    pub exchange: Exchange,
    p_up: u32,
    p_down: u32,
    first_partition: u32,
    first_group: u32,
}

impl GraphEdge {
    /// How many exchange groups this edge splits into.
    pub fn group_count(&self) -> u32 {
        match self.pattern {
            Pattern::AllToAll => 1,
            Pattern::Pointwise => self.p_up.min(self.p_down),
        }
    }

    /// The local group (0-based on this edge) that producer subtask `i` belongs to.
    fn group_of_producer(&self, i: u32) -> u32 {
        let (up, down) = (u64::from(self.p_up), u64::from(self.p_down));
        match self.pattern {
            Pattern::AllToAll => 0,
            // Downstream j reads [⌊j·up/down⌋, ⌊(j+1)·up/down⌋); the j holding i is
            // the largest with j·up < (i+1)·down.
            Pattern::Pointwise if up >= down => (((u64::from(i) + 1) * down - 1) / up) as u32,
            Pattern::Pointwise => i,
        }
    }

    /// The local group that consumer subtask `j` belongs to.
    fn group_of_consumer(&self, j: u32) -> u32 {
        let (up, down) = (u64::from(self.p_up), u64::from(self.p_down));
        match self.pattern {
            Pattern::AllToAll => 0,
            Pattern::Pointwise if up >= down => j,
            // Upstream i feeds [⌈i·down/up⌉, ⌈(i+1)·down/up⌉); the i feeding j is ⌊j·up/down⌋.
            Pattern::Pointwise => ((u64::from(j) * up) / down) as u32,
        }
    }

    /// Producer subtasks of local group `g`.
    fn producers(&self, g: u32) -> Range<u32> {
        let (up, down, g) = (u64::from(self.p_up), u64::from(self.p_down), u64::from(g));
        match self.pattern {
            Pattern::AllToAll => 0..self.p_up,
            Pattern::Pointwise if up >= down => {
                (g * up / down) as u32..((g + 1) * up / down) as u32
            }
            Pattern::Pointwise => g as u32..g as u32 + 1,
        }
    }

    /// Consumer subtasks of local group `g`.
    fn consumers(&self, g: u32) -> Range<u32> {
        let (up, down, g) = (u64::from(self.p_up), u64::from(self.p_down), u64::from(g));
        match self.pattern {
            Pattern::AllToAll => 0..self.p_down,
            Pattern::Pointwise if up >= down => g as u32..g as u32 + 1,
            Pattern::Pointwise => {
                (g * down).div_ceil(up) as u32..((g + 1) * down).div_ceil(up) as u32
            }
        }
    }

    /// Partitions of this edge: one per producer subtask.
    pub fn partitions(&self) -> Range<u32> {
        self.first_partition..self.first_partition + self.p_up
    }

    /// The groups of this edge, numbered across all edges.
    pub fn groups(&self) -> impl ExactSizeIterator<Item = GroupId> + use<> {
        (self.first_group..self.first_group + self.group_count()).map(GroupId)
    }
}

/// One exchange group: every consumer task reads the partition of every producer task on `edge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeGroup {
    pub edge: EdgeIdx,
    pub exchange: Exchange,
    /// Producer tasks (contiguous ids of the producing vertex).
    pub producers: Range<u32>,
    /// Their partitions on `edge`, in the same order as `producers`.
    pub partitions: Range<u32>,
    /// Consumer tasks (contiguous ids of the consuming vertex).
    pub consumers: Range<u32>,
}

impl ExchangeGroup {
    pub fn producer_tasks(&self) -> impl ExactSizeIterator<Item = TaskId> + use<> {
        self.producers.clone().map(TaskId)
    }

    pub fn consumer_tasks(&self) -> impl ExactSizeIterator<Item = TaskId> + use<> {
        self.consumers.clone().map(TaskId)
    }

    /// `(partition, its producer task)` pairs of the group.
    pub fn partitions_with_producers(
        &self,
    ) -> impl ExactSizeIterator<Item = (PartitionId, TaskId)> + use<> {
        self.partitions
            .clone()
            .zip(self.producers.clone())
            .map(|(p, t)| (PartitionId(p), TaskId(t)))
    }
}

/// The expanded job. Built from a validated [`JobSpec`]; construction cannot fail.
#[derive(Debug, Clone)]
pub struct ExecutionGraph {
    name: String,
    vertices: Vec<GraphVertex>,
    edges: Vec<GraphEdge>,
    /// Vertex of every task: 4 bytes a task buys O(1) lookups on every hot path.
    task_vertex: Vec<u32>,
    /// Edge of every partition's first id, for partition → edge lookups by binary search.
    partition_count: u32,
    group_count: u32,
}

impl ExecutionGraph {
    /// Expands a validated spec. Time and memory O(vertices + edges + tasks).
    pub fn build(spec: &JobSpec) -> ExecutionGraph {
        let index: std::collections::HashMap<&str, u32> = spec
            .vertices
            .iter()
            .enumerate()
            .map(|(i, v)| (v.id.as_str(), i as u32))
            .collect();
        let mut vertices: Vec<GraphVertex> = Vec::with_capacity(spec.vertices.len());
        let mut next_task = 0u32;
        for v in &spec.vertices {
            vertices.push(GraphVertex {
                id: v.id.clone(),
                parallelism: v.parallelism,
                first_task: next_task,
                inputs: Vec::new(),
                outputs: Vec::new(),
            });
            next_task += v.parallelism;
        }
        let mut task_vertex = Vec::with_capacity(next_task as usize);
        for (i, v) in vertices.iter().enumerate() {
            task_vertex.extend(std::iter::repeat_n(i as u32, v.parallelism as usize));
        }

        let mut edges = Vec::with_capacity(spec.edges.len());
        let (mut next_partition, mut next_group) = (0u32, 0u32);
        for (e, spec_edge) in spec.edges.iter().enumerate() {
            // A validated spec names only declared vertices.
            let from = index[spec_edge.from.as_str()];
            let to = index[spec_edge.to.as_str()];
            let edge = GraphEdge {
                from: VertexIdx(from),
                to: VertexIdx(to),
                pattern: spec_edge.pattern,
                exchange: spec_edge.exchange,
                p_up: vertices[from as usize].parallelism,
                p_down: vertices[to as usize].parallelism,
                first_partition: next_partition,
                first_group: next_group,
            };
            next_partition += edge.p_up;
            next_group += edge.group_count();
            vertices[from as usize].outputs.push(EdgeIdx(e as u32));
            vertices[to as usize].inputs.push(EdgeIdx(e as u32));
            edges.push(edge);
        }
        ExecutionGraph {
            name: spec.name.clone(),
            vertices,
            edges,
            task_vertex,
            partition_count: next_partition,
            group_count: next_group,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn task_count(&self) -> usize {
        self.task_vertex.len()
    }

    pub fn partition_count(&self) -> usize {
        self.partition_count as usize
    }

    pub fn group_count(&self) -> usize {
        self.group_count as usize
    }

    pub fn tasks(&self) -> impl ExactSizeIterator<Item = TaskId> + use<> {
        (0..self.task_vertex.len() as u32).map(TaskId)
    }

    pub fn vertices(&self) -> &[GraphVertex] {
        &self.vertices
    }

    pub fn edges(&self) -> &[GraphEdge] {
        &self.edges
    }

    pub fn vertex(&self, v: VertexIdx) -> &GraphVertex {
        &self.vertices[v.0 as usize]
    }

    pub fn edge(&self, e: EdgeIdx) -> &GraphEdge {
        &self.edges[e.0 as usize]
    }

    /// The vertex a task belongs to.
    pub fn vertex_of(&self, task: TaskId) -> VertexIdx {
        VertexIdx(self.task_vertex[task.index()])
    }

    /// The subtask index of a task within its vertex.
    pub fn subtask_of(&self, task: TaskId) -> u32 {
        task.0 - self.vertex(self.vertex_of(task)).first_task
    }

    /// The task's name, `vertex#subtask`.
    pub fn task_name(&self, task: TaskId) -> TaskName<'_> {
        TaskName {
            vertex: &self.vertex(self.vertex_of(task)).id,
            subtask: self.subtask_of(task),
        }
    }

    /// Looks a task up by its name `vertex#subtask`.
    pub fn find_task(&self, name: &str) -> Option<TaskId> {
        let (vertex, subtask) = name.rsplit_once('#')?;
        // Reject "+3", " 3" and "03"-style spellings: a name has one canonical form.
        if subtask.is_empty() || !subtask.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if subtask.len() > 1 && subtask.starts_with('0') {
            return None;
        }
        let subtask: u32 = subtask.parse().ok()?;
        self.find_vertex(vertex)
            .and_then(|v| self.vertex(v).task(subtask))
    }

    /// Looks a vertex up by its id.
    pub fn find_vertex(&self, id: &str) -> Option<VertexIdx> {
        self.vertices
            .iter()
            .position(|v| v.id == id)
            .map(|i| VertexIdx(i as u32))
    }

    /// The exchange group with the given id.
    pub fn group(&self, g: GroupId) -> ExchangeGroup {
        let e = self.edge_of_group(g);
        let edge = &self.edges[e.0 as usize];
        let local = g.0 - edge.first_group;
        let producers = edge.producers(local);
        let (up_first, down_first) = (
            self.vertices[edge.from.0 as usize].first_task,
            self.vertices[edge.to.0 as usize].first_task,
        );
        let consumers = edge.consumers(local);
        ExchangeGroup {
            edge: e,
            exchange: edge.exchange,
            partitions: edge.first_partition + producers.start
                ..edge.first_partition + producers.end,
            producers: up_first + producers.start..up_first + producers.end,
            consumers: down_first + consumers.start..down_first + consumers.end,
        }
    }

    fn edge_of_group(&self, g: GroupId) -> EdgeIdx {
        // Edges are in group order; the last edge whose first group is ≤ g holds it.
        let i = self.edges.partition_point(|e| e.first_group <= g.0) - 1;
        EdgeIdx(i as u32)
    }

    /// The groups a task consumes from: one per input edge.
    pub fn consumed_groups(&self, task: TaskId) -> impl Iterator<Item = GroupId> + '_ {
        let vertex = self.vertex(self.vertex_of(task));
        let j = task.0 - vertex.first_task;
        vertex.inputs.iter().map(move |e| {
            let edge = &self.edges[e.0 as usize];
            GroupId(edge.first_group + edge.group_of_consumer(j))
        })
    }

    /// The groups a task produces into: one per output edge (the consumer groups of its
    /// partitions).
    pub fn produced_groups(&self, task: TaskId) -> impl Iterator<Item = GroupId> + '_ {
        let vertex = self.vertex(self.vertex_of(task));
        let i = task.0 - vertex.first_task;
        vertex.outputs.iter().map(move |e| {
            let edge = &self.edges[e.0 as usize];
            GroupId(edge.first_group + edge.group_of_producer(i))
        })
    }

    /// The partitions a task produces: one per output edge.
    pub fn produced_partitions(&self, task: TaskId) -> impl Iterator<Item = PartitionId> + '_ {
        let vertex = self.vertex(self.vertex_of(task));
        let i = task.0 - vertex.first_task;
        vertex
            .outputs
            .iter()
            .map(move |e| PartitionId(self.edges[e.0 as usize].first_partition + i))
    }

    /// The partition `producer` writes for vertex `consumer`, if an edge joins their vertices.
    pub fn partition_to(&self, producer: TaskId, consumer: VertexIdx) -> Option<PartitionId> {
        self.vertex(self.vertex_of(producer))
            .outputs()
            .iter()
            .zip(self.produced_partitions(producer))
            .find(|(e, _)| self.edge(**e).to == consumer)
            .map(|(_, p)| p)
    }

    /// The edge a partition belongs to.
    pub fn edge_of_partition(&self, p: PartitionId) -> EdgeIdx {
        let i = self.edges.partition_point(|e| e.first_partition <= p.0) - 1;
        EdgeIdx(i as u32)
    }

    /// The task that produces a partition.
    pub fn producer_of(&self, p: PartitionId) -> TaskId {
        let edge = &self.edges[self.edge_of_partition(p).0 as usize];
        TaskId(self.vertices[edge.from.0 as usize].first_task + (p.0 - edge.first_partition))
    }

    /// How data crosses the edge of a partition.
    pub fn exchange_of(&self, p: PartitionId) -> Exchange {
        self.edges[self.edge_of_partition(p).0 as usize].exchange
    }

    /// A partition's name, `producer#subtask->consumer-vertex`.
    pub fn partition_name(&self, p: PartitionId) -> String {
        let edge = &self.edges[self.edge_of_partition(p).0 as usize];
        format!(
            "{}->{}",
            self.task_name(self.producer_of(p)),
            self.vertices[edge.to.0 as usize].id
        )
    }
}

/// A task's display name without allocating: `vertex#subtask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskName<'a> {
    pub vertex: &'a str,
    pub subtask: u32,
}

impl fmt::Display for TaskName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.vertex, self.subtask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::spec::JobSpec;

    fn two_vertex(p_up: u32, p_down: u32, pattern: &str) -> ExecutionGraph {
        let spec = JobSpec::from_toml(&format!(
            r#"
name = "w"
[[vertices]]
id = "up"
parallelism = {p_up}
command = ["true"]
[[vertices]]
id = "down"
parallelism = {p_down}
command = ["true"]
[[edges]]
from = "up"
to = "down"
pattern = "{pattern}"
exchange = "blocking"
"#
        ))
        .unwrap();
        ExecutionGraph::build(&spec)
    }

    /// The DESIGN §2 formulas, applied literally, as the set of (upstream, downstream) links.
    fn pointwise_links(p_u: u64, p_d: u64) -> Vec<(u64, u64)> {
        let mut links = Vec::new();
        if p_u >= p_d {
            for j in 0..p_d {
                for i in (j * p_u / p_d)..((j + 1) * p_u / p_d) {
                    links.push((i, j));
                }
            }
        } else {
            for i in 0..p_u {
                for j in (i * p_d).div_ceil(p_u)..((i + 1) * p_d).div_ceil(p_u) {
                    links.push((i, j));
                }
            }
        }
        links.sort();
        links
    }

    fn links_from_groups(g: &ExecutionGraph) -> Vec<(u64, u64)> {
        let p_u = g.vertices()[0].parallelism;
        let mut links = Vec::new();
        for gid in g.edges()[0].groups() {
            let group = g.group(gid);
            for p in group.producers.clone() {
                for c in group.consumers.clone() {
                    links.push((u64::from(p), u64::from(c - p_u)));
                }
            }
        }
        links.sort();
        links
    }

    #[test]
    fn pointwise_groups_match_the_design_formulas() {
        for p_u in 1..=9 {
            for p_d in 1..=9 {
                let g = two_vertex(p_u, p_d, "pointwise");
                assert_eq!(
                    links_from_groups(&g),
                    pointwise_links(u64::from(p_u), u64::from(p_d)),
                    "p_u={p_u} p_d={p_d}"
                );
                // The per-task lookups agree with the groups.
                for gid in g.edges()[0].groups() {
                    let group = g.group(gid);
                    for t in group.producer_tasks() {
                        assert_eq!(g.produced_groups(t).collect::<Vec<_>>(), vec![gid]);
                    }
                    for t in group.consumer_tasks() {
                        assert_eq!(g.consumed_groups(t).collect::<Vec<_>>(), vec![gid]);
                    }
                }
            }
        }
    }

    #[test]
    fn all_to_all_edge_is_one_group_whatever_the_parallelism() {
        let g = two_vertex(10_000, 10_000, "all-to-all");
        assert_eq!(g.group_count(), 1);
        let group = g.group(GroupId(0));
        assert_eq!(group.producers, 0..10_000);
        assert_eq!(group.consumers, 10_000..20_000);
        assert_eq!(g.partition_count(), 10_000);
    }

    #[test]
    fn task_names_round_trip_and_reject_non_canonical_spellings() {
        let g = two_vertex(3, 2, "pointwise");
        for t in g.tasks() {
            assert_eq!(g.find_task(&g.task_name(t).to_string()), Some(t));
        }
        for bad in [
            "up#3", "up#", "up#01", "up#+1", "nope#0", "up", "#0", "up# 1",
        ] {
            assert_eq!(g.find_task(bad), None, "{bad}");
        }
    }

    #[test]
    fn partition_to_finds_the_partition_a_task_writes_for_a_consumer_vertex() {
        let spec = JobSpec::from_toml(
            r#"
name = "fan-out"
[[vertices]]
id = "up"
parallelism = 2
command = ["true"]
[[vertices]]
id = "left"
parallelism = 1
command = ["true"]
[[vertices]]
id = "right"
parallelism = 1
command = ["true"]
[[edges]]
from = "up"
to = "left"
pattern = "all-to-all"
exchange = "blocking"
[[edges]]
from = "up"
to = "right"
pattern = "all-to-all"
exchange = "blocking"
"#,
        )
        .unwrap();
        let g = ExecutionGraph::build(&spec);
        let up1 = g.find_task("up#1").unwrap();
        let (left, right) = (
            g.find_vertex("left").unwrap(),
            g.find_vertex("right").unwrap(),
        );
        for (consumer, name) in [(left, "up#1->left"), (right, "up#1->right")] {
            let p = g.partition_to(up1, consumer).unwrap();
            assert_eq!(g.partition_name(p), name);
            assert_eq!(g.producer_of(p), up1);
        }
        // No edge from a vertex to itself, nor backwards.
        assert_eq!(g.partition_to(up1, g.find_vertex("up").unwrap()), None);
        assert_eq!(g.partition_to(g.find_task("left#0").unwrap(), right), None);
    }

    #[test]
    fn partitions_know_their_producer() {
        let g = two_vertex(3, 2, "all-to-all");
        let producers: Vec<_> = (0..3).map(|p| g.producer_of(PartitionId(p))).collect();
        assert_eq!(producers, vec![TaskId(0), TaskId(1), TaskId(2)]);
        assert_eq!(g.partition_name(PartitionId(2)), "up#2->down");
    }
}
