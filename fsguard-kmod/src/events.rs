//! Reading the guard's refusal events from its pinned ring buffer.
//!
//! `bpf/fsguard.bpf.c` sends one `struct fsguard_event` per refused attempt through the
//! `events` ring buffer (at most `FSGUARD_EVENTS_PER_SEC` per CPU per second; the rest are
//! counted in `fsguard_stats.events_ratelimited`, a full buffer in `events_dropped`). This
//! module:
//!
//! - opens the pinned `events`, `stats` and `capsules_view` maps (which the guard lets anyone open; `capsules` itself it keeps closed from level 1 on) without needing the programs
//!   ([`EventReader`]), waits for events (`poll`) and drains them;
//! - decodes an event's bytes into a [`Refusal`], never trusting its length or its strings;
//! - names operations and rules ([`op_name`], [`rule_name`]);
//! - turns the kernel's (device, path below that filesystem's root) into a path a person can
//!   use, through /proc/self/mountinfo ([`Mounts`]);
//! - converts the event's CLOCK_BOOTTIME stamp to wall-clock time ([`boot_to_unix_ns`]).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::{Array, Map, MapData, MapError, PerCpuArray};

use crate::shared::{
    fsguard_capsule, fsguard_event, fsguard_stats, FSGUARD_CAPSULE_ACTIVE, FSGUARD_MAX_CAPSULES,
    FSGUARD_PATH_BYTES, FSGUARD_PATH_TRUNCATED,
};

/// What can go wrong reading events.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A pinned map could not be opened or has another type than expected.
    #[error("cannot {op} the pinned map {path}")]
    Map {
        /// What was attempted.
        op: &'static str,
        /// The pin.
        path: PathBuf,
        /// aya's error.
        #[source]
        source: MapError,
    },
    /// The guard's maps in `path` could not be bound to the guard the kernel runs.
    #[error("cannot open the guard's maps in {path}")]
    Open {
        /// The pin.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<crate::Error>,
    },
    /// A ring buffer record does not have the size of a `struct fsguard_event`.
    #[error("a refusal event has {len} bytes, a struct fsguard_event has {expected}")]
    BadSize {
        /// Size of the record received.
        len: usize,
        /// `size_of::<fsguard_event>()`.
        expected: usize,
    },
    /// Waiting for the ring buffer failed.
    #[error("cannot wait for refusal events")]
    Poll {
        /// The error of poll(2).
        #[source]
        source: io::Error,
    },
}

/// One refused attempt, as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// CLOCK_BOOTTIME, nanoseconds.
    pub time_boot_ns: u64,
    /// Kernel-internal dev_t of the inode concerned (`(major << 20) | minor`); 0 for process
    /// operations.
    pub dev: u64,
    pub ino: u64,
    /// The refused process's cgroup v2 id.
    pub cgroup_id: u64,
    /// Thread group id of the refused process.
    pub pid: u32,
    /// Its fsuid.
    pub uid: u32,
    /// Capsule slot (index into the `capsules` map, mirrored in `capsules_view`).
    pub capsule: u32,
    /// `FSGUARD_OP_*`.
    pub op: u32,
    /// `FSGUARD_RULE_*`.
    pub rule: u32,
    /// The guard's level when it refused.
    pub level: u32,
    /// Process operations: the capsule's process; else 0.
    pub target_pid: u32,
    /// The refused process's command name (raw bytes, at most 15).
    pub comm: Vec<u8>,
    /// Names from the filesystem's root down to the object, root side first; empty when the
    /// kernel had no name at hand.
    pub components: Vec<Vec<u8>>,
    /// Components towards the root were cut (too deep or too long for the event).
    pub truncated: bool,
}

/// The bytes of a C string field up to its first NUL (all of it when there is none).
fn c_str(field: &[core::ffi::c_char]) -> Vec<u8> {
    field
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect()
}

