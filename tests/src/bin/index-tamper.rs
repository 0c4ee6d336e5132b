//! index-tamper: test helper that damages a registry's sled index the way root can at every
//! level (it is derived data, never protected), so that the guest suites can check that boot
//! enforcement and `status` stand on the seal files alone.
//!
//! ```text
//! index-tamper junk REGISTRY NAME       an undecodable record under NAME
//! index-tamper root REGISTRY NAME PATH  capsule NAME's record, its root rewritten to PATH
//! index-tamper hold REGISTRY            keeps the index open (sled's lock held) until killed
//! ```
//!
//! Prints one line saying what it did; exit 0, 1 on a failure, 64 on a usage error.

use std::path::Path;
use std::process::ExitCode;

use capsule_core::registry::CapsuleRecord;

fn usage() -> ExitCode {
    eprintln!("usage: index-tamper junk REGISTRY NAME | root REGISTRY NAME PATH | hold REGISTRY");
    ExitCode::from(64)
}

fn tamper(reg: &Path, name: &str, root: Option<&str>) -> Result<String, String> {
    let db = sled::open(reg.join("db")).map_err(|e| format!("open the index: {e}"))?;
    let tree = db
        .open_tree("capsules")
        .map_err(|e| format!("open the capsules tree: {e}"))?;
    let value = match root {
        None => b"\xffjunk, no record at all".to_vec(),
        Some(path) => {
            let old = tree
                .get(name.as_bytes())
                .map_err(|e| format!("read {name}: {e}"))?
                .ok_or_else(|| format!("no record {name}"))?;
            let mut rec = CapsuleRecord::decode(&old).map_err(|e| format!("decode {name}: {e}"))?;
            rec.root = path.into();
            rec.encode()
        }
    };
    tree.insert(name.as_bytes(), value)
        .map_err(|e| format!("write {name}: {e}"))?;
    db.flush().map_err(|e| format!("flush: {e}"))?;
    Ok(match root {
        None => format!("junk record {name}"),
        Some(p) => format!("record {name} now names root {p}"),
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = match args.as_slice() {
        ["junk", reg, name] => tamper(Path::new(reg), name, None),
        ["root", reg, name, path] => tamper(Path::new(reg), name, Some(path)),
        ["hold", reg] => match sled::open(Path::new(reg).join("db")) {
            Ok(_db) => {
                println!("holding the index");
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            }
            Err(e) => Err(format!("open the index: {e}")),
        },
        _ => return usage(),
    };
    match r {
        Ok(what) => {
            println!("{what}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("index-tamper: {e}");
            ExitCode::from(1)
        }
    }
}
