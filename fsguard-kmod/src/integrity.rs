//! What the first raise above level 0 must make true before it is asked for: no descriptor,
//! whenever it was opened, can write the guard's maps (they are frozen), and nothing from
//! before stands beside the guard's own programs with a hold on its maps or programs.
//!
//! From then on the guard refuses new holds itself (`fsguard_bpf_prog`, `fsguard_bpf_map`,
//! `fsguard_bpf` in `bpf/fsguard.bpf.c`): descriptors of its programs and of programs using
//! its maps, extensions attached to its programs. What existed before the freeze can't be
//! revoked, so [`check_sole_holder`] looks for it and the raise is refused while it exists:
//! another program using a guard map, a descriptor of a guard map or program held by another
//! process, a program array or map of maps holding one of them.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::batch::{bpf, open_pinned_map};
use crate::guard::{link_path, MAPS, PROGRAMS};
use crate::{Error, Result};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_MAP_GET_NEXT_ID: libc::c_long = 12;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_MAP_FREEZE: libc::c_long = 22;
const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;
const BPF_MAP_TYPE_HASH_OF_MAPS: u32 = 13;

/// The maps userspace may still write once the guard is sealed: its way in, and the ring
/// buffer (the kernel can't freeze a ring buffer its reader maps writable).
pub const UNFROZEN: &[&str] = &["requests", "events"];

/// The guard's maps that anyone may open at every level.
pub const REPORTS: &[&str] = &["requests", "events", "state", "stats", "capsules_view"];

#[repr(C)]
#[derive(Default)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

#[repr(C)]
#[derive(Default)]
struct FdAttr {
    map_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// The first words of bpf_map_info, bpf_link_info (type, id, prog_id) and bpf_prog_info.
#[repr(C)]
#[derive(Default)]
struct InfoHead {
    kind: u32,
    id: u32,
    /// A map's key size; a link's program id.
    third: u32,
    _fourth: u32,
    _rest: [u64; 30],
}

fn syscall_err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Integrity { what, source }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: a bpf(2) command that returns a descriptor returned this new one, owned by no one.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

fn info(fd: &OwnedFd) -> std::io::Result<InfoHead> {
    let mut head = InfoHead::default();
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<InfoHead>() as u32,
        info: &mut head as *mut InfoHead as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(head)
}

/// Freezes a map: from now on no bpf(2) call, through any descriptor, writes it. Already
/// frozen is fine.
pub fn freeze(fd: &OwnedFd, map: &str) -> Result<()> {
    let mut attr = FdAttr {
        map_fd: fd.as_raw_fd() as u32,
    };
    match bpf(BPF_MAP_FREEZE, &mut attr) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
        Err(e) => Err(syscall_err(format!("freeze the guard's map `{map}`"))(e)),
    }
}

/// Freezes every pinned map of the guard in `dir` but [`UNFROZEN`].
pub fn freeze_pinned(dir: &Path) -> Result<()> {
    for map in MAPS.iter().filter(|m| !UNFROZEN.contains(m)) {
        freeze(&open_pinned_map(&dir.join(map))?, map)?;
    }
    Ok(())
}

/// Every id after 0 that GET_NEXT_ID `cmd` walks.
fn ids(cmd: libc::c_long) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    let mut attr = IdAttr::default();
    loop {
        match bpf(cmd, &mut attr) {
            Ok(_) => {
                out.push(attr.next_id);
                attr.id = attr.next_id;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(syscall_err("list the kernel's BPF objects".into())(e)),
        }
    }
}

fn by_id(cmd: libc::c_long, id: u32) -> std::io::Result<OwnedFd> {
    let mut attr = IdAttr {
        id,
        ..Default::default()
    };
    bpf(cmd, &mut attr).map(owned)
}

/// The ids of the guard's programs (those its pinned links run, if any) and of its maps.
fn guard_ids(dir: &Path) -> Result<(HashSet<u32>, HashSet<u32>)> {
    let mut progs = HashSet::new();
    for (program, _) in PROGRAMS {
        let path = link_path(dir, program);
        if !path.exists() {
            continue;
        }
        let link = open_pinned_map(&path)?;
        let head = info(&link).map_err(syscall_err(format!("read {}", path.display())))?;
        progs.insert(head.third);
    }
    let mut maps = HashSet::new();
    // The reports and the ways in and out are not counted: anyone may hold them (the audit
    // collector does), and all but `requests` and `events` are frozen.
    for map in MAPS.iter().filter(|m| !REPORTS.contains(m)) {
        let path = dir.join(map);
        let fd = open_pinned_map(&path)?;
        let head = info(&fd).map_err(syscall_err(format!("read {}", path.display())))?;
        maps.insert(head.id);
    }
    Ok((progs, maps))
}

