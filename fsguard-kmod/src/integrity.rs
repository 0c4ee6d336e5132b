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

use crate::batch::{bpf, open_pinned_map, open_pinned_map_ro, BPF_F_RDONLY};
use crate::guard::{link_path, MAPS, PROGRAMS};
use crate::{Error, Result};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_MAP_GET_NEXT_ID: libc::c_long = 12;
pub(crate) const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
pub(crate) const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_MAP_FREEZE: libc::c_long = 22;
pub(crate) const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
pub(crate) const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;
pub(crate) const BPF_LINK_TYPE_TRACING: u32 = 2;
const BPF_PROG_TYPE_EXT: u32 = 28;
const BPF_PROG_TYPE_LSM: u32 = 29;
const BPF_LINK_TYPE_ITER: u32 = 4;
const BPF_MODIFY_RETURN: u32 = 26;
pub(crate) const BPF_LSM_MAC: u32 = 27;
const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;
const BPF_MAP_TYPE_HASH_OF_MAPS: u32 = 13;

/// The maps userspace may still write once the guard is sealed: its way in, and the ring
/// buffer (the kernel can't freeze a ring buffer its reader maps writable).
pub const UNFROZEN: &[&str] = &["requests", "events"];

/// The guard's maps that anyone may open at every level.
pub const REPORTS: &[&str] = &[
    "requests",
    "events",
    "state",
    "results",
    "stats",
    "capsules_view",
];

