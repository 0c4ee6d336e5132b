//! `sealtool level [N]`: show the guard's level, or raise it. Lowering is refused.
//!
//! 0: root outside a capsule may still modify sealed trees (a maintenance runway);
//! 1: nobody outside may; 2: the guard itself is locked down too.

use anyhow::Result;
use capsule_core::registry::Registry;
use fsguard::guard::Guard;

use crate::cmd::enforce::enforce_all;
use crate::{Context, EXIT_NOT_ENFORCED};

#[derive(clap::Args)]
pub struct Args {
    /// The level to raise to (0, 1 or 2)
    level: Option<u32>,
}

pub fn run(ctx: &Context, args: Args) -> Result<u8> {
    let result = run_level(ctx, args);
    // What loading the guard here found wrong with the registry (enforce_all).
    crate::cmd::enforce::record_findings(&ctx.registry_dir);
    result
}

fn run_level(ctx: &Context, args: Args) -> Result<u8> {
    let Some(requested) = args.level else {
        return show(ctx);
    };
    if requested > fsguard::shared::FSGUARD_LEVEL_LOCKED {
        return Err(fsguard::Error::NoSuchLevel { requested }.into());
    }
    let dir = &ctx.registry_dir;
    if let Err(why) = fsguard::check_support() {
        println!("level not changed: kernel enforcement is NOT available: {why}");
        return Ok(EXIT_NOT_ENFORCED);
    }
    if requested >= fsguard::shared::FSGUARD_LEVEL_LOCKED {
        refuse_carried_storage(dir)?;
    }
    if requested >= fsguard::shared::FSGUARD_LEVEL_SEALED {
        let carried = carried_past_level_1(dir);
        if !carried.is_empty() {
            anyhow::bail!(
                "level not raised: what is there now would go on past what level {requested} refuses to make: {}",
                carried.join("; ")
            );
        }
    }
    // Nothing here waits on the sled index (a crafted one can block or panic sled): the
    // guard, the seal files and the level file are what the raise needs. The index is only
    // compared with the seal files afterwards, in a bounded thread, to report.
    // Boot enforcement raises the guard to the highest level ever asked for: recorded first
    // (the next boot raises to it whatever happens below), and a failure to record it stops
    // nothing that follows.
    let recorded = capsule_core::registry::raise_configured_level_in(dir, requested);
    let (mut guard, loaded_now) = Guard::open_or_load(requested)?;
    let from = guard.level()?;
    guard.raise_level(requested)?;
    // Made while the raise was under way: what the raise refuses when it is there before.
    let mut late = Vec::new();
    if from == fsguard::shared::FSGUARD_LEVEL_MAINTENANCE && requested > from {
        println!("process accounting switched off in every pid namespace, if it was on (the kernel writes its file without any check); `accton FILE` switches it on again");
    }
    let enforced = if loaded_now {
        // The guard was not running: every sealed capsule is enforced from now on too.
        Some(enforce_all(dir, &mut guard))
    } else {
        None
    };
    match &enforced {
        Some(Ok(summary)) => println!("fsguard loaded at level {requested}; {summary}"),
        Some(Err(_)) => println!("fsguard loaded at level {requested}"),
        None => println!("level {requested}"),
    }
    if requested >= fsguard::shared::FSGUARD_LEVEL_LOCKED {
        // Each lock is tried whatever the other did.
        let kernel = lock_kernel();
        let registry = lock_registry(dir, &mut guard);
        if from < fsguard::shared::FSGUARD_LEVEL_LOCKED && !loaded_now {
            late = guard.refused_at_2()?;
        }
        // Built between the look before the raise and the raise itself: nothing can be
        // built from now on, so this look is the last.
        late.extend(carried_copiers(dir));
        kernel?;
        registry?;
    }
    recorded?;
    if !late.is_empty() {
        println!(
            "level {requested} is NOT whole: made while it was being raised: {}",
            late.join("; ")
        );
        return Ok(EXIT_NOT_ENFORCED);
    }
    if let Some(enforced) = enforced {
        enforced?;
        if !crate::cmd::enforce::report_index(dir) {
            anyhow::bail!("the registry index is damaged or disagrees with the seal files (above); run `sealtool registry rebuild`");
        }
    }
    Ok(0)
}

/// The sealed trees' names and roots (from their manifests), and what could not be read.
fn sealed_roots(dir: &std::path::Path) -> (Vec<(String, std::path::PathBuf)>, Vec<String>) {
    let mut sealed = Vec::new();
    let mut failed = Vec::new();
    for seal in capsule_core::registry::seals_in(dir).seals {
        let path = capsule_core::registry::manifest_path_in(dir, &seal.name, &seal.digest);
        match capsule_core::manifest::ManifestBytes::read(&path, &seal.name, &seal.digest) {
            Ok(m) => sealed.push((seal.name, m.root)),
            Err(e) => failed.push(format!("{}: {e}", seal.name)),
        }
    }
    (sealed, failed)
}

/// The storage-target exports (LIO, nvmet) enabled while a sealed tree lies on a block device. Level 2
/// refuses to enable one, but can't stop one enabled before: it writes its device from the
/// kernel, past every hook.
pub fn carried_exports(dir: &std::path::Path) -> Vec<String> {
    let (sealed, _) = sealed_roots(dir);
    let mut devices = Vec::new();
    for (_, root) in &sealed {
        // A tree whose devices can't be computed is left to lock_registry, which says so.
        devices.extend(fsguard::enforce::block_devices_of(root).unwrap_or_default());
    }
    fsguard::enforce::target_exports_over(&devices)
}

