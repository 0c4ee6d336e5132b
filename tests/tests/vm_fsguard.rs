//! The fsguard end-to-end suite (tests/vm/guest/fsguard-suite.sh) in the test guest: one boot
//! per scenario, since the guard's level can only be raised within a boot.
//!
//!   level1  tmpfs, guard at level 1: outside refused, inside allowed, frozen refused to all,
//!           identity by inode (bind mount, /proc paths, deep and > PATH_MAX paths, hard
//!           links), descriptors opened before the seal
//!   level0  tmpfs, guard first loaded at level 0: root outside allowed, others as above
//!   ext4    the level1 checks on an ext4 disk (a real dev_t), plus inode number reuse
//!   nolsm   booted without the BPF LSM: seal exits 3 and says so; the seal is recorded
//!
//! Each boot takes 30-60 s under TCG. The guest's output is printed (shown by the test
//! harness on failure, or with --nocapture); a test passes when the suite exits 0, its
//! summary line says `0 failed` and it passed at least a minimum number of checks, so that a
//! suite that silently ran nothing fails.
//!
//! Run: `cargo test -p capsule-tests --test vm_fsguard -- --test-threads=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Instant;

/// One guest at a time: several TCG guests at once only slow each other down.
static VM_LOCK: Mutex<()> = Mutex::new(());

/// Host-side limit for one boot, suite included.
const TIMEOUT_S: &str = "300";

fn tests_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn harness() -> PathBuf {
    tests_dir().join("vm/run")
}

fn suite_script() -> PathBuf {
    tests_dir().join("vm/guest/fsguard-suite.sh")
}

/// How one scenario's boot is made and judged.
struct Scenario<'a> {
    name: &'a str,
    /// Extra options for tests/vm/run (before `--`).
    options: Vec<String>,
    /// Extra environment for tests/vm/run (VM_APPEND, ...).
    env: Vec<(&'a str, &'a str)>,
    /// The suite must have passed at least this many checks.
    min_passed: usize,
    /// PASS lines (prefixes) that must be present.
    required: &'a [&'a str],
    /// When not empty: mkfs.ext4 options for a fresh 256 MiB {tmp}/disk.img made before the
    /// boot (tests/vm/run makes one with the defaults otherwise).
    disk_mkfs: &'a [&'a str],
}

/// The suite's last line: `fsguard-suite: N passed, M failed`.
fn summary(stdout: &str) -> Option<(usize, usize)> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("fsguard-suite: "))?;
    let rest = line.strip_prefix("fsguard-suite: ")?;
    let (passed, failed) = rest.split_once(", ")?;
    Some((
        passed.strip_suffix(" passed")?.parse().ok()?,
        failed.strip_suffix(" failed")?.parse().ok()?,
    ))
}

fn run(s: Scenario<'_>) {
    let _guard = VM_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let console_log = dir.path().join("console.log");
    let script = suite_script();
    assert!(script.is_file(), "{} missing", script.display());
    if !s.disk_mkfs.is_empty() {
        let img = dir.path().join("disk.img");
        let made = std::fs::File::create(&img).and_then(|f| f.set_len(256 << 20));
        assert!(made.is_ok(), "{}: {made:?}", img.display());
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "vmdisk"])
            .args(s.disk_mkfs)
            .arg(&img)
            .output()
            .expect("cannot start mkfs.ext4");
        assert!(out.status.success(), "mkfs.ext4: {out:?}");
    }
    let mut cmd = Command::new(harness());
    cmd.arg("--timeout")
        .arg(TIMEOUT_S)
        .arg("--add")
        .arg(format!("{}:/fsguard-suite.sh", script.display()))
        .arg("--add")
        .arg(format!(
            "{}:/inside.sh",
            tests_dir().join("vm/guest/inside.sh").display()
        ))
        .args(
            s.options
                .iter()
                .map(|o| o.replace("{tmp}", &dir.path().display().to_string())),
        )
        .args(["--", "sh", "/fsguard-suite.sh", s.name])
        .env("VM_CONSOLE_LOG", &console_log);
    for (k, v) in &s.env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("cannot start tests/vm/run");
    let elapsed = start.elapsed();
    let all = String::from_utf8_lossy(&stdout).into_owned();
    let stdout = capsule_tests::final_boot(&all).to_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    println!(
        "--- fsguard-suite {} ({:.1} s, {status})",
        s.name,
        elapsed.as_secs_f64()
    );
    println!("{all}");
    if !stderr.is_empty() {
        println!("--- stderr:\n{stderr}");
    }
    let console = || std::fs::read_to_string(&console_log).unwrap_or_default();
    let fails: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL: ")).collect();
    assert_eq!(
        status.code(),
        Some(0),
        "scenario {}: the suite failed ({} FAIL lines):\n{}\n--- console:\n{}",
        s.name,
        fails.len(),
        fails.join("\n"),
        console()
    );
    let (passed, failed) = summary(&stdout).unwrap_or_else(|| {
        panic!(
            "scenario {}: no `fsguard-suite: N passed, M failed` line\n--- console:\n{}",
            s.name,
            console()
        )
    });
    assert_eq!(failed, 0, "scenario {}: {}", s.name, fails.join("\n"));
    assert!(
        fails.is_empty(),
        "scenario {}: {}",
        s.name,
        fails.join("\n")
    );
    assert!(
        passed >= s.min_passed,
        "scenario {}: only {passed} checks passed, expected at least {}",
        s.name,
        s.min_passed
    );
    for r in s.required {
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("PASS: {r}"))),
            "scenario {}: no `PASS: {r}...` line",
            s.name
        );
    }
}

