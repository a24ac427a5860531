//! Generated protocol code (`proto/jobmaster/v1`) and the descriptor set for reflection.

pub mod batch;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("jobmaster.v1");
}

/// The encoded `FileDescriptorSet` of our protos, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/jobmaster_descriptor.bin"));
