//! A deliberately naive reference implementation of DESIGN §2–§3, for property tests.
//!
//! It shares nothing with the crate's algorithms: it reads only the [`JobSpec`], numbers tasks
//! itself (vertex by vertex in spec order, subtask by subtask — the numbering DESIGN §2 implies
//! and the crate documents), expands every edge into explicit task-to-task links with the
//! pointwise formulas written out literally, and computes regions and restart sets by brute
//! force: flood fill, reachability by repeated breadth-first search, and fixpoint iteration.
//! Quadratic or worse everywhere; fine for graphs of a few hundred tasks.
//!
//! A result partition is identified as `(producer task, edge index)`.

#![allow(dead_code)] // each test binary uses a different part of the reference

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use jobmaster::core::{Exchange, FailoverStrategy, JobSpec, Pattern};

/// One producer-task → consumer-task link of one edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Link {
    pub producer: usize,
    pub consumer: usize,
    pub edge: usize,
}

/// A job expanded into tasks and explicit links.
#[derive(Debug, Clone)]
pub struct NaiveJob {
    /// `vertex#subtask` of every task, indexed by task number.
    pub task_names: Vec<String>,
    /// Exchange of every edge, in spec order.
    pub exchanges: Vec<Exchange>,
    /// Every link of every edge.
    pub links: Vec<Link>,
}

/// The (upstream subtask, downstream subtask) pairs of a pointwise edge, straight from the
/// DESIGN §2 formulas: if p_u ≥ p_d, downstream j reads upstream [⌊j·p_u/p_d⌋, ⌊(j+1)·p_u/p_d⌋);
/// else upstream i feeds downstream [⌈i·p_d/p_u⌉, ⌈(i+1)·p_d/p_u⌉).
pub fn pointwise_pairs(p_u: usize, p_d: usize) -> Vec<(usize, usize)> {
    let floor_div = |a: usize, b: usize| a / b;
    let ceil_div = usize::div_ceil;
    let mut pairs = Vec::new();
    if p_u >= p_d {
        for j in 0..p_d {
            for i in floor_div(j * p_u, p_d)..floor_div((j + 1) * p_u, p_d) {
                pairs.push((i, j));
            }
        }
    } else {
        for i in 0..p_u {
            for j in ceil_div(i * p_d, p_u)..ceil_div((i + 1) * p_d, p_u) {
                pairs.push((i, j));
            }
        }
    }
    pairs
}

impl NaiveJob {
    pub fn new(spec: &JobSpec) -> NaiveJob {
        let mut first_task: HashMap<&str, usize> = HashMap::new();
        let mut parallelism: HashMap<&str, usize> = HashMap::new();
        let mut task_names = Vec::new();
        for v in &spec.vertices {
            first_task.insert(&v.id, task_names.len());
            parallelism.insert(&v.id, v.parallelism as usize);
            for s in 0..v.parallelism {
                task_names.push(format!("{}#{}", v.id, s));
            }
        }
        let mut links = Vec::new();
        for (e, edge) in spec.edges.iter().enumerate() {
            let (up0, p_u) = (
                first_task[edge.from.as_str()],
                parallelism[edge.from.as_str()],
            );
            let (down0, p_d) = (first_task[edge.to.as_str()], parallelism[edge.to.as_str()]);
            let pairs = match edge.pattern {
                Pattern::AllToAll => (0..p_u)
                    .flat_map(|i| (0..p_d).map(move |j| (i, j)))
                    .collect(),
                Pattern::Pointwise => pointwise_pairs(p_u, p_d),
            };
            for (i, j) in pairs {
                links.push(Link {
                    producer: up0 + i,
                    consumer: down0 + j,
                    edge: e,
                });
            }
        }
        NaiveJob {
            task_names,
            exchanges: spec.edges.iter().map(|e| e.exchange).collect(),
            links,
        }
    }

    pub fn task_count(&self) -> usize {
        self.task_names.len()
    }

    pub fn is_pipelined(&self, link: &Link) -> bool {
        self.exchanges[link.edge] == Exchange::Pipelined
    }

    /// Consumers of the partition `(producer, edge)`.
    pub fn consumers_of(&self, producer: usize, edge: usize) -> Vec<usize> {
        self.links
            .iter()
            .filter(|l| l.producer == producer && l.edge == edge)
            .map(|l| l.consumer)
            .collect()
    }

