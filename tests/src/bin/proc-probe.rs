//! proc-probe: performs ONE operation on a process (or on a /proc or cgroup path) with raw
//! syscalls and says whether the kernel let it happen. Used by the process-capsule suite in the
//! test guest, where it runs as root or as an unprivileged user, inside or outside a capsule's
//! cgroup, against a target process (usually a `proc-probe sleeper`).
//!
//! ```text
//! proc-probe OP ARGS...
//! ```
//!
//! On stdout, exactly one line (as capsule-probe):
//!   `allowed`             the operation succeeded                         (exit 0)
//!   `refused`             the operation failed with EPERM, the guard's answer (exit 1)
//!   `error: <ERRNO>`      it failed otherwise (EACCES, ESRCH, ...)         (exit 2)
//!   `error: setup <step>: <ERRNO>`  a preparatory step failed, so the operation under test
//!                         was not even attempted (exit 2)
//!   `error: cleanup <step>: <ERRNO>`  the operation succeeded, but undoing it (detaching the
//!                         tracee, reaping the child) failed (exit 2)
//!   `error: short transfer` / `error: short write`  fewer bytes moved than asked (exit 2)
//! Usage errors print `error: usage` and exit 64. Details go to stderr.
//!
//! Only the step named below as judged decides the result; the others are setup (before it)
//! or cleanup (after it).
//!
//! Operations (PID: a target's pid, > 0; SIG: a signal number, 0 to 64; ADDR and VALUE: hex,
//! `0x` optional; paths are used as given, relative ones against the working directory):
//!   ptrace-attach PID      judged: PTRACE_ATTACH; cleanup: waitpid for the attach stop
//!                          (another signal stopping it first is passed on with PTRACE_CONT),
//!                          then PTRACE_DETACH, so the target keeps running
//!   ptrace-seize PID       judged: PTRACE_SEIZE; cleanup: PTRACE_INTERRUPT, waitpid,
//!                          PTRACE_DETACH (re-injecting a signal that stopped it first)
//!   proc-mem PID           open(/proc/PID/mem, O_RDWR)
//!   proc-mem-read PID      open(/proc/PID/mem, O_RDONLY)
//!   vm-read PID ADDR       process_vm_readv of 8 bytes at ADDR; the value goes to stderr
//!   vm-write PID ADDR VALUE  process_vm_writev of the u64 VALUE (native byte order) to ADDR
//!   setaffinity PID        sched_setaffinity to CPU 0 alone
//!   setscheduler PID       sched_setscheduler(SCHED_BATCH, priority 0)
//!   setpriority PID        setpriority(PRIO_PROCESS, PID, 5)
//!   ioprio PID             ioprio_set(IOPRIO_WHO_PROCESS, PID, best effort, level 4)
//!   getsched PID           sched_getscheduler (merely "touches" the process)
//!   prlimit PID            setup: prlimit64 reads RLIMIT_NOFILE; judged: prlimit64 sets it
//!                          to the same value
//!   open-nonblock PATH     judged: open(PATH, O_RDONLY|O_NONBLOCK) (a pipe through
//!                          /proc/PID/fd/N does not wait for a writer)
//!   tty-vhangup PATH       setup: open the terminal PATH (O_NOCTTY); judged: TIOCVHANGUP
//!                          (in the tty-* operations PATH `fd:N` is inherited descriptor N)
//!   tty-winsize PATH       setup: open the terminal PATH (O_NOCTTY); judged: TIOCSWINSZ 24x80
//!                          (a new size signals its foreground group, SIGWINCH)
//!   tty-flush PATH         setup: open the terminal PATH (O_NOCTTY); judged: TCFLSH TCIFLUSH
//!   fanotify PATH OBJECT EVENTS
//!                          setup: fanotify_init (content class); judged: fanotify_mark ADD of
//!                          PATH as OBJECT (inode, mount or fs) for EVENTS (perm: FAN_OPEN_PERM,
//!                          which holds each open until answered; notify: FAN_OPEN)
//!   inotify PATH           setup: inotify_init; judged: inotify_add_watch(PATH, IN_OPEN)
//!   audit-rule add|del     setup: an audit netlink socket; judged: sending AUDIT_ADD_RULE (or
//!                          AUDIT_DEL_RULE) of `-a always,exit -F arch=b64 -S getppid` and the
//!                          kernel's answer to it
//!   tty-steal PATH         in a child made a session leader: setup: open PATH; judged:
//!                          TIOCSCTTY with 1 (taking the terminal from its session)
//!   exec PATH [ARGS]       judged: execv(PATH) in a child, which must exit 0 (the exec rule)
//!   memfd-exec PATH [ARGS] setup: a memfd holding PATH's bytes; judged: execveat of it
//!   mmap-exec PATH         setup: open PATH; judged: mmap PROT_READ|PROT_EXEC, MAP_PRIVATE
//!   dlopen PATH            judged: dlopen(PATH, RTLD_NOW) (EPERM as dlerror says it)
//!   anon-exec              judged: an anonymous mapping PROT_READ|PROT_EXEC
//!   mprotect-exec          setup: an anonymous read-write page; judged: mprotect to R|X
//!   kill PID SIG           kill(2); SIG 0 only checks
//!   pidfd-signal PID SIG   setup: pidfd_open; judged: pidfd_send_signal
//!   setns-pidfd PID        setup: pidfd_open; judged: setns(pidfd, CLONE_NEWUTS)
//!   setns-path PATH        open(PATH, O_RDONLY) is judged when it fails with EPERM or EACCES
//!                          (a guard refusing the /proc/PID/ns/* link), setup when it fails
//!                          otherwise; judged: setns(fd, 0). This process joins the namespace.
//!   read-file PATH         judged: open O_RDONLY, then one read(2) of up to 4 KiB
//!   list-dir PATH          judged: opendir, then readdir to the end (nothing printed)
//!   write-file PATH TEXT   judged: open O_WRONLY (no O_CREAT, no O_TRUNC), then one write(2)
//!                          of TEXT as given (no newline added)
//!   clone-into-cgroup DIR  setup: open DIR (O_RDONLY|O_DIRECTORY); judged: clone3 with
//!                          CLONE_INTO_CGROUP; the child _exit(0)s at once; cleanup: waitpid
//!   clone-into-cgroup-holding DIR HELD
//!                          the same, with a descriptor of directory HELD open meanwhile
//!   clone-into-cgroup-threaded DIR
//!                          the same from a process of two threads (its descriptor table
//!                          shared), the second one parked until the clone is done
//!   traceme                judged: PTRACE_TRACEME in this process, which then exits (the
//!                          suite arranges who the parent, so the tracer, is)
//!   held-pwrite FD ADDR VALUE  judged: pwrite of the u64 VALUE at offset ADDR through
//!                          descriptor FD, inherited already open (a /proc/PID/mem opened
//!                          before the seal)
//!   held-pread FD ADDR     judged: pread of 8 bytes at offset ADDR through descriptor FD
//!   trace-hold PID READY   judged: PTRACE_SEIZE (the target keeps running); then writes
//!                          READY and stays attached until killed (not in batch)
//!   acct PATH              judged: acct(PATH), process accounting into PATH
//!   acct-off               judged: acct(NULL)
//!   sleeper [READY]        the target, see below (not in batch)
//!   seccomp-pair READY CGROUP  a target whose getppid goes to a seccomp listener held by a
//!                          supervisor it forks into CGROUP; see seccomp_pair (not in batch)
//!   fanotify-holder PATH READY
//!                          a fanotify group with a filesystem mark for open events (FAN_OPEN,
//!                          no permission event: nothing waits on it) on PATH's filesystem;
//!                          writes `pid=N` to READY and waits until a signal ends it
//!   pty-holder READY [CGROUP]
//!                          a session leader whose controlling terminal is a new pty (it holds
//!                          the master): forks, writes `pid=N pts=PATH` to READY, waits
//!                          until a signal (a hangup's SIGHUP included) ends it (not in batch).
//!                          With CGROUP, a member of its session and process group moves
//!                          there (its `cgroup.procs`) and writes `pid=N member=M pts=PATH`
//!   batch                  reads operations from stdin, one per line (OP ARGS..., separated
//!                          by blanks, so TEXT cannot hold any), and prints one result line for
//!                          each, in order; exit 0. All run in this one process: a `traceme` or
//!                          `setns-path` that succeeded stays in effect for the lines after it.
//!
//! `sleeper [READY]` resets every signal but SIGUSR1 to its default action (a shell leaves
//! SIGINT and SIGQUIT ignored in background jobs; Rust ignores SIGPIPE), so SIGTERM ends it.
//! It prints `pid=N addr=0x...` on one line: its pid and the address of a static 8-byte
//! buffer holding 0x0123456789abcdef (for vm-read and vm-write). With READY, a second thread
//! runs until READY.thread-exit exists (its id follows as ` tid=T`), and the line is
//! written to READY.tmp, then renamed to READY. It then waits forever; each SIGUSR1 is counted
//! (on stderr, with the buffer's value) and, with READY, appends `usr1` to READY.signals.

