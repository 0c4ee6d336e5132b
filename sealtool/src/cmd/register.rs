//! `sealtool register PATH [--name NAME] [--exclude GLOB]... [--skip-unreadable] [--update]
//!  [--seal [--cgroup PATH] [--frozen GLOB]...]`
//!
//! A baseline changes only on purpose: registering an existing name whose tree differs from
//! its manifest lists the differences and exits 1 without changing anything, unless
//! `--update` is given; an unchanged tree rewrites nothing. Earlier manifests are kept.

use std::path::PathBuf;

use anyhow::Result;
use capsule_core::diff;
use capsule_core::display;
use capsule_core::glob::GlobSet;
use capsule_core::manifest::{ManifestBytes, PackedManifest};
use capsule_core::registry::{self, Access, Registry};
use capsule_core::walk::{self, WalkOptions};

use crate::output::{human_bytes, time};
use crate::progress;
use crate::{Context, EXIT_DRIFT};

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
    /// Make this tree the capsule's baseline even though it differs from the registered one
    /// (the previous manifest is kept)
    #[arg(long)]
    update: bool,
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
        identities_only: false,
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
    let rec = match compare_with_current(&reg, &manifest, args.update)? {
        Current::Unchanged(rec) => {
            println!(
                "{}: unchanged since {} ({}): nothing rewritten",
                rec.name,
                time(rec.registered_at),
                rec.digest
            );
            if args.seal {
                return crate::cmd::seal::seal(ctx, &reg, &rec.name, &args.seal_options);
            }
            return Ok(0);
        }
        Current::Refused => return Ok(EXIT_DRIFT),
        Current::New | Current::Update => reg.register_packed(&manifest)?,
    };
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

/// What an existing registration of the same name means for this one.
enum Current {
    /// No capsule of that name: a new one.
    New,
    /// The same tree at the same root: nothing to write.
    Unchanged(capsule_core::registry::CapsuleRecord),
    /// It differs and `--update` was given.
    Update,
    /// It differs and `--update` was not given: the differences were printed.
    Refused,
}

/// Compares the walked tree with the capsule's current manifest, printing the differences.
/// A damaged capsule (index and files disagree) is refused: its baseline is unknown.
fn compare_with_current(reg: &Registry, new: &PackedManifest, update: bool) -> Result<Current> {
    let Some(listed) = reg.inspect(&new.name)? else {
        return Ok(Current::New);
    };
    let rec = reg.require_sound(&listed.name)?;
    let path = reg.manifest_path(&rec.name, &rec.digest);
    let current = ManifestBytes::read(&path, &rec.name, &rec.digest)?;
    let digest = new.digest();
    if digest == rec.digest && current.root == new.root {
        return Ok(Current::Unchanged(rec));
    }
    let drift = diff::diff_packed(&current, &new.tree)
        .map_err(|e| anyhow::anyhow!("{}: cannot compare: {e}", display::path(&path)))?;
    let mut changes: Vec<String> = drift
        .iter()
        .map(|d| {
            format!(
                "  {:<14} {}: {}",
                d.kind.name(),
                display::rel_path(&d.path),
                d.detail
            )
        })
        .collect();
    if current.root != new.root {
        changes.push(format!(
            "  {:<14} the root was {}, now {}",
            "root",
            display::path(&current.root),
            display::path(&new.root)
        ));
    }
    if current.excludes != new.tree.excludes {
        changes.push(format!(
            "  {:<14} were [{}], now [{}]",
            "excludes",
            current.excludes.join(" "),
            new.tree.excludes.join(" ")
        ));
    }
    println!(
        "{}: the tree differs from its registered manifest ({}, {}) in {} places",
        rec.name,
        rec.digest,
        time(rec.registered_at),
        changes.len()
    );
    for c in &changes {
        println!("{c}");
    }
    if update {
        println!(
            "  updating the baseline (the previous manifest {} is kept)",
            rec.digest
        );
        return Ok(Current::Update);
    }
    println!(
        "not registered: nothing changed; run `sealtool verify {0}` to review, and `sealtool register --update` to make this tree the baseline of {0}",
        rec.name
    );
    Ok(Current::Refused)
}
