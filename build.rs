//! Build script of the `polltgt` binary.
//!
//! With the `dpdk` feature on, locate DPDK 22.11 (Debian's `libdpdk-dev`) through pkg-config and pass its link flags
//! to the binary; without it there is nothing to do.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_DPDK");
    if std::env::var_os("CARGO_FEATURE_DPDK").is_none() {
        return;
    }
    let out = Command::new("pkg-config").args(["--libs", "libdpdk"]).output();
    match out {
        Ok(o) if o.status.success() => {
            for flag in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                if let Some(dir) = flag.strip_prefix("-L") {
                    println!("cargo:rustc-link-search=native={dir}");
                } else if let Some(lib) = flag.strip_prefix("-l") {
                    println!("cargo:rustc-link-lib={lib}");
                }
            }
        }
        _ => panic!("feature `dpdk` needs DPDK 22.11: apt-get install -y libdpdk-dev pkg-config"),
    }
}
