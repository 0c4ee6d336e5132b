//! From a sealed capsule to kernel state: which inodes to protect (with which flags), who is
//! inside, and the checks that make sure the kernel's view of identity matches ours.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use capsule_core::glob::GlobSet;
use capsule_core::manifest::{EntryKind, Tree};
use capsule_core::policy::{FrozenRules, SealRecord};

use crate::dev::kernel_dev_from_user;
use crate::guard::{Guard, Inside, Protected};
use crate::shared::{fsguard_inode_key, FSGUARD_INODE_FROZEN};

/// Why a tree or cgroup can't be handed to the kernel. Each names the path and the cause.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{path}: cannot examine: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: its filesystem reports device {reported} to stat() but the kernel's inodes carry device {kernel} (btrfs subvolumes and some overlayfs setups do this); fsguard keys on the kernel's identity and cannot protect this tree")]
    DeviceMismatch {
        path: PathBuf,
        reported: String,
        kernel: String,
    },
    #[error("{path}: device number {st_dev:#x} does not fit a kernel dev_t")]
    DeviceOutOfRange { path: PathBuf, st_dev: u64 },
    #[error("{path}: not inside the cgroup v2 hierarchy (mounted at {mount})")]
    NotCgroup2 { path: PathBuf, mount: String },
    #[error("no cgroup v2 hierarchy is mounted")]
    NoCgroup2,
    #[error("{path}: the cgroup is {level} levels deep; a capsule's cgroup may be at most {max} below the cgroup2 root")]
    CgroupTooDeep { path: PathBuf, level: u32, max: u32 },
    #[error("frozen pattern: {0}")]
    Frozen(#[from] capsule_core::Error),
    #[error("{path}: its filesystem writes a second device ({what}) that can't be found, so it could not be protected at level 2")]
    SecondDevice { path: PathBuf, what: String },
    #[error("{path}: what lies beneath its filesystem can't be told ({what}), so writes there could not be refused")]
    UnknownBeneath { path: PathBuf, what: String },
    #[error("{path}: a tree on {kind} can't be protected: {why}")]
    Unprotectable {
        path: PathBuf,
        kind: &'static str,
        why: &'static str,
    },
}

/// What the kernel needs for one capsule.
#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub inside: Option<Inside>,
    /// The capsule's cgroup directory, whose present processes are made members.
    pub cgroup: Option<PathBuf>,
    pub inodes: Vec<Protected>,
    /// The directories above the root, up to `/` (level 2 keeps them in place).
    pub ancestors: Vec<fsguard_inode_key>,
    /// The block devices (kernel dev_t) under the tree's filesystem (level 2 refuses writes).
    pub devices: Vec<u64>,
    /// The backing files of loop devices under it (an image file mounted through a loop).
    pub backing: Vec<Protected>,
    /// What lies beneath the tree's filesystem and can't be told (see [`Beneath::unknown`]).
    pub unknown_beneath: Vec<String>,
    pub frozen: usize,
    /// `--exec sealed`: only the sealed manifest's entries run inside.
    pub exec_sealed: bool,
    /// The bases whose sealed entries may run inside (capsule names).
    pub exec_from: Vec<String>,
}

/// Builds the plan from a fresh walk of the sealed tree (its live identities) and the seal.
pub fn plan(tree: &Tree, root: &Path, seal: &SealRecord) -> Result<Plan, PlanError> {
    check_device_identity(root)?;
    let rules = FrozenRules::new(GlobSet::new(&seal.frozen)?);
    let marks = rules.mark(&tree.entries);
    let mut inodes = Vec::with_capacity(tree.entries.len());
    let mut frozen = 0;
    for (e, &is_frozen) in tree.entries.iter().zip(&marks) {
        // Another filesystem mounted inside the tree is not part of it.
        if e.kind == EntryKind::MountPoint {
            continue;
        }
        let dev = kernel_dev_from_user(e.dev).ok_or_else(|| PlanError::DeviceOutOfRange {
            path: root.join(std::ffi::OsStr::from_bytes(&e.path)),
            st_dev: e.dev,
        })?;
        frozen += usize::from(is_frozen);
        inodes.push(Protected {
            key: fsguard_inode_key {
                dev: u64::from(dev),
                ino: e.ino,
            },
            flags: if is_frozen { FSGUARD_INODE_FROZEN } else { 0 },
        });
    }
    let inside = match &seal.cgroup {
        Some(c) => Some(cgroup_inside(c)?),
        None => None,
    };
    let storage = storage_of(root)?;
    Ok(Plan {
        name: seal.name.clone(),
        inside,
        cgroup: seal.cgroup.clone(),
        inodes,
        ancestors: ancestors_of(root).map_err(|e| PlanError::Io {
            path: root.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?,
        devices: storage.devices,
        backing: storage.files,
        unknown_beneath: storage.unknown,
        frozen,
        exec_sealed: seal.exec == capsule_core::policy::ExecMode::Sealed,
        exec_from: seal.exec_from.clone(),
    })
}

/// Hands a plan to the guard; returns the capsule's slot.
pub fn apply(guard: &mut Guard, plan: &Plan) -> crate::Result<u32> {
    let bases = base_slots(guard, plan)?;
    let slot = guard.ensure_sealed_capsule(&plan.name, plan.inside, plan.exec_sealed)?;
    apply_in(guard, plan, slot, &bases)
}

/// The slots of the bases `plan` names, before anything is asked of the guard: a base it
/// does not hold fails the capsule before its slot is taken.
fn base_slots(guard: &Guard, plan: &Plan) -> crate::Result<Vec<u32>> {
    if plan.exec_from.is_empty() {
        return Ok(Vec::new());
    }
    let slots = guard.capsules()?;
    let mut bases = Vec::new();
    for name in &plan.exec_from {
        let base = slots
            .iter()
            .find(|s| &s.name == name && s.inside.is_none())
            .ok_or_else(|| crate::Error::NoBase {
                capsule: plan.name.clone(),
                base: name.clone(),
            })?;
        if !bases.contains(&base.id) {
            bases.push(base.id);
        }
    }
    Ok(bases)
}

/// Hands the plan of a capsule sealed now to the guard, in a slot of its own: one that holds
/// a capsule of this name already is refused (see [`Guard::new_capsule`]).
pub fn apply_new(guard: &mut Guard, plan: &Plan) -> crate::Result<u32> {
    let bases = base_slots(guard, plan)?;
    let slot = guard.new_sealed_capsule(&plan.name, plan.inside, plan.exec_sealed)?;
    apply_in(guard, plan, slot, &bases)
}

/// The tree of `plan` protected with nobody inside, in the registry's own slot: for a
/// capsule that can't have its slot (another seal took its cgroup, or the slots are used
/// up, at boot from seal files planted in the registry). Its tree stays protected (frozen
/// for everyone) rather than not at all.
pub fn apply_fail_closed(guard: &mut Guard, plan: &Plan) -> crate::Result<u32> {
    apply_fail_closed_all(guard, &[plan])
}

/// [`apply_fail_closed`] for several trees at once (trees that share inodes: each inode goes
/// in once, with every flag asked for). Every part is asked for whatever another's answer.
pub fn apply_fail_closed_all(guard: &mut Guard, plans: &[&Plan]) -> crate::Result<u32> {
    let slot = guard.ensure_capsule(REGISTRY_SLOT_NAME, None)?;
    let inodes: Vec<Protected> = plans
        .iter()
        .flat_map(|p| p.inodes.iter().copied())
        .collect();
    let mut result = guard.protect(slot, &inodes);
    for plan in plans {
        result = result
            .and(guard.protect(slot, &plan.backing))
            .and(guard.protect_ancestors(slot, &plan.ancestors))
            .and(guard.protect_devices(slot, &plan.devices));
    }
    result.map(|()| slot)
}

/// The pairs of capsules (by index in `plans`) whose plans name a common inode: nested trees,
/// or hard links between them. The kernel gives an inode to one capsule only.
pub fn shared_inodes(plans: &[&Plan]) -> Vec<(usize, usize)> {
    let mut owner = std::collections::HashMap::new();
    let mut pairs = std::collections::BTreeSet::new();
    for (i, plan) in plans.iter().enumerate() {
        for p in &plan.inodes {
            match owner.entry((p.key.dev, p.key.ino)) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(i);
                }
                std::collections::hash_map::Entry::Occupied(e) => {
                    if *e.get() != i {
                        pairs.insert((*e.get(), i));
                    }
                }
            }
        }
    }
    pairs.into_iter().collect()
}

