//! Build script: compiles `bpf/attack.bpf.c`, the programs `guard-attack` loads against the
//! guard, to `OUT_DIR/attack.bpf.o` with clang (`CLANG` overrides the binary).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let src = manifest.join("bpf/attack.bpf.c");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-env-changed=CLANG");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(out.join("attack.bpf.o"))
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed ({s}) compiling {}", src.display()),
        Err(e) => {
            panic!("cannot run {clang} ({e}): run scripts/install-deps (clang, libbpf-dev) as root")
        }
    }
}
