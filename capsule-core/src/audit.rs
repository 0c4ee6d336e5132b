//! The audit log: refusals stored append-only in the registry database, chained by BLAKE3.
//!
//! The log is the sled tree `audit` of the registry database (`<registry>/db`). Record keys
//! are big-endian u64 sequence numbers from 1 up, so the tree iterates in order. A value is
//! the record bytes (a version byte, then the canonical [`Record`] encoding of
//! [`crate::codec`]) followed by a 32-byte chain hash:
//!
//! ```text
//! chain_0 = BLAKE3(CHAIN_DOMAIN)
//! chain_i = BLAKE3(chain_{i-1} || seq_i as u64 big-endian || record bytes_i)
//! ```
//!
//! Two more keys, after every record key (`ff`*8 followed by a name), hold the head (last
//! seq and its chain hash) and the collector's cursor (opaque bytes it uses to count lost
//! events across restarts). A record and the head move together in one atomic sled batch.
//!
//! [`AuditLog::check`] re-walks the chain: an edited record breaks its own hash (or, if its
//! hash was recomputed too, the next one's), a removed record leaves a gap, and a removed
//! tail no longer reaches the head. What a chain without a secret key cannot catch is
//! someone who rewrites the whole tail from the edit on, head included: anybody able to write
//! the database can do that. The chain makes tampering evident to whoever does not rewrite
//! everything after it (and the head hash, also sent to syslog by the collector, anchors it
//! outside the database); at level 2 the registry itself is protected by the guard.
//!
//! sled lets one process at a time open a database, and every sealtool command opens the
//! registry's. So nothing here keeps the database open: open an [`AuditLog`], append or
//! read, drop it. Opening waits while another process holds sled's lock (as the registry
//! does); the registry's own `lock` file is not taken: appending to the log does not
//! interfere with the registry's records, and a writer that finds that lock held gives up at
//! once, which a collector writing four times a second would otherwise make happen.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::codec::{Decoder, Encoder};

/// Name of the sled tree holding the log.
pub const TREE: &str = "audit";
/// Version byte of every record.
pub const RECORD_VERSION: u8 = 1;
/// Domain string of the chain's start.
pub const CHAIN_DOMAIN: &[u8] = b"capsule audit log v1: chain start";
/// How long [`AuditLog::open`] callers usually wait for another process to close the
/// database.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

const HASH_LEN: usize = 32;
const META_PREFIX: [u8; 8] = [0xff; 8];
const HEAD_VERSION: u8 = 1;

fn meta_key(name: &[u8]) -> Vec<u8> {
    let mut k = META_PREFIX.to_vec();
    k.extend_from_slice(name);
    k
}

fn head_key() -> Vec<u8> {
    meta_key(b"head")
}

fn cursor_key() -> Vec<u8> {
    meta_key(b"cursor")
}

/// What can go wrong with the audit log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{}: cannot create the registry directory: {source}",
        crate::display::path(path)
    )]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: the registry database is in use by another process (waited {waited_s} s); try again",
        crate::display::path(path)
    )]
    Busy { path: PathBuf, waited_s: u64 },
    #[error("{}: registry database error: {source}", crate::display::path(path))]
    Database {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error(
        "{}: audit record {seq} is damaged: {reason} (run `sealtool audit --check`)",
        crate::display::path(path)
    )]
    Damaged {
        path: PathBuf,
        seq: u64,
        reason: String,
    },
    #[error(
        "{}: the audit log's head is damaged: {reason} (run `sealtool audit --check`)",
        crate::display::path(path)
    )]
    DamagedHead { path: PathBuf, reason: String },
    /// Opening the registry for reading failed (it does not exist, it has no database, or
    /// its database could not be copied).
    #[error(transparent)]
    Registry(Box<crate::Error>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One refused attempt, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RefusalRecord {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// Name of the capsule concerned.
    pub capsule: String,
    /// Operation name (`open-write`, `unlink`, ...).
    pub op: String,
    /// Rule name (`outside`, `frozen`, ...).
    pub rule: String,
    /// The guard's level at the time.
    pub level: u32,
    /// Full path of the object, when the kernel had a name for it (raw bytes).
    pub path: Option<Vec<u8>>,
    /// Kernel dev_t of the object (`(major << 20) | minor`), 0 for process operations.
    pub dev: u64,
    pub ino: u64,
    pub pid: u32,
    /// Process operations: the capsule's process.
    pub target_pid: u32,
    pub uid: u32,
    /// Command name (raw bytes).
    pub comm: Vec<u8>,
    pub cgroup_id: u64,
}

/// Refusals that were counted but whose event did not reach the log.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LostRecord {
    pub time_ns: u64,
    /// Beyond the kernel's per-CPU rate limit.
    pub ratelimited: u64,
    /// The ring buffer was full (or an event could not be decoded).
    pub dropped: u64,
    /// Sent to the ring buffer but never received by the collector: taken by another
    /// reader (anyone holding a writable descriptor of `events` can consume it), or read by
    /// a collector that stopped before storing them.
    pub taken: u64,
}

