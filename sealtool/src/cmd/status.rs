//! `sealtool status`: is kernel enforcement active, at which level, for which capsules.

use anyhow::Result;
use capsule_core::display;
use capsule_core::manifest::ManifestBytes;
use capsule_core::registry::{Access, Registry};
use fsguard::guard::Guard;

use crate::{Context, EXIT_ERROR, EXIT_NOT_ENFORCED};

pub fn run(ctx: &Context) -> Result<u8> {
    // What is sealed comes from the seal files (as at boot), each with where its sealed
    // manifest puts the tree, or why that can't be read; the index is only compared with
    // the files (Registry::survey), and every capsule where they disagree is named.
    let (sealed, unusable, survey_damage) = {
        let dir = &ctx.registry_dir;
        if !dir.is_dir() {
            anyhow::bail!("no registry at {}", display::path(dir));
        }
        let files = capsule_core::registry::seals_in(dir);
        let sealed: Vec<_> = files
            .seals
            .iter()
            .map(|seal| {
                let path = capsule_core::registry::manifest_path_in(dir, &seal.name, &seal.digest);
                let root = ManifestBytes::read(&path, &seal.name, &seal.digest)
                    .map(|m| m.root)
                    .map_err(|e| e.to_string());
                (seal.name.clone(), root)
            })
            .collect();
        // A damaged index is reported, and changes nothing above.
        // In a thread of its own, for a bounded time: sled on a crafted database can panic
        // or block for good, and status must still answer.
        let survey = crate::cmd::bounded(crate::cmd::INDEX_WAIT, {
            let dir = dir.clone();
            move || {
                Registry::open(&dir, Access::Read)
                    .and_then(|reg| reg.survey())
                    .map_err(|e| e.to_string())
            }
        });
        let damage: Vec<(String, String)> = match survey {
            Ok(listed) => listed
                .into_iter()
                .filter_map(|l| l.damage.map(|d| (l.name, d)))
                .collect(),
            Err(e) => vec![("(the index)".to_string(), e)],
        };
        (sealed, files.bad, damage)
    };
    let mut damaged = !unusable.is_empty() || !survey_damage.is_empty();
    // The guard is identified by the kernel's ids and tags (Guard::open): absent, this
    // build's (pins and all), hidden (attached, but the pins are not visible here), or pins
    // that are not it. Only the first two are told apart from an error.
    let (guard, why_not) = match fsguard::check_support() {
        Err(why) => (None, Some(why.to_string())),
        Ok(()) => match Guard::find() {
            Ok(Some(g)) => (Some(g), None),
            Ok(None) => (
                None,
                Some("fsguard is not loaded (run `sealtool enforce`)".into()),
            ),
            Err(e @ fsguard::Error::Hidden { .. }) => {
                println!("enforcement  active but HIDDEN: {}", fsguard::report(&e));
                damaged = true;
                (None, None)
            }
            Err(e @ fsguard::Error::NotThis { .. }) => {
                println!("enforcement  NOT vouched for: {}", fsguard::report(&e));
                damaged = true;
                (None, None)
            }
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
                "enforcement  active (fsguard, this build's; pinned at {}, checked against the kernel's attached programs by id and tag)",
                display::path(g.pin_dir())
            );
            println!("level        {}", g.level()?);
            println!(
                "refusals     {} (not reported: {} over the rate limit, {} with the ring buffer full); inodes added by inside creation {}, released {}",
                s.denied, s.events_ratelimited, s.events_dropped, s.inherited, s.released
            );
        }
        None => {
            if let Some(why) = why_not {
                println!("enforcement  NOT active: {why}");
            }
        }
    }
    if sealed.is_empty() {
        println!("no sealed capsules");
    }
    for (name, root) in &sealed {
        let slot = slots.iter().find(|s| s.name == *name);
        let state = match slot {
            Some(s) if s.tainted() => {
                damaged = true;
                format!("TAINTED (slot {}): a request slipped in while it was sealed; nothing runs inside until the next boot", s.id)
            }
            Some(s) if !s.complete() => {
                all_enforced = false;
                format!("being sealed (slot {}): its tree is not all in", s.id)
            }
            Some(s) => format!("enforced (slot {})", s.id),
            None => {
                all_enforced = false;
                "NOT enforced".to_string()
            }
        };
        let at = match root {
            Ok(root) => display::path(root),
            Err(e) => {
                damaged = true;
                format!("(manifest unreadable: {e})")
            }
        };
        println!("capsule      {name:<20} {state:<22} {at}");
    }
    for (path, why) in &unusable {
        println!(
            "seal file    {} is unusable and NOT enforced: {why}",
            display::path(path)
        );
    }
    for (name, why) in &survey_damage {
        println!("damaged      {name:<20} {why} (run `sealtool registry rebuild`)");
    }
    Ok(if damaged {
        EXIT_ERROR
    } else if all_enforced {
        0
    } else {
        EXIT_NOT_ENFORCED
    })
}