/// The full-map checks fill the guard's inode map: a capacity of 65,536 (instead of 2^22)
/// holds the suite's trees and fills in a second.
const FULL_MAP_CAPACITY: (&str, &str) = ("VM_ENV_CAPSULE_FSGUARD_INODES", "65536");

#[test]
fn summary_line_is_parsed() {
    assert_eq!(
        summary("PASS: x\nfsguard-suite: 12 passed, 3 failed\n"),
        Some((12, 3))
    );
    assert_eq!(summary("fsguard-suite: many passed"), None);
    assert_eq!(summary(""), None);
}

#[test]
fn level1_outside_refused_inside_allowed_identity_by_inode() {
    run(Scenario {
        name: "level1",
        options: vec![],
        env: vec![FULL_MAP_CAPACITY],
        min_passed: 950,
        required: &[
            "sealtool seal app exits 0",
            "sealtool level prints 1",
            "root outside: open O_WRONLY (tree ro, sealed)",
            "user outside: open O_WRONLY (tree uo, sealed)",
            "root inside: open O_WRONLY (tree ri, sealed)",
            "root inside: open O_WRONLY (frozen bin/ri, sealed)",
            "root outside: write below a path longer than PATH_MAX, reached with cd (sealed)",
            "root outside: io_uring through a descriptor opened before the seal (sealed, ro)",
            "sealtool level 0 (lowering) is refused",
            "root inside: rename a directory from outside into the tree answers EXDEV",
            "root outside: open-wronly /jails/app/ri/c.dirmv/child",
            "root outside: refused O_TMPFILEs add no inode to the guard",
            "root inside: its O_TMPFILE adds an inode to the guard",
            // A file made inside has no entry of its own: its directory protects it, and it
            // gets an entry when it leaves the directory or gets a second name.
            "root outside: open-wronly /jails/app/ri/c.within2, created or brought in by an inside process (sealed)",
            "root outside: open-wronly /jails/app/ri/c.dir/c.across, created",
            "root outside: open-wronly /jails/out/ri/c.mvout, created",
            "root outside: open-wronly /jails/out/ri/c.lnout, created",
            "root outside: link /jails/app/ri/c.file /jails/out/ri/n.lnout, created",
            "root outside: open_by_handle_at(O_WRONLY) of a file made inside",
            "the move gives the file an entry of its own (level1: 1)",
            // rmdir inside releases no directory's entry.
            "root inside: rmdir of a non-empty directory it made answers ENOTEMPTY (sealed)",
            "root outside: create in a directory after an inside rmdir of it failed (sealed)",
            "root outside: reopen for writing the unlinked file of a removed directory it holds (sealed)",
            "root outside: reopen for writing the unlinked file of a removed directory it holds (free)",
            "the failed rmdir releases no entry (sealed)",
            "the rmdir of an empty directory releases no entry (sealed)",
            // overlayfs opens the real file behind the overlay's path.
            "root outside: open-wronly f.wronly through an overlay whose upper layer is the tree",
            "root outside: open-wronly c.within2 through an overlay whose upper layer is the tree",
            // ... and an unprivileged user's own overlay, in a user namespace.
            "user outside: open-wronly free/ui/f.wronly through an overlay it mounted",
            "user outside: open-wronly app/ui/f.wronly through an overlay it mounted",
            "user outside: open-wronly app/ui/c.file through an overlay it mounted",
            "root inside, inode map full: create /jails/app/ri/n.nf.file (level1)",
            "root outside, inode map full: write a file made inside meanwhile",
            "root inside, inode map full: mkdir /jails/app/ri/n.full.dir answers ENOSPC",
            "root inside, inode map full: rename /jails/app/ri/n.nf.file /jails/app/ri/c.dir/n.full.across answers ENOSPC",
            "root inside, inode map full: link /jails/app/ri/n.nf.file /jails/app/ri/n.full.ln2 answers ENOSPC",
            "root inside, inode map full: rename /jails/out/ri/o.full.mv",
            "root inside, one entry freed: mkdir in the tree",
            "inode map full: the refusal is recorded for capsule app",
        ],
        disk_mkfs: &[],
    });
}

