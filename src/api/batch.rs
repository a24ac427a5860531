//! Batched wire calls (SubmitTasks, UpdateTaskStates) in terms of their one-by-one
//! counterparts: splitting a SubmitTasks batch into SubmitTask requests, and answering each
//! task of a batch with the [`TaskOutcome`] the unary call's status would have given. Shared
//! by the JobMaster's dispatcher and gateway and by the executor.

use tonic::{Code, Status};

use super::v1::{SubmitTaskRequest, SubmitTasksRequest, TaskOutcome};

/// Splits a SubmitTasks batch into the SubmitTask requests it stands for, in order: each task
/// gets the batch's epoch and its shared partition lists filled in. A task naming a shared list
/// the batch lacks is refused alone (INVALID_ARGUMENT).
pub fn unbatch(batch: SubmitTasksRequest) -> Vec<Result<SubmitTaskRequest, Status>> {
    let SubmitTasksRequest {
        epoch,
        tasks,
        shared_partitions: shared,
    } = batch;
    tasks
        .into_iter()
        .map(|mut task| {
            task.epoch = epoch;
            for gate in &mut task.inputs {
                if gate.shared_partitions == 0 {
                    continue;
                }
                let list = (gate.shared_partitions as usize)
                    .checked_sub(1)
                    .and_then(|i| shared.get(i))
                    .ok_or_else(|| {
                        Status::invalid_argument(format!(
                            "input {:?} names shared partition list {} of {}",
                            gate.producer_vertex,
                            gate.shared_partitions,
                            shared.len()
                        ))
                    })?;
                gate.partitions.extend_from_slice(&list.partitions);
                gate.shared_partitions = 0;
            }
            Ok(task)
        })
        .collect()
}

/// The outcome of one task of a batch (SubmitTasks, UpdateTaskStates), as the one-by-one call
/// would have answered it.
pub fn outcome(result: Result<(), Status>) -> TaskOutcome {
    match result {
        Ok(()) => TaskOutcome {
            accepted: true,
            ..TaskOutcome::default()
        },
        Err(status) => TaskOutcome {
            accepted: false,
            code: code_name(status.code()).to_owned(),
            message: status.message().to_owned(),
        },
    }
}

/// The canonical gRPC name of a status code, as `TaskOutcome.code` carries it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
