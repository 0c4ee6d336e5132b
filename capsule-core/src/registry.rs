//! The registry: which capsules exist, where their roots are, and their manifests.
//!
//! Layout under the registry directory (default /var/lib/capsule):
//! - `manifests/<name>/<root digest>.manifest`: the source of truth, one file per
//!   registration, written atomically (temporary file, fsync, rename, fsync of the directory).
//! - `db/`: a sled database indexing the capsules (name, root, digest, state, times); it can
//!   be recreated from the manifest files with [`Registry::rebuild`].
//! - `lock`: one writer at a time (flock); a second writer gets [`Error::RegistryBusy`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::codec::{Decoder, Encoder};
use crate::error::{Error, Result};
use crate::manifest::{Digest, Manifest, PackedManifest};
use crate::policy::SealRecord;

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

    fn encode(&self) -> Vec<u8> {
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

    fn decode(b: &[u8]) -> Result<Self, String> {
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

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one:
/// temporary file in the same directory, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] with the content written to the temporary file by `write`.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
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

fn lock(dir: &Path, access: Access) -> Result<Lock> {
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, "open the lock file", e))?;
    let start = Instant::now();
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(Error::io(&path, "lock", err));
        }
        if access == Access::Write || start.elapsed() > READ_LOCK_WAIT {
            let holder = fs::read_to_string(&path)
                .unwrap_or_default()
                .trim()
                .to_string();
            return Err(Error::RegistryBusy {
                path: dir.to_path_buf(),
                holder: if holder.is_empty() {
                    "unknown".into()
                } else {
                    holder
                },
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Best effort: only used to name the holder in the busy message.
    let _ = file.set_len(0);
    let _ = file.write_all(std::process::id().to_string().as_bytes());
    Ok(Lock { file })
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
    capsules: CapsuleTree,
    _db: sled::Db,
    _lock: Lock,
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
    let start = Instant::now();
    let opened = loop {
        match sled::Config::new().path(path).open() {
            Err(e) if sled_lock_busy(&e) && start.elapsed() < SLED_LOCK_WAIT => {
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

    pub fn open(dir: &Path, access: Access) -> Result<Self> {
        ensure_dir(dir)?;
        ensure_dir(&dir.join("manifests"))?;
        let lock = lock(dir, access)?;
        let db_path = dir.join("db");
        let db = open_db(&db_path)?;
        let tree = db.open_tree("capsules").map_err(|e| Error::Database {
            path: db_path.clone(),
            source: e,
        })?;
        Ok(Registry {
            dir: dir.to_path_buf(),
            capsules: CapsuleTree {
                tree,
                path: db_path,
            },
            _db: db,
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn get(&self, name: &str) -> Result<Option<CapsuleRecord>> {
        self.capsules.get(name)
    }

    pub fn require(&self, name: &str) -> Result<CapsuleRecord> {
        self.get(name)?.ok_or_else(|| Error::UnknownCapsule {
            name: name.to_string(),
        })
    }

    pub fn list(&self) -> Result<Vec<CapsuleRecord>> {
        self.capsules.all()
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

    /// Stores a new registration: the manifest file first, then the record, then the
    /// previous manifest files of that capsule are removed. A crash in between leaves the
    /// previous registration in force.
    pub fn register(&self, manifest: &Manifest) -> Result<CapsuleRecord> {
        validate_name(&manifest.name)?;
        self.refuse_if_sealed(&manifest.name, "re-registering")?;
        let (bytes, digest) = manifest.encode_file();
        let rec = CapsuleRecord::from_manifest(manifest, digest);
        self.store(rec, |f| f.write_all(&bytes))
    }

    /// [`Registry::register`] for a walk kept packed: the manifest file is streamed to disk,
    /// never held in memory whole.
    pub fn register_packed(&self, manifest: &PackedManifest) -> Result<CapsuleRecord> {
        validate_name(&manifest.name)?;
        self.refuse_if_sealed(&manifest.name, "re-registering")?;
        let rec = CapsuleRecord {
            name: manifest.name.clone(),
            root: manifest.root.clone(),
            digest: manifest.digest(),
            state: CapsuleState::Registered,
            registered_at: manifest.registered_at,
            entries: manifest.tree.len() as u64,
            bytes: manifest.tree.total_bytes(),
        };
        self.store(rec, |f| manifest.write_file(f).map(drop))
    }

    /// Writes the manifest file of `rec` (content by `write`), then the record, then removes
    /// the capsule's other manifest files.
    fn store(
        &self,
        rec: CapsuleRecord,
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<CapsuleRecord> {
        let dir = self.manifest_dir(&rec.name);
        let created = !dir.exists();
        ensure_dir(&dir)?;
        if created {
            sync_dir(&self.dir.join("manifests"))?;
        }
        let path = self.manifest_path(&rec.name, &rec.digest);
        write_atomic_with(&path, write)?;
        let previous = self.capsules.get(&rec.name)?;
        if let Err(e) = self.capsules.put(&rec) {
            // The database still names the previous manifest: drop the new file so that a
            // later rebuild cannot mistake it for the current registration.
            if previous.is_none_or(|p| p.digest != rec.digest) {
                let _ = fs::remove_file(&path);
            }
            return Err(e);
        }
        remove_other_manifests(&dir, &path)?;
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
        write_atomic(&self.seal_path(&seal.name, &seal.digest), &seal.encode())?;
        rec.state = CapsuleState::Sealed;
        self.capsules.put(&rec)?;
        Ok(rec)
    }

    /// The seal of a sealed capsule, checked against its record.
    pub fn seal_record(&self, rec: &CapsuleRecord) -> Result<SealRecord> {
        let path = self.seal_path(&rec.name, &rec.digest);
        let bytes = fs::read(&path).map_err(|e| Error::io(&path, "read the seal record", e))?;
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

    /// Removes an unsealed capsule: its record, then its manifest files.
    pub fn remove(&self, name: &str) -> Result<CapsuleRecord> {
        let rec = self.require(name)?;
        self.refuse_if_sealed(name, "removing")?;
        self.capsules
            .tree
            .remove(name.as_bytes())
            .map_err(|e| self.capsules.db_err(e))?;
        self.capsules
            .tree
            .flush()
            .map_err(|e| self.capsules.db_err(e))?;
        let dir = self.manifest_dir(name);
        fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, "remove the manifests", e))?;
        sync_dir(&self.dir.join("manifests"))?;
        Ok(rec)
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

    /// Recreates the database from the manifest files. The old database, if any, is moved
    /// aside (never deleted) so nothing is lost.
    pub fn rebuild(dir: &Path) -> Result<RebuildReport> {
        ensure_dir(dir)?;
        let _lock = lock(dir, Access::Write)?;
        let mut report = RebuildReport::default();
        let manifests = dir.join("manifests");
        ensure_dir(&manifests)?;
        let mut best: std::collections::BTreeMap<String, (Manifest, Digest)> = Default::default();
        // A sealed manifest is the capsule's manifest forever, whatever else lies beside it.
        let mut sealed: std::collections::BTreeMap<String, Digest> = Default::default();
        let names = fs::read_dir(&manifests).map_err(|e| Error::io(&manifests, "read", e))?;
        for name_dir in names {
            let name_dir = name_dir
                .map_err(|e| Error::io(&manifests, "read", e))?
                .path();
            if !name_dir.is_dir() {
                continue;
            }
            let files = fs::read_dir(&name_dir).map_err(|e| Error::io(&name_dir, "read", e))?;
            for f in files {
                let path = f.map_err(|e| Error::io(&name_dir, "read", e))?.path();
                if path.extension().and_then(|e| e.to_str()) == Some("seal") {
                    match fs::read(&path)
                        .map_err(|e| e.to_string())
                        .and_then(|b| SealRecord::decode(&b))
                    {
                        Ok(seal) => {
                            sealed.insert(seal.name.clone(), seal.digest);
                        }
                        Err(reason) => report.damaged.push((path, reason)),
                    }
                    continue;
                }
                if path.extension().and_then(|e| e.to_str()) != Some("manifest") {
                    continue;
                }
                match read_manifest_file(&path) {
                    Ok((m, digest)) => {
                        let dir_name = name_dir
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned());
                        if dir_name.as_deref() != Some(m.name.as_str()) {
                            report.damaged.push((
                                path,
                                format!(
                                    "it names capsule {:?} but lies in another capsule's directory",
                                    m.name
                                ),
                            ));
                            continue;
                        }
                        let newer = best.get(&m.name).is_none_or(|(cur, cur_d)| {
                            (m.registered_at, digest) > (cur.registered_at, *cur_d)
                        });
                        if newer {
                            best.insert(m.name.clone(), (m, digest));
                        }
                    }
                    Err(Error::ManifestCorrupt { path, reason }) => {
                        report.damaged.push((path, reason))
                    }
                    Err(e) => return Err(e),
                }
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
            // A sealed capsule keeps the manifest its seal names, whatever else lies beside it.
            for (name, seal_digest) in &sealed {
                if best.get(name).is_some_and(|(_, d)| d == seal_digest) {
                    continue;
                }
                let path = manifests.join(name).join(format!("{seal_digest}.manifest"));
                match read_manifest_file(&path) {
                    Ok(found) => {
                        best.insert(name.clone(), found);
                    }
                    Err(e) => {
                        best.remove(name);
                        report.damaged.push((path, format!("the capsule is sealed to this manifest, which is missing or damaged: {e}")));
                    }
                }
            }
            for (m, digest) in best.values() {
                let mut rec = CapsuleRecord::from_manifest(m, *digest);
                if sealed.contains_key(&m.name) {
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
        if db_path.exists() {
            // Unique even when rebuilt twice within a second.
            let stamp = now();
            let mut aside = dir.join(format!("db.old-{stamp}"));
            let mut n = 1;
            while aside.exists() {
                aside = dir.join(format!("db.old-{stamp}-{n}"));
                n += 1;
            }
            fs::rename(&db_path, &aside).map_err(|e| Error::io(&db_path, "move aside", e))?;
            report.old_db = Some(aside);
        }
        fs::rename(&fresh, &db_path).map_err(|e| Error::io(&fresh, "move into place", e))?;
        sync_dir(dir)?;
        Ok(report)
    }
}

fn remove_other_manifests(dir: &Path, keep: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, "read", e))?;
    let mut removed = false;
    for e in entries {
        let p = e.map_err(|e| Error::io(dir, "read", e))?.path();
        if p != keep && p.extension().and_then(|x| x.to_str()) == Some("manifest") {
            fs::remove_file(&p).map_err(|e| Error::io(&p, "remove the replaced manifest", e))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a manifest file and checks it against its own name (`<digest>.manifest`).
pub fn read_manifest_file(path: &Path) -> Result<(Manifest, Digest)> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, "read the manifest", e))?;
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

/// The level configured in the registry at `dir` (its `level` file), read without the index
/// or the lock: what boot enforcement raises the guard to.
pub fn configured_level_in(dir: &Path) -> Result<Option<u32>> {
    let path = config_path_in(dir);
    match fs::read_to_string(&path) {
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
        if !dir.is_dir() {
            continue;
        }
        for path in entries_noting(&dir, &mut out.bad) {
            if path.extension().and_then(|x| x.to_str()) != Some("seal") {
                continue;
            }
            let decoded = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| SealRecord::decode(&b));
            match decoded {
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
