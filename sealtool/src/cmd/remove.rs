//! `sealtool remove NAME`: forget an unsealed capsule (its record and manifests). A sealed
//! capsule can never be removed.

use anyhow::Result;
use capsule_core::registry::{Access, Registry};

use crate::Context;

#[derive(clap::Args)]
pub struct Args {
    name: String,
}

pub fn run(ctx: &Context, args: Args) -> Result<u8> {
    let reg = Registry::open(&ctx.registry_dir, Access::Write)?;
    let rec = reg.remove(&args.name)?;
    println!(
        "removed {} (the tree at {} is untouched)",
        rec.name,
        rec.root.display()
    );
    Ok(0)
}