impl Refusal {
    /// Decodes one ring buffer record. Refuses a record of the wrong size; strings without
    /// their NUL and path counts larger than the buffer are cut, never read past.
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        let expected = std::mem::size_of::<fsguard_event>();
        if bytes.len() != expected {
            return Err(EventError::BadSize {
                len: bytes.len(),
                expected,
            });
        }
        // SAFETY: `bytes` holds exactly size_of::<fsguard_event>() bytes (checked above);
        // fsguard_event is a repr(C) struct of integers and char arrays for which every bit
        // pattern is valid (see the Pod impl in shared.rs), and read_unaligned copes with the
        // ring buffer's 8-byte (not necessarily struct-) alignment.
        let ev: fsguard_event =
            unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<fsguard_event>()) };
        Ok(Self::from_event(&ev))
    }

    /// The typed view of a raw event.
    pub fn from_event(ev: &fsguard_event) -> Self {
        let parts = ev.path_parts & !FSGUARD_PATH_TRUNCATED;
        let mut truncated = ev.path_parts & FSGUARD_PATH_TRUNCATED != 0;
        let raw: Vec<u8> = ev.path.iter().map(|&c| c as u8).collect();
        let raw = &raw[..raw.len().min(FSGUARD_PATH_BYTES as usize)];
        let mut components = Vec::new();
        let mut rest = raw;
        for _ in 0..parts {
            match rest.iter().position(|&b| b == 0) {
                Some(0) => {
                    // No name is empty: fewer names than announced.
                    truncated = true;
                    break;
                }
                Some(end) => {
                    components.push(rest[..end].to_vec());
                    rest = &rest[end + 1..];
                }
                None => {
                    // A name without its NUL at the end of the buffer: keep what is there and
                    // say the path is incomplete.
                    if !rest.is_empty() {
                        components.push(rest.to_vec());
                    }
                    truncated = true;
                    break;
                }
            }
        }
        components.reverse();
        Refusal {
            time_boot_ns: ev.time_ns,
            dev: ev.dev,
            ino: ev.ino,
            cgroup_id: ev.cgroup_id,
            pid: ev.pid,
            uid: ev.uid,
            capsule: ev.capsule,
            op: ev.op,
            rule: ev.rule,
            level: ev.level,
            target_pid: ev.target_pid,
            comm: c_str(&ev.comm),
            components,
            truncated,
        }
    }

    /// The object's path below its filesystem's root (`/app/etc/passwd`), or `None` when the
    /// kernel sent no name. A truncated path has no known root: see [`Mounts::display_path`].
    pub fn fs_path(&self) -> Option<Vec<u8>> {
        if self.components.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for c in &self.components {
            out.push(b'/');
            out.extend_from_slice(c);
        }
        Some(out)
    }

    /// (major, minor) of the kernel dev_t.
    pub fn dev_numbers(&self) -> (u32, u32) {
        // The kernel's dev_t is 32 bits; anything above is not a device number.
        let dev = (self.dev & 0xffff_ffff) as u32;
        (dev >> crate::dev::MINORBITS, dev & crate::dev::MAX_MINOR)
    }
}

/// The name of an `FSGUARD_OP_*` value (`open-write`, `unlink`, ...); `op-N` for an unknown
/// one.
pub fn op_name(op: u32) -> String {
    let name = match op {
        1 => "open-write",
        2 => "write",
        3 => "truncate",
        4 => "create",
        5 => "link",
        6 => "unlink",
        7 => "rmdir",
        8 => "rename",
        9 => "setattr",
        10 => "setxattr",
        11 => "removexattr",
        12 => "mmap-shared-write",
        13 => "mprotect-shared-write",
        14 => "ioctl-setflags",
        20 => "ptrace-attach",
        21 => "ptrace-read",
        22 => "ptrace-traceme",
        23 => "signal",
        24 => "sched",
        25 => "nice",
        26 => "ioprio",
        27 => "prlimit",
        28 => "move-memory",
        29 => "cgroup",
        30 => "setns",
        31 => "proc-file",
        32 => "watch",
        33 => "terminal",
        40 => "bpf-map",
        41 => "bpf-link",
        42 => "bpf-prog",
        43 => "mount",
        44 => "umount",
        45 => "move-mount",
        46 => "pivot-root",
        47 => "blockdev-write",
        48 => "bpf-tracing",
        49 => "perf-event",
        50 => "kexec",
        51 => "exec",
        52 => "mmap-exec",
        53 => "mprotect-exec",
        n => return format!("op-{n}"),
    };
    name.to_string()
}

/// Whether `op` acts on a process (its event has a target pid and no inode).
pub fn is_process_op(op: u32) -> bool {
    (20..=31).contains(&op)
}

