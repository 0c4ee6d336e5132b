//! The registry: which capsules exist, where their roots are, and their manifests.
//!
//! Layout under the registry directory (default /var/lib/capsule):
//! - `manifests/<name>/<root digest>.manifest`: the source of truth, one file per tree ever
//!   registered under that name (kept: the history), written atomically (temporary file,
//!   fsync, rename, fsync of the directory). The newest one (registration times only grow),
//!   or the one a seal names, is the capsule's current manifest.
//! - `manifests/<name>/<root digest>.seal`: the seal, never removed.
//! - `db/`: a sled database indexing the capsules (name, root, digest, state, times); it can
//!   be recreated from the manifest files with [`Registry::rebuild`]. Where it and the files
//!   disagree, the capsule is damaged ([`Registry::survey`]).
//! - `lock`: one writer at a time (flock); a second writer gets [`Error::RegistryBusy`].
//!
//! Only writers create a registry; readers work on one that refuses writes (see [`readdb`]).
//! Every change is made to the files first and to the index second, and undone when the
//! second step fails, so that after a failure the two agree as before.

pub mod files;
pub mod readdb;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::codec::{Decoder, Encoder};
use crate::error::{Error, Result};
use crate::manifest::{Digest, Manifest, PackedManifest};
use crate::policy::SealRecord;
use readdb::{refuses_writes, DbHandle};

pub const DEFAULT_DIR: &str = "/var/lib/capsule";
pub const ENV_VAR: &str = "CAPSULE_REGISTRY";
const RECORD_VERSION: u8 = 1;
const READ_LOCK_WAIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapsuleState {
    Registered,
    Sealed,
}

impl CapsuleState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Sealed => "sealed",
        }
    }
}

/// What the database holds for one capsule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapsuleRecord {
    pub name: String,
    pub root: PathBuf,
    pub digest: Digest,
    pub state: CapsuleState,
    /// Seconds since the epoch of the registration whose manifest is current.
    pub registered_at: u64,
    pub entries: u64,
    pub bytes: u64,
}

impl CapsuleRecord {
    fn from_manifest(m: &Manifest, digest: Digest) -> Self {
        CapsuleRecord {
            name: m.name.clone(),
            root: m.root.clone(),
            digest,
            state: CapsuleState::Registered,
            registered_at: m.registered_at,
            entries: m.tree.entries.len() as u64,
            bytes: m.tree.total_bytes(),
        }
    }

    /// The index record bytes (version, then the fields).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u8(RECORD_VERSION);
        e.bytes(self.name.as_bytes());
        e.bytes(self.root.as_os_str().as_bytes());
        e.raw(&self.digest.0);
        e.u8(match self.state {
            CapsuleState::Registered => 0,
            CapsuleState::Sealed => 1,
        });
        e.u64(self.registered_at);
        e.u64(self.entries);
        e.u64(self.bytes);
        e.into_inner()
    }

    /// Reads what [`CapsuleRecord::encode`] wrote; refuses anything else.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        let mut d = Decoder::new(b);
        let v = d.u8("record version")?;
        if v != RECORD_VERSION {
            return Err(format!("record version {v} is not supported"));
        }
        let name = String::from_utf8(d.bytes("name")?.to_vec()).map_err(|_| "name is not UTF-8")?;
        let root = PathBuf::from(std::ffi::OsStr::from_bytes(d.bytes("root")?));
        let digest = Digest(d.array32("digest")?);
        let state = match d.u8("state")? {
            0 => CapsuleState::Registered,
            1 => CapsuleState::Sealed,
            s => return Err(format!("unknown state {s}")),
        };
        let rec = CapsuleRecord {
            name,
            root,
            digest,
            state,
            registered_at: d.u64("registration time")?,
            entries: d.u64("entry count")?,
            bytes: d.u64("byte count")?,
        };
        d.finish("the record")?;
        Ok(rec)
    }
}

