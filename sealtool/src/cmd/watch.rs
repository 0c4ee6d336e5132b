//! `sealtool watch [NAME...] [--json]`: watch sealed trees and report each change as it
//! happens, then how the changed paths compare with their manifests. Detection only: where
//! the kernel does not enforce a seal, changes are reported, not prevented.
//!
//! Runs until SIGINT or SIGTERM (exit 0); exits 2 on an error, or when every watched root
//! is gone.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use anyhow::Result;
use capsule_core::display;
use capsule_core::registry::{Access, Registry};
use capsule_core::watch::{Report, Target, Watch};
use fsguard::guard::Guard;
use serde_json::json;

use crate::{Context, EXIT_ERROR};

#[derive(clap::Args)]
pub struct Args {
    /// Capsules to watch [default: every sealed capsule]; a registered capsule that is not
    /// sealed is watched only when named
    names: Vec<String>,
    /// Print one JSON object per line instead of text
    #[arg(long)]
    json: bool,
}

/// The signal that asked us to stop (0: none yet).
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(sig, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` only performs an atomic store, which is async-signal-safe;
        // `signal` is given a valid handler for a catchable signal.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

struct Chosen {
    target: Target,
    sealed: bool,
}

pub fn run(ctx: &Context, args: Args) -> Result<u8> {
    // Read what is needed and release the registry: other sealtool commands need it while
    // we watch.
    let chosen: Vec<Chosen> = {
        let reg = Registry::open(&ctx.registry_dir, Access::Read)?;
        // A capsule whose index and files disagree is not silently left unwatched.
        let damaged: Vec<String> = reg
            .survey()?
            .into_iter()
            .filter_map(|l| l.damage.map(|d| format!("{}: {d}", l.name)))
            .collect();
        if !damaged.is_empty() {
            anyhow::bail!(
                "damaged capsules, not watched (run `sealtool registry rebuild`): {}",
                damaged.join("; ")
            );
        }
        let records = if args.names.is_empty() {
            let mut sealed = Vec::new();
            for r in reg.list()? {
                if reg.is_sealed(&r.name)? {
                    sealed.push(r);
                }
            }
            sealed
        } else {
            let mut seen = BTreeSet::new();
            let mut v = Vec::new();
            for n in &args.names {
                if seen.insert(n.as_str()) {
                    v.push(reg.require(n)?);
                }
            }
            v
        };
        let mut chosen = Vec::new();
        for rec in records {
            let sealed = reg.is_sealed(&rec.name)?;
            let manifest = reg.load_manifest(&rec)?;
            chosen.push(Chosen {
                target: Target {
                    name: rec.name,
                    manifest,
                },
                sealed,
            });
        }
        chosen
    };
    if chosen.is_empty() {
        anyhow::bail!(
            "no sealed capsules to watch (name a registered capsule to watch it unsealed)"
        );
    }
    let enforced = enforced_capsules();
    let sealed: Vec<(String, bool)> = chosen
        .iter()
        .map(|c| (c.target.name.clone(), c.sealed))
        .collect();
    install_signal_handlers();
    let mut watch = Watch::start(chosen.into_iter().map(|c| c.target).collect())?;
    banner(&watch, &sealed, &enforced, args.json);
    loop {
        let sig = STOP.load(Ordering::SeqCst);
        if sig != 0 {
            let name = if sig == libc::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            if args.json {
                println!("{}", json!({"event": "stopped", "signal": name}));
            } else {
                eprintln!("sealtool watch: stopped ({name})");
            }
            return Ok(0);
        }
        for r in watch.poll(Duration::from_millis(100))? {
            if args.json {
                println!("{}", to_json(&r));
            } else {
                println!("{}", to_text(&r));
            }
        }
        if watch.is_empty() {
            if args.json {
                println!(
                    "{}",
                    json!({"event": "stopped", "reason": "nothing left to watch"})
                );
            }
            eprintln!("sealtool: error: nothing left to watch: every watched capsule root is gone");
            return Ok(EXIT_ERROR);
        }
    }
}

/// Names of the capsules the kernel enforces now (empty where it cannot).
fn enforced_capsules() -> Vec<String> {
    if fsguard::check_support().is_err() {
        return Vec::new();
    }
    match Guard::open() {
        Ok(Some(g)) => g
            .capsules()
            .map(|slots| slots.into_iter().map(|s| s.name).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn banner(watch: &Watch, sealed: &[(String, bool)], enforced: &[String], json: bool) {
    let is_sealed = |n: &str| sealed.iter().any(|(s, ok)| s == n && *ok);
    let is_enforced = |n: &str| enforced.iter().any(|e| e == n);
    if json {
        let capsules: Vec<_> = watch
            .watched()
            .map(|w| {
                json!({
                    "name": w.name,
                    "root": display::path(w.root),
                    "sealed": is_sealed(w.name),
                    "enforced": is_enforced(w.name),
                    "watches": w.watches,
                })
            })
            .collect();
        println!(
            "{}",
            json!({"event": "watching", "capsules": capsules, "prevents": false})
        );
        return;
    }
    let list: Vec<String> = watch
        .watched()
        .map(|w| format!("{} ({})", w.name, display::path(w.root)))
        .collect();
    eprintln!(
        "watching {} capsule(s): {} — detection only: changes are reported, not prevented",
        list.len(),
        list.join(", ")
    );
    for w in watch.watched() {
        if !is_sealed(w.name) {
            eprintln!(
                "note: {} is registered but not sealed: watched against its registered manifest",
                w.name
            );
        }
        if is_enforced(w.name) {
            eprintln!(
                "note: the kernel (fsguard) already prevents changes to {} from outside; this only reports",
                w.name
            );
        }
    }
}

fn to_text(r: &Report) -> String {
    match r {
        Report::Change {
            capsule,
            path,
            kind,
            ..
        } => format!("{capsule}: {} {}", kind.name(), display::path(path)),
        Report::Drift {
            capsule,
            path,
            drift,
        } => format!(
            "{capsule}: drift {} {} ({})",
            drift.kind.name(),
            display::path(path),
            drift.detail
        ),
        Report::Clean {
            capsule,
            path,
            back: true,
            ..
        } => format!("{capsule}: back to sealed state {}", display::path(path)),
        Report::Clean { capsule, path, .. } => {
            format!("{capsule}: matches the seal {}", display::path(path))
        }
        Report::Unverified {
            capsule,
            path,
            reason,
            ..
        } => format!(
            "{capsule}: cannot verify {}: {reason}",
            display::path(path)
        ),
        Report::RootGone {
            capsule,
            root,
            reason,
        } => format!(
            "{capsule}: root {} is gone ({reason}); no longer watched",
            display::path(root)
        ),
        Report::Rescan { capsule } => format!(
            "{capsule}: the kernel dropped events (inotify queue overflow); examining the whole tree again"
        ),
    }
}

fn to_json(r: &Report) -> serde_json::Value {
    match r {
        Report::Change {
            capsule,
            path,
            rel,
            kind,
        } => json!({
            "event": "change",
            "capsule": capsule,
            "path": display::path(path),
            "rel": display::rel_path(rel),
            "kind": kind.name(),
        }),
        Report::Drift {
            capsule,
            path,
            drift,
        } => json!({
            "event": "drift",
            "capsule": capsule,
            "path": display::path(path),
            "rel": display::rel_path(&drift.path),
            "class": drift.kind.name(),
            "detail": drift.detail,
        }),
        Report::Clean {
            capsule,
            path,
            rel,
            back,
        } => json!({
            "event": "clean",
            "capsule": capsule,
            "path": display::path(path),
            "rel": display::rel_path(rel),
            "back": back,
        }),
        Report::Unverified {
            capsule,
            path,
            rel,
            reason,
        } => json!({
            "event": "unverified",
            "capsule": capsule,
            "path": display::path(path),
            "rel": display::rel_path(rel),
            "reason": reason,
        }),
        Report::RootGone {
            capsule,
            root,
            reason,
        } => json!({
            "event": "root-gone",
            "capsule": capsule,
            "path": display::path(root),
            "reason": reason,
        }),
        Report::Rescan { capsule } => json!({"event": "rescan", "capsule": capsule}),
    }
}
