//! The capsule guard: loads `bpf/fsguard.bpf.c`, attaches every program, pins the links and
//! maps under /sys/fs/bpf/fsguard so enforcement outlives the process that started it, and
//! feeds the maps (capsule slots, protected inodes, the level).
//!
//! Layout of the pin directory: one pinned link per program (`link_<program>`) and the maps
//! of [`MAPS`], pinned by name at load time.
//!
//! From level 1 on the guard lets nobody open the maps that hold what it enforces (a BPF
//! program given any descriptor of a map may write it). Userspace then adds to them only
//! through the `requests` map, which the guard's `bpf` hook applies on the next bpf(2) call,
//! accepting only additions; and reads the level and the capsule slots from the copies the
//! programs keep (`state`, `capsules_view`). This module always goes that way, at every
//! level, so there is one path to test.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use aya::programs::links::FdLink;
use aya::programs::Lsm;
use aya::{Btf, Ebpf, EbpfLoader};

use crate::identity::{HeldMaps, Identity};
use crate::shared::{
    fsguard_capsule, fsguard_config, fsguard_fs_mark, fsguard_inode_key, fsguard_request,
    fsguard_result, fsguard_state, fsguard_stats, FSGUARD_CAPSULE_ACTIVE, FSGUARD_CAPSULE_GUARD,
    FSGUARD_CAPSULE_HAS_CGROUP, FSGUARD_ENTRY_FILESYSTEMS_COMPLETE, FSGUARD_FS_MARK_SLOTS,
    FSGUARD_FS_MARK_VALID, FSGUARD_LEVEL_LOCKED, FSGUARD_MAGIC, FSGUARD_MAX_CAPSULES,
    FSGUARD_MAX_REQUESTS, FSGUARD_MAX_RESULTS, FSGUARD_NAME_LEN, FSGUARD_REQ_ANCESTOR,
    FSGUARD_REQ_CAPSULE, FSGUARD_REQ_CGROUP, FSGUARD_REQ_CGROUP_ANCESTOR, FSGUARD_REQ_DEVICE,
    FSGUARD_REQ_INODE, FSGUARD_REQ_LEVEL, FSGUARD_REQ_LOCK_TRACING, FSGUARD_REQ_PIN_PATH,
};
use crate::{objects, Error, Result};

/// Where the guard's links and maps are pinned.
pub const PIN_DIR: &str = "/sys/fs/bpf/fsguard";

/// Every program of `bpf/fsguard.bpf.c` and the LSM hook it attaches to.
/// The guard's own protection comes first: once it is attached, the programs attached after
/// it are already protected.
pub const PROGRAMS: &[(&str, &str)] = &[
    ("fsguard_bpf_prog", "bpf_prog"),
    ("fsguard_bpf_map", "bpf_map"),
    ("fsguard_bpf_map_alloc", "bpf_map_alloc_security"),
    ("fsguard_bpf", "bpf"),
    ("fsguard_file_open", "file_open"),
    ("fsguard_file_permission", "file_permission"),
    ("fsguard_bprm_check_security", "bprm_check_security"),
    ("fsguard_mmap_file", "mmap_file"),
    ("fsguard_file_mprotect", "file_mprotect"),
    ("fsguard_path_truncate", "path_truncate"),
    ("fsguard_inode_setattr", "inode_setattr"),
    ("fsguard_inode_setxattr", "inode_setxattr"),
    ("fsguard_inode_removexattr", "inode_removexattr"),
    ("fsguard_inode_create", "inode_create"),
    ("fsguard_inode_mkdir", "inode_mkdir"),
    ("fsguard_inode_mknod", "inode_mknod"),
    ("fsguard_inode_symlink", "inode_symlink"),
    ("fsguard_inode_link", "inode_link"),
    ("fsguard_inode_unlink", "inode_unlink"),
    ("fsguard_inode_rmdir", "inode_rmdir"),
    ("fsguard_inode_rename", "inode_rename"),
    ("fsguard_file_ioctl", "file_ioctl"),
    ("fsguard_file_ioctl_compat", "file_ioctl_compat"),
    ("fsguard_uring_cmd", "uring_cmd"),
    ("fsguard_kernel_read_file", "kernel_read_file"),
    ("fsguard_kernel_load_data", "kernel_load_data"),
    ("fsguard_inode_init_security", "inode_init_security"),
    ("fsguard_ptrace_access_check", "ptrace_access_check"),
    ("fsguard_ptrace_traceme", "ptrace_traceme"),
    ("fsguard_task_kill", "task_kill"),
    ("fsguard_task_setscheduler", "task_setscheduler"),
    ("fsguard_task_setnice", "task_setnice"),
    ("fsguard_task_setioprio", "task_setioprio"),
    ("fsguard_task_movememory", "task_movememory"),
    ("fsguard_task_setrlimit", "task_setrlimit"),
    ("fsguard_path_notify", "path_notify"),
    ("fsguard_netlink_send", "netlink_send"),
    ("fsguard_task_getscheduler", "task_getscheduler"),
    ("fsguard_task_alloc", "task_alloc"),
    ("fsguard_inode_follow_link", "inode_follow_link"),
    ("fsguard_sb_pivotroot", "sb_pivotroot"),
    ("fsguard_perf_event_open", "perf_event_open"),
    ("fsguard_sb_mount", "sb_mount"),
    ("fsguard_fs_context_parse_param", "fs_context_parse_param"),
    ("fsguard_move_mount", "move_mount"),
    ("fsguard_sb_umount", "sb_umount"),
];

/// Overrides the capacity of the `inodes` map when the guard is first loaded.
pub const INODES_ENV: &str = "CAPSULE_FSGUARD_INODES";
/// The smallest capacity [`INODES_ENV`] may set.
pub const MIN_INODES: u32 = 1024;
/// The largest: 2^26 inodes, about 7 GiB of kernel memory when full (1 GiB of it the bucket
/// array, taken at load).
pub const MAX_INODES: u32 = 1 << 26;

/// How many inodes the guard can hold, all capsules together: FSGUARD_MAX_INODES, or
/// [`INODES_ENV`] (read when the guard is loaded; a loaded guard keeps its map).
pub fn inode_capacity() -> Result<u32> {
    parse_inode_capacity(std::env::var_os(INODES_ENV))
}

fn parse_inode_capacity(raw: Option<std::ffi::OsString>) -> Result<u32> {
    let Some(raw) = raw else {
        return Ok(crate::shared::FSGUARD_MAX_INODES);
    };
    let text = raw.to_string_lossy();
    match text.trim().parse::<u32>() {
        Ok(n) if (MIN_INODES..=MAX_INODES).contains(&n) => Ok(n),
        _ => Err(Error::BadCapacity {
            var: INODES_ENV,
            value: text.into_owned(),
            min: MIN_INODES,
            max: MAX_INODES,
        }),
    }
}

