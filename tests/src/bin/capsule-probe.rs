//! capsule-probe: performs ONE filesystem operation with raw syscalls and says whether the
//! kernel let it happen. Used by the fsguard suite in the test guest
//! (tests/vm/guest/fsguard-suite.sh), where it runs as root or as an unprivileged user, inside
//! or outside a capsule's cgroup.
//!
//! ```text
//! capsule-probe OP ARGS...
//! ```
//!
//! On stdout, exactly one line:
//!   `allowed`             the operation succeeded                         (exit 0)
//!   `refused`             the operation failed with EPERM, fsguard's answer (exit 1)
//!   `error: <ERRNO>`      it failed otherwise (EACCES, EOPNOTSUPP, ...)    (exit 2)
//!   `error: setup <step>: <ERRNO>`  a preparatory step failed, so the operation under test
//!                         was not even attempted (exit 2)
//! Usage errors print `error: usage` and exit 64. Details go to stderr.
//!
//! Only the step named by OP is judged; the steps that merely prepare it (opening a file
//! read-only before an ioctl, making an O_TMPFILE before linking it) are setup.
//!
//! Operations (paths are used as given, relative ones against the working directory):
//!   open-rdonly F | open-wronly F | open-rdwr F | open-trunc F (O_WRONLY|O_TRUNC)
//!   open-rdonly-trunc F | open-append F (O_WRONLY|O_APPEND)
//!   truncate F                   truncate(2) to length 0
//!   create F                     open(O_CREAT|O_EXCL|O_WRONLY, 0666); EPERM with F created
//!                                all the same (refused at open, after the creation) is
//!                                `error: created, then EPERM`: the modification happened
//!   tmpfile DIR                  open(DIR, O_TMPFILE|O_RDWR)
//!   tmpfile-link DIR NEW         setup: O_TMPFILE in DIR; judged: linkat() it to NEW
//!                                (through /proc/self/fd, so no CAP_DAC_READ_SEARCH needed)
//!   mkdir D | mkfifo P | mknod-chr P (char device 1:3, /dev/null's)
//!   bind-unix P                  bind a unix socket to P (its socket file stays)
//!   symlink TARGET LINK | link SRC DST | unlink F | rmdir D
//!   rename OLD NEW               renameat2(flags 0)
//!   exchange A B                 renameat2(RENAME_EXCHANGE)
//!   chmod F MODE (octal) | chown F UID GID (-1 keeps) | lchown F UID GID
//!   utimes F                     utimensat(NULL): "now", needs only write permission
//!   utimes-set F                 utimensat with explicit times, needs ownership
//!   setxattr F NAME [VALUE]      security.capability gets a valid v2 capability set
//!   removexattr F NAME
//!   setflags F                   setup: open O_RDONLY, FS_IOC_GETFLAGS;
//!                                judged: FS_IOC_SETFLAGS (flags | FS_NODUMP_FL)
//!   fssetxattr F                 setup: open O_RDONLY, FS_IOC_FSGETXATTR;
//!                                judged: FS_IOC_FSSETXATTR with the same values
//!   handle-open-wronly F         setup: name_to_handle_at(F), drop the kernel's unused
//!                                dentries and inodes (vm.drop_caches=2); judged:
//!                                open_by_handle_at(O_WRONLY) (needs CAP_DAC_READ_SEARCH)
//!   handle-readlink F            the same open with O_RDONLY; prints (instead of the one
//!                                result line) the kernel's name for the opened file:
//!                                `/` when it came back without its directory
//!   prefd F READY GO             see below
//!   batch                        reads operations from stdin, one per line (OP ARGS...,
//!                                separated by blanks), and prints one result line for each,
//!                                in order; exit 0. All run in this one process, so with
//!                                one identity and cgroup (one exec instead of hundreds,
//!                                which matters under an emulated CPU).
//!
//! `prefd F READY GO` opens F with O_RDWR (and O_RDONLY), maps it MAP_SHARED once writable
//! and once read-only, creates the file READY, waits (up to 300 s) until GO exists, then
//! tries each method below through those descriptors and prints one line per method:
//! `<method>: allowed|refused|error: <ERRNO>`. It does not modify F before GO (so F can be
//! sealed meanwhile); F must be at least 8 KiB long. Methods:
//!   read             pread(2) of the O_RDWR descriptor (reading stays allowed)
//!   write            write(2)
//!   pwrite           pwrite(2) at 100
//!   sendfile         sendfile(2) from the O_RDONLY descriptor into F
//!   copy_file_range  copy_file_range(2) from F's start to F at 4096
//!   splice           splice(2) from a pipe into F at 200
//!   io_uring         IORING_OP_WRITE at 300
//!   ftruncate        ftruncate(2) to F's current size
//!   fallocate        fallocate(2) mode 0 over the first 4 KiB
//!   mmap             a NEW mmap(PROT_WRITE, MAP_SHARED), then a store into it and msync
//!   mprotect         mprotect(PROT_WRITE) of the read-only shared mapping made before GO,
//!                    then a store
//!   premapped        a store into the writable shared mapping made BEFORE the seal; no LSM
//!                    hook sees page stores, so this reports what the kernel allows
//! Exit 0 once every method was tried; 2 when setup failed.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// One syscall's failure: the errno it returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Errno(i32);

