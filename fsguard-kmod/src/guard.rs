//! The capsule guard: loads `bpf/fsguard.bpf.c`, attaches every program, pins the links and
//! maps under /sys/fs/bpf/fsguard so enforcement outlives the process that started it, and
//! feeds the maps (capsule slots, protected inodes, the level).
//!
//! Layout of the pin directory: one pinned link per program (`link_<program>`) and the maps
//! `config`, `inodes`, `capsules`, `stats`, `events`, pinned by name at load time.

use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use aya::programs::links::FdLink;
use aya::programs::Lsm;
use aya::{Btf, Ebpf, EbpfLoader};

use crate::shared::{
    fsguard_capsule, fsguard_config, fsguard_inode_key, fsguard_inode_value, fsguard_stats,
    FSGUARD_CAPSULE_ACTIVE, FSGUARD_CAPSULE_HAS_CGROUP, FSGUARD_INODE_FROZEN, FSGUARD_LEVEL_LOCKED,
    FSGUARD_MAX_CAPSULES, FSGUARD_NAME_LEN,
};
use crate::{objects, Error, Result};

/// Where the guard's links and maps are pinned.
pub const PIN_DIR: &str = "/sys/fs/bpf/fsguard";

/// Every program of `bpf/fsguard.bpf.c` and the LSM hook it attaches to.
pub const PROGRAMS: &[(&str, &str)] = &[
    ("fsguard_file_open", "file_open"),
    ("fsguard_file_permission", "file_permission"),
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
    ("fsguard_inode_init_security", "inode_init_security"),
    ("fsguard_inode_permission", "inode_permission"),
    ("fsguard_ptrace_access_check", "ptrace_access_check"),
    ("fsguard_ptrace_traceme", "ptrace_traceme"),
    ("fsguard_task_kill", "task_kill"),
    ("fsguard_task_setscheduler", "task_setscheduler"),
    ("fsguard_task_setnice", "task_setnice"),
    ("fsguard_task_setioprio", "task_setioprio"),
    ("fsguard_task_movememory", "task_movememory"),
    ("fsguard_task_getscheduler", "task_getscheduler"),
    ("fsguard_task_alloc", "task_alloc"),
    ("fsguard_capable", "capable"),
];

/// The maps `bpf/fsguard.bpf.c` pins by name.
pub const MAPS: &[&str] = &[
    "config",
    "inodes",
    "capsules",
    "cgroup_capsules",
    "members",
    "stats",
    "events",
];

/// The capsule slot that protects the guard's own pins.
pub const GUARD_SLOT_NAME: &str = ".fsguard";

/// A protected inode: its kernel identity and `FSGUARD_INODE_*` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protected {
    pub key: fsguard_inode_key,
    pub flags: u32,
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
}

/// Handles on the pinned maps of a loaded guard.
pub struct Guard {
    dir: PathBuf,
    config: Array<MapData, fsguard_config>,
    inodes: HashMap<MapData, fsguard_inode_key, fsguard_inode_value>,
    capsules: Array<MapData, fsguard_capsule>,
    cgroup_capsules: HashMap<MapData, u64, u32>,
    stats: PerCpuArray<MapData, fsguard_stats>,
}

fn link_path(dir: &Path, program: &str) -> PathBuf {
    dir.join(format!("link_{program}"))
}

fn map_err(op: &'static str, map: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |source| Error::Map { op, map, source }
}

