//! The audit suite (tests/vm/guest/audit-suite.sh) in the test guest: refused attempts show
//! up in `sealtool audit` with the right fields and in syslog, `--check` passes and then fails
//! on an edited record, and a flood of a million refused opens is answered, rate-limited and
//! accounted for exactly (records + lost counts = the kernel's count) without hanging the
//! guest.
//!
//! One boot (TCG: boot 30-60 s, the flood a few minutes). The guest's output is printed
//! (shown on failure, or with --nocapture); the test passes when the suite exits 0, its
//! summary says `0 failed` and at least a minimum number of checks passed. Set
//! AUDIT_FLOOD_N to flood with fewer attempts while iterating.
//!
//! Run: `cargo test -p capsule-tests --test vm_audit -- --test-threads=1`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

/// Host-side limit for the boot and the whole suite.
const TIMEOUT_S: &str = "1200";

/// The suite's last line: `audit-suite: N passed, M failed`.
fn summary(stdout: &str) -> Option<(usize, usize)> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("audit-suite: "))?;
    let (passed, failed) = line.strip_prefix("audit-suite: ")?.split_once(", ")?;
    Some((
        passed.strip_suffix(" passed")?.parse().ok()?,
        failed.strip_suffix(" failed")?.parse().ok()?,
    ))
}

#[test]
fn summary_line_is_parsed() {
    assert_eq!(
        summary("PASS: x\naudit-suite: 12 passed, 0 failed\n"),
        Some((12, 0))
    );
    assert_eq!(summary("audit-suite: many passed"), None);
}

#[test]
fn refusals_are_recorded_checked_and_a_flood_is_accounted_for() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = tests.join("vm/guest/audit-suite.sh");
    let dir = tempfile::tempdir().expect("tempdir");
    let console_log = dir.path().join("console.log");
    let flood = std::env::var("AUDIT_FLOOD_N").unwrap_or_else(|_| "1000000".into());
    let start = Instant::now();
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(tests.join("vm/run"))
        .arg("--timeout")
        .arg(TIMEOUT_S)
        .arg("--add")
        .arg(format!("{}:/audit-suite.sh", script.display()))
        .args(["--", "sh", "/audit-suite.sh"])
        .env("VM_CONSOLE_LOG", &console_log)
        .env("VM_ENV_AUDIT_FLOOD_N", &flood)
        // The registry lives in the guest's RAM: room for the log of a million refusals.
        .env(
            "VM_MEM",
            std::env::var("VM_MEM").unwrap_or_else(|_| "2048".into()),
        )
        .output()
        .expect("cannot start tests/vm/run");
    let all = String::from_utf8_lossy(&stdout);
    let stdout = capsule_tests::final_boot(&all);
    let stderr = String::from_utf8_lossy(&stderr);
    println!(
        "--- audit-suite ({:.1} s, flood {flood}, {status})\n{all}",
        start.elapsed().as_secs_f64()
    );
    if !stderr.is_empty() {
        println!("--- stderr:\n{stderr}");
    }
    let console = || std::fs::read_to_string(&console_log).unwrap_or_default();
    let fails: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL: ")).collect();
    assert_eq!(
        status.code(),
        Some(0),
        "the suite failed ({} FAIL lines):\n{}\n--- console:\n{}",
        fails.len(),
        fails.join("\n"),
        console()
    );
    let (passed, failed) = summary(stdout)
        .unwrap_or_else(|| panic!("no `audit-suite: N passed, M failed` line\n{}", console()));
    assert_eq!(failed, 0, "{}", fails.join("\n"));
    assert!(
        passed >= 60,
        "only {passed} checks passed, expected at least 60"
    );
    for required in [
        "the collector runs",
        "root write: path",
        "user write: uid",
        "root unlink: op",
        "syslog: the root write",
        "sealtool audit --check exits 0",
        "the kernel counted exactly",
        "the log accounts for exactly the",
        "the log accounts for every refusal the kernel counted",
        "sealtool audit --check exits 1 after an edit",
        "sealtool audit --check names record 2",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("PASS: {required}"))),
            "no `PASS: {required}...` line"
        );
    }
}
