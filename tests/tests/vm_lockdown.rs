//! The lock-down suite (tests/vm/guest/lockdown-suite.sh) across two boots of the test guest
//! on one ext4 disk: boot 1 seals a tree (registry on the disk too), checks the guard's
//! self-protection at level 1 and everything level 2 refuses, and raises to level 2; boot 2
//! runs `sealtool enforce --boot` as init would and checks it all again, plus every outside
//! write, and a clean verify.
//!
//! Run: `cargo test -p capsule-tests --test vm_lockdown -- --test-threads=1`.

use std::ffi::OsString;
use std::path::Path;

fn boot(disk: &Path, which: &str, min_passed: usize) {
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/guest");
    let suite = guest.join("lockdown-suite.sh");
    let args: Vec<OsString> = vec![
        "--timeout".into(),
        "400".into(),
        "--disk".into(),
        disk.into(),
        "--add".into(),
        format!("{}:/lockdown-suite.sh", suite.display()).into(),
        "--add".into(),
        format!("{}:/checks.sh", guest.join("checks.sh").display()).into(),
        "--".into(),
        "sh".into(),
        "/lockdown-suite.sh".into(),
        which.into(),
    ];
    capsule_tests::run_guest_suite(&args, "lockdown-suite", which, min_passed);
}

#[test]
fn level2_holds_across_a_reboot_with_enforce_boot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk.img");
    boot(&disk, "boot1", 180);
    boot(&disk, "boot2", 90);
}