/// Checks a capsule name: it becomes a directory name and appears in kernel messages.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| Error::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("a name has 1 to 64 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(bad("use only letters, digits, '.', '_' and '-'"));
    }
    if name.starts_with(['.', '-']) {
        return Err(bad("a name may not start with '.' or '-'"));
    }
    Ok(())
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one.
/// See [`write_atomic_with`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] with the content written by `write`. A new file is written unnamed
/// (O_TMPFILE), synced, and then given its name in one link, so that a failure or refusal at
/// any point leaves nothing behind, even in an append-only directory; a file replaced (or a
/// filesystem without O_TMPFILE) goes through a temporary file in the same directory, fsync,
/// rename. The directory is synced either way.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let write = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => match write_unnamed(dir, path, write)? {
            None => return sync_dir(dir),
            Some(write) => write,
        },
        _ => write,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, "create", e))?;
        write(&mut f).map_err(|e| Error::io(&tmp, "write", e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, "sync", e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| Error::io(path, "rename into place", e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes a new file at `path` through an unnamed file in `dir`. `Ok(Some(write))` (nothing
/// done) when the filesystem has no O_TMPFILE.
fn write_unnamed<W: FnOnce(&mut File) -> io::Result<()>>(
    dir: &Path,
    path: &Path,
    write: W,
) -> Result<Option<W>> {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o644)
        .open(dir);
    let mut f = match opened {
        Ok(f) => f,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
            ) =>
        {
            return Ok(Some(write))
        }
        Err(e) => return Err(Error::io(path, "create", e)),
    };
    write(&mut f).map_err(|e| Error::io(path, "write", e))?;
    f.sync_all().map_err(|e| Error::io(path, "sync", e))?;
    let c = |p: &[u8]| {
        std::ffi::CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    };
    let name_err = |e| Error::io(path, "give the new file its name", e);
    let target = c(path.as_os_str().as_bytes()).map_err(name_err)?;
    let by_proc = c(format!("/proc/self/fd/{}", f.as_raw_fd()).as_bytes()).map_err(name_err)?;
    // SAFETY: linkat with NUL-terminated paths that outlive the call; no memory is written.
    let mut rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            by_proc.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    let mut err = io::Error::last_os_error();
    if rc != 0 && err.raw_os_error() == Some(libc::ENOENT) {
        // No /proc: the same link by descriptor (needs CAP_DAC_READ_SEARCH).
        // SAFETY: as above, on a descriptor we own, with an empty NUL-terminated path.
        rc = unsafe {
            libc::linkat(
                f.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        };
        err = io::Error::last_os_error();
    }
    let linked = if rc == 0 { Ok(()) } else { Err(err) };
    linked.map_err(name_err)?;
    Ok(None)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "sync the directory", e))
}

/// Whether to fail at once when another process holds the registry (writers) or wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

struct Lock {
    file: File,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Forget our pid while still holding the lock, so that a later busy message never
        // names a process that has long finished.
        let _ = self.file.set_len(0);
    }
}

/// Takes the registry lock. A reader never creates the lock file: without one (no writer ever
/// ran) it goes on unlocked, and where the file can't be opened for writing it locks it
/// through a read-only descriptor (flock needs no write access).
fn lock(dir: &Path, access: Access) -> Result<Option<Lock>> {
    let wait = match access {
        Access::Write => Duration::ZERO,
        Access::Read => READ_LOCK_WAIT,
    };
    lock_with(dir, access, wait)
}

/// [`lock`], waiting up to `wait` for another holder.
fn lock_with(dir: &Path, access: Access, wait: Duration) -> Result<Option<Lock>> {
    let path = dir.join("lock");
    // Never through a symlink (root's lock must not be a file elsewhere, truncated below),
    // never blocking on a fifo planted in its place.
    let opened = crate::sys::open_regular(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(access == Access::Write)
            .truncate(false),
        &path,
    );
    let mut file = match opened {
        Ok(f) => f,
        Err(e) if access == Access::Read && e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if access == Access::Read && refuses_writes(&e) => {
            crate::sys::open_regular(OpenOptions::new().read(true), &path)
                .map_err(|e| Error::io(&path, "open the lock file", e))?
        }
        Err(e) => return Err(Error::io(&path, "open the lock file", e)),
    };
    match readdb::flock_waiting(&file, libc::LOCK_EX, wait) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EWOULDBLOCK) => {
            let mut holder = String::new();
            let _ = (&file).read_to_string(&mut holder);
            let holder = holder.trim().to_string();
            return Err(Error::RegistryBusy {
                path: dir.to_path_buf(),
                holder: if holder.is_empty() {
                    "unknown".into()
                } else {
                    holder
                },
            });
        }
        Err(err) => return Err(Error::io(&path, "lock", err)),
    }
    // Best effort: only used to name the holder in the busy message.
    let _ = file.set_len(0);
    let _ = file.write_all(std::process::id().to_string().as_bytes());
    Ok(Some(Lock { file }))
}

/// The sled tree of capsule records, keyed by name.
struct CapsuleTree {
    tree: sled::Tree,
    path: PathBuf,
}

impl CapsuleTree {
    fn db_err(&self, source: sled::Error) -> Error {
        Error::Database {
            path: self.path.clone(),
            source,
        }
    }
    fn get(&self, name: &str) -> Result<Option<CapsuleRecord>> {
        match self.tree.get(name.as_bytes()).map_err(|e| self.db_err(e))? {
            None => Ok(None),
            Some(v) => {
                CapsuleRecord::decode(&v)
                    .map(Some)
                    .map_err(|reason| Error::RegistryCorrupt {
                        path: self.path.clone(),
                        reason: format!("record of capsule {name:?}: {reason}"),
                    })
            }
        }
    }
    fn put(&self, rec: &CapsuleRecord) -> Result<()> {
        self.tree
            .insert(rec.name.as_bytes(), rec.encode())
            .map_err(|e| self.db_err(e))?;
        self.tree.flush().map_err(|e| self.db_err(e))?;
        Ok(())
    }
    fn delete(&self, name: &str) -> Result<()> {
        self.tree
            .remove(name.as_bytes())
            .map_err(|e| self.db_err(e))?;
        self.tree.flush().map_err(|e| self.db_err(e))?;
        Ok(())
    }
    /// Every record by its key, decoded or with the reason it can't be.
    fn each(&self) -> Result<Vec<(String, Result<CapsuleRecord, String>)>> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            let name = String::from_utf8_lossy(&k).into_owned();
            let rec = CapsuleRecord::decode(&v).and_then(|r| {
                if r.name == name {
                    Ok(r)
                } else {
                    Err(format!(
                        "the record under this name names capsule {:?}",
                        r.name
                    ))
                }
            });
            out.push((name, rec));
        }
        Ok(out)
    }
    fn all(&self) -> Result<Vec<CapsuleRecord>> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            let rec = CapsuleRecord::decode(&v).map_err(|reason| Error::RegistryCorrupt {
                path: self.path.clone(),
                reason: format!("record {:?}: {reason}", String::from_utf8_lossy(&k)),
            })?;
            out.push(rec);
        }
        Ok(out)
    }
}

