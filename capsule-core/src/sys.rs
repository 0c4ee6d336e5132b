//! Thin, descriptor-based wrappers over the Linux calls the walker needs.
//!
//! Everything is relative to an open directory descriptor and never follows a symlink in
//! the last component, so a path swapped under us cannot redirect the walk. All `unsafe`
//! of the library lives here.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// What `statx` says about one inode, in userspace terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Userspace `st_dev` (glibc `makedev` encoding).
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub rdev: (u32, u32),
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    /// The inode is the root of a mount (bind mounts of the same filesystem included).
    pub mount_root: bool,
}

impl Stat {
    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn statx_raw(dirfd: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<Stat> {
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut sx: libc::statx = unsafe { std::mem::zeroed() };
    let mask = libc::STATX_BASIC_STATS;
    // SAFETY: `name` is a valid NUL-terminated string and `sx` a valid, writable statx that
    // outlives the call; `dirfd` is an open descriptor owned by the caller.
    check(unsafe { libc::statx(dirfd, name.as_ptr(), flags, mask, &mut sx) })?;
    let mount_attr = libc::STATX_ATTR_MOUNT_ROOT as u64;
    Ok(Stat {
        dev: libc::makedev(sx.stx_dev_major, sx.stx_dev_minor),
        ino: sx.stx_ino,
        mode: u32::from(sx.stx_mode),
        nlink: sx.stx_nlink,
        uid: sx.stx_uid,
        gid: sx.stx_gid,
        size: sx.stx_size,
        rdev: (sx.stx_rdev_major, sx.stx_rdev_minor),
        mtime: (sx.stx_mtime.tv_sec, sx.stx_mtime.tv_nsec),
        ctime: (sx.stx_ctime.tv_sec, sx.stx_ctime.tv_nsec),
        mount_root: sx.stx_attributes_mask & mount_attr != 0 && sx.stx_attributes & mount_attr != 0,
    })
}

/// `statx(dirfd, name)` without following a final symlink or triggering an automount.
pub fn stat_at(dirfd: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    statx_raw(
        dirfd.as_raw_fd(),
        name,
        libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT,
    )
}

/// `statx` of an open descriptor.
pub fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    statx_raw(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
}

fn open_raw(dirfd: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated; openat does not retain the pointer.
    let fd = check(unsafe { libc::openat(dirfd, name.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a directory (absolute path) without following a symlink in the last component.
pub fn open_dir_path(path: &CStr) -> io::Result<OwnedFd> {
    open_raw(
        libc::AT_FDCWD,
        path,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    )
}

/// Opens a subdirectory of `dirfd` without following symlinks.
pub fn open_dir_at(dirfd: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    open_raw(
        dirfd.as_raw_fd(),
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    )
}

/// Opens a file of `dirfd` for reading. O_NONBLOCK keeps a fifo swapped in after the
/// stat from hanging the walk; O_NOCTTY keeps a terminal from becoming ours.
pub fn open_file_at(dirfd: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    open_raw(
        dirfd.as_raw_fd(),
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
    )
}

/// Every name in a directory except `.` and `..`, read through a new descriptor.
pub fn read_dir_names(dirfd: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    let fd = open_raw(dirfd.as_raw_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY)?;
    let mut dir = nix::dir::Dir::from(fd).map_err(io::Error::from)?;
    let mut names = Vec::new();
    for item in dir.iter() {
        let item = item.map_err(io::Error::from)?;
        let name = item.file_name();
        let b = name.to_bytes();
        if b != b"." && b != b".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// The target of a symlink, as raw bytes.
pub fn read_link_at(dirfd: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: `buf` is writable for `buf.len()` bytes and `name` is NUL-terminated.
        let n = unsafe {
            libc::readlinkat(
                dirfd.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// Where extended attributes are read from: an open descriptor, or an entry of a
/// directory descriptor reached through /proc/self/fd (symlinks and special files, which
/// are never opened) without following the entry itself.
pub enum XattrSource<'a> {
    Fd(BorrowedFd<'a>),
    Entry(BorrowedFd<'a>, &'a CStr),
}

fn entry_proc_path(dirfd: BorrowedFd<'_>, name: &CStr) -> CString {
    let mut p = format!("/proc/self/fd/{}/", dirfd.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.to_bytes());
    // The name came from a CStr, so it holds no NUL.
    CString::new(p).unwrap_or_default()
}

fn sized_call(mut call: impl FnMut(*mut libc::c_char, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let need = call(std::ptr::null_mut(), 0);
        if need < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; need as usize];
        if buf.is_empty() {
            return Ok(buf);
        }
        let got = call(buf.as_mut_ptr().cast(), buf.len());
        if got < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                continue; // grew between the two calls
            }
            return Err(e);
        }
        buf.truncate(got as usize);
        return Ok(buf);
    }
}

/// All extended attributes: (name, value), sorted by name.
pub fn xattrs(src: &XattrSource<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let proc_path;
    let list = match src {
        XattrSource::Fd(fd) => {
            let fd = fd.as_raw_fd();
            // SAFETY: the buffer pointer/len pair comes from `sized_call` and is valid.
            sized_call(|p, n| unsafe { libc::flistxattr(fd, p, n) })
        }
        XattrSource::Entry(dirfd, name) => {
            proc_path = entry_proc_path(*dirfd, name);
            let path = proc_path.as_ptr();
            // SAFETY: `path` is NUL-terminated and outlives the call; buffer as above.
            sized_call(|p, n| unsafe { libc::llistxattr(path, p, n) })
        }
    };
    let list = match list {
        Ok(l) => l,
        // Filesystems without xattr support have none to record.
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let value = match src {
            XattrSource::Fd(fd) => {
                let fd = fd.as_raw_fd();
                // SAFETY: `cname` is NUL-terminated; buffer as above.
                sized_call(|p, n| unsafe { libc::fgetxattr(fd, cname.as_ptr(), p.cast(), n) })
            }
            XattrSource::Entry(dirfd, ename) => {
                let path = entry_proc_path(*dirfd, ename);
                // SAFETY: both strings are NUL-terminated and outlive the call.
                sized_call(|p, n| unsafe {
                    libc::lgetxattr(path.as_ptr(), cname.as_ptr(), p.cast(), n)
                })
            }
        };
        match value {
            Ok(v) => out.push((name.to_vec(), v)),
            // Removed between list and get: the caller's change detection decides.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// Reads up to `buf.len()` bytes, retrying on EINTR.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid and writable for its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Raises the soft open-file limit to the hard limit: a deep tree keeps one descriptor
/// open per level while it is walked.
pub fn raise_fd_limit() {
    // SAFETY: an all-zero rlimit is valid; getrlimit/setrlimit only read/write it.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

/// Opens a registry file at `path` with `options`: never through a symlink, never blocking on
/// a FIFO or device planted in its place, and only if it is a regular file.
pub fn open_regular(
    options: &mut std::fs::OpenOptions,
    path: &std::path::Path,
) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Reads the registry file at `path` whole ([`open_regular`]), at most `max` bytes (a larger
/// file is an error, not a read without end).
pub fn read_regular(path: &std::path::Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = open_regular(std::fs::OpenOptions::new().read(true), path)?;
    let meta = file.metadata()?;
    // Never more than half the memory the machine has free: a file planted larger (a sparse
    // one costs nothing on disk) is an error naming it, not the reader killed.
    let max = max.min(mem_available().map_or(u64::MAX, |m| m / 2));
    if meta.len() > max {
        return Err(io::Error::other(format!(
            "{} bytes, more than such a file can hold or this machine can read ({max})",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(meta.len() as usize)
        .map_err(|_| io::Error::other(format!("{} bytes can't be held", meta.len())))?;
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::other(format!(
            "more than such a file can hold ({max} bytes)"
        )));
    }
    Ok(bytes)
}

/// MemAvailable from /proc/meminfo, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The largest seal or level file read (they hold a few hundred bytes).
pub const MAX_SMALL_FILE: u64 = 1 << 20;
/// The largest manifest file read: 2^26 entries of up to a few hundred bytes each.
pub const MAX_MANIFEST_FILE: u64 = 1 << 36;
