//! Reading a registry that may refuse writes (a read-only mount, dm-verity, an immutable
//! directory).
//!
//! sled has no read-only mode: opening a database creates and locks files in its directory.
//! Where that is refused, the database is copied to a private temporary directory (under
//! `$TMPDIR`, else /tmp) and the copy is opened; the copy is removed when the handle is
//! dropped. The copy is taken under a shared lock on sled's own lock file, so that a writer
//! reaching the same files through another mount is never copied mid-write.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Whether an error means "this place refuses writes" (rather than a real failure).
pub fn refuses_writes(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM)
    )
}

/// A sled database open in place, or as a private copy (see the module comment).
pub struct DbHandle {
    db: Option<sled::Db>,
    copy: Option<PathBuf>,
}

impl DbHandle {
    pub(crate) fn in_place(db: sled::Db) -> Self {
        DbHandle {
            db: Some(db),
            copy: None,
        }
    }

    pub fn db(&self) -> &sled::Db {
        // Some until dropped.
        self.db
            .as_ref()
            .expect("the database is open until the handle is dropped")
    }

    /// Where the copy that was opened lies, when the database could not be opened in place.
    pub fn copied_to(&self) -> Option<&Path> {
        self.copy.as_deref()
    }
}

impl Drop for DbHandle {
    fn drop(&mut self) {
        // Close the copy before removing it.
        drop(self.db.take());
        if let Some(dir) = self.copy.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Opens the database at `path` for reading: in place with `open` when the registry accepts
/// it, else a private copy. `open` waits for sled's lock as the caller wishes.
pub fn open_for_reading(
    path: &Path,
    wait: Duration,
    open: impl Fn(&Path) -> Result<sled::Db>,
) -> Result<DbHandle> {
    match open(path) {
        Ok(db) => Ok(DbHandle::in_place(db)),
        Err(Error::Io { source, .. }) if refuses_writes(&source) => {
            let copy = copy_db(path, wait)?;
            // Removes the copy should opening it fail.
            let mut handle = DbHandle {
                db: None,
                copy: Some(copy.clone()),
            };
            handle.db = Some(open(&copy.join("db"))?);
            Ok(handle)
        }
        Err(e) => Err(e),
    }
}

/// Copies the database directory at `path` into a new private temporary directory (as
/// `<tmp>/db`), under a shared lock on sled's lock file. Returns the temporary directory.
fn copy_db(path: &Path, wait: Duration) -> Result<PathBuf> {
    let lock_path = path.join("db");
    let lock = File::open(&lock_path).map_err(|e| Error::io(&lock_path, "open", e))?;
    flock_waiting(&lock, libc::LOCK_SH, wait)
        .map_err(|e| Error::io(&lock_path, "lock for reading", e))?;
    let template = std::env::temp_dir().join("capsule-index-XXXXXX");
    let tmp = nix::unistd::mkdtemp(&template).map_err(|e| {
        Error::io(
            &template,
            "create a directory for a copy of the read-only index",
            e.into(),
        )
    })?;
    if let Err(e) = copy_tree(path, &tmp.join("db")) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Opens the sled database at `path`, working around sled 0.34's torn snapshots: a process
/// killed while sled writes a snapshot leaves `snap.<lsn>.generating`, which sled then reads
/// as the newest snapshot and fails on with `Corruption` (spacejam/sled#1527; the registry's
/// crash test hit it). The file is a temporary one that never became the snapshot: on
/// `Corruption` such files are removed, if no other process has the database open, and the
/// open is tried once more. The log and the previous snapshot hold the data.
pub fn sled_open(path: &Path) -> sled::Result<sled::Db> {
    match sled::Config::new().path(path).open() {
        Err(sled::Error::Corruption { .. }) if remove_torn_snapshots(path) => {
            sled::Config::new().path(path).open()
        }
        other => other,
    }
}

fn is_torn_snapshot(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with("snap.") && name.ends_with(".generating")
}

/// Removes `snap.*.generating` files from the database at `path` while holding sled's own
/// lock (so never under a process that is writing one). Whether any was removed.
fn remove_torn_snapshots(path: &Path) -> bool {
    let Ok(lock) = File::open(path.join("db")) else {
        return false;
    };
    if flock_waiting(&lock, libc::LOCK_EX, Duration::ZERO).is_err() {
        return false;
    }
    let mut removed = false;
    for e in fs::read_dir(path).into_iter().flatten().flatten() {
        if is_torn_snapshot(&e.file_name()) && fs::remove_file(e.path()).is_ok() {
            removed = true;
        }
    }
    if removed {
        let _ = File::open(path).and_then(|d| d.sync_all());
    }
    removed
}

/// flock(`op`) on `file`, retrying for up to `wait` while another holds it; EWOULDBLOCK
/// once the time is up.
pub fn flock_waiting(file: &File, op: libc::c_int, wait: Duration) -> io::Result<()> {
    let start = Instant::now();
    loop {
        // SAFETY: flock on a descriptor the caller owns; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) || start.elapsed() >= wait {
            return Err(err);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Copies the regular files and directories below `from` to `to` (which must not exist).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir(to).map_err(|e| Error::io(to, "create", e))?;
    for entry in fs::read_dir(from).map_err(|e| Error::io(from, "read", e))? {
        let entry = entry.map_err(|e| Error::io(from, "read", e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| Error::io(&src, "stat", e))?;
        if is_torn_snapshot(&entry.file_name()) {
            continue;
        }
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst).map_err(|e| Error::io(&src, "copy", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot torn by a kill (sled's `.generating` temporary) no longer makes the
    /// database unopenable, and nothing stored is lost.
    #[test]
    fn a_torn_snapshot_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("db");
        {
            let db = sled_open(&path).unwrap();
            db.insert("k", "v").unwrap();
            db.flush().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        let torn = path.join("snap.7FFFFFFFFFFFFFFF.generating");
        fs::write(&torn, b"half a snapshot").unwrap();
        // Control: sled alone refuses it.
        assert!(matches!(
            sled::Config::new().path(&path).open(),
            Err(sled::Error::Corruption { .. })
        ));
        std::thread::sleep(Duration::from_millis(100));
        let db = sled_open(&path).unwrap();
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
        assert!(!torn.exists());
    }
}
