//! A capsule's own root: the calling thread enters a mount namespace of its own whose root
//! is the capsule's sealed tree, with a fresh `/proc`, a minimal `/dev`, a private `/tmp` and,
//! where asked, other sealed trees read-only; the host's root is gone from it. What the
//! command then runs comes from sealed trees only (and the guard's exec rule refuses the
//! rest).
//!
//! Every mount is made private first, so nothing made here reaches another namespace (the
//! guard allows a capsule's processes such mounts over sealed trees only on that condition).
//! `enter` changes the calling thread's mount namespace, root and working directory: call it
//! on the thread that then executes the command, with nothing else to do on the host.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

/// What [`enter`] builds.
#[derive(Clone, Debug)]
pub struct OwnRoot {
    /// The capsule's sealed tree: the new root.
    pub tree: PathBuf,
    /// Other sealed trees, each mounted read-only at a directory of the tree (an absolute
    /// path inside the new root).
    pub with: Vec<(PathBuf, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("{path}: {why}")]
    Unfit { path: PathBuf, why: String },
    #[error("cannot {what} ({path}): {source}")]
    Step {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// The directories of the tree that [`enter`] mounts over.
pub const MOUNTED: &[&str] = &["proc", "dev", "tmp"];

/// The device nodes of the minimal `/dev`: name, major, minor.
const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Checks that `root` can be entered (the tree has the directories mounted over, each `with`
/// target exists in it as a directory), changing nothing. [`enter`] checks again.
pub fn check(root: &OwnRoot) -> Result<(), JailError> {
    let dir = |path: PathBuf, why: &str| -> Result<(), JailError> {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(JailError::Unfit {
                path,
                why: format!("not a directory ({why})"),
            }),
            Err(e) => Err(JailError::Unfit {
                path,
                why: format!("{e} ({why})"),
            }),
        }
    };
    dir(root.tree.clone(), "the capsule's tree")?;
    for d in MOUNTED {
        dir(
            root.tree.join(d),
            "its own root needs an empty directory to mount over: make it in the tree before it is sealed",
        )?;
    }
    for (other, at) in &root.with {
        dir(other.clone(), "a sealed tree to mount read-only")?;
        if !at.is_absolute()
            || at
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(JailError::Unfit {
                path: at.clone(),
                why: "not an absolute path without `..` inside the capsule's root".into(),
            });
        }
        dir(
            inside(&root.tree, at),
            "a directory of the tree to mount another sealed tree over",
        )?;
    }
    Ok(())
}

/// Enters `root` (see the module's documentation). On error the thread may be left in its
/// new mount namespace, half built: the caller gives up (it execs nothing).
pub fn enter(root: &OwnRoot) -> Result<(), JailError> {
    check(root)?;
    let step = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| JailError::Step { what, path, source }
    };
    let tree = &root.tree;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(step("enter a mount namespace of its own", tree))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(step("make every mount private", Path::new("/")))?;
    // The new root must be a mount point: the tree bound over itself (alone: what other
    // filesystems are mounted inside it are not part of it).
    mount(
        Some(tree.as_path()),
        tree.as_path(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(step("bind the tree over itself", tree))?;
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let proc_dir = tree.join("proc");
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        nosuid | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(step("mount a fresh /proc", &proc_dir))?;
    let dev = tree.join("dev");
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=755,size=1m"),
    )
    .map_err(step("mount a tmpfs on /dev", &dev))?;
    for (name, major, minor) in DEVICES {
        let node = dev.join(name);
        mknod(
            &node,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(*major, *minor),
        )
        .map_err(step("make a device node", &node))?;
        // mknod's mode is cut by the umask.
        nix::sys::stat::fchmodat(
            None,
            &node,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(step("set a device node's mode", &node))?;
    }
    let pts = dev.join("pts");
    let shm = dev.join("shm");
    for d in [&pts, &shm] {
        nix::unistd::mkdir(d.as_path(), Mode::from_bits_truncate(0o755))
            .map_err(step("make a directory", d))?;
    }
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )
    .map_err(step("mount a devpts instance of its own", &pts))?;
    mount(
        Some("tmpfs"),
        &shm,
        Some("tmpfs"),
        nosuid,
        Some("mode=1777"),
    )
    .map_err(step("mount a tmpfs on /dev/shm", &shm))?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let at = dev.join(link);
        nix::unistd::symlinkat(target, None, &at).map_err(step("make a link in /dev", &at))?;
    }
    let tmp = tree.join("tmp");
    mount(
        Some("tmpfs"),
        &tmp,
        Some("tmpfs"),
        nosuid,
        Some("mode=1777"),
    )
    .map_err(step("mount a private /tmp", &tmp))?;
    for (other, at) in &root.with {
        let target = inside(tree, at);
        mount(
            Some(other.as_path()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(step("bind another sealed tree", &target))?;
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | nosuid,
            None::<&str>,
        )
        .map_err(step("make that tree read-only", &target))?;
    }
    nix::unistd::chdir(tree.as_path()).map_err(step("enter the tree", tree))?;
    // The old root is stacked under the new one, then detached: nothing of the host's root
    // stays reachable.
    nix::unistd::pivot_root(".", ".").map_err(step("make the tree the root", tree))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(step("detach the host's root", Path::new("/")))?;
    nix::unistd::chdir("/").map_err(step("enter the new root", Path::new("/")))?;
    Ok(())
}

/// `at` (absolute, inside the new root) as a path under `tree`.
fn inside(tree: &Path, at: &Path) -> PathBuf {
    tree.join(at.strip_prefix("/").unwrap_or(at))
}
