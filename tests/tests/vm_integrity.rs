//! The guard-integrity suite (tests/vm/guest/integrity-suite.sh): the guard's own programs,
//! maps and requests tried as root outside a capsule would, across the raise from level 0
//! to 1 (one boot), and level 2's locks after a plain `sealtool enforce` (a second boot).
//!
//! Run: `cargo test -p capsule-tests --test vm_integrity -- --test-threads=1`.

use std::path::Path;
use std::process::Command;

fn tests_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The suite's last line: `integrity-suite: N passed, M failed`.
fn summary(stdout: &str) -> Option<(usize, usize)> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("integrity-suite: "))?;
    let mut words = line.strip_prefix("integrity-suite: ")?.split_whitespace();
    let passed = words.next()?.parse().ok()?;
    words.next()?;
    let failed = words.next()?.parse().ok()?;
    Some((passed, failed))
}

fn run(which: &str, min_passed: usize) {
    let out = Command::new(tests_dir().join("vm/run"))
        .args(["--timeout", "300", "--add"])
        .arg(format!(
            "{}:/integrity-suite.sh",
            tests_dir().join("vm/guest/integrity-suite.sh").display()
        ))
        .arg("--add")
        .arg(format!(
            "{}:/inside.sh",
            tests_dir().join("vm/guest/inside.sh").display()
        ))
        .args(["--", "sh", "/integrity-suite.sh", which])
        .output()
        .expect("cannot start tests/vm/run");
    let all = String::from_utf8_lossy(&out.stdout);
    println!("--- integrity-suite {which} ({})\n{all}", out.status);
    let stdout = capsule_tests::final_boot(&all);
    let fails: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL: ")).collect();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{which}: the suite failed:\n{}\n--- stderr:\n{}",
        fails.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    let (passed, failed) = summary(stdout).expect("no summary line");
    assert_eq!(failed, 0, "{}", fails.join("\n"));
    assert!(
        passed >= min_passed,
        "{which}: only {passed} checks passed, expected at least {min_passed}"
    );
}

#[test]
fn summary_line_is_parsed() {
    assert_eq!(summary("integrity-suite: 5 passed, 1 failed"), Some((5, 1)));
    assert_eq!(summary("none"), None);
}

#[test]
fn nothing_from_level_0_stands_in_for_the_guard() {
    run("levels", 60);
}

#[test]
fn plain_enforce_at_level_2_locks_as_level_2_does() {
    run("enforce2", 6);
}