/// Something `sealtool enforce` found wrong with the registry (an unusable seal file, a
/// damaged or disagreeing index, a capsule it could not enforce), in words.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FindingRecord {
    pub time_ns: u64,
    pub what: String,
}

/// One entry of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Refusal(RefusalRecord),
    Lost(LostRecord),
    Finding(FindingRecord),
}

const KIND_REFUSAL: u8 = 1;
const KIND_LOST: u8 = 2;
const KIND_FINDING: u8 = 3;

impl Record {
    pub fn time_ns(&self) -> u64 {
        match self {
            Record::Refusal(r) => r.time_ns,
            Record::Lost(l) => l.time_ns,
            Record::Finding(f) => f.time_ns,
        }
    }

    /// `"refusal"`, `"lost"` or `"finding"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Refusal(_) => "refusal",
            Record::Lost(_) => "lost",
            Record::Finding(_) => "finding",
        }
    }

    /// How many refusals this record accounts for (1, the lost counts, or none).
    pub fn refusals(&self) -> u64 {
        match self {
            Record::Refusal(_) => 1,
            Record::Lost(l) => l
                .ratelimited
                .saturating_add(l.dropped)
                .saturating_add(l.taken),
            Record::Finding(_) => 0,
        }
    }

    /// The record bytes: version byte, then the fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(128);
        e.u8(RECORD_VERSION);
        match self {
            Record::Refusal(r) => {
                e.u8(KIND_REFUSAL);
                e.u64(r.time_ns);
                e.bytes(r.capsule.as_bytes());
                e.bytes(r.op.as_bytes());
                e.bytes(r.rule.as_bytes());
                e.u32(r.level);
                match &r.path {
                    Some(p) => {
                        e.u8(1);
                        e.bytes(p);
                    }
                    None => e.u8(0),
                }
                e.u64(r.dev);
                e.u64(r.ino);
                e.u32(r.pid);
                e.u32(r.target_pid);
                e.u32(r.uid);
                e.bytes(&r.comm);
                e.u64(r.cgroup_id);
            }
            Record::Lost(l) => {
                e.u8(KIND_LOST);
                e.u64(l.time_ns);
                e.u64(l.ratelimited);
                e.u64(l.dropped);
                // Only when there are: records from before this count are read the same.
                if l.taken > 0 {
                    e.u64(l.taken);
                }
            }
            Record::Finding(f) => {
                e.u8(KIND_FINDING);
                e.u64(f.time_ns);
                e.bytes(f.what.as_bytes());
            }
        }
        e.into_inner()
    }

    /// Reads what [`Record::encode`] wrote; refuses anything else, trailing bytes included.
    pub fn decode(b: &[u8]) -> std::result::Result<Self, String> {
        let mut d = Decoder::new(b);
        let v = d.u8("record version")?;
        if v != RECORD_VERSION {
            return Err(format!("record version {v} is not supported"));
        }
        let text = |d: &mut Decoder<'_>, what: &str| -> std::result::Result<String, String> {
            String::from_utf8(d.bytes(what)?.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
        };
        let rec = match d.u8("record kind")? {
            KIND_REFUSAL => {
                let time_ns = d.u64("time")?;
                let capsule = text(&mut d, "capsule")?;
                let op = text(&mut d, "operation")?;
                let rule = text(&mut d, "rule")?;
                let level = d.u32("level")?;
                let path = match d.u8("path flag")? {
                    0 => None,
                    1 => Some(d.bytes("path")?.to_vec()),
                    f => return Err(format!("path flag {f} is neither 0 nor 1")),
                };
                Record::Refusal(RefusalRecord {
                    time_ns,
                    capsule,
                    op,
                    rule,
                    level,
                    path,
                    dev: d.u64("dev")?,
                    ino: d.u64("ino")?,
                    pid: d.u32("pid")?,
                    target_pid: d.u32("target pid")?,
                    uid: d.u32("uid")?,
                    comm: d.bytes("command name")?.to_vec(),
                    cgroup_id: d.u64("cgroup id")?,
                })
            }
            KIND_LOST => Record::Lost(LostRecord {
                time_ns: d.u64("time")?,
                ratelimited: d.u64("rate-limited count")?,
                dropped: d.u64("dropped count")?,
                // Present only when non-zero (one encoding per record).
                taken: if d.remaining() > 0 {
                    match d.u64("taken count")? {
                        0 => return Err("a taken count of 0 written out".into()),
                        n => n,
                    }
                } else {
                    0
                },
            }),
            KIND_FINDING => Record::Finding(FindingRecord {
                time_ns: d.u64("time")?,
                what: text(&mut d, "finding")?,
            }),
            k => return Err(format!("unknown record kind {k}")),
        };
        d.finish("the record")?;
        Ok(rec)
    }
}

