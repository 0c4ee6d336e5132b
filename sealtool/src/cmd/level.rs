//! `sealtool level [N]`: show the guard's level, or raise it. Lowering is refused.
//!
//! 0: root outside a capsule may still modify sealed trees (a maintenance runway);
//! 1: nobody outside may; 2: the guard itself is locked down too.

use anyhow::Result;
use capsule_core::registry::{Access, Registry};
use fsguard::guard::Guard;

use crate::cmd::enforce::enforce_all;
use crate::{Context, EXIT_NOT_ENFORCED};

#[derive(clap::Args)]
pub struct Args {
    /// The level to raise to (0, 1 or 2)
    level: Option<u32>,
}

pub fn run(ctx: &Context, args: Args) -> Result<u8> {
    let Some(requested) = args.level else {
        return show(ctx);
    };
    if requested > fsguard::shared::FSGUARD_LEVEL_LOCKED {
        return Err(fsguard::Error::NoSuchLevel { requested }.into());
    }
    let reg = Registry::open(&ctx.registry_dir, Access::Write)?;
    if let Err(why) = fsguard::check_support() {
        println!("level not changed: kernel enforcement is NOT available: {why}");
        return Ok(EXIT_NOT_ENFORCED);
    }
    let (mut guard, loaded_now) = Guard::open_or_load(requested)?;
    guard.raise_level(requested)?;
    // Boot enforcement raises the guard to the highest level ever asked for.
    if reg.configured_level()?.is_none_or(|l| l < requested) {
        reg.set_configured_level(requested)?;
    }
    if loaded_now {
        // The guard was not running: every sealed capsule is enforced from now on too.
        let summary = enforce_all(ctx, &reg, &mut guard, false)?;
        println!("fsguard loaded at level {requested}; {summary}");
    } else {
        println!("level {requested}");
    }
    Ok(0)
}

fn show(ctx: &Context) -> Result<u8> {
    match Guard::open()? {
        Some(g) => {
            println!("{}", g.level()?);
            Ok(0)
        }
        None => {
            let configured = Registry::open(&ctx.registry_dir, Access::Read)?.configured_level()?;
            let configured = configured
                .map(|l| format!(", configured level {l}"))
                .unwrap_or_default();
            println!("fsguard is not loaded{configured}");
            Ok(EXIT_NOT_ENFORCED)
        }
    }
}
