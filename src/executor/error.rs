//! The executor's errors: why it refuses a request ([`ExecutorError`], answered as a gRPC
//! status by the one `From` impl below) and why it cannot start ([`StartError`]). Messages
//! carry their cause's text themselves (fields named `error`, not `source`), so a report of
//! the error does not repeat it as a "caused by".

use std::io;
use std::path::PathBuf;

use tonic::Status;

/// Why the executor refused a request from the JobMaster or another executor.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// A command from a JobMaster older than the newest one this executor has seen.
    #[error(
        "epoch {epoch} is older than the current jobmaster's: the command comes from a \
         jobmaster that was replaced"
    )]
    StaleEpoch {
        epoch: u64,
        /// Kept for debugging; not in the message (only the JobMaster may know it).
        current: u64,
    },
    /// A command with an epoch this executor did not register with: not from its JobMaster.
    /// The message does not tell the current epoch (a caller that does not know it is not
    /// the JobMaster).
    #[error(
        "epoch {epoch} is not the epoch of the jobmaster this executor registered with: \
         commands are accepted only from it"
    )]
    UnknownEpoch {
        epoch: u64,
        /// Kept for debugging; not in the message.
        current: u64,
    },
    /// A required field of the request is absent.
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("command is empty: give at least the program to run")]
    EmptyCommand,
    /// A ReleaseJob whose job id cannot be a directory name.
    #[error(
        "job_id {job:?} must be a plain name (not empty, not \".\" or \"..\", without '/', \
         control or invisible formatting characters)"
    )]
    NotPlainJob { job: String },
    /// A submit of a job the JobMaster said ended (ReleaseJob).
    #[error("job {job} ended: its attempts are not started any more")]
    JobEnded { job: String },
    /// A submit between the executor killing its attempts (cut off from the JobMaster, or
    /// declared lost) and its registration under a new session.
    #[error(
        "this executor killed its attempts (cut off from the jobmaster, or declared lost) and \
         has not registered again yet: it starts no attempt until it has"
    )]
    Fenced,
    /// A SubmitTask input names a shared partition list, which only SubmitTasks carries.
    #[error(
        "input {input:?}: shared partition lists only exist in SubmitTasks; list the \
         partitions in the input itself"
    )]
    SharedListOutsideBatch { input: String },
    #[error("free disk {free} bytes is below the threshold of {min} bytes: refusing new tasks")]
    LowDisk { free: u64, min: u64 },
    #[error("no free slot: all {slots} slots are busy")]
    NoFreeSlot { slots: u32 },
    /// A fetched subpartition that this executor does not hold.
    #[error("partition {producer}.{attempt}->{consumer} subpartition {subpartition} is not here")]
    PartitionNotHere {
        producer: String,
        attempt: u32,
        consumer: String,
        subpartition: u32,
    },
    /// A subpartition file that exists but cannot be opened.
    #[error("{}: {error}", path.display())]
    PartitionUnreadable { path: PathBuf, error: io::Error },
    /// Reading a subpartition failed half way through a fetch.
    #[error("reading the partition failed: {0}")]
    PartitionRead(io::Error),
    /// A job id or vertex that breaks the rule of names.
    #[error(transparent)]
    BadName(#[from] crate::core::names::NameError),
    /// A log `stream` other than stdout or stderr.
    #[error(transparent)]
    UnknownStream(#[from] crate::api::logs::UnknownStream),
    /// A log asked for of an attempt this executor has no folder of.
    #[error(
        "attempt {attempt} of task {task} of job {job} did not run on executor {executor} \
         (its logs may have been removed)"
    )]
    AttemptNotHere {
        attempt: u32,
        task: String,
        job: String,
        executor: String,
    },
    /// A log file that exists but cannot be opened.
    #[error("cannot open the log {}: {error}", path.display())]
    LogUnreadable { path: PathBuf, error: io::Error },
    /// Reading a log failed half way through.
    #[error("reading the log {} failed: {error}", path.display())]
    LogRead { path: PathBuf, error: io::Error },
}

impl From<ExecutorError> for Status {
    fn from(e: ExecutorError) -> Status {
        let message = e.to_string();
        match e {
            ExecutorError::Missing(_)
            | ExecutorError::EmptyCommand
            | ExecutorError::NotPlainJob { .. }
            | ExecutorError::SharedListOutsideBatch { .. }
            | ExecutorError::BadName(_)
            | ExecutorError::UnknownStream(_) => Status::invalid_argument(message),
            ExecutorError::StaleEpoch { .. }
            | ExecutorError::UnknownEpoch { .. }
            | ExecutorError::LowDisk { .. }
            | ExecutorError::JobEnded { .. }
            | ExecutorError::Fenced
            | ExecutorError::NoFreeSlot { .. } => Status::failed_precondition(message),
            ExecutorError::PartitionNotHere { .. }
            | ExecutorError::PartitionUnreadable { .. }
            | ExecutorError::AttemptNotHere { .. } => Status::not_found(message),
            ExecutorError::PartitionRead(_)
            | ExecutorError::LogUnreadable { .. }
            | ExecutorError::LogRead { .. } => Status::internal(message),
        }
    }
}

