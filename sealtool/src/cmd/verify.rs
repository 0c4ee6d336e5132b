//! `sealtool verify [NAME...] [--all] [--json]`: exit 0 clean, 1 drift, 2 error.

use anyhow::Result;
use capsule_core::diff::{self, Drift};
use capsule_core::display;
use capsule_core::glob::GlobSet;
use capsule_core::manifest::ManifestBytes;
use capsule_core::registry::{Access, CapsuleRecord, Registry};
use capsule_core::walk::{self, WalkOptions};
use serde_json::json;

use crate::{progress, Context, EXIT_ERROR};

#[derive(clap::Args)]
pub struct Args {
    /// Capsules to verify [default: all]
    names: Vec<String>,
    /// Verify every registered capsule
    #[arg(long, conflicts_with = "names")]
    all: bool,
    /// Print one JSON document instead of text
    #[arg(long)]
    json: bool,
}

enum Outcome {
    Clean { entries: usize },
    Drift(Vec<Drift>),
    Error(String),
}

/// A capsule's record and manifest, or why they could not be read. The manifest is kept
/// encoded (checked, not decoded): a fraction of the memory of its entries.
type Loaded = Result<(CapsuleRecord, ManifestBytes), String>;

struct Checked {
    name: String,
    rec: Option<CapsuleRecord>,
    /// Where the manifest puts the tree.
    root: Option<std::path::PathBuf>,
    outcome: Outcome,
}

pub fn run(ctx: &Context, args: Args) -> Result<u8> {
    // Read what is needed and release the registry before the (long) walks.
    let jobs: Vec<(String, Loaded)> = {
        let reg = Registry::open(&ctx.registry_dir, Access::Read)?;
        let names: Vec<String> = if args.names.is_empty() {
            reg.list()?.into_iter().map(|r| r.name).collect()
        } else {
            args.names.clone()
        };
        names
            .into_iter()
            .map(|n| {
                let loaded = reg
                    .require(&n)
                    .and_then(|rec| {
                        // What `Registry::load_manifest` checks, without decoding it.
                        let path = reg.manifest_path(&rec.name, &rec.digest);
                        ManifestBytes::read(&path, &rec.name, &rec.digest).map(|m| (rec, m))
                    })
                    .map_err(|e| e.to_string());
                (n, loaded)
            })
            .collect()
    };
    let mut results = Vec::new();
    for (name, loaded) in jobs {
        let checked = match loaded {
            Err(e) => Checked {
                name,
                rec: None,
                root: None,
                outcome: Outcome::Error(e),
            },
            Ok((rec, manifest)) => {
                let outcome = check(ctx, &rec, &manifest);
                Checked {
                    name,
                    rec: Some(rec),
                    root: Some(manifest.root.clone()),
                    outcome,
                }
            }
        };
        results.push(checked);
    }
    let code = results
        .iter()
        .map(|c| match c.outcome {
            Outcome::Clean { .. } => 0,
            Outcome::Drift(_) => 1,
            Outcome::Error(_) => EXIT_ERROR,
        })
        .max()
        .unwrap_or(0);
    if args.json {
        print_json(&results, code);
    } else {
        print_text(&results);
    }
    Ok(code)
}

fn check(ctx: &Context, rec: &CapsuleRecord, manifest: &ManifestBytes) -> Outcome {
    let excludes = match GlobSet::new(&manifest.excludes) {
        Ok(g) => g,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    // Unreadable entries are walked as such so that they show up as drift, not abort.
    let opts = WalkOptions {
        excludes,
        skip_unreadable: true,
    };
    let shown = progress::Display::start(&format!("verifying {}", rec.name), ctx.quiet);
    // The tree is where its manifest says: the index (which root may rewrite at every level)
    // only helps find the manifest. The walk is kept packed and compared entry by entry with
    // the recorded encoding.
    let walked = walk::walk_packed(&manifest.root, &opts, &shown.counters);
    drop(shown);
    let report = match walked {
        Err(e) => return Outcome::Error(e.to_string()),
        Ok(report) => report,
    };
    let outcome = match diff::diff_packed(manifest, &report.tree) {
        Err(e) => Outcome::Error(format!("cannot compare with the manifest: {e}")),
        Ok(drift) if drift.is_empty() => Outcome::Clean {
            entries: report.tree.len(),
        },
        Ok(drift) => Outcome::Drift(drift),
    };
    if rec.root == manifest.root {
        return outcome;
    }
    let tree = match &outcome {
        Outcome::Clean { entries } => format!("clean ({entries} entries)"),
        Outcome::Drift(d) => format!("DRIFT ({} differences)", d.len()),
        Outcome::Error(e) => format!("ERROR: {e}"),
    };
    Outcome::Error(format!(
        "the registry index is damaged: it puts the tree at {} but its manifest at {}; \
         the tree there is {tree}; run `sealtool registry rebuild`",
        display::path(&rec.root),
        display::path(&manifest.root)
    ))
}

fn print_text(results: &[Checked]) {
    if results.is_empty() {
        println!("no capsules registered");
    }
    for c in results {
        match &c.outcome {
            Outcome::Clean { entries } => println!("{}: clean ({entries} entries)", c.name),
            Outcome::Drift(d) => {
                println!("{}: DRIFT ({} differences)", c.name, d.len());
                for x in d {
                    println!(
                        "  {:<14} {}: {}",
                        x.kind.name(),
                        display::rel_path(&x.path),
                        x.detail
                    );
                }
            }
            Outcome::Error(e) => println!("{}: ERROR: {e}", c.name),
        }
    }
}

fn print_json(results: &[Checked], code: u8) {
    let capsules: Vec<_> = results
        .iter()
        .map(|c| {
            let mut v = json!({
                "name": c.name,
                "root": c.root.as_ref().map(|r| display::path(r)),
                "digest": c.rec.as_ref().map(|r| r.digest.to_hex()),
            });
            match &c.outcome {
                Outcome::Clean { entries } => {
                    v["status"] = json!("clean");
                    v["entries"] = json!(entries);
                    v["drift"] = json!([]);
                }
                Outcome::Drift(d) => {
                    v["status"] = json!("drift");
                    v["drift"] = d
                        .iter()
                        .map(|x| json!({"path": display::rel_path(&x.path), "change": x.kind.name(), "detail": x.detail}))
                        .collect();
                }
                Outcome::Error(e) => {
                    v["status"] = json!("error");
                    v["error"] = json!(e);
                }
            }
            v
        })
        .collect();
    let status = match code {
        0 => "clean",
        1 => "drift",
        _ => "error",
    };
    let doc = json!({"version": 1, "status": status, "capsules": capsules});
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
}