impl Errno {
    fn last() -> Self {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
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
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EDQUOT => "EDQUOT",
        libc::ESTALE => "ESTALE",
        libc::ENOKEY => "ENOKEY",
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
    /// Failed, but not before it modified something.
    Partial(&'static str),
}

impl Outcome {
    fn of(r: Result<(), Errno>) -> Self {
        match r {
            Ok(()) => Outcome::Allowed,
            Err(Errno(libc::EPERM)) => Outcome::Refused,
            Err(e) => Outcome::Failed(e),
        }
    }

    fn exit_code(self) -> u8 {
        match self {
            Outcome::Allowed => 0,
            Outcome::Refused => 1,
            Outcome::Failed(_) | Outcome::Setup(..) | Outcome::Partial(_) => 2,
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
            Outcome::Partial(what) => write!(f, "error: {what}"),
        }
    }
}

/// A judged step, or a setup step's failure.
enum Step {
    Judged(Errno),
    Setup(&'static str, Errno),
    Partial(&'static str),
}

impl From<Errno> for Step {
    fn from(e: Errno) -> Self {
        Step::Judged(e)
    }
}

fn outcome(r: Result<(), Step>) -> Outcome {
    match r {
        Ok(()) => Outcome::Allowed,
        Err(Step::Judged(e)) => Outcome::of(Err(e)),
        Err(Step::Setup(step, e)) => Outcome::Setup(step, e),
        Err(Step::Partial(what)) => Outcome::Partial(what),
    }
}

/// Marks a preparatory step: its failure is reported as setup, not judged.
fn setup<T>(step: &'static str, r: Result<T, Errno>) -> Result<T, Step> {
    r.map_err(|e| Step::Setup(step, e))
}

/// Turns a libc return value (-1 and errno on failure) into a Result.
fn check(rc: libc::c_long) -> Result<libc::c_long, Errno> {
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

fn cstr(s: &OsString) -> Result<CString, Errno> {
    CString::new(s.as_bytes()).map_err(|_| Errno(libc::EINVAL))
}

/// An owned descriptor, closed on drop.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: self.0 is a descriptor this process opened and nothing else closes.
        unsafe { libc::close(self.0) };
    }
}

fn open(path: &CString, flags: libc::c_int, mode: libc::mode_t) -> Result<Fd, Errno> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
    check(fd.into()).map(|_| Fd(fd))
}

fn open_op(path: &CString, flags: libc::c_int) -> Result<(), Step> {
    open(path, flags, 0o666)?;
    Ok(())
}

/// open(O_CREAT|O_EXCL): a refusal must leave no file behind. O_EXCL makes sure a file
/// found afterwards is the one this call created.
fn create(path: &CString) -> Result<(), Step> {
    match open(path, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o666) {
        Ok(_) => Ok(()),
        Err(Errno(libc::EPERM))
            if std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(path.as_bytes())).is_ok() =>
        {
            Err(Step::Partial("created, then EPERM"))
        }
        Err(e) => Err(e.into()),
    }
}

fn unit(rc: libc::c_int) -> Result<(), Errno> {
    check(rc.into()).map(|_| ())
}

fn mknod(path: &CString, mode: libc::mode_t, dev: libc::dev_t) -> Result<(), Step> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    unit(unsafe { libc::mknod(path.as_ptr(), mode, dev) })?;
    Ok(())
}