use std::ffi::{CString, OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// One syscall's failure: the errno it returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Errno(i32);

impl Errno {
    fn last() -> Self {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    fn of_io(e: &std::io::Error) -> Self {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match errno_name(self.0) {
            Some(n) => f.write_str(n),
            None => write!(f, "errno {}", self.0),
        }
    }
}

fn errno_name(e: i32) -> Option<&'static str> {
    Some(match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::EDEADLK => "EDEADLK",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EUSERS => "EUSERS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => return None,
    })
}

/// What one judged operation came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Allowed,
    Refused,
    Failed(Errno),
    Setup(&'static str, Errno),
    Cleanup(&'static str, Errno),
    /// Failed without an errno (a short transfer).
    Other(&'static str),
}

impl Outcome {
    fn exit_code(self) -> u8 {
        match self {
            Outcome::Allowed => 0,
            Outcome::Refused => 1,
            _ => 2,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Allowed => f.write_str("allowed"),
            Outcome::Refused => f.write_str("refused"),
            Outcome::Failed(e) => write!(f, "error: {e}"),
            Outcome::Setup(step, e) => write!(f, "error: setup {step}: {e}"),
            Outcome::Cleanup(step, e) => write!(f, "error: cleanup {step}: {e}"),
            Outcome::Other(what) => write!(f, "error: {what}"),
        }
    }
}

/// A judged step's failure, or a setup or cleanup step's.
enum Step {
    Judged(Errno),
    Setup(&'static str, Errno),
    Cleanup(&'static str, Errno),
    Other(&'static str),
}

impl From<Errno> for Step {
    fn from(e: Errno) -> Self {
        Step::Judged(e)
    }
}

fn outcome(r: Result<(), Step>) -> Outcome {
    match r {
        Ok(()) => Outcome::Allowed,
        Err(Step::Judged(Errno(libc::EPERM))) => Outcome::Refused,
        Err(Step::Judged(e)) => Outcome::Failed(e),
        Err(Step::Setup(step, e)) => Outcome::Setup(step, e),
        Err(Step::Cleanup(step, e)) => Outcome::Cleanup(step, e),
        Err(Step::Other(what)) => Outcome::Other(what),
    }
}

/// Marks a preparatory step: its failure is reported as setup, not judged.
fn setup<T>(step: &'static str, r: Result<T, Errno>) -> Result<T, Step> {
    r.map_err(|e| Step::Setup(step, e))
}

/// Marks a step after the judged one, undoing it.
fn cleanup<T>(step: &'static str, r: Result<T, Errno>) -> Result<T, Step> {
    r.map_err(|e| Step::Cleanup(step, e))
}

/// Turns a libc return value (-1 and errno on failure) into a Result.
fn check(rc: libc::c_long) -> Result<libc::c_long, Errno> {
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

fn unit(rc: libc::c_int) -> Result<(), Errno> {
    check(rc.into()).map(|_| ())
}

/// An owned descriptor, closed on drop.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: self.0 is a descriptor this process opened and nothing else closes.
        unsafe { libc::close(self.0) };
    }
}

fn open(path: &CString, flags: libc::c_int) -> Result<Fd, Errno> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            flags | libc::O_CLOEXEC,
            0o666 as libc::c_uint,
        )
    };
    check(fd.into()).map(|_| Fd(fd))
}

// ---- argument parsing: `None` is a usage error ----

fn arg_str(s: &OsString) -> Option<&str> {
    std::str::from_utf8(s.as_bytes()).ok()
}

fn arg_pid(s: &OsString) -> Option<libc::pid_t> {
    arg_str(s)?.parse().ok().filter(|&p| p > 0)
}

fn arg_sig(s: &OsString) -> Option<libc::c_int> {
    arg_str(s)?.parse().ok().filter(|s| (0..=64).contains(s))
}

fn arg_fd(s: &OsString) -> Option<libc::c_int> {
    s.to_str()?.parse().ok().filter(|fd| *fd >= 0)
}

fn arg_hex(s: &OsString) -> Option<u64> {
    let s = arg_str(s)?;
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u64::from_str_radix(digits, 16).ok()
}

fn arg_addr(s: &OsString) -> Option<usize> {
    usize::try_from(arg_hex(s)?).ok()
}

fn arg_path(s: &OsString) -> Option<CString> {
    CString::new(s.as_bytes()).ok()
}

fn proc_path(pid: libc::pid_t, leaf: &str) -> Option<CString> {
    CString::new(format!("/proc/{pid}/{leaf}")).ok()
}

// ---- ptrace ----

/// ptrace(2) for requests that take no pointer: `data` is a signal number or 0.
fn ptrace(request: libc::c_uint, pid: libc::pid_t, data: usize) -> Result<(), Errno> {
    let addr = std::ptr::null_mut::<libc::c_void>();
    let data = std::ptr::without_provenance_mut::<libc::c_void>(data);
    // SAFETY: the requests used here (ATTACH, SEIZE, INTERRUPT, CONT, DETACH, TRACEME) read
    // and write no memory of ours through addr or data.
    check(unsafe { libc::ptrace(request, pid, addr, data) }).map(|_| ())
}

/// waitpid(PID, __WALL), retried on EINTR: the wait status.
fn wait(pid: libc::pid_t) -> Result<libc::c_int, Errno> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes one int to a live local.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        match check(rc.into()) {
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(status),
        }
    }
}

/// Waits for a tracee's next stop: its stop signal; ESRCH when it ended instead.
fn wait_stop(pid: libc::pid_t) -> Result<libc::c_int, Step> {
    let status = cleanup("waitpid", wait(pid))?;
    if !libc::WIFSTOPPED(status) {
        eprintln!("proc-probe: {pid} ended while traced (wait status {status:#x})");
        return Err(Step::Cleanup("waitpid", Errno(libc::ESRCH)));
    }
    Ok(status)
}

fn ptrace_attach(pid: libc::pid_t) -> Result<(), Step> {
    ptrace(libc::PTRACE_ATTACH, pid, 0)?;
    loop {
        let sig = libc::WSTOPSIG(wait_stop(pid)?);
        if sig == libc::SIGSTOP {
            return cleanup("PTRACE_DETACH", ptrace(libc::PTRACE_DETACH, pid, 0));
        }
        // Another signal stopped it before the attach's SIGSTOP: deliver it and wait on.
        cleanup("PTRACE_CONT", ptrace(libc::PTRACE_CONT, pid, sig as usize))?;
    }
}

