//! Region readiness: for every pipelined region, how many of its external blocking or
//! persistent input groups still miss a partition, kept up to date in O(1) per partition
//! change so that a region can be scheduled the moment its inputs are complete.

use std::collections::HashMap;

use super::graph::{ExecutionGraph, GroupId, PartitionId};
use super::region::{RegionId, Regions};

/// Region readiness: how many of its external input groups are not complete.
pub(crate) struct Readiness {
    /// Per group (reconsumable edges only): unavailable partitions. Used for "pure" groups,
    /// whose producers share a region with none of their consumers.
    group_missing: Vec<u32>,
    /// Per group: is it mixed (some producer inside some consumer's region)?
    group_mixed: Vec<bool>,
    /// Distinct consumer regions of each reconsumable group (CSR).
    group_regions_off: Vec<u32>,
    group_regions: Vec<RegionId>,
    /// For mixed groups: unavailable partitions produced outside the consumer region.
    mixed_missing: HashMap<(GroupId, RegionId), u32>,
    /// Per region: external groups (or mixed pairs) still missing a partition.
    waiting: Vec<u32>,
}

impl Readiness {
    pub(crate) fn new(graph: &ExecutionGraph, regions: &Regions) -> Readiness {
        let groups = graph.group_count();
        let mut group_missing = vec![0u32; groups];
        let mut group_mixed = vec![false; groups];
        let mut group_regions_off = vec![0u32; groups + 1];
        let mut group_regions = Vec::new();
        let mut mixed_missing = HashMap::new();
        let mut waiting = vec![0u32; regions.len()];
        // Stamp per region, to deduplicate consumer regions of one group.
        let mut stamp = vec![u32::MAX; regions.len()];
        for edge in graph.edges() {
            for g in edge.groups() {
                let gi = g.0 as usize;
                if edge.exchange.is_reconsumable() {
                    let group = graph.group(g);
                    let start = group_regions.len();
                    for c in group.consumer_tasks() {
                        let r = regions.region_of(c);
                        if stamp[r.index()] != g.0 {
                            stamp[r.index()] = g.0;
                            group_regions.push(r);
                        }
                    }
                    let mixed = group
                        .producer_tasks()
                        .any(|p| stamp[regions.region_of(p).index()] == g.0);
                    group_mixed[gi] = mixed;
                    group_missing[gi] = group.producers.len() as u32;
                    for &r in &group_regions[start..] {
                        if mixed {
                            let outside = group
                                .producer_tasks()
                                .filter(|&p| regions.region_of(p) != r)
                                .count() as u32;
                            if outside > 0 {
                                mixed_missing.insert((g, r), outside);
                                waiting[r.index()] += 1;
                            }
                        } else {
                            waiting[r.index()] += 1;
                        }
                    }
                }
                group_regions_off[gi + 1] = group_regions.len() as u32;
            }
        }
        Readiness {
            group_missing,
            group_mixed,
            group_regions_off,
            group_regions,
            mixed_missing,
            waiting,
        }
    }

    /// Are all external inputs of region `r` available?
    pub(crate) fn is_ready(&self, r: RegionId) -> bool {
        self.waiting[r.index()] == 0
    }

    fn consumer_regions(&self, g: GroupId) -> &[RegionId] {
        let gi = g.0 as usize;
        &self.group_regions
            [self.group_regions_off[gi] as usize..self.group_regions_off[gi + 1] as usize]
    }

    /// Partition `p` became available (or unavailable); returns regions now ready.
    pub(crate) fn partition_changed(
        &mut self,
        graph: &ExecutionGraph,
        regions: &Regions,
        p: PartitionId,
        available: bool,
    ) -> Vec<RegionId> {
        let producer = graph.producer_of(p);
        let edge = graph.edge_of_partition(p);
        let Some(g) = graph
            .produced_groups(producer)
            .find(|&g| graph.group(g).edge == edge)
        else {
            return Vec::new();
        };
        let gi = g.0 as usize;
        let mut ready = Vec::new();
        if !self.group_mixed[gi] {
            let before = self.group_missing[gi];
            if available {
                self.group_missing[gi] -= 1;
            } else {
                self.group_missing[gi] += 1;
            }
            let after = self.group_missing[gi];
            if (before == 0) != (after == 0) {
                let rs: Vec<RegionId> = self.consumer_regions(g).to_vec();
                for r in rs {
                    if after == 0 {
                        self.waiting[r.index()] -= 1;
                        if self.waiting[r.index()] == 0 {
                            ready.push(r);
                        }
                    } else {
                        self.waiting[r.index()] += 1;
                    }
                }
            }
        } else {
            let pr = regions.region_of(producer);
            let rs: Vec<RegionId> = self.consumer_regions(g).to_vec();
            for r in rs {
                if r == pr {
                    continue;
                }
                let Some(m) = self.mixed_missing.get_mut(&(g, r)) else {
                    continue;
                };
                let before = *m;
                if available {
                    *m -= 1;
                } else {
                    *m += 1;
                }
                if (before == 0) != (*m == 0) {
                    if *m == 0 {
                        self.waiting[r.index()] -= 1;
                        if self.waiting[r.index()] == 0 {
                            ready.push(r);
                        }
                    } else {
                        self.waiting[r.index()] += 1;
                    }
                }
            }
        }
        ready
    }
}
