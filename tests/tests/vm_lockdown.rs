//! The lock-down suite (tests/vm/guest/lockdown-suite.sh) across two boots of the test guest
//! on one ext4 disk: boot 1 seals a tree (registry on the disk too), checks the guard's
//! self-protection at level 1 and everything level 2 refuses, and raises to level 2; boot 2
//! runs `sealtool enforce --boot` as init would and checks it all again, plus every outside
//! write, and a clean verify.
//!
//! Run: `cargo test -p capsule-tests --test vm_lockdown -- --test-threads=1`.

use std::path::Path;
use std::process::Command;

fn tests_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The suite's last line: `lockdown-suite: N passed, M failed`.
fn summary(stdout: &str) -> Option<(usize, usize)> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("lockdown-suite: "))?;
    let mut words = line.strip_prefix("lockdown-suite: ")?.split_whitespace();
    let passed = words.next()?.parse().ok()?;
    words.next()?;
    let failed = words.next()?.parse().ok()?;
    Some((passed, failed))
}

fn boot(disk: &Path, which: &str, min_passed: usize) {
    let out = Command::new(tests_dir().join("vm/run"))
        .args(["--timeout", "400", "--disk"])
        .arg(disk)
        .arg("--add")
        .arg(format!(
            "{}:/lockdown-suite.sh",
            tests_dir().join("vm/guest/lockdown-suite.sh").display()
        ))
        .args(["--", "sh", "/lockdown-suite.sh", which])
        .output()
        .expect("cannot start tests/vm/run");
    let all = String::from_utf8_lossy(&out.stdout);
    println!("--- lockdown-suite {which} ({})\n{all}", out.status);
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
    assert_eq!(summary("lockdown-suite: 5 passed, 1 failed"), Some((5, 1)));
    assert_eq!(summary("none"), None);
}

#[test]
fn level2_holds_across_a_reboot_with_enforce_boot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk.img");
    boot(&disk, "boot1", 85);
    boot(&disk, "boot2", 60);
}
