//! Walks a capsule tree through directory descriptors and hashes it on all cores.
//!
//! Every entry is reached with `openat`/`statx` relative to its parent's descriptor and
//! never through a symlink. A file is hashed through the descriptor that was opened for it
//! and that same descriptor is checked against the entry's stat, before and after reading:
//! what was hashed is what was recorded. A file that changes or vanishes meanwhile is
//! walked again once; a second change is an error naming it. Other filesystems mounted
//! inside the tree are recorded as mount points and not descended.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::glob::GlobSet;
use crate::manifest::{
    Entry, EntryKind, PackedTree, Packer, Tree, Xattr, FLAG_LINKS_OUTSIDE, FLAG_UNREADABLE,
};
use crate::sys::{self, Stat, XattrSource};

/// Files at least this large are hashed with BLAKE3's multithreaded mode.
const LARGE_FILE: u64 = 1 << 20;
const SMALL_BUF: usize = 64 << 10;
const LARGE_BUF: usize = 8 << 20;

#[derive(Clone, Debug, Default)]
pub struct WalkOptions {
    pub excludes: GlobSet,
    /// Record unreadable entries as such instead of failing.
    pub skip_unreadable: bool,
    /// Read no file's content (no hash): the identities and metadata only, which is all
    /// enforcement needs, and which no file planted huge or endless can stall.
    pub identities_only: bool,
}

/// Counters a caller may watch from another thread to show progress.
#[derive(Debug, Default)]
pub struct Progress {
    pub entries: AtomicU64,
    pub bytes: AtomicU64,
}

/// The walked tree and what the caller should tell the user about it.
#[derive(Debug)]
pub struct WalkReport {
    pub root: PathBuf,
    pub tree: Tree,
    pub mount_points: Vec<Box<[u8]>>,
    pub unreadable: Vec<Box<[u8]>>,
}

/// [`WalkReport`] with the tree kept packed (about half the memory; see [`PackedTree`]).
#[derive(Debug)]
pub struct PackedWalkReport {
    pub root: PathBuf,
    pub tree: PackedTree,
    pub mount_points: Vec<Box<[u8]>>,
    pub unreadable: Vec<Box<[u8]>>,
}

impl PackedWalkReport {
    /// The report with its tree decoded into [`Entry`] values.
    pub fn into_report(self) -> WalkReport {
        WalkReport {
            root: self.root,
            tree: self.tree.into_tree(),
            mount_points: self.mount_points,
            unreadable: self.unreadable,
        }
    }
}

/// Resolves a user-given root to the absolute path that is stored: the parent directory is
/// canonicalized, the last component is kept as given so that a symlinked root is refused.
pub fn resolve_root(root: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(root).map_err(|e| Error::io(root, "resolve", e))?;
    let meta = match std::fs::symlink_metadata(&abs) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::RootMissing { path: abs })
        }
        Err(e) => return Err(Error::io(abs, "examine", e)),
    };
    if meta.file_type().is_symlink() {
        return Err(Error::RootIsSymlink { path: abs });
    }
    if !meta.is_dir() {
        return Err(Error::RootNotDirectory { path: abs });
    }
    let name = match abs.file_name() {
        Some(n) if n != ".." => n.to_owned(),
        // `/`, or a path ending in `..`: canonicalize the whole path.
        _ => return std::fs::canonicalize(&abs).map_err(|e| Error::io(abs, "resolve", e)),
    };
    let parent = abs.parent().unwrap_or(Path::new("/"));
    let parent = std::fs::canonicalize(parent).map_err(|e| Error::io(parent, "resolve", e))?;
    Ok(parent.join(name))
}

/// Walks and hashes the tree at `root` (see [`resolve_root`]).
pub fn walk(root: &Path, opts: &WalkOptions, progress: &Progress) -> Result<WalkReport> {
    walk_packed(root, opts, progress).map(PackedWalkReport::into_report)
}

