//! `sealtool audit`: show, follow, collect and check the audit log of refusals.
//!
//! The log lives in the registry database (capsule_core::audit); the collector that fills it
//! from the guard's ring buffer is in [`collect`] (`--collect` runs it in the foreground,
//! [`ensure_collector_running`] starts it in the background). Showing and following only
//! read the log, opening the database briefly each time, so that the collector and other
//! sealtool commands can use it in between.

mod collect;

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use capsule_core::audit::{AuditLog, Check, Entry, Record, DEFAULT_WAIT};
use capsule_core::display::escape_bytes;
use serde_json::json;

use crate::{Context, EXIT_DRIFT};

pub use collect::{ensure_collector_running, syslog_error};

/// Starts the collector once the guard runs; a failure is a warning, not the command's.
pub fn start_collector(ctx: &Context) {
    if let Err(e) = ensure_collector_running(ctx) {
        eprintln!("sealtool: warning: the audit collector is not running: {e:#}");
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Keep running and print new records as they are stored
    #[arg(long, short)]
    follow: bool,
    /// Only records from TIME on: RFC 3339 (2026-11-28T19:00:00Z), Unix seconds, or an age
    /// (30s, 10m, 2h, 1d)
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    since: Option<u64>,
    /// Only refusals concerning this capsule (lost-count records are always shown)
    #[arg(long, value_name = "NAME")]
    capsule: Option<String>,
    /// One JSON object per line
    #[arg(long)]
    json: bool,
    /// Re-walk the hash chain: exit 0 and print the head when intact, exit 1 naming the
    /// first bad record otherwise
    #[arg(long, conflicts_with_all = ["follow", "since", "capsule", "collect"])]
    check: bool,
    /// Run the collector in the foreground (what the systemd unit runs): store refusals
    /// from the guard's ring buffer in the log until SIGTERM
    #[arg(long, conflicts_with_all = ["follow", "since", "capsule", "json"])]
    collect: bool,
}

pub fn run(ctx: &Context, args: Args) -> Result<u8> {
    if args.collect {
        return collect::run(ctx);
    }
    if args.check {
        return check(ctx, args.json);
    }
    show(ctx, &args)
}

fn check(ctx: &Context, json: bool) -> Result<u8> {
    let log = AuditLog::open_read(&ctx.registry_dir, DEFAULT_WAIT)?;
    note_copy(ctx, &log);
    let result = log.check()?;
    drop(log);
    match result {
        Check::Intact { records, head } => {
            if json {
                println!(
                    "{}",
                    json!({"intact": true, "records": records, "head_seq": head.seq, "head_hash": head.hex()})
                );
            } else {
                println!(
                    "audit log intact: {records} records, head {} {}",
                    head.seq,
                    head.hex()
                );
            }
            Ok(0)
        }
        Check::Tampered { seq, reason } => {
            if json {
                println!(
                    "{}",
                    json!({"intact": false, "first_bad_seq": seq, "reason": reason})
                );
            } else {
                println!("audit log TAMPERED at record {seq}: {reason}");
            }
            Ok(EXIT_DRIFT)
        }
    }
}

/// Says on stderr when a registry that refuses writes was read through a copy of its log.
fn note_copy(ctx: &Context, log: &AuditLog) {
    if log.copied_to().is_some() {
        eprintln!(
            "sealtool: note: {} refuses writes: its audit log was read from a copy",
            capsule_core::display::path(&ctx.registry_dir)
        );
    }
}

/// How often `--follow` looks for new records.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

fn show(ctx: &Context, args: &Args) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    let mut last = 0u64;
    loop {
        {
            let log = AuditLog::open_read(&ctx.registry_dir, DEFAULT_WAIT)?;
            if last == 0 {
                note_copy(ctx, &log);
            }
            for entry in log.entries_after(last) {
                let entry = entry?;
                last = entry.seq;
                if !selected(&entry.record, args) {
                    continue;
                }
                let line = if args.json {
                    json_line(&entry).to_string()
                } else {
                    human_line(&entry)
                };
                writeln!(out, "{line}").context("cannot write to standard output")?;
            }
        }
        out.flush().context("cannot write to standard output")?;
        if !args.follow {
            return Ok(0);
        }
        std::thread::sleep(FOLLOW_EVERY);
    }
}

fn selected(r: &Record, args: &Args) -> bool {
    if args.since.is_some_and(|t| r.time_ns() < t) {
        return false;
    }
    match (r, &args.capsule) {
        (Record::Refusal(f), Some(name)) => &f.capsule == name,
        _ => true,
    }
}

/// RFC 3339 UTC with microseconds.
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let micros = ns % 1_000_000_000 / 1000;
    let base = crate::output::time(secs);
    let stem = base.strip_suffix('Z').unwrap_or(&base);
    format!("{stem}.{micros:06}Z")
}

fn dev_string(dev: u64) -> String {
    let dev = dev & 0xffff_ffff;
    format!("{}:{}", dev >> 20, dev & 0xf_ffff)
}

