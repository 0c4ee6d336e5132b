//! `sealtool register PATH [--name NAME] [--exclude GLOB]... [--skip-unreadable]
//!  [--seal [--cgroup PATH] [--frozen GLOB]...]`

use std::path::PathBuf;

use anyhow::Result;
use capsule_core::display;
use capsule_core::glob::GlobSet;
use capsule_core::manifest::PackedManifest;
use capsule_core::registry::{self, Access, Registry};
use capsule_core::walk::{self, WalkOptions};

use crate::output::human_bytes;
use crate::progress;
use crate::Context;

#[derive(clap::Args)]
pub struct Args {
    /// The capsule's root directory
    path: PathBuf,
    /// Capsule name [default: the last component of PATH]
    #[arg(long)]
    name: Option<String>,
    /// Leave matching entries out of the capsule (repeatable; see manifests/FORMAT.md)
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Record unreadable entries as such instead of failing
    #[arg(long)]
    skip_unreadable: bool,
    /// Seal the capsule at once (see `sealtool seal`)
    #[arg(long)]
    seal: bool,
    #[command(flatten)]
    seal_options: crate::cmd::seal::SealOptions,
}

pub fn run(ctx: &Context, args: Args) -> Result<u8> {
    let root = walk::resolve_root(&args.path)?;
    let name = match args.name {
        Some(n) => n,
        None => root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    registry::validate_name(&name)?;
    if !args.seal && (args.seal_options.cgroup.is_some() || !args.seal_options.frozen.is_empty()) {
        anyhow::bail!("--cgroup and --frozen go with --seal");
    }
    // A sealed capsule is never registered again: say so before hashing the whole tree.
    if Registry::has_seal_file(&ctx.registry_dir, &name)? {
        return Err(capsule_core::Error::Sealed {
            name,
            action: "re-registering",
        }
        .into());
    }
    let opts = WalkOptions {
        excludes: GlobSet::new(&args.exclude)?,
        skip_unreadable: args.skip_unreadable,
    };
    // The walk is kept packed and the manifest file is streamed from it.
    let report = {
        let shown = progress::Display::start("hashing", ctx.quiet);
        walk::walk_packed(&root, &opts, &shown.counters)?
    };
    let manifest = PackedManifest {
        name,
        root: report.root,
        registered_at: registry::now(),
        tree: report.tree,
    };
    let reg = Registry::open(&ctx.registry_dir, Access::Write)?;
    let rec = reg.register_packed(&manifest)?;
    println!("registered {}", rec.name);
    println!("  root     {}", display::path(&rec.root));
    println!("  entries  {}", rec.entries);
    println!("  bytes    {} ({})", rec.bytes, human_bytes(rec.bytes));
    println!("  digest   {}", rec.digest);
    for m in &report.mount_points {
        println!(
            "  note: {} is a mount point: recorded as a boundary, not descended",
            display::rel_path(m)
        );
    }
    for u in &report.unreadable {
        println!(
            "  note: {} is unreadable: recorded as such",
            display::rel_path(u)
        );
    }
    if args.seal {
        // Same registry lock: nothing can come between the registration and the seal.
        return crate::cmd::seal::seal(ctx, &reg, &rec.name, &args.seal_options);
    }
    crate::cmd::level::relock_registry_if_locked(&reg)?;
    Ok(0)
}