/// The ids of the maps the program behind `fd` uses.
fn prog_map_ids(fd: &OwnedFd) -> std::io::Result<Vec<u32>> {
    // bpf_prog_info: nr_map_ids (u32) at byte 52, map_ids (u64 pointer) at byte 56.
    let mut words = [0u64; 32];
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&words) as u32,
        info: words.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let n = (words[6] >> 32) as usize;
    let mut ids = vec![0u32; n];
    let mut words = [0u64; 32];
    words[6] = (n as u64) << 32;
    words[7] = ids.as_mut_ptr() as u64;
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&words) as u32,
        info: words.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    ids.truncate(((words[6] >> 32) as usize).min(n));
    Ok(ids)
}

/// The entries of a program array or map of maps: the ids of the programs or maps it holds.
fn held_ids(fd: &OwnedFd, key_size: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut key = vec![0u8; key_size as usize];
    let mut next = vec![0u8; key_size as usize];
    let mut first = true;
    loop {
        let mut attr = ElemAttr {
            map_fd: fd.as_raw_fd() as u32,
            key: if first { 0 } else { key.as_ptr() as u64 },
            value: next.as_mut_ptr() as u64,
            ..Default::default()
        };
        if bpf(BPF_MAP_GET_NEXT_KEY, &mut attr).is_err() {
            return out;
        }
        first = false;
        key.copy_from_slice(&next);
        let mut id = 0u32;
        let mut attr = ElemAttr {
            map_fd: fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value: &mut id as *mut u32 as u64,
            ..Default::default()
        };
        if bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).is_ok() {
            out.push(id);
        }
    }
}

/// `(pid, command)` of every other process holding a descriptor whose fdinfo names one of
/// `progs` (`prog_id:`) or `maps` (`map_id:`).
fn holders(progs: &HashSet<u32>, maps: &HashSet<u32>) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(text) = std::fs::read_to_string(fd.path()) else {
                continue;
            };
            let named = |field: &str, set: &HashSet<u32>| {
                text.lines()
                    .filter_map(|l| l.strip_prefix(field))
                    .filter_map(|v| v.trim().parse::<u32>().ok())
                    .any(|id| set.contains(&id))
            };
            if named("prog_id:", progs) || named("map_id:", maps) {
                let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                out.push(format!(
                    "process {pid} ({}) holds descriptor {}",
                    comm.trim(),
                    fd.file_name().to_string_lossy()
                ));
                break;
            }
        }
    }
    out
}

/// Everything that, made before the maps were frozen, would still reach the guard's maps or
/// programs after the raise; empty when the guard in `dir` stands alone. Call after
/// [`freeze_pinned`] (from then on the guard itself refuses new holds) and before the raise.
pub fn foreign_holds(dir: &Path) -> Result<Vec<String>> {
    let (guard_progs, guard_maps) = guard_ids(dir)?;
    let mut found = Vec::new();
    for id in ids(BPF_PROG_GET_NEXT_ID)? {
        if guard_progs.contains(&id) {
            continue;
        }
        // An attached guard refuses a descriptor of any program that uses one of its maps.
        match by_id(BPF_PROG_GET_FD_BY_ID, id) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                found.push(format!("BPF program {id} uses the guard's maps"))
            }
            Err(_) => {}
            Ok(fd) => {
                let maps = prog_map_ids(&fd)
                    .map_err(syscall_err(format!("read the maps of BPF program {id}")))?;
                if maps.iter().any(|m| guard_maps.contains(m)) {
                    found.push(format!("BPF program {id} uses the guard's maps"));
                }
            }
        }
    }
    for id in ids(BPF_MAP_GET_NEXT_ID)? {
        if guard_maps.contains(&id) {
            continue;
        }
        let Ok(fd) = by_id(BPF_MAP_GET_FD_BY_ID, id) else {
            continue;
        };
        let Ok(head) = info(&fd) else { continue };
        let wanted = match head.kind {
            BPF_MAP_TYPE_PROG_ARRAY => &guard_progs,
            BPF_MAP_TYPE_ARRAY_OF_MAPS | BPF_MAP_TYPE_HASH_OF_MAPS => &guard_maps,
            _ => continue,
        };
        if held_ids(&fd, head.third).iter().any(|i| wanted.contains(i)) {
            found.push(format!(
                "BPF map {id} holds one of the guard's programs or maps"
            ));
        }
    }
    found.extend(holders(&guard_progs, &guard_maps));
    Ok(found)
}
