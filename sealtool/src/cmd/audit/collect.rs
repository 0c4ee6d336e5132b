//! The audit collector: moves refusal events from the guard's ring buffer into the audit log
//! of the registry database, counts what the kernel could not send, and copies each refusal
//! to syslog (LOG_AUTHPRIV).
//!
//! One collector per registry: it holds an flock on `<registry>/audit-collector.lock`; a
//! second one waits there as a standby until the first exits. Events are decoded as soon as
//! they are read (paths are resolved against the mounts of that moment) and kept in memory;
//! every 250 ms, or sooner when 4096 are waiting, they are appended to the log in one batch,
//! the database being opened only for that (sled admits one process at a time, and every
//! sealtool command opens it). Every second, and with each batch, the kernel's
//! `events_ratelimited` and `events_dropped` counters are compared with what the log already
//! accounts for (the cursor, stored with the records) and any growth becomes a `lost`
//! record, so `refusals recorded + lost counts = refusals counted by the kernel`. So is
//! `events_sent`, against the events received: anyone holding a writable descriptor of the
//! ring buffer can consume events (the kernel can't freeze a ring buffer, and no hook sees its
//! consumer position move), and what another reader takes is counted as `taken`. The counters
//! are read before the ring buffer is emptied, so every event they count has been received by
//! then unless somebody else took it.
//!
//! When the database stays busy, events wait in memory up to 65536; beyond that the
//! collector stops reading and the kernel counts what no longer fits its ring buffer as
//! dropped (and so does the log, once the database is free again).

use capsule_core::sys::open_regular;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use capsule_core::audit::{AuditLog, FindingRecord, Head, LostRecord, Record, RefusalRecord};
use capsule_core::codec::{Decoder, Encoder};
use capsule_core::display::escape_bytes;
use fsguard::events::{self, EventReader, Mounts, Refusal};
use fsguard::guard::PIN_DIR;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::Context;

/// Oldest a pending event gets before it is written.
const BATCH_AGE: Duration = Duration::from_millis(250);
/// Pending events that trigger a write at once.
const BATCH_MAX: usize = 4096;
/// Pending events beyond which the ring buffer is no longer read.
const PENDING_MAX: usize = 65536;
/// How often the kernel counters are compared with the log when no event comes.
const COUNTERS_EVERY: Duration = Duration::from_secs(1);
/// How long one write waits for the database before trying again later (the ring buffer
/// must keep being read meanwhile).
const DB_WAIT: Duration = Duration::from_millis(200);
/// Refusals copied to syslog per second at most; the rest are summed up in one message.
const SYSLOG_PER_SEC: u32 = 100;
/// How often the log's head (seq and hash) is written to syslog, an anchor outside the
/// database.
const HEAD_TO_SYSLOG_EVERY: Duration = Duration::from_secs(60);

pub const LOCK_FILE: &str = "audit-collector.lock";
pub const LOG_FILE: &str = "audit-collector.log";

// ---------------------------------------------------------------------------- the lock

/// The single-instance lock. Held until dropped.
struct InstanceLock {
    _file: File,
}

fn open_lock(dir: &Path) -> Result<File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the registry directory {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    // Root may plant a FIFO or a symlink in the registry directory.
    open_regular(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
        &path,
    )
    .with_context(|| format!("cannot open {}", path.display()))
}

fn flock(file: &File, blocking: bool) -> std::io::Result<bool> {
    let op = libc::LOCK_EX | if blocking { 0 } else { libc::LOCK_NB };
    loop {
        // SAFETY: flock on a descriptor owned by `file`; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) if !blocking => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

fn holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut s));
    let s = s.trim().to_string();
    if s.is_empty() {
        "unknown".into()
    } else {
        s
    }
}

