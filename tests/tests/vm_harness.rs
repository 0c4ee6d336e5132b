//! Tests of the VM harness itself (tests/vm/run): exit status, output capture, the guest's
//! kernel features, --add, --disk, and the failure paths (kernel panic, hang).
//!
//! Each test boots one or two qemu guests (a few seconds each under TCG). The guests are run
//! one at a time (a lock in this file), so the tests may run on any number of threads; each
//! keeps its files (disk images, console logs) in its own temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The harness's exit codes for its own failures.
const EXIT_TIMEOUT: i32 = 124;
const EXIT_HARNESS: i32 = 125;

/// Two TCG guests at once on a 2-core machine would only slow each other down (and make the
/// timing checks below flaky): one at a time.
static VM_LOCK: Mutex<()> = Mutex::new(());

fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/run")
}

struct Run {
    code: i32,
    /// What the last boot printed (after any `vm-retry:` line).
    stdout: Vec<u8>,
    /// Everything, earlier boots included.
    all_stdout: Vec<u8>,
    stderr: String,
    elapsed: Duration,
    console: String,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn context(&self) -> String {
        format!(
            "exit {}, {:.1} s\n--- stdout:\n{}\n--- stderr:\n{}\n--- console:\n{}",
            self.code,
            self.elapsed.as_secs_f64(),
            String::from_utf8_lossy(&self.all_stdout),
            self.stderr,
            self.console
        )
    }
}

/// Runs `tests/vm/run OPTIONS -- COMMAND...` and collects what it printed, its exit code and
/// this run's guest console.
fn vm(options: &[&str], command: &[&str]) -> Run {
    vm_env(&[], options, command)
}

/// [`vm`] with more environment for the harness.
fn vm_env(env: &[(&str, &str)], options: &[&str], command: &[&str]) -> Run {
    let _guard = VM_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let console_log = dir.path().join("console.log");
    let start = Instant::now();
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(harness())
        .args(options)
        .arg("--")
        .args(command)
        .env("VM_CONSOLE_LOG", &console_log)
        .envs(env.iter().copied())
        .output()
        .expect("cannot start tests/vm/run");
    let elapsed = start.elapsed();
    let code = status
        .code()
        .unwrap_or_else(|| panic!("tests/vm/run killed by a signal: {status:?}"));
    Run {
        code,
        stdout: capsule_tests::final_boot_bytes(&stdout).to_vec(),
        all_stdout: stdout,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        elapsed,
        console: std::fs::read_to_string(&console_log).unwrap_or_default(),
    }
}

fn sh(script: &str) -> Run {
    vm(&[], &["sh", "-c", script])
}