/// An open registry. Holds the registry lock until dropped: keep it short-lived.
pub struct Registry {
    dir: PathBuf,
    /// None: the registry has no index database (opened for reading only).
    capsules: Option<CapsuleTree>,
    db: Option<DbHandle>,
    _lock: Option<Lock>,
}

/// One capsule as the index and its files show it together.
#[derive(Clone, Debug)]
pub struct Listed {
    pub name: String,
    /// The index record, when there is a readable one.
    pub record: Option<CapsuleRecord>,
    /// Why the index and the manifest and seal files disagree, when they do: the capsule is
    /// damaged, and nothing the index says about it is to be trusted.
    pub damage: Option<String>,
}

/// One manifest of a capsule's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub digest: Digest,
    pub registered_at: u64,
    pub root: PathBuf,
    /// The manifest the index names.
    pub current: bool,
    pub sealed: bool,
}

/// What [`Registry::rebuild`] found.
#[derive(Debug, Default)]
pub struct RebuildReport {
    pub recovered: Vec<CapsuleRecord>,
    /// Manifest files that could not be used, with the reason.
    pub damaged: Vec<(PathBuf, String)>,
    /// Where the previous database was moved, if there was one.
    pub old_db: Option<PathBuf>,
    /// Why the previous database's audit log could not be carried over (it stays in
    /// `old_db`), when it could not.
    pub audit_not_carried: Option<String>,
}

fn ensure_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::io(path, "create the directory", e))
}

/// How long to wait for sled's own file lock. Besides a handle this process is still closing
/// (sled releases its file from background threads after a `Db` is dropped), the audit
/// collector and `sealtool audit` hold it briefly while they append or read records, which
/// for a large log can take seconds.
const SLED_LOCK_WAIT: Duration = Duration::from_secs(30);

