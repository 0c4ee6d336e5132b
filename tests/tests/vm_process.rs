//! The process-capsule suite (tests/vm/guest/process-suite.sh) in the test guest, one boot
//! per level: outside processes can't attach to, debug, pin or join a sealed capsule at any
//! level, may see and signal it only as root at level 0, and inside processes work as before.
//!
//! A test passes when the suite exits 0, its summary says `0 failed` and at least a minimum
//! number of checks passed (a suite that silently ran nothing fails).
//!
//! Run: `cargo test -p capsule-tests --test vm_process -- --test-threads=1`.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// One guest at a time.
static VM_LOCK: Mutex<()> = Mutex::new(());

fn tests_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The suite's last line: `process-suite: N passed, M failed`.
fn summary(stdout: &str) -> Option<(usize, usize)> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("process-suite: "))?;
    let mut words = line.strip_prefix("process-suite: ")?.split_whitespace();
    let passed = words.next()?.parse().ok()?;
    words.next()?;
    let failed = words.next()?.parse().ok()?;
    Some((passed, failed))
}

/// Runs the suite at `level` (with the hooks in `detach` detached after the seal); returns
/// its stdout and exit status.
fn boot(level: &str, detach: &str) -> (String, Option<i32>, String) {
    let _guard = VM_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let console_log = dir.path().join("console.log");
    let guest = tests_dir().join("vm/guest");
    let out = Command::new(tests_dir().join("vm/run"))
        .args(["--timeout", "400", "--add"])
        .arg(format!(
            "{}:/process-suite.sh",
            guest.join("process-suite.sh").display()
        ))
        .arg("--add")
        .arg(format!("{}:/inside.sh", guest.join("inside.sh").display()))
        .args(["--", "sh", "/process-suite.sh", level])
        .env("VM_CONSOLE_LOG", &console_log)
        .env("VM_ENV_PROCESS_SUITE_DETACH", detach)
        .output()
        .expect("cannot start tests/vm/run");
    let all = String::from_utf8_lossy(&out.stdout);
    println!("--- process-suite {level} ({})\n{all}", out.status);
    let stdout = capsule_tests::final_boot(&all).to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.is_empty() {
        println!("--- stderr:\n{stderr}");
    }
    let console = std::fs::read_to_string(&console_log).unwrap_or_default();
    (stdout, out.status.code(), console)
}

fn run(level: &str, min_passed: usize) {
    let (stdout, code, console) = boot(level, "");
    let fails: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL: ")).collect();
    assert_eq!(
        code,
        Some(0),
        "level {level}: the suite failed:\n{}\n--- console:\n{console}",
        fails.join("\n")
    );
    let (passed, failed) = summary(&stdout).expect("no summary line");
    assert_eq!(failed, 0, "{}", fails.join("\n"));
    assert!(
        passed >= min_passed,
        "level {level}: only {passed} checks passed, expected at least {min_passed}"
    );
}

#[test]
fn summary_line_is_parsed() {
    assert_eq!(
        summary("x\nprocess-suite: 12 passed, 3 failed\n"),
        Some((12, 3))
    );
    assert_eq!(summary("nothing"), None);
}

#[test]
fn level0_root_may_see_and_signal_but_never_attach() {
    run("0", 120);
}

#[test]
fn level1_nobody_outside_sees_signals_or_attaches() {
    run("1", 120);
}

/// Each process hook is load-bearing: with it detached (level 0 allows that), the checks
/// that rely on it fail, while the rest of the suite still runs.
#[test]
fn level0_without_each_hook_its_checks_fail() {
    let hooks = [
        (
            "ptrace_access_check",
            "root-out: ptrace-attach on a capsule process",
        ),
        (
            "ptrace_access_check",
            "user-out: proc-mem on a capsule process",
        ),
        (
            "ptrace_access_check",
            "root-out: process_vm_writev into a capsule process",
        ),
        (
            "ptrace_traceme",
            "a capsule process can't make its outside parent its tracer",
        ),
        ("task_kill", "user-out: kill -0 a capsule process"),
        (
            "task_setscheduler",
            "root-out: setaffinity on a capsule process",
        ),
        ("task_setnice", "root-out: setpriority on a capsule process"),
        ("task_setioprio", "root-out: ioprio on a capsule process"),
        (
            "ptrace_access_check",
            "root-out: setns-pidfd on a capsule process",
        ),
        (
            "inode_follow_link",
            "root-out: open /proc/PID/ns/uts of a capsule process to setns (level 0)",
        ),
        ("task_alloc", "root-out: clone3 into the capsule's cgroup"),
        (
            "task_alloc",
            "user-out: clone3 into the capsule's cgroup from two threads",
        ),
        (
            "file_permission",
            "root-out: write a capsule process's memory through /proc/PID/mem opened before the seal",
        ),
        (
            "file_permission",
            "root-out: read a capsule process's memory through task/TID/mem of a thread gone since",
        ),
        (
            "file_ioctl",
            "root-out: answer it through that listener (SEND)",
        ),
        (
            "inode_follow_link",
            "root-out: list a capsule process's directory through /proc/PID/cwd",
        ),
        ("task_setrlimit", "root-out: prlimit on a capsule process"),
        ("task_setrlimit", "user-out: prlimit on a capsule process"),
        (
            "inode_follow_link",
            "root-out: open a capsule process's descriptor through /proc/PID/fd/2 (level 0)",
        ),
        (
            "inode_follow_link",
            "root-out: open a capsule process's mapping through /proc/PID/map_files (level 0)",
        ),
    ];
    let mut detach: Vec<&str> = hooks.iter().map(|(h, _)| *h).collect();
    detach.sort_unstable();
    detach.dedup();
    let (stdout, code, _) = boot("0", &detach.join(" "));
    assert_ne!(code, Some(0), "the suite passed with hooks detached");
    let fails: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL: ")).collect();
    for (hook, check) in hooks {
        assert!(
            fails
                .iter()
                .any(|f| f.starts_with(&format!("FAIL: {check}"))),
            "with {hook} detached, `{check}` did not fail"
        );
    }
    // Controls and inside checks don't depend on the detached hooks: they still pass.
    assert!(stdout.contains("PASS: root-out: ptrace-attach on an outside process (control)"));
    assert!(stdout.contains("PASS: the inside workload is all allowed"));
}
