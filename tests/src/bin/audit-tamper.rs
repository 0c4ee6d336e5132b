//! audit-tamper: test helper that writes into a registry's audit log from outside sealtool,
//! so the tests can check what `sealtool audit` shows and what `sealtool audit --check`
//! detects. sealtool itself has no way to add or change records: this is the attacker (and
//! the fixture maker) of the tests.
//!
//! ```text
//! audit-tamper inject REGISTRY N   append N made-up refusals and one lost record through
//!                                  capsule-core's audit API (what the collector does)
//! audit-tamper edit REGISTRY SEQ   flip one byte of record SEQ's body in the sled tree
//! audit-tamper remove REGISTRY SEQ delete record SEQ from the sled tree
//! ```
//!
//! Prints one line saying what it did; exit 0, 1 on a failure, 64 on a usage error.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use capsule_core::audit::{AuditLog, LostRecord, Record, RefusalRecord, TREE};

fn usage() -> ExitCode {
    eprintln!("usage: audit-tamper inject|edit|remove REGISTRY N|SEQ");
    ExitCode::from(64)
}

fn inject(reg: &Path, n: u64) -> Result<String, String> {
    let log = AuditLog::open(reg, Duration::from_secs(30)).map_err(|e| e.to_string())?;
    let mut records: Vec<Record> = (0..n)
        .map(|i| {
            Record::Refusal(RefusalRecord {
                // 2026-11-28T19:00:00Z + i seconds.
                time_ns: (1_795_892_400 + i) * 1_000_000_000,
                capsule: if i % 2 == 0 { "app" } else { "db" }.into(),
                op: "open-write".into(),
                rule: "outside".into(),
                level: 1,
                path: Some(format!("/jails/app/file{i}").into_bytes()),
                dev: 45,
                ino: 1000 + i,
                pid: 4242,
                target_pid: 0,
                uid: 1000,
                comm: b"sh".to_vec(),
                cgroup_id: 77,
            })
        })
        .collect();
    records.push(Record::Lost(LostRecord {
        time_ns: (1_795_892_400 + n) * 1_000_000_000,
        ratelimited: 5000,
        dropped: 7,
        taken: 0,
    }));
    let head = log.append(&records, None).map_err(|e| e.to_string())?;
    Ok(format!(
        "injected {} records, head {}",
        records.len(),
        head.seq
    ))
}

fn raw_tree(reg: &Path) -> Result<(sled::Db, sled::Tree), String> {
    let db = sled::open(reg.join("db")).map_err(|e| e.to_string())?;
    let tree = db.open_tree(TREE).map_err(|e| e.to_string())?;
    Ok((db, tree))
}

fn edit(reg: &Path, seq: u64) -> Result<String, String> {
    let (db, tree) = raw_tree(reg)?;
    let key = seq.to_be_bytes();
    let mut v = tree
        .get(key)
        .map_err(|e| e.to_string())?
        .ok_or(format!("no record {seq}"))?
        .to_vec();
    // The byte 40 before the end lies in the record body (the chain hash is the last 32).
    let at = v.len().checked_sub(40).ok_or("record too short")?;
    v[at] ^= 0x01;
    tree.insert(key, v).map_err(|e| e.to_string())?;
    db.flush().map_err(|e| e.to_string())?;
    Ok(format!("edited record {seq}"))
}

fn remove(reg: &Path, seq: u64) -> Result<String, String> {
    let (db, tree) = raw_tree(reg)?;
    tree.remove(seq.to_be_bytes())
        .map_err(|e| e.to_string())?
        .ok_or(format!("no record {seq}"))?;
    db.flush().map_err(|e| e.to_string())?;
    Ok(format!("removed record {seq}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [op, reg, n] = args.as_slice() else {
        return usage();
    };
    let Ok(n) = n.parse::<u64>() else {
        return usage();
    };
    let reg = Path::new(reg);
    let result = match op.as_str() {
        "inject" => inject(reg, n),
        "edit" => edit(reg, n),
        "remove" => remove(reg, n),
        _ => return usage(),
    };
    match result {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("audit-tamper: {e}");
            ExitCode::FAILURE
        }
    }
}