/// The maps `bpf/fsguard.bpf.c` pins by name.
pub const MAPS: &[&str] = &[
    "config",
    "inodes",
    "capsules",
    "claims",
    "exec_trust",
    "cgroup_capsules",
    "cgroup_ancestors",
    "members",
    "dir_cache",
    "dir_cache_epoch",
    "entry_filesystems",
    "fs_marks",
    "ancestors",
    "pin_path",
    "devices",
    "requests",
    "state",
    "results",
    "capsules_view",
    "stats",
    "events",
    "ratelimit",
];

/// The capsule slot that protects the guard's own pins.
pub const GUARD_SLOT_NAME: &str = ".fsguard";

/// A protected inode: its kernel identity and `FSGUARD_INODE_*` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protected {
    pub key: fsguard_inode_key,
    pub flags: u32,
}

/// What a look at level 2's state needs, computed once per raise (see `Guard::level2_look`).
struct Level2Look {
    calls: crate::readers::ReaderCalls,
    guard_progs: HashSet<u32>,
}

/// Who is inside a capsule: the cgroup v2 id and depth of its cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inside {
    pub cgroup_id: u64,
    pub cgroup_level: u32,
}

/// An active capsule slot as the kernel holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapsuleSlot {
    pub id: u32,
    pub name: String,
    pub inside: Option<Inside>,
    /// `FSGUARD_CAPSULE_*` as the guard last showed them (`capsules_view`).
    pub flags: u32,
}

impl CapsuleSlot {
    /// Its tree is in (the exec rule holds inside).
    pub fn complete(&self) -> bool {
        self.flags & crate::shared::FSGUARD_CAPSULE_COMPLETE != 0
    }
    /// Something slipped into it while it was sealed: nothing runs inside.
    pub fn tainted(&self) -> bool {
        self.flags & crate::shared::FSGUARD_CAPSULE_TAINTED != 0
    }
}

/// Handles on the pinned maps a loaded guard lets userspace open at every level.
pub struct Guard {
    dir: PathBuf,
    requests: std::os::fd::OwnedFd,
    state: Array<MapData, fsguard_state>,
    results: aya::maps::HashMap<MapData, u64, fsguard_result>,
    capsules_view: Array<MapData, fsguard_capsule>,
    stats: PerCpuArray<MapData, fsguard_stats>,
    /// A read-only descriptor of `inodes` made by the load above level 0 before it froze the
    /// guard (nobody gets one after): for the look at loop devices once the sealed trees are
    /// in (`loops_on_sealed`).
    inodes_at_load: Option<std::os::fd::OwnedFd>,
    /// What a load at level 2 found that level 2 would refuse (`refused_at_2`), kept for
    /// the caller to report once everything is enforced (`open_or_load_reporting`).
    load_findings: Vec<String>,
}

/// The bound loop devices whose backing file the guard protects (in `inodes`: its own entry,
/// or its directory's) or whose backing file can't be told: a loop device writes its backing
/// file with no hook of its own (direct I/O, discards). Without `inodes` (a raise refused
/// earlier froze it), every bound loop device counts.
fn loops_on_protected(inodes: Option<&std::os::fd::OwnedFd>) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let bound = crate::enforce::loop_backing_keys();
    // How many loop devices are bound to each file.
    let bound_to = |file: &fsguard_inode_key| {
        bound
            .iter()
            .filter(|(_, k)| {
                k.as_ref()
                    .and_then(|k| k.first())
                    .is_some_and(|f| f.dev == file.dev && f.ino == file.ino)
            })
            .count()
    };
    for (name, keys) in bound.iter().cloned() {
        let Some(inodes) = inodes else {
            found.push(format!(
                "loop device {name} is bound to a file that can't be looked up in the guard's \
                 entries since a refused raise froze them; detach it (losetup -d /dev/{name}) \
                 or bind it again once the level is raised"
            ));
            continue;
        };
        let Some(keys) = keys else {
            found.push(format!(
                "loop device {name} is bound to a file that can't be told (deleted, renamed, \
                 or no /dev/{name} to ask); it could be a protected one"
            ));
            continue;
        };
        for (i, key) in keys.iter().enumerate() {
            let mut value = crate::shared::fsguard_inode_value::default();
            match crate::integrity::lookup(inodes, key, &mut value) {
                Ok(false) => {}
                // The backing file of the loop device beneath a sealed tree or a swap area,
                // which writes what is written to that loop (a second loop bound to the
                // same file is not that one).
                Ok(true)
                    if i == 0
                        && value.flags & crate::shared::FSGUARD_INODE_BACKING != 0
                        && bound_to(key) == 1 =>
                {
                    // Its directory is asked still: a capsule's directory speaks for a file
                    // without an entry of its own over a request's.
                    continue;
                }
                Ok(true) => {
                    found.push(format!(
                        "loop device {name} is bound to a file the guard protects, which it \
                         would keep writing past every check (losetup -d /dev/{name})"
                    ));
                    break;
                }
                Err(e) => {
                    return Err(Error::Integrity {
                        what: format!("look up the backing file of loop device {name}"),
                        source: e,
                    })
                }
            }
        }
    }
    Ok(found)
}

fn exec_flag(exec_sealed: bool) -> u32 {
    if exec_sealed {
        crate::shared::FSGUARD_CAPSULE_EXEC_SEALED
    } else {
        0
    }
}

/// A random number, never 0 (a tag of 0 is no tag).
fn random_u64() -> Result<u64> {
    loop {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|source| Error::NoRandom { source })?;
        let n = u64::from_ne_bytes(bytes);
        if n != 0 {
            return Ok(n);
        }
    }
}

/// SipHash-2-4 of `tag`'s 8 bytes (little-endian) under `key`: what the guard binds to a tag
/// (count_result in fsguard.bpf.c computes the same).
fn request_mac(key: [u64; 2], tag: u64) -> u64 {
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher24::new_with_keys(key[0], key[1]);
    h.write(&tag.to_le_bytes());
    h.finish()
}

/// The initial mount namespace's inode number (init's), for the guard's mount rules that
/// apply only there; 0 (unknown) makes the guard apply them in every namespace.
fn init_mnt_ns() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/1/ns/mnt")
        .ok()
        .and_then(|m| u32::try_from(m.ino()).ok())
        .unwrap_or(0)
}

pub(crate) fn link_path(dir: &Path, program: &str) -> PathBuf {
    dir.join(format!("link_{program}"))
}

fn map_err(op: &'static str, map: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |source| Error::Map { op, map, source }
}

/// Map `map` of the loaded object, typed as `M` (borrowed: it stays in `ebpf`).
fn loaded_map<'a, M>(ebpf: &'a mut Ebpf, map: &'static str) -> Result<M>
where
    M: TryFrom<&'a mut Map, Error = aya::maps::MapError>,
{
    let raw = ebpf.map_mut(map).ok_or(Error::MissingMap {
        object: "fsguard",
        map,
    })?;
    M::try_from(raw).map_err(map_err("type-check", map))
}

