//! Helpers shared by the end-to-end suites in tests/tests (the suites themselves live there).

/// Where the output of the last boot starts in a `tests/vm/run` stdout. The harness boots
/// again after a guest soft lockup and prints a `vm-retry:` line first, which makes everything
/// the hung boot printed before it void; a suite's verdict must come from what follows.
fn final_boot_start(stdout: &[u8]) -> usize {
    let mut start = 0;
    let mut line_start = 0;
    for (i, b) in stdout.iter().enumerate() {
        if *b == b'\n' {
            if stdout[line_start..].starts_with(b"vm-retry:") {
                start = i + 1;
            }
            line_start = i + 1;
        }
    }
    start
}

/// The output of the last boot (see [`final_boot_start`]).
pub fn final_boot(stdout: &str) -> &str {
    // The start is just after a '\n', so it is a character boundary.
    &stdout[final_boot_start(stdout.as_bytes())..]
}

/// [`final_boot`] for output that need not be UTF-8.
pub fn final_boot_bytes(stdout: &[u8]) -> &[u8] {
    &stdout[final_boot_start(stdout)..]
}

/// A finished command: its exit status and what it printed.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The sealtool binary, built once per test process with the same profile as the calling
/// test (`target/<profile>/sealtool`).
pub fn sealtool() -> &'static std::path::Path {
    use std::path::{Path, PathBuf};
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        // target/<profile>/deps/<test>-xxxx -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in target/<profile>/deps")
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "sealtool"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile_dir.file_name().and_then(std::ffi::OsStr::to_str) {
            Some("debug") | None => {}
            Some(profile) => {
                cmd.args(["--profile", profile]);
            }
        }
        let status = cmd.status().expect("cannot run cargo");
        assert!(status.success(), "`cargo build -p sealtool` failed");
        let bin = profile_dir.join("sealtool");
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}

/// The probes' raw bpf(2): a zeroed 128-byte attribute block starting with `words`.
/// Err: the errno.
pub fn bpf(cmd: i64, words: &[u64]) -> Result<i64, i32> {
    let mut attr = [0u64; 16];
    attr[..words.len()].copy_from_slice(words);
    // SAFETY: `attr` is a zero-padded, 128-byte image of `union bpf_attr` for `cmd`, valid for
    // the call; pointers inside it point to live buffers of the caller.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128u32) };
    if rc < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(rc)
    }
}

/// A free loop device (LOOP_CTL_GET_FREE), opened read-write: its number and descriptor.
pub fn free_loop() -> std::io::Result<(i32, std::fs::File)> {
    use std::os::fd::AsRawFd;
    let ctl = std::fs::File::open("/dev/loop-control")?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a loop number.
    let n = unsafe { libc::ioctl(ctl.as_raw_fd(), 0x4C82) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let lo = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/loop{n}"))?;
    Ok((n, lo))
}

/// A socket filter's instructions that read 8 bytes of whichever process it runs for: r1 =
/// r10 - 8; r2 = 8; r3 = 0; call bpf_probe_read_user (112); r0 = 0; exit.
pub const READER_PROGRAM: [u64; 7] = [
    0x0000_0000_0000_a1bf,
    0xffff_fff8_0000_0107,
    0x0000_0008_0000_02b7,
    0x0000_0000_0000_03b7,
    0x0000_0070_0000_0085,
    0x0000_0000_0000_00b7,
    0x0000_0000_0000_0095,
];

/// BPF_PROG_LOAD of a GPL program of type `kind` (BPF_PROG_TYPE_*) made of `insns`: its
/// descriptor, or the errno.
pub fn load_program(kind: u64, insns: &[u64]) -> Result<i64, i32> {
    let license = c"GPL";
    bpf(
        5,
        &[
            kind | ((insns.len() as u64) << 32),
            insns.as_ptr() as u64,
            license.as_ptr() as u64,
        ],
    )
}

/// [`bpf`] with the caller's image of `union bpf_attr` (its first `attr.len()` words, the
/// rest zero), which the kernel may write back into (a batch's `count`).
pub fn bpf_attr(cmd: i64, attr: &mut [u64]) -> Result<i64, i32> {
    // SAFETY: `attr` is a live, writable image of the first `attr.len()` words of
    // `union bpf_attr` for `cmd` (the kernel takes the rest as zero); pointers inside it
    // point to live buffers of the caller.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            (attr.len() * 8) as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(rc)
    }
}

/// A guest suite's closing line, `<name>: N passed, M failed`: (N, M).
pub fn suite_summary(stdout: &str, name: &str) -> Option<(usize, usize)> {
    let prefix = format!("{name}: ");
    let line = stdout.lines().rev().find(|l| l.starts_with(&prefix))?;
    let mut words = line.strip_prefix(&prefix)?.split_whitespace();
    let passed = words.next()?.parse().ok()?;
    words.next()?;
    let failed = words.next()?.parse().ok()?;
    Some((passed, failed))
}

/// Runs `tests/vm/run ARGS` (a guest suite called `name`, `label` for the messages), prints
/// its output, and asserts that its last boot passed: exit 0, no `FAIL:` line, a summary
/// line with no failure and at least `min_passed` checks.
pub fn run_guest_suite(args: &[std::ffi::OsString], name: &str, label: &str, min_passed: usize) {
    let run = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/run");
    let out = std::process::Command::new(run)
        .args(args)
        .output()
        .expect("cannot start tests/vm/run");
    let all = String::from_utf8_lossy(&out.stdout);
    println!("--- {name} {label} ({})\n{all}", out.status);
    let stdout = final_boot(&all);
    let fails: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL: ")).collect();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{label}: the suite failed:\n{}\n--- stderr:\n{}",
        fails.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    let (passed, failed) = suite_summary(stdout, name).expect("no summary line");
    assert_eq!(failed, 0, "{}", fails.join("\n"));
    assert!(
        passed >= min_passed,
        "{label}: only {passed} checks passed, expected at least {min_passed}"
    );
}

#[cfg(test)]
mod tests {
    use super::{final_boot, final_boot_bytes, suite_summary};

    #[test]
    fn summary_line_is_parsed() {
        assert_eq!(suite_summary("x: 5 passed, 1 failed", "x"), Some((5, 1)));
        assert_eq!(suite_summary("y: 5 passed, 1 failed", "x"), None);
        assert_eq!(suite_summary("none", "x"), None);
    }

    #[test]
    fn output_before_the_last_retry_is_void() {
        assert_eq!(
            final_boot("PASS: a\nfsguard: 1 passed\n"),
            "PASS: a\nfsguard: 1 passed\n"
        );
        assert_eq!(final_boot(""), "");
        assert_eq!(
            final_boot("PASS: a\nvm-retry: hung\nPASS: b\nvm-retry: hung\nPASS: c\n"),
            "PASS: c\n"
        );
        assert_eq!(final_boot("FAIL: x\nvm-retry: hung\n"), "");
        // Only at the start of a line, and only a whole line.
        assert_eq!(final_boot("note vm-retry: no\n"), "note vm-retry: no\n");
        assert_eq!(final_boot("é\nvm-retry: x"), "é\nvm-retry: x");
        assert_eq!(final_boot_bytes(b"\xff\nvm-retry: x\n\xfe\n"), b"\xfe\n");
    }
}