/// What a refusal was about: its path, the target process, or the device and inode.
fn object(r: &capsule_core::audit::RefusalRecord) -> String {
    match &r.path {
        Some(p) => escape_bytes(p),
        None if r.target_pid != 0 => format!("process {}", r.target_pid),
        None => format!("dev {} ino {}", dev_string(r.dev), r.ino),
    }
}

/// One line for a person.
pub fn human_line(e: &Entry) -> String {
    match &e.record {
        Record::Refusal(r) => format!(
            "{} #{} {} {} refused ({}, level {}): {} by pid {} uid {} comm {}",
            rfc3339(r.time_ns),
            e.seq,
            r.capsule,
            r.op,
            r.rule,
            r.level,
            object(r),
            r.pid,
            r.uid,
            escape_bytes(&r.comm),
        ),
        Record::Lost(l) => format!(
            "{} #{} lost: {} refusals not recorded one by one ({} beyond the rate limit, {} with the ring buffer full{})",
            rfc3339(l.time_ns),
            e.seq,
            e.record.refusals(),
            l.ratelimited,
            l.dropped,
            if l.taken > 0 {
                format!(", {} TAKEN from the ring buffer by another reader or never stored", l.taken)
            } else {
                String::new()
            }
        ),
        Record::Finding(f) => format!(
            "{} #{} finding: {}",
            rfc3339(f.time_ns),
            e.seq,
            escape_bytes(f.what.as_bytes())
        ),
    }
}

/// One JSON object.
pub fn json_line(e: &Entry) -> serde_json::Value {
    match &e.record {
        Record::Refusal(r) => json!({
            "seq": e.seq,
            "time": rfc3339(r.time_ns),
            "time_ns": r.time_ns,
            "kind": "refusal",
            "capsule": r.capsule,
            "op": r.op,
            "rule": r.rule,
            "level": r.level,
            "path": r.path.as_deref().map(escape_bytes),
            "dev": dev_string(r.dev),
            "ino": r.ino,
            "pid": r.pid,
            "target_pid": r.target_pid,
            "uid": r.uid,
            "comm": escape_bytes(&r.comm),
            "cgroup_id": r.cgroup_id,
        }),
        Record::Lost(l) => json!({
            "seq": e.seq,
            "time": rfc3339(l.time_ns),
            "time_ns": l.time_ns,
            "kind": "lost",
            "ratelimited": l.ratelimited,
            "dropped": l.dropped,
            "taken": l.taken,
        }),
        Record::Finding(f) => json!({
            "seq": e.seq,
            "time": rfc3339(f.time_ns),
            "time_ns": f.time_ns,
            "kind": "finding",
            "what": f.what,
        }),
    }
}

// ------------------------------------------------------------------------------ --since

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn parse_since(s: &str) -> Result<u64, String> {
    parse_since_at(s, now_ns())
}

const NS: u64 = 1_000_000_000;

