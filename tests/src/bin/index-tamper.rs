//! index-tamper: test helper that damages a registry's sled index the way root can at every
//! level (it is derived data, never protected), so that the guest suites can check that boot
//! enforcement and `status` stand on the seal files alone.
//!
//! ```text
//! index-tamper junk REGISTRY NAME       an undecodable record under NAME
//! index-tamper root REGISTRY NAME PATH  capsule NAME's record, its root rewritten to PATH
//! index-tamper hold REGISTRY            keeps the index open (sled's lock held) until killed
//! index-tamper seal REGISTRY NAME CGROUP a seal file for NAME's only manifest naming CGROUP,
//!                                       written as root can where `manifests/` takes new
//!                                       capsules (no check sealtool would make)
//! ```
//!
//! Prints one line saying what it did; exit 0, 1 on a failure, 64 on a usage error.

use std::path::Path;
use std::process::ExitCode;

use capsule_core::manifest::Digest;
use capsule_core::policy::SealRecord;
use capsule_core::registry::CapsuleRecord;

fn usage() -> ExitCode {
    eprintln!("usage: index-tamper junk REGISTRY NAME | root REGISTRY NAME PATH | hold REGISTRY | seal REGISTRY NAME CGROUP");
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

/// Writes the seal file of capsule `name`'s only manifest, naming `cgroup` as its inside.
fn forge_seal(reg: &Path, name: &str, cgroup: &str) -> Result<String, String> {
    let dir = reg.join("manifests").join(name);
    let manifests: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "manifest"))
        .collect();
    let [manifest] = manifests.as_slice() else {
        return Err(format!("{}: not exactly one manifest", dir.display()));
    };
    let stem = manifest.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let digest = Digest::from_hex(stem).ok_or_else(|| format!("{stem}: not a digest"))?;
    let seal = SealRecord {
        name: name.to_string(),
        digest,
        cgroup: Some(cgroup.into()),
        frozen: Vec::new(),
        sealed_at: 1,
        exec: Default::default(),
        exec_from: Vec::new(),
    };
    let path = dir.join(format!("{stem}.seal"));
    std::fs::write(&path, seal.encode()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!(
        "{} written, naming cgroup {cgroup}",
        path.display()
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = match args.as_slice() {
        ["junk", reg, name] => tamper(Path::new(reg), name, None),
        ["root", reg, name, path] => tamper(Path::new(reg), name, Some(path)),
        ["seal", reg, name, cgroup] => forge_seal(Path::new(reg), name, cgroup),
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
