//! The guard-integrity suite (tests/vm/guest/integrity-suite.sh): the guard's own programs,
//! maps and requests tried as root outside a capsule would, across the raise from level 0
//! to 1 (one boot), and level 2's locks after a plain `sealtool enforce` (a second boot).
//!
//! Run: `cargo test -p capsule-tests --test vm_integrity -- --test-threads=1`.

use std::ffi::OsString;
use std::path::Path;

fn run(which: &str, min_passed: usize) {
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/guest");
    let args: Vec<OsString> = vec![
        "--timeout".into(),
        "700".into(),
        "--add".into(),
        format!(
            "{}:/integrity-suite.sh",
            guest.join("integrity-suite.sh").display()
        )
        .into(),
        "--add".into(),
        format!("{}:/inside.sh", guest.join("inside.sh").display()).into(),
        "--add".into(),
        format!("{}:/checks.sh", guest.join("checks.sh").display()).into(),
        "--".into(),
        "sh".into(),
        "/integrity-suite.sh".into(),
        which.into(),
    ];
    capsule_tests::run_guest_suite(&args, "integrity-suite", which, min_passed);
}

#[test]
fn nothing_from_level_0_stands_in_for_the_guard() {
    run("levels", 125);
}

#[test]
fn plain_enforce_at_level_2_locks_as_level_2_does() {
    run("enforce2", 6);
}