/// The devices built before level 2 over a sealed tree's device (an alias of its disk) and
/// something else, that copy one over the other from the kernel (an md array's resync, a
/// device-mapper mirror): see fsguard::enforce::copying_devices_over.
pub fn carried_copiers(dir: &std::path::Path) -> Vec<String> {
    let (sealed, _) = sealed_roots(dir);
    let mut out: Vec<String> = Vec::new();
    // The registry too: a copy over its disk rewrites what the next boot enforces.
    let roots = sealed.iter().map(|(_, r)| r.as_path()).chain([dir]);
    for root in roots {
        for d in fsguard::enforce::copying_devices_over(root) {
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out
}

/// A raise to 2 while a storage target is enabled (and a sealed tree lies on a block device),
/// or while a device built over a sealed tree's device copies between devices, is refused,
/// before anything is recorded.
fn refuse_carried_storage(dir: &std::path::Path) -> Result<()> {
    let exports = carried_exports(dir);
    if !exports.is_empty() {
        anyhow::bail!(
            "level not raised: storage-target exports are enabled while a sealed tree lies on a block device; the kernel writes their device for them past every check, which level 2 could not stop, and which device that is can't be told: {}; disable them first",
            exports.join(", ")
        );
    }
    let copiers = carried_copiers(dir);
    if !copiers.is_empty() {
        anyhow::bail!(
            "level not raised: devices built over a sealed tree's device and another copy one over the other from the kernel (a resync, a recovery, a merge), past every check, which level 2 could not stop: {}; stop them first (`mdadm --stop`, `dmsetup remove`)",
            copiers.join("; ")
        );
    }
    Ok(())
}

/// What level 1 refuses to make but can't undo once made: fanotify marks on a filesystem
/// holding a sealed tree (held opens, named processes), and a SysRq key that signals every
/// process. A raise above 0 refuses while any is there; boot enforcement reports them.
pub fn carried_past_level_1(dir: &std::path::Path) -> Vec<String> {
    let (sealed, failed) = sealed_roots(dir);
    let roots: Vec<std::path::PathBuf> = sealed.into_iter().map(|(_, root)| root).collect();
    let mut found = fsguard::enforce::fanotify_marks_on(&roots);
    found.extend(fsguard::support::sysrq_state());
    found.extend(
        failed
            .into_iter()
            .map(|f| format!("a sealed tree's manifest can't be read, so neither can the fanotify marks on its filesystem: {f}")),
    );
    found
}

/// Level 2's registry part (see fsguard::enforce::protect_registry).
pub fn lock_registry(dir: &std::path::Path, guard: &mut Guard) -> Result<()> {
    let n = fsguard::enforce::protect_registry(guard, dir)?;
    println!(
        "registry {} locked: {n} manifests, seals and directories protected, and its block devices",
        capsule_core::display::path(dir)
    );
    // Each sealed tree's block devices again: aliases made since its seal (a partition over
    // its disk, a device-mapper target over it) are protected as the device itself.
    // A tree whose manifest can't be read fails the lock (after the others are done): the
    // aliases made over its device since its seal would stay writable.
    let (sealed, failed) = sealed_roots(dir);
    let d = fsguard::enforce::protect_devices_again(guard, &sealed)?;
    println!("block devices: {d} under the sealed trees protected (aliases included)");
    let s = fsguard::enforce::protect_swap(guard)?;
    if s > 0 {
        println!("swap: {s} block devices and files that reach the active swap areas protected");
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "the block devices under these capsules could not be computed again, and partitions or device-mapper targets made over them since their seal are NOT protected: {}",
            failed.join("; ")
        );
    }
    Ok(())
}

/// After a registration or seal: at level 2 the registry's new files are frozen at once. The
/// configured level counts too: it is frozen from level 2 on, while the guard's `state`
/// copy, which others could write, is only a report.
pub fn relock_registry_if_locked(reg: &Registry) -> Result<()> {
    if let Some(mut guard) = Guard::open()? {
        let configured = reg.configured_level()?.unwrap_or(0);
        if guard.level()?.max(configured) >= fsguard::shared::FSGUARD_LEVEL_LOCKED {
            fsguard::enforce::protect_registry(&mut guard, reg.dir())?;
        }
    }
    Ok(())
}

/// Level 2's kernel part: lockdown raised to integrity where the kernel has the LSM.
pub fn lock_kernel() -> Result<()> {
    use fsguard::support::Lockdown;
    match fsguard::support::raise_lockdown() {
        Ok(Lockdown::Raised) => println!("kernel lockdown raised to integrity"),
        Ok(Lockdown::Already(mode)) => println!("kernel lockdown already {mode}"),
        Ok(Lockdown::Unavailable) => println!(
            "kernel lockdown NOT available (no {}): kernel code could still be loaded to remove the guard",
            fsguard::support::LOCKDOWN_FILE
        ),
        Err(e) => anyhow::bail!(
            "{}: cannot raise the kernel lockdown to integrity: {e}",
            fsguard::support::LOCKDOWN_FILE
        ),
    }
    Ok(())
}

fn show(ctx: &Context) -> Result<u8> {
    match Guard::find()? {
        Some(g) => {
            println!("{}", g.level()?);
            Ok(0)
        }
        None => {
            let configured = capsule_core::registry::configured_level_in(&ctx.registry_dir)?;
            let configured = configured
                .map(|l| format!(", configured level {l}"))
                .unwrap_or_default();
            println!("fsguard is not loaded{configured}");
            Ok(EXIT_NOT_ENFORCED)
        }
    }
}
