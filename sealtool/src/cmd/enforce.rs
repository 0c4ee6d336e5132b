//! `sealtool enforce [--boot]`: load every sealed capsule from the registry into the kernel.
//! Idempotent. `--boot` is what init runs: each tree is verified first and drift is reported
//! loudly (enforcement goes on regardless), then the guard is raised to the configured level.

use anyhow::Result;
use capsule_core::check;
use capsule_core::display;
use capsule_core::registry::{Access, CapsuleState, Registry};
use capsule_core::walk::Progress;
use fsguard::enforce;
use fsguard::guard::Guard;

use crate::{Context, EXIT_DRIFT, EXIT_NOT_ENFORCED};

#[derive(clap::Args)]
pub struct Args {
    /// Boot mode: report drift loudly, then raise the level the registry configures
    #[arg(long)]
    boot: bool,
}

/// What enforcing the registry did, for one summary line.
pub struct Summary {
    pub capsules: usize,
    pub inodes: usize,
    pub drifted: Vec<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sealed capsules enforced, {} inodes protected",
            self.capsules, self.inodes
        )?;
        if !self.drifted.is_empty() {
            write!(f, "; DRIFT in {}", self.drifted.join(", "))?;
        }
        Ok(())
    }
}

/// Hands every sealed capsule to `guard`. Each tree is re-walked for its live identities;
/// with `loud`, drift is printed entry by entry on stderr.
pub fn enforce_all(
    ctx: &Context,
    reg: &Registry,
    guard: &mut Guard,
    loud: bool,
) -> Result<Summary> {
    let _ = ctx;
    let mut summary = Summary {
        capsules: 0,
        inodes: 0,
        drifted: Vec::new(),
    };
    for rec in reg
        .list()?
        .into_iter()
        .filter(|r| r.state == CapsuleState::Sealed)
    {
        let manifest = reg.load_manifest(&rec)?;
        let seal = reg.seal_record(&rec)?;
        let (report, drift) = check::against_manifest(&manifest, &Progress::default())?;
        if !drift.is_empty() {
            summary.drifted.push(rec.name.clone());
            if loud {
                eprintln!(
                    "sealtool: DRIFT: sealed capsule {} at {} differs from its manifest in {} places (enforcing anyway):",
                    rec.name,
                    display::path(&rec.root),
                    drift.len()
                );
                for d in &drift {
                    eprintln!(
                        "sealtool: DRIFT:   {} {}: {}",
                        d.kind.name(),
                        display::rel_path(&d.path),
                        d.detail
                    );
                }
            }
        }
        let plan = enforce::plan(&report.tree, &report.root, &seal)?;
        enforce::apply(guard, &plan)?;
        summary.capsules += 1;
        summary.inodes += plan.inodes.len();
    }
    Ok(summary)
}

pub fn run(ctx: &Context, args: Args) -> Result<u8> {
    let reg = Registry::open(&ctx.registry_dir, Access::Write)?;
    if let Err(why) = fsguard::check_support() {
        println!("enforcement is NOT active: {why}");
        return Ok(EXIT_NOT_ENFORCED);
    }
    let configured = reg.configured_level()?;
    let initial = configured.unwrap_or(fsguard::shared::FSGUARD_LEVEL_SEALED);
    let (mut guard, loaded_now) = Guard::open_or_load(initial)?;
    let summary = enforce_all(ctx, &reg, &mut guard, args.boot)?;
    if args.boot {
        if let Some(level) = configured {
            if guard.level()? < level {
                guard.raise_level(level)?;
            }
        }
    }
    println!(
        "fsguard {} at level {}; {summary}",
        if loaded_now {
            "loaded"
        } else {
            "already loaded"
        },
        guard.level()?
    );
    Ok(if summary.drifted.is_empty() {
        0
    } else {
        EXIT_DRIFT
    })
}
