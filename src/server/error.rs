//! The daemon's API errors and their one mapping to `tonic::Status`.

use tonic::Status;

use crate::core::{CoreError, SpecError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// A quota is reached (`jobs.max-jobs`, `jobs.max-total-tasks`).
    #[error("{0}")]
    ResourceExhausted(String),
    /// Something the request needs is out of reach (an executor gone or not answering).
    #[error("{0}")]
    Unavailable(String),
    /// Something failed that the caller cannot fix (an executor could not read a file).
    #[error("{0}")]
    Internal(String),
    #[error("the jobmaster is shutting down")]
    ShuttingDown,
    #[error("invalid job spec: {0}")]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let message = e.to_string();
        match e {
            ApiError::InvalidArgument(_) | ApiError::Spec(_) => Status::invalid_argument(message),
            ApiError::NotFound(_) => Status::not_found(message),
            ApiError::FailedPrecondition(_) => Status::failed_precondition(message),
            ApiError::PermissionDenied(_) => Status::permission_denied(message),
            ApiError::ResourceExhausted(_) => Status::resource_exhausted(message),
            ApiError::Unavailable(_) | ApiError::ShuttingDown => Status::unavailable(message),
            ApiError::Internal(_) => Status::internal(message),
            ApiError::Core(core) => match core {
                CoreError::UnknownJob(_)
                | CoreError::UnknownTask { .. }
                | CoreError::UnknownExecutor(_) => Status::not_found(message),
                CoreError::DuplicateJob(_) => Status::already_exists(message),
                CoreError::NoSlots => Status::invalid_argument(message),
                CoreError::StaleAttempt { .. }
                | CoreError::WrongExecutor { .. }
                | CoreError::IllegalReport { .. }
                | CoreError::JobNotActive { .. }
                | CoreError::JobNotEnded { .. }
                | CoreError::CheckpointsOff(_)
                | CoreError::CheckpointRefused { .. }
                | CoreError::TaskNotFailable { .. } => Status::failed_precondition(message),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::JobId;
    use tonic::Code;

    #[test]
    fn core_errors_map_to_the_documented_codes() {
        let code = |e: ApiError| Status::from(e).code();
        assert_eq!(code(CoreError::UnknownJob(JobId(1)).into()), Code::NotFound);
        assert_eq!(
            code(
                CoreError::StaleAttempt {
                    task: "a#0".into(),
                    attempt: 0,
                    current: 1
                }
                .into()
            ),
            Code::FailedPrecondition
        );
        assert_eq!(code(SpecError::Empty.into()), Code::InvalidArgument);
        assert_eq!(code(ApiError::ShuttingDown), Code::Unavailable);
        assert_eq!(
            code(ApiError::Unavailable("gone".into())),
            Code::Unavailable
        );
        assert_eq!(code(ApiError::Internal("broken".into())), Code::Internal);
    }
}