fn apply_in(guard: &mut Guard, plan: &Plan, slot: u32, bases: &[u32]) -> crate::Result<u32> {
    guard.protect(slot, &plan.inodes)?;
    if !plan.backing.is_empty() {
        let registry = guard.ensure_capsule(REGISTRY_SLOT_NAME, None)?;
        guard.protect(registry, &plan.backing)?;
    }
    guard.protect_ancestors(slot, &plan.ancestors)?;
    guard.protect_devices(slot, &plan.devices)?;
    if let Some(cgroup) = &plan.cgroup {
        let above = cgroups_above(cgroup)?;
        guard.protect_cgroup_ancestors(slot, &above)?;
        remember_members(cgroup)?;
    }
    // The exec rule: the bases it may run from, then its tree is in. What this process's
    // requests added is counted as the guard counts it (an inode once, however many names).
    let mut added = plan
        .inodes
        .iter()
        .map(|p| (p.key.dev, p.key.ino))
        .collect::<std::collections::HashSet<_>>()
        .len() as u64;
    for &base in bases {
        guard.trust_exec(slot, base)?;
    }
    added += bases.len() as u64;
    guard.complete(slot, added)?;
    Ok(slot)
}

/// The capsule slot that protects the registry from level 2 on.
pub const REGISTRY_SLOT_NAME: &str = ".registry";

/// Level 2's protection of the registry at `dir`, so root can't rewrite what the next boot
/// enforces: every manifest and seal file is frozen (they are content-addressed and never
/// rewritten), as is the configured level and each sealed capsule's directory; `manifests/`
/// and each unsealed capsule's directory are append-only (new capsules and seals can still
/// be added; nothing can be removed or replaced); the registry directory and those above it
/// can't be renamed, removed or mounted over. The sled index (`db/`) is not protected: it is derived data, rebuilt from these
/// files, and boot enforcement reads the seal files themselves. Idempotent: run again after
/// each registration at level 2 to freeze the new files.
pub fn protect_registry(guard: &mut Guard, dir: &Path) -> crate::Result<usize> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| crate::Error::Stat { path, source }
    };
    let append_only = crate::shared::FSGUARD_INODE_APPEND_ONLY;
    let mut inodes = Vec::new();
    let mut add = |path: &Path, flags: u32| -> crate::Result<()> {
        inodes.push(Protected {
            key: fsguard_inode_key::of_path(path)?,
            flags,
        });
        Ok(())
    };
    // Never through a symlink: one planted in manifests/ (which takes new capsules) would
    // name another capsule's inode for the registry's slot.
    let is = |path: &Path, dir: bool| {
        std::fs::symlink_metadata(path).is_ok_and(|m| if dir { m.is_dir() } else { m.is_file() })
    };
    let manifests = dir.join("manifests");
    if is(&manifests, true) {
        add(&manifests, append_only)?;
        for capsule in std::fs::read_dir(&manifests).map_err(io(&manifests))? {
            let capsule = capsule.map_err(io(&manifests))?.path();
            if !is(&capsule, true) {
                continue;
            }
            let mut sealed = false;
            for f in std::fs::read_dir(&capsule).map_err(io(&capsule))? {
                let f = f.map_err(io(&capsule))?.path();
                let ext = f.extension().and_then(|e| e.to_str());
                if matches!(ext, Some("manifest") | Some("seal")) && is(&f, false) {
                    sealed |= ext == Some("seal");
                    add(&f, FSGUARD_INODE_FROZEN)?;
                }
            }
            // A sealed capsule's directory takes nothing more (a second seal, planted, would
            // name another inside); an unsealed one may still get manifests and its seal.
            add(
                &capsule,
                if sealed {
                    FSGUARD_INODE_FROZEN
                } else {
                    append_only
                },
            )?;
        }
    }
    let level = dir.join("level");
    if is(&level, false) {
        add(&level, FSGUARD_INODE_FROZEN)?;
    }
    let slot = guard.ensure_capsule(REGISTRY_SLOT_NAME, None)?;
    // Each part is asked for whatever another part's answer was: an inode the guard
    // refuses must not leave the directories above or the block devices unprotected.
    let files = guard.protect(slot, &inodes);
    let above = fsguard_inode_key::of_path(dir).and_then(|key| {
        let mut above = vec![key];
        above.extend(ancestors_of(dir)?);
        guard.protect_ancestors(slot, &above)
    });
    // The block devices under it, as under a sealed tree: a raw write would rewrite what the
    // next boot enforces.
    let devices = storage_of(dir).map_err(plan_to_stat(dir)).and_then(|b| {
        guard
            .protect(slot, &b.files)
            .and(guard.protect_devices(slot, &b.devices))
            .and(unknown_beneath(dir, &b.unknown))
    });
    files.and(above).and(devices)?;
    Ok(inodes.len())
}

/// An error naming what lies beneath `path`'s filesystem and can't be told, if anything.
fn unknown_beneath(path: &Path, unknown: &[String]) -> crate::Result<()> {
    if unknown.is_empty() {
        return Ok(());
    }
    Err(crate::Error::Stat {
        path: path.to_path_buf(),
        source: std::io::Error::other(format!(
            "what lies beneath its filesystem can't be told, and is NOT protected: {}",
            unknown.join("; ")
        )),
    })
}

/// Before a seal: what lies beneath the tree's filesystem must be known, or writes there
/// (a loop device's backing file) could not be refused.
pub fn check_beneath(root: &Path) -> Result<(), PlanError> {
    let b = storage_of(root)?;
    if b.unknown.is_empty() {
        return Ok(());
    }
    Err(PlanError::UnknownBeneath {
        path: root.to_path_buf(),
        what: b.unknown.join("; "),
    })
}