fn ptrace_seize(pid: libc::pid_t) -> Result<(), Step> {
    ptrace(libc::PTRACE_SEIZE, pid, 0)?;
    cleanup("PTRACE_INTERRUPT", ptrace(libc::PTRACE_INTERRUPT, pid, 0))?;
    let status = wait_stop(pid)?;
    // The interrupt's stop (PTRACE_EVENT_STOP) carries no signal to pass on; a signal's
    // delivery stop that came first has its signal re-injected by the detach.
    let sig = if status >> 16 == libc::PTRACE_EVENT_STOP {
        0
    } else {
        libc::WSTOPSIG(status)
    };
    cleanup(
        "PTRACE_DETACH",
        ptrace(libc::PTRACE_DETACH, pid, sig as usize),
    )
}

fn traceme() -> Result<(), Step> {
    ptrace(libc::PTRACE_TRACEME, 0, 0)?;
    Ok(())
}

// ---- memory ----

fn open_op(path: &CString, flags: libc::c_int) -> Result<(), Step> {
    open(path, flags)?;
    Ok(())
}

/// process_vm_readv (or writev) of 8 bytes at `addr` in the target.
fn vm_transfer(pid: libc::pid_t, addr: usize, write: Option<u64>) -> Result<(), Step> {
    let mut buf = write.unwrap_or(0).to_ne_bytes();
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: std::ptr::without_provenance_mut(addr),
        iov_len: buf.len(),
    };
    // SAFETY: `local` points at a live 8-byte local buffer; `remote` is an address in the
    // target's memory, never dereferenced here (the kernel checks it).
    let n = unsafe {
        if write.is_some() {
            libc::process_vm_writev(pid, &local, 1, &remote, 1, 0)
        } else {
            libc::process_vm_readv(pid, &local, 1, &remote, 1, 0)
        }
    };
    if check(n as libc::c_long)? != buf.len() as libc::c_long {
        return Err(Step::Other("short transfer"));
    }
    if write.is_none() {
        eprintln!("vm-read {pid} {addr:#x}: {:#018x}", u64::from_ne_bytes(buf));
    }
    Ok(())
}

/// pread or pwrite of 8 bytes at offset `addr` through an inherited descriptor.
fn held_transfer(fd: libc::c_int, addr: usize, write: Option<u64>) -> Result<(), Step> {
    let mut buf = write.unwrap_or(0).to_ne_bytes();
    let off = addr as libc::off_t;
    // SAFETY: `buf` is a live 8-byte local buffer, read (pwrite) or written (pread) within
    // its length; `fd` is only passed to the kernel.
    let n = unsafe {
        if write.is_some() {
            libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), off)
        } else {
            libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off)
        }
    };
    if check(n as libc::c_long)? != buf.len() as libc::c_long {
        return Err(Step::Other("short transfer"));
    }
    Ok(())
}

/// acct(2) into `path`, or off.
fn acct(path: Option<&CString>) -> Result<(), Step> {
    let p = path.map_or(std::ptr::null(), |p| p.as_ptr());
    // SAFETY: `p` is NULL or a live NUL-terminated string.
    check(unsafe { libc::acct(p) } as libc::c_long)?;
    Ok(())
}

/// `trace-hold PID READY`: seizes PID and stays its tracer until killed.
fn trace_hold(args: &[OsString]) -> ExitCode {
    let (Some(pid), Some(ready)) = (args.first().and_then(arg_pid), args.get(1)) else {
        return usage("trace-hold PID READY");
    };
    if let Err(e) = ptrace(libc::PTRACE_SEIZE, pid, 0) {
        println!("{}", Outcome::Failed(e));
        return ExitCode::from(2);
    }
    if std::fs::write(
        PathBuf::from(ready),
        format!("tracer={}\n", std::process::id()),
    )
    .is_err()
    {
        return ExitCode::from(2);
    }
    loop {
        // SAFETY: pause only waits for a signal.
        unsafe { libc::pause() };
    }
}

// ---- scheduling ----

fn setaffinity(pid: libc::pid_t) -> Result<(), Step> {
    // SAFETY: cpu_set_t is plain bits, for which all-zero is the empty set; CPU_SET writes
    // inside it and sched_setaffinity reads exactly its size.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    unit(rc)?;
    Ok(())
}

fn setscheduler(pid: libc::pid_t) -> Result<(), Step> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads one sched_param from a live local.
    unit(unsafe { libc::sched_setscheduler(pid, libc::SCHED_BATCH, &param) })?;
    Ok(())
}

fn setpriority(pid: libc::pid_t) -> Result<(), Step> {
    // SAFETY: plain integer arguments.
    unit(unsafe { libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, 5) })?;
    Ok(())
}

fn ioprio(pid: libc::pid_t) -> Result<(), Step> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    const IOPRIO_CLASS_BE: libc::c_int = 2;
    const IOPRIO_CLASS_SHIFT: libc::c_int = 13;
    let prio = (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 4;
    // SAFETY: ioprio_set takes three integers.
    check(unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, pid, prio) })?;
    Ok(())
}