/// The name of an `FSGUARD_RULE_*` value; `rule-N` for an unknown one.
pub fn rule_name(rule: u32) -> String {
    let name = match rule {
        1 => "outside",
        2 => "frozen",
        3 => "unknown-capsule",
        4 => "attach",
        5 => "see",
        6 => "guard",
        7 => "locked",
        8 => "uncheckable",
        9 => "full",
        10 => "disconnected",
        11 => "exec-unsealed",
        n => return format!("rule-{n}"),
    };
    name.to_string()
}

// The names above follow the header's numbering; a renumbering there must show up here.
const _: () = {
    use crate::shared::*;
    assert!(FSGUARD_OP_OPEN_WRITE == 1 && FSGUARD_OP_IOCTL_SETFLAGS == 14);
    assert!(FSGUARD_OP_PTRACE_ATTACH == 20 && FSGUARD_OP_CGROUP == 29);
    assert!(FSGUARD_OP_BPF_MAP == 40 && FSGUARD_OP_PERF_EVENT == 49);
    assert!(FSGUARD_RULE_OUTSIDE == 1 && FSGUARD_RULE_UNCHECKABLE == 8 && FSGUARD_RULE_FULL == 9);
    assert!(FSGUARD_RULE_DISCONNECTED == 10 && FSGUARD_RULE_EXEC_UNSEALED == 11);
    assert!(FSGUARD_OP_EXEC == 51 && FSGUARD_OP_MPROTECT_EXEC == 53);
};

/// Reads a clock; `None` if the kernel refuses (it does not for these clocks).
fn clock_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// The wall-clock time (nanoseconds since the Unix epoch) of a CLOCK_BOOTTIME stamp:
/// `realtime_now - (boottime_now - t)`. A stamp from the future counts as now.
pub fn boot_to_unix_ns(t: u64) -> u64 {
    let real = clock_ns(libc::CLOCK_REALTIME).unwrap_or(0);
    let boot = clock_ns(libc::CLOCK_BOOTTIME).unwrap_or(t);
    real.saturating_sub(boot.saturating_sub(t))
}

/// One line of /proc/self/mountinfo, the fields that matter here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub major: u32,
    pub minor: u32,
    /// The directory of the filesystem that is mounted (`/` for a whole filesystem).
    pub root: Vec<u8>,
    pub mount_point: Vec<u8>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(dev), Some(root), Some(point)) = (f.get(2), f.get(3), f.get(4)) else {
            continue;
        };
        let Some((major, minor)) = dev.split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        out.push(Mount {
            major,
            minor,
            root: unescape(root),
            mount_point: unescape(point),
        });
    }
    out
}

/// Where each filesystem is mounted, to turn an event's (device, path below the
/// filesystem's root) into a full path. Re-read when a device is not found.
#[derive(Default)]
pub struct Mounts {
    mounts: Vec<Mount>,
    source: Option<PathBuf>,
}

fn join(base: &[u8], rel: &[u8]) -> Vec<u8> {
    if base == b"/" {
        return rel.to_vec();
    }
    let mut out = base.to_vec();
    out.extend_from_slice(rel);
    out
}

impl Mounts {
    /// The mounts of this process's mount namespace.
    pub fn new() -> Self {
        let mut m = Mounts {
            mounts: Vec::new(),
            source: Some(PathBuf::from("/proc/self/mountinfo")),
        };
        m.reload();
        m
    }

    /// A fixed table (tests).
    pub fn from_list(mounts: Vec<Mount>) -> Self {
        Mounts {
            mounts,
            source: None,
        }
    }

    fn reload(&mut self) {
        if let Some(src) = &self.source {
            if let Ok(text) = std::fs::read_to_string(src) {
                self.mounts = parse_mountinfo(&text);
            }
        }
    }

    fn lookup(&self, major: u32, minor: u32, rel: &[u8]) -> Option<Vec<u8>> {
        let of_dev = || {
            self.mounts
                .iter()
                .filter(move |m| m.major == major && m.minor == minor)
        };
        if let Some(m) = of_dev().find(|m| m.root == b"/") {
            return Some(join(&m.mount_point, rel));
        }
        // Only bind mounts of a subdirectory: one whose root contains the object.
        of_dev().find_map(|m| {
            let rest = rel.strip_prefix(m.root.as_slice())?;
            if rest.is_empty() {
                return Some(m.mount_point.clone());
            }
            rest.starts_with(b"/").then(|| join(&m.mount_point, rest))
        })
    }