fn plan_to_stat(path: &Path) -> impl FnOnce(PlanError) -> crate::Error + '_ {
    move |e| match e {
        PlanError::Io { path, source } => crate::Error::Stat { path, source },
        other => crate::Error::Stat {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

/// Level 2: the block devices under each sealed tree (capsule name, root) computed again,
/// so that partitions and device-mapper targets made over them since their seal are
/// protected as the device itself (and from level 2 on no partition is added over them).
/// Returns how many devices were protected.
pub fn protect_devices_again(
    guard: &mut Guard,
    sealed: &[(String, PathBuf)],
) -> crate::Result<usize> {
    let slots = guard.capsules()?;
    let mut n = 0;
    for (name, root) in sealed {
        let Some(slot) = slots.iter().find(|s| &s.name == name) else {
            continue; // not enforced: nothing of it to protect
        };
        let b = storage_of(root).map_err(plan_to_stat(root))?;
        if !b.files.is_empty() {
            let registry = guard.ensure_capsule(REGISTRY_SLOT_NAME, None)?;
            guard.protect(registry, &b.files)?;
        }
        guard.protect_devices(slot.id, &b.devices)?;
        unknown_beneath(root, &b.unknown)?;
        n += b.devices.len() + b.files.len();
    }
    Ok(n)
}

/// The kernel identities of the directories strictly above `path`, up to `/`, as the path
/// resolves now (through mounts: a mount point's identity is the mounted root's).
pub fn ancestors_of(path: &Path) -> crate::Result<Vec<fsguard_inode_key>> {
    let real = std::fs::canonicalize(path).map_err(|source| crate::Error::Stat {
        path: path.to_path_buf(),
        source,
    })?;
    real.ancestors()
        .skip(1)
        .map(fsguard_inode_key::of_path)
        .collect()
}

/// What writes reach the sectors of the filesystem holding `root`: the block devices under
/// it (see [`block_devices_from`]) and, beneath any loop device among them, the loop's
/// backing device (and what is under it) or its backing file with that file's filesystem's
/// devices (a jail's image file mounted through a loop device: writing the file rewrites the
/// tree). Empty for filesystems without a block device (tmpfs, ...).
pub fn storage_of(root: &Path) -> Result<Beneath, PlanError> {
    let meta = std::fs::metadata(root).map_err(|source| PlanError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    Ok(beneath(vec![meta.dev()]))
}

/// The block devices (kernel dev_t) of [`storage_of`].
pub fn block_devices_of(root: &Path) -> Result<Vec<u64>, PlanError> {
    storage_of(root).map(|b| b.devices)
}

/// What writes reach beneath some devices: block devices, and files a loop device writes.
#[derive(Debug, Default, Clone)]
pub struct Beneath {
    /// Block devices, as kernel dev_t.
    pub devices: Vec<u64>,
    /// The backing files of loop devices beneath them, locked like them but written by the
    /// loop's own kernel thread (FSGUARD_INODE_BACKING), in the registry's slot (several
    /// trees may stand on one).
    pub files: Vec<Protected>,
    /// What lies beneath and can't be told (a loop device whose backing can't be asked, a
    /// zram writeback device that can't be looked at): NOT protected.
    pub unknown: Vec<String>,
}

/// [`Beneath`] the devices `start` (as stat() encodes them): for each, the devices of
/// [`block_devices_from`]; and beneath each loop device it stands on ([`own_stack`]) its
/// backing device or its backing file and that file's filesystem, beneath each zram device
/// its writeback device, and so on down.
fn beneath(mut todo: Vec<u64>) -> Beneath {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut out = Beneath::default();
    while let Some(dev) = todo.pop() {
        if !seen.insert(dev) {
            continue;
        }
        for kdev in block_devices_from(dev) {
            if !out.devices.contains(&kdev) {
                out.devices.push(kdev);
            }
        }
        // Down only through what `dev` stands on: a loop device built over it (an alias)
        // writes its sectors, but its own backing file is not beneath them.
        for majmin in own_stack(dev) {
            let Some(name) = std::fs::canonicalize(format!("/sys/dev/block/{majmin}"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_os_string()))
            else {
                continue;
            };
            let shown = name.to_string_lossy().into_owned();
            let sys = Path::new("/sys/block").join(&name);
            if sys.join("loop/backing_file").exists() {
                match loop_backing(&name) {
                    Some((_, _, rdev)) if rdev != 0 => todo.push(rdev),
                    Some((fs, ino, _)) => match kernel_dev_from_user(fs) {
                        Some(k) => {
                            out.files.push(Protected {
                                key: fsguard_inode_key {
                                    dev: u64::from(k),
                                    ino,
                                },
                                flags: crate::shared::FSGUARD_INODE_BACKING,
                            });
                            todo.push(fs);
                        }
                        None => out.unknown.push(format!(
                            "loop device {shown}: its backing file's device is out of range"
                        )),
                    },
                    None => out
                        .unknown
                        .push(format!("loop device {shown}: its backing can't be told")),
                }
            }
            if shown.starts_with("zram") {
                let attr = sys.join("backing_dev");
                let backing = std::fs::read_to_string(&attr).unwrap_or_default();
                let backing = backing.trim();
                if !backing.is_empty() && backing != "none" {
                    match std::fs::metadata(backing) {
                        Ok(m) => todo.push(m.rdev()),
                        Err(e) => out
                            .unknown
                            .push(format!("{} ({backing}): {e}", attr.display())),
                    }
                }
            }
        }
    }
    out
}

/// The same, from the device (as stat() encodes it) whose writes are to be covered: a
/// filesystem's, or a block device's own.
fn block_devices_from(dev: u64) -> Vec<u64> {
    let read = |d: &Path, f: &str| {
        std::fs::read_to_string(d.join(f))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let sectors = |d: &Path, f: &str| read(d, f).and_then(|s| s.parse::<u64>().ok());
    // The partitions of disk `disk` (directories with a `partition` file), with their range.
    let partitions = |disk: &Path| -> Vec<(String, u64, u64)> {
        let Ok(entries) = std::fs::read_dir(disk) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("partition").exists())
            .filter_map(|p| {
                Some((
                    read(&p, "dev")?,
                    sectors(&p, "start")?,
                    sectors(&p, "size")?,
                ))
            })
            .collect()
    };
    let mut out = Vec::new();
    // (major:minor, whether its aliases count: not for the whole disk of a partition, whose
    // other partitions may hold other filesystems).
    let mut todo = vec![(format!("{}:{}", libc::major(dev), libc::minor(dev)), true)];
    // The filesystem's other devices (an external journal, a log or realtime device): its
    // writes reach them too. Those that can't be found stop a seal (check_second_devices),
    // not an enforcement: the rest is protected all the same.
    let second = second_devices(dev).unwrap_or_default();
    todo.extend(second.into_iter().map(|d| (d, true)));
    let mut seen = Vec::new(); // major:minor of every device in `out`
    loop {
        let Some((majmin, aliases)) = todo.pop() else {
            // Devices over the same sectors that sysfs doesn't link: loop devices backed by
            // one of them, other paths to the same disk (the same wwid).
            let more: Vec<String> = loops_over(&seen)
                .into_iter()
                .chain(same_disks(&seen))
                .filter(|d| !seen.contains(d))
                .collect();
            if more.is_empty() {
                break;
            }
            todo.extend(more.into_iter().map(|d| (d, true)));
            continue;
        };
        let sys = PathBuf::from(format!("/sys/dev/block/{majmin}"));
        let Ok(dir) = std::fs::canonicalize(&sys) else {
            continue; // not a block device
        };
        let Some(kdev) = crate::dev::kernel_dev_from_majmin(&majmin).map(u64::from) else {
            continue;
        };
        if out.contains(&kdev) {
            continue;
        }
        out.push(kdev);
        seen.push(majmin.clone());
        let is_partition = dir.join("partition").exists();
        if is_partition {
            if let Some(disk) = dir.parent() {
                todo.extend(read(disk, "dev").map(|d| (d, false)));
                if aliases {
                    let (start, size) = (sectors(&dir, "start"), sectors(&dir, "size"));
                    if let (Some(start), Some(size)) = (start, size) {
                        for (dev, s, n) in partitions(disk) {
                            if s < start + size && start < s + n {
                                todo.push((dev, true));
                            }
                        }
                    }
                }
            }
        } else if aliases {
            todo.extend(partitions(&dir).into_iter().map(|(dev, _, _)| (dev, true)));
        }
        for sub in ["slaves", "holders"] {
            if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
                for e in entries.flatten() {
                    if let Some(d) = std::fs::canonicalize(e.path())
                        .ok()
                        .and_then(|p| read(&p, "dev"))
                    {
                        todo.push((d, true));
                    }
                }
            }
        }
    }
    out
}

/// Level 2: the active swap areas (/proc/swaps) written by nobody. What a capsule process
/// had swapped out comes back as the swap area holds it, so a write there rewrites its
/// memory (and a sealed tree's tmpfs pages). The guard refuses switching one on at level 2;
/// this protects, for each one active now, what reaches its sectors, as for a sealed tree's
/// device (the device itself, partitions over it, the whole disk, devices built on it, loop
/// devices over it) or, for a swap file, its filesystem's devices (the kernel refuses writes
/// to the file itself), and what lies beneath any loop device or zram device among them: a
/// loop's backing device, or its backing file (frozen: the loop writes it with no hook of its
/// own) and that file's filesystem's devices; zram's writeback device. An area whose file or
/// device can't be looked at (deleted, renamed, another namespace's path) is an error, after
/// the others are protected. Returns how many devices and files were protected.
pub fn protect_swap(guard: &mut Guard) -> crate::Result<usize> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let swaps = std::fs::read_to_string("/proc/swaps").map_err(|source| crate::Error::Stat {
        path: PathBuf::from("/proc/swaps"),
        source,
    })?;
    let mut errors = Vec::new();
    // Devices (as stat() encodes them) whose writes reach a swap area.
    let mut start = Vec::new();
    for line in swaps.lines().skip(1) {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let path = PathBuf::from(unescape_mount(name));
        match std::fs::metadata(&path) {
            Ok(m) if m.file_type().is_block_device() => start.push(m.rdev()),
            Ok(m) => start.push(m.dev()),
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    let found = beneath(start);
    errors.extend(found.unknown);
    let n = found.devices.len() + found.files.len();
    if n > 0 {
        let slot = guard.ensure_capsule(REGISTRY_SLOT_NAME, None)?;
        guard
            .protect(slot, &found.files)
            .and(guard.protect_devices(slot, &found.devices))?;
    }
    if !errors.is_empty() {
        return Err(crate::Error::Stat {
            path: PathBuf::from("/proc/swaps"),
            source: std::io::Error::other(format!(
                "active swap areas whose sectors can't be told, NOT protected: {}",
                errors.join("; ")
            )),
        });
    }
    Ok(n)
}

/// Devices that write what one device they are built on holds over another, built on a
/// device under the sealed tree at `root` (an alias of its disk made before level 2, see
/// [`storage_of`]) and on something else, outside the filesystem's own stack: an md array of
/// two or more members (its resync or recovery, started by the kernel after an unclean stop,
/// copies one member over another, past every hook), a device-mapper device over two or more
/// devices whose table has a target that copies (mirror, raid, clone, cache, writecache,
/// integrity, snapshot-merge, zoned's reclaim, delay's held writes) or that this list does
/// not know, whatever the number of devices, or whose table can't be read; any other device
/// over two or more (bcache).
/// Level 2 refuses building them but can't stop one built before: the raise refuses while
/// any exists. Each as "/dev/NAME (what it is)".
pub fn copying_devices_over(root: &Path) -> Vec<String> {
    let Ok(meta) = std::fs::metadata(root) else {
        return Vec::new(); // the raise's own checks name a tree that can't be looked at
    };
    let own = own_stack(meta.dev());
    let mut out = Vec::new();
    for kdev in beneath(vec![meta.dev()]).devices {
        let majmin = crate::dev::majmin_of_kernel(kdev);
        if own.contains(&majmin) {
            continue;
        }
        let Ok(dir) = std::fs::canonicalize(format!("/sys/dev/block/{majmin}")) else {
            continue;
        };
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let slaves: Vec<String> = std::fs::read_dir(dir.join("slaves"))
            .map(|es| {
                es.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let on = slaves.join(", ");
        if dir.join("md").is_dir() {
            if slaves.len() >= 2 {
                out.push(format!(
                    "/dev/{name} (an md array over {on}: its resync or recovery copies one member over another)"
                ));
            }
        } else if dir.join("dm").is_dir() {
            // Whatever the number of devices: a mirror's two legs may lie on one.
            let dev = crate::dev::user_dev_from_kernel(kdev as u32);
            match dm_target_types(dev) {
                Ok(types) => {
                    let copying: Vec<&String> = types
                        .iter()
                        .filter(|t| !DM_TARGETS_THAT_COPY_NOTHING.contains(&t.as_str()))
                        .collect();
                    if !copying.is_empty() {
                        let t: Vec<&str> = copying.iter().map(|t| t.as_str()).collect();
                        out.push(format!(
                            "/dev/{name} (a device-mapper {} target over {on}, which may copy one of them over another)",
                            t.join("/")
                        ));
                    }
                }
                Err(e) => out.push(format!(
                    "/dev/{name} (a device-mapper device over {on} whose table can't be read: {e})"
                )),
            }
        } else if slaves.len() >= 2 {
            // Neither md nor device-mapper (bcache fills its cache from its backing device,
            // and writes dirty data back): what it copies can't be told.
            out.push(format!(
                "/dev/{name} (a device built over {on}, which may copy one of them over another)"
            ));
        }
    }
    out
}

/// Device-mapper targets that write a device only with what is written to them (or not at
/// all): a table of nothing else over an alias writes nothing the alias did not get.
const DM_TARGETS_THAT_COPY_NOTHING: &[&str] = &[
    "linear",
    "striped",
    "crypt",
    "zero",
    "error",
    "snapshot",
    "snapshot-origin",
    "thin",
    "thin-pool",
    "multipath",
    "verity",
    "flakey",
    "era",
    "switch",
    "unstriped",
    "dust",
    "ebs",
];

/// The devices (major:minor) a filesystem on `dev` (as stat() encodes it) stands on: the
/// device itself, what it is built on (sysfs `slaves`, down), and the device beneath each
/// loop device among them.
fn own_stack(dev: u64) -> Vec<String> {
    let majmin = |d: u64| format!("{}:{}", libc::major(d), libc::minor(d));
    let mut todo = vec![majmin(dev)];
    let mut own: Vec<String> = Vec::new();
    while let Some(m) = todo.pop() {
        if own.contains(&m) {
            continue;
        }
        own.push(m.clone());
        let Ok(dir) = std::fs::canonicalize(format!("/sys/dev/block/{m}")) else {
            continue;
        };
        if let Some(name) = dir.file_name() {
            if let Some((_, _, rdev)) = loop_backing(name).filter(|b| b.2 != 0) {
                todo.push(majmin(rdev));
            }
        }
        if let Ok(entries) = std::fs::read_dir(dir.join("slaves")) {
            for e in entries.flatten() {
                if let Ok(d) = std::fs::read_to_string(e.path().join("dev")) {
                    todo.push(d.trim().to_string());
                }
            }
        }
    }
    own
}

/// The target types of device-mapper device `dev`'s live table (as stat() encodes it), asked
/// through DM_TABLE_STATUS on /dev/mapper/control (a query level 2 allows).
fn dm_target_types(dev: u64) -> std::io::Result<Vec<String>> {
    use std::os::fd::AsRawFd;
    const DM_IOCTL_SIZE: usize = 312; // sizeof(struct dm_ioctl)
    const DM_TABLE_STATUS: libc::c_ulong = 0xc138_fd0c; // _IOWR(0xfd, 12, struct dm_ioctl)
    const DM_STATUS_TABLE_FLAG: u32 = 1 << 4;
    const DM_BUFFER_FULL_FLAG: u32 = 1 << 8;
    const SPEC_SIZE: usize = 40; // sizeof(struct dm_target_spec)
    let control = std::fs::File::open("/dev/mapper/control")?;
    let mut size = 16 * 1024;
    loop {
        // u64 words: struct dm_ioctl's `dev` is 8-byte aligned.
        let mut buf = vec![0u64; size / 8];
        let bytes = |b: &mut Vec<u64>| -> &mut [u8] {
            // SAFETY: a u64 slice reinterpreted as its bytes (u8 has no alignment or
            // validity requirements), for the same length and lifetime.
            unsafe { std::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<u8>(), b.len() * 8) }
        };
        {
            let b = bytes(&mut buf);
            let put =
                |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
            put(b, 0, 4); // version 4.0.0
            put(b, 12, size as u32); // data_size: the whole buffer
            put(b, 16, DM_IOCTL_SIZE as u32); // data_start
            put(b, 28, DM_STATUS_TABLE_FLAG);
            b[40..48].copy_from_slice(&dev.to_ne_bytes());
        }
        // SAFETY: DM_TABLE_STATUS reads and writes a struct dm_ioctl followed by its data,
        // at most `data_size` bytes, which is the buffer's length.
        let rc =
            unsafe { libc::ioctl(control.as_raw_fd(), DM_TABLE_STATUS as _, buf.as_mut_ptr()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let b = bytes(&mut buf);
        let get = |at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if get(28) & DM_BUFFER_FULL_FLAG != 0 && size < 1 << 24 {
            size *= 4;
            continue;
        }
        let (start, count) = (get(16) as usize, get(20) as usize);
        let bad = || std::io::Error::other("the kernel's answer is malformed");
        let mut types = Vec::new();
        let mut at = start;
        for _ in 0..count {
            let spec = b.get(at..at + SPEC_SIZE).ok_or_else(bad)?;
            let name = &spec[24..40];
            let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
            types.push(String::from_utf8_lossy(&name[..end]).into_owned());
            let next = u32::from_ne_bytes([spec[20], spec[21], spec[22], spec[23]]) as usize;
            at = start.checked_add(next).ok_or_else(bad)?;
        }
        return Ok(types);
    }
}

/// The storage-target exports enabled while a sealed tree lies on a block device (`devices`
/// not empty): LIO backstores but RAM and userspace ones (configfs
/// `target/core/*/*`), nvmet namespaces and passthrough controllers (`nvmet/subsystems/*`).
/// The kernel opened their device itself, unhooked, and writes it for whoever is on the other
/// end, which level 2 can't refuse once they are enabled (it refuses enabling them). Which
/// device one writes can't be told afterwards (its path names what it named when enabled),
/// so every one counts. Each as "CONFIGFS_DIR (PATH)".
pub fn target_exports_over(devices: &[u64]) -> Vec<String> {
    if devices.is_empty() {
        return Vec::new();
    }
    let config = Path::new("/sys/kernel/config");
    let dirs_in = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .map(|es| {
                es.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut exports: Vec<(PathBuf, &str)> = Vec::new();
    for hba in dirs_in(&config.join("target/core")) {
        let name = hba.file_name().map(|n| n.to_string_lossy().into_owned());
        let vfs = name.is_some_and(|n| ["rd_mcp_", "user_"].iter().any(|p| n.starts_with(p)));
        if !vfs {
            exports.extend(dirs_in(&hba).into_iter().map(|d| (d, "udev_path")));
        }
    }
    for subsystem in dirs_in(&config.join("nvmet/subsystems")) {
        exports.extend(
            dirs_in(&subsystem.join("namespaces"))
                .into_iter()
                .map(|d| (d, "device_path")),
        );
        exports.push((subsystem.join("passthru"), "device_path"));
    }
    let mut out = Vec::new();
    for (dir, path_file) in exports {
        let enabled = std::fs::read_to_string(dir.join("enable"))
            .map(|s| s.trim() == "1")
            .unwrap_or(false);
        if enabled {
            let path = std::fs::read_to_string(dir.join(path_file)).unwrap_or_default();
            out.push(format!("{} ({})", dir.display(), path.trim()));
        }
    }
    out
}

/// Before a seal: a tree on overlayfs or FUSE can't be protected. The guard keys the
/// overlay's (or the FUSE mount's) inodes, while the files behind them (an overlay's layers,
/// a FUSE daemon's backing store) stay writable from outside by their own paths.
pub fn check_filesystem(root: &Path) -> Result<(), PlanError> {
    const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
    const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
    let c = std::ffi::CString::new(root.as_os_str().as_bytes()).map_err(|_| PlanError::Io {
        path: root.to_path_buf(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: statfs on a NUL-terminated path, into a zeroed statfs it fills.
    let st = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 {
            return Err(PlanError::Io {
                path: root.to_path_buf(),
                source: std::io::Error::last_os_error(),
            });
        }
        st
    };
    let (kind, why) = match st.f_type as i64 {
        OVERLAYFS_SUPER_MAGIC => (
            "overlayfs",
            "its layers stay writable by their own paths; seal the layers' trees instead",
        ),
        FUSE_SUPER_MAGIC => (
            "FUSE",
            "its daemon's backing store stays writable; seal that instead",
        ),
        _ => return Ok(()),
    };
    Err(PlanError::Unprotectable {
        path: root.to_path_buf(),
        kind,
        why,
    })
}

/// Before a seal: a filesystem whose second device (an external journal, a log device) can't
/// be found could not have it protected at level 2.
pub fn check_second_devices(root: &Path) -> Result<(), PlanError> {
    let meta = std::fs::metadata(root).map_err(|source| PlanError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    second_devices(meta.dev())
        .map(drop)
        .map_err(|what| PlanError::SecondDevice {
            path: root.to_path_buf(),
            what,
        })
}

/// The devices (major:minor) other than its own that the filesystem on device `dev` (as
/// stat() encodes it) writes: an ext2/3/4 external journal (`s_journal_dev` in its
/// superblock, which the kernel brings up to date at mount), an XFS log or realtime device
/// (its `logdev=`, `rtdev=` options). Err names one that can't be found. A superblock that
/// can't be read (no device node, as in a container) is taken to name none.
fn second_devices(dev: u64) -> Result<Vec<String>, String> {
    let majmin = |d: u64| format!("{}:{}", libc::major(d), libc::minor(d));
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Ok(Vec::new());
    };
    let Some((fstype, source, options)) = mount_of(&mountinfo, &majmin(dev)) else {
        return Ok(Vec::new()); // not mounted here (or not a block device's filesystem)
    };
    let mut out = Vec::new();
    match fstype {
        "xfs" => {
            for opt in options.split(',') {
                let Some(path) = opt.strip_prefix("logdev=").or(opt.strip_prefix("rtdev=")) else {
                    continue;
                };
                match std::fs::metadata(unescape_mount(path)) {
                    Ok(m) if m.file_type().is_block_device() => out.push(majmin(m.rdev())),
                    _ => return Err(format!("XFS {opt}")),
                }
            }
        }
        "ext2" | "ext3" | "ext4" => {
            let mut sb = [0u8; 1024];
            let read = std::fs::File::open(unescape_mount(source)).and_then(|f| {
                use std::os::unix::fs::FileExt;
                if !f.metadata()?.file_type().is_block_device() || f.metadata()?.rdev() != dev {
                    return Err(std::io::Error::other("not the filesystem's device"));
                }
                f.read_exact_at(&mut sb, 1024)
            });
            if read.is_err() {
                // No device node to read (a container): nothing to tell. Where the guard can
                // enforce, root reads its filesystems' devices.
                return Ok(out);
            }
            match ext4_external_journal(&sb) {
                None => {}
                Some(0) => return Err("an ext4 external journal of unknown device".into()),
                Some(d) => out.push(majmin(u64::from(d))),
            }
        }
        _ => {}
    }
    Ok(out)
}

/// The fstype, mount source and superblock options of a mount of device `majmin` in a
/// /proc/PID/mountinfo text.
fn mount_of<'a>(mountinfo: &'a str, majmin: &str) -> Option<(&'a str, &'a str, &'a str)> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        if mount.split(' ').nth(2)? != majmin {
            return None;
        }
        let mut fs = fs.split(' ');
        Some((fs.next()?, fs.next()?, fs.next().unwrap_or("")))
    })
}

/// For an ext2/3/4 superblock (the 1024 bytes at offset 1024): the device number of its
/// external journal (`s_journal_dev`, as stat() encodes device numbers; 0 when unknown), or
/// None when it has none (no journal, or one in an inode).
fn ext4_external_journal(sb: &[u8; 1024]) -> Option<u32> {
    let u16_at = |o: usize| u16::from_le_bytes([sb[o], sb[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
    const MAGIC: u16 = 0xEF53;
    const HAS_JOURNAL: u32 = 0x4;
    if u16_at(0x38) != MAGIC || u32_at(0x5C) & HAS_JOURNAL == 0 || u32_at(0xE0) != 0 {
        return None;
    }
    Some(u32_at(0xE4))
}

/// The loop devices (major:minor) whose backing file is one of the block devices `devices`
/// (major:minor), or can't be told (deleted, unreadable): such a loop writes their sectors,
/// with direct I/O past every hook. Loop devices over regular files are not aliases.
fn loops_over(devices: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (dir, name, backing) in bound_loops() {
        let Ok(dev) = std::fs::read_to_string(dir.join("dev")) else {
            continue;
        };
        let majmin = |d: u64| format!("{}:{}", libc::major(d), libc::minor(d));
        let alias = match loop_backing(&name) {
            // The kernel's own word: the backing file's device, or the filesystem's device a
            // backing file lies on (a file there may be a sealed one, written through a
            // descriptor opened before the seal; all of them count, fail closed).
            Some((fs_dev, _, rdev)) => devices
                .iter()
                .any(|d| *d == majmin(fs_dev) || (rdev != 0 && *d == majmin(rdev))),
            // No node to ask: the path the kernel shows.
            None => match std::fs::metadata(&backing) {
                Ok(m) if m.file_type().is_file() => devices.iter().any(|d| *d == majmin(m.dev())),
                Ok(m) if m.file_type().is_block_device() => {
                    devices.iter().any(|d| *d == majmin(m.rdev()))
                }
                _ => true, // "(deleted)", renamed, too long: can't be told
            },
        };
        if alias {
            out.push(dev.trim().to_string());
        }
    }
    out
}

/// The backing file of loop device `name` as the kernel reports it (LOOP_GET_STATUS64): the
/// device of the filesystem it lies on, its inode number and, for a device node, its device
/// number (devices as stat() encodes them). None when /dev/NAME can't be opened or asked.
fn loop_backing(name: &std::ffi::OsStr) -> Option<(u64, u64, u64)> {
    use std::os::fd::AsRawFd;
    let node = std::fs::File::open(Path::new("/dev").join(name)).ok()?;
    if !node.metadata().ok()?.file_type().is_block_device() {
        return None;
    }
    // struct loop_info64: lo_device, lo_inode, lo_rdevice (u64 each), then 208 more bytes.
    let mut info = [0u64; 29];
    // SAFETY: LOOP_GET_STATUS64 (0x4C05) fills a struct loop_info64 (232 bytes) at `info`,
    // which is that large.
    let rc = unsafe { libc::ioctl(node.as_raw_fd(), 0x4C05, info.as_mut_ptr()) };
    (rc == 0).then_some((info[0], info[1], info[2]))
}

/// The bound loop devices whose backing file is one of `inodes` (or can't be told): a loop
/// device writes its backing file with no hook of its own (direct I/O, discards), so a tree
/// is not sealed while one is bound to a file of it.
pub fn loops_backed_by(inodes: &[Protected]) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let keys: std::collections::HashSet<(u64, u64)> =
        inodes.iter().map(|p| (p.key.dev, p.key.ino)).collect();
    let kernel = |d: u64| (u64::from(libc::major(d)) << 20) | u64::from(libc::minor(d));
    let mut out = Vec::new();
    for (_, name, backing) in bound_loops() {
        let hit = match loop_backing(&name) {
            Some((dev, ino, _)) => keys.contains(&(kernel(dev), ino)),
            None => match std::fs::metadata(&backing) {
                Ok(m) => keys.contains(&(kernel(m.dev()), m.ino())),
                Err(_) => true, // "(deleted)", renamed, no node to ask: can't be told
            },
        };
        if hit {
            out.push(name.to_string_lossy().into_owned());
        }
    }
    out
}

/// Each bound loop device by name, with the keys its backing file could be protected
/// through: its own inode and the directory the path the kernel shows names it in. None when
/// that can't be told (no node to ask, or the path no longer names the file: deleted,
/// renamed).
pub fn loop_backing_keys() -> Vec<(String, Option<Vec<fsguard_inode_key>>)> {
    bound_loops()
        .into_iter()
        .map(|(_, name, backing)| {
            let keys = loop_backing(&name).and_then(|(dev, ino, _)| {
                let file = fsguard_inode_key {
                    dev: u64::from(kernel_dev_from_user(dev)?),
                    ino,
                };
                let path = Path::new(&backing);
                let shown = fsguard_inode_key::of_path(path).ok()?;
                let dir = fsguard_inode_key::of_path(path.parent()?).ok()?;
                (shown.dev == file.dev && shown.ino == file.ino).then_some(vec![file, dir])
            });
            (name.to_string_lossy().into_owned(), keys)
        })
        .collect()
}

/// Every bound loop device: its /sys/block directory, its name, and its backing file's path
/// as the kernel shows it (sysfs `loop/backing_file`, which only a bound loop device has).
fn bound_loops() -> Vec<(PathBuf, std::ffi::OsString, String)> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let dir = e.path();
            let backing = std::fs::read_to_string(dir.join("loop/backing_file")).ok()?;
            Some((
                dir,
                e.file_name(),
                backing.trim_end_matches('\n').to_string(),
            ))
        })
        .collect()
}

/// The disks (major:minor) that report the same world-wide id as one of `devices`: other
/// paths to the same disk (SCSI multipath, NVMe multipath controllers), no holder of the
/// other in sysfs.
fn same_disks(devices: &[String]) -> Vec<String> {
    let wwid = |dir: &Path| {
        ["wwid", "device/wwid"]
            .iter()
            .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let disks: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let dir = e.path();
            let dev = std::fs::read_to_string(dir.join("dev")).ok()?;
            Some((dev.trim().to_string(), wwid(&dir)?))
        })
        .collect();
    let ours: Vec<&String> = disks
        .iter()
        .filter(|(dev, _)| devices.contains(dev))
        .map(|(_, id)| id)
        .collect();
    disks
        .iter()
        .filter(|(_, id)| ours.contains(&id))
        .map(|(dev, _)| dev.clone())
        .collect()
}

/// The cgroup v2 ids (directory inode numbers) of the cgroups strictly above `cgroup`, below
/// the hierarchy's root (whose cgroup.kill and cgroup.freeze don't exist).
pub fn cgroups_above(cgroup: &Path) -> crate::Result<Vec<u64>> {
    let real = std::fs::canonicalize(cgroup).map_err(|source| crate::Error::Cgroup {
        path: cgroup.to_path_buf(),
        source,
    })?;
    let mut ids = Vec::new();
    for dir in real.ancestors().skip(1) {
        // Stop at the hierarchy's root, the one cgroup without cgroup.kill.
        if !dir.join("cgroup.procs").exists() || !dir.join("cgroup.kill").exists() {
            break;
        }
        let meta = std::fs::metadata(dir).map_err(|source| crate::Error::Cgroup {
            path: dir.to_path_buf(),
            source,
        })?;
        ids.push(meta.ino());
    }
    Ok(ids)
}

/// Has the kernel remember every thread now in `cgroup`'s subtree as a member of its capsule,
/// so that moving one out later (which no LSM hook sees) does not make it an outsider. The
/// guard records membership whenever a thread's scheduling policy is read; threads created
/// from now on inherit it at fork.
pub fn remember_members(cgroup: &Path) -> crate::Result<()> {
    for tid in threads_in(cgroup)? {
        // SAFETY: sched_getscheduler only reads the policy of thread `tid`; a thread that
        // has exited meanwhile gives ESRCH, which is fine (it needs no membership).
        unsafe { libc::sched_getscheduler(tid as libc::pid_t) };
    }
    Ok(())
}

/// A capsule's claim on its inside, to find two capsules whose insides overlap: the cgroup as
/// it resolves now and, when it exists, its id and the ids of the cgroups above it (so that
/// the same cgroup reached through another mount of the hierarchy is still the same).
#[derive(Debug, Clone)]
pub struct InsideClaim {
    pub name: String,
    pub cgroup: PathBuf,
    real: PathBuf,
    id: Option<u64>,
    above: Vec<u64>,
}

impl InsideClaim {
    /// The claim of capsule `name` on `cgroup`. Nothing is created: a cgroup that does not
    /// exist (yet) is compared by its path alone.
    pub fn new(name: &str, cgroup: &Path) -> InsideClaim {
        let real = std::fs::canonicalize(cgroup).unwrap_or_else(|_| cgroup.to_path_buf());
        let id = std::fs::metadata(&real).ok().map(|m| m.ino());
        let above = match id {
            Some(_) => cgroups_above(&real).unwrap_or_default(),
            None => Vec::new(),
        };
        InsideClaim {
            name: name.to_string(),
            cgroup: cgroup.to_path_buf(),
            real,
            id,
            above,
        }
    }

    /// Whether the two insides are one cgroup or one holds the other: the kernel gives each
    /// cgroup to one capsule, and none to a capsule whose cgroup holds another's.
    pub fn overlaps(&self, other: &InsideClaim) -> bool {
        if self.real.starts_with(&other.real) || other.real.starts_with(&self.real) {
            return true;
        }
        match (self.id, other.id) {
            (Some(a), Some(b)) => a == b || self.above.contains(&b) || other.above.contains(&a),
            _ => false,
        }
    }
}

/// The pairs of differently named capsules whose insides overlap. Which of the two came first
/// can't be told at boot from anything root can't rewrite (seal files can be planted, clocks
/// set), so both are to be enforced with no inside.
pub fn overlapping_insides(claims: &[InsideClaim]) -> Vec<(&InsideClaim, &InsideClaim)> {
    let mut out = Vec::new();
    for (i, a) in claims.iter().enumerate() {
        for b in &claims[i + 1..] {
            if a.name != b.name && a.overlaps(b) {
                out.push((a, b));
            }
        }
    }
    out
}

/// The threads in `cgroup`'s subtree (an absent cgroup has none).
fn threads_in(cgroup: &Path) -> crate::Result<std::collections::BTreeSet<u32>> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| crate::Error::Cgroup { path, source }
    };
    let mut tids = std::collections::BTreeSet::new();
    if !cgroup.exists() {
        return Ok(tids);
    }
    let mut dirs = vec![cgroup.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let threads = dir.join("cgroup.threads");
        let text = std::fs::read_to_string(&threads).map_err(io(&threads))?;
        tids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            if entry.file_type().map_err(io(&entry.path()))?.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(tids)
}

/// The threads of `cgroup`'s subtree traced by a process outside it, with their tracer: a
/// trace attached before the seal survives it (ptrace requests on an attached tracee meet no
/// LSM hook), so such a seal is refused.
pub fn outside_tracers(cgroup: &Path) -> crate::Result<Vec<(u32, u32)>> {
    let inside = threads_in(cgroup)?;
    let mut out = Vec::new();
    for &tid in &inside {
        // A thread that has exited meanwhile has nothing to say.
        let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
            continue;
        };
        let tracer = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(0);
        if tracer != 0 && !inside.contains(&tracer) {
            out.push((tid, tracer));
        }
    }
    Ok(out)
}

/// One line of /proc/self/mountinfo: (mount id, "major:minor", mount point, fs type).
fn mountinfo() -> std::io::Result<Vec<(u64, String, PathBuf, String)>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some((
                f.first()?.parse().ok()?,
                f.get(2)?.to_string(),
                PathBuf::from(unescape_mount(f.get(4)?)),
                f.get(sep + 1)?.to_string(),
            ))
        })
        .collect())
}