/// A record and its place in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub record: Record,
}

/// The end of the chain: the last sequence number and its chain hash (seq 0 and
/// [`chain_start`] for an empty log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; HASH_LEN],
}

impl Head {
    pub fn empty() -> Self {
        Head {
            seq: 0,
            hash: chain_start(),
        }
    }

    /// The hash in hex.
    pub fn hex(&self) -> String {
        self.hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u8(HEAD_VERSION);
        e.u64(self.seq);
        e.raw(&self.hash);
        e.into_inner()
    }

    fn decode(b: &[u8]) -> std::result::Result<Self, String> {
        let mut d = Decoder::new(b);
        let v = d.u8("head version")?;
        if v != HEAD_VERSION {
            return Err(format!("head version {v} is not supported"));
        }
        let head = Head {
            seq: d.u64("head sequence number")?,
            hash: d.array32("head hash")?,
        };
        d.finish("the head")?;
        Ok(head)
    }
}

/// chain_0.
pub fn chain_start() -> [u8; HASH_LEN] {
    *blake3::hash(CHAIN_DOMAIN).as_bytes()
}

/// chain_i from chain_{i-1}, seq_i and the record bytes.
pub fn chain_next(prev: &[u8; HASH_LEN], seq: u64, record: &[u8]) -> [u8; HASH_LEN] {
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(&seq.to_be_bytes());
    h.update(record);
    *h.finalize().as_bytes()
}

/// What [`AuditLog::check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Every record is in place and unchanged as far as the chain can tell.
    Intact { records: u64, head: Head },
    /// The first sequence number where the log is not what was written, and why.
    Tampered { seq: u64, reason: String },
}

/// Splits a stored value into record bytes and chain hash.
fn split_value(v: &[u8]) -> Option<(&[u8], [u8; HASH_LEN])> {
    if v.len() < HASH_LEN + 1 {
        return None;
    }
    let (rec, hash) = v.split_at(v.len() - HASH_LEN);
    let mut h = [0u8; HASH_LEN];
    h.copy_from_slice(hash);
    Some((rec, h))
}

fn seq_of(key: &[u8]) -> Option<u64> {
    let a: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(a))
}