/// The object's LSM program `program`.
fn lsm_program<'a>(ebpf: &'a mut Ebpf, program: &'static str) -> Result<&'a mut Lsm> {
    ebpf.program_mut(program)
        .ok_or(Error::MissingProgram {
            object: "fsguard",
            program,
        })?
        .try_into()
        .map_err(|source| Error::NotLsm {
            object: "fsguard",
            program,
            source,
        })
}

/// What may have added the entries of the `inodes` map a load finds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Filled {
    /// Nothing: the map is created by this load.
    Never,
    /// This ABI's guard (the config is this ABI's), which keeps the maps that describe
    /// `inodes` (`entry_filesystems`, `fs_marks`) with it.
    ByThisAbi,
    /// Possibly another build's guard (an in-place upgrade or downgrade), which may not.
    Unknown,
}

/// Makes every slot of `fs_marks` trusted (see the map in `bpf/fsguard.bpf.c`), before any
/// program runs. With a fresh `inodes` any mark bounds its entries (there are none). Over a
/// reused one, a slot not yet trusted (a map new to this `inodes`, or a load that stopped
/// half way) gets the highest mark, which bounds whatever `inodes` holds; and every slot
/// does when another build may have added entries without raising the marks.
fn trust_fs_marks(ebpf: &mut Ebpf, history: Filled) -> Result<()> {
    let mut marks: Array<&mut MapData, fsguard_fs_mark> = loaded_map(ebpf, "fs_marks")?;
    // Slots are made valid in order, and none is ever made invalid: with the last one valid,
    // every one is (one read instead of 4,096 on a reload by the same build).
    let last = marks
        .get(&(FSGUARD_FS_MARK_SLOTS - 1), 0)
        .map_err(map_err("read", "fs_marks"))?;
    if last.valid == FSGUARD_FS_MARK_VALID && history != Filled::Unknown {
        return Ok(());
    }
    for slot in 0..FSGUARD_FS_MARK_SLOTS {
        let m = marks.get(&slot, 0).map_err(map_err("read", "fs_marks"))?;
        if let Some(m) = trusted_slot(history, m) {
            marks
                .set(slot, m, 0)
                .map_err(map_err("write", "fs_marks"))?;
        }
    }
    Ok(())
}

/// What a load writes into a slot of `fs_marks` found as `m` (None: it stays). A mark is
/// never lowered: the programs of a guard may be raising it.
fn trusted_slot(history: Filled, m: fsguard_fs_mark) -> Option<fsguard_fs_mark> {
    let valid = m.valid == FSGUARD_FS_MARK_VALID;
    let mark = match (history, valid) {
        (Filled::Unknown, _) | (Filled::ByThisAbi, false) => u64::MAX,
        (Filled::Never, false) => m.mark,
        (Filled::Never | Filled::ByThisAbi, true) => return None,
    };
    Some(fsguard_fs_mark {
        mark,
        valid: FSGUARD_FS_MARK_VALID,
    })
}

/// An exclusive lock on the pin directory, held until dropped (the descriptor closes).
fn lock_pin_dir(dir: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let pin_err = |source| Error::Pin {
        op: "lock",
        path: dir.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(dir).map_err(pin_err)?;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(pin_err(std::io::Error::last_os_error()));
    }
    Ok(file)
}

fn open_pinned<M: TryFrom<Map, Error = aya::maps::MapError>>(
    dir: &Path,
    map: &'static str,
    wrap: fn(MapData) -> Map,
) -> Result<M> {
    // Read-only: from the freeze on the guard refuses its reports to writers (and that
    // refusal is how identity tells them from an impostor's).
    typed(crate::batch::open_pinned_map_ro(&dir.join(map))?, map, wrap)
}

fn typed<M: TryFrom<Map, Error = aya::maps::MapError>>(
    fd: std::os::fd::OwnedFd,
    map: &'static str,
    wrap: fn(MapData) -> Map,
) -> Result<M> {
    let data = MapData::from_fd(fd).map_err(map_err("open the pinned", map))?;
    M::try_from(wrap(data)).map_err(map_err("type-check", map))
}