/// prlimit64 of RLIMIT_NOFILE to the value it has (read first): a change in name only, which
/// the kernel still judges.
fn prlimit(pid: libc::pid_t) -> Result<(), Step> {
    let mut old = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 writes one rlimit64 into a live local and reads nothing (no new limit).
    let rc = unsafe { libc::prlimit64(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    setup("prlimit64 (read)", unit(rc))?;
    // SAFETY: prlimit64 reads one rlimit64 from a live local and writes nothing.
    unit(unsafe { libc::prlimit64(pid, libc::RLIMIT_NOFILE, &old, std::ptr::null_mut()) })?;
    Ok(())
}

/// setup: open the terminal PATH (no controlling terminal taken); judged: TIOCVHANGUP.
/// Setup: the terminal PATH, opened read-write without making it the controlling terminal;
/// PATH `fd:N` is descriptor N, inherited (one kept from before a seal), duplicated.
fn open_terminal(path: &CString) -> Result<Fd, Step> {
    match inherited_fd(path) {
        Some(n) => {
            // SAFETY: dup of an integer descriptor; the copy is ours to close.
            let fd = unsafe { libc::fcntl(n, libc::F_DUPFD_CLOEXEC, 0) };
            setup("dup", check(fd.into())).map(|fd| Fd(fd as libc::c_int))
        }
        None => setup(
            "open",
            open(path, libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK),
        ),
    }
}

/// N of a PATH `fd:N`.
fn inherited_fd(path: &CString) -> Option<libc::c_int> {
    path.to_str().ok()?.strip_prefix("fd:")?.parse().ok()
}

fn tty_vhangup(path: &CString) -> Result<(), Step> {
    let fd = open_terminal(path)?;
    // SAFETY: TIOCVHANGUP takes no argument.
    unit(unsafe { libc::ioctl(fd.0, libc::TIOCVHANGUP) })?;
    Ok(())
}

/// A fanotify group of the content class, then (judged) a mark of PATH: `object` inode, mount
/// or fs; `events` perm (FAN_OPEN_PERM) or notify (FAN_OPEN). The group goes with the process.
fn fanotify(path: &CString, object: &str, events: &str) -> Result<(), Step> {
    let object = match object {
        "inode" => 0,
        "mount" => libc::FAN_MARK_MOUNT,
        "fs" => FAN_MARK_FILESYSTEM,
        _ => {
            return Err(Step::Setup(
                "object (inode, mount or fs)",
                Errno(libc::EINVAL),
            ))
        }
    };
    let mask = match events {
        "perm" => libc::FAN_OPEN_PERM,
        "notify" => libc::FAN_OPEN,
        _ => return Err(Step::Setup("events (perm or notify)", Errno(libc::EINVAL))),
    };
    // SAFETY: fanotify_init takes two integers and returns a descriptor.
    let group = unsafe { libc::fanotify_init(libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC, 0) };
    let group = Fd(setup("fanotify_init", check(group.into()))? as libc::c_int);
    fanotify_add(group.0, object, mask, path).map_err(Step::Judged)
}

/// An audit netlink socket, then (judged) AUDIT_ADD_RULE or AUDIT_DEL_RULE of an exit rule
/// for getppid on x86-64 (auditctl's `-a always,exit -F arch=b64 -S getppid`), sent with
/// NLM_F_ACK: the send and the kernel's answer.
fn audit_rule(which: &str) -> Result<(), Step> {
    let kind: u16 = match which {
        "add" => 1011,
        "del" => 1012,
        _ => return Err(Step::Setup("add or del", Errno(libc::EINVAL))),
    };
    // struct audit_rule_data: flags, action, field_count, mask[64], fields[64], values[64],
    // fieldflags[64], buflen (1,040 bytes), after a 16-byte nlmsghdr.
    let mut msg = vec![0u8; 16 + 1040];
    let put =
        |msg: &mut Vec<u8>, at: usize, v: u32| msg[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    let total = msg.len() as u32;
    put(&mut msg, 0, total);
    msg[4..6].copy_from_slice(&kind.to_ne_bytes());
    msg[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16).to_ne_bytes());
    put(&mut msg, 8, 1);
    let rule = 16;
    put(&mut msg, rule, 4); // AUDIT_FILTER_EXIT
    put(&mut msg, rule + 4, 2); // AUDIT_ALWAYS
    put(&mut msg, rule + 8, 1); // one field
    let getppid = libc::SYS_getppid as usize;
    put(
        &mut msg,
        rule + 12 + 4 * (getppid / 32),
        1 << (getppid % 32),
    );
    put(&mut msg, rule + 12 + 256, 11); // fields[0]: AUDIT_ARCH
    put(&mut msg, rule + 12 + 512, 0xc000_003e); // values[0]: AUDIT_ARCH_X86_64
    put(&mut msg, rule + 12 + 768, 0x4000_0000); // fieldflags[0]: AUDIT_EQUAL
                                                 // SAFETY: socket takes integers and returns a descriptor.
    let sock = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_AUDIT,
        )
    };
    let sock = Fd(setup("audit socket", check(sock.into()))? as libc::c_int);
    // SAFETY: zeroed sockaddr_nl is valid (the kernel's address: pid 0, no groups).
    let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: sendto reads msg.len() bytes of a live buffer and a sockaddr_nl.
    let sent = unsafe {
        libc::sendto(
            sock.0,
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&to as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    check(sent as libc::c_long).map_err(Step::Judged)?;
    let mut ack = [0u8; 4096];
    // SAFETY: recv writes at most ack.len() bytes into a live buffer.
    let n = unsafe { libc::recv(sock.0, ack.as_mut_ptr().cast(), ack.len(), 0) };
    let n = check(n as libc::c_long).map_err(Step::Judged)? as usize;
    if n < 20 || u16::from_ne_bytes([ack[4], ack[5]]) != libc::NLMSG_ERROR as u16 {
        return Err(Step::Judged(Errno(libc::EPROTO)));
    }
    let code = i32::from_ne_bytes([ack[16], ack[17], ack[18], ack[19]]);
    if code != 0 {
        return Err(Step::Judged(Errno(-code)));
    }
    Ok(())
}

/// fanotify_mark(2) ADD of `path` (relative to the working directory) to `group`: `object`
/// 0 (the inode), FAN_MARK_MOUNT or FAN_MARK_FILESYSTEM, for the events of `mask`.
fn fanotify_add(
    group: libc::c_int,
    object: libc::c_uint,
    mask: u64,
    path: &CString,
) -> Result<(), Errno> {
    // SAFETY: fanotify_mark reads the NUL-terminated path, which outlives the call (the
    // syscall itself: x86-64 passes the 64-bit mask in one register).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fanotify_mark,
            group,
            libc::FAN_MARK_ADD | object,
            mask,
            libc::AT_FDCWD,
            path.as_ptr(),
        )
    };
    check(rc).map(|_| ())
}

/// fanotify_mark(2)'s flag for a mark on the filesystem (not in the libc crate).
const FAN_MARK_FILESYSTEM: libc::c_uint = 0x100;

/// An inotify instance, then (judged) a watch of PATH for opens.
fn inotify(path: &CString) -> Result<(), Step> {
    // SAFETY: inotify_init1 takes an integer and returns a descriptor.
    let group = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    let group = Fd(setup("inotify_init", check(group.into()))? as libc::c_int);
    // SAFETY: reads the NUL-terminated path, which outlives the call.
    let rc = unsafe { libc::inotify_add_watch(group.0, path.as_ptr(), libc::IN_OPEN) };
    check(rc.into()).map(|_| ()).map_err(Step::Judged)
}

/// Open the terminal PATH, then (judged) give it a size of 24 rows and 80 columns.
fn tty_winsize(path: &CString) -> Result<(), Step> {
    let fd = open_terminal(path)?;
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a struct winsize that lives across the call.
    unit(unsafe { libc::ioctl(fd.0, libc::TIOCSWINSZ, &size as *const libc::winsize) })?;
    Ok(())
}

/// Open the terminal PATH, then (judged) discard its pending input.
fn tty_flush(path: &CString) -> Result<(), Step> {
    let fd = open_terminal(path)?;
    // SAFETY: TCFLSH takes an integer argument.
    unit(unsafe { libc::ioctl(fd.0, libc::TCFLSH, libc::TCIFLUSH) })?;
    Ok(())
}

/// In a child that made itself a session leader: open the terminal PATH, then (judged)
/// TIOCSCTTY with 1, taking it from the session it belongs to. The child's exit status is
/// the errno (0: taken).
fn tty_steal(path: &CString) -> Result<(), Step> {
    let inherited = inherited_fd(path);
    // SAFETY: fork; the child only makes async-signal-safe calls (setsid, open, ioctl,
    // _exit) before it leaves.
    let child = setup("fork", check(unsafe { libc::fork() }.into()))?;
    if child == 0 {
        // SAFETY: in the child: plain calls on a NUL-terminated path, then _exit, running
        // none of the parent's exit code.
        unsafe {
            if libc::setsid() < 0 {
                libc::_exit(200);
            }
            let fd = match inherited {
                Some(n) => n,
                None => libc::open(
                    path.as_ptr(),
                    libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK,
                ),
            };
            if fd < 0 {
                libc::_exit(201);
            }
            let rc = libc::ioctl(fd, libc::TIOCSCTTY, 1);
            libc::_exit(if rc < 0 { Errno::last().0.min(199) } else { 0 });
        }
    }
    let status = cleanup("waitpid", wait(child as libc::pid_t))?;
    match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
        Some(0) => Ok(()),
        Some(200) => Err(Step::Setup("setsid", Errno(0))),
        Some(201) => Err(Step::Setup("open", Errno(0))),
        Some(e) => Err(Step::Judged(Errno(e))),
        None => Err(Step::Other("child killed")),
    }
}

fn getsched(pid: libc::pid_t) -> Result<(), Step> {
    // SAFETY: plain integer argument.
    unit(unsafe { libc::sched_getscheduler(pid) })?;
    Ok(())
}

// ---- signals and pidfds ----

fn kill(pid: libc::pid_t, sig: libc::c_int) -> Result<(), Step> {
    // SAFETY: plain integer arguments; pid > 0, so one process only.
    unit(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

fn pidfd_open(pid: libc::pid_t) -> Result<Fd, Step> {
    // SAFETY: pidfd_open takes a pid and flags; the new descriptor is owned by the Fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    setup("pidfd_open", check(fd)).map(|fd| Fd(fd as libc::c_int))
}

fn pidfd_signal(pid: libc::pid_t, sig: libc::c_int) -> Result<(), Step> {
    let fd = pidfd_open(pid)?;
    let info = std::ptr::null::<libc::siginfo_t>();
    // SAFETY: a null siginfo means "as kill(2) would"; the other arguments are integers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.0,
            sig,
            info,
            0 as libc::c_uint,
        )
    };
    check(rc)?;
    Ok(())
}