/// [`walk`], keeping the tree packed.
pub fn walk_packed(
    root: &Path,
    opts: &WalkOptions,
    progress: &Progress,
) -> Result<PackedWalkReport> {
    let root = resolve_root(root)?;
    sys::raise_fd_limit();
    let croot = CString::new(root.as_os_str().as_bytes())
        .map_err(|_| Error::RootNotDirectory { path: root.clone() })?;
    let fd = sys::open_dir_path(&croot).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => Error::RootIsSymlink { path: root.clone() },
        Some(libc::ENOTDIR) => Error::RootNotDirectory { path: root.clone() },
        Some(libc::ENOENT) => Error::RootMissing { path: root.clone() },
        _ => Error::io(root.clone(), "open the capsule root", e),
    })?;
    let st = sys::stat_fd(fd.as_fd()).map_err(|e| Error::io(root.clone(), "stat", e))?;
    // One packer per thread of the pool, and one for any other thread.
    let packers = (0..=rayon::current_num_threads())
        .map(|_| Mutex::new(Packer::default()))
        .collect();
    let walker = Walker {
        root: &root,
        opts,
        progress,
        packers,
    };
    let root_entry = walker
        .dir_entry(&fd, b"", &st)
        .map_err(|e| e.into_error(&walker, b""))?;
    let descend = !root_entry.entry.is_unreadable();
    walker.keep(root_entry);
    if descend {
        walker.children(&fd, b"", st.dev)?;
    }
    let packers = walker
        .packers
        .into_iter()
        .map(|p| p.into_inner().unwrap_or_else(PoisonError::into_inner))
        .collect();
    Ok(finish(root, opts, packers))
}

/// One walked entry with the local facts needed to finish the tree.
struct Walked {
    entry: Entry,
    nlink: u32,
}

enum WalkErr {
    /// The entry changed under us: walk it again once.
    Changed(String),
    Unreadable(io::Error),
    Fatal(Error),
}

impl WalkErr {
    fn into_error(self, w: &Walker<'_>, rel: &[u8]) -> Error {
        match self {
            WalkErr::Changed(what) => Error::ChangedWhileHashing {
                path: w.abs(rel),
                what,
            },
            WalkErr::Unreadable(source) => Error::Unreadable {
                path: w.abs(rel),
                source,
            },
            WalkErr::Fatal(e) => e,
        }
    }
}

struct Walker<'a> {
    root: &'a Path,
    opts: &'a WalkOptions,
    progress: &'a Progress,
    /// Where walked entries are kept, indexed by rayon thread.
    packers: Vec<Mutex<Packer>>,
}

pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        p.extend_from_slice(parent);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

pub(crate) fn kind_of(st: &Stat) -> EntryKind {
    match st.file_type() {
        libc::S_IFDIR => EntryKind::Dir,
        libc::S_IFREG => EntryKind::File,
        libc::S_IFLNK => EntryKind::Symlink,
        libc::S_IFIFO => EntryKind::Fifo,
        libc::S_IFSOCK => EntryKind::Socket,
        libc::S_IFCHR => EntryKind::CharDevice,
        _ => EntryKind::BlockDevice,
    }
}

pub(crate) fn is_access_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

pub(crate) fn vanished(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)
    )
}

pub(crate) fn base_entry(rel: &[u8], kind: EntryKind, st: &Stat) -> Entry {
    Entry {
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        dev: st.dev,
        ino: st.ino,
        ..Entry::bare(rel, kind)
    }
}

pub(crate) fn collect_xattrs(src: &XattrSource<'_>) -> io::Result<Box<[Xattr]>> {
    Ok(sys::xattrs(src)?
        .into_iter()
        .map(|(name, value)| Xattr {
            name: name.into(),
            value_hash: *blake3::hash(&value).as_bytes(),
        })
        .collect())
}

/// Whether two stats of the same inode describe unchanged content.
fn same_content(a: &Stat, b: &Stat) -> Option<String> {
    if (a.dev, a.ino) != (b.dev, b.ino) {
        Some("it was replaced by another file".into())
    } else if a.file_type() != b.file_type() {
        Some("its type changed".into())
    } else if a.size != b.size {
        Some(format!("its size changed from {} to {}", a.size, b.size))
    } else if a.mtime != b.mtime || a.ctime != b.ctime {
        Some("it was modified".into())
    } else {
        None
    }
}

