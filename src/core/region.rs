//! Pipelined regions: the unit of restart (DESIGN §3).
//!
//! Regions are the finest partition of the tasks such that (a) both ends of every pipelined
//! link share a region and (b) the graph of regions linked by blocking/persistent links is
//! acyclic. We compute them in two steps:
//!
//! 1. union-find over pipelined exchange groups: every task of a group joins the group's first
//!    producer, so an all-to-all group merges in O(group), never O(producers × consumers);
//! 2. Tarjan's SCC over the "pre-regions" of step 1 and one extra node per blocking/persistent
//!    group (producer pre-regions → group node → consumer pre-regions), merging each component.
//!    Routing arcs through the group node keeps the arc count at O(group) and preserves
//!    reachability between pre-regions, so the components restricted to pre-regions are exactly
//!    those of the region graph.
//!
//! Regions are numbered in the order of their smallest task, so the numbering is deterministic.

use super::graph::{ExecutionGraph, TaskId};
use super::scc::{Csr, strongly_connected_components};

/// A pipelined region, by index.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct RegionId(pub u32);

impl RegionId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The regions of an execution graph.
#[derive(Debug, Clone)]
pub struct Regions {
    region_of: Vec<u32>,
    /// Tasks of region r: `tasks[offsets[r]..offsets[r + 1]]`, ascending.
    offsets: Vec<u32>,
    tasks: Vec<TaskId>,
}

impl Regions {
    /// Computes the regions of `graph`. Time O(tasks + edges · groups' sizes), i.e. linear in
    /// the size of the graph with exchange groups, never in the number of task pairs.
    pub fn compute(graph: &ExecutionGraph) -> Regions {
        let n = graph.task_count();
        let mut uf = UnionFind::new(n);
        let mut has_blocking = false;
        for edge in graph.edges() {
            if edge.exchange.is_reconsumable() {
                has_blocking = true;
                continue;
            }
            for g in edge.groups() {
                let group = graph.group(g);
                let first = group.producers.start;
                for t in group
                    .producers
                    .clone()
                    .skip(1)
                    .chain(group.consumers.clone())
                {
                    uf.union(first, t);
                }
            }
        }

        // Pre-region index of every task, dense in order of smallest task.
        let (pre_of_task, pre_count) = uf.dense_classes();

        let merged_of_pre: Vec<u32> = if has_blocking {
            merge_cycles(graph, &pre_of_task, pre_count)
        } else {
            (0..pre_count as u32).collect()
        };

        // Renumber by smallest task, then group tasks by region (counting sort keeps them
        // ascending within a region).
        // Component ids of `merge_cycles` range over its extra group nodes too.
        let id_bound = merged_of_pre.iter().max().map_or(0, |&m| m as usize + 1);
        let mut number = vec![u32::MAX; id_bound];
        let mut next = 0u32;
        let mut region_of = Vec::with_capacity(n);
        for &pre in &pre_of_task {
            let m = merged_of_pre[pre as usize] as usize;
            if number[m] == u32::MAX {
                number[m] = next;
                next += 1;
            }
            region_of.push(number[m]);
        }
        let region_count = next as usize;
        let mut offsets = vec![0u32; region_count + 1];
        for &r in &region_of {
            offsets[r as usize + 1] += 1;
        }
        for r in 0..region_count {
            offsets[r + 1] += offsets[r];
        }
        let mut fill = offsets.clone();
        let mut tasks = vec![TaskId(0); n];
        for (t, &r) in region_of.iter().enumerate() {
            tasks[fill[r as usize] as usize] = TaskId(t as u32);
            fill[r as usize] += 1;
        }
        Regions {
            region_of,
            offsets,
            tasks,
        }
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The region holding a task.
    pub fn region_of(&self, task: TaskId) -> RegionId {
        RegionId(self.region_of[task.index()])
    }

    /// The tasks of a region, ascending.
    pub fn tasks(&self, region: RegionId) -> &[TaskId] {
        &self.tasks
            [self.offsets[region.index()] as usize..self.offsets[region.index() + 1] as usize]
    }

    /// All regions, in order.
    pub fn ids(&self) -> impl ExactSizeIterator<Item = RegionId> + use<> {
        (0..self.len() as u32).map(RegionId)
    }

    /// Size of the largest region.
    pub fn largest(&self) -> usize {
        self.offsets
            .windows(2)
            .map(|w| (w[1] - w[0]) as usize)
            .max()
            .unwrap_or(0)
    }
}

/// Merges pre-regions that lie on a cycle of blocking/persistent links; returns, for each
/// pre-region, a representative shared by all pre-regions of its component.
fn merge_cycles(graph: &ExecutionGraph, pre_of_task: &[u32], pre_count: usize) -> Vec<u32> {
    let mut arcs: Vec<(u32, u32)> = Vec::new();
    let mut node = pre_count as u32;
    for edge in graph.edges() {
        if !edge.exchange.is_reconsumable() {
            continue;
        }
        for g in edge.groups() {
            let group = graph.group(g);
            // Consecutive tasks usually share a pre-region; skip repeated arcs cheaply.
            let mut last = u32::MAX;
            for t in group.producers.clone() {
                let pre = pre_of_task[t as usize];
                if pre != last {
                    arcs.push((pre, node));
                    last = pre;
                }
            }
            last = u32::MAX;
            for t in group.consumers.clone() {
                let pre = pre_of_task[t as usize];
                if pre != last {
                    arcs.push((node, pre));
                    last = pre;
                }
            }
            node += 1;
        }
    }
    let mut components = strongly_connected_components(&Csr::from_arcs(node as usize, &arcs));
    components.truncate(pre_count);
    components
}

/// Union-find with path halving and union by size.
struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    fn new(n: usize) -> UnionFind {
        UnionFind {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
        }
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grandparent = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grandparent;
            x = grandparent;
        }
        x
    }

    fn union(&mut self, a: u32, b: u32) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.size[a as usize] < self.size[b as usize] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b as usize] = a;
        self.size[a as usize] += self.size[b as usize];
    }

    /// Class of every element, numbered densely in order of each class's smallest element.
    fn dense_classes(&mut self) -> (Vec<u32>, usize) {
        let n = self.parent.len();
        let mut number = vec![u32::MAX; n];
        let mut next = 0u32;
        let mut class = Vec::with_capacity(n);
        for x in 0..n as u32 {
            let root = self.find(x) as usize;
            if number[root] == u32::MAX {
                number[root] = next;
                next += 1;
            }
            class.push(number[root]);
        }
        (class, next as usize)
    }
}
