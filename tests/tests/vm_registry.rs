//! Seals hold across reboots whatever happens to the registry
//! (tests/vm/guest/registry-suite.sh), one boot per step on one ext4 disk:
//!
//! - the index damaged four ways (an undecodable record, its files cut short, deleted, a
//!   record naming another root) and held open by another process, each followed by a
//!   reboot in which `enforce --boot` must
//!   enforce every sealed tree and say, in its exit status, that something is wrong;
//! - the power cut while a seal runs, then a boot: the seal is recorded and enforced, or
//!   not recorded at all;
//! - the registry on a disk of its own, whose block device level 2 protects;
//! - a seal planted at level 2 claiming another capsule's cgroup: neither gets an inside.
//!
//! Run: `cargo test -p capsule-tests --test vm_registry -- --test-threads=1`.

use std::ffi::OsString;
use std::path::Path;

fn args(disks: &[(&str, &Path)], step: &[&str]) -> Vec<OsString> {
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/guest");
    let suite = guest.join("registry-suite.sh");
    let mut a: Vec<OsString> = vec!["--timeout".into(), "400".into()];
    for (flag, disk) in disks {
        a.push((*flag).into());
        a.push((*disk).into());
    }
    a.push("--add".into());
    a.push(format!("{}:/registry-suite.sh", suite.display()).into());
    a.push("--add".into());
    a.push(format!("{}:/checks.sh", guest.join("checks.sh").display()).into());
    a.push("--add".into());
    a.push(format!("{}:/inside.sh", guest.join("inside.sh").display()).into());
    a.push("--".into());
    a.push("sh".into());
    a.push("/registry-suite.sh".into());
    a.extend(step.iter().map(|s| OsString::from(*s)));
    a
}

fn step(disk: &Path, step: &[&str], min_passed: usize) {
    capsule_tests::run_guest_suite(
        &args(&[("--disk", disk)], step),
        "registry-suite",
        &step.join(" "),
        min_passed,
    );
}

#[test]
fn boot_enforcement_stands_on_the_seal_files_whatever_the_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk.img");
    step(&disk, &["setup"], 10);
    for (was, next) in [
        ("junk", "truncate"),
        ("truncate", "delete"),
        ("delete", "root"),
        ("root", "held"),
        ("held", "none"),
    ] {
        step(&disk, &["check", was, next], 15);
    }
}

#[test]
fn a_seal_cut_by_a_power_loss_is_enforced_or_not_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk.img");
    step(&disk, &["setup"], 10);
    // The guest loses its power on purpose: no status comes back (exit 125), and what it
    // printed before says when.
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/run");
    let out = std::process::Command::new(run)
        .args(args(&[("--disk", &disk)], &["crash"]))
        .output()
        .expect("cannot start tests/vm/run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("--- registry-suite crash ({})\n{stdout}", out.status);
    assert!(
        stdout.contains("crash: the power goes"),
        "the crash boot did not get to the seal:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains("FAIL: "),
        "the crash boot outlived the power cut:\n{stdout}"
    );
    step(&disk, &["after-crash"], 3);
}

#[test]
fn the_registry_on_a_disk_of_its_own_is_protected_at_level_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (disk, disk2) = (dir.path().join("disk.img"), dir.path().join("disk2.img"));
    capsule_tests::run_guest_suite(
        &args(&[("--disk", &disk), ("--disk2", &disk2)], &["disk2"]),
        "registry-suite",
        "disk2",
        23,
    );
}

#[test]
fn overlapping_insides_leave_both_capsules_without_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk.img");
    step(&disk, &["overlap-setup"], 14);
    step(&disk, &["overlap-boot"], 16);
}
