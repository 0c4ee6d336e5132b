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
    Clean {
        entries: usize,
    },
    Drift(Vec<Drift>),
    Error(String),
    /// The index and the manifest and seal files disagree: nothing is trusted.
    Damaged(String),
}

/// A capsule's record and manifest, or why they could not be read. The manifest is kept
/// encoded (checked, not decoded): a fraction of the memory of its entries.
type Loaded = Result<(CapsuleRecord, ManifestBytes), String>;

/// What is checked for one name: its record and manifest, and its damage if any.
struct Job {
    name: String,
    loaded: Loaded,
    damage: Option<String>,
}

struct Checked {
    name: String,
    rec: Option<CapsuleRecord>,
    /// Where the manifest puts the tree.
    root: Option<std::path::PathBuf>,
    outcome: Outcome,
}

pub fn run(ctx: &Context, args: Args) -> Result<u8> {
    // Read what is needed and release the registry before the (long) walks.
    let jobs: Vec<Job> = {
        let reg = Registry::open(&ctx.registry_dir, Access::Read)?;
        super::note_index_copy(&reg);
        // Every capsule the index or the files know of: one whose index record is missing is
        // damaged, never left out.
        let listed = if args.names.is_empty() {
            reg.survey()?.into_iter().map(Ok).collect()
        } else {
            let mut v = Vec::new();
            for n in &args.names {
                v.push(reg.inspect(n)?.ok_or_else(|| {
                    (
                        n.clone(),
                        capsule_core::Error::UnknownCapsule { name: n.clone() }.to_string(),
                    )
                }));
            }
            v
        };
        listed
            .into_iter()
            .map(|l| match l {
                Err((name, e)) => Job {
                    name,
                    loaded: Err(e),
                    damage: None,
                },
                Ok(l) => {
                    let loaded = match l.record {
                        None => Err(l.damage.clone().unwrap_or_default()),
                        Some(rec) => {
                            // What `Registry::load_manifest` checks, without decoding it.
                            let path = reg.manifest_path(&rec.name, &rec.digest);
                            ManifestBytes::read(&path, &rec.name, &rec.digest)
                                .map(|m| (rec, m))
                                .map_err(|e| e.to_string())
                        }
                    };
                    Job {
                        name: l.name,
                        loaded,
                        damage: l.damage,
                    }
                }
            })
            .collect()
    };
    let mut results = Vec::new();
    for job in jobs {
        let name = job.name;
        let checked = match (job.loaded, job.damage) {
            (Err(e), damage) => Checked {
                name,
                rec: None,
                root: None,
                outcome: match damage {
                    Some(d) => Outcome::Damaged(format!("{d}; run `sealtool registry rebuild`")),
                    None => Outcome::Error(e),
                },
            },
            (Ok((rec, manifest)), damage) => {
                let mut outcome = check(ctx, &rec, &manifest);
                if let Some(d) = damage {
                    // The tree is walked where the manifest the index names puts it, for
                    // information only.
                    let tree = match &outcome {
                        Outcome::Clean { entries } => format!("clean ({entries} entries)"),
                        Outcome::Drift(d) => format!("DRIFT ({} differences)", d.len()),
                        Outcome::Error(e) | Outcome::Damaged(e) => format!("ERROR: {e}"),
                    };
                    outcome = Outcome::Damaged(format!(
                        "{d}; the tree at {} is {tree}; run `sealtool registry rebuild`",
                        display::path(&manifest.root)
                    ));
                }
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
            Outcome::Error(_) | Outcome::Damaged(_) => EXIT_ERROR,
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
        identities_only: false,
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
    match diff::diff_packed(manifest, &report.tree) {
        Err(e) => Outcome::Error(format!("cannot compare with the manifest: {e}")),
        Ok(drift) if drift.is_empty() => Outcome::Clean {
            entries: report.tree.len(),
        },
        Ok(drift) => Outcome::Drift(drift),
    }
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
            Outcome::Damaged(e) => println!("{}: DAMAGED: {e}", c.name),
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
                "state": c.rec.as_ref().map(|r| r.state.name()),
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
                Outcome::Damaged(e) => {
                    v["status"] = json!("damaged");
                    v["error"] = json!(e);
                }
            }
            v
        })
        .collect();
    let damaged: Vec<&str> = results
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Damaged(_)))
        .map(|c| c.name.as_str())
        .collect();
    let status = match code {
        0 => "clean",
        1 => "drift",
        _ => "error",
    };
    let doc = json!({"version": 1, "status": status, "damaged": damaged, "capsules": capsules});
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
}