    /// The region label of every task, by the DESIGN §3 definition: connected components over
    /// pipelined links, then merge regions that lie on a cycle of blocking/persistent links
    /// until the region graph is acyclic. Labels are arbitrary; compare with [`Self::region_sets`].
    pub fn region_labels(&self) -> Vec<usize> {
        let n = self.task_count();
        // Undirected adjacency over pipelined links.
        let mut adjacent: Vec<Vec<usize>> = vec![Vec::new(); n];
        for l in self.links.iter().filter(|l| self.is_pipelined(l)) {
            adjacent[l.producer].push(l.consumer);
            adjacent[l.consumer].push(l.producer);
        }
        // Flood fill.
        let mut label = vec![usize::MAX; n];
        let mut next = 0;
        for start in 0..n {
            if label[start] != usize::MAX {
                continue;
            }
            label[start] = next;
            let mut queue = VecDeque::from([start]);
            while let Some(t) = queue.pop_front() {
                for &u in &adjacent[t] {
                    if label[u] == usize::MAX {
                        label[u] = next;
                        queue.push_back(u);
                    }
                }
            }
            next += 1;
        }
        // Merge cycles of the region graph until there are none.
        loop {
            let count = next;
            let reach = self.region_reachability(&label, count);
            // Each region joins the smallest region it is mutually reachable with.
            let merged_into: Vec<usize> = (0..count)
                .map(|r| {
                    (0..count)
                        .find(|&s| s == r || (reach[r][s] && reach[s][r]))
                        .unwrap()
                })
                .collect();
            if merged_into.iter().enumerate().all(|(r, &m)| r == m) {
                return label;
            }
            // Relabel densely.
            let mut dense = HashMap::new();
            for l in label.iter_mut() {
                let m = merged_into[*l];
                let size = dense.len();
                *l = *dense.entry(m).or_insert(size);
            }
            next = dense.len();
        }
    }

    /// `reach[r][s]`: region s is reachable from region r by one or more blocking/persistent
    /// links between different regions.
    fn region_reachability(&self, label: &[usize], count: usize) -> Vec<Vec<bool>> {
        let mut arcs: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); count];
        for l in self.links.iter().filter(|l| !self.is_pipelined(l)) {
            let (a, b) = (label[l.producer], label[l.consumer]);
            if a != b {
                arcs[a].insert(b);
            }
        }
        (0..count)
            .map(|r| {
                let mut seen = vec![false; count];
                let mut queue: VecDeque<usize> = arcs[r].iter().copied().collect();
                while let Some(s) = queue.pop_front() {
                    if !seen[s] {
                        seen[s] = true;
                        queue.extend(arcs[s].iter().copied());
                    }
                }
                seen
            })
            .collect()
    }

    /// The regions as a set of task sets.
    pub fn region_sets(&self) -> BTreeSet<BTreeSet<usize>> {
        label_sets(&self.region_labels())
    }

    /// True when the region graph given by `label` (arcs: blocking/persistent links between
    /// different regions) has no cycle.
    pub fn region_graph_is_acyclic(&self, label: &[usize]) -> bool {
        let mut dense = HashMap::new();
        let label: Vec<usize> = label
            .iter()
            .map(|l| {
                let size = dense.len();
                *dense.entry(*l).or_insert(size)
            })
            .collect();
        let reach = self.region_reachability(&label, dense.len());
        (0..dense.len()).all(|r| !reach[r][r])
    }

    /// The tasks restarted when `failed` fail under `strategy`, by fixpoint iteration of the
    /// DESIGN §3 rules. `available(producer, edge)` tells whether that partition can be read.
    pub fn restart_tasks(
        &self,
        strategy: FailoverStrategy,
        failed: &[usize],
        available: &dyn Fn(usize, usize) -> bool,
    ) -> BTreeSet<usize> {
        if failed.is_empty() {
            return BTreeSet::new();
        }
        match strategy {
            FailoverStrategy::Full => (0..self.task_count()).collect(),
            FailoverStrategy::Region => {
                let label = self.region_labels();
                let mut set: HashSet<usize> = failed.iter().map(|&t| label[t]).collect();
                loop {
                    let before = set.len();
                    for l in &self.links {
                        let (producer, consumer) = (label[l.producer], label[l.consumer]);
                        // Rule 2: producer region of an unavailable partition the set consumes.
                        if set.contains(&consumer) && !available(l.producer, l.edge) {
                            set.insert(producer);
                        }
                        // Rule 3: every consumer region of a partition the set produces.
                        if set.contains(&producer) {
                            set.insert(consumer);
                        }
                    }
                    if set.len() == before {
                        break;
                    }
                }
                (0..self.task_count())
                    .filter(|&t| set.contains(&label[t]))
                    .collect()
            }
            FailoverStrategy::Individual => {
                let mut set: BTreeSet<usize> = failed.iter().copied().collect();
                loop {
                    let before = set.len();
                    for l in &self.links {
                        if set.contains(&l.consumer) && !available(l.producer, l.edge) {
                            set.insert(l.producer);
                        }
                    }
                    if set.len() == before {
                        break;
                    }
                }
                set
            }
        }
    }
}

/// Groups tasks by label into a set of task sets.
pub fn label_sets(label: &[usize]) -> BTreeSet<BTreeSet<usize>> {
    let mut by_label: HashMap<usize, BTreeSet<usize>> = HashMap::new();
    for (t, &l) in label.iter().enumerate() {
        by_label.entry(l).or_default().insert(t);
    }
    by_label.into_values().collect()
}
