//! Watching sealed trees for changes where the kernel cannot enforce (detection only).
//!
//! Every directory and every non-symlink entry of each tree gets an inotify watch of its
//! own (through the notify crate, one path at a time): directory watches see names come
//! and go, entry watches see what reaches an inode by another path (a hard link made from
//! outside the tree, a write through one). Symlinks are never followed and other
//! filesystems mounted inside a tree are not descended, as in the walk. A watch that cannot
//! be added because of the inotify limit is an error: a tree is never watched in part.
//!
//! Each event is reported at once as a [`Report::Change`]. Once a path has been quiet for
//! [`DEBOUNCE`] (or [`MAX_DELAY`] after its first event), it is examined the way the walk
//! would record it and compared with its manifest entry with [`diff::diff`], so the drift
//! classes are those of `sealtool verify`. Hard-link groups are kept in an inode index so
//! that an entry's links are judged as a whole walk would judge them.

use crate::walk::{base_entry, collect_xattrs, is_access_error, join, kind_of, vanished};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::diff::{self, Drift};
use crate::error::{Error, Result};
use crate::glob::GlobSet;
use crate::manifest::{Entry, EntryKind, Manifest, Tree, FLAG_LINKS_OUTSIDE, FLAG_UNREADABLE};
use crate::sys::{self, Stat, XattrSource};

/// How long a path must be quiet before it is examined: a write comes as several events.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// A path that never goes quiet is examined this long after its first event anyway.
pub const MAX_DELAY: Duration = Duration::from_millis(400);

/// A capsule to watch: its name and the manifest its tree is compared with.
pub struct Target {
    pub name: String,
    pub manifest: Manifest,
}

/// What happened to a path, as inotify tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Create,
    /// The data changed.
    Modify,
    /// Mode, owner, extended attributes, times or link count changed.
    Metadata,
    Remove,
    RenameFrom,
    RenameTo,
    Rename,
    Other,
}

impl ChangeKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Modify => "modify",
            Self::Metadata => "metadata",
            Self::Remove => "remove",
            Self::RenameFrom => "rename-from",
            Self::RenameTo => "rename-to",
            Self::Rename => "rename",
            Self::Other => "other",
        }
    }

    /// Whether the path may now name another inode (or none), so that what lies below it
    /// must be examined too.
    fn structural(self) -> bool {
        !matches!(self, Self::Modify | Self::Metadata)
    }
}

/// One thing to tell the user. `rel` is the path in the manifest (empty for the root),
/// `path` the same path on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// An event, reported as it arrives (bursts of the same kind on a path are one change).
    Change {
        capsule: String,
        path: PathBuf,
        rel: Box<[u8]>,
        kind: ChangeKind,
    },
    /// A changed path differs from the manifest, in one class of `sealtool verify`.
    Drift {
        capsule: String,
        path: PathBuf,
        drift: Drift,
    },
    /// A changed path matches the manifest; `back` when drift was reported for it before.
    Clean {
        capsule: String,
        path: PathBuf,
        rel: Box<[u8]>,
        back: bool,
    },
    /// A changed path could not be examined.
    Unverified {
        capsule: String,
        path: PathBuf,
        rel: Box<[u8]>,
        reason: String,
    },
    /// The capsule root vanished or was replaced: the capsule is no longer watched.
    RootGone {
        capsule: String,
        root: PathBuf,
        reason: String,
    },
    /// The kernel dropped events (queue overflow): the whole tree is examined again.
    Rescan { capsule: String },
}

/// An identity of an inode: (device, inode number).
type Id = (u64, u64);

/// Entries found below a directory, with the identity of those that are not directories.
type Found = Vec<(Box<[u8]>, Option<Id>)>;

/// Events seen on one path since it was last examined.
struct Pending {
    first: Instant,
    last: Instant,
    kinds: HashSet<ChangeKind>,
    structural: bool,
}

struct Capsule {
    name: String,
    root: PathBuf,
    root_id: Id,
    tree: Tree,
    excludes: GlobSet,
    /// Identity of every non-directory entry as last seen, and the reverse: which entries
    /// share an inode (hard-link groups).
    ids: HashMap<Box<[u8]>, Id>,
    groups: HashMap<Id, BTreeSet<Box<[u8]>>>,
    /// Paths whose drift was reported and that have not matched the manifest since.
    drifted: HashSet<Box<[u8]>>,
    pending: BTreeMap<Box<[u8]>, Pending>,
    alive: bool,
    watches: usize,
}

/// What a path holds now.
enum Look {
    Absent,
    /// It changed while being read, twice: look again later.
    Changing,
    Present {
        entry: Entry,
        nlink: u32,
    },
}

