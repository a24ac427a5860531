//! Wire ↔ core: the wire names attempts and partitions (`AttemptRef`, `PartitionRef`: job id,
//! `vertex#subtask`, consumer vertex); the core numbers them. Every side converts here, against
//! the live job graphs.

use super::v1::{AttemptRef, PartitionRef};
use crate::core::{AttemptId, ExecutionGraph, JobId, JobMaster, PartitionId};

/// The core's attempt a wire reference names, if its job and task exist.
pub fn attempt_id(core: &JobMaster, r: &AttemptRef) -> Option<AttemptId> {
    let job: JobId = r.job_id.parse().ok()?;
    let graph = core.graph(job)?;
    let vertex = graph.find_vertex(&r.vertex)?;
    let task = graph.vertex(vertex).task(r.subtask)?;
    Some(AttemptId {
        job,
        task,
        attempt: r.attempt,
    })
}

/// The wire reference of an attempt (empty names if its job is gone).
pub fn attempt_ref(core: &JobMaster, a: AttemptId) -> AttemptRef {
    let (vertex, subtask) = core
        .graph(a.job)
        .map(|g| {
            let name = g.task_name(a.task);
            (name.vertex.to_owned(), name.subtask)
        })
        .unwrap_or_default();
    AttemptRef {
        job_id: a.job.to_string(),
        vertex,
        subtask,
        attempt: a.attempt,
    }
}

/// The core's partition a wire reference names, if its job, producer and edge exist.
pub fn partition_id(core: &JobMaster, r: &PartitionRef) -> Option<PartitionId> {
    let job: JobId = r.job_id.parse().ok()?;
    let graph = core.graph(job)?;
    let producer = graph.find_task(&r.producer)?;
    let consumer = graph.find_vertex(&r.consumer_vertex)?;
    graph.partition_to(producer, consumer)
}

/// The wire reference of partition `p` of `job`, written by the producer's `attempt`.
pub fn partition_ref(
    graph: &ExecutionGraph,
    job: JobId,
    p: PartitionId,
    attempt: u32,
) -> PartitionRef {
    let edge = graph.edge(graph.edge_of_partition(p));
    PartitionRef {
        job_id: job.to_string(),
        producer: graph.task_name(graph.producer_of(p)).to_string(),
        attempt,
        consumer_vertex: graph.vertex(edge.to).id.clone(),
    }
}