    /// The full path of the refusal's object as bytes: mount point + path below the
    /// filesystem's root. `None` when the event has no name. When the path was truncated, or
    /// its filesystem is mounted nowhere visible, the path below the filesystem's root is
    /// returned with a `.../` (truncated) or `dev MAJ:MIN:` prefix.
    pub fn display_path(&mut self, r: &Refusal) -> Option<Vec<u8>> {
        let rel = r.fs_path()?;
        let (major, minor) = r.dev_numbers();
        if r.truncated {
            let mut out = b"...".to_vec();
            out.extend_from_slice(&rel);
            return Some(out);
        }
        if let Some(p) = self.lookup(major, minor, &rel) {
            return Some(p);
        }
        self.reload();
        if let Some(p) = self.lookup(major, minor, &rel) {
            return Some(p);
        }
        let mut out = format!("dev {major}:{minor}:").into_bytes();
        out.extend_from_slice(&rel);
        Some(out)
    }
}

/// Kernel counters, summed over CPUs.
pub fn sum_stats(per_cpu: impl IntoIterator<Item = fsguard_stats>) -> fsguard_stats {
    let mut total = fsguard_stats::default();
    for s in per_cpu {
        total.denied += s.denied;
        total.events_dropped += s.events_dropped;
        total.events_ratelimited += s.events_ratelimited;
        total.inherited += s.inherited;
        total.released += s.released;
        total.events_sent += s.events_sent;
    }
    total
}

/// A consumer of the guard's ring buffer, mapped as the kernel lays it out: the consumer
/// position's page (read-write), then the producer position's page and the data twice over
/// (read-only). aya's reader (0.13) starts with no cached producer position and, when the
/// consumer position is not 0 (a collector started after another one consumed), reads the
/// stale records behind it as new; this one reads the producer position first.
struct Ring {
    map: MapData,
    consumer: *mut libc::c_void,
    producer: *mut libc::c_void,
    page: usize,
    size: usize,
    /// Where this reader is: the shared consumer position is anyone's to move (it is mapped
    /// writable), and one moved back would have records read twice.
    pos: Option<u64>,
    /// Bytes another reader moved the shared position back by, since last asked.
    rewound: u64,
}

const RINGBUF_BUSY: u32 = 1 << 31;
const RINGBUF_DISCARD: u32 = 1 << 30;
const RINGBUF_HEADER: usize = 8;