fn renameat2(old: &CString, new: &CString, flags: libc::c_uint) -> Result<(), Step> {
    // SAFETY: both paths are NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            old.as_ptr(),
            libc::AT_FDCWD,
            new.as_ptr(),
            flags,
        )
    };
    unit(rc)?;
    Ok(())
}

fn parse_id(s: &OsString) -> Result<u32, Errno> {
    let s = s.to_str().ok_or(Errno(libc::EINVAL))?;
    if s == "-1" {
        return Ok(u32::MAX);
    }
    s.parse().map_err(|_| Errno(libc::EINVAL))
}

/// A valid `security.capability` value: revision 2, CAP_NET_BIND_SERVICE permitted.
fn capability_xattr() -> Vec<u8> {
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    let words = [VFS_CAP_REVISION_2, 1 << 10, 0, 0, 0];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// `FS_IOC_GETFLAGS` / `FS_IOC_SETFLAGS`: _IOR/_IOW('f', 1/2, long).
const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
/// `FS_IOC_FSGETXATTR` / `FS_IOC_FSSETXATTR`: _IOR/_IOW('X', 31/32, struct fsxattr).
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;
const FS_IOC_FSSETXATTR: libc::c_ulong = 0x401c_5820;
const FS_NODUMP_FL: libc::c_long = 0x0000_0040;

/// `struct fsxattr` of linux/fs.h (28 bytes).
#[repr(C)]
#[derive(Default)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

fn setflags(path: &CString) -> Result<(), Step> {
    let fd = setup(
        "open O_RDONLY",
        open(path, libc::O_RDONLY | libc::O_NONBLOCK, 0),
    )?;
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long (the kernel's `int` for this ioctl; a zeroed
    // long holds it in its low half on little-endian x86_64) to a live local.
    let rc = unsafe { libc::ioctl(fd.0, FS_IOC_GETFLAGS, &mut flags as *mut libc::c_long) };
    setup("FS_IOC_GETFLAGS", unit(rc))?;
    flags |= FS_NODUMP_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int from a live local.
    let rc = unsafe { libc::ioctl(fd.0, FS_IOC_SETFLAGS, &flags as *const libc::c_long) };
    unit(rc)?;
    Ok(())
}

fn fssetxattr(path: &CString) -> Result<(), Step> {
    let fd = setup(
        "open O_RDONLY",
        open(path, libc::O_RDONLY | libc::O_NONBLOCK, 0),
    )?;
    let mut fsx = FsXattr::default();
    // SAFETY: FS_IOC_FSGETXATTR fills a struct fsxattr, which FsXattr is (repr(C), 28 bytes).
    let rc = unsafe { libc::ioctl(fd.0, FS_IOC_FSGETXATTR, &mut fsx as *mut FsXattr) };
    setup("FS_IOC_FSGETXATTR", unit(rc))?;
    // SAFETY: FS_IOC_FSSETXATTR reads a struct fsxattr from a live local.
    let rc = unsafe { libc::ioctl(fd.0, FS_IOC_FSSETXATTR, &fsx as *const FsXattr) };
    unit(rc)?;
    Ok(())
}

fn tmpfile_link(dir: &CString, new: &CString) -> Result<(), Step> {
    let fd = setup(
        "O_TMPFILE",
        open(dir, libc::O_TMPFILE | libc::O_RDWR, 0o666),
    )?;
    let proc_path = CString::new(format!("/proc/self/fd/{}", fd.0)).expect("no NUL");
    // SAFETY: both paths are NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr(),
            libc::AT_FDCWD,
            new.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    unit(rc)?;
    Ok(())
}

/// struct file_handle with room for the largest handle (MAX_HANDLE_SZ).
#[repr(C)]
struct FileHandle {
    handle_bytes: libc::c_uint,
    handle_type: libc::c_int,
    f_handle: [u8; 128],
}

/// open_by_handle_at(`flags`) of F's handle, taken after the kernel was asked to drop its
/// unused dentries and inodes (so, on a disk filesystem, the handle is resolved without F's
/// directory: a dentry the kernel marks DCACHE_DISCONNECTED). Only the open is judged.
fn open_by_handle(path: &CString, flags: libc::c_int) -> Result<Fd, Step> {
    let mut handle = FileHandle {
        handle_bytes: 128,
        handle_type: 0,
        f_handle: [0; 128],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `path` is NUL-terminated; `handle` has room for handle_bytes bytes of handle;
    // `mount_id` is a live local.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            path.as_ptr(),
            &mut handle as *mut FileHandle,
            &mut mount_id as *mut libc::c_int,
            0,
        )
    };
    setup("name_to_handle_at", check(rc))?;
    let bytes = path.as_bytes();
    let dir = match bytes.iter().rposition(|&b| b == b'/') {
        Some(0) => CString::new("/").expect("no NUL"),
        Some(i) => CString::new(&bytes[..i]).expect("no NUL in a prefix"),
        None => CString::new(".").expect("no NUL"),
    };
    let mount_fd = setup(
        "open the directory",
        open(&dir, libc::O_RDONLY | libc::O_DIRECTORY, 0),
    )?;
    setup(
        "drop_caches",
        std::fs::write("/proc/sys/vm/drop_caches", "2")
            .map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO))),
    )?;
    // SAFETY: `handle` was filled by name_to_handle_at and outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.0,
            &mut handle as *mut FileHandle,
            flags | libc::O_CLOEXEC,
        )
    };
    Ok(Fd(check(fd)? as libc::c_int))
}

