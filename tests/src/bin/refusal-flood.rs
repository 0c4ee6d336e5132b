//! refusal-flood: tries `open(PATH, O_WRONLY)` N times and counts the answers, to flood the
//! guard with refusals (tests/vm/guest/audit-suite.sh).
//!
//! ```text
//! refusal-flood PATH N
//! ```
//!
//! Prints `eperm E other O seconds S` (S with three decimals) and exits 0 when every attempt
//! was refused with EPERM (E == N), 1 otherwise, 64 on a usage error.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let [path, n] = args.as_slice() else {
        eprintln!("usage: refusal-flood PATH N");
        return ExitCode::from(64);
    };
    let (Ok(path), Some(n)) = (
        CString::new(path.as_bytes()),
        n.to_str().and_then(|s| s.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: refusal-flood PATH N");
        return ExitCode::from(64);
    };
    let mut eperm = 0u64;
    let mut other = 0u64;
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: open with a valid NUL-terminated path; a returned descriptor is closed at
        // once.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd >= 0 {
            // SAFETY: closing the descriptor open() just returned.
            unsafe { libc::close(fd) };
            other += 1;
            continue;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EPERM) => eperm += 1,
            _ => other += 1,
        }
    }
    println!(
        "eperm {eperm} other {other} seconds {:.3}",
        start.elapsed().as_secs_f64()
    );
    if eperm == n {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