/// Why an executor cannot start: its configuration or its directories.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "slots must be at least 1: set executor.slots (or --slots) to how many tasks may run at once"
    )]
    NoSlots,
    #[error(
        "retain-attempts must be at least 1 (the running attempt's folder holds its logs): set \
         executor.retain-attempts (or --retain-attempts) to how many attempt folders to keep per task"
    )]
    NoRetainedAttempts,
    #[error(
        "executor id {0:?} must be a plain name (not empty, not \".\" or \"..\", without '/'): \
         set executor.id (or --id)"
    )]
    BadId(String),
    #[error(
        "cannot create {}: {error}; make the executor's data and persistent directories \
         writable, or point them elsewhere", path.display()
    )]
    CreateDir { path: PathBuf, error: io::Error },
    #[error(
        "the jobmaster address {url:?} is not a valid URL ({error}); give it as e.g. \
         http://127.0.0.1:6123"
    )]
    JobmasterUrl {
        url: String,
        error: tonic::transport::Error,
    },
    #[error("executor.jobmaster (--jobmaster): {0}")]
    JobmasterList(#[from] crate::api::leader::EndpointsError),
    #[error("tls: {0}")]
    Tls(#[from] crate::security::tls::TlsError),
    #[error(
        "the jobmaster address {url:?} is {scheme}:// but TLS is {state}: use {want}:// (or \
         {fix})"
    )]
    JobmasterScheme {
        url: String,
        scheme: &'static str,
        state: &'static str,
        want: &'static str,
        fix: &'static str,
    },
    #[error(transparent)]
    Exposed(#[from] crate::security::exposure::Exposed),
    /// A data directory another user could change.
    #[error(
        "refusing to use {}: {problem}; give the executor a directory of its own (executor.data-dir, \
         --data-dir, e.g. under /var/lib), or fix its owner and mode", path.display()
    )]
    UnsafeDir { path: PathBuf, problem: String },
    #[error("cannot read the listener's address: {0}")]
    Listener(io::Error),
    /// `executor.run-as` names no user of this machine.
    #[error(
        "executor.run-as (--run-as) names user {user:?}: {reason}; give an existing user name \
         or uid, or leave it empty to run tasks as the executor's own user"
    )]
    UnknownRunAs { user: String, reason: String },
    /// Tasks are to run as another user, but the executor cannot switch users.
    #[error(
        "tasks cannot run as user {user:?}: switching users needs root, and the executor runs \
         as uid {euid}; start the executor as root, or unset executor.run-as (--run-as)"
    )]
    RunAsNeedsRoot { user: String, euid: u32 },
    /// A folder above the data or persistent directory that the task user may not enter.
    #[error(
        "tasks run as user {user:?} but it cannot enter {} (mode {mode:o}); let it (e.g. \
         chmod o+x), or move executor.data-dir / executor.persistent-dir elsewhere", path.display()
    )]
    RunAsCannotEnter {
        user: String,
        path: PathBuf,
        mode: u32,
    },
    /// The TaskExecutorService stopped while the executor ran: it killed its attempts and
    /// exits (the JobMaster takes a refused connection for a dead executor).
    #[error("the executor's grpc server stopped ({0}): its attempts were killed; start it again")]
    ServerStopped(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_refusal_keeps_its_status_code_and_message() {
        let io = || io::Error::new(io::ErrorKind::PermissionDenied, "denied");
        let cases = [
            (
                ExecutorError::StaleEpoch {
                    epoch: 1,
                    current: 2,
                },
                Code::FailedPrecondition,
            ),
            (ExecutorError::Missing("attempt"), Code::InvalidArgument),
            (ExecutorError::EmptyCommand, Code::InvalidArgument),
            (
                ExecutorError::NotPlainJob { job: "..".into() },
                Code::InvalidArgument,
            ),
            (
                ExecutorError::JobEnded { job: "7".into() },
                Code::FailedPrecondition,
            ),
            (
                ExecutorError::SharedListOutsideBatch { input: "a".into() },
                Code::InvalidArgument,
            ),
            (
                ExecutorError::LowDisk { free: 1, min: 2 },
                Code::FailedPrecondition,
            ),
            (
                ExecutorError::NoFreeSlot { slots: 4 },
                Code::FailedPrecondition,
            ),
            (
                ExecutorError::PartitionNotHere {
                    producer: "a#0".into(),
                    attempt: 1,
                    consumer: "b".into(),
                    subpartition: 2,
                },
                Code::NotFound,
            ),
            (
                ExecutorError::PartitionUnreadable {
                    path: "/data/p/0".into(),
                    error: io(),
                },
                Code::NotFound,
            ),
            (ExecutorError::PartitionRead(io()), Code::Internal),
            (
                ExecutorError::AttemptNotHere {
                    attempt: 3,
                    task: "map#1".into(),
                    job: "7".into(),
                    executor: "e1".into(),
                },
                Code::NotFound,
            ),
            (
                ExecutorError::UnknownStream(crate::api::logs::UnknownStream("x".into())),
                Code::InvalidArgument,
            ),
            (
                ExecutorError::LogRead {
                    path: "/data/attempts/j/a#0.0/stdout.log".into(),
                    error: io(),
                },
                Code::Internal,
            ),
        ];
        for (error, code) in cases {
            let message = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn messages_name_what_is_wrong() {
        assert_eq!(
            ExecutorError::Missing("attempt").to_string(),
            "attempt is missing"
        );
        assert_eq!(
            ExecutorError::NoFreeSlot { slots: 4 }.to_string(),
            "no free slot: all 4 slots are busy"
        );
        assert_eq!(
            ExecutorError::PartitionNotHere {
                producer: "a#0".into(),
                attempt: 1,
                consumer: "b".into(),
                subpartition: 2,
            }
            .to_string(),
            "partition a#0.1->b subpartition 2 is not here"
        );
        assert_eq!(
            ExecutorError::AttemptNotHere {
                attempt: 3,
                task: "map#1".into(),
                job: "7".into(),
                executor: "e1".into(),
            }
            .to_string(),
            "attempt 3 of task map#1 of job 7 did not run on executor e1 (its logs may have been \
             removed)"
        );
    }
}