/// `handle-readlink F`: what the kernel names the file that open_by_handle_at (O_RDONLY)
/// returns, after dropping the caches: F itself when the handle came back with its
/// directory, `/` when it came back without it (a disconnected dentry).
fn handle_readlink(args: &[OsString]) -> ExitCode {
    let [path] = args else {
        println!("error: usage");
        return ExitCode::from(64);
    };
    let Ok(path) = cstr(path) else {
        println!("error: usage");
        return ExitCode::from(64);
    };
    let fd = match open_by_handle(&path, libc::O_RDONLY) {
        Ok(fd) => fd,
        Err(step) => {
            let o = outcome(Err(step));
            println!("{o}");
            return ExitCode::from(o.exit_code());
        }
    };
    match std::fs::read_link(format!("/proc/self/fd/{}", fd.0)) {
        Ok(target) => {
            println!("{}", target.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error: readlink: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs one operation; `None` for a usage error.
fn run(op: &str, args: &[OsString]) -> Option<Outcome> {
    let c = |i: usize| args.get(i).map(cstr);
    let n = args.len();
    let one = || -> Option<CString> {
        if n != 1 {
            return None;
        }
        c(0)?.ok()
    };
    let two = || -> Option<(CString, CString)> {
        if n != 2 {
            return None;
        }
        Some((c(0)?.ok()?, c(1)?.ok()?))
    };
    let r: Result<(), Step> = match op {
        "open-rdonly" => open_op(&one()?, libc::O_RDONLY),
        "open-wronly" => open_op(&one()?, libc::O_WRONLY),
        "open-rdwr" => open_op(&one()?, libc::O_RDWR),
        "open-trunc" => open_op(&one()?, libc::O_WRONLY | libc::O_TRUNC),
        "open-rdonly-trunc" => open_op(&one()?, libc::O_RDONLY | libc::O_TRUNC),
        "open-append" => open_op(&one()?, libc::O_WRONLY | libc::O_APPEND),
        "create" => create(&one()?),
        "tmpfile" => open_op(&one()?, libc::O_TMPFILE | libc::O_RDWR),
        "tmpfile-link" => {
            let (dir, new) = two()?;
            tmpfile_link(&dir, &new)
        }
        "truncate" => {
            let p = one()?;
            // SAFETY: `p` is NUL-terminated and outlives the call.
            unit(unsafe { libc::truncate(p.as_ptr(), 0) }).map_err(Step::from)
        }
        "mkdir" => {
            let p = one()?;
            // SAFETY: `p` is NUL-terminated and outlives the call.
            unit(unsafe { libc::mkdir(p.as_ptr(), 0o777) }).map_err(Step::from)
        }
        "mkfifo" => mknod(&one()?, libc::S_IFIFO | 0o666, 0),
        "mknod-chr" => mknod(&one()?, libc::S_IFCHR | 0o600, libc::makedev(1, 3)),
        "bind-unix" => {
            // A unix socket bound to the path leaves its socket file there.
            let p = one()?;
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(p.as_bytes()));
            std::os::unix::net::UnixListener::bind(path)
                .map(drop)
                .map_err(|e| Step::from(Errno(e.raw_os_error().unwrap_or(libc::EIO))))
        }
        "symlink" => {
            let (target, link) = two()?;
            // SAFETY: both paths are NUL-terminated and outlive the call.
            unit(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }).map_err(Step::from)
        }
        "link" => {
            let (src, dst) = two()?;
            // SAFETY: both paths are NUL-terminated and outlive the call.
            unit(unsafe { libc::link(src.as_ptr(), dst.as_ptr()) }).map_err(Step::from)
        }
        "unlink" => {
            let p = one()?;
            // SAFETY: `p` is NUL-terminated and outlives the call.
            unit(unsafe { libc::unlink(p.as_ptr()) }).map_err(Step::from)
        }
        "rmdir" => {
            let p = one()?;
            // SAFETY: `p` is NUL-terminated and outlives the call.
            unit(unsafe { libc::rmdir(p.as_ptr()) }).map_err(Step::from)
        }
        "rename" => {
            let (old, new) = two()?;
            renameat2(&old, &new, 0)
        }
        "exchange" => {
            let (a, b) = two()?;
            renameat2(&a, &b, libc::RENAME_EXCHANGE)
        }
        "chmod" => {
            let (p, mode) = two()?;
            let mode = u32::from_str_radix(mode.to_str().ok()?, 8).ok()?;
            // SAFETY: `p` is NUL-terminated and outlives the call.
            unit(unsafe { libc::chmod(p.as_ptr(), mode) }).map_err(Step::from)
        }
        "chown" | "lchown" => {
            if n != 3 {
                return None;
            }
            let p = c(0)?.ok()?;
            let uid = parse_id(&args[1]).ok()?;
            let gid = parse_id(&args[2]).ok()?;
            // SAFETY: `p` is NUL-terminated and outlives the call.
            let rc = unsafe {
                if op == "chown" {
                    libc::chown(p.as_ptr(), uid, gid)
                } else {
                    libc::lchown(p.as_ptr(), uid, gid)
                }
            };
            unit(rc).map_err(Step::from)
        }
        "utimes" => {
            let p = one()?;
            // SAFETY: `p` is NUL-terminated; a null `times` means "now".
            let rc = unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), std::ptr::null(), 0) };
            unit(rc).map_err(Step::from)
        }
        "utimes-set" => {
            let p = one()?;
            let t = libc::timespec {
                tv_sec: 1_000_000_000,
                tv_nsec: 0,
            };
            let times = [t, t];
            // SAFETY: `p` is NUL-terminated and `times` holds the two timespecs utimensat reads.
            let rc = unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), 0) };
            unit(rc).map_err(Step::from)
        }
        "setxattr" => {
            if !(2..=3).contains(&n) {
                return None;
            }
            let p = c(0)?.ok()?;
            let name = c(1)?.ok()?;
            let value: Vec<u8> = if name.as_bytes() == b"security.capability" {
                capability_xattr()
            } else {
                args.get(2)
                    .map(|v| v.as_bytes().to_vec())
                    .unwrap_or_else(|| b"probe".to_vec())
            };
            // SAFETY: `p` and `name` are NUL-terminated; `value` is readable for its length.
            let rc = unsafe {
                libc::setxattr(
                    p.as_ptr(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            };
            unit(rc).map_err(Step::from)
        }
        "removexattr" => {
            let (p, name) = two()?;
            // SAFETY: both strings are NUL-terminated and outlive the call.
            unit(unsafe { libc::removexattr(p.as_ptr(), name.as_ptr()) }).map_err(Step::from)
        }
        "setflags" => setflags(&one()?),
        "fssetxattr" => fssetxattr(&one()?),
        "handle-open-wronly" => open_by_handle(&one()?, libc::O_WRONLY).map(drop),
        _ => return None,
    };
    Some(outcome(r))
}

