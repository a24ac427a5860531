//! Compiles `proto/` with protox (pure Rust: no system `protoc`), writes the descriptor set for
//! server reflection, and generates the tonic client and server code; and the client of the part
//! of etcd's API the HA mode uses (`proto/etcd`, see its README).

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/jobmaster/v1/jobmaster.proto"];
    let etcd = [
        "proto/etcd/kv.proto",
        "proto/etcd/rpc.proto",
        "proto/etcd/election.proto",
    ];
    for f in files.iter().chain(&etcd) {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("jobmaster_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(protox::compile(etcd, ["proto"])?)?;
    Ok(())
}