#[test]
fn level0_root_outside_allowed_until_raised() {
    run(Scenario {
        name: "level0",
        options: vec![],
        env: vec![],
        min_passed: 950,
        required: &[
            "sealtool level 0 loads the guard at level 0",
            "sealtool level prints 0",
            "root outside: open O_WRONLY (tree ro, sealed)",
            "user outside: open O_WRONLY (tree uo, sealed)",
            "root outside: open O_WRONLY (frozen bin/ro, sealed)",
            "root outside at level 1: write",
        ],
        disk_mkfs: &[],
    });
}

#[test]
fn ext4_block_device_identity() {
    run(Scenario {
        name: "ext4",
        options: vec!["--disk".into(), "{tmp}/disk.img".into()],
        env: vec![FULL_MAP_CAPACITY],
        min_passed: 950,
        required: &[
            "ext4: /disk/base is on a block device",
            "root outside: open O_WRONLY (tree ro, sealed)",
            "root inside: open O_WRONLY (tree ri, sealed)",
            // A freed inode number handed out again by ext4 protects nothing.
            "root outside: write a new unrelated file that got the inode number of a dir",
            "root outside: write a new unrelated file that got the inode number of a renamed",
            "root inside, inode map full: mkdir",
            "inode map full: the record names the directory",
            // A file handle resolved without the file's directory (ext4 after the caches were
            // dropped): a file made inside has an entry of its own there.
            "ext4: a file handle comes back without the file's directory",
            "root outside: open_by_handle_at(O_WRONLY) of a file made inside",
            "the move gives the file an entry of its own (ext4: 0)",
            "root outside: reopen for writing the unlinked file of a removed directory it holds (sealed)",
            "the failed rmdir releases no entry (sealed)",
            "the rmdir of an empty directory releases no entry (sealed)",
            "root outside: open-wronly c.within2 through an overlay whose upper layer is the tree",
            "user outside: open-wronly app/ui/f.wronly through an overlay it mounted",
            "user outside: open-wronly app/ui/c.file through an overlay it mounted",
            "root outside: open_by_handle_at(O_WRONLY) of an unrelated file on the capsule's filesystem",
        ],
        disk_mkfs: &[],
    });
}

#[test]
fn nolsm_seal_recorded_but_not_enforced() {
    run(Scenario {
        name: "nolsm",
        options: vec![],
        env: vec![("VM_APPEND", "lsm=landlock,yama")],
        min_passed: 18,
        required: &[
            "nolsm: the bpf LSM is not active",
            "sealtool seal without the bpf LSM exits 3",
            "seal says enforcement is NOT active",
            "sealtool status says NOT active",
            "sealtool list shows app sealed",
            "re-registering the sealed capsule is refused",
        ],
        disk_mkfs: &[],
    });
}

/// ext4 keeps a directory's link count at 1 past 65,000 subdirectories: an inside rmdir of such
/// a directory, not empty, must leave it protected (the guard releases no directory's entry:
/// only the filesystem, after the hook, knows whether it was empty).
#[test]
fn ext4_one_link_directory_stays_protected() {
    run(Scenario {
        name: "onelink",
        options: vec!["--disk".into(), "{tmp}/disk.img".into()],
        env: vec![],
        min_passed: 10,
        required: &[
            "ext4 counts one link for a directory with 65,001 subdirectories",
            "root inside: rmdir of the one-link directory answers ENOTEMPTY",
            "the failed rmdir of the one-link directory releases no entry",
            "root outside: create in the one-link directory after the failed rmdir",
            "root outside: rename a file into the one-link directory after the failed rmdir",
        ],
        disk_mkfs: &["-N", "80000"],
    });
}
