//! `sealtool list`: one line per capsule.

use anyhow::Result;
use capsule_core::display;
use capsule_core::registry::{Access, Registry};

use crate::output::human_bytes;
use crate::Context;

pub fn run(ctx: &Context) -> Result<u8> {
    let reg = Registry::open(&ctx.registry_dir, Access::Read)?;
    let all = reg.list()?;
    if all.is_empty() {
        println!("no capsules registered in {}", display::path(reg.dir()));
        return Ok(0);
    }
    println!(
        "{:<20} {:<10} {:>9} {:>10}  {:<16}  ROOT",
        "NAME", "STATE", "ENTRIES", "BYTES", "DIGEST"
    );
    for r in all {
        println!(
            "{:<20} {:<10} {:>9} {:>10}  {:<16}  {}",
            r.name,
            r.state.name(),
            r.entries,
            human_bytes(r.bytes),
            &r.digest.to_hex()[..16],
            display::path(&r.root)
        );
    }
    Ok(0)
}