impl InstanceLock {
    /// Takes the lock, waiting (as a standby) while another collector holds it.
    fn acquire(dir: &Path, quiet: bool) -> Result<Self> {
        let mut file = open_lock(dir)?;
        if !flock(&file, false).context("cannot lock the collector lock file")? {
            if !quiet {
                eprintln!(
                    "sealtool audit: another collector runs (pid {}); waiting to take over",
                    holder(&mut file)
                );
            }
            flock(&file, true).context("cannot lock the collector lock file")?;
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(InstanceLock { _file: file })
    }
}

/// Starts a detached background collector (`sealtool --registry DIR audit --collect`) unless
/// one already runs for this registry. Its messages go to `<registry>/audit-collector.log`
/// and to syslog. Meant for `sealtool enforce` and `sealtool seal`.
pub fn ensure_collector_running(ctx: &Context) -> Result<()> {
    let file = open_lock(&ctx.registry_dir)?;
    if !flock(&file, false).context("cannot lock the collector lock file")? {
        return Ok(()); // one runs
    }
    // Free: let the child take it. Two callers racing here start two collectors; the
    // second waits as a standby.
    drop(file);
    let exe = std::env::current_exe().context("cannot find the sealtool executable")?;
    let log_path = ctx.registry_dir.join(LOG_FILE);
    let log = open_regular(OpenOptions::new().create(true).append(true), &log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let log2 = log
        .try_clone()
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--quiet")
        .arg("--registry")
        .arg(&ctx.registry_dir)
        .args(["audit", "--collect"])
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent: the child
    // leaves the caller's session and terminal, so it outlives the command that started it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn().context("cannot start the audit collector")?;
    // Not waited for: it runs until stopped. Its exit status is reaped by init.
    drop(child);
    Ok(())
}

// ---------------------------------------------------------------------------- syslog

/// Sends one error message to syslog (authpriv), outside the collector's rate limit: for
/// the few findings of `enforce` that must not stay on a terminal nobody reads.
pub fn syslog_error(msg: &str) {
    let _ = Syslog::open();
    Syslog::raw(libc::LOG_AUTHPRIV | libc::LOG_ERR, msg);
}

struct Syslog {
    window: Instant,
    sent: u32,
    suppressed: u64,
}

impl Syslog {
    fn open() -> Self {
        // SAFETY: the ident is a 'static NUL-terminated string, as openlog requires (it
        // keeps the pointer).
        unsafe { libc::openlog(c"sealtool".as_ptr(), libc::LOG_PID, libc::LOG_AUTHPRIV) };
        Syslog {
            window: Instant::now(),
            sent: 0,
            suppressed: 0,
        }
    }

    fn raw(priority: libc::c_int, msg: &str) {
        let Ok(c) = CString::new(msg.replace('\0', "\\x00")) else {
            return;
        };
        // SAFETY: a constant "%s" format with one valid NUL-terminated string argument.
        unsafe { libc::syslog(priority, c"%s".as_ptr(), c.as_ptr()) };
    }

    /// Sends `msg` unless this second's allowance is spent (then it is counted, and the
    /// count reported with the next message of a new second).
    fn limited(&mut self, msg: &str) {
        if self.window.elapsed() >= Duration::from_secs(1) {
            if self.suppressed > 0 {
                Self::raw(
                    libc::LOG_WARNING,
                    &format!(
                        "{} more refusals not copied to syslog (rate limit); see `sealtool audit`",
                        self.suppressed
                    ),
                );
            }
            self.window = Instant::now();
            self.sent = 0;
            self.suppressed = 0;
        }
        if self.sent < SYSLOG_PER_SEC {
            self.sent += 1;
            Self::raw(libc::LOG_WARNING, msg);
        } else {
            self.suppressed += 1;
        }
    }
}

/// The syslog line of a record.
pub fn syslog_message(r: &Record) -> String {
    match r {
        Record::Refusal(f) => format!(
            "refused: capsule={} op={} rule={} level={} path={} pid={} uid={} comm={}{}",
            f.capsule,
            f.op,
            f.rule,
            f.level,
            match &f.path {
                Some(p) => escape_bytes(p),
                None => format!(
                    "dev:{}:{}/ino:{}",
                    (f.dev & 0xffff_ffff) >> 20,
                    f.dev & 0xf_ffff,
                    f.ino
                ),
            },
            f.pid,
            f.uid,
            escape_bytes(&f.comm),
            if f.target_pid != 0 {
                format!(" target_pid={}", f.target_pid)
            } else {
                String::new()
            }
        ),
        Record::Lost(l) => format!(
            "lost: {} refusals not recorded one by one (ratelimited={} dropped={} taken={})",
            r.refusals(),
            l.ratelimited,
            l.dropped,
            l.taken
        ),
        Record::Finding(f) => format!("finding: {}", escape_bytes(f.what.as_bytes())),
    }
}

// ---------------------------------------------------------------------------- the cursor

/// What the log already accounts for of the kernel's lost-event counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Cursor {
    boot_id: Vec<u8>,
    ratelimited: u64,
    dropped: u64,
    /// The kernel's `events_sent` when stored (None: stored by a collector that did not
    /// count it).
    sent: Option<u64>,
    /// Of the events sent, how many the log accounts for (received, or counted as taken).
    accounted: u64,
    /// Where the collector was in the ring buffer (None: not stored), so that the next one
    /// goes on from there whatever another reader did to the shared position.
    ring_pos: Option<u64>,
}

/// Version 1: without `sent` and `accounted`; 2: without `ring_pos`.
const CURSOR_VERSION: u8 = 3;

impl Cursor {
    fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u8(CURSOR_VERSION);
        e.bytes(&self.boot_id);
        e.u64(self.ratelimited);
        e.u64(self.dropped);
        e.u64(self.sent.unwrap_or(0));
        e.u64(self.accounted);
        e.u64(self.ring_pos.unwrap_or(u64::MAX));
        e.into_inner()
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let mut d = Decoder::new(b);
        let version = d.u8("version").ok()?;
        if !(1..=CURSOR_VERSION).contains(&version) {
            return None;
        }
        let mut c = Cursor {
            boot_id: d.bytes("boot id").ok()?.to_vec(),
            ratelimited: d.u64("ratelimited").ok()?,
            dropped: d.u64("dropped").ok()?,
            ..Cursor::default()
        };
        if version >= 2 {
            c.sent = Some(d.u64("sent").ok()?);
            c.accounted = d.u64("accounted").ok()?;
        }
        if version >= 3 {
            c.ring_pos = Some(d.u64("ring position").ok()?).filter(|&p| p != u64::MAX);
        }
        d.finish("cursor").ok()?;
        Some(c)
    }

