//! `sealtool status`: is kernel enforcement active, at which level, for which capsules.

use anyhow::Result;
use capsule_core::display;
use capsule_core::registry::{Access, CapsuleState, Registry};
use fsguard::guard::Guard;

use crate::{Context, EXIT_NOT_ENFORCED};

pub fn run(ctx: &Context) -> Result<u8> {
    let sealed: Vec<_> = {
        let reg = Registry::open(&ctx.registry_dir, Access::Read)?;
        reg.list()?
            .into_iter()
            .filter(|r| r.state == CapsuleState::Sealed)
            .collect()
    };
    let (guard, why_not) = match fsguard::check_support() {
        Err(why) => (None, Some(why.to_string())),
        Ok(()) => match Guard::open() {
            Ok(Some(g)) => (Some(g), None),
            Ok(None) => (
                None,
                Some("fsguard is not loaded (run `sealtool enforce`)".into()),
            ),
            Err(e) => (None, Some(fsguard::report(&e))),
        },
    };
    let slots = match &guard {
        Some(g) => g.capsules()?,
        None => Vec::new(),
    };
    let mut all_enforced = guard.is_some();
    match &guard {
        Some(g) => {
            let s = g.stats()?;
            println!(
                "enforcement  active (fsguard, pinned at {})",
                display::path(g.pin_dir())
            );
            println!("level        {}", g.level()?);
            println!(
                "refusals     {} (not reported: {} over the rate limit, {} with the ring buffer full); inodes added by inside creation {}, released {}",
                s.denied, s.events_ratelimited, s.events_dropped, s.inherited, s.released
            );
        }
        None => println!("enforcement  NOT active: {}", why_not.unwrap_or_default()),
    }
    if sealed.is_empty() {
        println!("no sealed capsules");
    }
    for r in &sealed {
        let slot = slots.iter().find(|s| s.name == r.name);
        let state = match slot {
            Some(s) => format!("enforced (slot {})", s.id),
            None => {
                all_enforced = false;
                "NOT enforced".to_string()
            }
        };
        println!(
            "capsule      {:<20} {:<22} {}",
            r.name,
            state,
            display::path(&r.root)
        );
    }
    Ok(if all_enforced { 0 } else { EXIT_NOT_ENFORCED })
}