/// `--since` as nanoseconds since the epoch, with `now` for relative ages.
fn parse_since_at(s: &str, now: u64) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty time".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = s.parse().map_err(|_| format!("{s:?} is too large"))?;
        return secs
            .checked_mul(NS)
            .ok_or_else(|| format!("{s:?} is too large"));
    }
    // The unit is the last character, whatever its width (`5µ` must not split a character).
    let unit_at = s.char_indices().last().map_or(0, |(i, _)| i);
    let (num, unit) = s.split_at(unit_at);
    if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) {
        let unit_s = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
        };
        let n: u64 = num.parse().map_err(|_| format!("{s:?} is too large"))?;
        let age = n
            .checked_mul(unit_s)
            .and_then(|v| v.checked_mul(NS))
            .ok_or_else(|| format!("{s:?} is too large"))?;
        return Ok(now.saturating_sub(age));
    }
    parse_rfc3339(s).ok_or_else(|| {
        format!("{s:?} is not a time: use RFC 3339 (2026-11-28T19:00:00Z), Unix seconds, or an age like 10m")
    })
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn num(s: &str, digits: usize) -> Option<i64> {
    (s.len() == digits && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)` as nanoseconds since the epoch.
fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.as_bytes();
    if s.len() < 20 || !matches!(s[10], b'T' | b't' | b' ') {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    let (date, rest) = (&text[..10], &text[11..]);
    let mut d = date.split('-');
    let (y, mo, day) = (num(d.next()?, 4)?, num(d.next()?, 2)?, num(d.next()?, 2)?);
    if d.next().is_some() {
        return None;
    }
    let (h, mi, sec) = (
        num(rest.get(0..2)?, 2)?,
        num(rest.get(3..5)?, 2)?,
        num(rest.get(6..8)?, 2)?,
    );
    if rest.get(2..3)? != ":" || rest.get(5..6)? != ":" {
        return None;
    }
    let mut rest = &rest[8..];
    let mut frac_ns = 0i64;
    if let Some(f) = rest.strip_prefix('.') {
        let digits = f.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let kept = &f[..digits.min(9)];
        frac_ns = kept.parse::<i64>().ok()? * 10i64.pow(9 - kept.len() as u32);
        rest = &f[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6
            && (o.starts_with('+') || o.starts_with('-'))
            && o.get(3..4) == Some(":") =>
        {
            let (oh, om) = (num(o.get(1..3)?, 2)?, num(o.get(4..6)?, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let v = oh * 3600 + om * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let month_days = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo)
        || day < 1
        || day > month_days[(mo - 1) as usize]
        || (mo == 2 && day == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let secs = days_from_civil(y, mo, day) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    let secs = u64::try_from(secs).ok()?;
    secs.checked_mul(NS)?
        .checked_add(u64::try_from(frac_ns).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use capsule_core::audit::{LostRecord, RefusalRecord};

    #[test]
    fn since_forms() {
        let now = 1_800_000_000 * NS;
        assert_eq!(
            parse_since_at("2026-11-28T19:00:00Z", now),
            Ok(1_795_892_400 * NS)
        );
        assert_eq!(
            parse_since_at("2026-11-28T20:00:00+01:00", now),
            Ok(1_795_892_400 * NS)
        );
        assert_eq!(
            parse_since_at("2026-11-28T19:00:00.5Z", now),
            Ok(1_795_892_400 * NS + NS / 2)
        );
        assert_eq!(parse_since_at("1970-01-01T00:00:00Z", now), Ok(0));
        assert!(parse_since_at("2024-02-29T00:00:00Z", now).is_ok());
        assert!(parse_since_at("2000-02-29T00:00:00Z", now).is_ok());
        assert_eq!(parse_since_at("1700000000", now), Ok(1_700_000_000 * NS));
        assert_eq!(parse_since_at("10m", now), Ok(now - 600 * NS));
        assert_eq!(parse_since_at("2h", now), Ok(now - 7200 * NS));
        assert_eq!(parse_since_at("30s", now), Ok(now - 30 * NS));
        assert_eq!(parse_since_at("1d", now), Ok(now - 86_400 * NS));
        for bad in [
            "",
            "yesterday",
            "10x",
            "m",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "1970-01-01T00:00:00-99:00",
            "2026-11-28T19:00:00+01:60",
            "2026-11-28T19:00:00",
            "2026-11-28 19:00",
            "2026-11-28T25:00:00Z",
            "99999999999999999999",
            "-5m",
            "5µ",
            "µ",
            "10µs",
            "2026-11-28T19:00:00+0é00",
            "2026-11-28T19:00:00+01é0",
            "2026-11-28T19:00:00.é",
            "2026-11-28Té9:00:00Z",
            "18446744073709551615d",
            "18446744073709551616",
        ] {
            assert!(parse_since_at(bad, now).is_err(), "{bad:?} accepted");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        /// Any input, ASCII-like or not, is answered without a panic; accepted ages never lie
        /// in the future.
        #[test]
        fn since_never_panics(s in "\\PC{0,40}", t in "[0-9:.TZ+ µé-]{0,30}", now in proptest::prelude::any::<u64>()) {
            for input in [&s, &t] {
                if let Ok(v) = parse_since_at(input, now) {
                    if input.trim().ends_with(['s', 'm', 'h', 'd']) {
                        proptest::prop_assert!(v <= now);
                    }
                }
            }
        }
    }

    #[test]
    fn rfc3339_round_trips_through_the_parser() {
        let t = 1_795_892_400 * NS + 123_456_000;
        assert_eq!(rfc3339(t), "2026-11-28T19:00:00.123456Z");
        assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
    }

    #[test]
    fn lines() {
        let e = Entry {
            seq: 7,
            record: Record::Refusal(RefusalRecord {
                time_ns: 0,
                capsule: "app".into(),
                op: "unlink".into(),
                rule: "outside".into(),
                level: 1,
                path: None,
                dev: (8 << 20) | 1,
                ino: 12,
                pid: 5,
                target_pid: 0,
                uid: 1000,
                comm: b"rm\n".to_vec(),
                cgroup_id: 3,
            }),
        };
        let h = human_line(&e);
        assert!(
            h.contains("#7 app unlink refused (outside, level 1): dev 8:1 ino 12"),
            "{h}"
        );
        assert!(h.contains("comm rm\\x0a"), "{h}");
        let j = json_line(&e);
        assert_eq!(j["path"], serde_json::Value::Null);
        assert_eq!(j["dev"], "8:1");
        assert_eq!(j["kind"], "refusal");
        let l = Entry {
            seq: 8,
            record: Record::Lost(LostRecord {
                time_ns: 0,
                ratelimited: 10,
                dropped: 1,
                taken: 0,
            }),
        };
        assert!(human_line(&l).contains("lost: 11 refusals"));
        assert_eq!(json_line(&l)["ratelimited"], 10);
    }
}