impl Walker<'_> {
    fn abs(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(std::ffi::OsStr::from_bytes(rel))
        }
    }

    fn counted(&self, entry: Entry, nlink: u32) -> Walked {
        self.progress.entries.fetch_add(1, Ordering::Relaxed);
        Walked { entry, nlink }
    }

    /// Adds a walked entry to the tree.
    fn keep(&self, w: Walked) {
        let last = self.packers.len() - 1;
        let slot = rayon::current_thread_index().map_or(last, |i| i.min(last));
        self.packers[slot]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(&w.entry, w.nlink);
    }

    /// Walks the entries below the directory `fd` (which is at `rel`, on device `dev`).
    fn children(&self, fd: &OwnedFd, rel: &[u8], dev: u64) -> Result<()> {
        let names = sys::read_dir_names(fd.as_fd()).map_err(|e| {
            if is_access_error(&e) {
                Error::Unreadable {
                    path: self.abs(rel),
                    source: e,
                }
            } else {
                Error::io(self.abs(rel), "read the directory", e)
            }
        })?;
        // Every child is walked; the first error in directory order is the one reported.
        let parts: Vec<Result<()>> = names
            .into_par_iter()
            .map(|name| self.child(fd, rel, dev, &name))
            .collect();
        parts.into_iter().collect()
    }

    /// One child and, for a directory, everything below it; walked again once if it changed.
    fn child(&self, parent: &OwnedFd, parent_rel: &[u8], dev: u64, name: &CStr) -> Result<()> {
        let rel = join(parent_rel, name.to_bytes());
        if self.opts.excludes.matches(&rel) {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.child_once(parent.as_fd(), &rel, dev, name) {
                Ok(Some((entry, fd))) => {
                    self.keep(entry);
                    if let Some((fd, st)) = fd {
                        self.children(&fd, &rel, st.dev)?;
                    }
                    return Ok(());
                }
                Ok(None) => return Ok(()),
                Err(WalkErr::Changed(_)) if attempt == 1 => continue,
                Err(WalkErr::Unreadable(e)) if self.opts.skip_unreadable => {
                    return self.unreadable_entry(parent.as_fd(), &rel, name, e);
                }
                Err(e) => return Err(e.into_error(self, &rel)),
            }
        }
    }

    fn unreadable_entry(
        &self,
        parent: BorrowedFd<'_>,
        rel: &[u8],
        name: &CStr,
        cause: io::Error,
    ) -> Result<()> {
        let st = sys::stat_at(parent, name).map_err(|_| Error::Unreadable {
            path: self.abs(rel),
            source: cause,
        })?;
        let mut entry = base_entry(rel, kind_of(&st), &st);
        entry.flags |= FLAG_UNREADABLE;
        if entry.kind == EntryKind::File {
            entry.size = st.size;
        }
        self.keep(self.counted(entry, st.nlink));
        Ok(())
    }

    /// Walks one entry. For a directory also returns its descriptor for the recursion.
    /// `Ok(None)`: the entry vanished on the second look and is no longer in the tree.
    #[allow(clippy::type_complexity)]
    fn child_once(
        &self,
        parent: BorrowedFd<'_>,
        rel: &[u8],
        parent_dev: u64,
        name: &CStr,
    ) -> Result<Option<(Walked, Option<(OwnedFd, Stat)>)>, WalkErr> {
        let st = match sys::stat_at(parent, name) {
            Ok(st) => st,
            Err(e) if vanished(&e) => return Err(WalkErr::Changed("it vanished".into())),
            Err(e) if is_access_error(&e) => return Err(WalkErr::Unreadable(e)),
            Err(e) => return Err(WalkErr::Fatal(Error::io(self.abs(rel), "stat", e))),
        };
        let kind = kind_of(&st);
        match kind {
            EntryKind::Dir if st.mount_root || st.dev != parent_dev => {
                let entry = base_entry(rel, EntryKind::MountPoint, &st);
                Ok(Some((self.counted(entry, st.nlink), None)))
            }
            EntryKind::Dir => {
                let fd = sys::open_dir_at(parent, name).map_err(|e| self.open_error(rel, e))?;
                let fst = sys::stat_fd(fd.as_fd())
                    .map_err(|e| WalkErr::Fatal(Error::io(self.abs(rel), "stat", e)))?;
                if (fst.dev, fst.ino) != (st.dev, st.ino) {
                    return Err(WalkErr::Changed(
                        "it was replaced while being opened".into(),
                    ));
                }
                // Listing needs search permission too: a directory that can be opened but
                // not searched (r without x) is unreadable, not a fatal error.
                if let Err(e) = sys::stat_at(fd.as_fd(), c".") {
                    if is_access_error(&e) {
                        return Err(WalkErr::Unreadable(e));
                    }
                }
                let entry = self.dir_entry(&fd, rel, &fst)?;
                let descend = !entry.entry.is_unreadable();
                Ok(Some((entry, descend.then_some((fd, fst)))))
            }
            EntryKind::File => {
                let fd = sys::open_file_at(parent, name).map_err(|e| self.open_error(rel, e))?;
                let walked = self.file_entry(&fd, rel, &st)?;
                Ok(Some((walked, None)))
            }
            EntryKind::Symlink => {
                let target = match sys::read_link_at(parent, name) {
                    Ok(t) => t,
                    Err(e) if vanished(&e) || e.raw_os_error() == Some(libc::EINVAL) => {
                        return Err(WalkErr::Changed("it vanished".into()))
                    }
                    Err(e) => {
                        return Err(WalkErr::Fatal(Error::io(
                            self.abs(rel),
                            "read the symlink",
                            e,
                        )))
                    }
                };
                let after = sys::stat_at(parent, name)
                    .map_err(|_| WalkErr::Changed("it vanished".into()))?;
                if let Some(what) = same_content(&st, &after) {
                    return Err(WalkErr::Changed(what));
                }
                let mut entry = base_entry(rel, kind, &st);
                entry.size = target.len() as u64;
                entry.target = Some(target.into());
                entry.xattrs = self.entry_xattrs(&XattrSource::Entry(parent, name), rel)?;
                Ok(Some((self.counted(entry, st.nlink), None)))
            }
            _ => {
                // Fifos, sockets and device nodes are described, never opened.
                let mut entry = base_entry(rel, kind, &st);
                if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
                    entry.rdev = Some(st.rdev);
                }
                entry.xattrs = self.entry_xattrs(&XattrSource::Entry(parent, name), rel)?;
                Ok(Some((self.counted(entry, st.nlink), None)))
            }
        }
    }

    fn open_error(&self, rel: &[u8], e: io::Error) -> WalkErr {
        if vanished(&e) {
            WalkErr::Changed("it vanished or was replaced while being opened".into())
        } else if is_access_error(&e) {
            WalkErr::Unreadable(e)
        } else {
            WalkErr::Fatal(Error::io(self.abs(rel), "open", e))
        }
    }

    fn entry_xattrs(&self, src: &XattrSource<'_>, rel: &[u8]) -> Result<Box<[Xattr]>, WalkErr> {
        collect_xattrs(src).map_err(|e| {
            if vanished(&e) {
                WalkErr::Changed("it vanished".into())
            } else if is_access_error(&e) {
                WalkErr::Unreadable(e)
            } else {
                WalkErr::Fatal(Error::io(self.abs(rel), "read extended attributes", e))
            }
        })
    }

    fn dir_entry(&self, fd: &OwnedFd, rel: &[u8], st: &Stat) -> Result<Walked, WalkErr> {
        let mut entry = base_entry(rel, EntryKind::Dir, st);
        entry.xattrs = self.entry_xattrs(&XattrSource::Fd(fd.as_fd()), rel)?;
        Ok(self.counted(entry, st.nlink))
    }

    fn file_entry(&self, fd: &OwnedFd, rel: &[u8], st: &Stat) -> Result<Walked, WalkErr> {
        let fatal = |op, e| WalkErr::Fatal(Error::io(self.abs(rel), op, e));
        let before = sys::stat_fd(fd.as_fd()).map_err(|e| fatal("stat", e))?;
        if let Some(what) = same_content(st, &before) {
            return Err(WalkErr::Changed(what));
        }
        if self.opts.identities_only {
            let mut entry = base_entry(rel, EntryKind::File, &before);
            entry.size = before.size;
            entry.xattrs = self.entry_xattrs(&XattrSource::Fd(fd.as_fd()), rel)?;
            return Ok(self.counted(entry, before.nlink));
        }
        let (hash, read) = self.hash_fd(fd.as_fd(), before.size).map_err(|e| {
            if is_access_error(&e) {
                WalkErr::Unreadable(e)
            } else {
                fatal("read", e)
            }
        })?;
        let after = sys::stat_fd(fd.as_fd()).map_err(|e| fatal("stat", e))?;
        if let Some(what) = same_content(&before, &after) {
            return Err(WalkErr::Changed(what));
        }
        if read != before.size {
            return Err(WalkErr::Changed(format!(
                "{read} bytes were read where its size said {}",
                before.size
            )));
        }
        let mut entry = base_entry(rel, EntryKind::File, &before);
        entry.size = before.size;
        entry.hash = Some(hash);
        entry.xattrs = self.entry_xattrs(&XattrSource::Fd(fd.as_fd()), rel)?;
        Ok(self.counted(entry, before.nlink))
    }

    fn hash_fd(&self, fd: BorrowedFd<'_>, size: u64) -> io::Result<([u8; 32], u64)> {
        let mut hasher = blake3::Hasher::new();
        let large = size >= LARGE_FILE;
        let mut buf = vec![0u8; if large { LARGE_BUF } else { SMALL_BUF }];
        let mut total = 0u64;
        loop {
            // Fill the buffer fully so that the multithreaded hasher gets big chunks.
            let mut filled = 0;
            while filled < buf.len() {
                let n = sys::read(fd, &mut buf[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            if large {
                hasher.update_rayon(&buf[..filled]);
            } else {
                hasher.update(&buf[..filled]);
            }
            total += filled as u64;
            self.progress
                .bytes
                .fetch_add(filled as u64, Ordering::Relaxed);
            if filled < buf.len() {
                break;
            }
        }
        Ok((*hasher.finalize().as_bytes(), total))
    }
}

/// Sorts the entries, computes hard-link groups and returns the report.
fn finish(root: PathBuf, opts: &WalkOptions, packers: Vec<Packer>) -> PackedWalkReport {
    let mut tree = PackedTree::new(opts.excludes.patterns(), packers);
    // Group non-directories by inode; entries are visited in path order, so the first
    // member of each group is its leader.
    let mut groups: HashMap<(u64, u64), Vec<u32>> = HashMap::new();
    for i in 0..tree.len() {
        if tree.nlink(i) > 1 && !matches!(tree.kind(i), EntryKind::Dir | EntryKind::MountPoint) {
            groups.entry(tree.identity(i)).or_default().push(i as u32);
        }
    }
    let mut links = Vec::new();
    for members in groups.values() {
        let leader = members[0];
        let nlink = tree.nlink(leader as usize) as usize;
        for &i in members {
            if members.len() > 1 {
                links.push((i, leader));
            }
            if nlink > members.len() {
                tree.add_flags(i as usize, FLAG_LINKS_OUTSIDE);
            }
        }
    }
    tree.set_links(links);
    let mut mount_points = Vec::new();
    let mut unreadable = Vec::new();
    for i in 0..tree.len() {
        if tree.kind(i) == EntryKind::MountPoint {
            mount_points.push(tree.path(i).into());
        }
        if tree.flags(i) & FLAG_UNREADABLE != 0 {
            unreadable.push(tree.path(i).into());
        }
    }
    PackedWalkReport {
        root,
        tree,
        mount_points,
        unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Manifest, ManifestBytes, PackedManifest};

    #[test]
    fn packed_walk_is_the_walk() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("t");
        for i in 0..40 {
            let dir = root.join(format!("d{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            for j in 0..25 {
                std::fs::write(dir.join(format!("f{j}")), format!("{i}/{j}")).unwrap();
            }
        }
        std::fs::hard_link(root.join("d1/f1"), root.join("d2/link")).unwrap();
        std::fs::hard_link(root.join("d1/f1"), root.join("link-top")).unwrap();
        std::fs::hard_link(root.join("d3/f3"), d.path().join("outside")).unwrap();
        std::os::unix::fs::symlink("d1/f1", root.join("sym")).unwrap();
        let opts = WalkOptions {
            excludes: GlobSet::new(&["d3/f2"]).unwrap(),
            skip_unreadable: false,
            identities_only: false,
        };
        // In a pool of its own, and from a thread outside any pool.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let packed = pool
            .install(|| walk_packed(&root, &opts, &Progress::default()))
            .unwrap();
        let progress = Progress::default();
        let whole = walk(&root, &opts, &progress).unwrap();
        assert_eq!(
            progress.entries.load(Ordering::Relaxed) as usize,
            packed.tree.len()
        );
        assert_eq!(packed.tree.len(), 1 + 40 + 40 * 25 - 1 + 2 + 1);
        let tree = &whole.tree;
        let leader = tree.find(b"d1/f1").unwrap();
        assert_eq!(leader.link_leader.as_deref(), Some(&b"d1/f1"[..]));
        assert_eq!(
            tree.find(b"link-top").unwrap().link_leader.as_deref(),
            Some(&b"d1/f1"[..])
        );
        assert!(tree.find(b"d3/f3").unwrap().links_outside());
        assert!(tree.find(b"d3/f2").is_none());

        let m = Manifest {
            name: "t".into(),
            root: whole.root.clone(),
            registered_at: 3,
            tree: whole.tree,
        };
        let pm = PackedManifest {
            name: "t".into(),
            root: packed.root,
            registered_at: 3,
            tree: packed.tree,
        };
        assert_eq!(pm.encode_file(), m.encode_file());
        let recorded = ManifestBytes::parse(m.encode_file().0).unwrap();
        assert_eq!(crate::diff::diff_packed(&recorded, &pm.tree), Ok(vec![]));
        std::fs::remove_file(root.join("d1/f1")).unwrap();
        std::fs::write(root.join("new"), "n").unwrap();
        let after = walk_packed(&root, &opts, &Progress::default()).unwrap();
        let drift = crate::diff::diff_packed(&recorded, &after.tree).unwrap();
        let mut m2 = m.clone();
        m2.tree = walk(&root, &opts, &Progress::default()).unwrap().tree;
        assert_eq!(drift, crate::diff::diff(&m.tree, &m2.tree));
        assert_eq!(drift.len(), 4, "{drift:?}");
        assert_eq!(pm.into_manifest(), m);
    }
}