    /// Whether `now` counts on from this cursor: the same boot, and no counter lower (lower
    /// ones mean the guard was loaded anew).
    fn same_guard(&self, now: &Cursor) -> bool {
        self.boot_id == now.boot_id
            && now.ratelimited >= self.ratelimited
            && now.dropped >= self.dropped
            && now.sent.unwrap_or(0) >= self.sent.unwrap_or(0)
    }

    /// The growth since this cursor to `now`; all of `now` for another guard.
    fn delta(&self, now: &Cursor) -> (u64, u64) {
        if !self.same_guard(now) {
            return (now.ratelimited, now.dropped);
        }
        (
            now.ratelimited - self.ratelimited,
            now.dropped - self.dropped,
        )
    }

    /// The events the log accounts for once `received` more (since this cursor) are stored,
    /// and how many of those sent were taken by somebody else. Only when the ring buffer was
    /// emptied after `now`'s counters were read (`complete`) can a shortfall be told.
    fn events(&self, now: &Cursor, received: u64, complete: bool) -> (u64, u64) {
        let same = self.same_guard(now);
        let accounted = if same { self.accounted } else { 0 }.saturating_add(received);
        let sent = now.sent.unwrap_or(0);
        if same && self.sent.is_none() {
            // Nothing to count from (a collector that did not count): from here on.
            return (accounted.max(sent), 0);
        }
        if complete && sent > accounted {
            return (sent, sent - accounted);
        }
        (accounted, 0)
    }
}