fn open_pinned<M: TryFrom<Map, Error = aya::maps::MapError>>(
    dir: &Path,
    map: &'static str,
    wrap: fn(MapData) -> Map,
) -> Result<M> {
    let data = MapData::from_pin(dir.join(map)).map_err(map_err("open the pinned", map))?;
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

impl Guard {
    /// Whether every program of the guard is attached (pinned) in `dir`.
    pub fn is_loaded_at(dir: &Path) -> bool {
        PROGRAMS.iter().all(|(p, _)| link_path(dir, p).exists())
    }

    pub fn is_loaded() -> bool {
        Self::is_loaded_at(Path::new(PIN_DIR))
    }

    /// Opens the guard if it is loaded; `None` if it is not. A half-present guard (some
    /// links pinned, others not) is an error: it is never silently taken as complete.
    pub fn open() -> Result<Option<Guard>> {
        let dir = Path::new(PIN_DIR);
        let present: Vec<_> = PROGRAMS
            .iter()
            .filter(|(p, _)| link_path(dir, p).exists())
            .collect();
        if present.is_empty() {
            return Ok(None);
        }
        if present.len() != PROGRAMS.len() {
            let missing: Vec<_> = PROGRAMS
                .iter()
                .filter(|(p, _)| !link_path(dir, p).exists())
                .map(|(p, _)| *p)
                .collect();
            return Err(Error::Incomplete {
                dir: dir.to_path_buf(),
                what: format!("programs not attached: {}", missing.join(", ")),
            });
        }
        Self::open_maps(dir).map(Some)
    }

    fn open_maps(dir: &Path) -> Result<Guard> {
        Ok(Guard {
            dir: dir.to_path_buf(),
            config: open_pinned(dir, "config", Map::Array)?,
            inodes: open_pinned(dir, "inodes", Map::HashMap)?,
            capsules: open_pinned(dir, "capsules", Map::Array)?,
            cgroup_capsules: open_pinned(dir, "cgroup_capsules", Map::HashMap)?,
            stats: open_pinned(dir, "stats", Map::PerCpuArray)?,
        })
    }

    /// Loads the guard: maps (reusing pinned ones), the level in `config` when it holds none
    /// yet, then every program attached and its link pinned. Either all programs end up
    /// attached and pinned, or none stays attached.
    pub fn load(initial_level: u32, btf: &Btf) -> Result<Guard> {
        let dir = Path::new(PIN_DIR);
        std::fs::create_dir_all(dir).map_err(|source| Error::Pin {
            op: "create",
            path: dir.to_path_buf(),
            source,
        })?;
        // `members` is a task storage map, which aya creates but has no typed API for (the
        // guard never touches it from userspace).
        let mut ebpf: Ebpf = EbpfLoader::new()
            .btf(Some(btf))
            .allow_unsupported_maps()
            .map_pin_path(dir)
            .load(objects::FSGUARD)
            .map_err(|source| Error::LoadObject {
                object: "fsguard",
                source,
            })?;
        {
            // The config is written before any program runs: a fresh map is all zeros, which
            // the programs read as level 1 (fail closed), never as "off".
            let mut config: Array<&mut MapData, fsguard_config> =
                Array::try_from(ebpf.map_mut("config").ok_or(Error::MissingMap {
                    object: "fsguard",
                    map: "config",
                })?)
                .map_err(map_err("type-check", "config"))?;
            let current = config.get(&0, 0).map_err(map_err("read", "config"))?;
            if !current.is_valid() {
                config
                    .set(0, fsguard_config::with_level(initial_level), 0)
                    .map_err(map_err("write", "config"))?;
            }
        }
        let mut links = Vec::new();
        for (program, hook) in PROGRAMS {
            let lsm: &mut Lsm = ebpf
                .program_mut(program)
                .ok_or(Error::MissingProgram {
                    object: "fsguard",
                    program,
                })?
                .try_into()
                .map_err(|source| Error::NotLsm {
                    object: "fsguard",
                    program,
                    source,
                })?;
            lsm.load(hook, btf).map_err(|source| Error::LoadProgram {
                program,
                hook,
                source,
            })?;
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
                        source: std::io::Error::other(e.to_string()),
                    });
                }
            }
        }
        // The pins keep the links; the process may now exit.
        drop(pinned);
        Self::open_maps(dir)
    }

    /// Opens the loaded guard, or loads it at `initial_level`. The bool says whether it was
    /// loaded now.
    pub fn open_or_load(initial_level: u32) -> Result<(Guard, bool)> {
        if let Some(g) = Self::open()? {
            return Ok((g, false));
        }
        let btf = crate::kernel_btf()?;
        let mut guard = Self::load(initial_level, &btf)?;
        guard.protect_pins()?;
        Ok((guard, true))
    }

    /// Puts the guard's own pins (the directory, every link and map pin) under its
    /// protection, in a capsule slot of its own with no inside: from level 1 on nobody can
    /// remove or replace them (removing a link pin would detach its program); at level 0
    /// root still can, for maintenance. The slot's name starts with '.', which no capsule
    /// name may.
    pub fn protect_pins(&mut self) -> Result<()> {
        let slot = self.ensure_capsule(GUARD_SLOT_NAME, None)?;
        let mut paths = vec![self.dir.clone()];
        paths.extend(PROGRAMS.iter().map(|(p, _)| link_path(&self.dir, p)));
        paths.extend(MAPS.iter().map(|m| self.dir.join(m)));
        let mut pins = Vec::with_capacity(paths.len());
        for path in paths {
            let key = fsguard_inode_key::of_path(&path)?;
            pins.push(Protected { key, flags: 0 });
        }
        let shared = vec![false; pins.len()];
        self.protect(slot, &pins, &shared)
    }

    pub fn pin_dir(&self) -> &Path {
        &self.dir
    }

    /// The level in force (1 when the config is missing or invalid, as the programs read it).
    pub fn level(&self) -> Result<u32> {
        let cfg = self.config.get(&0, 0).map_err(map_err("read", "config"))?;
        Ok(if cfg.is_valid() {
            cfg.level
        } else {
            crate::shared::FSGUARD_LEVEL_SEALED
        })
    }

    /// Raises the level; lowering is refused.
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
        self.config
            .set(0, fsguard_config::with_level(level), 0)
            .map_err(map_err("write", "config"))
    }

    /// The active capsule slots.
    pub fn capsules(&self) -> Result<Vec<CapsuleSlot>> {
        let mut out = Vec::new();
        for id in 1..FSGUARD_MAX_CAPSULES {
            let c = self
                .capsules
                .get(&id, 0)
                .map_err(map_err("read", "capsules"))?;
            if c.flags & FSGUARD_CAPSULE_ACTIVE != 0 {
                out.push(CapsuleSlot {
                    id,
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
        let slots = self.capsules()?;
        if let Some(s) = slots.iter().find(|s| s.name == name) {
            if let Some(i) = s.inside {
                self.map_cgroup(i.cgroup_id, s.id)?;
            }
            return Ok(s.id);
        }
        let id = (1..FSGUARD_MAX_CAPSULES)
            .find(|id| !slots.iter().any(|s| s.id == *id))
            .ok_or(Error::NoCapsuleSlot {
                max: FSGUARD_MAX_CAPSULES - 1,
            })?;
        let mut c = fsguard_capsule {
            flags: FSGUARD_CAPSULE_ACTIVE,
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
        self.capsules
            .set(id, c, 0)
            .map_err(map_err("write", "capsules"))?;
        if let Some(i) = inside {
            self.map_cgroup(i.cgroup_id, id)?;
        }
        Ok(id)
    }

    /// Lets the process rules find capsule `slot` from its cgroup's id.
    fn map_cgroup(&mut self, cgroup_id: u64, slot: u32) -> Result<()> {
        match self.cgroup_capsules.get(&cgroup_id, 0) {
            Ok(s) if s == slot => Ok(()),
            Ok(other) => Err(Error::CgroupTaken {
                cgroup_id,
                slot: other,
            }),
            Err(aya::maps::MapError::KeyNotFound) => self
                .cgroup_capsules
                .insert(cgroup_id, slot, 0)
                .map_err(map_err("insert into", "cgroup_capsules")),
            Err(e) => Err(map_err("read", "cgroup_capsules")(e)),
        }
    }

    /// Protects `inodes` as members of capsule slot `capsule`. Idempotent.
    ///
    /// Inodes that may also belong to another capsule (`maybe_shared`: hard links leaving the
    /// tree) are merged one by one: an inode already in another capsule keeps that capsule
    /// and becomes frozen, so neither capsule's inside can modify the other's file. All other
    /// inodes are written in batches (BPF_MAP_UPDATE_BATCH), which keeps sealing a million
    /// entries to seconds.
    pub fn protect(
        &mut self,
        capsule: u32,
        inodes: &[Protected],
        maybe_shared: &[bool],
    ) -> Result<()> {
        let mut batch_keys = Vec::with_capacity(inodes.len());
        let mut batch_values = Vec::with_capacity(inodes.len());
        for (i, p) in inodes.iter().enumerate() {
            let value = fsguard_inode_value {
                capsule,
                flags: p.flags,
            };
            if !maybe_shared.get(i).copied().unwrap_or(true) {
                batch_keys.push(p.key);
                batch_values.push(value);
                continue;
            }
            let value = match self.inodes.get(&p.key, 0) {
                Ok(v) if v.capsule == capsule => fsguard_inode_value {
                    capsule,
                    flags: v.flags | p.flags,
                },
                Ok(v) => fsguard_inode_value {
                    capsule: v.capsule,
                    flags: v.flags | p.flags | FSGUARD_INODE_FROZEN,
                },
                Err(aya::maps::MapError::KeyNotFound) => value,
                Err(e) => return Err(map_err("read", "inodes")(e)),
            };
            self.inodes
                .insert(p.key, value, 0)
                .map_err(map_err("insert into", "inodes"))?;
        }
        let fd = crate::batch::open_pinned_map(&self.dir.join("inodes"))?;
        crate::batch::update(&fd, "inodes", &batch_keys, &batch_values)
    }

    /// Whether the inode is protected, and how.
    pub fn lookup(&self, key: &fsguard_inode_key) -> Result<Option<fsguard_inode_value>> {
        match self.inodes.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err("read", "inodes")(e)),
        }
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
