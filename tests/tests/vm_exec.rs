//! The exec-rule suite (tests/vm/guest/exec-suite.sh): inside a sealed capsule only code
//! nobody outside can change runs (its own files, its bases' sealed files), and `sealtool
//! run` starts a capsule in its own root; each hook of the rule shown load-bearing.
//!
//! Run: `cargo test -p capsule-tests --test vm_exec -- --test-threads=1`.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Mutex;

/// One guest at a time.
static VM_LOCK: Mutex<()> = Mutex::new(());

fn args(level: &str) -> Vec<OsString> {
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/guest");
    let add = |name: &str| -> Vec<OsString> {
        vec![
            "--add".into(),
            format!("{}:/{name}", guest.join(name).display()).into(),
        ]
    };
    let mut a: Vec<OsString> = vec!["--timeout".into(), "600".into()];
    a.extend(add("exec-suite.sh"));
    a.extend(add("checks.sh"));
    a.extend(add("inside.sh"));
    // A library no guest program links (its SONAME is not loaded), for dlopen.
    a.extend([
        "--add".into(),
        "/lib/x86_64-linux-gnu/libz.so.1:/usr/local/lib/libz-test.so".into(),
        "--".into(),
        "sh".into(),
        "/exec-suite.sh".into(),
        level.into(),
    ]);
    a
}

#[test]
fn only_sealed_code_runs_inside() {
    let _guard = VM_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    capsule_tests::run_guest_suite(&args("1"), "exec-suite", "level 1", 65);
}

/// Each hook of the rule is load-bearing: with it detached (level 0 allows that), the
/// checks that rely on it alone fail.
#[test]
fn without_each_hook_its_checks_fail() {
    let _guard = VM_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let hooks = [
        (
            "bprm_check_security",
            "dyn: a script outside every sealed tree",
        ),
        ("mmap_file", "dyn: map that program executable"),
        (
            "mmap_file",
            "dyn: dlopen a library outside every sealed tree",
        ),
        (
            "file_mprotect",
            "sdyn: anonymous memory made executable (mprotect)",
        ),
        ("mmap_file", "sdyn: anonymous executable memory"),
    ];
    let mut detach: Vec<&str> = hooks.iter().map(|(h, _)| *h).collect();
    detach.sort_unstable();
    detach.dedup();
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/run");
    let out = std::process::Command::new(run)
        .args(args("0"))
        .env("VM_ENV_EXEC_SUITE_DETACH", detach.join(" "))
        .output()
        .expect("cannot start tests/vm/run");
    let all = String::from_utf8_lossy(&out.stdout);
    println!("--- exec-suite, hooks detached ({})\n{all}", out.status);
    let stdout = capsule_tests::final_boot(&all);
    assert_ne!(
        out.status.code(),
        Some(0),
        "the suite passed with hooks detached"
    );
    let fails: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL: ")).collect();
    for (hook, check) in hooks {
        assert!(
            fails
                .iter()
                .any(|f| f.starts_with(&format!("FAIL: {check}"))),
            "with {hook} detached, `{check}` did not fail"
        );
    }
    // The controls don't depend on them.
    assert!(stdout
        .contains("PASS: dyn: run a base's program (/bin/busybox, sealed as sys-bin; control)"));
    assert!(stdout.contains("PASS: sdyn: a base's program runs (control)"));
}