fn capsule_name(c: &fsguard_capsule) -> String {
    let bytes: Vec<u8> = c
        .name
        .iter()
        .take_while(|&&ch| ch != 0)
        .map(|&ch| ch as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Process accounting switched on at level 0 may point at a sealed file, which the kernel
/// would go on appending to without any check (and this kernel's BPF LSM has no acct hook):
/// switched off whenever the guard goes above 0. Switching it on again from level 1 on opens
/// the file for writing, which the guard judges like any other open.
fn stop_process_accounting() -> Result<()> {
    crate::support::stop_process_accounting().map_err(|source| Error::Integrity {
        what: format!("switch process accounting off: {source}"),
        source,
    })
}

impl Guard {
    /// Whether every program of the guard is attached (pinned) in `dir`.
    pub fn is_loaded_at(dir: &Path) -> bool {
        PROGRAMS.iter().all(|(p, _)| link_path(dir, p).exists())
    }

    pub fn is_loaded() -> bool {
        Self::is_loaded_at(Path::new(PIN_DIR))
    }

    /// Opens the guard if its pins are there; `None` if they are not (a cheap look, for
    /// callers that only add to a running guard, e.g. after a registration). Pins that are
    /// there are identified from the kernel's side first (identity): pins that are not this
    /// build's guard as the kernel runs it (incomplete, another build's, an impostor's) are an
    /// error, never taken for the guard.
    pub fn open() -> Result<Option<Guard>> {
        let dir = Path::new(PIN_DIR);
        if !PROGRAMS.iter().any(|(p, _)| link_path(dir, p).exists()) {
            return Ok(None);
        }
        Self::find()
    }

    /// The guard as the kernel runs it (identity): `None` when this build's guard is not
    /// attached and nothing is pinned; an error when it is attached but its pins are not
    /// visible from here (hidden), or when the pins are not it. For status, and before a
    /// load: a hidden guard must not be taken for an absent one.
    pub fn find() -> Result<Option<Guard>> {
        let dir = Path::new(PIN_DIR);
        match crate::identity::identify(dir, &crate::kernel_btf()?)? {
            Identity::Absent => Ok(None),
            Identity::Genuine { maps, .. } => Self::from_held(dir, maps).map(Some),
            Identity::Hidden { attached, of } => Err(Error::Hidden {
                dir: dir.to_path_buf(),
                attached,
                of,
            }),
            Identity::NotThis { why } => Err(Error::NotThis {
                dir: dir.to_path_buf(),
                why,
            }),
        }
    }

    /// The maps of a guard this process has just loaded, from their pins.
    fn open_maps(dir: &Path) -> Result<Guard> {
        Ok(Guard {
            dir: dir.to_path_buf(),
            requests: crate::batch::open_pinned_map_wo(&dir.join("requests"))?,
            state: open_pinned(dir, "state", Map::Array)?,
            results: open_pinned(dir, "results", Map::LruHashMap)?,
            capsules_view: open_pinned(dir, "capsules_view", Map::Array)?,
            stats: open_pinned(dir, "stats", Map::PerCpuArray)?,
            inodes_at_load: None,
            load_findings: Vec::new(),
        })
    }

    /// The maps identity bound to the guard, through the very descriptors it checked.
    fn from_held(dir: &Path, mut maps: HeldMaps) -> Result<Guard> {
        let mut take = |name: &'static str| {
            maps.take(name).ok_or_else(|| Error::Identity {
                what: format!("no descriptor of {name} was held"),
            })
        };
        Ok(Guard {
            dir: dir.to_path_buf(),
            requests: take("requests")?,
            state: typed(take("state")?, "state", Map::Array)?,
            results: typed(take("results")?, "results", Map::LruHashMap)?,
            capsules_view: typed(take("capsules_view")?, "capsules_view", Map::Array)?,
            stats: typed(take("stats")?, "stats", Map::PerCpuArray)?,
            inodes_at_load: None,
            load_findings: Vec::new(),
        })
    }

    /// Loads the guard: maps (reusing pinned ones), the level in `config` when it holds none
    /// yet, then every program attached and its link pinned. Either all programs end up
    /// attached and pinned, or none stays attached. Only with the pin directory locked and
    /// no guard loaded (open_or_load): what it writes into reused maps is read, decided and
    /// written back, which no other guard's programs may change in between.
    fn load(initial_level: u32, btf: &Btf, dir: &Path) -> Result<Guard> {
        // Whether `inodes` is created now (not reused from an earlier load): only then is
        // `entry_filesystems` known to hold every filesystem with entries.
        let fresh_inodes = !dir.join("inodes").exists();
        let level;
        // `members` (task storage) and `dir_cache` (inode storage) are maps aya creates but
        // has no typed API for (the guard never touches them from userspace).
        let mut ebpf: Ebpf = EbpfLoader::new()
            .btf(Some(btf))
            .allow_unsupported_maps()
            .map_pin_path(dir)
            .set_max_entries("inodes", inode_capacity()?)
            .load(objects::FSGUARD)
            .map_err(|source| Error::LoadObject {
                object: "fsguard",
                source,
            })?;
        {
            let current = {
                let config: Array<&mut MapData, fsguard_config> = loaded_map(&mut ebpf, "config")?;
                config.get(&0, 0).map_err(map_err("read", "config"))?
            };
            // A config this ABI wrote: whatever filled a reused `inodes` since was this ABI's
            // guard (another build's loader rewrites the config with its own version), which
            // keeps `entry_filesystems` and `fs_marks` with it. The config is rewritten only
            // after both are made right, so that a load that stops half way leaves the
            // config that tells the next one to do it again.
            let history = if fresh_inodes {
                Filled::Never
            } else if current.is_valid() {
                Filled::ByThisAbi
            } else {
                Filled::Unknown
            };
            let mut filesystems: HashMap<&mut MapData, u64, u32> =
                loaded_map(&mut ebpf, "entry_filesystems")?;
            // bindgen types the header's all-ones constant as -1i32; the key is all ones.
            let complete = FSGUARD_ENTRY_FILESYSTEMS_COMPLETE as u64;
            debug_assert_eq!(complete, u64::MAX);
            match history {
                Filled::Never => filesystems
                    .insert(complete, 0, 0)
                    .map_err(map_err("write", "entry_filesystems"))?,
                Filled::Unknown => match filesystems.remove(&complete) {
                    Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                    // aya reports a missing key as the syscall's ENOENT.
                    Err(aya::maps::MapError::SyscallError(e))
                        if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => return Err(map_err("write", "entry_filesystems")(e)),
                },
                Filled::ByThisAbi => {}
            }
            trust_fs_marks(&mut ebpf, history)?;
            // Answers the directory cache kept from before this load (from the maps as they
            // were, or from another build) are not trusted: the programs about to be
            // attached look everything up again.
            let mut epoch: Array<&mut MapData, u64> = loaded_map(&mut ebpf, "dir_cache_epoch")?;
            let now = epoch
                .get(&0, 0)
                .map_err(map_err("read", "dir_cache_epoch"))?;
            epoch
                .set(0, now.wrapping_add(1), 0)
                .map_err(map_err("write", "dir_cache_epoch"))?;
            // The config is written before any program runs: a fresh map is all zeros, which
            // the programs read as level 1 (fail closed), never as "off".
            let mut config: Array<&mut MapData, fsguard_config> = loaded_map(&mut ebpf, "config")?;
            level = if current.is_valid() {
                current.level
            } else {
                let cfg = fsguard_config {
                    init_mnt_ns: init_mnt_ns(),
                    ..fsguard_config::with_level(initial_level)
                };
                config.set(0, cfg, 0).map_err(map_err("write", "config"))?;
                initial_level
            };
            let mut state: Array<&mut MapData, fsguard_state> = loaded_map(&mut ebpf, "state")?;
            let mut st = state.get(&0, 0).map_err(map_err("read", "state"))?;
            st.magic = FSGUARD_MAGIC;
            st.level = level;
            // Not known (kallsyms hidden): none, which the guard reads as "every program
            // calls one" at level 2, and the raise to 2 says why it can't be made.
            match crate::readers::ReaderCalls::from_kallsyms() {
                Ok(calls) => calls.write_into(&mut st),
                Err(_) => st.reader_calls_count = 0,
            }
            state.set(0, st, 0).map_err(map_err("write", "state"))?;
        }
        // Above level 0 nothing may write the maps through a descriptor from now on, the
        // loader's own included: what it had to write is written. (Pinned at creation.)
        // The maps' ids, for the scan after the attachment: asked for now, before the guard
        // refuses descriptors of them.
        let mut ids = crate::integrity::GuardIds::collect(dir)?;
        let to_freeze = crate::integrity::ToFreeze::open(dir)?;
        let inodes_at_load = if level >= crate::shared::FSGUARD_LEVEL_SEALED {
            Some(crate::batch::open_pinned_map_ro(&dir.join("inodes"))?)
        } else {
            None
        };
        // Every program is loaded (its descriptor made) before any is attached: once
        // attached, `fsguard_bpf_prog` refuses descriptors of programs that use the maps.
        for (program, hook) in PROGRAMS {
            let lsm = lsm_program(&mut ebpf, program)?;
            lsm.load(hook, btf).map_err(|source| Error::LoadProgram {
                program,
                hook,
                cause: source,
            })?;
        }
        let mut links = Vec::new();
        for (program, hook) in PROGRAMS {
            let lsm = lsm_program(&mut ebpf, program)?;
            let attach_err = |source| Error::Attach {
                program,
                hook,
                source,
            };
            let id = lsm.attach().map_err(attach_err)?;
            let link = lsm.take_link(id).map_err(attach_err)?;
            links.push((*program, FdLink::from(link)));
        }
        // Everything is attached; pin. Any failure unpins what was pinned, and dropping the
        // remaining links detaches them.
        let mut pinned = Vec::new();
        for (program, link) in links {
            let path = link_path(dir, program);
            match link.pin(&path) {
                Ok(p) => pinned.push(p),
                Err(e) => {
                    for p in pinned {
                        let _ = p.unpin();
                    }
                    return Err(Error::Pin {
                        op: "create",
                        path,
                        // aya's message names the call; its source, the kernel's answer.
                        source: match std::error::Error::source(&e) {
                            Some(cause) => std::io::Error::other(format!("{e}: {cause}")),
                            None => std::io::Error::other(e.to_string()),
                        },
                    });
                }
            }
        }
        // The pins keep the links; the process may now exit.
        drop(pinned);
        // Above level 0 nothing else may hold the guard: the maps may be reused from an
        // earlier load, and its programs had ids before the guard protected them. The guard
        // stays (fail closed), and the load says why it can't be trusted.
        // Above level 0: frozen once every program is attached (from the freeze on the guard
        // refuses LSM attachments, its own included), then nothing else may hold it.
        if level >= crate::shared::FSGUARD_LEVEL_SEALED {
            to_freeze.freeze()?;
            ids.add_links(dir)?;
            let holds = crate::integrity::foreign_holds(&ids)?;
            if !holds.is_empty() {
                return Err(Error::NotAlone { holds });
            }
            stop_process_accounting()?;
        }
        let mut guard = Self::open_maps(dir)?;
        guard.inodes_at_load = inodes_at_load;
        // Loaded at 2, the guard already refuses what level 2 refuses; what was made before
        // (earlier in boot) is a finding for the caller, who enforces first.
        if level >= FSGUARD_LEVEL_LOCKED {
            guard.load_findings = match guard.refused_at_2() {
                Ok(found) => found,
                Err(e) => vec![format!(
                    "level 2's look at what was made before it could not be made: {e}"
                )],
            };
        }
        Ok(guard)
    }

    /// Opens the loaded guard, or loads it at `initial_level`. The bool says whether it was
    /// loaded now.
    pub fn open_or_load(initial_level: u32) -> Result<(Guard, bool)> {
        let (mut guard, loaded) = Self::open_or_load_reporting(initial_level)?;
        let found = guard.take_load_findings();
        if !found.is_empty() {
            return Err(Error::NotAlone { holds: found });
        }
        Ok((guard, loaded))
    }

    /// The same, but what a load at level 2 found that level 2 would refuse is left in the
    /// guard (`take_load_findings`) instead of being an error: boot enforcement hands the
    /// guard every sealed tree first, then reports it.
    pub fn open_or_load_reporting(initial_level: u32) -> Result<(Guard, bool)> {
        if let Some(g) = Self::find()? {
            return Ok((g, false));
        }
        let btf = crate::kernel_btf()?;
        let dir = Path::new(PIN_DIR);
        std::fs::create_dir_all(dir).map_err(|source| Error::Pin {
            op: "create",
            path: dir.to_path_buf(),
            source,
        })?;
        // One load at a time, and none over a guard another load finished while this one
        // waited for the lock.
        let _lock = lock_pin_dir(dir)?;
        if let Some(g) = Self::find()? {
            return Ok((g, false));
        }
        let mut guard = Self::load(initial_level, &btf, dir)?;
        guard.protect_pins()?;
        Ok((guard, true))
    }

    /// Puts the guard's own pins (the directory, every link and map pin) under its
    /// protection, in a capsule slot of its own with no inside: from level 1 on nobody can
    /// remove or replace them (removing a link pin would detach its program), nor unmount,
    /// rename or mount over the bpffs directories above them (unmounting the bpffs would
    /// release every pin); at level 0 root still can, for maintenance. The slot's name starts with
    /// '.', which no capsule name may.
    pub fn protect_pins(&mut self) -> Result<()> {
        let slot = self.ensure_slot(GUARD_SLOT_NAME, None, FSGUARD_CAPSULE_GUARD)?;
        let mut paths = vec![self.dir.clone()];
        paths.extend(PROGRAMS.iter().map(|(p, _)| link_path(&self.dir, p)));
        paths.extend(MAPS.iter().map(|m| self.dir.join(m)));
        let mut pins = Vec::with_capacity(paths.len());
        for path in paths {
            let key = fsguard_inode_key::of_path(&path)?;
            pins.push(Protected { key, flags: 0 });
        }
        let pin_dev = pins.first().map(|p| p.key.dev);
        self.protect(slot, &pins)?;
        // The directories above the pins on the bpffs itself, whose root is its mount:
        // unmounting it would release every pin. Those further up (/sys/fs, /sys, /) only
        // against a lazy unmount in the initial namespace, which would take the bpffs along
        // (unmounting a bind of them elsewhere must keep working).
        let (on_bpffs, further): (Vec<_>, Vec<_>) = crate::enforce::ancestors_of(&self.dir)?
            .into_iter()
            .partition(|k| Some(k.dev) == pin_dev);
        self.protect_ancestors(slot, &on_bpffs)?;
        self.submit_each(
            FSGUARD_REQ_PIN_PATH,
            slot,
            further.iter().map(|k| (k.dev, k.ino)),
        )
    }

    /// The ids of the guard's programs, when its pins are this build's guard as the kernel
    /// runs it.
    fn genuine_progs(&self) -> Result<HashSet<u32>> {
        match crate::identity::identify(&self.dir, &crate::kernel_btf()?)? {
            Identity::Genuine { progs, .. } => Ok(progs.into_values().collect()),
            Identity::Absent | Identity::Hidden { .. } => Err(Error::Incomplete {
                dir: self.dir.clone(),
                what: "its pins vanished".into(),
            }),
            Identity::NotThis { why } => Err(Error::NotThis {
                dir: self.dir.clone(),
                why,
            }),
        }
    }

    /// What level 2 would refuse that is there: a BPF program other than the guard's that
    /// runs in other processes' context or calls a helper reading other processes' memory
    /// (readers.rs; one the guard already refuses a descriptor of counts), and a table of
    /// those helpers in the guard's state that is not the running kernel's (rewritten before
    /// the freeze). Empty when level 2 stands whole. A raise to 2 is refused otherwise; after
    /// one, it finds what was made while the raise was under way.
    pub fn refused_at_2(&self) -> Result<Vec<String>> {
        self.refused_at_2_by(&self.level2_look()?)
    }

    /// What a look at level 2's state needs that stays the same for a raise: the reader
    /// helpers' calls (from /proc/kallsyms) and the guard's own programs (identified).
    fn level2_look(&self) -> Result<Level2Look> {
        Ok(Level2Look {
            calls: crate::readers::ReaderCalls::from_kallsyms()?,
            guard_progs: self.genuine_progs()?,
        })
    }

    /// `refused_at_2` with what `level2_look` found once (a raise looks twice).
    fn refused_at_2_by(&self, look: &Level2Look) -> Result<Vec<String>> {
        let calls = &look.calls;
        let mut found = Vec::new();
        if !calls.held_by(&self.state()?) {
            found.push(
                "the guard's table of the helpers that read other processes' memory is not \
                 the running kernel's (its state was rewritten before the freeze)"
                    .to_string(),
            );
        }
        found.extend(crate::integrity::refused_at_2(&look.guard_progs, calls)?);
        found.extend(crate::readers::tracing_state()?);
        Ok(found)
    }

    pub fn pin_dir(&self) -> &Path {
        &self.dir
    }

    fn state(&self) -> Result<fsguard_state> {
        self.state.get(&0, 0).map_err(map_err("read", "state"))
    }

    /// The level in force (1 when the guard holds no valid level, as the programs read it).
    pub fn level(&self) -> Result<u32> {
        let st = self.state()?;
        Ok(if st.magic == FSGUARD_MAGIC {
            st.level
        } else {
            crate::shared::FSGUARD_LEVEL_SEALED
        })
    }

    /// Raises the level; lowering is refused (here, and by the guard itself).
    pub fn raise_level(&mut self, level: u32) -> Result<()> {
        if level > FSGUARD_LEVEL_LOCKED {
            return Err(Error::NoSuchLevel { requested: level });
        }
        let current = self.level()?;
        if level < current {
            return Err(Error::LevelLowering {
                current,
                requested: level,
            });
        }
        // The first raise above 0: the ids of the guard's maps and programs while it still
        // hands them out, frozen maps (from then on the guard refuses new holds on itself),
        // then nothing from before may still hold them or stand before them. A raise from 1
        // needs no scan: since the freeze the guard has refused every hold the scan looks
        // for (and the one from 0 found none). Nor may a loop device bound at 0 keep writing
        // a protected file: looked for after the freeze, from which on the guard refuses such
        // a binding. `inodes` is opened while the guard still hands it out (not after a
        // raise that was refused, which froze it).
        if level >= crate::shared::FSGUARD_LEVEL_SEALED
            && current == crate::shared::FSGUARD_LEVEL_MAINTENANCE
        {
            // The pins the scan starts from must be this build's guard as the kernel runs it
            // (root may swap pins at level 0).
            self.genuine_progs()?;
            let ids = crate::integrity::GuardIds::collect(&self.dir)?;
            let protected = match crate::batch::open_pinned_map_ro(&self.dir.join("inodes")) {
                Ok(fd) => Some(fd),
                Err(Error::Pin { source, .. }) if source.raw_os_error() == Some(libc::EPERM) => {
                    None
                }
                Err(e) => return Err(e),
            };
            crate::integrity::ToFreeze::open(&self.dir)?.freeze()?;
            let mut holds = crate::integrity::foreign_holds(&ids)?;
            holds.extend(loops_on_protected(protected.as_ref())?);
            if !holds.is_empty() {
                return Err(Error::NotAlone { holds });
            }
            stop_process_accounting()?;
        }
        // To 2: nothing level 2 would refuse may be there already (its state frozen now, so
        // the table the guard judges by is the one looked at). First as this process sees
        // it (naming what it finds, changing nothing); then with level 2's rules on tracing
        // switched on (programs, perf events, tracefs probes), so that none is made after
        // the look and the kernel's own verdict on programs counts (a load through a BTF
        // pointer shows only to the guard). Refused after that, the rules stay on.
        if level >= FSGUARD_LEVEL_LOCKED && current < FSGUARD_LEVEL_LOCKED {
            let look = self.level2_look()?;
            let found = self.refused_at_2_by(&look)?;
            if !found.is_empty() {
                return Err(Error::NotAlone { holds: found });
            }
            self.submit(&[fsguard_request {
                kind: FSGUARD_REQ_LOCK_TRACING,
                ..Default::default()
            }])?;
            let found = self.refused_at_2_by(&look)?;
            if !found.is_empty() {
                return Err(Error::NotAlone { holds: found });
            }
        }
        self.submit(&[fsguard_request {
            kind: FSGUARD_REQ_LEVEL,
            level,
            ..Default::default()
        }])
    }

    /// What the load at level 2 found that level 2 would refuse (emptied).
    pub fn take_load_findings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.load_findings)
    }

    /// After a load above level 0 (boot enforcement) and once the sealed trees are in: the
    /// loop devices bound before the load to a file the guard now protects (or to one that
    /// can't be told), which would keep writing it past every check. The raise from 0 and
    /// `seal` look for them themselves; a guard this process did not load: none looked for.
    pub fn loops_on_sealed(&self) -> Result<Vec<String>> {
        match &self.inodes_at_load {
            Some(fd) => loops_on_protected(Some(fd)),
            None => Ok(Vec::new()),
        }
    }

    /// The active capsule slots.
    pub fn capsules(&self) -> Result<Vec<CapsuleSlot>> {
        let mut out = Vec::new();
        for id in 1..FSGUARD_MAX_CAPSULES {
            let c = self
                .capsules_view
                .get(&id, 0)
                .map_err(map_err("read", "capsules_view"))?;
            if c.flags & FSGUARD_CAPSULE_ACTIVE != 0 {
                out.push(CapsuleSlot {
                    id,
                    flags: c.flags,
                    name: capsule_name(&c),
                    inside: (c.flags & FSGUARD_CAPSULE_HAS_CGROUP != 0).then_some(Inside {
                        cgroup_id: c.cgroup_id,
                        cgroup_level: c.cgroup_level,
                    }),
                });
            }
        }
        Ok(out)
    }

    /// The slot of capsule `name`, activating a free one if it has none. An existing slot is
    /// kept as it is (a capsule's inside never changes once sealed).
    pub fn ensure_capsule(&mut self, name: &str, inside: Option<Inside>) -> Result<u32> {
        self.ensure_slot(name, inside, 0)
    }

    /// [`Guard::ensure_capsule`] for a sealed capsule, with its exec mode (`--exec sealed`:
    /// FSGUARD_CAPSULE_EXEC_SEALED), which is part of what its slot must hold.
    pub fn ensure_sealed_capsule(
        &mut self,
        name: &str,
        inside: Option<Inside>,
        exec_sealed: bool,
    ) -> Result<u32> {
        self.ensure_slot(name, inside, exec_flag(exec_sealed))
    }

    /// [`Guard::new_capsule`] with its exec mode (see [`Guard::ensure_sealed_capsule`]).
    pub fn new_sealed_capsule(
        &mut self,
        name: &str,
        inside: Option<Inside>,
        exec_sealed: bool,
    ) -> Result<u32> {
        if let Some(s) = self.capsules()?.iter().find(|s| s.name == name) {
            return Err(Error::SlotTaken {
                name: name.to_string(),
                slot: s.id,
            });
        }
        self.ensure_slot(name, inside, exec_flag(exec_sealed))
    }

    /// Lets capsule `slot` run the sealed entries of capsule `base` (a base it names).
    pub fn trust_exec(&mut self, slot: u32, base: u32) -> Result<()> {
        self.submit(&[fsguard_request {
            kind: crate::shared::FSGUARD_REQ_EXEC_TRUST,
            slot,
            a: u64::from(base),
            ..Default::default()
        }])
    }

    /// Says capsule `slot`'s tree is in: `added` inodes and exec trusts are what this
    /// process's requests added to it. From now on it takes nothing more, and the exec rule
    /// holds inside. A count that differs (a request slipped in while it was sealed) taints
    /// it: nothing runs inside, and this is an error. A slot completed before is left as it is.
    pub fn complete(&mut self, slot: u32, added: u64) -> Result<()> {
        self.submit(&[fsguard_request {
            kind: crate::shared::FSGUARD_REQ_COMPLETE,
            slot,
            a: added,
            ..Default::default()
        }])
        .map_err(|e| match e {
            Error::Rejected { .. } => Error::Tainted { slot },
            other => other,
        })
    }

    /// A slot for a capsule being sealed now: one the guard already holds under this name was
    /// filled by somebody else's request (anyone may leave them), with inodes and flags this
    /// seal did not ask for, so it is refused.
    pub fn new_capsule(&mut self, name: &str, inside: Option<Inside>) -> Result<u32> {
        if let Some(s) = self.capsules()?.iter().find(|s| s.name == name) {
            return Err(Error::SlotTaken {
                name: name.to_string(),
                slot: s.id,
            });
        }
        self.ensure_slot(name, inside, 0)
    }

    fn ensure_slot(&mut self, name: &str, inside: Option<Inside>, flags: u32) -> Result<u32> {
        let mut c = fsguard_capsule {
            flags: FSGUARD_CAPSULE_ACTIVE | flags,
            ..Default::default()
        };
        if let Some(i) = inside {
            c.cgroup_id = i.cgroup_id;
            c.cgroup_level = i.cgroup_level;
            c.flags |= FSGUARD_CAPSULE_HAS_CGROUP;
        }
        for (dst, src) in c
            .name
            .iter_mut()
            .zip(name.bytes().take(FSGUARD_NAME_LEN as usize - 1))
        {
            *dst = src as _;
        }
        let slots = self.capsules()?;
        let id = match slots.iter().find(|s| s.name == name) {
            Some(s) => {
                // A capsule's inside never changes: a second seal record naming another
                // cgroup (planted, or stale) must not make that cgroup inside too.
                if s.inside.map(|i| i.cgroup_id) != inside.map(|i| i.cgroup_id) {
                    return Err(Error::InsideMismatch {
                        name: name.to_string(),
                    });
                }
                s.id
            }
            None => (1..FSGUARD_MAX_CAPSULES)
                .find(|id| !slots.iter().any(|s| s.id == *id))
                .ok_or(Error::NoCapsuleSlot {
                    max: FSGUARD_MAX_CAPSULES - 1,
                })?,
        };
        // Asked for even when the slot already holds this capsule: the guard applies it only
        // if its own slot (not the `capsules_view` copy read above) holds exactly this
        // capsule, so a slot read wrongly is never given this capsule's inodes.
        self.submit(&[fsguard_request {
            kind: FSGUARD_REQ_CAPSULE,
            slot: id,
            capsule: c,
            ..Default::default()
        }])?;
        if let Some(i) = inside {
            self.map_cgroup(i.cgroup_id, id)?;
        }
        Ok(id)
    }

    fn map_cgroup(&mut self, cgroup_id: u64, slot: u32) -> Result<()> {
        self.submit(&[fsguard_request {
            kind: FSGUARD_REQ_CGROUP,
            slot,
            a: cgroup_id,
            ..Default::default()
        }])
        .map_err(|e| match e {
            Error::Rejected { .. } => Error::CgroupTaken { cgroup_id, slot },
            other => other,
        })
    }

    /// Protects `inodes` as members of capsule slot `capsule`. Idempotent. An inode that
    /// already belongs to another capsule (a hard link shared by two trees) keeps that
    /// capsule and becomes frozen, so neither inside can modify the other's file; the guard
    /// decides that itself when it applies the request.
    pub fn protect(&mut self, capsule: u32, inodes: &[Protected]) -> Result<()> {
        // The guard adds no flags to an entry it has: one inode named twice (hard links, one
        // of them frozen) goes in once, with every flag asked for.
        let mut merged: Vec<Protected> = Vec::with_capacity(inodes.len());
        let mut at = std::collections::HashMap::with_capacity(inodes.len());
        for p in inodes {
            match at.entry((p.key.dev, p.key.ino)) {
                std::collections::hash_map::Entry::Occupied(e) => {
                    let i: usize = *e.get();
                    merged[i].flags |= p.flags;
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(merged.len());
                    merged.push(*p);
                }
            }
        }
        let reqs: Vec<_> = merged
            .iter()
            .map(|p| fsguard_request {
                kind: FSGUARD_REQ_INODE,
                slot: capsule,
                a: p.key.dev,
                b: p.key.ino,
                flags: p.flags,
                ..Default::default()
            })
            .collect();
        self.submit(&reqs)
    }

    /// Protects the directories above a sealed root (renaming, removing, mounting over or
    /// unmounting them is refused: from level 2 on, or from level 1 on for the guard's slot).
    pub fn protect_ancestors(&mut self, capsule: u32, dirs: &[fsguard_inode_key]) -> Result<()> {
        self.submit_each(
            FSGUARD_REQ_ANCESTOR,
            capsule,
            dirs.iter().map(|k| (k.dev, k.ino)),
        )
    }

    /// Refuses outsiders the cgroup.kill and cgroup.freeze files of the cgroups above a
    /// capsule's (cgroup v2 ids), which act on its processes too.
    pub fn protect_cgroup_ancestors(&mut self, capsule: u32, ids: &[u64]) -> Result<()> {
        self.submit_each(
            FSGUARD_REQ_CGROUP_ANCESTOR,
            capsule,
            ids.iter().map(|&id| (id, 0)),
        )
    }

    /// Protects block devices (kernel dev_t) holding a sealed tree from writes (level 2).
    pub fn protect_devices(&mut self, capsule: u32, devices: &[u64]) -> Result<()> {
        self.submit_each(FSGUARD_REQ_DEVICE, capsule, devices.iter().map(|&d| (d, 0)))
    }

    /// Submits one request of `kind` for capsule `slot` per (a, b) operand pair.
    fn submit_each(
        &mut self,
        kind: u32,
        slot: u32,
        operands: impl Iterator<Item = (u64, u64)>,
    ) -> Result<()> {
        let reqs: Vec<_> = operands
            .map(|(a, b)| fsguard_request {
                kind,
                slot,
                a,
                b,
                ..Default::default()
            })
            .collect();
        self.submit(&reqs)
    }

    /// Hands requests to the guard and waits until it has applied them all; an error if it
    /// rejected any (it would have taken something away), or if any did not reach it as
    /// left: anyone may write to `requests`, so each call tags its requests with a number
    /// nobody else can read (the map opens write-only from the freeze on) and asks the guard
    /// what the requests with that tag came to. The caller holds the registry's write lock,
    /// so no other sealtool numbers requests at the same time.
    fn submit(&mut self, reqs: &[fsguard_request]) -> Result<()> {
        if reqs.is_empty() {
            return Ok(());
        }
        let (tag, key) = (random_u64()?, [random_u64()?, random_u64()?]);
        let mut next = self.state()?.next;
        // A chunk never exceeds the requests map; it is drained before the next one.
        for chunk in reqs.chunks(FSGUARD_MAX_REQUESTS as usize) {
            let tagged: Vec<fsguard_request> = chunk
                .iter()
                .map(|r| fsguard_request { tag, key, ..*r })
                .collect();
            let seqs: Vec<u64> = (next..next + chunk.len() as u64).collect();
            crate::batch::update(&self.requests, "requests", &seqs, &tagged)?;
            next += chunk.len() as u64;
            self.drain(next)?;
        }
        let came_to = match self.results.get(&tag, 0) {
            Ok(r) => r,
            Err(aya::maps::MapError::KeyNotFound) => fsguard_result::default(),
            Err(e) => return Err(map_err("read", "results")(e)),
        };
        // Another key's MAC (the tag's record evicted and made again by another sender), or
        // requests under this tag with another key: not this process's count.
        if came_to.mac != request_mac(key, tag) || came_to.foreign > 0 {
            return Err(Error::ForeignResults {
                dir: self.dir.clone(),
                foreign: came_to.foreign,
            });
        }
        if came_to.applied + came_to.rejected != reqs.len() as u64 {
            return Err(Error::NotAppliedAsSent {
                dir: self.dir.clone(),
                applied: came_to.applied,
                rejected: came_to.rejected,
                of: reqs.len(),
                max: FSGUARD_MAX_RESULTS,
            });
        }
        if came_to.rejected > 0 {
            return Err(Error::Rejected {
                count: came_to.rejected,
                of: reqs.len(),
            });
        }
        Ok(())
    }

    /// Makes bpf(2) calls (each one lets the guard apply up to FSGUARD_REQUESTS_PER_CALL
    /// requests) until it has applied every request before sequence number `until`.
    fn drain(&self, until: u64) -> Result<()> {
        let mut stalled = 0;
        let mut last = self.state()?.next;
        while last < until {
            // Reading `state` is a bpf(2) call: the guard applies requests before it.
            let now = self.state()?.next;
            if now == last {
                stalled += 1;
                if stalled > 16 {
                    return Err(Error::RequestsPending {
                        dir: self.dir.clone(),
                    });
                }
            } else {
                stalled = 0;
            }
            last = now;
        }
        Ok(())
    }

    /// The counters, summed over CPUs.
    pub fn stats(&self) -> Result<fsguard_stats> {
        let per_cpu = self.stats.get(&0, 0).map_err(map_err("read", "stats"))?;
        let mut total = fsguard_stats::default();
        for s in per_cpu.iter() {
            total.denied += s.denied;
            total.events_dropped += s.events_dropped;
            total.events_ratelimited += s.events_ratelimited;
            total.inherited += s.inherited;
            total.released += s.released;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_mark_slots_are_trusted_only_where_they_bound_the_map() {
        let slot = |mark, valid| fsguard_fs_mark { mark, valid };
        let trusted = |mark| Some(slot(mark, FSGUARD_FS_MARK_VALID));
        let (fresh, stale) = (slot(7, 0), slot(7, FSGUARD_FS_MARK_VALID));
        // A new `inodes`: any mark bounds it; a valid slot stays as its guard raised it.
        assert_eq!(trusted_slot(Filled::Never, fresh), trusted(7));
        assert_eq!(trusted_slot(Filled::Never, stale), None);
        // A reused `inodes`: a slot never trusted for it gets the highest mark.
        assert_eq!(trusted_slot(Filled::ByThisAbi, fresh), trusted(u64::MAX));
        assert_eq!(trusted_slot(Filled::ByThisAbi, stale), None);
        // Possibly filled by another build: no slot keeps its mark.
        assert_eq!(trusted_slot(Filled::Unknown, fresh), trusted(u64::MAX));
        assert_eq!(trusted_slot(Filled::Unknown, stale), trusted(u64::MAX));
        // Never lowered, whatever was there.
        for history in [Filled::Never, Filled::ByThisAbi, Filled::Unknown] {
            for m in [
                slot(0, 0),
                slot(u64::MAX, 0),
                slot(5, FSGUARD_FS_MARK_VALID),
                slot(9, 3),
            ] {
                if let Some(new) = trusted_slot(history, m) {
                    assert!(new.mark >= m.mark, "{history:?} lowered {}", m.mark);
                    assert_eq!(new.valid, FSGUARD_FS_MARK_VALID);
                }
            }
        }
    }

    #[test]
    fn request_mac_is_siphash_2_4() {
        // The reference vector of the SipHash paper for an 8-byte message: key 00..0f,
        // message 00..07.
        let key = [
            u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]),
            u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]),
        ];
        let tag = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(request_mac(key, tag), 0x93f5_f579_9a93_2462);
        assert_ne!(
            request_mac([key[0], key[1] ^ 1], tag),
            0x93f5_f579_9a93_2462
        );
    }

    #[test]
    fn inode_capacity_defaults_and_bounds() {
        let parse = |v: Option<&str>| parse_inode_capacity(v.map(Into::into));
        assert_eq!(parse(None).unwrap(), crate::shared::FSGUARD_MAX_INODES);
        assert_eq!(parse(Some("65536")).unwrap(), 65536);
        assert_eq!(parse(Some(" 1024\n")).unwrap(), MIN_INODES);
        assert_eq!(parse(Some(&MAX_INODES.to_string())).unwrap(), MAX_INODES);
        for bad in ["", "1023", "67108865", "lots", "-5", "4096k"] {
            let e = parse(Some(bad)).unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, Error::BadCapacity { .. }), "{bad}: {text}");
            assert!(text.contains(INODES_ENV) && text.contains("1024"), "{text}");
        }
    }
}
