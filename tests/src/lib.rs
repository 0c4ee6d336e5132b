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

#[cfg(test)]
mod tests {
    use super::{final_boot, final_boot_bytes};

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