/// stderr without the harness's own warnings (VM_NO_BUILD=1 with a binary not built).
fn stderr_of_command(run: &Run) -> String {
    run.stderr
        .lines()
        .filter(|l| !l.starts_with("vm: warning:"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn exit_status_propagates() {
    let r = sh("exit 7");
    assert_eq!(r.code, 7, "{}", r.context());
    let r = vm(&[], &["true"]);
    assert_eq!(r.code, 0, "{}", r.context());
    // A command killed by a signal: the guest's sh reports 128 + signal.
    let r = sh("kill -9 $$");
    assert_eq!(r.code, 137, "{}", r.context());
    // Not found: the guest's 127, not a harness failure.
    let r = vm(&[], &["/no/such/command"]);
    assert_eq!(r.code, 127, "{}", r.context());
}

#[test]
fn output_is_exact_and_free_of_kernel_messages() {
    let r = sh("echo hello; echo world >&2");
    assert_eq!(r.code, 0, "{}", r.context());
    assert_eq!(r.stdout(), "hello\n", "{}", r.context());
    assert_eq!(stderr_of_command(&r), "world\n", "{}", r.context());

    // Kernel messages at emergency level reach the console while the command prints: they
    // must be on the console and nowhere in the command's output. Bytes pass unchanged
    // (no \n -> \r\n), /dev/stdout and /dev/stderr can be reopened, and a large output
    // arrives whole.
    let script = r#"
        for i in 1 2 3; do
            echo "<0>kmsg-mark-$i" > /dev/kmsg
            echo "out-$i"
            echo "err-$i" >&2
        done
        printf 'a\r\nb\001\377c\n'
        echo reopened-out > /dev/stdout
        echo reopened-err > /dev/stderr
        yes 0123456789abcdef | head -c 1000000
    "#;
    let r = sh(script);
    assert_eq!(r.code, 0, "{}", r.context());
    let mut expected = b"out-1\nout-2\nout-3\na\r\nb\x01\xffc\nreopened-out\n".to_vec();
    expected.extend(b"0123456789abcdef\n".iter().cycle().take(1_000_000));
    assert!(
        r.stdout == expected,
        "stdout differs ({} bytes, {} expected)\n{}",
        r.stdout.len(),
        expected.len(),
        r.context()
    );
    assert_eq!(
        stderr_of_command(&r),
        "err-1\nerr-2\nerr-3\nreopened-err\n",
        "{}",
        r.context()
    );
    for i in 1..=3 {
        assert!(
            r.console.contains(&format!("kmsg-mark-{i}")),
            "kernel message {i} not on the console:\n{}",
            r.context()
        );
    }
    assert!(!r.stderr.contains("kmsg-mark"), "{}", r.context());
}

#[test]
fn guest_has_bpf_lsm_btf_cgroup2_and_bpffs() {
    let r = sh(r#"
        echo "lsm=$(cat /sys/kernel/security/lsm)"
        [ -s /sys/kernel/btf/vmlinux ] && echo btf=yes
        awk '{ print "mount " $2 " " $3 }' /proc/mounts
        echo "uname=$(uname -r)"
        touch /jails-test && mkdir -p /jails/a && echo root-writable
    "#);
    assert_eq!(r.code, 0, "{}", r.context());
    let out = r.stdout();
    let lsm = out
        .lines()
        .find_map(|l| l.strip_prefix("lsm="))
        .expect("no lsm line");
    assert!(
        lsm.split(',').any(|m| m == "bpf"),
        "bpf not among the LSMs: {lsm}"
    );
    assert!(
        out.lines().any(|l| l == "btf=yes"),
        "no /sys/kernel/btf/vmlinux\n{out}"
    );
    for mount in [
        "mount /sys/fs/cgroup cgroup2",
        "mount /sys/fs/bpf bpf",
        "mount /sys/kernel/security securityfs",
        "mount /proc proc",
        "mount /dev devtmpfs",
        "mount /tmp tmpfs",
    ] {
        assert!(out.lines().any(|l| l == mount), "missing `{mount}`\n{out}");
    }
    assert!(out.lines().any(|l| l.starts_with("uname=6.1.0-")), "{out}");
    assert!(out.lines().any(|l| l == "root-writable"), "{out}");
}

#[test]
fn workspace_binaries_are_on_path_with_their_libraries() {
    // The bin targets of the workspace's packages, as the harness finds them.
    let meta = Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        meta.status.success(),
        "{}",
        String::from_utf8_lossy(&meta.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).expect("metadata json");
    let mut bins = Vec::new();
    for pkg in meta["packages"].as_array().unwrap() {
        for t in pkg["targets"].as_array().unwrap() {
            if t["kind"].as_array().unwrap().iter().any(|k| k == "bin") {
                bins.push(t["name"].as_str().unwrap().to_string());
            }
        }
    }
    // Each must be found on PATH, and the dynamic loader must resolve all its libraries.
    let mut script = String::from("set -e\n");
    for b in &bins {
        script.push_str(&format!(
            "p=$(command -v {b}); echo \"found $p\"; /lib64/ld-linux-x86-64.so.2 --list \"$p\" >/dev/null; echo \"loads {b}\"\n"
        ));
    }
    script.push_str("echo done\n");
    let r = sh(&script);
    assert_eq!(r.code, 0, "{}", r.context());
    let out = r.stdout();
    for b in &bins {
        assert!(
            out.contains(&format!("found /usr/local/bin/{b}\n")),
            "{b} not on PATH\n{}",
            r.context()
        );
        assert!(
            out.contains(&format!("loads {b}\n")),
            "{b} does not load\n{}",
            r.context()
        );
    }
    assert!(out.ends_with("done\n"), "{}", r.context());
}

#[test]
fn unprivileged_users_exist_and_runas_switches() {
    let r = sh(r#"
        id -u
        runas user id -u
        runas user sh -c 'echo "args:$1|$2"' zero 'a b' "-c"
        runas nobody id -u
        su -s /bin/sh user -c 'id -un; echo $HOME'
        runas user sh -c 'touch /root/x' 2>/dev/null && echo user-wrote-root || echo user-denied
        runas user sh -c 'touch /tmp/by-user && echo user-wrote-tmp'
    "#);
    assert_eq!(r.code, 0, "{}", r.context());
    assert_eq!(
        r.stdout(),
        "0\n1000\nargs:a b|-c\n65534\nuser\n/home/user\nuser-denied\nuser-wrote-tmp\n",
        "{}",
        r.context()
    );
}

#[cfg(unix)]
#[test]
fn add_copies_files_and_directories_keeping_modes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("script.sh");
    std::fs::write(&file, "#!/bin/sh\necho script-ran \"$@\"\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o751)).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/data"), "payload\n").unwrap();
    std::fs::set_permissions(
        tree.join("sub/data"),
        std::fs::Permissions::from_mode(0o604),
    )
    .unwrap();
    std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o710)).unwrap();
    let plain = dir.path().join("plain.txt");
    std::fs::write(&plain, "same path\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o640)).unwrap();

    let add_file = format!("{}:/opt/bin/script", file.display());
    let add_tree = format!("{}:/tmp/tree", tree.display()); // under the guest's tmpfs /tmp
    let add_plain = plain.display().to_string(); // no GUEST_PATH: the same path
    let script = format!(
        "stat -c '%a %n' /opt/bin/script /tmp/tree /tmp/tree/sub/data {p}; /opt/bin/script x; cat /tmp/tree/sub/data {p}",
        p = plain.display()
    );
    let r = vm(
        &["--add", &add_file, "--add", &add_tree, "--add", &add_plain],
        &["sh", "-c", &script],
    );
    assert_eq!(r.code, 0, "{}", r.context());
    assert_eq!(
        r.stdout(),
        format!(
            "751 /opt/bin/script\n710 /tmp/tree\n604 /tmp/tree/sub/data\n640 {p}\nscript-ran x\npayload\nsame path\n",
            p = plain.display()
        ),
        "{}",
        r.context()
    );
}

#[test]
fn disk_persists_between_runs() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let image_s = image.to_str().unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let token = format!("token-{}-{nanos}", std::process::id());

    let r = vm(
        &["--disk", image_s, "--disk-size", "64M"],
        &[
            "sh",
            "-c",
            &format!("echo {token} > /disk/token && df -k /disk | awk 'NR==2 {{print $2}}'"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.context());
    assert!(image.is_file(), "the image was not created");
    let kib: u64 = r
        .stdout()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("df output: {}", r.context()));
    assert!(
        (40_000..=66_000).contains(&kib),
        "a 64M disk shows {kib} KiB"
    );

    let r = vm(&["--disk", image_s], &["cat", "/disk/token"]);
    assert_eq!(r.code, 0, "{}", r.context());
    assert_eq!(r.stdout(), format!("{token}\n"), "{}", r.context());

    // Without --disk there is no /disk content.
    let r = sh("ls /disk 2>/dev/null | wc -l");
    assert_eq!(r.stdout().trim(), "0", "{}", r.context());
}

#[test]
fn kernel_panic_fails_fast_with_a_clear_message() {
    let r = vm(
        &["--timeout", "110"],
        &[
            "sh",
            "-c",
            "echo before-panic; echo c > /proc/sysrq-trigger; echo after-panic",
        ],
    );
    assert_eq!(r.code, EXIT_HARNESS, "{}", r.context());
    assert!(r.stderr.contains("KERNEL PANIC"), "{}", r.context());
    assert!(
        r.stderr.contains("sysrq triggered crash"),
        "{}",
        r.context()
    );
    assert!(!r.stdout().contains("after-panic"), "{}", r.context());
    // A panic that is not a soft lockup is not retried.
    assert!(!r.stderr.contains("GUEST SOFT LOCKUP"), "{}", r.context());
    assert!(
        r.elapsed < Duration::from_secs(60),
        "took {:?}\n{}",
        r.elapsed,
        r.context()
    );
}

#[test]
fn soft_lockup_boots_again_once_and_restores_the_disk() {
    // A soft lockup, as the harness sees one: the kernel's words on the console, then a
    // panic before the command reports its status. Each boot appends to a file on the disk.
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let image_s = image.to_str().unwrap();
    let script = "echo boot-$(cat /disk/boots 2>/dev/null | wc -l); echo b >> /disk/boots; sync; \
                  echo '<0>watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [test]' > /dev/kmsg; \
                  echo c > /proc/sysrq-trigger";
    let r = vm(
        &["--disk", image_s, "--disk-size", "64M", "--timeout", "110"],
        &["sh", "-c", script],
    );
    // Booted twice (VM_LOCKUP_RETRIES defaults to 1), the second time on the disk as it was
    // before the first, then reported as the panic it is.
    assert_eq!(r.code, EXIT_HARNESS, "{}", r.context());
    let all = String::from_utf8_lossy(&r.all_stdout).into_owned();
    assert_eq!(
        all.lines().filter(|l| l.starts_with("vm-retry:")).count(),
        1,
        "{}",
        r.context()
    );
    assert_eq!(all.matches("boot-0").count(), 2, "{}", r.context());
    assert_eq!(r.stdout(), "boot-0\n", "{}", r.context());
    assert!(r.stderr.contains("GUEST SOFT LOCKUP"), "{}", r.context());
    assert!(r.stderr.contains("retry 1 of 1"), "{}", r.context());
    assert!(r.stderr.contains("KERNEL PANIC"), "{}", r.context());
    // The last boot's write stays; the first one's was rolled back.
    let r = vm(&["--disk", image_s], &["cat", "/disk/boots"]);
    assert_eq!(r.code, 0, "{}", r.context());
    assert_eq!(r.stdout(), "b\n", "{}", r.context());

    // Retries off: one boot.
    let r = vm_env(
        &[("VM_LOCKUP_RETRIES", "0")],
        &["--timeout", "110"],
        &[
            "sh",
            "-c",
            "echo '<0>soft lockup - test' > /dev/kmsg; echo c > /proc/sysrq-trigger",
        ],
    );
    assert_eq!(r.code, EXIT_HARNESS, "{}", r.context());
    assert!(!r.stderr.contains("GUEST SOFT LOCKUP"), "{}", r.context());
    assert!(!String::from_utf8_lossy(&r.all_stdout).contains("vm-retry:"));
}

#[test]
fn hang_times_out() {
    let r = vm(&["--timeout", "20"], &["sleep", "1000"]);
    assert_eq!(r.code, EXIT_TIMEOUT, "{}", r.context());
    assert!(r.stderr.contains("TIMEOUT"), "{}", r.context());
    assert!(r.elapsed >= Duration::from_secs(20), "{:?}", r.elapsed);
    assert!(r.elapsed < Duration::from_secs(60), "{:?}", r.elapsed);
}

#[test]
fn lost_status_is_a_failure() {
    // The guest powers off under the command: no status comes back.
    let r = vm(&[], &["poweroff", "-f"]);
    assert_eq!(r.code, EXIT_HARNESS, "{}", r.context());
    assert!(r.stderr.contains("LOST STATUS"), "{}", r.context());
}

/// VM_ICOUNT: the guest's clocks count instructions, so the same work measures the same in
/// the guest run after run (with the host's clock, TCG drifts by tens of percent); the
/// benchmark of fsguard's overhead relies on that.
#[test]
fn icount_clock_counts_instructions() {
    let r = vm_env(
        &[("VM_ICOUNT", "0"), ("VM_SMP", "1")],
        &[],
        &[
            "sh",
            "-c",
            "mount -t tmpfs tmpfs /mnt && for i in 1 2 3 4; do fsops-bench ops /mnt 500 2; done",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.context());
    let secs: Vec<f64> = r
        .stdout()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(secs.len(), 4, "{}", r.context());
    let lo = secs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = secs.iter().copied().fold(0.0, f64::max);
    assert!(
        lo > 0.0 && hi / lo < 1.02,
        "guest times {secs:?}\n{}",
        r.context()
    );

    let r = vm_env(&[("VM_ICOUNT", "fast")], &[], &["true"]);
    assert_eq!(r.code, EXIT_HARNESS, "{}", r.context());
    assert!(r.stderr.contains("VM_ICOUNT wants"), "{}", r.context());
}

#[test]
fn usage_errors_fail_without_booting() {
    let out = Command::new(harness()).output().unwrap();
    assert_eq!(out.status.code(), Some(EXIT_HARNESS));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no command given"));
    let out = Command::new(harness())
        .args(["--no-such-option", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_HARNESS));
    let out = Command::new(harness())
        .args(["--add", "/no/such/path", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_HARNESS));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{out:?}"
    );
}
