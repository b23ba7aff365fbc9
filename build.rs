//! Link options for the `nines` binary.
//!
//! The binary is position-independent, and ~276,000 of its pointers (vtables, tables of
//! strings) are fixed up by the dynamic loader at start. In the usual encoding
//! (`.rela.dyn`, 24 bytes each) that table is 6.6 MB, read through its mapping at
//! start and left in every process's RSS. Packed (`-z pack-relative-relocs`, DT_RELR) it
//! is 83 KB, and each role holds ~7 MiB less (BENCHMARKS.md, "Relative relocations
//! packed").
//!
//! The flag is only passed where the result loads:
//! - Linux with glibc 2.36 or newer, built for the machine it builds on;
//! - GNU ld or lld, not mold: mold 1.x writes DT_RELR without the glibc version tag
//!   (`GLIBC_ABI_DT_RELR`), and glibc then refuses to load the binary.
//!
//! Elsewhere nothing changes.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let native = var("HOST") == var("TARGET");
    let linux_gnu = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    let mold = var("CARGO_ENCODED_RUSTFLAGS").contains("mold");
    if native && linux_gnu && !mold && glibc_at_least((2, 36)) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this machine's glibc (`getconf GNU_LIBC_VERSION`, e.g. "glibc 2.36") is at least
/// `wanted`; false when it cannot tell.
fn glibc_at_least(wanted: (u32, u32)) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= wanted,
        _ => false,
    }
}