impl Ring {
    fn new(map: MapData, path: &Path) -> Result<Self, EventError> {
        let err = |source: io::Error| EventError::Map {
            op: "map",
            path: path.to_path_buf(),
            source: MapError::from(aya::sys::SyscallError {
                call: "mmap",
                io_error: source,
            }),
        };
        let size = map
            .info()
            .map_err(|source| EventError::Map {
                op: "inspect",
                path: path.to_path_buf(),
                source,
            })?
            .max_entries() as usize;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        if !size.is_power_of_two() || !size.is_multiple_of(page) {
            return Err(err(io::Error::other(format!(
                "a ring buffer of {size} bytes is not a power of two pages"
            ))));
        }
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: mapping the ring buffer's pages as the kernel offers them (kernel/bpf/
        // ringbuf.c: the consumer page writable, the rest read-only); checked below.
        let consumer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if consumer == libc::MAP_FAILED {
            return Err(err(io::Error::last_os_error()));
        }
        // SAFETY: as above; the data pages follow the producer page, mapped twice by the
        // kernel so that a record that wraps is contiguous.
        let producer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page + 2 * size,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                page as libc::off_t,
            )
        };
        if producer == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // SAFETY: unmapping what was mapped just above.
            unsafe { libc::munmap(consumer, page) };
            return Err(err(e));
        }
        Ok(Ring {
            map,
            consumer,
            producer,
            page,
            size,
            pos: None,
            rewound: 0,
        })
    }

    fn positions(&self) -> (&std::sync::atomic::AtomicU64, &std::sync::atomic::AtomicU64) {
        // SAFETY: both positions are 8-byte aligned u64s at the start of their pages, which
        // stay mapped while `self` lives; the kernel writes the producer's, only we the
        // consumer's: accessed atomically.
        unsafe {
            (
                &*(self.consumer as *const std::sync::atomic::AtomicU64),
                &*(self.producer as *const std::sync::atomic::AtomicU64),
            )
        }
    }

    /// Calls `each` with up to `max` records (discarded ones skipped and not counted),
    /// consuming each after the call; returns how many.
    fn consume(&mut self, max: usize, mut each: impl FnMut(&[u8])) -> usize {
        use std::sync::atomic::Ordering;
        let (consumer, producer) = self.positions();
        let shared = consumer.load(Ordering::Acquire);
        let mut rewound = 0;
        let mut pos = match self.pos {
            // Moved back: those records were read; this reader goes on where it was.
            Some(own) if shared < own => {
                rewound = own - shared;
                own
            }
            // Moved ahead (what another reader took: the counts tell) or ours.
            _ => shared,
        };
        let mut n = 0;
        while n < max {
            // Release by the kernel after a record's header: Acquire sees the header.
            if pos >= producer.load(Ordering::Acquire) {
                break;
            }
            let offset = (pos as usize) & (self.size - 1);
            // SAFETY: offset < size, and the data is mapped twice over: header and record
            // (at most the ring's size) lie within the mapping.
            let header = unsafe {
                let at = (self.producer as *const u8).add(self.page + offset);
                (*(at as *const std::sync::atomic::AtomicU32)).load(Ordering::Acquire)
            };
            if header & RINGBUF_BUSY != 0 {
                break; // reserved, not yet submitted
            }
            let len = ((header & !RINGBUF_DISCARD) as usize).min(self.size - RINGBUF_HEADER);
            if header & RINGBUF_DISCARD == 0 {
                // SAFETY: as above; `len` is bounded by the ring's size.
                let data = unsafe {
                    std::slice::from_raw_parts(
                        (self.producer as *const u8).add(self.page + offset + RINGBUF_HEADER),
                        len,
                    )
                };
                each(data);
                n += 1;
            }
            pos += ((RINGBUF_HEADER + len).div_ceil(8) * 8) as u64;
            consumer.store(pos, Ordering::Release);
        }
        if shared != pos {
            consumer.store(pos, Ordering::Release);
        }
        self.rewound += rewound;
        self.pos = Some(pos);
        n
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what new() mapped.
        unsafe {
            libc::munmap(self.consumer, self.page);
            libc::munmap(self.producer, self.page + 2 * self.size);
        }
    }
}

/// The pinned maps the audit collector needs: the ring buffer, the counters and the capsule
/// names. Opening them needs only the pins, not the programs.
pub struct EventReader {
    ring: Ring,
    stats: PerCpuArray<MapData, fsguard_stats>,
    capsules: Array<MapData, fsguard_capsule>,
    names: HashMap<u32, String>,
}

fn type_err(dir: &Path, name: &str) -> impl FnOnce(MapError) -> EventError {
    let path = dir.join(name);
    move |source| EventError::Map {
        op: "type-check",
        path,
        source,
    }
}

impl EventReader {
    /// Whether the maps are pinned in `dir` (the guard has been loaded this boot).
    pub fn is_pinned(dir: &Path) -> bool {
        ["events", "stats", "capsules_view"]
            .iter()
            .all(|m| dir.join(m).exists())
    }