/// Opens sled at `path`, waiting up to `wait` while another process holds its lock (sled
/// also releases it from background threads shortly after a handle in this process closed).
fn open_db(path: &Path, wait: Duration) -> Result<sled::Db> {
    let start = Instant::now();
    loop {
        match crate::registry::readdb::sled_open(path) {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                if start.elapsed() >= wait {
                    return Err(Error::Busy {
                        path: path.to_path_buf(),
                        waited_s: start.elapsed().as_secs(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(Error::Database {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// The audit log of a registry, open for a short while (see the module comment).
pub struct AuditLog {
    tree: sled::Tree,
    db: sled::Db,
    path: PathBuf,
    /// The read-only registry's database copy this log was opened from; dropped last.
    copy: Option<crate::registry::readdb::DbHandle>,
}

impl AuditLog {
    /// Opens the log of the registry in `registry_dir` (creating the directory and the
    /// database if needed), waiting up to `wait` for another process to close the database.
    pub fn open(registry_dir: &Path, wait: Duration) -> Result<Self> {
        std::fs::create_dir_all(registry_dir).map_err(|source| Error::CreateDir {
            path: registry_dir.to_path_buf(),
            source,
        })?;
        let path = registry_dir.join("db");
        let db = open_db(&path, wait)?;
        Self::from_db(db, path, None)
    }

    fn from_db(
        db: sled::Db,
        path: PathBuf,
        copy: Option<crate::registry::readdb::DbHandle>,
    ) -> Result<Self> {
        let tree = db.open_tree(TREE).map_err(|source| Error::Database {
            path: path.clone(),
            source,
        })?;
        Ok(AuditLog {
            tree,
            db,
            path,
            copy,
        })
    }

    /// Opens the log for reading only: never creates the registry or its database, and
    /// reads a copy of the database where the registry refuses writes (see
    /// [`crate::registry::readdb`]).
    pub fn open_read(registry_dir: &Path, wait: Duration) -> Result<Self> {
        let boxed = |e: crate::Error| Error::Registry(Box::new(e));
        if !registry_dir.is_dir() {
            return Err(boxed(crate::Error::RegistryMissing {
                path: registry_dir.to_path_buf(),
            }));
        }
        let path = registry_dir.join("db");
        if !path.exists() {
            return Err(boxed(crate::Error::RegistryCorrupt {
                path,
                reason: "the registry has no database, so no audit log".into(),
            }));
        }
        let handle = crate::registry::readdb::open_for_reading(&path, wait, |p| {
            crate::registry::open_db_waiting(p, wait)
        })
        .map_err(boxed)?;
        Self::from_db(handle.db().clone(), path, Some(handle))
    }

    /// Where the database was copied to and read from, when the registry refuses writes.
    pub fn copied_to(&self) -> Option<&Path> {
        self.copy.as_ref().and_then(|c| c.copied_to())
    }

    /// Opens the log in an already open database (tests, tools).
    pub fn in_db(db: &sled::Db, path: &Path) -> Result<Self> {
        Self::from_db(db.clone(), path.to_path_buf(), None)
    }

    fn db_err(&self, source: sled::Error) -> Error {
        Error::Database {
            path: self.path.clone(),
            source,
        }
    }

    /// The head as stored (the empty head when none is).
    fn stored_head(&self) -> Result<Option<Head>> {
        match self.tree.get(head_key()).map_err(|e| self.db_err(e))? {
            None => Ok(None),
            Some(v) => Head::decode(&v)
                .map(Some)
                .map_err(|reason| Error::DamagedHead {
                    path: self.path.clone(),
                    reason,
                }),
        }
    }

    /// The last record key and its stored chain hash.
    fn last_record(&self) -> Result<Option<(u64, [u8; HASH_LEN])>> {
        let last = self
            .tree
            .range(..=META_PREFIX)
            .next_back()
            .transpose()
            .map_err(|e| self.db_err(e))?;
        let Some((k, v)) = last else {
            return Ok(None);
        };
        let seq = seq_of(&k).ok_or_else(|| Error::DamagedHead {
            path: self.path.clone(),
            reason: format!("a key of {} bytes among the records", k.len()),
        })?;
        let (_, hash) = split_value(&v).ok_or_else(|| Error::Damaged {
            path: self.path.clone(),
            seq,
            reason: "too short to hold a chain hash".into(),
        })?;
        Ok(Some((seq, hash)))
    }

    /// Where the next append continues: the stored head, or the last record if it lies
    /// beyond the head. Appending after a removed tail keeps the gap, so `check` still
    /// reports it.
    pub fn head(&self) -> Result<Head> {
        let stored = self.stored_head()?;
        let last = self.last_record()?;
        Ok(match (stored, last) {
            (Some(h), Some((seq, hash))) if seq > h.seq => Head { seq, hash },
            (Some(h), _) => h,
            (None, Some((seq, hash))) => Head { seq, hash },
            (None, None) => Head::empty(),
        })
    }

    /// Appends `records` after the head and stores `cursor` (when given), in one atomic
    /// batch, then flushes to disk. Returns the new head.
    pub fn append(&self, records: &[Record], cursor: Option<&[u8]>) -> Result<Head> {
        let mut head = self.head()?;
        let mut batch = sled::Batch::default();
        for r in records {
            let seq = head.seq + 1;
            let mut value = r.encode();
            let hash = chain_next(&head.hash, seq, &value);
            value.extend_from_slice(&hash);
            batch.insert(&seq.to_be_bytes(), value);
            head = Head { seq, hash };
        }
        if !records.is_empty() {
            batch.insert(head_key(), head.encode());
        }
        if let Some(c) = cursor {
            batch.insert(cursor_key(), c);
        }
        self.tree.apply_batch(batch).map_err(|e| self.db_err(e))?;
        self.db.flush().map_err(|e| self.db_err(e))?;
        Ok(head)
    }

    /// The collector's cursor, as it last stored it.
    pub fn cursor(&self) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tree
            .get(cursor_key())
            .map_err(|e| self.db_err(e))?
            .map(|v| v.to_vec()))
    }

    /// The records after sequence number `after`, in order. A record that cannot be read is
    /// an error (the log is damaged: `check` says where).
    pub fn entries_after(&self, after: u64) -> impl Iterator<Item = Result<Entry>> + '_ {
        let start = after.saturating_add(1).to_be_bytes();
        self.tree.range(start..=META_PREFIX).map(move |item| {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            let seq = seq_of(&k).ok_or_else(|| Error::DamagedHead {
                path: self.path.clone(),
                reason: format!("a key of {} bytes among the records", k.len()),
            })?;
            let damaged = |reason: String| Error::Damaged {
                path: self.path.clone(),
                seq,
                reason,
            };
            let (rec, _) = split_value(&v).ok_or_else(|| damaged("too short".into()))?;
            let record = Record::decode(rec).map_err(damaged)?;
            Ok(Entry { seq, record })
        })
    }

    /// Re-walks the chain from the first record to the head.
    pub fn check(&self) -> Result<Check> {
        let mut prev = chain_start();
        let mut expected: u64 = 1;
        for item in self.tree.range(..=META_PREFIX) {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            let Some(seq) = seq_of(&k) else {
                return Ok(Check::Tampered {
                    seq: expected,
                    reason: format!("a foreign key of {} bytes lies among the records", k.len()),
                });
            };
            if seq != expected {
                let reason = if seq > expected {
                    if seq == expected + 1 {
                        format!("record {expected} was removed")
                    } else {
                        format!("records {expected} to {} were removed", seq - 1)
                    }
                } else {
                    format!("record {seq} is out of order")
                };
                return Ok(Check::Tampered {
                    seq: expected,
                    reason,
                });
            }
            let Some((rec, stored)) = split_value(&v) else {
                return Ok(Check::Tampered {
                    seq,
                    reason: "the record is too short to hold a chain hash".into(),
                });
            };
            let hash = chain_next(&prev, seq, rec);
            if hash != stored {
                return Ok(Check::Tampered {
                    seq,
                    reason: "the record was altered (its chain hash does not match)".into(),
                });
            }
            if let Err(reason) = Record::decode(rec) {
                // A record that hashes right but does not decode was written that way on
                // purpose, hash and all: the chain from here on was rewritten.
                return Ok(Check::Tampered {
                    seq,
                    reason: format!("the record cannot be read: {reason}"),
                });
            }
            prev = hash;
            expected += 1;
        }
        let last = expected - 1;
        let head = match self.stored_head() {
            Ok(h) => h,
            Err(Error::DamagedHead { reason, .. }) => {
                return Ok(Check::Tampered {
                    seq: last + 1,
                    reason: format!("the head is damaged: {reason}"),
                })
            }
            Err(e) => return Err(e),
        };
        let head = match head {
            None if last == 0 => Head::empty(),
            None => {
                return Ok(Check::Tampered {
                    seq: last,
                    reason: "the head record was removed".into(),
                })
            }
            Some(h) => h,
        };
        if head.seq > last {
            let reason = if head.seq == last + 1 {
                format!("record {} (the last one) was removed", head.seq)
            } else {
                format!(
                    "records {} to {} (the last ones) were removed",
                    last + 1,
                    head.seq
                )
            };
            return Ok(Check::Tampered {
                seq: last + 1,
                reason,
            });
        }
        if head.seq < last {
            return Ok(Check::Tampered {
                seq: head.seq + 1,
                reason: format!("records {} to {last} lie beyond the head", head.seq + 1),
            });
        }
        if head.hash != prev {
            return Ok(Check::Tampered {
                seq: last,
                reason: "the head hash does not match the chain".into(),
            });
        }
        Ok(Check::Intact {
            records: last,
            head,
        })
    }
}

/// Copies the audit tree of the database at `old_db`, byte for byte (chain, head and cursor
/// kept), into `new_db`: for `Registry::rebuild`, which replaces the database with one made
/// from the manifest files and would otherwise leave the log behind in the old one. Returns
/// how many keys were copied (0 when the old database has no log).
pub fn carry_over(old_db: &Path, new_db: &sled::Db, new_path: &Path) -> Result<u64> {
    let old = open_db(old_db, DEFAULT_WAIT)?;
    let db_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Database { path, source }
    };
    let from = old.open_tree(TREE).map_err(db_err(old_db))?;
    let to = new_db.open_tree(TREE).map_err(db_err(new_path))?;
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for item in from.iter() {
        let (k, v) = item.map_err(db_err(old_db))?;
        batch.insert(k, v);
        n += 1;
    }
    to.apply_batch(batch).map_err(db_err(new_path))?;
    new_db.flush().map_err(db_err(new_path))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(i: u64) -> Record {
        Record::Refusal(RefusalRecord {
            time_ns: 1_700_000_000_000_000_000 + i,
            capsule: "app".into(),
            op: "open-write".into(),
            rule: "outside".into(),
            level: 1,
            path: Some(format!("/jails/app/file{i}").into_bytes()),
            dev: 45,
            ino: 100 + i,
            pid: 4242,
            target_pid: 0,
            uid: 1000,
            comm: b"sh".to_vec(),
            cgroup_id: 1,
        })
    }

    fn log_with(n: u64) -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), DEFAULT_WAIT).unwrap();
        let recs: Vec<_> = (1..=n).map(refusal).collect();
        if n > 0 {
            log.append(&recs, None).unwrap();
        }
        (dir, log)
    }

    fn tampered_at(log: &AuditLog) -> u64 {
        match log.check().unwrap() {
            Check::Tampered { seq, .. } => seq,
            Check::Intact { .. } => panic!("tampering not detected"),
        }
    }

    #[test]
    fn records_round_trip() {
        let lost = Record::Lost(LostRecord {
            time_ns: 9,
            ratelimited: 1_000_000,
            dropped: 3,
            taken: 4,
        });
        for r in [refusal(1), lost] {
            assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        }
        let mut no_path = refusal(2);
        if let Record::Refusal(r) = &mut no_path {
            r.path = None;
        }
        assert_eq!(Record::decode(&no_path.encode()).unwrap(), no_path);
        // A lost record's taken count is written only when non-zero: one encoding each.
        let mut zero_taken = Record::Lost(LostRecord::default()).encode();
        zero_taken.extend_from_slice(&0u64.to_le_bytes());
        assert!(Record::decode(&zero_taken).is_err());
        let mut extra = refusal(1).encode();
        extra.push(0);
        assert!(Record::decode(&extra).unwrap_err().contains("trailing"));
        assert!(Record::decode(&[]).is_err());
        assert!(Record::decode(&[RECORD_VERSION, 7])
            .unwrap_err()
            .contains("kind 7"));
    }

    #[test]
    fn append_and_iterate_in_order_across_appends() {
        let (_d, log) = log_with(3);
        let lost = Record::Lost(LostRecord {
            time_ns: 5,
            ratelimited: 10,
            dropped: 2,
            taken: 0,
        });
        let head = log
            .append(&[refusal(4), lost.clone()], Some(b"cur"))
            .unwrap();
        assert_eq!(head.seq, 5);
        let all: Vec<Entry> = log.entries_after(0).collect::<Result<_>>().unwrap();
        assert_eq!(
            all.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(all[0].record, refusal(1));
        assert_eq!(all[4].record, lost);
        assert_eq!(all[4].record.refusals(), 12);
        let tail: Vec<u64> = log.entries_after(3).map(|e| e.unwrap().seq).collect();
        assert_eq!(tail, vec![4, 5]);
        assert_eq!(log.cursor().unwrap().as_deref(), Some(&b"cur"[..]));
        match log.check().unwrap() {
            Check::Intact { records, head: h } => {
                assert_eq!(records, 5);
                assert_eq!(h, head);
            }
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn the_log_survives_reopening() {
        let (d, log) = log_with(2);
        let head = log.head().unwrap();
        drop(log);
        let log = AuditLog::open(d.path(), DEFAULT_WAIT).unwrap();
        assert_eq!(log.head().unwrap(), head);
        log.append(&[refusal(3)], None).unwrap();
        assert!(matches!(
            log.check().unwrap(),
            Check::Intact { records: 3, .. }
        ));
    }

    #[test]
    fn empty_log_is_intact() {
        let (_d, log) = log_with(0);
        assert_eq!(
            log.check().unwrap(),
            Check::Intact {
                records: 0,
                head: Head::empty()
            }
        );
        // A cursor alone does not make records.
        log.append(&[], Some(b"c")).unwrap();
        assert!(matches!(
            log.check().unwrap(),
            Check::Intact { records: 0, .. }
        ));
    }

    #[test]
    fn chain_is_what_the_module_comment_says() {
        let (_d, log) = log_with(2);
        let v1 = log.tree.get(1u64.to_be_bytes()).unwrap().unwrap();
        let rec1 = refusal(1).encode();
        let h1 = chain_next(&chain_start(), 1, &rec1);
        let mut manual = blake3::Hasher::new();
        manual.update(blake3::hash(CHAIN_DOMAIN).as_bytes());
        manual.update(&[0, 0, 0, 0, 0, 0, 0, 1]);
        manual.update(&rec1);
        assert_eq!(&h1, manual.finalize().as_bytes());
        assert_eq!(&v1[..], [rec1.as_slice(), &h1].concat().as_slice());
    }

    #[test]
    fn editing_a_record_is_found_at_its_seq() {
        let (_d, log) = log_with(5);
        let key = 3u64.to_be_bytes();
        let mut v = log.tree.get(key).unwrap().unwrap().to_vec();
        // Change the uid inside the record (a byte before the hash).
        let at = v.len() - HASH_LEN - 20;
        v[at] ^= 1;
        log.tree.insert(key, v).unwrap();
        assert_eq!(tampered_at(&log), 3);
        // Reading still works for the other records; the damaged one may decode or not.
        assert!(log.entries_after(3).all(|e| e.is_ok()));
    }

    #[test]
    fn an_edit_with_its_hash_recomputed_breaks_the_next_link() {
        let (_d, log) = log_with(5);
        let mut forged = refusal(3);
        if let Record::Refusal(r) = &mut forged {
            r.uid = 0;
        }
        let prev = split_value(&log.tree.get(2u64.to_be_bytes()).unwrap().unwrap())
            .unwrap()
            .1;
        let mut v = forged.encode();
        let h = chain_next(&prev, 3, &v);
        v.extend_from_slice(&h);
        log.tree.insert(3u64.to_be_bytes(), v).unwrap();
        assert_eq!(tampered_at(&log), 4);
    }

    #[test]
    fn deleting_a_middle_record_is_a_gap() {
        let (_d, log) = log_with(5);
        log.tree.remove(2u64.to_be_bytes()).unwrap();
        match log.check().unwrap() {
            Check::Tampered { seq, reason } => {
                assert_eq!(seq, 2);
                assert!(reason.contains("record 2 was removed"), "{reason}");
            }
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn deleting_the_first_record_is_found() {
        let (_d, log) = log_with(3);
        log.tree.remove(1u64.to_be_bytes()).unwrap();
        assert_eq!(tampered_at(&log), 1);
    }

    #[test]
    fn deleting_the_last_record_is_caught_by_the_head() {
        let (_d, log) = log_with(5);
        log.tree.remove(5u64.to_be_bytes()).unwrap();
        match log.check().unwrap() {
            Check::Tampered { seq, reason } => {
                assert_eq!(seq, 5);
                assert!(reason.contains("last"), "{reason}");
            }
            t => panic!("{t:?}"),
        }
        // Appending afterwards keeps the gap visible instead of papering over it.
        log.append(&[refusal(6)], None).unwrap();
        assert_eq!(tampered_at(&log), 5);
    }

    #[test]
    fn deleting_the_head_or_adding_foreign_keys_is_found() {
        let (_d, log) = log_with(2);
        log.tree.remove(head_key()).unwrap();
        assert_eq!(tampered_at(&log), 2);

        let (_d, log) = log_with(2);
        log.tree.insert(b"junk", b"x".to_vec()).unwrap();
        assert!(matches!(log.check().unwrap(), Check::Tampered { .. }));

        let (_d, log) = log_with(2);
        let mut bad = Head::empty();
        bad.seq = 2;
        log.tree.insert(head_key(), bad.encode()).unwrap();
        assert_eq!(tampered_at(&log), 2);
    }

    #[test]
    fn a_rewritten_tail_is_not_detectable_without_an_anchor() {
        // Documented limit: whoever rewrites every hash from the edit on, head included,
        // is not caught by the chain alone (the head hash sent to syslog is the anchor).
        let (_d, log) = log_with(3);
        let head_before = log.head().unwrap();
        log.tree.remove(3u64.to_be_bytes()).unwrap();
        let prev = split_value(&log.tree.get(2u64.to_be_bytes()).unwrap().unwrap())
            .unwrap()
            .1;
        log.tree
            .insert(head_key(), Head { seq: 2, hash: prev }.encode())
            .unwrap();
        assert!(matches!(
            log.check().unwrap(),
            Check::Intact { records: 2, .. }
        ));
        assert_ne!(log.head().unwrap(), head_before);
    }

    #[test]
    fn carry_over_keeps_the_chain() {
        let (d, log) = log_with(4);
        let head = log.head().unwrap();
        drop(log);
        let fresh_path = d.path().join("fresh");
        let fresh = sled::open(&fresh_path).unwrap();
        assert_eq!(
            carry_over(&d.path().join("db"), &fresh, &fresh_path).unwrap(),
            5
        );
        let moved = AuditLog::in_db(&fresh, &fresh_path).unwrap();
        assert_eq!(moved.head().unwrap(), head);
        assert!(matches!(
            moved.check().unwrap(),
            Check::Intact { records: 4, .. }
        ));
    }

    #[test]
    fn a_busy_database_is_reported_after_the_wait() {
        let (d, log) = log_with(1);
        let err = match AuditLog::open(d.path(), Duration::from_millis(100)) {
            Err(e) => e,
            Ok(_) => panic!("sled let two handles open the same database"),
        };
        assert!(matches!(err, Error::Busy { .. }), "{err}");
        drop(log);
        // Once closed, it opens (waiting out sled's background release).
        assert!(AuditLog::open(d.path(), DEFAULT_WAIT).is_ok());
    }
}