fn unescape_mount(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mount_id(path: &Path) -> Result<u64, PlanError> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| PlanError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut sx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `sx` is writable; statx keeps neither pointer.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            &mut sx,
        )
    };
    if rc != 0 {
        return Err(PlanError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(sx.stx_mnt_id)
}

/// Checks that stat()'s device for `root` is its filesystem's own device, the one the
/// kernel hooks see as `i_sb->s_dev`.
pub fn check_device_identity(root: &Path) -> Result<(), PlanError> {
    let io = |source| PlanError::Io {
        path: root.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(root).map_err(io)?;
    let id = mount_id(root)?;
    let mounts = mountinfo().map_err(io)?;
    let Some((_, majmin, _, fstype)) = mounts.iter().find(|m| m.0 == id) else {
        return Err(io(std::io::Error::other(
            "its mount is not in /proc/self/mountinfo",
        )));
    };
    let reported = format!("{}:{}", libc::major(meta.dev()), libc::minor(meta.dev()));
    if *majmin != reported {
        return Err(PlanError::DeviceMismatch {
            path: root.to_path_buf(),
            reported,
            kernel: format!("{majmin} ({fstype})"),
        });
    }
    Ok(())
}

/// The cgroup v2 id (the directory's inode number) and depth of `cgroup`, created if absent.
pub fn cgroup_inside(cgroup: &Path) -> Result<Inside, PlanError> {
    let mounts = mountinfo().map_err(|source| PlanError::Io {
        path: PathBuf::from("/proc/self/mountinfo"),
        source,
    })?;
    let mount = mounts
        .iter()
        .filter(|m| m.3 == "cgroup2")
        .map(|m| m.2.clone())
        .find(|mp| cgroup.starts_with(mp))
        .ok_or_else(|| match mounts.iter().find(|m| m.3 == "cgroup2") {
            Some(m) => PlanError::NotCgroup2 {
                path: cgroup.to_path_buf(),
                mount: m.2.display().to_string(),
            },
            None => PlanError::NoCgroup2,
        })?;
    if !cgroup.exists() {
        std::fs::create_dir(cgroup).map_err(|source| PlanError::Io {
            path: cgroup.to_path_buf(),
            source,
        })?;
    }
    // The depth is counted on the real path: `..` or a symlink must not skew it.
    let cgroup = &std::fs::canonicalize(cgroup).map_err(|source| PlanError::Io {
        path: cgroup.to_path_buf(),
        source,
    })?;
    let meta = std::fs::metadata(cgroup).map_err(|source| PlanError::Io {
        path: cgroup.to_path_buf(),
        source,
    })?;
    let level = capsule_core::policy::cgroup_level(cgroup, &mount).ok_or_else(|| {
        PlanError::NotCgroup2 {
            path: cgroup.to_path_buf(),
            mount: mount.display().to_string(),
        }
    })?;
    if level >= crate::shared::FSGUARD_MAX_CGROUP_DEPTH {
        return Err(PlanError::CgroupTooDeep {
            path: cgroup.to_path_buf(),
            level,
            max: crate::shared::FSGUARD_MAX_CGROUP_DEPTH - 1,
        });
    }
    Ok(Inside {
        cgroup_id: meta.ino(),
        cgroup_level: level,
    })
}

/// The fanotify marks held on the filesystems `roots` lie on (one line each, naming the
/// holder): a mark made before the seal or the raise keeps working after it (the guard judges
/// marks when they are made), and each one holds capsule processes' opens until answered
/// (permission events) or names them (the others). A mark on a mount that this process's
/// mount table doesn't show can't be told, and counts.
pub fn fanotify_marks_on(roots: &[PathBuf]) -> Vec<String> {
    let mut devs = std::collections::BTreeSet::new();
    let mut found = Vec::new();
    for root in roots {
        match std::fs::metadata(root).map(|m| kernel_dev_from_user(m.dev())) {
            Ok(Some(dev)) => {
                devs.insert(dev);
            }
            Ok(None) => {}
            Err(e) => found.push(format!("{}: cannot stat: {e}", root.display())),
        }
    }
    if devs.is_empty() {
        return found;
    }
    let mounts: std::collections::HashMap<u64, u32> = mountinfo()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(id, dev, _, _)| Some((id, crate::dev::kernel_dev_from_majmin(&dev)?)))
        .collect();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        found.push("cannot list /proc to look for fanotify marks".into());
        return found;
    };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let is_group = std::fs::read_link(fd.path())
                .is_ok_and(|t| t.as_os_str() == "anon_inode:[fanotify]");
            if !is_group {
                continue;
            }
            let info = p.path().join("fdinfo").join(fd.file_name());
            let Ok(text) = std::fs::read_to_string(&info) else {
                continue;
            };
            let on = fanotify_marks_in(&text, &devs, &mounts);
            if on > 0 {
                let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                found.push(format!(
                    "process {pid} ({}) holds {on} fanotify mark(s) on a filesystem holding a sealed tree (descriptor {}): each holds capsule processes' opens until answered, or names them; close it (stop the process)",
                    comm.trim(),
                    fd.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// How many of the marks a fanotify group's fdinfo lists are on a filesystem of `devs`
/// (kernel dev_t) or on a mount (`mnt_id`) not in `mounts` (mount id → kernel dev_t).
fn fanotify_marks_in(
    fdinfo: &str,
    devs: &std::collections::BTreeSet<u32>,
    mounts: &std::collections::HashMap<u64, u32>,
) -> usize {
    let field = |line: &str, key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v, 16).ok())
    };
    fdinfo
        .lines()
        .filter_map(|l| l.strip_prefix("fanotify "))
        // The group's own line: `fanotify flags:... event-flags:...`.
        .filter(|l| !l.starts_with("flags:"))
        .filter(|l| {
            if let Some(dev) = field(l, "sdev:") {
                u32::try_from(dev).is_ok_and(|d| devs.contains(&d))
            } else if let Some(id) = field(l, "mnt_id:") {
                mounts.get(&id).is_none_or(|d| devs.contains(d))
            } else {
                // A mark this build can't read: counted (fail closed).
                true
            }
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext4_external_journal_from_the_superblock() {
        let mut sb = [0u8; 1024];
        sb[0x38..0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
        // No journal.
        assert_eq!(ext4_external_journal(&sb), None);
        sb[0x5C..0x60].copy_from_slice(&4u32.to_le_bytes());
        // A journal in inode 8.
        sb[0xE0..0xE4].copy_from_slice(&8u32.to_le_bytes());
        assert_eq!(ext4_external_journal(&sb), None);
        // An external journal on 254:16 (stat()'s encoding), and one of unknown device.
        sb[0xE0..0xE4].copy_from_slice(&0u32.to_le_bytes());
        sb[0xE4..0xE8].copy_from_slice(&0xfe10u32.to_le_bytes());
        assert_eq!(
            ext4_external_journal(&sb)
                .map(u64::from)
                .map(|d| (libc::major(d), libc::minor(d))),
            Some((254, 16))
        );
        sb[0xE4..0xE8].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(ext4_external_journal(&sb), Some(0));
        // Not an ext superblock.
        sb[0x38] = 0;
        assert_eq!(ext4_external_journal(&sb), None);
    }

    #[test]
    fn mounts_found_by_device() {
        let info = "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n\
                    30 22 259:3 / /data rw shared:9 - xfs /dev/nvme0n1p3 rw,logdev=/dev/sdb1,noquota\n";
        assert_eq!(
            mount_of(info, "254:1"),
            Some(("ext4", "/dev/vda1", "rw,errors=remount-ro"))
        );
        assert_eq!(
            mount_of(info, "259:3").map(|m| m.2),
            Some("rw,logdev=/dev/sdb1,noquota")
        );
        assert_eq!(mount_of(info, "8:1"), None);
    }

    #[test]
    fn insides_overlap_when_one_cgroup_holds_the_other() {
        let claim = |name: &str, path: &str| InsideClaim::new(name, Path::new(path));
        let claims = [
            claim("a", "/nonexistent-cg/app"),
            claim("b", "/nonexistent-cg/app/sub"),
            claim("c", "/nonexistent-cg/apple"),
            claim("d", "/nonexistent-cg/other"),
            claim("e", "/nonexistent-cg/other"),
        ];
        let pairs: Vec<(&str, &str)> = overlapping_insides(&claims)
            .into_iter()
            .map(|(a, b)| (a.name.as_str(), b.name.as_str()))
            .collect();
        // "apple" is not under "app": components, not string prefixes.
        assert_eq!(pairs, vec![("a", "b"), ("d", "e")]);
    }

    #[test]
    fn one_name_twice_is_not_an_overlap_between_capsules() {
        let a = InsideClaim::new("a", Path::new("/nonexistent-cg/x"));
        assert!(overlapping_insides(&[a.clone(), a]).is_empty());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }

    #[test]
    fn the_host_root_filesystem_has_a_consistent_identity() {
        // On ext4/tmpfs stat()'s device is the superblock's: the check must pass for /tmp.
        check_device_identity(Path::new("/tmp")).unwrap();
    }

    #[test]
    fn fanotify_marks_count_those_on_sealed_filesystems_and_unknown_mounts() {
        let devs: std::collections::BTreeSet<u32> = [0x0080_0001].into_iter().collect();
        let mounts: std::collections::HashMap<u64, u32> =
            [(0x1a, 0x0080_0001), (0x1b, 0x0000_0022)]
                .into_iter()
                .collect();
        let fdinfo = "pos:\t0\nflags:\t02\nfanotify flags:10 event-flags:0\n\
            fanotify ino:1c sdev:800001 mflags:0 mask:10000 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:1c00000000000000\n\
            fanotify ino:5 sdev:22 mflags:0 mask:20 ignored_mask:0\n\
            fanotify mnt_id:1a mflags:0 mask:10000 ignored_mask:0\n\
            fanotify mnt_id:1b mflags:0 mask:10000 ignored_mask:0\n\
            fanotify mnt_id:99 mflags:0 mask:20 ignored_mask:0\n\
            fanotify sdev:800001 mflags:0 mask:40000 ignored_mask:0\n";
        // The inode and filesystem marks on 8:1, the mount of 8:1, the unknown mount.
        assert_eq!(fanotify_marks_in(fdinfo, &devs, &mounts), 4);
        assert_eq!(
            fanotify_marks_in("fanotify flags:10 event-flags:0\n", &devs, &mounts),
            0
        );
    }
}