/// The watches of a set of capsules and what is known of their trees.
pub struct Watch {
    watcher: RecommendedWatcher,
    events: mpsc::Receiver<notify::Result<notify::Event>>,
    capsules: Vec<Capsule>,
}

/// A capsule as it is being watched, for the banner.
pub struct Watched<'a> {
    pub name: &'a str,
    pub root: &'a Path,
    /// inotify watches held for it.
    pub watches: usize,
}

impl Watch {
    /// Watches every directory and non-symlink entry of each target's tree, then returns.
    /// Fails when any part of a tree cannot be watched.
    pub fn start(targets: Vec<Target>) -> Result<Watch> {
        let (tx, events) = mpsc::channel();
        let watcher = RecommendedWatcher::new(tx, notify::Config::default()).map_err(|e| {
            Error::WatchStart {
                reason: e.to_string(),
            }
        })?;
        let mut w = Watch {
            watcher,
            events,
            capsules: Vec::new(),
        };
        for t in targets {
            let root = t.manifest.root.clone();
            let root_id =
                root_identity(&root).ok_or_else(|| Error::RootMissing { path: root.clone() })?;
            let excludes = GlobSet::new(&t.manifest.tree.excludes)?;
            w.capsules.push(Capsule {
                name: t.name,
                root,
                root_id,
                tree: t.manifest.tree,
                excludes,
                ids: HashMap::new(),
                groups: HashMap::new(),
                drifted: HashSet::new(),
                pending: BTreeMap::new(),
                alive: true,
                watches: 0,
            });
            let ci = w.capsules.len() - 1;
            for (rel, id) in w.scan(ci, b"")? {
                if let Some(id) = id {
                    w.capsules[ci].index(&rel, Some(id));
                }
            }
        }
        Ok(w)
    }