    /// Opens the pinned maps in `dir` (normally [`crate::guard::PIN_DIR`]).
    /// The maps are those identity binds to the guard the kernel runs, through the
    /// descriptors it checked (an impostor's ring buffer is refused).
    pub fn open(dir: &Path) -> Result<Self, EventError> {
        let guard_err = |source: crate::Error| EventError::Open {
            path: dir.to_path_buf(),
            source: Box::new(source),
        };
        let btf = crate::kernel_btf().map_err(guard_err)?;
        let mut maps = match crate::identity::identify(dir, &btf).map_err(guard_err)? {
            crate::identity::Identity::Genuine { maps, .. } => maps,
            crate::identity::Identity::NotThis { why } => {
                return Err(guard_err(crate::Error::NotThis {
                    dir: dir.to_path_buf(),
                    why,
                }))
            }
            crate::identity::Identity::Absent | crate::identity::Identity::Hidden { .. } => {
                return Err(guard_err(crate::Error::Incomplete {
                    dir: dir.to_path_buf(),
                    what: "its pins are not there".into(),
                }))
            }
        };
        let mut open_map = |name: &'static str| -> Result<MapData, EventError> {
            let path = dir.join(name);
            let fd = maps.take(name).ok_or_else(|| EventError::Open {
                path: path.clone(),
                source: Box::new(crate::Error::Identity {
                    what: format!("no descriptor of {name} was held"),
                }),
            })?;
            MapData::from_fd(fd).map_err(|source| EventError::Map {
                op: "open",
                path,
                source,
            })
        };
        let ring = Ring::new(open_map("events")?, &dir.join("events"))?;
        let stats = PerCpuArray::try_from(Map::PerCpuArray(open_map("stats")?))
            .map_err(type_err(dir, "stats"))?;
        let capsules = Array::try_from(Map::Array(open_map("capsules_view")?))
            .map_err(type_err(dir, "capsules_view"))?;
        Ok(EventReader {
            ring,
            stats,
            capsules,
            names: HashMap::new(),
        })
    }

    /// Waits until events are ready, `also` is readable, or `timeout` passes. Returns whether
    /// `also` is readable. An interrupted wait returns early, as if it timed out.
    pub fn wait(
        &self,
        timeout: Duration,
        also: Option<BorrowedFd<'_>>,
    ) -> Result<bool, EventError> {
        let mut fds = [
            libc::pollfd {
                fd: self.ring.map.fd().as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: also.map_or(-1, |fd| fd.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fds` is a valid array of two pollfd for the whole call (a negative fd is
        // ignored by poll); its length is passed with it.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                return Ok(false);
            }
            return Err(EventError::Poll { source: err });
        }
        Ok(fds[1].revents & libc::POLLIN != 0)
    }

    /// Appends up to `max` waiting events to `out` and returns how many were taken. A
    /// record that cannot be decoded is consumed and reported in `bad` (counted, not lost
    /// silently).
    pub fn drain(&mut self, max: usize, out: &mut Vec<Refusal>, bad: &mut u64) -> usize {
        self.ring.consume(max, |data| match Refusal::decode(data) {
            Ok(r) => out.push(r),
            Err(_) => *bad += 1,
        })
    }

    /// Where this reader is in the ring buffer (None before its first read): stored with
    /// the log, so that a reader started later goes on from there ([`EventReader::resume`]).
    pub fn position(&self) -> Option<u64> {
        self.ring.pos
    }

    /// Goes on from `pos`, a position an earlier reader of the same guard stored, unless the
    /// ring's shared position is past it (another reader took what lies between).
    pub fn resume(&mut self, pos: u64) {
        self.ring.pos = Some(pos);
    }

    /// How many bytes another reader moved the ring's read position back by since the last
    /// call (those records were not read twice).
    pub fn take_rewound(&mut self) -> u64 {
        std::mem::take(&mut self.ring.rewound)
    }

    /// The guard's counters, summed over CPUs.
    pub fn counters(&self) -> Result<fsguard_stats, EventError> {
        let per_cpu = self.stats.get(&0, 0).map_err(|source| EventError::Map {
            op: "read",
            path: PathBuf::from("stats"),
            source,
        })?;
        Ok(sum_stats(per_cpu.iter().copied()))
    }

    /// The name of capsule slot `slot` (re-read from the map when not known yet, so a capsule
    /// sealed after the reader opened is named too); `slot N` when the slot is not active, and
    /// `unknown` for slot 0, which no capsule has (a refusal that could not tell the capsule,
    /// rule `disconnected`).
    pub fn capsule_name(&mut self, slot: u32) -> String {
        if slot == 0 {
            return "unknown".to_string();
        }
        if let Some(n) = self.names.get(&slot) {
            return n.clone();
        }
        if slot < FSGUARD_MAX_CAPSULES {
            if let Ok(c) = self.capsules.get(&slot, 0) {
                if c.flags & FSGUARD_CAPSULE_ACTIVE != 0 {
                    let name = capsule_core::display::escape_bytes(&c_str(&c.name));
                    self.names.insert(slot, name.clone());
                    return name;
                }
            }
        }
        format!("slot {slot}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(parts: u32, path: &[u8]) -> fsguard_event {
        let mut ev = fsguard_event {
            time_ns: 5,
            dev: 45,
            ino: 7,
            cgroup_id: 9,
            pid: 100,
            uid: 1000,
            capsule: 1,
            op: 1,
            rule: 1,
            level: 1,
            target_pid: 0,
            path_parts: parts,
            ..Default::default()
        };
        for (d, s) in ev.comm.iter_mut().zip(b"sh\0") {
            *d = *s as _;
        }
        for (d, s) in ev.path.iter_mut().zip(path) {
            *d = *s as _;
        }
        ev
    }

    fn bytes_of(ev: &fsguard_event) -> Vec<u8> {
        // SAFETY: reading the bytes of a live, fully initialised repr(C) struct without
        // padding (592 bytes, see shared.rs).
        unsafe {
            std::slice::from_raw_parts(
                (ev as *const fsguard_event).cast::<u8>(),
                std::mem::size_of::<fsguard_event>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn decodes_leaf_first_components_root_first() {
        let ev = event(3, b"passwd\0etc\0app\0");
        let r = Refusal::decode(&bytes_of(&ev)).unwrap();
        assert_eq!(r.fs_path().unwrap(), b"/app/etc/passwd");
        assert_eq!(r.comm, b"sh");
        assert_eq!((r.pid, r.uid, r.capsule, r.op), (100, 1000, 1, 1));
        assert!(!r.truncated);
    }

    #[test]
    fn wrong_size_is_refused() {
        let err = Refusal::decode(&[0u8; 10]).unwrap_err();
        assert!(err.to_string().contains("10 bytes"), "{err}");
    }

    #[test]
    fn no_name_and_truncated_paths() {
        let r = Refusal::from_event(&event(0, b""));
        assert_eq!(r.fs_path(), None);
        let r = Refusal::from_event(&event(2 | FSGUARD_PATH_TRUNCATED, b"b\0a\0"));
        assert!(r.truncated);
        let mut m = Mounts::from_list(vec![]);
        assert_eq!(m.display_path(&r).unwrap(), b".../a/b");
    }

    #[test]
    fn a_lying_part_count_never_reads_past_the_buffer() {
        // 24 parts announced, the buffer full of non-NUL bytes.
        let ev = event(24, &[b'x'; FSGUARD_PATH_BYTES as usize]);
        let r = Refusal::from_event(&ev);
        assert!(r.truncated);
        assert_eq!(r.components.len(), 1);
        assert_eq!(r.components[0].len(), FSGUARD_PATH_BYTES as usize);
        // More parts announced than names present: stops at the empty tail.
        let r = Refusal::from_event(&event(5, b"f\0"));
        assert_eq!(r.components, vec![b"f".to_vec()]);
        assert!(r.truncated);
    }

    #[test]
    fn mount_points_are_added() {
        let info = "22 1 0:45 / /jails rw,relatime shared:1 - tmpfs tmpfs rw\n\
                    23 1 0:45 /app /mnt/bind\\040x rw - tmpfs tmpfs rw\n\
                    24 1 8:1 /sub /data rw - ext4 /dev/sda1 rw\n\
                    garbage\n";
        let list = parse_mountinfo(info);
        assert_eq!(list.len(), 3);
        assert_eq!(list[1].mount_point, b"/mnt/bind x");
        let mut m = Mounts::from_list(list);
        let r = Refusal::from_event(&event(2, b"file\0app\0"));
        assert_eq!(m.display_path(&r).unwrap(), b"/jails/app/file");
        // Only a bind mount of a subdirectory holds the ext4 filesystem 8:1.
        let mut ev = event(2, b"f\0sub\0");
        ev.dev = (8 << 20) | 1;
        assert_eq!(
            m.display_path(&Refusal::from_event(&ev)).unwrap(),
            b"/data/f"
        );
        // Mounted nowhere: the device is named.
        ev.dev = (9 << 20) | 3;
        assert_eq!(
            m.display_path(&Refusal::from_event(&ev)).unwrap(),
            b"dev 9:3:/sub/f"
        );
    }

    #[test]
    fn names() {
        assert_eq!(op_name(1), "open-write");
        assert_eq!(op_name(6), "unlink");
        assert_eq!(op_name(99), "op-99");
        assert_eq!(rule_name(2), "frozen");
        assert_eq!(rule_name(0), "rule-0");
        assert!(is_process_op(23) && !is_process_op(6));
    }

    #[test]
    fn boot_time_converts_to_wall_clock() {
        let boot_now = clock_ns(libc::CLOCK_BOOTTIME).unwrap();
        let real_now = clock_ns(libc::CLOCK_REALTIME).unwrap();
        let t = boot_to_unix_ns(boot_now.saturating_sub(10_000_000_000));
        let diff = real_now.saturating_sub(t);
        assert!(
            (9_000_000_000..11_000_000_000).contains(&diff),
            "10 s ago came out {diff} ns ago"
        );
    }
}