fn sled_lock_busy(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

fn open_db(path: &Path) -> Result<sled::Db> {
    open_db_waiting(path, SLED_LOCK_WAIT)
}

/// Opens the sled database at `path`, waiting up to `wait` for another process to close it.
pub fn open_db_waiting(path: &Path, wait: Duration) -> Result<sled::Db> {
    let start = Instant::now();
    let opened = loop {
        match readdb::sled_open(path) {
            Err(e) if sled_lock_busy(&e) && start.elapsed() < wait => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other,
        }
    };
    opened.map_err(|e| match e {
        sled::Error::Corruption { .. }
        | sled::Error::Unsupported(_)
        | sled::Error::ReportableBug(_) => Error::RegistryCorrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
        sled::Error::Io(io) => Error::io(path, "open the registry database", io),
        other => Error::Database {
            path: path.to_path_buf(),
            source: other,
        },
    })
}

impl Registry {
    /// The registry directory: `explicit`, else $CAPSULE_REGISTRY, else /var/lib/capsule.
    pub fn resolve_dir(explicit: Option<&Path>) -> PathBuf {
        match explicit {
            Some(p) => p.to_path_buf(),
            None => std::env::var_os(ENV_VAR)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR)),
        }
    }

    /// Opens the registry in `dir`. Writers create it; readers never create anything: a
    /// registry that does not exist is [`Error::RegistryMissing`], one without an index
    /// database reads as an empty index (every capsule with files is then damaged), and one
    /// that refuses writes is read through a copy of its index (see [`readdb`]).
    pub fn open(dir: &Path, access: Access) -> Result<Self> {
        if access == Access::Write {
            ensure_dir(dir)?;
            ensure_dir(&dir.join("manifests"))?;
        } else {
            match fs::metadata(dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Error::io(
                        dir,
                        "open the registry",
                        io::Error::from_raw_os_error(libc::ENOTDIR),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::RegistryMissing {
                        path: dir.to_path_buf(),
                    })
                }
                Err(e) => return Err(Error::io(dir, "open the registry", e)),
            }
        }
        let lock = lock(dir, access)?;
        let db_path = dir.join("db");
        let db = match access {
            Access::Write => Some(DbHandle::in_place(open_db(&db_path)?)),
            Access::Read if !db_path.exists() => None,
            Access::Read => Some(readdb::open_for_reading(&db_path, SLED_LOCK_WAIT, open_db)?),
        };
        let capsules = match &db {
            None => None,
            Some(h) => Some(CapsuleTree {
                tree: h.db().open_tree("capsules").map_err(|e| Error::Database {
                    path: db_path.clone(),
                    source: e,
                })?,
                path: db_path,
            }),
        };
        let reg = Registry {
            dir: dir.to_path_buf(),
            capsules,
            db,
            _lock: lock,
        };
        if access == Access::Write {
            reg.finish_removals();
        }
        Ok(reg)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the index was copied to and read from, when the registry refuses writes.
    pub fn index_copy(&self) -> Option<&Path> {
        self.db.as_ref().and_then(DbHandle::copied_to)
    }

    /// Whether the registry has an index database at all.
    pub fn has_index(&self) -> bool {
        self.capsules.is_some()
    }

    /// The index, for what writes it (writers always have one).
    fn index(&self) -> Result<&CapsuleTree> {
        self.capsules
            .as_ref()
            .ok_or_else(|| Error::RegistryCorrupt {
                path: self.dir.join("db"),
                reason: "the index database is missing".into(),
            })
    }

    pub fn get(&self, name: &str) -> Result<Option<CapsuleRecord>> {
        match &self.capsules {
            Some(c) => c.get(name),
            None => Ok(None),
        }
    }

    pub fn require(&self, name: &str) -> Result<CapsuleRecord> {
        self.get(name)?.ok_or_else(|| Error::UnknownCapsule {
            name: name.to_string(),
        })
    }

    pub fn list(&self) -> Result<Vec<CapsuleRecord>> {
        match &self.capsules {
            Some(c) => c.all(),
            None => Ok(Vec::new()),
        }
    }

    /// The files of capsule `name` (None: it has no manifest directory).
    fn files_of(&self, name: &str) -> Result<Option<files::CapsuleFiles>> {
        let dir = self.manifest_dir(name);
        files::read(&dir, name).map_err(|e| Error::io(&dir, "read", e))
    }

    /// Every capsule the index or the manifest files know of, sorted by name, each checked
    /// against the other: a capsule whose files exist without a readable index record, whose
    /// record has no files, or whose record names another manifest, root or state than the
    /// files do, is damaged ([`Listed::damage`]).
    pub fn survey(&self) -> Result<Vec<Listed>> {
        let mut index: std::collections::BTreeMap<String, Option<Result<CapsuleRecord, String>>> =
            Default::default();
        if let Some(c) = &self.capsules {
            for (name, rec) in c.each()? {
                index.insert(name, Some(rec));
            }
        }
        let manifests = self.dir.join("manifests");
        match fs::read_dir(&manifests) {
            Ok(entries) => {
                for e in entries {
                    let e = e.map_err(|e| Error::io(&manifests, "read", e))?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !name.starts_with('.') && e.path().is_dir() {
                        index.entry(name).or_insert(None);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&manifests, "read", e)),
        }
        let mut out = Vec::new();
        for (name, rec) in index {
            let listed = self.judged(name, rec)?;
            // A directory without a manifest (a first registration that stopped before its
            // manifest was written) holds no capsule.
            if listed.record.is_some() || listed.damage.is_some() {
                out.push(listed);
            }
        }
        Ok(out)
    }

    /// Capsule `name` as [`Registry::survey`] sees it; `None` when neither the index nor the
    /// files know it.
    pub fn inspect(&self, name: &str) -> Result<Option<Listed>> {
        let rec = match &self.capsules {
            None => None,
            Some(c) => c
                .tree
                .get(name.as_bytes())
                .map_err(|e| c.db_err(e))?
                .map(|v| CapsuleRecord::decode(&v)),
        };
        let listed = self.judged(name.to_string(), rec)?;
        let unknown = listed.record.is_none() && listed.damage.is_none();
        Ok((!unknown).then_some(listed))
    }

    fn judged(&self, name: String, rec: Option<Result<CapsuleRecord, String>>) -> Result<Listed> {
        let files = if validate_name(&name).is_ok() {
            self.files_of(&name)?
        } else {
            None
        };
        let (record, damage) = match rec {
            Some(Err(why)) => (
                None,
                Some(format!("its index record is undecodable: {why}")),
            ),
            Some(Ok(r)) => {
                let indexed = files::Indexed {
                    digest: &r.digest,
                    root: &r.root,
                    registered_at: r.registered_at,
                    sealed: r.state == CapsuleState::Sealed,
                };
                let damage = files::judge(Some(indexed), files.as_ref());
                (Some(r), damage)
            }
            None => (None, files::judge(None, files.as_ref())),
        };
        Ok(Listed {
            name,
            record,
            damage,
        })
    }

    /// The capsule's record, refused when the capsule is damaged (see [`Registry::survey`]).
    pub fn require_sound(&self, name: &str) -> Result<CapsuleRecord> {
        match self.inspect(name)? {
            None => Err(Error::UnknownCapsule {
                name: name.to_string(),
            }),
            Some(Listed {
                damage: Some(reason),
                ..
            }) => Err(Error::Damaged {
                name: name.to_string(),
                reason: format!("{reason}; run `sealtool registry rebuild`"),
            }),
            Some(Listed {
                record: Some(r), ..
            }) => Ok(r),
            Some(_) => Err(Error::UnknownCapsule {
                name: name.to_string(),
            }),
        }
    }

    /// Every manifest ever registered under `name`, newest first, the current one (the
    /// index's) marked. Read from the file headers.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryEntry>> {
        let current = self.get(name)?;
        let Some(files) = self.files_of(name)? else {
            return Ok(Vec::new());
        };
        let sealed: Vec<Digest> = files.seals.iter().map(|(_, s)| s.digest).collect();
        let mut out: Vec<HistoryEntry> = files
            .manifests
            .iter()
            .map(|(_, h)| HistoryEntry {
                digest: h.digest,
                registered_at: h.registered_at,
                root: h.root.clone(),
                current: current.as_ref().is_some_and(|r| r.digest == h.digest),
                sealed: sealed.contains(&h.digest),
            })
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse((e.registered_at, e.digest)));
        Ok(out)
    }

    fn manifest_dir(&self, name: &str) -> PathBuf {
        self.dir.join("manifests").join(name)
    }

    pub fn manifest_path(&self, name: &str, digest: &Digest) -> PathBuf {
        manifest_path_in(&self.dir, name, digest)
    }

    /// Reads and checks the manifest a record points at.
    pub fn load_manifest(&self, rec: &CapsuleRecord) -> Result<Manifest> {
        let path = self.manifest_path(&rec.name, &rec.digest);
        let (m, digest) = read_manifest_file(&path)?;
        if digest != rec.digest || m.name != rec.name {
            return Err(Error::ManifestCorrupt {
                path,
                reason: format!(
                    "it describes capsule {:?} with digest {digest}, the registry expects {:?} with {}",
                    m.name, rec.name, rec.digest
                ),
            });
        }
        Ok(m)
    }

    /// Stores a new registration: the manifest file first, then the record. The capsule's
    /// earlier manifests stay (its history). Registration times only grow: a registration
    /// within the second of the previous one (or with the clock set back) is dated one second
    /// after it, so the newest manifest file is always the current one. If the record can't
    /// be written, the manifest file is taken back (or the one it replaced restored): the
    /// index and the files agree as before.
    pub fn register(&self, manifest: &Manifest) -> Result<CapsuleRecord> {
        validate_name(&manifest.name)?;
        self.refuse_if_sealed(&manifest.name, "re-registering")?;
        let mut m = manifest.clone();
        m.registered_at = self.next_time(&m.name, m.registered_at)?;
        let (bytes, digest) = m.encode_file();
        let rec = CapsuleRecord::from_manifest(&m, digest);
        self.store(rec, |f| f.write_all(&bytes))
    }

    /// [`Registry::register`] for a walk kept packed: the manifest file is streamed to disk,
    /// never held in memory whole.
    pub fn register_packed(&self, manifest: &PackedManifest) -> Result<CapsuleRecord> {
        validate_name(&manifest.name)?;
        self.refuse_if_sealed(&manifest.name, "re-registering")?;
        let registered_at = self.next_time(&manifest.name, manifest.registered_at)?;
        let rec = CapsuleRecord {
            name: manifest.name.clone(),
            root: manifest.root.clone(),
            digest: manifest.digest(),
            state: CapsuleState::Registered,
            registered_at,
            entries: manifest.tree.len() as u64,
            bytes: manifest.tree.total_bytes(),
        };
        self.store(rec, |f| manifest.write_file_at(f, registered_at).map(drop))
    }

    /// The time a new registration of `name` asked for at `asked` is recorded with: later
    /// than every manifest of the capsule.
    fn next_time(&self, name: &str, asked: u64) -> Result<u64> {
        let newest = self.files_of(name)?.and_then(|f| f.newest_time());
        let indexed = self.get(name).ok().flatten().map(|r| r.registered_at);
        Ok(match newest.max(indexed) {
            Some(t) if t >= asked => t.saturating_add(1),
            _ => asked,
        })
    }

    /// Writes the manifest file of `rec` (content by `write`), then the record; undoes the
    /// file when the record can't be written.
    fn store(
        &self,
        rec: CapsuleRecord,
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<CapsuleRecord> {
        let index = self.index()?;
        let manifests = self.dir.join("manifests");
        let dir = self.manifest_dir(&rec.name);
        let created = !dir.exists();
        if created {
            fs::create_dir(&dir).map_err(|e| Error::io(&dir, "create the directory", e))?;
        }
        // Undoes what this registration did to the files.
        let undo_dir = || {
            if created {
                let _ = fs::remove_dir(&dir);
                let _ = sync_dir(&manifests);
            }
        };
        if created {
            sync_dir(&manifests).inspect_err(|_| undo_dir())?;
        }
        let path = self.manifest_path(&rec.name, &rec.digest);
        // The same tree registered again replaces its file (a new time or root): the old one
        // is kept under another name until the index names the new one.
        let backup = dir.join(format!(
            ".{}.manifest.previous-{}",
            rec.digest,
            std::process::id()
        ));
        let replaced = match fs::hard_link(&path, &backup) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                undo_dir();
                return Err(Error::io(&path, "keep the manifest being replaced", e));
            }
        };
        if let Err(e) = write_atomic_with(&path, write) {
            if replaced {
                let _ = fs::remove_file(&backup);
            }
            undo_dir();
            return Err(e);
        }
        if let Err(e) = index.put(&rec) {
            let _ = if replaced {
                fs::rename(&backup, &path)
            } else {
                fs::remove_file(&path)
            };
            let _ = sync_dir(&dir);
            undo_dir();
            return Err(e);
        }
        if replaced {
            let _ = fs::remove_file(&backup);
        }
        Ok(rec)
    }

    /// Whether a capsule is sealed, judged by the seal files on disk (the source of truth)
    /// as well as by the database, so that a stale or rebuilt database cannot unseal it.
    pub fn is_sealed(&self, name: &str) -> Result<bool> {
        if self
            .get(name)?
            .is_some_and(|r| r.state == CapsuleState::Sealed)
        {
            return Ok(true);
        }
        Self::has_seal_file(&self.dir, name)
    }

    /// Whether a seal file exists for `name` in the registry at `dir`, read without taking
    /// the registry lock: a quick early answer; the check under the lock is what counts.
    pub fn has_seal_file(dir: &Path, name: &str) -> Result<bool> {
        let dir = dir.join("manifests").join(name);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(dir, "read", e)),
        };
        for e in entries {
            let p = e.map_err(|e| Error::io(&dir, "read", e))?.path();
            if p.extension().and_then(|x| x.to_str()) == Some("seal") {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn refuse_if_sealed(&self, name: &str, action: &'static str) -> Result<()> {
        if self.is_sealed(name)? {
            return Err(Error::Sealed {
                name: name.to_string(),
                action,
            });
        }
        Ok(())
    }

    pub fn seal_path(&self, name: &str, digest: &Digest) -> PathBuf {
        self.manifest_dir(name).join(format!("{digest}.seal"))
    }

    /// Seals a registered capsule: the seal file (durable, never removed) first, then the
    /// record's state. Refused when already sealed.
    pub fn seal(&self, seal: &SealRecord) -> Result<CapsuleRecord> {
        let mut rec = self.require(&seal.name)?;
        self.refuse_if_sealed(&seal.name, "sealing again")?;
        if rec.digest != seal.digest {
            return Err(Error::CannotSeal {
                name: seal.name.clone(),
                reason: format!(
                    "the seal names digest {}, the registered manifest is {}",
                    seal.digest, rec.digest
                ),
            });
        }
        let index = self.index()?;
        let path = self.seal_path(&seal.name, &seal.digest);
        write_atomic(&path, &seal.encode())?;
        rec.state = CapsuleState::Sealed;
        if let Err(e) = index.put(&rec) {
            // Nothing was enforced yet: the seal is taken back so that files and index agree.
            let _ = fs::remove_file(&path);
            let _ = sync_dir(&self.manifest_dir(&seal.name));
            return Err(e);
        }
        Ok(rec)
    }

    /// The seal of a sealed capsule, checked against its record.
    pub fn seal_record(&self, rec: &CapsuleRecord) -> Result<SealRecord> {
        let path = self.seal_path(&rec.name, &rec.digest);
        let bytes = crate::sys::read_regular(&path, crate::sys::MAX_SMALL_FILE)
            .map_err(|e| Error::io(&path, "read the seal record", e))?;
        let seal = SealRecord::decode(&bytes).map_err(|reason| Error::ManifestCorrupt {
            path: path.clone(),
            reason,
        })?;
        if seal.name != rec.name || seal.digest != rec.digest {
            return Err(Error::ManifestCorrupt {
                path,
                reason: "it seals another capsule or manifest".into(),
            });
        }
        Ok(seal)
    }

    /// Removes an unsealed capsule. Its manifest directory is first moved aside in one
    /// rename (`manifests/.removed-<name>-<pid>`: the removal's commit point), then the record
    /// is removed, then the directory. A refused move changes nothing; a failed record removal
    /// moves the directory back; a crash after the move is finished by the next writer
    /// ([`Registry::open`]).
    pub fn remove(&self, name: &str) -> Result<CapsuleRecord> {
        let rec = self.require(name)?;
        self.refuse_if_sealed(name, "removing")?;
        let index = self.index()?;
        let manifests = self.dir.join("manifests");
        let dir = self.manifest_dir(name);
        let aside = manifests.join(format!(".removed-{name}-{}", std::process::id()));
        let moved = match fs::rename(&dir, &aside) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io(&dir, "remove the manifests", e)),
        };
        let put_back = || {
            if moved {
                let _ = fs::rename(&aside, &dir);
                let _ = sync_dir(&manifests);
            }
        };
        if moved {
            sync_dir(&manifests).inspect_err(|_| put_back())?;
        }
        index.delete(name).inspect_err(|_| put_back())?;
        if moved {
            // The record is gone: what is left aside is only garbage (finished at next open).
            let _ = fs::remove_dir_all(&aside);
            let _ = sync_dir(&manifests);
        }
        Ok(rec)
    }

    /// Finishes removals a crash interrupted after their commit point (see
    /// [`Registry::remove`]): the record of a capsule whose directory was moved aside and not
    /// replaced is removed, then what was moved aside. Best effort: what fails stays for the
    /// next writer, and readers ignore it.
    fn finish_removals(&self) {
        let (Some(index), manifests) = (&self.capsules, self.dir.join("manifests")) else {
            return;
        };
        let Ok(entries) = fs::read_dir(&manifests) else {
            return;
        };
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some((name, _pid)) = file
                .strip_prefix(".removed-")
                .and_then(|r| r.rsplit_once('-'))
            else {
                continue;
            };
            if validate_name(name).is_ok()
                && !self.manifest_dir(name).exists()
                && index.delete(name).is_err()
            {
                continue;
            }
            let _ = fs::remove_dir_all(e.path());
        }
    }

    /// Where the level that `sealtool enforce --boot` raises to is kept.
    pub fn config_path(&self) -> PathBuf {
        config_path_in(&self.dir)
    }

    /// The configured level (what boot enforcement raises the guard to), if any.
    pub fn configured_level(&self) -> Result<Option<u32>> {
        configured_level_in(&self.dir)
    }

    /// Every seal file in the registry (see [`seals_in`]).
    pub fn seals_on_disk(&self) -> SealFiles {
        seals_in(&self.dir)
    }

    pub fn set_configured_level(&self, level: u32) -> Result<()> {
        write_atomic(&self.config_path(), format!("{level}\n").as_bytes())
    }

    /// Recreates the database from the manifest and seal files: each capsule gets the
    /// manifest its seal names, else its newest one, read whole and checked. A capsule whose
    /// files can't tell (a damaged manifest or seal file) is left out and reported: nothing
    /// half-written or damaged is trusted. The old database, if any, is moved aside (never
    /// deleted) so nothing is lost; the new one takes its place in one exchange.
    pub fn rebuild(dir: &Path) -> Result<RebuildReport> {
        ensure_dir(dir)?;
        let _lock = lock(dir, Access::Write)?;
        let mut report = RebuildReport::default();
        let manifests = dir.join("manifests");
        ensure_dir(&manifests)?;
        let mut found: Vec<(Manifest, Digest, bool)> = Vec::new();
        let names = fs::read_dir(&manifests).map_err(|e| Error::io(&manifests, "read", e))?;
        for name_dir in names {
            let name_dir = name_dir
                .map_err(|e| Error::io(&manifests, "read", e))?
                .path();
            let Some(name) = name_dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with('.') || !name_dir.is_dir() {
                continue;
            }
            if let Err(e) = validate_name(name) {
                report.damaged.push((name_dir.clone(), e.to_string()));
                continue;
            }
            let files = files::read(&name_dir, name)
                .map_err(|e| Error::io(&name_dir, "read", e))?
                .unwrap_or_default();
            report.damaged.extend(files.bad.iter().cloned());
            let expected = match files.expected() {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(reason) => {
                    report.damaged.push((
                        name_dir.clone(),
                        format!("capsule {name:?} left out: {reason}"),
                    ));
                    continue;
                }
            };
            match read_manifest_file(&expected.path) {
                Ok((m, digest)) if m.name == name => found.push((m, digest, expected.sealed)),
                Ok((m, _)) => report
                    .damaged
                    .push((expected.path, format!("it names capsule {:?}", m.name))),
                Err(Error::ManifestCorrupt { path, reason }) => report.damaged.push((
                    path,
                    format!("capsule {name:?} left out: its current manifest is damaged: {reason}"),
                )),
                Err(e) => return Err(e),
            }
        }
        let db_path = dir.join("db");
        let fresh = dir.join(format!("db.rebuild-{}", std::process::id()));
        if fresh.exists() {
            fs::remove_dir_all(&fresh).map_err(|e| Error::io(&fresh, "remove", e))?;
        }
        {
            let db = open_db(&fresh)?;
            let tree = CapsuleTree {
                tree: db.open_tree("capsules").map_err(|e| Error::Database {
                    path: fresh.clone(),
                    source: e,
                })?,
                path: fresh.clone(),
            };
            for (m, digest, sealed) in &found {
                let mut rec = CapsuleRecord::from_manifest(m, *digest);
                if *sealed {
                    rec.state = CapsuleState::Sealed;
                }
                tree.put(&rec)?;
                report.recovered.push(rec);
            }
            // The audit log is not derived from the manifests: it moves over as it is.
            if db_path.exists() {
                if let Err(e) = crate::audit::carry_over(&db_path, &db, &fresh) {
                    report.audit_not_carried = Some(e.to_string());
                }
            }
            db.flush().map_err(|e| Error::Database {
                path: fresh.clone(),
                source: e,
            })?;
        }
        sync_dir(dir)?;
        if db_path.exists() {
            // Unique even when rebuilt twice within a second.
            let stamp = now();
            let mut aside = dir.join(format!("db.old-{stamp}"));
            let mut n = 1;
            while aside.exists() {
                aside = dir.join(format!("db.old-{stamp}-{n}"));
                n += 1;
            }
            // One exchange, so that there is a database at `db` at every moment; where the
            // filesystem can't exchange, two renames.
            match nix::fcntl::renameat2(
                None,
                &fresh,
                None,
                &db_path,
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            ) {
                Ok(()) => {
                    sync_dir(dir)?;
                    fs::rename(&fresh, &aside)
                        .map_err(|e| Error::io(&fresh, "move the old database aside", e))?;
                }
                Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOSYS) => {
                    fs::rename(&db_path, &aside)
                        .map_err(|e| Error::io(&db_path, "move aside", e))?;
                    fs::rename(&fresh, &db_path)
                        .map_err(|e| Error::io(&fresh, "move into place", e))?;
                }
                Err(e) => return Err(Error::io(&db_path, "replace", e.into())),
            }
            report.old_db = Some(aside);
        } else {
            fs::rename(&fresh, &db_path).map_err(|e| Error::io(&fresh, "move into place", e))?;
        }
        sync_dir(dir)?;
        Ok(report)
    }
}

