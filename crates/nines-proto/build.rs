//! Generates Rust for `proto/nines/v1` with a vendored protoc, so a fresh machine needs none.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "nines/v1/events.proto",
    "nines/v1/ingest.proto",
    "nines/v1/bus.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with `env!`: a build script compiled in one checkout can be reused
    // from a shared target directory by another checkout at a different path.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    tonic_prost_build::configure().compile_protos(&files, &[root])?;
    Ok(())
}
