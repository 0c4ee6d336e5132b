//! The lock-down suite (tests/vm/guest/lockdown-suite.sh) across two boots of the test guest
//! on two ext4 disks (the second holds nothing sealed): boot 1 seals a tree (registry on the disk too), checks the guard's
//! self-protection at level 1 and everything level 2 refuses, and raises to level 2; boot 2
//! runs `sealtool enforce --boot` as init would and checks it all again, plus every outside
//! write, and a clean verify.
//!
//! Run: `cargo test -p capsule-tests --test vm_lockdown -- --test-threads=1`.

use std::ffi::OsString;
use std::path::Path;

fn boot(disk: &Path, which: &str, min_passed: usize, extra: &[OsString]) {
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/guest");
    let suite = guest.join("lockdown-suite.sh");
    let mut args: Vec<OsString> = extra.to_vec();
    args.extend::<Vec<OsString>>(vec![
        "--timeout".into(),
        "400".into(),
        "--disk".into(),
        disk.into(),
        "--disk2".into(),
        disk.with_extension("2.img").into(),
        "--add".into(),
        format!("{}:/lockdown-suite.sh", suite.display()).into(),
        "--add".into(),
        format!("{}:/checks.sh", guest.join("checks.sh").display()).into(),
        "--add".into(),
        format!("{}:/inside.sh", guest.join("inside.sh").display()).into(),
        "--".into(),
        "sh".into(),
        "/lockdown-suite.sh".into(),
        which.into(),
    ]);
    capsule_tests::run_guest_suite(&args, "lockdown-suite", which, min_passed);
}

#[test]
fn level2_holds_across_a_reboot_with_enforce_boot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk.img");
    // A filesystem with an external journal, in two images that boot 1 finds on the second
    // disk (which holds nothing sealed: a loop over a file on the sealed disk would count as
    // its alias anyway, and the journal's protection would not be shown).
    let ej = dir.path().join("ej");
    let made = std::process::Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/lib/make-ext-journal"),
    )
    .arg(&ej)
    .status()
    .expect("run tests/vm/lib/make-ext-journal");
    assert!(made.success(), "make-ext-journal failed");
    let add = |f: &str| -> [OsString; 2] {
        [
            "--add".into(),
            format!("{}:/disk2/ej/{f}", ej.join(f).display()).into(),
        ]
    };
    let extra: Vec<OsString> = [add("journal.img"), add("fs.img")].concat();
    boot(&disk, "boot1", 200, &extra);
    boot(&disk, "boot2", 100, &[]);
}
