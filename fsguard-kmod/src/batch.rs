//! The two bpf() commands aya 0.13 does not offer: opening a pinned map by path
//! (BPF_OBJ_GET) and writing many elements in one call (BPF_MAP_UPDATE_BATCH, Linux 5.6+).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{Error, Result};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
/// Elements per batch call: bounded so one call never holds the map's locks for long.
const CHUNK: usize = 8192;

#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

pub(crate) fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a #[repr(C)] prefix of `union bpf_attr` for `cmd`, fully initialised
    // (padding included, as the kernel requires zeroes), and valid for the call's duration.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A descriptor for the map (or link) pinned at `path`.
pub fn open_pinned_map(path: &Path) -> Result<OwnedFd> {
    open_pinned_with(path, 0)
}

/// A read-only descriptor for the map pinned at `path` (the guard's reports: from the freeze
/// on, the guard refuses to open them for writing).
pub fn open_pinned_map_ro(path: &Path) -> Result<OwnedFd> {
    open_pinned_with(path, BPF_F_RDONLY)
}

/// A write-only descriptor for the map pinned at `path` (`requests`: from the freeze on the
/// guard opens it for nothing else, so nobody reads what another sender left).
pub fn open_pinned_map_wo(path: &Path) -> Result<OwnedFd> {
    open_pinned_with(path, BPF_F_WRONLY)
}

/// BPF_OBJ_GET's file_flags (and GET_FD_BY_ID's open_flags) for a read-only descriptor.
pub(crate) const BPF_F_RDONLY: u32 = 1 << 3;
/// ... and for a write-only one.
pub(crate) const BPF_F_WRONLY: u32 = 1 << 4;

fn open_pinned_with(path: &Path, file_flags: u32) -> Result<OwnedFd> {
    let pin_err = |source| Error::Pin {
        op: "open",
        path: path.to_path_buf(),
        source,
    };
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| pin_err(std::io::Error::from_raw_os_error(libc::EINVAL)))?;
    let mut attr = ObjGetAttr {
        pathname: c.as_ptr() as u64,
        file_flags,
        ..Default::default()
    };
    let fd = bpf(BPF_OBJ_GET, &mut attr).map_err(pin_err)?;
    // SAFETY: BPF_OBJ_GET returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Writes `keys[i] -> values[i]` (BPF_ANY) into the map behind `fd`.
pub fn update<K: Copy, V: Copy>(
    fd: &OwnedFd,
    map: &'static str,
    keys: &[K],
    values: &[V],
) -> Result<()> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut done = 0usize;
        while done < k.len() {
            let mut attr = BatchAttr {
                keys: k[done..].as_ptr() as u64,
                values: v[done..].as_ptr() as u64,
                count: (k.len() - done) as u32,
                map_fd: fd.as_raw_fd() as u32,
                ..Default::default()
            };
            let r = bpf(BPF_MAP_UPDATE_BATCH, &mut attr);
            // The kernel reports in `count` how many elements it wrote, also on error.
            done += attr.count as usize;
            if let Err(e) = r {
                if attr.count == 0 || e.raw_os_error() != Some(libc::EINTR) {
                    return Err(Error::Map {
                        op: "batch-update",
                        map,
                        source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                            call: "bpf_map_update_batch",
                            io_error: e,
                        }),
                    });
                }
            }
        }
    }
    Ok(())
}
