//! The wire: generated protocol code (`proto/jobmaster/v1`), the descriptor set for
//! reflection, and the one place where wire names and core ids are converted ([`convert`]).
//! Wire vocabulary (task and job states, failure classes, exchanges, event kinds) is spelled by
//! the core types' `name()`/`Display` and parsed by their `FromStr` (`crate::core::names`).

pub mod convert;
pub mod logs;
pub mod reason;

pub mod batch;
pub mod leader;

/// The response metadata key by which a standby JobMaster names the elected leader: every call
/// to a standby fails with `UNAVAILABLE` (a message starting with [`STANDBY_MESSAGE`]) and,
/// while a leader is elected, carries this key with the leader's gRPC endpoint URL as its value
/// (e.g. `http://127.0.0.1:7001`); without a current leader the key is absent. Clients
/// (`taskexecutor`, `jmctl`) follow it: see [`leader`].
pub const LEADER_METADATA: &str = "jobmaster-leader";

/// How the message of a standby's `UNAVAILABLE` answer starts (see [`LEADER_METADATA`]).
pub const STANDBY_MESSAGE: &str = "this jobmaster is a standby";

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("jobmaster.v1");
}

/// The encoded `FileDescriptorSet` of our protos, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/jobmaster_descriptor.bin"));

/// The location of a partition on storage that outlives executors (a `persistent` exchange);
/// any other location is the address of the executor that holds the partition.
pub const PERSISTENT_LOCATION: &str = "persistent";