fn setns(fd: &Fd, nstype: libc::c_int) -> Result<(), Step> {
    // SAFETY: plain integer arguments; fd is open.
    unit(unsafe { libc::setns(fd.0, nstype) })?;
    Ok(())
}

fn setns_pidfd(pid: libc::pid_t) -> Result<(), Step> {
    setns(&pidfd_open(pid)?, libc::CLONE_NEWUTS)
}

fn setns_path(path: &CString) -> Result<(), Step> {
    let fd = match open(path, libc::O_RDONLY) {
        Ok(fd) => fd,
        Err(e @ Errno(libc::EPERM | libc::EACCES)) => return Err(e.into()),
        Err(e) => return Err(Step::Setup("open", e)),
    };
    setns(&fd, 0)
}

// ---- files ----

fn read_file(path: &CString) -> Result<(), Step> {
    let fd = open(path, libc::O_RDONLY)?;
    let mut buf = [0u8; 4096];
    // SAFETY: read writes at most buf.len() bytes into a live local buffer.
    check(unsafe { libc::read(fd.0, buf.as_mut_ptr().cast(), buf.len()) } as libc::c_long)?;
    Ok(())
}

fn list_dir(path: &OsString) -> Result<(), Step> {
    let dir = std::fs::read_dir(path).map_err(|e| Errno::of_io(&e))?;
    for entry in dir {
        entry.map_err(|e| Errno::of_io(&e))?;
    }
    Ok(())
}

fn write_file(path: &CString, text: &[u8]) -> Result<(), Step> {
    let fd = open(path, libc::O_WRONLY)?;
    // SAFETY: write reads text.len() bytes from a live slice.
    let n = check(unsafe { libc::write(fd.0, text.as_ptr().cast(), text.len()) } as libc::c_long)?;
    if n != text.len() as libc::c_long {
        return Err(Step::Other("short write"));
    }
    Ok(())
}

// ---- cgroups ----

/// linux/sched.h's CLONE_INTO_CGROUP (libc's constant is a c_int that cannot hold it).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

fn clone_into_cgroup(dir: &CString, held: Option<&CString>, threaded: bool) -> Result<(), Step> {
    let _held = match held {
        Some(h) => Some(setup("open", open(h, libc::O_RDONLY | libc::O_DIRECTORY))?),
        None => None,
    };
    let cgroup = setup("open", open(dir, libc::O_RDONLY | libc::O_DIRECTORY))?;
    // The second thread waits for the sender to go away; it shares this descriptor table.
    let parked = if threaded {
        let (release, wait_for_release) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .spawn(move || {
                let _ = wait_for_release.recv();
            })
            .map_err(|e| Step::Setup("thread", Errno(e.raw_os_error().unwrap_or(libc::EAGAIN))))?;
        Some((release, thread))
    } else {
        None
    };
    // SAFETY: clone_args is plain integers, for which all-zero means "unused".
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = CLONE_INTO_CGROUP;
    args.exit_signal = libc::SIGCHLD as u64;
    args.cgroup = cgroup.0 as u64;
    let size = std::mem::size_of::<libc::clone_args>();
    // SAFETY: clone3 reads `args` (of `size` bytes). Without CLONE_VM and with no stack given,
    // the child runs on a copy of this address space and stack (with only this thread), like
    // after fork, and does nothing but _exit.
    let child = unsafe { libc::syscall(libc::SYS_clone3, &args as *const libc::clone_args, size) };
    if child == 0 {
        // SAFETY: in the child: leave at once, running none of the parent's exit code.
        unsafe { libc::_exit(0) };
    }
    if let Some((release, thread)) = parked {
        drop(release);
        let _ = thread.join();
    }
    let child = check(child)?;
    cleanup("waitpid", wait(child as libc::pid_t))?;
    Ok(())
}

/// Runs one operation; `None` for a usage error.
fn run(op: &str, args: &[OsString]) -> Option<Outcome> {
    let r = match (op, args) {
        ("ptrace-attach", [p]) => ptrace_attach(arg_pid(p)?),
        ("ptrace-seize", [p]) => ptrace_seize(arg_pid(p)?),
        ("proc-mem", [p]) => open_op(&proc_path(arg_pid(p)?, "mem")?, libc::O_RDWR),
        ("proc-mem-read", [p]) => open_op(&proc_path(arg_pid(p)?, "mem")?, libc::O_RDONLY),
        ("vm-read", [p, a]) => vm_transfer(arg_pid(p)?, arg_addr(a)?, None),
        ("vm-write", [p, a, v]) => vm_transfer(arg_pid(p)?, arg_addr(a)?, Some(arg_hex(v)?)),
        ("setaffinity", [p]) => setaffinity(arg_pid(p)?),
        ("setscheduler", [p]) => setscheduler(arg_pid(p)?),
        ("setpriority", [p]) => setpriority(arg_pid(p)?),
        ("ioprio", [p]) => ioprio(arg_pid(p)?),
        ("getsched", [p]) => getsched(arg_pid(p)?),
        ("prlimit", [p]) => prlimit(arg_pid(p)?),
        ("open-nonblock", [f]) => open_op(&arg_path(f)?, libc::O_RDONLY | libc::O_NONBLOCK),
        ("tty-vhangup", [f]) => tty_vhangup(&arg_path(f)?),
        ("tty-winsize", [f]) => tty_winsize(&arg_path(f)?),
        ("fanotify", [f, o, e]) => fanotify(&arg_path(f)?, o.to_str()?, e.to_str()?),
        ("inotify", [f]) => inotify(&arg_path(f)?),
        ("audit-rule", [w]) => audit_rule(w.to_str()?),
        ("tty-flush", [f]) => tty_flush(&arg_path(f)?),
        ("tty-steal", [f]) => tty_steal(&arg_path(f)?),
        ("kill", [p, s]) => kill(arg_pid(p)?, arg_sig(s)?),
        ("pidfd-signal", [p, s]) => pidfd_signal(arg_pid(p)?, arg_sig(s)?),
        ("setns-pidfd", [p]) => setns_pidfd(arg_pid(p)?),
        ("setns-path", [f]) => setns_path(&arg_path(f)?),
        ("read-file", [f]) => read_file(&arg_path(f)?),
        ("list-dir", [f]) => list_dir(f),
        ("write-file", [f, t]) => write_file(&arg_path(f)?, t.as_bytes()),
        ("clone-into-cgroup", [d]) => clone_into_cgroup(&arg_path(d)?, None, false),
        ("clone-into-cgroup-holding", [d, h]) => {
            clone_into_cgroup(&arg_path(d)?, Some(&arg_path(h)?), false)
        }
        ("clone-into-cgroup-threaded", [d]) => clone_into_cgroup(&arg_path(d)?, None, true),
        ("traceme", []) => traceme(),
        ("held-pwrite", [f, a, v]) => held_transfer(arg_fd(f)?, arg_addr(a)?, Some(arg_hex(v)?)),
        ("held-pread", [f, a]) => held_transfer(arg_fd(f)?, arg_addr(a)?, None),
        ("acct", [f]) => acct(Some(&arg_path(f)?)),
        ("acct-off", []) => acct(None),
        ("exec", [f, rest @ ..]) => exec(&arg_path(f)?, rest),
        ("memfd-exec", [f, rest @ ..]) => memfd_exec(&arg_path(f)?, rest),
        ("mmap-exec", [f]) => mmap_exec(&arg_path(f)?),
        ("dlopen", [f]) => dlopen(&arg_path(f)?),
        ("anon-exec", []) => anon_exec(false),
        ("mprotect-exec", []) => anon_exec(true),
        _ => return None,
    };
    Some(outcome(r))
}

// ---- the exec rule ----

