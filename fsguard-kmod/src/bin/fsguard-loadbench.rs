//! fsguard-loadbench N [LEVEL]: loads N synthetic inode identities into the guard (a capsule slot of
//! its own, on a device number no filesystem uses, so they match no file) and prints how long
//! it took. Guest only (scripts/bench-fsguard): shows that loading a million entries takes
//! seconds and, with the workload around it, that per-operation cost does not grow with them.
//! The fsguard suite fills the map with it (it then fails: the guard rejects what is over),
//! and loads the guard again with it after an in-place upgrade. LEVEL: the level a guard
//! loaded now starts at (0 to 2, default 1), as `sealtool level` would load it; a guard
//! already loaded keeps its own.

use std::process::ExitCode;
use std::time::Instant;

use fsguard::guard::{Guard, Protected};
use fsguard::shared::{fsguard_inode_key, FSGUARD_LEVEL_LOCKED, FSGUARD_LEVEL_SEALED};

/// Kernel dev_t 0:0xfffff: the last anonymous minor, never handed out in a test guest.
const UNUSED_DEV: u64 = 0xfffff;
/// Identities built and submitted at a time.
const CHUNK: u64 = 1 << 18;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [n] => n.parse().ok().map(|n| (n, FSGUARD_LEVEL_SEALED)),
        [n, level] => n.parse().ok().zip(level.parse().ok()),
        _ => None,
    };
    let parsed = parsed.filter(|&(_, level): &(u64, u32)| level <= FSGUARD_LEVEL_LOCKED);
    let Some((n, initial_level)) = parsed else {
        eprintln!("usage: fsguard-loadbench N [LEVEL]");
        return ExitCode::from(2);
    };
    let result = (|| -> fsguard::Result<f64> {
        let (mut guard, _) = Guard::open_or_load(initial_level)?;
        let slot = guard.ensure_capsule("loadbench", None)?;
        // In chunks, so that filling the whole map (the fsguard suite's full-map checks)
        // needs no gigabyte of requests at once.
        let mut secs = 0.0;
        let mut first = 1;
        while first <= n {
            let last = n.min(first + CHUNK - 1);
            let inodes: Vec<Protected> = (first..=last)
                .map(|ino| Protected {
                    key: fsguard_inode_key {
                        dev: UNUSED_DEV,
                        ino,
                    },
                    flags: 0,
                })
                .collect();
            let start = Instant::now();
            guard.protect(slot, &inodes)?;
            secs += start.elapsed().as_secs_f64();
            first = last + 1;
        }
        Ok(secs)
    })();
    match result {
        Ok(secs) => {
            println!(
                "loaded {n} inodes in {secs:.2}s ({:.0} per second)",
                n as f64 / secs.max(1e-9)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fsguard-loadbench: {}", fsguard::report(&e));
            ExitCode::FAILURE
        }
    }
}