    /// The capsules still watched.
    pub fn watched(&self) -> impl Iterator<Item = Watched<'_>> {
        self.capsules.iter().filter(|c| c.alive).map(|c| Watched {
            name: &c.name,
            root: &c.root,
            watches: c.watches,
        })
    }

    /// Whether nothing is left to watch (every root is gone).
    pub fn is_empty(&self) -> bool {
        self.capsules.iter().all(|c| !c.alive)
    }

    /// Waits up to `timeout` for events; returns the changes seen and the verdicts on the
    /// paths that have gone quiet.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<Report>> {
        let mut out = Vec::new();
        let now = Instant::now();
        let wait = self.next_due().map_or(timeout, |due| {
            due.saturating_duration_since(now).min(timeout)
        });
        match self.events.recv_timeout(wait) {
            Ok(ev) => {
                self.take(ev, &mut out)?;
                while let Ok(ev) = self.events.try_recv() {
                    self.take(ev, &mut out)?;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::WatchStart {
                    reason: "the inotify event loop stopped".into(),
                })
            }
        }
        let now = Instant::now();
        for ci in 0..self.capsules.len() {
            let c = &mut self.capsules[ci];
            if !c.alive {
                continue;
            }
            let due: Vec<Box<[u8]>> = c
                .pending
                .iter()
                .filter(|(_, p)| {
                    now.duration_since(p.last) >= DEBOUNCE
                        || now.duration_since(p.first) >= MAX_DELAY
                })
                .map(|(rel, _)| rel.clone())
                .collect();
            if due.is_empty() {
                continue;
            }
            let batch: BTreeMap<Box<[u8]>, bool> = due
                .into_iter()
                .filter_map(|rel| c.pending.remove(&rel).map(|p| (rel, p.structural)))
                .collect();
            self.verify(ci, batch, &mut out)?;
        }
        Ok(out)
    }

    fn next_due(&self) -> Option<Instant> {
        self.capsules
            .iter()
            .filter(|c| c.alive)
            .flat_map(|c| c.pending.values())
            .map(|p| (p.last + DEBOUNCE).min(p.first + MAX_DELAY))
            .min()
    }

    /// Records one notify event: a change report now, a pending examination later.
    fn take(&mut self, ev: notify::Result<notify::Event>, out: &mut Vec<Report>) -> Result<()> {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                let path = e.paths.first().cloned().unwrap_or_default();
                let capsule = self
                    .capsules
                    .iter()
                    .find(|c| path.starts_with(&c.root))
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                return Err(watch_error(&capsule, &path, e));
            }
        };
        let now = Instant::now();
        if ev.need_rescan() {
            for c in self.capsules.iter_mut().filter(|c| c.alive) {
                out.push(Report::Rescan {
                    capsule: c.name.clone(),
                });
                c.note(b"", None, now);
            }
            return Ok(());
        }
        // None: no change of its own to show, but a reason to look (a write ended).
        let kind = match ev.kind {
            EventKind::Create(_) => Some(ChangeKind::Create),
            EventKind::Remove(_) => Some(ChangeKind::Remove),
            EventKind::Modify(ModifyKind::Data(_)) => Some(ChangeKind::Modify),
            EventKind::Modify(ModifyKind::Metadata(_)) => Some(ChangeKind::Metadata),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) => Some(ChangeKind::RenameFrom),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Some(ChangeKind::RenameTo),
            // Both halves were reported already.
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => return Ok(()),
            EventKind::Modify(ModifyKind::Name(_)) => Some(ChangeKind::Rename),
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => None,
            EventKind::Access(_) => return Ok(()),
            _ => Some(ChangeKind::Other),
        };
        for path in &ev.paths {
            for c in self.capsules.iter_mut().filter(|c| c.alive) {
                let Ok(rel) = path.strip_prefix(&c.root) else {
                    continue;
                };
                let rel = rel.as_os_str().as_bytes();
                if c.excluded(rel) {
                    continue;
                }
                if c.note(rel, kind, now) {
                    if let Some(kind) = kind {
                        out.push(Report::Change {
                            capsule: c.name.clone(),
                            path: path.clone(),
                            rel: rel.into(),
                            kind,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds a watch on `rel` of capsule `ci`. A path that vanished first is not an error:
    /// its parent's watch reports that.
    fn add_watch(&mut self, ci: usize, rel: &[u8]) -> Result<()> {
        let c = &mut self.capsules[ci];
        let path = c.abs(rel);
        match self.watcher.watch(&path, RecursiveMode::NonRecursive) {
            Ok(()) => {
                c.watches += 1;
                Ok(())
            }
            Err(e) if notify_vanished(&e) => Ok(()),
            Err(e) => Err(watch_error(&c.name, &path, e)),
        }
    }

    /// Watches the directory `rel` and everything below it, directory first so that
    /// nothing created while it is listed goes unseen. Returns the entries below it, with
    /// the identity of those that are not directories.
    fn scan(&mut self, ci: usize, rel: &[u8]) -> Result<Found> {
        let c = &self.capsules[ci];
        let opened = if rel.is_empty() {
            open_root(&c.root).map(|(fd, st)| (fd, st.dev))
        } else {
            match descend(&c.root, rel) {
                Ok(Some((parent, dev, name))) => match sys::stat_at(parent.as_fd(), &name) {
                    Ok(st)
                        if st.file_type() == libc::S_IFDIR && !st.mount_root && st.dev == dev =>
                    {
                        sys::open_dir_at(parent.as_fd(), &name)
                            .ok()
                            .map(|fd| (fd, st.dev))
                    }
                    _ => None,
                },
                _ => None,
            }
        };
        let mut found = Vec::new();
        if let Some((fd, dev)) = opened {
            self.add_watch(ci, rel)?;
            self.scan_dir(ci, &fd, rel, dev, &mut found)?;
        }
        Ok(found)
    }

    fn scan_dir(
        &mut self,
        ci: usize,
        fd: &OwnedFd,
        rel: &[u8],
        dev: u64,
        found: &mut Found,
    ) -> Result<()> {
        // An unreadable directory is recorded as such by the walk and not descended.
        let Ok(names) = sys::read_dir_names(fd.as_fd()) else {
            return Ok(());
        };
        for name in names {
            let child = join(rel, name.to_bytes());
            if self.capsules[ci].excluded(&child) {
                continue;
            }
            let Ok(st) = sys::stat_at(fd.as_fd(), &name) else {
                continue; // vanished: the directory's watch reports it
            };
            match st.file_type() {
                libc::S_IFDIR if st.mount_root || st.dev != dev => {
                    found.push((child.into(), None));
                }
                libc::S_IFDIR => {
                    self.add_watch(ci, &child)?;
                    let sub = sys::open_dir_at(fd.as_fd(), &name);
                    found.push((child.clone().into(), None));
                    if let Ok(sub) = sub {
                        self.scan_dir(ci, &sub, &child, st.dev, found)?;
                    }
                }
                libc::S_IFLNK => found.push((child.into(), Some((st.dev, st.ino)))),
                _ => {
                    self.add_watch(ci, &child)?;
                    found.push((child.into(), Some((st.dev, st.ino))));
                }
            }
        }
        Ok(())
    }

    /// Examines the paths of `batch` (true: a structural change, look below it too) and
    /// reports how each compares with the manifest.
    fn verify(
        &mut self,
        ci: usize,
        batch: BTreeMap<Box<[u8]>, bool>,
        out: &mut Vec<Report>,
    ) -> Result<()> {
        let now = Instant::now();
        {
            let c = &mut self.capsules[ci];
            let gone = match root_identity(&c.root) {
                None => Some("it no longer exists or is no longer a directory"),
                Some(id) if id != c.root_id => Some("it was replaced by another directory"),
                Some(_) => None,
            };
            if let Some(reason) = gone {
                c.alive = false;
                c.pending.clear();
                out.push(Report::RootGone {
                    capsule: c.name.clone(),
                    root: c.root.clone(),
                    reason: reason.into(),
                });
                let root = c.root.clone();
                let _ = self.watcher.unwatch(&root);
                return Ok(());
            }
        }
        let direct: BTreeSet<Box<[u8]>> = batch.keys().cloned().collect();
        let mut todo = direct.clone();
        let mut watched: HashSet<Box<[u8]>> = HashSet::new();
        for (rel, structural) in &batch {
            if !structural {
                continue;
            }
            // What the manifest holds below it, and what the disk holds now.
            let c = &self.capsules[ci];
            let below = c.tree.entries.iter().filter(|e| is_below(&e.path, rel));
            todo.extend(below.map(|e| e.path.clone()));
            for (p, _) in self.scan(ci, rel)? {
                watched.insert(p.clone());
                todo.insert(p);
            }
            if rel.is_empty() {
                watched.insert(Box::new([]));
            }
        }
        let mut looks: BTreeMap<Box<[u8]>, Look> = BTreeMap::new();
        let mut unverified = Vec::new();
        let mut round = todo;
        // Examine, then the rest of each hard-link group met (old and new), once.
        while !round.is_empty() {
            let mut next = BTreeSet::new();
            for rel in round {
                let c = &mut self.capsules[ci];
                let look = match examine(&c.root, &rel) {
                    Ok(look) => look,
                    Err(e) => {
                        unverified.push((rel.clone(), e.to_string()));
                        continue;
                    }
                };
                let id = match &look {
                    Look::Present { entry, .. } if !is_dir_like(entry.kind) => {
                        Some((entry.dev, entry.ino))
                    }
                    _ => None,
                };
                if !matches!(look, Look::Changing) {
                    for other in c.index(&rel, id) {
                        if !looks.contains_key(&other) {
                            next.insert(other);
                        }
                    }
                }
                looks.insert(rel, look);
            }
            next.retain(|p| !looks.contains_key(p));
            round = next;
        }
        let c = &mut self.capsules[ci];
        for (rel, reason) in unverified {
            out.push(Report::Unverified {
                capsule: c.name.clone(),
                path: c.abs(&rel),
                rel,
                reason,
            });
        }
        let mut rearm = Vec::new();
        for (rel, look) in looks {
            let new = match look {
                Look::Changing => {
                    c.note(&rel, None, now);
                    continue;
                }
                Look::Absent => None,
                Look::Present { mut entry, nlink } => {
                    c.link_info(&mut entry, nlink);
                    if !watched.contains(&rel)
                        && !matches!(entry.kind, EntryKind::Symlink | EntryKind::MountPoint)
                    {
                        rearm.push(rel.clone());
                    }
                    Some(entry)
                }
            };
            let drifts = match (c.tree.find(&rel), new) {
                (None, None) => Vec::new(),
                (old, new) => {
                    let one = |e: Option<Entry>| Tree {
                        excludes: Vec::new(),
                        entries: e.into_iter().collect(),
                    };
                    diff::diff(&one(old.cloned()), &one(new))
                }
            };
            let path = c.abs(&rel);
            if drifts.is_empty() {
                let back = c.drifted.remove(&rel);
                if back || direct.contains(&rel) {
                    out.push(Report::Clean {
                        capsule: c.name.clone(),
                        path,
                        rel,
                        back,
                    });
                }
            } else {
                c.drifted.insert(rel);
                for drift in drifts {
                    out.push(Report::Drift {
                        capsule: c.name.clone(),
                        path: path.clone(),
                        drift,
                    });
                }
            }
        }
        // An inode watch shared by hard links goes when one of its names does: watch the
        // entries examined again (a no-op for those still watched).
        for rel in rearm {
            self.add_watch(ci, &rel)?;
        }
        Ok(())
    }
}

impl Capsule {
    fn abs(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(OsStr::from_bytes(rel))
        }
    }

    /// Whether `rel` or a directory above it is excluded (the walk does not record it).
    fn excluded(&self, rel: &[u8]) -> bool {
        if rel.is_empty() || self.excludes.is_empty() {
            return false;
        }
        rel.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .any(|(i, _)| self.excludes.matches(&rel[..i]))
            || self.excludes.matches(rel)
    }

    /// Notes an event on `rel`; true when it is news (not yet seen since the last look).
    fn note(&mut self, rel: &[u8], kind: Option<ChangeKind>, now: Instant) -> bool {
        let p = self.pending.entry(rel.into()).or_insert_with(|| Pending {
            first: now,
            last: now,
            kinds: HashSet::new(),
            structural: false,
        });
        p.last = now;
        // A rescan (no kind, empty path) looks at the whole tree.
        p.structural |= kind.map_or(rel.is_empty(), ChangeKind::structural);
        kind.is_some_and(|k| p.kinds.insert(k))
    }

    /// Records that `rel` is now the inode `id` (None: a directory, or nothing). Returns
    /// the other members of its old and new hard-link groups.
    fn index(&mut self, rel: &[u8], id: Option<Id>) -> Vec<Box<[u8]>> {
        let mut others = Vec::new();
        if let Some(old) = self.ids.remove(rel) {
            if let Some(g) = self.groups.get_mut(&old) {
                g.remove(rel);
                others.extend(g.iter().cloned());
                if g.is_empty() {
                    self.groups.remove(&old);
                }
            }
        }
        if let Some(id) = id {
            self.ids.insert(rel.into(), id);
            let g = self.groups.entry(id).or_default();
            others.extend(g.iter().cloned());
            g.insert(rel.into());
        }
        others
    }

    /// Fills in an entry's hard-link fields from the index, as the walk computes them.
    fn link_info(&self, entry: &mut Entry, nlink: u32) {
        if nlink <= 1 || is_dir_like(entry.kind) {
            return;
        }
        let Some(members) = self.groups.get(&(entry.dev, entry.ino)) else {
            return;
        };
        if members.len() > 1 {
            entry.link_leader = members.first().cloned();
        }
        if nlink as usize > members.len() {
            entry.flags |= FLAG_LINKS_OUTSIDE;
        }
    }
}

fn is_dir_like(kind: EntryKind) -> bool {
    matches!(kind, EntryKind::Dir | EntryKind::MountPoint)
}

fn is_below(path: &[u8], dir: &[u8]) -> bool {
    if dir.is_empty() {
        return !path.is_empty();
    }
    path.len() > dir.len() + 1 && path.starts_with(dir) && path[dir.len()] == b'/'
}

fn notify_vanished(e: &notify::Error) -> bool {
    match &e.kind {
        notify::ErrorKind::PathNotFound => true,
        notify::ErrorKind::Io(io) => vanished(io),
        _ => false,
    }
}

fn watch_error(capsule: &str, path: &Path, e: notify::Error) -> Error {
    if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
        let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Error::WatchLimit {
            capsule: capsule.to_string(),
            path: path.to_path_buf(),
            limit,
        }
    } else {
        Error::Watch {
            capsule: capsule.to_string(),
            path: path.to_path_buf(),
            reason: match e.kind {
                notify::ErrorKind::Io(io) => io.to_string(),
                other => format!("{other:?}"),
            },
        }
    }
}

fn open_root(root: &Path) -> Option<(OwnedFd, Stat)> {
    let croot = CString::new(root.as_os_str().as_bytes()).ok()?;
    let fd = sys::open_dir_path(&croot).ok()?;
    let st = sys::stat_fd(fd.as_fd()).ok()?;
    Some((fd, st))
}

fn root_identity(root: &Path) -> Option<Id> {
    open_root(root).map(|(_, st)| (st.dev, st.ino))
}

/// Opens the directory holding `rel` (not empty) the way the walk reaches it: from the
/// root, never through a symlink, not into another filesystem. None when the walk would
/// not reach it.
fn descend(root: &Path, rel: &[u8]) -> io::Result<Option<(OwnedFd, u64, CString)>> {
    let Some((mut fd, st)) = open_root(root) else {
        return Ok(None);
    };
    let mut dev = st.dev;
    let mut parts: Vec<&[u8]> = rel.split(|b| *b == b'/').collect();
    let Some(last) = parts.pop() else {
        return Ok(None);
    };
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL));
    for part in parts {
        let name = cstr(part)?;
        let st = match sys::stat_at(fd.as_fd(), &name) {
            Ok(st) => st,
            Err(e) if vanished(&e) || is_access_error(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        if st.file_type() != libc::S_IFDIR || st.mount_root || st.dev != dev {
            return Ok(None);
        }
        fd = match sys::open_dir_at(fd.as_fd(), &name) {
            Ok(fd) => fd,
            Err(e) if vanished(&e) || is_access_error(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        dev = st.dev;
    }
    Ok(Some((fd, dev, cstr(last)?)))
}

/// Why one look at an entry failed.
enum Fail {
    Changed,
    Unreadable,
    Fatal(io::Error),
}

fn fail(e: io::Error) -> Fail {
    if vanished(&e) {
        Fail::Changed
    } else if is_access_error(&e) {
        Fail::Unreadable
    } else {
        Fail::Fatal(e)
    }
}

/// What `rel` holds now, as the walk (with unreadable entries recorded as such) would
/// record it, hard-link fields aside (see [`Capsule::link_info`]).
fn examine(root: &Path, rel: &[u8]) -> io::Result<Look> {
    if rel.is_empty() {
        let Some((fd, st)) = open_root(root) else {
            return Ok(Look::Absent);
        };
        let mut entry = base_entry(rel, EntryKind::Dir, &st);
        entry.xattrs = match collect_xattrs(&XattrSource::Fd(fd.as_fd())) {
            Ok(x) => x,
            Err(e) if is_access_error(&e) => {
                entry.flags |= FLAG_UNREADABLE;
                Box::new([])
            }
            Err(e) => return Err(e),
        };
        return Ok(Look::Present {
            entry,
            nlink: st.nlink,
        });
    }
    let Some((parent, dev, name)) = descend(root, rel)? else {
        return Ok(Look::Absent);
    };
    for _ in 0..2 {
        match look_once(parent.as_fd(), dev, rel, &name) {
            Ok(look) => return Ok(look),
            Err(Fail::Changed) => continue,
            Err(Fail::Unreadable) => {
                let st = match sys::stat_at(parent.as_fd(), &name) {
                    Ok(st) => st,
                    Err(e) if vanished(&e) => return Ok(Look::Absent),
                    Err(e) => return Err(e),
                };
                let mut entry = base_entry(rel, kind_of(&st), &st);
                entry.flags |= FLAG_UNREADABLE;
                if entry.kind == EntryKind::File {
                    entry.size = st.size;
                }
                return Ok(Look::Present {
                    entry,
                    nlink: st.nlink,
                });
            }
            Err(Fail::Fatal(e)) => return Err(e),
        }
    }
    Ok(Look::Changing)
}

fn look_once(
    parent: BorrowedFd<'_>,
    parent_dev: u64,
    rel: &[u8],
    name: &CString,
) -> Result<Look, Fail> {
    let st = match sys::stat_at(parent, name) {
        Ok(st) => st,
        Err(e) if vanished(&e) => return Ok(Look::Absent),
        Err(e) => return Err(fail(e)),
    };
    let kind = kind_of(&st);
    let (entry, nlink) = match kind {
        EntryKind::Dir if st.mount_root || st.dev != parent_dev => {
            (base_entry(rel, EntryKind::MountPoint, &st), st.nlink)
        }
        EntryKind::Dir => {
            let fd = sys::open_dir_at(parent, name).map_err(fail)?;
            let fst = sys::stat_fd(fd.as_fd()).map_err(Fail::Fatal)?;
            if (fst.dev, fst.ino) != (st.dev, st.ino) {
                return Err(Fail::Changed);
            }
            if let Err(e) = sys::stat_at(fd.as_fd(), c".") {
                if is_access_error(&e) {
                    return Err(Fail::Unreadable);
                }
            }
            let mut entry = base_entry(rel, EntryKind::Dir, &fst);
            entry.xattrs = collect_xattrs(&XattrSource::Fd(fd.as_fd())).map_err(fail)?;
            (entry, fst.nlink)
        }
        EntryKind::File => {
            let fd = sys::open_file_at(parent, name).map_err(fail)?;
            let before = sys::stat_fd(fd.as_fd()).map_err(Fail::Fatal)?;
            if changed(&st, &before) {
                return Err(Fail::Changed);
            }
            let (hash, read) = hash_fd(fd.as_fd()).map_err(|e| {
                if is_access_error(&e) {
                    Fail::Unreadable
                } else {
                    Fail::Fatal(e)
                }
            })?;
            let after = sys::stat_fd(fd.as_fd()).map_err(Fail::Fatal)?;
            if changed(&before, &after) || read != before.size {
                return Err(Fail::Changed);
            }
            let mut entry = base_entry(rel, EntryKind::File, &before);
            entry.size = before.size;
            entry.hash = Some(hash);
            entry.xattrs = collect_xattrs(&XattrSource::Fd(fd.as_fd())).map_err(fail)?;
            (entry, before.nlink)
        }
        EntryKind::Symlink => {
            let target = match sys::read_link_at(parent, name) {
                Ok(t) => t,
                Err(e) if vanished(&e) || e.raw_os_error() == Some(libc::EINVAL) => {
                    return Err(Fail::Changed)
                }
                Err(e) => return Err(Fail::Fatal(e)),
            };
            let after = sys::stat_at(parent, name).map_err(|_| Fail::Changed)?;
            if changed(&st, &after) {
                return Err(Fail::Changed);
            }
            let mut entry = base_entry(rel, kind, &st);
            entry.size = target.len() as u64;
            entry.target = Some(target.into());
            entry.xattrs = collect_xattrs(&XattrSource::Entry(parent, name)).map_err(fail)?;
            (entry, st.nlink)
        }
        _ => {
            // Fifos, sockets and device nodes are described, never opened.
            let mut entry = base_entry(rel, kind, &st);
            if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
                entry.rdev = Some(st.rdev);
            }
            entry.xattrs = collect_xattrs(&XattrSource::Entry(parent, name)).map_err(fail)?;
            (entry, st.nlink)
        }
    };
    Ok(Look::Present { entry, nlink })
}

/// Whether two stats of the same entry may describe different content.
fn changed(a: &Stat, b: &Stat) -> bool {
    (a.dev, a.ino) != (b.dev, b.ino)
        || a.file_type() != b.file_type()
        || a.size != b.size
        || a.mtime != b.mtime
        || a.ctime != b.ctime
}

fn hash_fd(fd: BorrowedFd<'_>) -> io::Result<([u8; 32], u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = sys::read(fd, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((*hasher.finalize().as_bytes(), total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::{walk, Progress, WalkOptions};

    /// A tree with every kind the walk records (as far as an unprivileged run can make).
    fn build(root: &Path) {
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        std::fs::write(root.join("d/e/f"), "deep").unwrap();
        std::fs::write(root.join("a"), "a").unwrap();
        std::fs::write(root.join("big"), vec![7u8; 300_000]).unwrap();
        std::fs::hard_link(root.join("a"), root.join("d/a-link")).unwrap();
        std::fs::hard_link(root.join("d/e/f"), root.join("../outside")).unwrap();
        std::os::unix::fs::symlink("d/e", root.join("sym")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs-sym")).unwrap();
        nix::unistd::mkfifo(
            &root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .unwrap();
        std::fs::write(root.join("skip.o"), "excluded").unwrap();
    }

    /// Every entry examined alone, with hard-link fields from the index, is the entry the
    /// walk records: the watch classifies drift exactly as `verify` does.
    #[test]
    fn examine_is_the_walk() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("t");
        build(&root);
        let opts = WalkOptions {
            excludes: GlobSet::new(&["*.o"]).unwrap(),
            skip_unreadable: true,
            identities_only: false,
        };
        let walked = walk(&root, &opts, &Progress::default()).unwrap().tree;
        let mut c = capsule("t", &root, walked.clone());
        let mut looked = Vec::new();
        for e in &walked.entries {
            match examine(&root, &e.path).unwrap() {
                Look::Present { entry, nlink } => {
                    if !is_dir_like(entry.kind) {
                        c.index(&entry.path, Some((entry.dev, entry.ino)));
                    }
                    looked.push((entry, nlink));
                }
                _ => panic!("{:?} not found", e.path),
            }
        }
        let examined: Vec<Entry> = looked
            .into_iter()
            .map(|(mut e, n)| {
                c.link_info(&mut e, n);
                e
            })
            .collect();
        assert_eq!(examined, walked.entries);
        assert!(walked.find(b"d/a-link").unwrap().link_leader.is_some());
        assert!(walked.find(b"d/e/f").unwrap().links_outside());
        assert!(matches!(examine(&root, b"missing").unwrap(), Look::Absent));
        // Not reached through a symlink, as the walk never is.
        assert!(matches!(examine(&root, b"sym/f").unwrap(), Look::Absent));
        assert!(matches!(
            examine(&root, b"abs-sym/passwd").unwrap(),
            Look::Absent
        ));
    }

    fn capsule(name: &str, root: &Path, tree: Tree) -> Capsule {
        Capsule {
            name: name.into(),
            root: root.to_path_buf(),
            root_id: root_identity(root).unwrap(),
            excludes: GlobSet::new(&tree.excludes).unwrap(),
            tree,
            ids: HashMap::new(),
            groups: HashMap::new(),
            drifted: HashSet::new(),
            pending: BTreeMap::new(),
            alive: true,
            watches: 0,
        }
    }

    #[test]
    fn excluded_below_an_excluded_directory() {
        let d = tempfile::tempdir().unwrap();
        let mut c = capsule("t", d.path(), Tree::default());
        c.excludes = GlobSet::new(&["var/cache", "*.o"]).unwrap();
        assert!(c.excluded(b"var/cache"));
        assert!(c.excluded(b"var/cache/x/y"));
        assert!(c.excluded(b"a/b.o"));
        assert!(!c.excluded(b"var/cached"));
        assert!(!c.excluded(b""));
        assert!(is_below(b"a/b", b"a") && !is_below(b"ab", b"a") && !is_below(b"a", b"a"));
        assert!(is_below(b"a", b"") && !is_below(b"", b""));
    }

    fn drain(w: &mut Watch, until: impl Fn(&Report) -> bool) -> Vec<Report> {
        let start = Instant::now();
        let mut all = Vec::new();
        while start.elapsed() < Duration::from_secs(2) {
            let got = w.poll(Duration::from_millis(50)).unwrap();
            let done = got.iter().any(&until);
            all.extend(got);
            if done {
                return all;
            }
        }
        panic!("not reported within 2s: {all:#?}");
    }

    /// The library end to end: a rename inside the tree is a removal and an addition, a
    /// rename back is the sealed state again, and a watch limit is an error naming the path.
    #[test]
    fn rename_and_back() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("t");
        build(&root);
        let opts = WalkOptions {
            excludes: GlobSet::new(&["*.o"]).unwrap(),
            skip_unreadable: true,
            identities_only: false,
        };
        let tree = walk(&root, &opts, &Progress::default()).unwrap().tree;
        let manifest = Manifest {
            name: "t".into(),
            root: root.clone(),
            registered_at: 0,
            tree,
        };
        let mut w = Watch::start(vec![Target {
            name: "t".into(),
            manifest,
        }])
        .unwrap();
        // Directories and non-symlink entries: ., d, d/e, d/e/f, a, big, d/a-link, fifo.
        assert_eq!(w.watched().next().unwrap().watches, 8);
        std::fs::rename(root.join("d"), root.join("moved")).unwrap();
        let got = drain(
            &mut w,
            |r| matches!(r, Report::Drift { drift, .. } if &*drift.path == b"moved/e/f"),
        );
        let has = |rel: &[u8], class: &str| {
            got.iter().any(|r| {
                matches!(r, Report::Drift { drift, .. }
                    if &*drift.path == rel && drift.kind.name() == class)
            })
        };
        for rel in [&b"d"[..], b"d/e", b"d/e/f", b"d/a-link"] {
            assert!(has(rel, "removed"), "{rel:?} {got:#?}");
        }
        for rel in [&b"moved"[..], b"moved/e", b"moved/e/f", b"moved/a-link"] {
            assert!(has(rel, "added"), "{rel:?} {got:#?}");
        }
        // `a` still leads its group (now with moved/a-link), as a walk would find it.
        assert!(
            !got.iter()
                .any(|r| matches!(r, Report::Drift { drift, .. } if &*drift.path == b"a")),
            "{got:#?}"
        );
        std::fs::rename(root.join("moved"), root.join("d")).unwrap();
        let got = drain(
            &mut w,
            |r| matches!(r, Report::Clean { rel, back: true, .. } if &**rel == b"d/e/f"),
        );
        assert!(got
            .iter()
            .any(|r| matches!(r, Report::Clean { rel, back: true, .. } if &**rel == b"d/a-link")));
        assert!(
            !got.iter().any(|r| matches!(r, Report::Drift { .. })),
            "{got:#?}"
        );
        // The moved-back directory is watched again under its name.
        std::fs::write(root.join("d/e/new"), "n").unwrap();
        drain(
            &mut w,
            |r| matches!(r, Report::Change { rel, kind: ChangeKind::Create, .. } if &**rel == b"d/e/new"),
        );
    }

    #[test]
    fn watch_limit_names_capsule_path_and_sysctl() {
        let e = watch_error(
            "app",
            Path::new("/jails/app/etc"),
            notify::Error::new(notify::ErrorKind::MaxFilesWatch),
        );
        let msg = e.to_string();
        assert!(matches!(e, Error::WatchLimit { .. }));
        for needle in ["\"app\"", "/jails/app/etc", "fs.inotify.max_user_watches"] {
            assert!(msg.contains(needle), "{msg}");
        }
    }
}