/// In a child: `run()`, which execs and returns the errno only when that fails (sent back
/// through a close-on-exec pipe, so a program that ran is told from an exec that failed);
/// the program's output goes to stderr, and it must exit 0.
fn exec_in_child(run: impl FnOnce() -> libc::c_int) -> Result<(), Step> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    setup(
        "pipe",
        check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }.into()),
    )?;
    // SAFETY: fork in a single-threaded probe; the child only calls async-signal-safe
    // functions (dup2, write, the execve family, _exit).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Step::Setup("fork", Errno::last()));
    }
    if pid == 0 {
        // SAFETY: the child's own descriptors; `e` is a local int written whole.
        unsafe {
            libc::dup2(2, 1);
            let e = run();
            libc::write(fds[1], (&e as *const libc::c_int).cast(), 4);
            libc::_exit(126);
        }
    }
    // SAFETY: closes the parent's copy of the write end, then reads at most 4 bytes into a
    // local, and reaps the child just forked.
    let (n, e, status) = unsafe {
        libc::close(fds[1]);
        let mut e: libc::c_int = 0;
        let n = libc::read(fds[0], (&mut e as *mut libc::c_int).cast(), 4);
        libc::close(fds[0]);
        let mut status = 0;
        if libc::waitpid(pid, &mut status, 0) < 0 {
            return Err(Step::Cleanup("waitpid", Errno::last()));
        }
        (n, e, status)
    };
    if n == 4 {
        return Err(Step::Judged(Errno(e)));
    }
    match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
        Some(0) => Ok(()),
        _ => Err(Step::Other("the program ran and failed")),
    }
}

/// argv for a child: PATH (as argv[0]) and ARGS, NUL-terminated.
fn argv_of(path: &CString, rest: &[OsString]) -> Option<Vec<CString>> {
    let mut v = vec![path.clone()];
    for a in rest {
        v.push(CString::new(a.as_bytes()).ok()?);
    }
    Some(v)
}

/// `exec PATH [ARGS]`: judged: execv(PATH) in a child (which must then exit 0).
fn exec(path: &CString, rest: &[OsString]) -> Result<(), Step> {
    let argv = argv_of(path, rest).ok_or(Step::Other("an argument holds a NUL"))?;
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    exec_in_child(|| {
        // SAFETY: `path` and every argv pointer are NUL-terminated and live; argv ends with
        // NULL.
        unsafe { libc::execv(path.as_ptr(), ptrs.as_ptr()) };
        Errno::last().0
    })
}

/// `memfd-exec PATH [ARGS]`: setup: a memfd holding PATH's bytes; judged: executing it
/// (execveat AT_EMPTY_PATH) in a child.
fn memfd_exec(path: &CString, rest: &[OsString]) -> Result<(), Step> {
    let bytes = std::fs::read(OsStr::from_bytes(path.as_bytes()))
        .map_err(|e| Step::Setup("read the program", Errno::of_io(&e)))?;
    // SAFETY: memfd_create with a NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"probe".as_ptr(), 0) };
    let fd = setup("memfd_create", check(fd.into()))? as libc::c_int;
    let mut file = {
        use std::os::fd::FromRawFd;
        // SAFETY: `fd` was just created and is owned here alone.
        unsafe { std::fs::File::from_raw_fd(fd) }
    };
    file.write_all(&bytes)
        .map_err(|e| Step::Setup("write the memfd", Errno::of_io(&e)))?;
    let argv = argv_of(path, rest).ok_or(Step::Other("an argument holds a NUL"))?;
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    exec_in_child(|| {
        // SAFETY: execveat of the memfd by descriptor with an empty path; argv and envp are
        // NULL-terminated arrays of live NUL-terminated strings.
        unsafe {
            libc::syscall(
                libc::SYS_execveat,
                fd,
                c"".as_ptr(),
                ptrs.as_ptr(),
                env.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        };
        Errno::last().0
    })
}

/// `mmap-exec PATH`: setup: open PATH read-only; judged: mmap of its first page
/// PROT_READ|PROT_EXEC, MAP_PRIVATE.
fn mmap_exec(path: &CString) -> Result<(), Step> {
    let fd = setup("open", open(path, libc::O_RDONLY))?;
    // SAFETY: a fresh private mapping of one page of an open file; unmapped at once.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::MAP_PRIVATE,
            fd.0,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Errno::last().into());
    }
    // SAFETY: the mapping made above, one page.
    unsafe { libc::munmap(p, 4096) };
    Ok(())
}

/// `dlopen PATH`: judged: dlopen(PATH, RTLD_NOW) (a refused mapping shows in dlerror's text).
fn dlopen(path: &CString) -> Result<(), Step> {
    // SAFETY: dlopen of a NUL-terminated path; the handle is closed again.
    let h = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if !h.is_null() {
        // SAFETY: the handle dlopen just returned.
        unsafe { libc::dlclose(h) };
        return Ok(());
    }
    // SAFETY: dlerror returns a NUL-terminated message (or NULL) owned by the loader.
    let msg = unsafe {
        let m = libc::dlerror();
        if m.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(m).to_string_lossy().into_owned()
        }
    };
    eprintln!("proc-probe dlopen: {msg}");
    // The loader keeps the errno of a refused mmap only in some versions; glibc 2.36 says
    // "failed to map segment from shared object" alone.
    if msg.contains("Operation not permitted") || msg.contains("failed to map segment") {
        Err(Step::Judged(Errno(libc::EPERM)))
    } else {
        Err(Step::Other("dlopen failed otherwise"))
    }
}

/// `anon-exec`: judged: an anonymous mapping PROT_READ|PROT_EXEC; `mprotect-exec`: setup: an
/// anonymous read-write mapping; judged: mprotect to PROT_READ|PROT_EXEC.
fn anon_exec(via_mprotect: bool) -> Result<(), Step> {
    let first = if via_mprotect {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ | libc::PROT_EXEC
    };
    // SAFETY: a fresh anonymous private mapping of one page, unmapped before returning.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            first,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let e = Errno::last();
        return Err(if via_mprotect {
            Step::Setup("mmap", e)
        } else {
            Step::Judged(e)
        });
    }
    let r = if via_mprotect {
        // SAFETY: the page mapped above.
        let rc = unsafe { libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_EXEC) };
        if rc < 0 {
            Err(Errno::last().into())
        } else {
            Ok(())
        }
    } else {
        Ok(())
    };
    // SAFETY: the page mapped above.
    unsafe { libc::munmap(p, 4096) };
    r
}

// ---- sleeper ----

/// The buffer vm-read and vm-write aim at (its address is printed).
static BUFFER: AtomicU64 = AtomicU64::new(0x0123_4567_89ab_cdef);
/// SIGUSR1s received, counted by the handler.
static USR1: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    USR1.fetch_add(1, Ordering::SeqCst);
}

/// An initialised signal set holding `signals`.
fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set (it cannot fail on a valid pointer), sigaddset
    // only sets bits in it.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for &s in signals {
            libc::sigaddset(set.as_mut_ptr(), s);
        }
        set.assume_init()
    }
}

/// `path` with `suffix` appended to its last component.
fn with_suffix(path: &OsString, suffix: &str) -> PathBuf {
    let mut s = path.clone();
    s.push(suffix);
    PathBuf::from(s)
}

fn sleeper_setup(ready: Option<&OsString>, line: &str) -> Result<(), Outcome> {
    for s in 1..32 {
        if [libc::SIGKILL, libc::SIGSTOP, libc::SIGUSR1].contains(&s) {
            continue;
        }
        // SAFETY: installs the default action, no handler of ours.
        unsafe { libc::signal(s, libc::SIG_DFL) };
    }
    let handler = on_usr1 as extern "C" fn(libc::c_int);
    // SAFETY: on_usr1 only touches an atomic, which is async-signal-safe.
    if unsafe { libc::signal(libc::SIGUSR1, handler as libc::sighandler_t) } == libc::SIG_ERR {
        return Err(Outcome::Setup("signal SIGUSR1", Errno::last()));
    }
    // SIGUSR1 stays blocked except inside sigsuspend, so none arrives between the check of
    // the count and the wait. Everything else is unblocked.
    let blocked = sigset(&[libc::SIGUSR1]);
    // SAFETY: sigprocmask reads an initialised set; no old set is asked for.
    let rc = unsafe { libc::sigprocmask(libc::SIG_SETMASK, &blocked, std::ptr::null_mut()) };
    unit(rc).map_err(|e| Outcome::Setup("sigprocmask", e))?;
    if let Some(ready) = ready {
        let tmp = with_suffix(ready, ".tmp");
        std::fs::write(&tmp, format!("{line}\n"))
            .and_then(|()| std::fs::rename(&tmp, ready))
            .map_err(|e| Outcome::Setup("ready file", Errno::of_io(&e)))?;
    }
    Ok(())
}

