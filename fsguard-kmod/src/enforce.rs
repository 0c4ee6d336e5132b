//! From a sealed capsule to kernel state: which inodes to protect (with which flags), who is
//! inside, and the checks that make sure the kernel's view of identity matches ours.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
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
}

/// What the kernel needs for one capsule.
#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub inside: Option<Inside>,
    /// The capsule's cgroup directory, whose present processes are made members.
    pub cgroup: Option<PathBuf>,
    pub inodes: Vec<Protected>,
    /// Per inode: it has hard links outside the tree, so another capsule may hold it too.
    pub maybe_shared: Vec<bool>,
    pub frozen: usize,
}

/// Builds the plan from a fresh walk of the sealed tree (its live identities) and the seal.
pub fn plan(tree: &Tree, root: &Path, seal: &SealRecord) -> Result<Plan, PlanError> {
    check_device_identity(root)?;
    let rules = FrozenRules::new(GlobSet::new(&seal.frozen)?);
    let marks = rules.mark(&tree.entries);
    let mut inodes = Vec::with_capacity(tree.entries.len());
    let mut maybe_shared = Vec::with_capacity(tree.entries.len());
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
        maybe_shared.push(e.links_outside());
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
    Ok(Plan {
        name: seal.name.clone(),
        inside,
        cgroup: seal.cgroup.clone(),
        inodes,
        maybe_shared,
        frozen,
    })
}

/// Hands a plan to the guard; returns the capsule's slot.
pub fn apply(guard: &mut Guard, plan: &Plan) -> crate::Result<u32> {
    let slot = guard.ensure_capsule(&plan.name, plan.inside)?;
    guard.protect(slot, &plan.inodes, &plan.maybe_shared)?;
    if let Some(cgroup) = &plan.cgroup {
        remember_members(cgroup)?;
    }
    Ok(slot)
}

/// Has the kernel remember every thread now in `cgroup`'s subtree as a member of its capsule,
/// so that moving one out later (which no LSM hook sees) does not make it an outsider. The
/// guard records membership whenever a thread's scheduling policy is read; threads created
/// from now on inherit it at fork.
pub fn remember_members(cgroup: &Path) -> crate::Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| crate::Error::Cgroup { path, source }
    };
    let mut dirs = vec![cgroup.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let threads = dir.join("cgroup.threads");
        let text = std::fs::read_to_string(&threads).map_err(io(&threads))?;
        for tid in text
            .lines()
            .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
        {
            // SAFETY: sched_getscheduler only reads the policy of thread `tid`; a thread that
            // has exited meanwhile gives ESRCH, which is fine (it needs no membership).
            unsafe { libc::sched_getscheduler(tid) };
        }
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            if entry.file_type().map_err(io(&entry.path()))?.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