fn boot_id() -> Vec<u8> {
    std::fs::read("/proc/sys/kernel/random/boot_id")
        .map(|b| b.trim_ascii().to_vec())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------- collecting

struct Collector {
    dir: PathBuf,
    reader: EventReader,
    mounts: Mounts,
    boot_id: Vec<u8>,
    pending: Vec<Record>,
    oldest: Option<Instant>,
    /// Undecodable ring buffer records since the last write (counted as dropped).
    bad: u64,
    /// Ring buffer records received since the stored cursor (decoded or not).
    received: u64,
    /// Whether the collector has read the stored cursor (where the last one was in the ring
    /// buffer); nothing is read from the ring before, however long the database stays busy:
    /// the ring holds the events meanwhile (and the kernel counts what no longer fits).
    resumed: bool,
    /// The cursor as stored in the log; `None` until read.
    cursor: Option<Cursor>,
    syslog: Syslog,
    last_counters: Instant,
    last_head_log: Option<Instant>,
    db_error_reported: bool,
}

impl Collector {
    fn record_of(&mut self, r: &Refusal) -> Record {
        let path = self.mounts.display_path(r);
        Record::Refusal(RefusalRecord {
            time_ns: events::boot_to_unix_ns(r.time_boot_ns),
            capsule: self.reader.capsule_name(r.capsule),
            op: events::op_name(r.op),
            rule: events::rule_name(r.rule),
            level: r.level,
            path,
            dev: r.dev,
            ino: r.ino,
            pid: r.pid,
            target_pid: r.target_pid,
            uid: r.uid,
            comm: r.comm.clone(),
            cgroup_id: r.cgroup_id,
        })
    }

    /// Reads what the ring buffer holds, as far as there is room; whether it is now empty.
    /// Nothing before the collector knows where the last one was (see resume).
    fn drain(&mut self) -> bool {
        if !self.resumed {
            self.resume();
            if !self.resumed {
                return false;
            }
        }
        let room = PENDING_MAX.saturating_sub(self.pending.len());
        if room == 0 {
            return false;
        }
        let mut raw = Vec::new();
        let mut bad = 0;
        let n = self.reader.drain(room, &mut raw, &mut bad);
        self.bad += bad;
        self.received += n as u64;
        if !raw.is_empty() && self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
        for r in &raw {
            let rec = self.record_of(r);
            self.pending.push(rec);
        }
        n < room
    }

    fn due(&self) -> bool {
        self.pending.len() >= BATCH_MAX
            || self.oldest.is_some_and(|t| t.elapsed() >= BATCH_AGE)
            || self.last_counters.elapsed() >= COUNTERS_EVERY
    }

    fn timeout(&self) -> Duration {
        let until_batch = self
            .oldest
            .map(|t| BATCH_AGE.saturating_sub(t.elapsed()))
            .unwrap_or(COUNTERS_EVERY);
        let until_counters = COUNTERS_EVERY.saturating_sub(self.last_counters.elapsed());
        until_batch
            .min(until_counters)
            .max(Duration::from_millis(1))
    }

    /// Before the first read: goes on from where the last collector of this guard was in the
    /// ring buffer (its stored cursor), not from the shared position anyone can move back.
    /// A busy database: tried again before the next read. No stored position (or one of
    /// another guard): the shared one.
    fn resume(&mut self) {
        let Ok(stats) = self.reader.counters() else {
            self.resumed = true;
            return;
        };
        let log = match AuditLog::open(&self.dir, DB_WAIT) {
            Ok(log) => log,
            Err(capsule_core::audit::Error::Busy { .. }) => return, // tried again later
            Err(_) => {
                self.resumed = true;
                return;
            }
        };
        self.resumed = true;
        let stored = log.cursor().ok().flatten().and_then(|b| Cursor::decode(&b));
        drop(log);
        let now = Cursor {
            boot_id: self.boot_id.clone(),
            ratelimited: stats.events_ratelimited,
            dropped: stats.events_dropped,
            sent: Some(stats.events_sent),
            ..Cursor::default()
        };
        if let Some(stored) = stored {
            if let (true, Some(pos)) = (stored.same_guard(&now), stored.ring_pos) {
                self.reader.resume(pos);
            }
            self.cursor = Some(stored);
        }
    }

    /// Writes what is pending, with a lost record for any counter growth. On a busy
    /// database nothing changes and the next call tries again.
    fn write(&mut self) -> Result<()> {
        self.last_counters = Instant::now();
        let stats = self.reader.counters()?;
        // After the counters: every event they count is now received, or somebody took it.
        let complete = self.drain();
        let mut now = Cursor {
            boot_id: self.boot_id.clone(),
            ratelimited: stats.events_ratelimited,
            dropped: stats.events_dropped,
            sent: Some(stats.events_sent),
            accounted: 0,
            ring_pos: self.reader.position(),
        };
        if let Some(c) = &self.cursor {
            let (accounted, taken) = c.events(&now, self.received, complete);
            now.accounted = accounted;
            if self.pending.is_empty() && self.bad == 0 && taken == 0 && *c == now {
                return Ok(());
            }
        }
        let log = match AuditLog::open(&self.dir, DB_WAIT) {
            Ok(l) => l,
            Err(capsule_core::audit::Error::Busy { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let stored = match &self.cursor {
            Some(c) => c.clone(),
            None => log
                .cursor()?
                .and_then(|b| Cursor::decode(&b))
                .unwrap_or_default(),
        };
        let (ratelimited, dropped) = stored.delta(&now);
        let dropped = dropped + self.bad;
        let (accounted, taken) = stored.events(&now, self.received, complete);
        now.accounted = accounted;
        let mut records = std::mem::take(&mut self.pending);
        let rewound = self.reader.take_rewound();
        if rewound > 0 {
            records.push(Record::Finding(FindingRecord {
                time_ns: now_unix_ns(),
                what: format!("another reader moved the refusal ring buffer's read position back by {rewound} bytes (records would have been read twice; the collector went on from its own position)"),
            }));
        }
        if ratelimited + dropped + taken > 0 {
            records.push(Record::Lost(LostRecord {
                time_ns: now_unix_ns(),
                ratelimited,
                dropped,
                taken,
            }));
        }
        match log.append(&records, Some(&now.encode())) {
            Ok(head) => {
                drop(log);
                self.cursor = Some(now);
                self.bad = 0;
                self.received = 0;
                self.oldest = None;
                for r in &records {
                    match r {
                        Record::Refusal(_) => self.syslog.limited(&syslog_message(r)),
                        // Taken: somebody else reads the refusals (an attack on the log).
                        Record::Lost(l) if l.taken > 0 => {
                            Syslog::raw(libc::LOG_ALERT, &syslog_message(r))
                        }
                        Record::Lost(_) => Syslog::raw(libc::LOG_WARNING, &syslog_message(r)),
                        // enforce sent its own to syslog itself; the collector's are alerts.
                        Record::Finding(f) if f.what.starts_with("another reader") => {
                            Syslog::raw(libc::LOG_ALERT, &syslog_message(r))
                        }
                        Record::Finding(_) => {}
                    }
                }
                self.head_to_syslog(head, false);
                self.db_error_reported = false;
                Ok(())
            }
            Err(e) => {
                // Keep everything for the next attempt.
                records.retain(|r| matches!(r, Record::Refusal(_)));
                self.pending = records;
                Err(e.into())
            }
        }
    }

    fn head_to_syslog(&mut self, head: Head, force: bool) {
        if force
            || self
                .last_head_log
                .is_none_or(|t| t.elapsed() >= HEAD_TO_SYSLOG_EVERY)
        {
            Syslog::raw(
                libc::LOG_INFO,
                &format!("audit log head: seq {} hash {}", head.seq, head.hex()),
            );
            self.last_head_log = Some(Instant::now());
        }
    }

    fn report(&mut self, e: &anyhow::Error) {
        // Once per run of failures: the collector keeps going.
        if !self.db_error_reported {
            eprintln!("sealtool audit: cannot store refusals (will retry): {e:#}");
            Syslog::raw(
                libc::LOG_ERR,
                &format!("audit: cannot store refusals (will retry): {e:#}"),
            );
            self.db_error_reported = true;
        }
    }
}

fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn stop_requested(sfd: &SignalFd) -> bool {
    let mut stop = false;
    while let Ok(Some(info)) = sfd.read_signal() {
        if info.ssi_signo == Signal::SIGTERM as u32 || info.ssi_signo == Signal::SIGINT as u32 {
            stop = true;
        }
    }
    stop
}

/// `sealtool audit --collect`.
pub fn run(ctx: &Context) -> Result<u8> {
    // A standby waiting for the lock holds nothing: signals still end it the default way.
    let _lock = InstanceLock::acquire(&ctx.registry_dir, ctx.quiet)?;
    // From here on, signals arrive through a descriptor polled with the ring buffer: blocked
    // before any thread starts (threads inherit the mask).
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGHUP);
    mask.thread_block().context("cannot block signals")?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("cannot create a signalfd")?;
    let pins = Path::new(PIN_DIR);
    let mut said = false;
    while !EventReader::is_pinned(pins) {
        if !said && !ctx.quiet {
            eprintln!(
                "sealtool audit: waiting for the guard (its maps are not pinned in {PIN_DIR})"
            );
            said = true;
        }
        std::thread::sleep(Duration::from_secs(1));
        if stop_requested(&sfd) {
            return Ok(0);
        }
    }
    let reader = EventReader::open(pins).map_err(|e| anyhow::anyhow!(fsguard::report(&e)))?;
    let mut c = Collector {
        dir: ctx.registry_dir.clone(),
        reader,
        mounts: Mounts::new(),
        boot_id: boot_id(),
        pending: Vec::new(),
        oldest: None,
        bad: 0,
        received: 0,
        resumed: false,
        cursor: None,
        syslog: Syslog::open(),
        // Compare the counters at once: what was lost while no collector ran.
        last_counters: Instant::now() - COUNTERS_EVERY,
        last_head_log: None,
        db_error_reported: false,
    };
    if !ctx.quiet {
        eprintln!(
            "sealtool audit: collecting refusals into {}",
            ctx.registry_dir.join("db").display()
        );
    }
    loop {
        let signalled = c
            .reader
            .wait(c.timeout(), Some(sfd.as_fd()))
            .map_err(|e| anyhow::anyhow!(fsguard::report(&e)))?;
        let stop = signalled && stop_requested(&sfd);
        c.drain();
        if c.due() || stop {
            if let Err(e) = c.write() {
                c.report(&e);
            }
        }
        if stop {
            // A last attempt at what is still pending, then the head as the final anchor.
            c.drain();
            let mut tries = 0;
            while (!c.pending.is_empty() || c.bad > 0) && tries < 25 {
                if let Err(e) = c.write() {
                    c.report(&e);
                }
                tries += 1;
            }
            if let Ok(log) = AuditLog::open(&c.dir, DB_WAIT) {
                if let Ok(head) = log.head() {
                    drop(log);
                    c.head_to_syslog(head, true);
                }
            }
            let left = c.pending.len();
            if left > 0 {
                eprintln!(
                    "sealtool audit: stopping with {left} refusals not stored (database busy)"
                );
                return Ok(crate::EXIT_ERROR);
            }
            return Ok(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_delta() {
        let c = |b: &[u8], r, d| Cursor {
            boot_id: b.to_vec(),
            ratelimited: r,
            dropped: d,
            ..Cursor::default()
        };
        assert_eq!(c(b"a", 10, 2).delta(&c(b"a", 15, 2)), (5, 0));
        // Another boot, or a guard loaded anew: everything counted now is new.
        assert_eq!(c(b"a", 10, 2).delta(&c(b"b", 3, 1)), (3, 1));
        assert_eq!(c(b"a", 10, 2).delta(&c(b"a", 3, 2)), (3, 2));
        // No cursor yet: all of it.
        assert_eq!(Cursor::default().delta(&c(b"a", 7, 1)), (7, 1));
        let x = Cursor {
            sent: Some(7),
            accounted: 6,
            ..c(b"boot", 1, 2)
        };
        assert_eq!(Cursor::decode(&x.encode()), Some(x));
        assert_eq!(Cursor::decode(b"junk"), None);
        // A version 1 cursor (no event counts) is still read.
        let mut v1 = Encoder::new();
        v1.u8(1);
        v1.bytes(b"boot");
        v1.u64(1);
        v1.u64(2);
        assert_eq!(Cursor::decode(&v1.into_inner()), Some(c(b"boot", 1, 2)));
    }

    #[test]
    fn events_taken_by_another_reader() {
        let at = |sent, accounted| Cursor {
            boot_id: b"a".to_vec(),
            sent: Some(sent),
            accounted,
            ..Cursor::default()
        };
        // 10 sent since 4 accounted for, 6 received: nothing taken.
        assert_eq!(at(4, 4).events(&at(10, 0), 6, true), (10, 0));
        // Only 2 received: 4 taken.
        assert_eq!(at(4, 4).events(&at(10, 0), 2, true), (10, 4));
        // The ring buffer not emptied (no room): nothing can be told yet.
        assert_eq!(at(4, 4).events(&at(10, 0), 2, false), (6, 0));
        // Received more than counted (sent after the counters were read): no shortfall,
        // and the next count starts from there.
        assert_eq!(at(4, 4).events(&at(10, 0), 8, true), (12, 0));
        assert_eq!(at(10, 12).events(&at(13, 0), 0, true), (13, 1));
        // Another guard (a count lower than the cursor's): counted from 0.
        assert_eq!(at(40, 40).events(&at(5, 0), 3, true), (5, 2));
        // A version 1 cursor of this boot: counted from here on.
        let v1 = Cursor {
            boot_id: b"a".to_vec(),
            ..Cursor::default()
        };
        assert_eq!(v1.events(&at(50, 0), 3, true), (50, 0));
    }

    #[test]
    fn syslog_lines_name_everything() {
        let r = Record::Refusal(RefusalRecord {
            capsule: "app".into(),
            op: "open-write".into(),
            rule: "outside".into(),
            level: 1,
            path: Some(b"/jails/app/file".to_vec()),
            pid: 12,
            uid: 1000,
            comm: b"sh".to_vec(),
            ..Default::default()
        });
        assert_eq!(
            syslog_message(&r),
            "refused: capsule=app op=open-write rule=outside level=1 path=/jails/app/file pid=12 uid=1000 comm=sh"
        );
    }
}