/// Starts a thread that blocks every signal (so SIGUSR1 reaches the main thread) and leaves
/// once `exit_file` exists; returns its thread id.
fn exiting_thread(exit_file: PathBuf) -> Result<libc::pid_t, Outcome> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .spawn(move || {
            let all = sigset(&(1..32).collect::<Vec<_>>());
            // SAFETY: pthread_sigmask reads an initialised set; no old set is asked for.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut()) };
            // SAFETY: gettid takes no argument.
            let _ = tx.send(unsafe { libc::gettid() });
            while !exit_file.exists() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
        .map_err(|e| Outcome::Setup("thread", Errno::of_io(&e)))?;
    rx.recv()
        .map_err(|_| Outcome::Other("thread did not start"))
}

/// `pty-holder READY [CGROUP]`: a session of its own whose controlling terminal is a new pty,
/// whose master it holds; writes `pid=N pts=/dev/pts/K` to READY (through READY.tmp) and waits
/// until a signal ends it (SIGHUP, a hangup, included). With CGROUP, a child (in the leader's
/// session and group) moves itself there and writes `pid=N member=M pts=...`, then waits too.
fn pty_holder(args: &[OsString]) -> ExitCode {
    let (ready, cgroup) = match args {
        [ready] => (ready, None),
        [ready, cgroup] => (ready, Some(cgroup)),
        _ => return usage("pty-holder READY [CGROUP]"),
    };
    let pts = match pty_session() {
        Ok(pts) => pts,
        Err(o) => {
            eprintln!("proc-probe pty-holder: {o}");
            println!("{o}");
            return ExitCode::from(o.exit_code());
        }
    };
    for s in [libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
        // SAFETY: installs the default action, no handler of ours.
        unsafe { libc::signal(s, libc::SIG_DFL) };
    }
    let leader = std::process::id();
    let mut line = format!("pid={leader} pts={pts}");
    if let Some(cgroup) = cgroup {
        // SAFETY: fork; the leader only waits for a signal below.
        match unsafe { libc::fork() } {
            -1 => {
                eprintln!("proc-probe pty-holder: fork: {}", Errno::last());
                return ExitCode::from(2);
            }
            0 => {
                let procs = PathBuf::from(cgroup).join("cgroup.procs");
                if let Err(e) = std::fs::write(&procs, "0") {
                    eprintln!("proc-probe pty-holder: {}: {e}", procs.display());
                    return ExitCode::from(2);
                }
                line = format!("pid={leader} member={} pts={pts}", std::process::id());
            }
            _ => loop {
                // SAFETY: pause only waits for a signal.
                unsafe { libc::pause() };
            },
        }
    }
    let tmp = with_suffix(ready, ".tmp");
    if let Err(e) =
        std::fs::write(&tmp, format!("{line}\n")).and_then(|()| std::fs::rename(&tmp, ready))
    {
        eprintln!("proc-probe pty-holder: ready file: {e}");
        return ExitCode::from(2);
    }
    loop {
        // SAFETY: pause only waits for a signal.
        unsafe { libc::pause() };
    }
}

/// `fanotify-holder PATH READY`: see the module's list.
fn fanotify_holder(args: &[OsString]) -> ExitCode {
    let [path, ready] = args else {
        return usage("fanotify-holder PATH READY");
    };
    let Some(path) = arg_path(path) else {
        return usage("fanotify-holder PATH READY");
    };
    // SAFETY: fanotify_init takes two integers and returns a descriptor (kept open: the
    // holder lives until it is killed).
    let group = unsafe { libc::fanotify_init(libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC, 0) };
    if group < 0 || fanotify_add(group, FAN_MARK_FILESYSTEM, libc::FAN_OPEN, &path).is_err() {
        eprintln!("proc-probe fanotify-holder: {}", Errno::last());
        return ExitCode::from(2);
    }
    let tmp = with_suffix(ready, ".tmp");
    if let Err(e) = std::fs::write(&tmp, format!("pid={}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, ready))
    {
        eprintln!("proc-probe fanotify-holder: ready file: {e}");
        return ExitCode::from(2);
    }
    loop {
        // SAFETY: pause only waits for a signal.
        unsafe { libc::pause() };
    }
}

/// Forks (the parent leaves at once, so the child is no process group leader), makes the
/// child a session leader, and gives it a new pty as controlling terminal; the master stays
/// open (leaked on purpose: the holder lives until it is killed). Returns the slave's path.
fn pty_session() -> Result<String, Outcome> {
    // SAFETY: fork; the parent only _exits.
    match unsafe { libc::fork() } {
        -1 => return Err(Outcome::Setup("fork", Errno::last())),
        0 => {}
        // SAFETY: the parent leaves at once, running none of its exit code.
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: plain calls; ptsname_r writes at most buf.len() bytes into a live buffer; the
    // slave path is NUL-terminated by it.
    unsafe {
        if libc::setsid() < 0 {
            return Err(Outcome::Setup("setsid", Errno::last()));
        }
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        if master < 0 {
            return Err(Outcome::Setup("posix_openpt", Errno::last()));
        }
        if libc::grantpt(master) < 0 || libc::unlockpt(master) < 0 {
            return Err(Outcome::Setup("unlockpt", Errno::last()));
        }
        let mut buf = [0 as libc::c_char; 64];
        if libc::ptsname_r(master, buf.as_mut_ptr(), buf.len()) != 0 {
            return Err(Outcome::Setup("ptsname_r", Errno::last()));
        }
        // Opened without O_NOCTTY by a session leader with none: its controlling terminal.
        if libc::open(buf.as_ptr(), libc::O_RDWR) < 0 {
            return Err(Outcome::Setup("open pts", Errno::last()));
        }
        Ok(std::ffi::CStr::from_ptr(buf.as_ptr())
            .to_string_lossy()
            .into_owned())
    }
}

/// `seccomp-pair READY CGROUP`: a target T (this process, left where it was started) whose
/// getppid(2) goes to a seccomp user-notification listener, and a supervisor S holding the
/// listener, forked from T and moved to cgroup CGROUP (its `cgroup.procs`) before anything
/// else. Writes `target=T supervisor=S` to READY. Once READY.go exists, T calls getppid and S
/// (after 0.5 s) receives the notification (RECV), adds its stderr to T's descriptors (ADDFD,
/// as a 32-byte read-write ioctl) and answers 42 (SEND); then S writes
/// `recv=OUTCOME addfd=OUTCOME send=OUTCOME` to READY.supervisor and T `ret=N` (or `errno=E`) to
/// READY.target, and both exit. A refused SEND leaves T waiting until S exits (its listener
/// closed: ENOSYS).
fn seccomp_pair(args: &[OsString]) -> ExitCode {
    let [ready, cgroup] = args else {
        return usage("seccomp-pair READY CGROUP");
    };
    match seccomp_pair_run(ready, cgroup) {
        Ok(()) => ExitCode::SUCCESS,
        Err(o) => {
            eprintln!("proc-probe seccomp-pair: {o}");
            println!("{o}");
            ExitCode::from(o.exit_code())
        }
    }
}

fn seccomp_pair_run(ready: &OsString, cgroup: &OsString) -> Result<(), Outcome> {
    const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
    const NOTIF_SEND: libc::c_ulong = 0xc018_2101;
    const NOTIF_ADDFD_32: libc::c_ulong = 0xc020_2103;
    // ld [nr]; jeq getppid ? user_notif : allow
    let filter = [
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: libc::SYS_getppid as u32,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x7fc0_0000,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    unit(rc).map_err(|e| Outcome::Setup("no_new_privs", e))?;
    // SAFETY: seccomp(SET_MODE_FILTER, NEW_LISTENER) reads the filter program, which lives
    // until the call returns; it returns the listener's descriptor.
    let listener = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            1 as libc::c_long,
            8 as libc::c_long,
            &prog as *const libc::sock_fprog,
        )
    };
    let listener =
        check(listener).map_err(|e| Outcome::Setup("seccomp listener", e))? as libc::c_int;
    let go = with_suffix(ready, ".go");
    let wait_go = || {
        while !go.exists() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    // SAFETY: fork; the child runs only this function's code, then _exits.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(Outcome::Setup("fork", Errno::last()));
    }
    if child == 0 {
        // The supervisor: out of the target's cgroup first.
        let code = match std::fs::write(PathBuf::from(cgroup).join("cgroup.procs"), "0") {
            Err(e) => {
                eprintln!("proc-probe seccomp-pair: joining {cgroup:?}: {e}");
                2
            }
            Ok(()) => {
                wait_go();
                std::thread::sleep(std::time::Duration::from_millis(500));
                let mut notif = [0u8; 80];
                // SAFETY: RECV fills a struct seccomp_notif (80 bytes, zeroed as required).
                let recv = unsafe { libc::ioctl(listener, NOTIF_RECV, notif.as_mut_ptr()) };
                let recv = outcome(unit(recv).map_err(Step::Judged));
                // ADDFD in a form of its own: the kernel takes any size and direction of it
                // (an extensible struct: a larger one whose extra bytes are zero). struct
                // seccomp_notif_addfd: id, flags, srcfd (our stderr), newfd, newfd_flags.
                let mut addfd = [0u8; 32];
                addfd[..8].copy_from_slice(&notif[..8]);
                addfd[12..16].copy_from_slice(&2u32.to_ne_bytes());
                // SAFETY: ADDFD (_IOWR, 32 bytes) reads and writes a live 32-byte buffer.
                let add = unsafe { libc::ioctl(listener, NOTIF_ADDFD_32, addfd.as_mut_ptr()) };
                let add = outcome(check(add as libc::c_long).map(|_| ()).map_err(Step::Judged));
                // struct seccomp_notif_resp: id, val, error, flags.
                let mut resp = [0u8; 24];
                resp[..8].copy_from_slice(&notif[..8]);
                resp[8..16].copy_from_slice(&42i64.to_ne_bytes());
                // SAFETY: SEND reads a struct seccomp_notif_resp (24 bytes).
                let send = unsafe { libc::ioctl(listener, NOTIF_SEND, resp.as_mut_ptr()) };
                let send = outcome(unit(send).map_err(Step::Judged));
                let _ = std::fs::write(
                    with_suffix(ready, ".supervisor"),
                    format!("recv={recv} addfd={add} send={send}\n"),
                );
                0
            }
        };
        // SAFETY: leave without running the target's exit code.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: the target keeps no listener: only the supervisor answers.
    unsafe { libc::close(listener) };
    let tmp = with_suffix(ready, ".tmp");
    std::fs::write(
        &tmp,
        format!("target={} supervisor={child}\n", std::process::id()),
    )
    .and_then(|()| std::fs::rename(&tmp, ready))
    .map_err(|e| Outcome::Setup("ready file", Errno::of_io(&e)))?;
    wait_go();
    // SAFETY: getppid takes no argument; here it waits for the supervisor's answer.
    let ret = unsafe { libc::syscall(libc::SYS_getppid) };
    let line = if ret < 0 {
        format!("errno={}\n", Errno::last())
    } else {
        format!("ret={ret}\n")
    };
    let _ = std::fs::write(with_suffix(ready, ".target"), line);
    let _ = wait(child);
    Ok(())
}

fn sleeper(args: &[OsString]) -> ExitCode {
    let ready = match args {
        [] => None,
        [r] => Some(r),
        _ => return usage("sleeper [READY_FILE]"),
    };
    // With READY, a second thread that leaves when READY.thread-exit appears: a descriptor of
    // its /proc/PID/task/TID file outlives it.
    let tid = match ready {
        Some(r) => match exiting_thread(with_suffix(r, ".thread-exit")) {
            Ok(tid) => format!(" tid={tid}"),
            Err(o) => {
                eprintln!("proc-probe sleeper: {o}");
                println!("{o}");
                return ExitCode::from(o.exit_code());
            }
        },
        None => String::new(),
    };
    let line = format!(
        "pid={} addr={:#x}{tid}",
        std::process::id(),
        BUFFER.as_ptr() as usize
    );
    if let Err(o) = sleeper_setup(ready, &line) {
        eprintln!("proc-probe sleeper: {o}");
        println!("{o}");
        return ExitCode::from(o.exit_code());
    }
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
    let signals = ready.map(|r| with_suffix(r, ".signals"));
    let unblocked = sigset(&[]);
    let mut seen = 0;
    loop {
        while seen < USR1.load(Ordering::SeqCst) {
            seen += 1;
            let value = BUFFER.load(Ordering::SeqCst);
            eprintln!("proc-probe sleeper: SIGUSR1 #{seen}, buffer {value:#018x}");
            if let Some(path) = &signals {
                let r = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(b"usr1\n"));
                if let Err(e) = r {
                    eprintln!("proc-probe sleeper: appending to {}: {e}", path.display());
                }
            }
        }
        // SAFETY: sigsuspend reads an initialised set; it returns after a handler ran.
        unsafe { libc::sigsuspend(&unblocked) };
    }
}

// ---- entry points ----

fn usage(what: &str) -> ExitCode {
    eprintln!("usage: proc-probe {what} (see the source's header)");
    println!("error: usage");
    ExitCode::from(64)
}

/// `batch`: one operation per line of stdin, one result line each.
fn batch() -> ExitCode {
    use std::io::BufRead;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().split(b'\n') {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("proc-probe batch: reading stdin: {e}");
                return ExitCode::from(2);
            }
        };
        let mut words = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .map(|w| OsString::from_vec(w.to_vec()));
        let result = match words.next() {
            None => "error: usage".to_string(),
            Some(op) => {
                let op = String::from_utf8_lossy(op.as_bytes()).into_owned();
                let rest: Vec<OsString> = words.collect();
                match run(&op, &rest) {
                    Some(o) => {
                        if o != Outcome::Allowed {
                            eprintln!("proc-probe {op} {rest:?}: {o}");
                        }
                        o.to_string()
                    }
                    None => {
                        eprintln!("proc-probe batch: {op}: unknown operation or wrong arguments");
                        "error: usage".to_string()
                    }
                }
            }
        };
        if writeln!(out, "{result}")
            .and_then(|()| out.flush())
            .is_err()
        {
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(op) = args.next() else {
        return usage("OP ARGS...");
    };
    let rest: Vec<OsString> = args.collect();
    let op = String::from_utf8_lossy(OsStr::new(&op).as_bytes()).into_owned();
    match op.as_str() {
        "sleeper" => sleeper(&rest),
        "trace-hold" => trace_hold(&rest),
        "pty-holder" => pty_holder(&rest),
        "fanotify-holder" => fanotify_holder(&rest),
        "seccomp-pair" => seccomp_pair(&rest),
        "batch" if rest.is_empty() => batch(),
        "batch" => usage("batch < OPERATIONS"),
        _ => match run(&op, &rest) {
            Some(o) => {
                if o != Outcome::Allowed {
                    eprintln!("proc-probe {op}: {o}");
                }
                println!("{o}");
                ExitCode::from(o.exit_code())
            }
            None => usage(&format!("{op}: unknown operation or wrong arguments")),
        },
    }
}
