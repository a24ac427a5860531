//! Strongly connected components of a directed graph in CSR form (Tarjan, iterative).
//!
//! Recursion would overflow the stack on long chains (a 100,000-task pointwise pipeline is a
//! path of 100,000 nodes), so the depth-first search keeps its own stack of
//! `(node, next arc)` frames.

/// A directed graph as compressed adjacency lists: the successors of node `v` are
/// `targets[offsets[v]..offsets[v + 1]]`.
pub(crate) struct Csr {
    pub offsets: Vec<u32>,
    pub targets: Vec<u32>,
}

impl Csr {
    /// Builds the CSR of `n` nodes from an arc list (order of successors follows the list).
    pub fn from_arcs(n: usize, arcs: &[(u32, u32)]) -> Csr {
        let mut offsets = vec![0u32; n + 1];
        for &(from, _) in arcs {
            offsets[from as usize + 1] += 1;
        }
        for v in 0..n {
            offsets[v + 1] += offsets[v];
        }
        let mut fill = offsets.clone();
        let mut targets = vec![0u32; arcs.len()];
        for &(from, to) in arcs {
            targets[fill[from as usize] as usize] = to;
            fill[from as usize] += 1;
        }
        Csr { offsets, targets }
    }

    pub fn node_count(&self) -> usize {
        self.offsets.len() - 1
    }

    fn successors(&self, v: u32) -> &[u32] {
        &self.targets[self.offsets[v as usize] as usize..self.offsets[v as usize + 1] as usize]
    }
}

/// Returns the component of every node; components are numbered from 0 in the order Tarjan
/// completes them (reverse topological order of the condensation).
pub(crate) fn strongly_connected_components(graph: &Csr) -> Vec<u32> {
    const UNVISITED: u32 = u32::MAX;
    let n = graph.node_count();
    let mut index = vec![UNVISITED; n];
    let mut lowlink = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut component = vec![UNVISITED; n];
    let mut stack: Vec<u32> = Vec::new();
    let mut frames: Vec<(u32, u32)> = Vec::new();
    let mut next_index = 0u32;
    let mut next_component = 0u32;

    for root in 0..n as u32 {
        if index[root as usize] != UNVISITED {
            continue;
        }
        frames.push((root, 0));
        index[root as usize] = next_index;
        lowlink[root as usize] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root as usize] = true;

        while let Some(&mut (v, ref mut next_arc)) = frames.last_mut() {
            let successors = graph.successors(v);
            if let Some(&w) = successors.get(*next_arc as usize) {
                *next_arc += 1;
                if index[w as usize] == UNVISITED {
                    index[w as usize] = next_index;
                    lowlink[w as usize] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w as usize] = true;
                    frames.push((w, 0));
                } else if on_stack[w as usize] {
                    lowlink[v as usize] = lowlink[v as usize].min(index[w as usize]);
                }
                continue;
            }
            frames.pop();
            if let Some(&(parent, _)) = frames.last() {
                lowlink[parent as usize] = lowlink[parent as usize].min(lowlink[v as usize]);
            }
            if lowlink[v as usize] == index[v as usize] {
                while let Some(w) = stack.pop() {
                    on_stack[w as usize] = false;
                    component[w as usize] = next_component;
                    if w == v {
                        break;
                    }
                }
                next_component += 1;
            }
        }
    }
    component
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cycles_and_leaves_dag_nodes_alone() {
        // 0 -> 1 -> 2 -> 0 is a cycle; 3 -> 4 is not; 2 -> 3 joins them.
        let g = Csr::from_arcs(5, &[(0, 1), (1, 2), (2, 0), (2, 3), (3, 4)]);
        let c = strongly_connected_components(&g);
        assert_eq!(c[0], c[1]);
        assert_eq!(c[1], c[2]);
        assert_ne!(c[2], c[3]);
        assert_ne!(c[3], c[4]);
    }

    #[test]
    fn long_chain_does_not_overflow_the_stack() {
        let n = 1_000_000u32;
        let arcs: Vec<(u32, u32)> = (0..n - 1).map(|v| (v, v + 1)).chain([(n - 1, 0)]).collect();
        let c = strongly_connected_components(&Csr::from_arcs(n as usize, &arcs));
        assert!(c.iter().all(|&x| x == c[0]));
    }
}