#[repr(C)]
#[derive(Default)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
pub(crate) struct InfoAttr {
    pub(crate) bpf_fd: u32,
    pub(crate) info_len: u32,
    pub(crate) info: u64,
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

/// Looks `key` up in map `fd` into `value`: false when it is not there (ENOENT).
pub(crate) fn lookup<K, V>(fd: &OwnedFd, key: &K, value: &mut V) -> std::io::Result<bool> {
    let mut attr = ElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        key: key as *const K as u64,
        value: value as *mut V as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The first words of bpf_map_info, bpf_link_info (type, id, prog_id) and bpf_prog_info.
#[repr(C)]
#[derive(Default)]
pub(crate) struct InfoHead {
    pub(crate) kind: u32,
    pub(crate) id: u32,
    /// A map's key size; a link's program id.
    pub(crate) third: u32,
    fourth: u32,
    rest: [u64; 30],
}

impl InfoHead {
    /// The first sixteen u32 words (a link's: type, id, prog_id, pad, then its union).
    pub(crate) fn words(&self) -> [u32; 16] {
        let mut w = [0u32; 16];
        w[0] = self.kind;
        w[1] = self.id;
        w[2] = self.third;
        w[3] = self.fourth;
        for (i, q) in self.rest.iter().take(6).enumerate() {
            w[4 + 2 * i] = *q as u32;
            w[5 + 2 * i] = (*q >> 32) as u32;
        }
        w
    }
}

pub(crate) fn syscall_err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Integrity { what, source }
}

pub(crate) fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: a bpf(2) command that returns a descriptor returned this new one, owned by no one.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

pub(crate) fn info(fd: &OwnedFd) -> std::io::Result<InfoHead> {
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

/// Descriptors of the guard's maps to freeze, `config` last: once it is frozen the guard
/// refuses descriptors of its enforcing maps (as from level 1 on). Opened while the guard
/// still hands them out: before its programs are attached, or before the freeze.
pub struct ToFreeze(Vec<(&'static str, OwnedFd)>);

impl ToFreeze {
    /// Every pinned map of the guard in `dir` but [`UNFROZEN`]. A map whose descriptor the
    /// guard refuses is frozen already (a raise that was refused after the freeze) and left
    /// out; the guard applies no level above 0 unless every one is frozen.
    pub fn open(dir: &Path) -> Result<Self> {
        let order = MAPS
            .iter()
            .filter(|m| !UNFROZEN.contains(m) && **m != "config")
            .chain(std::iter::once(&"config"));
        let mut fds = Vec::new();
        for map in order {
            match open_pinned_map(&dir.join(map)) {
                Ok(fd) => fds.push((*map, fd)),
                Err(Error::Pin { source, .. }) if source.raw_os_error() == Some(libc::EPERM) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ToFreeze(fds))
    }

    pub fn freeze(self) -> Result<()> {
        for (map, fd) in &self.0 {
            freeze(fd, map)?;
        }
        Ok(())
    }
}

/// A descriptor of object `id` (GET_FD_BY_ID `get`): None when it is gone (ENOENT, and the
/// GET_NEXT_ID `next` walk no longer lists it); an error for any other answer, ENOENT for an
/// object still listed included (withheld: something answers bpf(2) for the kernel).
fn fd_by_id(get: libc::c_long, next: libc::c_long, id: u32) -> std::io::Result<Option<OwnedFd>> {
    match by_id(get, id) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && !withheld(next, id) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every id after 0 that GET_NEXT_ID `cmd` walks.
pub(crate) fn ids(cmd: libc::c_long) -> Result<Vec<u32>> {
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

/// Every id GET_NEXT_ID `cmd` walks, which must reach `canary` (an object made for the walk,
/// after everything the walk looks for): an LSM or fmod_ret program answering bpf(2) calls
/// could otherwise cut the walk short before its own id.
fn ids_to(cmd: libc::c_long, canary: u32, what: &str) -> Result<Vec<u32>> {
    let out = ids(cmd)?;
    if !out.contains(&canary) {
        return Err(Error::Integrity {
            what: format!(
                "list the kernel's BPF {what}: the list ended before the one just made \
                 (something answers bpf(2) for the kernel)"
            ),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        });
    }
    Ok(out)
}

/// After GET_FD_BY_ID `cmd` answered ENOENT for `id`: whether the object is gone indeed
/// (the walk no longer lists it), or the answer was withheld.
fn withheld(next_cmd: libc::c_long, id: u32) -> bool {
    let mut attr = IdAttr {
        id: id.saturating_sub(1),
        ..Default::default()
    };
    bpf(next_cmd, &mut attr).is_ok() && attr.next_id == id
}

/// A program and a map of the scan's own, made after the freeze: the walks must reach them.
fn canaries() -> Result<(u32, u32, OwnedFd, OwnedFd)> {
    // BPF_MAP_CREATE: an array of one 4-byte element.
    let mut map_attr = [0u32; 5];
    map_attr[0] = 2;
    map_attr[1] = 4;
    map_attr[2] = 4;
    map_attr[3] = 1;
    let map = bpf(0, &mut map_attr)
        .map(owned)
        .map_err(syscall_err("make the scan's canary map".into()))?;
    let prog =
        load_probe_program().map_err(syscall_err("make the scan's canary program".into()))?;
    let map_id = info(&map)
        .map_err(syscall_err("read the scan's canary map".into()))?
        .id;
    let prog_id = info(&prog)
        .map_err(syscall_err("read the scan's canary program".into()))?
        .id;
    Ok((prog_id, map_id, prog, map))
}

/// Loads a socket filter `r0 = 0; exit`: the scan's canary, and how the kernel's tags are
/// learnt (identity).
pub(crate) fn load_probe_program() -> std::io::Result<OwnedFd> {
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = c"GPL";
    let mut prog_attr = [0u64; 6];
    prog_attr[0] = 1 | ((insns.len() as u64) << 32);
    prog_attr[1] = insns.as_ptr() as u64;
    prog_attr[2] = license.as_ptr() as u64;
    bpf(5, &mut prog_attr).map(owned)
}

/// A descriptor of map `id` opened with `open_flags` (0: read-write; BPF_F_RDONLY).
pub(crate) fn map_by_id(id: u32, open_flags: u32) -> std::io::Result<OwnedFd> {
    let mut attr = IdAttr {
        id,
        open_flags,
        ..Default::default()
    };
    bpf(BPF_MAP_GET_FD_BY_ID, &mut attr).map(owned)
}

pub(crate) fn by_id(cmd: libc::c_long, id: u32) -> std::io::Result<OwnedFd> {
    let mut attr = IdAttr {
        id,
        ..Default::default()
    };
    bpf(cmd, &mut attr).map(owned)
}

/// What the scan knows of the guard in `dir`: its programs (those its pinned links run), its
/// enforcing maps, all its maps, and the BTF id of the hook whose run an LSM program before
/// the guard's could end early with a success (inode_init_security: -EOPNOTSUPP there means
/// "no attribute", and the guard's adoption of the new inode would not run). Collected
/// before the guard refuses descriptors of its maps (before the freeze of `config`, or before
/// its programs are attached): asking for them afterwards would be refused, and each refusal
/// reported as an attack.
pub struct GuardIds {
    progs: HashSet<u32>,
    enforcing: HashSet<u32>,
    all_maps: HashSet<u32>,
    /// `requests`, whose readable descriptors would show other senders' tags.
    requests: HashSet<u32>,
    init_security_btf: Option<u32>,
    /// The id of the BTF object the guard's hooks are in (vmlinux's): a tracing link's
    /// target object is a BTF object for kernel functions, a program otherwise.
    kernel_btf: Option<u32>,
}

impl GuardIds {
    /// The ids of the maps pinned in `dir`, and of the programs of the links pinned there.
    pub fn collect(dir: &Path) -> Result<Self> {
        let mut ids = GuardIds {
            progs: HashSet::new(),
            enforcing: HashSet::new(),
            all_maps: HashSet::new(),
            requests: HashSet::new(),
            init_security_btf: None,
            kernel_btf: None,
        };
        let mut refused = false;
        for map in MAPS {
            let path = dir.join(map);
            // The reports read-only: from the freeze on the guard refuses them to writers
            // (and `requests`, `events` to readers).
            let open = if ["state", "results", "stats", "capsules_view"].contains(map) {
                open_pinned_map_ro
            } else if *map == "requests" {
                crate::batch::open_pinned_map_wo
            } else {
                open_pinned_map
            };
            let fd = match open(&path) {
                Ok(fd) => fd,
                // Frozen already (a raise that was refused): the guard refuses descriptors
                // of its enforcing maps, by id as by pin.
                Err(Error::Pin { source, .. }) if source.raw_os_error() == Some(libc::EPERM) => {
                    refused = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let head = info(&fd).map_err(syscall_err(format!("read {}", path.display())))?;
            ids.all_maps.insert(head.id);
            if *map == "requests" {
                ids.requests.insert(head.id);
            }
            if !REPORTS.contains(map) {
                ids.enforcing.insert(head.id);
            }
        }
        if refused {
            // Then they are the maps it refuses by id (each refusal is reported, truly: this
            // process asked for them).
            // Refused every way: an enforcing map; some ways only: a report (to writers), a
            // way in or out (to readers), `requests` (open write-only only).
            for id in self::ids(BPF_MAP_GET_NEXT_ID)? {
                let refused = |r: std::io::Result<OwnedFd>| matches!(r, Err(e) if e.raw_os_error() == Some(libc::EPERM));
                let (ro, rw) = (
                    refused(map_by_id(id, BPF_F_RDONLY)),
                    refused(map_by_id(id, 0)),
                );
                if ro || rw {
                    ids.all_maps.insert(id);
                }
                if ro && rw {
                    if refused(map_by_id(id, crate::batch::BPF_F_WRONLY)) {
                        ids.enforcing.insert(id);
                    } else {
                        ids.requests.insert(id);
                    }
                }
            }
        }
        ids.add_links(dir)?;
        Ok(ids)
    }

    /// Adds the programs of the links pinned in `dir` (link descriptors are never refused).
    pub fn add_links(&mut self, dir: &Path) -> Result<()> {
        for (program, hook) in PROGRAMS {
            let path = link_path(dir, program);
            if !path.exists() {
                continue;
            }
            let link = open_pinned_map(&path)?;
            let head = info(&link).map_err(syscall_err(format!("read {}", path.display())))?;
            self.progs.insert(head.third);
            // bpf_link_info.tracing: attach_type, target_obj_id, target_btf_id (u32 4 to 6).
            let w = head.words();
            self.kernel_btf = Some(w[5]);
            if *hook == "inode_init_security" {
                self.init_security_btf = Some(w[6]);
            }
        }
        Ok(())
    }
}

/// What a link does that the raise can't let stand: an iterator over a guard map (it rewrites
/// the elements in place whenever its pin is read), a program attached to a guard program,
/// an LSM program before the guard's on inode_init_security, fmod_ret anywhere.
fn link_hold(id: u32, head: &InfoHead, g: &GuardIds) -> Option<String> {
    let w = head.words();
    match head.kind {
        BPF_LINK_TYPE_ITER if g.all_maps.contains(&w[7]) => Some(format!(
            "BPF link {id} iterates over the guard's map {}",
            w[7]
        )),
        BPF_LINK_TYPE_TRACING if Some(w[5]) != g.kernel_btf && g.progs.contains(&w[5]) => {
            Some(format!(
                "BPF link {id} attaches program {} to the guard's program {}",
                w[2], w[5]
            ))
        }
        BPF_LINK_TYPE_TRACING if w[4] == BPF_MODIFY_RETURN => Some(format!(
            "BPF link {id} attaches fmod_ret program {} (it can end an LSM hook's run)",
            w[2]
        )),
        BPF_LINK_TYPE_TRACING if w[4] == BPF_LSM_MAC && Some(w[6]) == g.init_security_btf => {
            Some(format!(
                "BPF link {id} attaches LSM program {} to inode_init_security, before the guard's",
                w[2]
            ))
        }
        _ => None,
    }
}

/// The ids of the maps the program behind `fd` uses.
pub(crate) fn prog_map_ids(fd: &OwnedFd) -> std::io::Result<Vec<u32>> {
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

/// Every other process (any of its threads, which may have a descriptor table of their own)
/// holding a descriptor whose fdinfo names one of `progs` (`prog_id:`) or `maps` (`map_id:`),
/// or a readable one of `readable` (`requests`: it would show other senders' request tags).
/// A table that can't be read (other than a thread gone meanwhile) is an error.
fn holders(
    progs: &HashSet<u32>,
    maps: &HashSet<u32>,
    readable: &HashSet<u32>,
) -> Result<Vec<String>> {
    let me = std::process::id().to_string();
    let gone =
        |e: &std::io::Error| matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH));
    let unreadable =
        |what: String| syscall_err(format!("read {what} (to find holders of the guard)"));
    let mut out = Vec::new();
    for p in std::fs::read_dir("/proc")
        .map_err(unreadable("/proc".into()))?
        .flatten()
    {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let tasks = match std::fs::read_dir(p.path().join("task")) {
            Ok(t) => t,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(unreadable(p.path().display().to_string())(e)),
        };
        'task: for t in tasks.flatten() {
            let dir = t.path().join("fdinfo");
            let fds = match std::fs::read_dir(&dir) {
                Ok(f) => f,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(unreadable(dir.display().to_string())(e)),
            };
            for fd in fds.flatten() {
                let text = match std::fs::read_to_string(fd.path()) {
                    Ok(t) => t,
                    // Closed meanwhile: its link in fd/ is gone too (a descriptor that is
                    // there but whose fdinfo can't be opened was hidden from the scan).
                    Err(e)
                        if gone(&e)
                            && std::fs::symlink_metadata(
                                t.path().join("fd").join(fd.file_name()),
                            )
                            .is_err() =>
                    {
                        continue
                    }
                    Err(e) => return Err(unreadable(fd.path().display().to_string())(e)),
                };
                let named = |field: &str, set: &HashSet<u32>| {
                    text.lines()
                        .filter_map(|l| l.strip_prefix(field))
                        .filter_map(|v| v.trim().parse::<u32>().ok())
                        .any(|id| set.contains(&id))
                };
                // O_ACCMODE of the descriptor (fdinfo's `flags:` is octal): O_WRONLY is 1.
                let reads = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("flags:"))
                    .filter_map(|v| u32::from_str_radix(v.trim(), 8).ok())
                    .any(|f| f & 3 != 1);
                let held = named("prog_id:", progs) || named("map_id:", maps);
                if held || (reads && named("map_id:", readable)) {
                    let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                    out.push(format!(
                        "process {pid} ({}) holds descriptor {}{}",
                        comm.trim(),
                        fd.file_name().to_string_lossy(),
                        if held {
                            ""
                        } else {
                            " (a readable one of requests: it would read other senders' tags)"
                        }
                    ));
                    break 'task;
                }
            }
        }
    }
    Ok(out)
}

/// Every BPF program but the guard's (`guard_progs`) that level 2 refuses a descriptor of
/// (readers.rs): one the guard refuses already (EPERM) counts. Walked to a canary as
/// [`foreign_holds`] does.
pub fn refused_at_2(
    guard_progs: &HashSet<u32>,
    calls: &crate::readers::ReaderCalls,
) -> Result<Vec<String>> {
    let (canary, _map, _canary_fd, _map_fd) = canaries()?;
    let mut found = Vec::new();
    for id in ids_to(BPF_PROG_GET_NEXT_ID, canary, "programs")? {
        if guard_progs.contains(&id) || id == canary {
            continue;
        }
        match fd_by_id(BPF_PROG_GET_FD_BY_ID, BPF_PROG_GET_NEXT_ID, id) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => found.push(format!(
                "BPF program {id} is one the guard hands no descriptor of (it uses the \
                 guard's maps, or reads memory level 2 refuses: through a reader helper, a \
                 kernel function or a BTF pointer)"
            )),
            Err(e) => {
                return Err(Error::Integrity {
                    what: format!(
                        "read BPF program {id} (something answers bpf(2) for the kernel)"
                    ),
                    source: e,
                })
            }
            Ok(None) => {}
            Ok(Some(fd)) => {
                if let Some(why) = crate::readers::why_refused_at_2(&fd, calls)
                    .map_err(syscall_err(format!("read BPF program {id}")))?
                {
                    found.push(format!(
                        "BPF program {id} {why}, which reads other processes' memory"
                    ));
                }
            }
        }
    }
    Ok(found)
}

/// Everything that, made before the maps were frozen, would still reach the guard's maps or
/// programs after the raise; empty when the guard `g` stands alone. Call after
/// [`ToFreeze::freeze`] (from then on the guard itself refuses new holds) and before the raise.
/// Only a program that uses the guard's maps (or was loaded for one of its programs) is
/// asked for by id and refused: that refusal is reported, as it should be.
pub fn foreign_holds(g: &GuardIds) -> Result<Vec<String>> {
    let (guard_progs, guard_maps) = (&g.progs, &g.enforcing);
    let mut found = Vec::new();
    let (canary_prog, canary_map, _prog, _map) = canaries()?;
    // An answer other than the object (or, for a program using the guard's maps, the
    // guard's refusal) is something answering for the kernel: the scan fails.
    let odd = |what: &str, id: u32, e: std::io::Error| Error::Integrity {
        what: format!("read BPF {what} {id} (something answers bpf(2) for the kernel)"),
        source: e,
    };
    for id in ids_to(BPF_PROG_GET_NEXT_ID, canary_prog, "programs")? {
        if guard_progs.contains(&id) {
            continue;
        }
        // An attached guard refuses a descriptor of any program that uses one of its maps.
        match fd_by_id(BPF_PROG_GET_FD_BY_ID, BPF_PROG_GET_NEXT_ID, id) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                found.push(format!("BPF program {id} uses the guard's maps"))
            }
            Err(e) => return Err(odd("program", id, e)),
            Ok(None) => {}
            Ok(Some(fd)) => {
                let maps = prog_map_ids(&fd)
                    .map_err(syscall_err(format!("read the maps of BPF program {id}")))?;
                if maps.iter().any(|m| guard_maps.contains(m)) {
                    found.push(format!("BPF program {id} uses the guard's maps"));
                }
                // Loaded, attached or not: attached after the guard, such a program runs
                // before it on its hook and can end the hook's run with its own answer (and
                // from the freeze on none is loaded or attached).
                let kind = info(&fd)
                    .map_err(syscall_err(format!("read BPF program {id}")))?
                    .kind;
                if kind == BPF_PROG_TYPE_LSM || kind == BPF_PROG_TYPE_EXT {
                    found.push(format!(
                        "BPF program {id} is an {} that is not the guard's",
                        if kind == BPF_PROG_TYPE_LSM {
                            "LSM program"
                        } else {
                            "extension"
                        }
                    ));
                }
            }
        }
    }
    for id in ids_to(BPF_MAP_GET_NEXT_ID, canary_map, "maps")? {
        if g.all_maps.contains(&id) {
            continue;
        }
        let fd = match fd_by_id(BPF_MAP_GET_FD_BY_ID, BPF_MAP_GET_NEXT_ID, id) {
            // From the freeze on the guard refuses a map of maps made for its maps' shapes:
            // a descriptor of one of them put in it later would reach past the freeze.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                found.push(format!(
                    "BPF map {id} is a map of maps whose inner maps have the shape of one of the guard's"
                ));
                continue;
            }
            Err(e) => return Err(odd("map", id, e)),
            Ok(None) => continue,
            Ok(Some(fd)) => fd,
        };
        let head = info(&fd).map_err(|e| odd("map", id, e))?;
        let wanted = match head.kind {
            BPF_MAP_TYPE_PROG_ARRAY => guard_progs,
            BPF_MAP_TYPE_ARRAY_OF_MAPS | BPF_MAP_TYPE_HASH_OF_MAPS => &g.all_maps,
            _ => continue,
        };
        if held_ids(&fd, head.third).iter().any(|i| wanted.contains(i)) {
            found.push(format!(
                "BPF map {id} holds one of the guard's programs or maps"
            ));
        }
    }
    // (No canary link: a link needs a program attached somewhere. A link hidden from this
    // walk has a program, which the walk above lists.)
    for id in ids(BPF_LINK_GET_NEXT_ID)? {
        let Some(fd) = fd_by_id(BPF_LINK_GET_FD_BY_ID, BPF_LINK_GET_NEXT_ID, id)
            .map_err(|e| odd("link", id, e))?
        else {
            continue;
        };
        let head = info(&fd).map_err(|e| odd("link", id, e))?;
        if guard_progs.contains(&head.third) {
            continue;
        }
        found.extend(link_hold(id, &head, g));
    }
    found.extend(holders(guard_progs, guard_maps, &g.requests)?);
    Ok(found)
}