/// Reads a manifest file and checks it against its own name (`<digest>.manifest`).
pub fn read_manifest_file(path: &Path) -> Result<(Manifest, Digest)> {
    let bytes = crate::sys::read_regular(path, crate::sys::MAX_MANIFEST_FILE)
        .map_err(|e| Error::io(path, "read the manifest", e))?;
    let corrupt = |reason: String| Error::ManifestCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    let (m, digest) = Manifest::decode_file(&bytes).map_err(corrupt)?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if Digest::from_hex(stem) != Some(digest) {
        return Err(corrupt(format!(
            "its content has digest {digest}, its name says {stem}"
        )));
    }
    Ok((m, digest))
}

/// Where the registry at `dir` keeps manifest `digest` of capsule `name`.
pub fn manifest_path_in(dir: &Path, name: &str, digest: &Digest) -> PathBuf {
    dir.join("manifests")
        .join(name)
        .join(format!("{digest}.manifest"))
}

/// The registry's configured-level file.
fn config_path_in(dir: &Path) -> PathBuf {
    dir.join("level")
}

/// Raises the level the registry at `dir` configures for boot to `level` (never lowers it),
/// under the registry lock and without the sled index: a damaged or crafted index must not
/// keep the level down. Returns whether the file changed.
pub fn raise_configured_level_in(dir: &Path, level: u32) -> Result<bool> {
    ensure_dir(dir)?;
    // Another writer (a seal walking its tree) is waited for: the raise must not stop half way.
    let _lock = lock_with(dir, Access::Write, Duration::from_secs(120))?;
    // A file that can't be read is replaced: raising must not depend on it.
    if matches!(configured_level_in(dir), Ok(Some(l)) if l >= level) {
        return Ok(false);
    }
    write_atomic(&config_path_in(dir), format!("{level}\n").as_bytes())?;
    Ok(true)
}

