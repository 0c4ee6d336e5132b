//! `sealtool list`: one line per capsule; damaged capsules (index and files disagree) by name,
//! with exit 2.

use anyhow::Result;
use capsule_core::display;
use capsule_core::registry::{Access, Registry};

use crate::output::human_bytes;
use crate::{Context, EXIT_ERROR};

pub fn run(ctx: &Context) -> Result<u8> {
    let reg = Registry::open(&ctx.registry_dir, Access::Read)?;
    super::note_index_copy(&reg);
    let all = reg.survey()?;
    if all.is_empty() {
        println!("no capsules registered in {}", display::path(reg.dir()));
        return Ok(0);
    }
    drop(reg);
    println!(
        "{:<20} {:<10} {:>9} {:>10}  {:<16}  ROOT",
        "NAME", "STATE", "ENTRIES", "BYTES", "DIGEST"
    );
    let mut damaged = Vec::new();
    for l in &all {
        match (&l.damage, &l.record) {
            (Some(why), _) => {
                println!("{:<20} {:<10} {why}", l.name, "DAMAGED");
                damaged.push(l.name.as_str());
            }
            (None, Some(r)) => println!(
                "{:<20} {:<10} {:>9} {:>10}  {:<16}  {}",
                r.name,
                r.state.name(),
                r.entries,
                human_bytes(r.bytes),
                r.digest.to_hex().get(..16).unwrap_or_default(),
                display::path(&r.root)
            ),
            (None, None) => {}
        }
    }
    if damaged.is_empty() {
        return Ok(0);
    }
    eprintln!(
        "sealtool: damaged capsules (their index and their files disagree): {}; run `sealtool registry rebuild`",
        damaged.join(", ")
    );
    Ok(EXIT_ERROR)
}
