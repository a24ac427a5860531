//! Deploys: the SubmitTask descriptor of an attempt (command, inputs with where their
//! producers' partitions are, outputs, the checkpoint to restore from), queued for its
//! executor's dispatcher.

use std::collections::HashMap;
use std::sync::Arc;

use super::Coordinator;
use crate::api::v1::{InputGate, InputPartition, OutputGate, SubmitTaskRequest};
use crate::api::{PERSISTENT_LOCATION, convert};
use crate::core::checkpoint::CheckpointId;
use crate::core::{AttemptId, ExecutorId, GroupId, JobId, PartitionHost};
use crate::server::dispatcher::{Deploy, Order, SharedInputs};

/// Partition lists of exchange groups with several consumers, built once per `carry_out` (the
/// core's state does not change while its commands are carried out).
pub(super) type InputCache = HashMap<(JobId, GroupId), Arc<SharedInputs>>;

impl Coordinator {
    /// Queues the attempt's SubmitTask for its executor. A deploy that cannot be carried out
    /// comes back as a FAILED report from the dispatcher.
    pub(super) fn deploy(
        &mut self,
        attempt: AttemptId,
        executor: ExecutorId,
        restore: Option<CheckpointId>,
        inputs: &mut InputCache,
    ) {
        if !self.dispatchers.contains_key(&executor) {
            return; // lost meanwhile: the core learns it from the loss
        }
        if let Some(deploy) = self.submit_request(attempt, restore, inputs) {
            self.order(&executor, Order::Submit(deploy));
        }
    }

    /// The task descriptor: command, inputs with their producers' locations, outputs.
    /// Gates read by several consumers (all-to-all) get their partition list from `cache`,
    /// built once per `carry_out` and sent once per batch.
    fn submit_request(
        &self,
        a: AttemptId,
        restore: Option<CheckpointId>,
        cache: &mut InputCache,
    ) -> Option<Deploy> {
        let graph = self.core.graph(a.job)?;
        let spec = self.specs.get(&a.job)?;
        let v = graph.vertex_of(a.task);
        let vertex = graph.vertex(v);
        let mut inputs = Vec::new();
        let mut shared = Vec::new();
        for (&e, g) in vertex.inputs().iter().zip(graph.consumed_groups(a.task)) {
            let edge = graph.edge(e);
            let group = graph.group(g);
            let build = || -> Vec<InputPartition> {
                group
                    .partitions_with_producers()
                    .map(|(p, producer)| {
                        let (attempt, executor) = self
                            .core
                            .task_placement(a.job, producer)
                            .unwrap_or((0, None));
                        let location = match self.core.partition_host(a.job, p) {
                            Some(PartitionHost::Executor(host)) => self
                                .shared
                                .executors
                                .get(host)
                                .map(|s| s.address.clone())
                                .unwrap_or_default(),
                            Some(PartitionHost::Persistent) => PERSISTENT_LOCATION.to_owned(),
                            _ => String::new(),
                        };
                        InputPartition {
                            subtask: graph.subtask_of(producer),
                            attempt,
                            location,
                            executor: executor.map(|e| e.0.clone()).unwrap_or_default(),
                        }
                    })
                    .collect()
            };
            let partitions = if group.consumers.len() > 1 {
                let list = cache
                    .entry((a.job, g))
                    .or_insert_with(|| SharedInputs::new(build()));
                shared.push((inputs.len(), list.clone()));
                Vec::new()
            } else {
                build()
            };
            inputs.push(InputGate {
                producer_vertex: graph.vertex(edge.from).id.clone(),
                exchange: edge.exchange.name().to_owned(),
                pattern: edge.pattern.name().to_owned(),
                partitions,
                shared_partitions: 0,
            });
        }
        let mut outputs = Vec::new();
        for (&e, g) in vertex.outputs().iter().zip(graph.produced_groups(a.task)) {
            let edge = graph.edge(e);
            let group = graph.group(g);
            let first = graph.vertex(edge.to).tasks().next().map_or(0, |t| t.0);
            outputs.push(OutputGate {
                consumer_vertex: graph.vertex(edge.to).id.clone(),
                exchange: edge.exchange.name().to_owned(),
                pattern: edge.pattern.name().to_owned(),
                first_consumer: group.consumers.start - first,
                consumers: group.consumers.len() as u32,
            });
        }
        let request = SubmitTaskRequest {
            epoch: self.shared.epoch,
            attempt: Some(convert::attempt_ref(&self.core, a)),
            job_name: graph.name().to_owned(),
            parallelism: vertex.parallelism,
            command: spec.vertices[v.0 as usize].command.clone(),
            inputs,
            outputs,
            restore_checkpoint: restore.map_or(0, |c| c.0),
            checkpoint_storage: self.checkpoint_storage(a.job),
        };
        Some(Deploy { request, shared })
    }
}