/// The level configured in the registry at `dir` (its `level` file), read without the index
/// or the lock: what boot enforcement raises the guard to.
pub fn configured_level_in(dir: &Path) -> Result<Option<u32>> {
    let path = config_path_in(dir);
    match crate::sys::read_regular(&path, crate::sys::MAX_SMALL_FILE)
        .and_then(|b| String::from_utf8(b).map_err(io::Error::other))
    {
        Ok(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::RegistryCorrupt {
                path,
                reason: format!("{:?} is not a level", s.trim()),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, "read", e)),
    }
}

/// The seal files of a registry: the readable ones, and those that could not be used, with
/// the reason.
#[derive(Debug, Default)]
pub struct SealFiles {
    pub seals: Vec<SealRecord>,
    pub bad: Vec<(PathBuf, String)>,
}

/// Every seal file in the registry at `dir`, decoded and checked (its checksum, and that its
/// file name matches the capsule and digest it seals), read without the sled index or the
/// lock: what boot enforcement trusts. Unlike the index they are never rewritten, and at
/// level 2 the guard keeps them so. A file that can't be used is listed in `bad`, not fatal:
/// one planted or damaged file must not stop the others from being enforced. Sorted by
/// capsule name.
pub fn seals_in(dir: &Path) -> SealFiles {
    let mut out = SealFiles::default();
    let root = dir.join("manifests");
    // No manifests directory: nothing sealed. Any other failure to look is reported.
    if matches!(root.try_exists(), Ok(false)) {
        return out;
    }
    for dir in entries_noting(&root, &mut out.bad) {
        // Never through a symlink planted where manifests/ takes new capsules.
        if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        for path in entries_noting(&dir, &mut out.bad) {
            if path.extension().and_then(|x| x.to_str()) != Some("seal") {
                continue;
            }
            let decoded = crate::sys::read_regular(&path, crate::sys::MAX_SMALL_FILE)
                .map_err(|e| e.to_string())
                .and_then(|b| SealRecord::decode(&b));
            match decoded {
                // A name no capsule may have (one starting with '.', the guard's and the
                // registry's own slots) is planted: it must not take their slots at boot.
                Ok(seal) if validate_name(&seal.name).is_err() => out
                    .bad
                    .push((path, format!("{:?} is not a capsule name", seal.name))),
                Ok(seal) => {
                    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                    if dir.file_name() != Some(std::ffi::OsStr::new(&seal.name))
                        || Digest::from_hex(stem) != Some(seal.digest)
                    {
                        out.bad.push((
                            path,
                            "its file name does not match the capsule and digest it seals".into(),
                        ));
                    } else {
                        out.seals.push(seal);
                    }
                }
                Err(reason) => out.bad.push((path, reason)),
            }
        }
    }
    out.seals.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The paths in directory `dir`; what can't be read is added to `bad` with the reason.
fn entries_noting(dir: &Path, bad: &mut Vec<(PathBuf, String)>) -> Vec<PathBuf> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            bad.push((dir.to_path_buf(), e.to_string()));
            return Vec::new();
        }
    };
    entries
        .filter_map(|e| match e {
            Ok(e) => Some(e.path()),
            Err(e) => {
                bad.push((dir.to_path_buf(), e.to_string()));
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_level_only_rises_and_replaces_an_unreadable_file() {
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("registry");
        assert_eq!(configured_level_in(&reg).unwrap(), None);
        assert!(raise_configured_level_in(&reg, 1).unwrap());
        assert!(raise_configured_level_in(&reg, 2).unwrap());
        assert!(!raise_configured_level_in(&reg, 1).unwrap());
        assert_eq!(configured_level_in(&reg).unwrap(), Some(2));
        fs::write(config_path_in(&reg), "junk").unwrap();
        assert!(configured_level_in(&reg).is_err());
        assert!(raise_configured_level_in(&reg, 1).unwrap());
        assert_eq!(configured_level_in(&reg).unwrap(), Some(1));
    }
}