// ------------------------------------------------------------------------------------ prefd

/// A shared mapping, unmapped on drop.
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(fd: &Fd, len: usize, prot: libc::c_int) -> Result<Mapping, Errno> {
        // SAFETY: a fresh mapping chosen by the kernel (addr null): it overlaps nothing of ours.
        let addr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.0, 0) };
        if addr == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(Mapping { addr, len })
    }

    /// Stores one byte at `offset` and syncs it to the file.
    fn store(&self, offset: usize, byte: u8) -> Result<(), Errno> {
        assert!(offset < self.len);
        // SAFETY: the mapping is writable (checked by the caller through mmap/mprotect
        // succeeding) and `offset` lies within it; the file is at least `len` long, so the
        // store cannot fault past EOF.
        unsafe { std::ptr::write_volatile(self.addr.cast::<u8>().add(offset), byte) };
        // SAFETY: addr/len describe this live mapping.
        unit(unsafe { libc::msync(self.addr, self.len, libc::MS_SYNC) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: addr/len describe a mapping this value owns; nothing refers to it after.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

const PAGE: usize = 4096;

fn wait_for(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn prefd_write(fd: &Fd) -> Result<(), Errno> {
    // SAFETY: the buffer is a live 1-byte local.
    check(unsafe { libc::write(fd.0, b"w".as_ptr().cast(), 1) } as libc::c_long).map(|_| ())
}

fn prefd_pwrite(fd: &Fd) -> Result<(), Errno> {
    // SAFETY: the buffer is a live 1-byte local.
    check(unsafe { libc::pwrite(fd.0, b"p".as_ptr().cast(), 1, 100) } as libc::c_long).map(|_| ())
}

fn prefd_read(fd: &Fd) -> Result<(), Errno> {
    let mut b = [0u8; 16];
    // SAFETY: `b` is a live, writable 16-byte buffer.
    check(unsafe { libc::pread(fd.0, b.as_mut_ptr().cast(), b.len(), 0) } as libc::c_long)
        .map(|_| ())
}

fn prefd_sendfile(fd: &Fd, rfd: &Fd) -> Result<(), Errno> {
    let mut off: libc::off_t = 0;
    // SAFETY: `off` is a live local the kernel updates.
    check(unsafe { libc::sendfile(fd.0, rfd.0, &mut off, 1) } as libc::c_long).map(|_| ())
}

fn prefd_copy_file_range(fd: &Fd, rfd: &Fd) -> Result<(), Errno> {
    let mut off_in: libc::loff_t = 0;
    let mut off_out: libc::loff_t = PAGE as libc::loff_t;
    // SAFETY: both offsets are live locals the kernel updates.
    let rc = unsafe { libc::copy_file_range(rfd.0, &mut off_in, fd.0, &mut off_out, 1, 0) };
    check(rc as libc::c_long).map(|_| ())
}

fn prefd_splice(fd: &Fd) -> Result<(), Step> {
    let mut p = [0 as libc::c_int; 2];
    // SAFETY: `p` has room for the two descriptors pipe2 returns.
    setup(
        "pipe2",
        unit(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }),
    )?;
    let (r, w) = (Fd(p[0]), Fd(p[1]));
    // SAFETY: the buffer is a live 1-byte local.
    setup(
        "write to pipe",
        check(unsafe { libc::write(w.0, b"s".as_ptr().cast(), 1) } as libc::c_long),
    )?;
    let mut off: libc::loff_t = 200;
    // SAFETY: `off` is a live local the kernel updates.
    let rc = unsafe { libc::splice(r.0, std::ptr::null_mut(), fd.0, &mut off, 1, 0) };
    check(rc as libc::c_long)?;
    Ok(())
}

fn prefd_io_uring(fd: &Fd) -> Result<(), Step> {
    let mut ring = setup(
        "io_uring_setup",
        io_uring::IoUring::new(4).map_err(|e| Errno(e.raw_os_error().unwrap_or(0))),
    )?;
    let buf = *b"u";
    let sqe = io_uring::opcode::Write::new(io_uring::types::Fd(fd.0), buf.as_ptr(), 1)
        .offset(300)
        .build()
        .user_data(1);
    // SAFETY: `buf` and the descriptor outlive the request: we wait for its completion below
    // before either is dropped.
    setup("io_uring push", unsafe {
        ring.submission().push(&sqe).map_err(|_| Errno(libc::EBUSY))
    })?;
    setup(
        "io_uring_enter",
        ring.submit_and_wait(1)
            .map_err(|e| Errno(e.raw_os_error().unwrap_or(0))),
    )?;
    let cqe = setup(
        "io_uring completion",
        ring.completion().next().ok_or(Errno(libc::EIO)),
    )?;
    let res = cqe.result();
    if res < 0 {
        return Err(Errno(-res).into());
    }
    Ok(())
}

fn prefd_ftruncate(fd: &Fd) -> Result<(), Errno> {
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live, writable stat.
    unit(unsafe { libc::fstat(fd.0, &mut st) })?;
    // SAFETY: plain syscall on our descriptor.
    unit(unsafe { libc::ftruncate(fd.0, st.st_size) })
}

fn prefd_fallocate(fd: &Fd) -> Result<(), Errno> {
    // tmpfs answers EINTR whenever signal_pending(), which io_uring's task work (the step
    // before) can leave set for a moment after its ring is gone: not a verdict, so try again.
    let mut tries = 0;
    loop {
        // SAFETY: plain syscall on our descriptor.
        match unit(unsafe { libc::fallocate(fd.0, 0, 0, PAGE as libc::off_t) }) {
            Err(Errno(libc::EINTR)) if tries < 100 => tries += 1,
            r => return r,
        }
    }
}

fn prefd_mmap(fd: &Fd) -> Result<(), Errno> {
    let m = Mapping::new(fd, PAGE, libc::PROT_READ | libc::PROT_WRITE)?;
    m.store(400, b'm')
}

fn prefd_mprotect(ro: &Mapping) -> Result<(), Errno> {
    // SAFETY: addr/len describe the live read-only shared mapping `ro`.
    unit(unsafe { libc::mprotect(ro.addr, ro.len, libc::PROT_READ | libc::PROT_WRITE) })?;
    ro.store(500, b'r')
}

fn prefd(args: &[OsString]) -> ExitCode {
    let [path, ready, go] = args else {
        eprintln!("usage: capsule-probe prefd PATH READY GO");
        println!("error: usage");
        return ExitCode::from(64);
    };
    let fail = |step: &str, e: Errno| {
        println!("error: setup {step}: {e}");
        eprintln!("capsule-probe prefd: {step}: {e}");
        ExitCode::from(2)
    };
    let p = match cstr(path) {
        Ok(p) => p,
        Err(e) => return fail("path", e),
    };
    let fd = match open(&p, libc::O_RDWR, 0) {
        Ok(fd) => fd,
        Err(e) => return fail("open O_RDWR", e),
    };
    let rfd = match open(&p, libc::O_RDONLY, 0) {
        Ok(fd) => fd,
        Err(e) => return fail("open O_RDONLY", e),
    };
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live, writable stat.
    if let Err(e) = unit(unsafe { libc::fstat(fd.0, &mut st) }) {
        return fail("fstat", e);
    }
    if (st.st_size as usize) < 2 * PAGE {
        return fail("file shorter than 8 KiB", Errno(libc::EINVAL));
    }
    let premapped = match Mapping::new(&fd, PAGE, libc::PROT_READ | libc::PROT_WRITE) {
        Ok(m) => m,
        Err(e) => return fail("mmap writable before the seal", e),
    };
    let ro_mapping = match Mapping::new(&fd, PAGE, libc::PROT_READ) {
        Ok(m) => m,
        Err(e) => return fail("mmap read-only before the seal", e),
    };
    if let Err(e) = std::fs::File::create(Path::new(ready)) {
        return fail("create READY", Errno(e.raw_os_error().unwrap_or(libc::EIO)));
    }
    if !wait_for(Path::new(go), Duration::from_secs(300)) {
        return fail("wait for GO", Errno(libc::ETIMEDOUT));
    }
    let judged = |r: Result<(), Errno>| outcome(r.map_err(Step::from));
    let results: Vec<(&str, Outcome)> = vec![
        ("read", judged(prefd_read(&fd))),
        ("write", judged(prefd_write(&fd))),
        ("pwrite", judged(prefd_pwrite(&fd))),
        ("sendfile", judged(prefd_sendfile(&fd, &rfd))),
        ("copy_file_range", judged(prefd_copy_file_range(&fd, &rfd))),
        ("splice", outcome(prefd_splice(&fd))),
        ("io_uring", outcome(prefd_io_uring(&fd))),
        ("ftruncate", judged(prefd_ftruncate(&fd))),
        ("fallocate", judged(prefd_fallocate(&fd))),
        ("mmap", judged(prefd_mmap(&fd))),
        ("mprotect", judged(prefd_mprotect(&ro_mapping))),
        ("premapped", judged(premapped.store(600, b'P'))),
    ];
    for (method, o) in results {
        println!("{method}: {o}");
    }
    ExitCode::SUCCESS
}

/// `batch`: one operation per line of stdin, one result line each.
fn batch() -> ExitCode {
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().split(b'\n') {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("capsule-probe batch: reading stdin: {e}");
                return ExitCode::from(2);
            }
        };
        let mut words = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .map(|w| OsString::from_vec(w.to_vec()));
        let Some(op) = words.next() else {
            let _ = writeln!(out, "error: usage");
            continue;
        };
        let op = String::from_utf8_lossy(op.as_bytes()).into_owned();
        let rest: Vec<OsString> = words.collect();
        let result = match run(&op, &rest) {
            Some(o) => {
                if o != Outcome::Allowed {
                    eprintln!("capsule-probe {op} {rest:?}: {o}");
                }
                o.to_string()
            }
            None => {
                eprintln!("capsule-probe batch: {op}: unknown operation or wrong arguments");
                "error: usage".to_string()
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
        eprintln!("usage: capsule-probe OP ARGS... (see the source's header for the list)");
        println!("error: usage");
        return ExitCode::from(64);
    };
    let rest: Vec<OsString> = args.collect();
    let op = String::from_utf8_lossy(&op.into_vec()).into_owned();
    if op == "prefd" {
        return prefd(&rest);
    }
    if op == "handle-readlink" {
        return handle_readlink(&rest);
    }
    if op == "batch" {
        if !rest.is_empty() {
            eprintln!("usage: capsule-probe batch < OPERATIONS");
            println!("error: usage");
            return ExitCode::from(64);
        }
        return batch();
    }
    match run(&op, &rest) {
        Some(o) => {
            if o != Outcome::Allowed {
                eprintln!("capsule-probe {op}: {o}");
            }
            println!("{o}");
            ExitCode::from(o.exit_code())
        }
        None => {
            eprintln!("usage: capsule-probe {op}: unknown operation or wrong arguments (see the source's header)");
            println!("error: usage");
            ExitCode::from(64)
        }
    }
}
