//! The guest is real: its kernel runs the BPF LSM, and a minimal LSM program from fsguard-kmod
//! (compiled by the workspace build with clang, loaded through aya by `fsguard-smoke`)
//! refuses a write-open of one file, then, detached, lets it through. Once on tmpfs and once
//! on an ext4 disk, where stat()'s device encoding differs from the kernel's.

use std::path::Path;
use std::process::Command;

fn run_smoke(extra: &[&str], guest: &[&str]) -> (i32, String) {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/run"))
        .args(extra)
        .arg("--")
        .args(guest)
        .output()
        .expect("cannot start tests/vm/run");
    let text = format!(
        "{}{}",
        capsule_tests::final_boot(&String::from_utf8_lossy(&out.stdout)),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn bpf_is_an_active_lsm_in_the_guest() {
    let (code, text) = run_smoke(&[], &["cat", "/sys/kernel/security/lsm"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.trim().split(',').any(|l| l == "bpf"),
        "bpf not in the active LSM list: {text}"
    );
}

#[test]
fn smoke_program_refuses_then_detaches_on_tmpfs() {
    let (code, text) = run_smoke(&[], &["fsguard-smoke", "--verbose"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("denied writes to the protected file"),
        "{text}"
    );
    assert!(
        text.contains("detached: write-open succeeds again"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.trim() == "fsguard-smoke: ok"),
        "{text}"
    );
}

#[test]
fn smoke_program_refuses_then_detaches_on_ext4() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    let disk = disk.to_str().unwrap();
    let (code, text) = run_smoke(
        &["--disk", disk],
        &["fsguard-smoke", "--verbose", "--dir", "/disk"],
    );
    assert_eq!(code, 0, "{text}");
    // A block device: the kernel's dev_t differs from stat()'s, so this proves the conversion.
    assert!(text.contains("(254:"), "not on the virtio disk: {text}");
    assert!(
        text.lines().any(|l| l.trim() == "fsguard-smoke: ok"),
        "{text}"
    );
}
