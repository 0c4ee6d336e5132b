//! `sealtool seal NAME [--cgroup PATH] [--frozen GLOB]...`: seal a registered capsule forever
//! and hand it to the kernel at once.
//!
//! Order: the tree must still match its manifest; the seal is recorded (durable, never
//! undone); the kernel is given the capsule; the tree is verified again, so that nothing that
//! changed between the first check and enforcement goes unnoticed. Where the kernel cannot
//! enforce, the seal is still recorded and the exit status says enforcement is NOT active.

use std::path::PathBuf;

use anyhow::{bail, Result};
use capsule_core::check;
use capsule_core::display;
use capsule_core::glob::GlobSet;
use capsule_core::policy::SealRecord;
use capsule_core::registry::{self, Access, Registry};
use fsguard::enforce;
use fsguard::guard::Guard;

use crate::{progress, Context, EXIT_NOT_ENFORCED};

#[derive(clap::Args, Clone, Default)]
pub struct SealOptions {
    /// The cgroup v2 directory whose processes are inside the capsule (created if absent);
    /// without it the capsule has no inside and its tree is frozen for everyone
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Parts of the tree nobody may modify, inside processes included (repeatable)
    #[arg(long, value_name = "GLOB")]
    pub frozen: Vec<String>,
    /// What may run inside once sealed: `own` (files nobody outside can change: the
    /// capsule's own and its bases' sealed files; anonymous executable memory allowed) or
    /// `sealed` (only the sealed manifests' files; no executable memory of its own)
    #[arg(long, value_enum, default_value_t = ExecArg::Own, value_name = "MODE")]
    pub exec: ExecArg,
    /// A sealed capsule with nobody inside (a shared base) whose sealed files may also run
    /// inside (repeatable; comma-separated in the environment variable)
    #[arg(
        long = "exec-from",
        value_name = "CAPSULE",
        env = "CAPSULE_EXEC_FROM",
        value_delimiter = ','
    )]
    pub exec_from: Vec<String>,
}

/// `--exec MODE` (see capsule_core::policy::ExecMode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecArg {
    #[default]
    Own,
    Sealed,
}

impl From<ExecArg> for capsule_core::policy::ExecMode {
    fn from(a: ExecArg) -> Self {
        match a {
            ExecArg::Own => capsule_core::policy::ExecMode::Own,
            ExecArg::Sealed => capsule_core::policy::ExecMode::Sealed,
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    name: String,
    #[command(flatten)]
    options: SealOptions,
}

pub fn run(ctx: &Context, args: Args) -> Result<u8> {
    let reg = Registry::open(&ctx.registry_dir, Access::Write)?;
    seal(ctx, &reg, &args.name, &args.options)
}

/// Seals `name` in an open registry (also used by `register --seal`).
pub fn seal(ctx: &Context, reg: &Registry, name: &str, options: &SealOptions) -> Result<u8> {
    let rec = reg.require(name)?;
    if reg.is_sealed(name)? {
        return Err(capsule_core::Error::Sealed {
            name: name.to_string(),
            action: "sealing again",
        }
        .into());
    }
    GlobSet::new(&options.frozen)?;
    let manifest = reg.load_manifest(&rec)?;
    let (report, drift) = {
        let shown = progress::Display::start(&format!("checking {name}"), ctx.quiet);
        check::against_manifest(&manifest, &shown.counters)?
    };
    if !drift.is_empty() {
        let first = &drift[0];
        bail!(
            "capsule {name:?} cannot be sealed: its tree differs from the registered manifest in {} places (first: {} {}: {}); run `sealtool verify {name}` and register it again",
            drift.len(),
            first.kind.name(),
            display::rel_path(&first.path),
            first.detail
        );
    }
    let cgroup = match &options.cgroup {
        Some(c) => Some(
            std::path::absolute(c)
                .map_err(|e| anyhow::anyhow!("{}: cannot resolve: {e}", c.display()))?,
        ),
        None => None,
    };
    let seal = SealRecord {
        name: name.to_string(),
        digest: rec.digest,
        cgroup,
        frozen: options.frozen.clone(),
        sealed_at: registry::now(),
        exec: options.exec.into(),
        // Nothing runs in a capsule with nobody inside: it runs from no base.
        exec_from: if options.cgroup.is_some() {
            let mut bases: Vec<String> = Vec::new();
            for b in options.exec_from.iter().filter(|b| !b.is_empty()) {
                if !bases.contains(b) {
                    bases.push(b.clone());
                }
            }
            bases
        } else {
            Vec::new()
        },
    };
    refuse_unusable_bases(reg, &seal)?;
    // Everything that can be checked before the point of no return is checked here.
    let plan = enforce::plan(&report.tree, &report.root, &seal)
        .map_err(|e| anyhow::anyhow!("capsule {name:?} cannot be sealed: {e}"))?;
    if plan.inside.is_some_and(|i| i.cgroup_level == 0) {
        bail!(
            "capsule {name:?} cannot be sealed: {} is the root of the cgroup hierarchy, where every process would be inside; give it a cgroup of its own",
            display::path(seal.cgroup.as_deref().unwrap_or(std::path::Path::new("/")))
        );
    }
    enforce::check_filesystem(&report.root)
        .and_then(|()| enforce::check_second_devices(&report.root))
        .and_then(|()| enforce::check_beneath(&report.root))
        .map_err(|e| anyhow::anyhow!("capsule {name:?} cannot be sealed: {e}"))?;
    let sealed = registry::seals_in(reg.dir()).seals;
    refuse_overlapping_inside(&sealed, &seal)?;
    refuse_nested_tree(reg, &sealed, name, &report.root)?;
    if let Some(cgroup) = &seal.cgroup {
        if let Some((tid, tracer)) = enforce::outside_tracers(cgroup)?.first() {
            bail!(
                "capsule {name:?} cannot be sealed: thread {tid} in its cgroup {} is traced by process {tracer} outside it, and a trace attached before the seal would survive it; detach it (or stop the tracer) and seal again",
                display::path(cgroup)
            );
        }
    }
    if let Some(mark) = enforce::fanotify_marks_on(std::slice::from_ref(&report.root)).first() {
        bail!("capsule {name:?} cannot be sealed: {mark}");
    }
    if let Some(lo) = enforce::loops_backed_by(&plan.inodes).first() {
        bail!(
            "capsule {name:?} cannot be sealed: loop device /dev/{lo} is backed by a file of its tree (or by a file that can't be told), and a loop device writes its backing file with no check (direct I/O, discards); detach it (`losetup -d /dev/{lo}`) and seal again"
        );
    }
    reg.seal(&seal)?;
    println!("sealed {name} ({}): this cannot be undone", rec.digest);
    println!(
        "  inside   {}",
        seal.cgroup
            .as_ref()
            .map(|c| format!("processes of cgroup {}", display::path(c)))
            .unwrap_or_else(|| "nobody (the tree is frozen for everyone)".into())
    );
    if !seal.frozen.is_empty() {
        println!(
            "  frozen   {} ({} entries)",
            seal.frozen.join(" "),
            plan.frozen
        );
    }
    if let Err(why) = fsguard::check_support() {
        println!("  enforcement is NOT active: {why}");
        println!(
            "  the seal is recorded; `sealtool enforce` applies it on a kernel with the BPF LSM"
        );
        return Ok(EXIT_NOT_ENFORCED);
    }
    let started = std::time::Instant::now();
    let applied = (|| -> fsguard::Result<(u32, u32)> {
        let (mut guard, _) = Guard::open_or_load(fsguard::shared::FSGUARD_LEVEL_SEALED)?;
        let slot = enforce::apply_new(&mut guard, &plan)?;
        Ok((slot, guard.level()?))
    })();
    let (slot, level) = match applied {
        Ok(x) => x,
        Err(e) => {
            println!("  enforcement is NOT active: {}", fsguard::report(&e));
            return Ok(EXIT_NOT_ENFORCED);
        }
    };
    println!(
        "  enforced by fsguard: {} inodes protected in {:.2}s, capsule slot {slot}, level {level}",
        plan.inodes.len(),
        started.elapsed().as_secs_f64()
    );
    // Accounting switched on earlier onto a file of this tree would go on being appended to
    // by the kernel without any check; from level 1 on switching it on again opens the file
    // for writing, which the guard judges.
    if level >= fsguard::shared::FSGUARD_LEVEL_SEALED {
        if let Err(e) = fsguard::support::stop_process_accounting() {
            println!("  enforcement is NOT whole: process accounting, which the kernel writes without any check, could not be switched off: {e}");
            return Ok(EXIT_NOT_ENFORCED);
        }
        println!("  process accounting switched off, if it was on (the kernel writes its file without any check)");
    }
    // A loop device bound between the check above and the kernel taking the tree keeps
    // writing it: said, and the exit status says the capsule is not whole.
    if let Some(lo) = enforce::loops_backed_by(&plan.inodes).first() {
        println!("  WARNING: loop device /dev/{lo} was bound to a file of the tree while the seal ran; it writes that file with no check: detach it");
        return Ok(EXIT_NOT_ENFORCED);
    }
    // A tracer that attached between the check above and the kernel taking the capsule
    // keeps its trace: said, and the exit status says the capsule is not whole.
    if let Some(cgroup) = &seal.cgroup {
        if let Some((tid, tracer)) = enforce::outside_tracers(cgroup)?.first() {
            println!("  WARNING: thread {tid} of the capsule is traced by process {tracer} outside it (attached while the seal ran); the trace survives the seal: stop the tracer");
            return Ok(EXIT_NOT_ENFORCED);
        }
    }
    crate::cmd::level::relock_registry_if_locked(reg)?;
    crate::cmd::audit::start_collector(ctx);
    // Whatever changed between the check above and the kernel taking over is reported now,
    // and the tree as it now stands is handed over again: a file swapped for an identical
    // copy before its directory was protected is a new inode, which must be protected too
    // (from here on the directories are, so nothing can be swapped any more).
    let (late_report, late) =
        check::against_manifest(&manifest, &capsule_core::walk::Progress::default())?;
    let again = enforce::plan(&late_report.tree, &late_report.root, &seal)
        .map_err(anyhow::Error::from)
        .and_then(|plan| {
            let (mut guard, _) = Guard::open_or_load(fsguard::shared::FSGUARD_LEVEL_SEALED)?;
            enforce::apply(&mut guard, &plan)?;
            Ok(())
        });
    if let Err(e) = again {
        println!("  WARNING: the tree could not be handed over again after the seal: {e:#}");
        return Ok(EXIT_NOT_ENFORCED);
    }
    if !late.is_empty() {
        println!("  WARNING: the tree changed while it was being sealed ({} differences); run `sealtool verify {name}`", late.len());
        return Ok(crate::EXIT_DRIFT);
    }
    Ok(0)
}

/// A cgroup that is, holds or lies in another sealed capsule's inside is refused before the
/// point of no return: the kernel would refuse it, and at the next boot the two seals would
/// leave both capsules with no inside.
fn refuse_overlapping_inside(sealed: &[SealRecord], seal: &SealRecord) -> Result<()> {
    let Some(cgroup) = &seal.cgroup else {
        return Ok(());
    };
    let mine = enforce::InsideClaim::new(&seal.name, cgroup);
    for other in sealed {
        let Some(theirs) = &other.cgroup else {
            continue;
        };
        if other.name != seal.name && mine.overlaps(&enforce::InsideClaim::new(&other.name, theirs))
        {
            bail!(
                "capsule {:?} cannot be sealed: its cgroup {} overlaps the inside of sealed capsule {:?} (cgroup {}); give it a cgroup of its own",
                seal.name,
                display::path(cgroup),
                other.name,
                display::path(theirs)
            );
        }
    }
    Ok(())
}

/// A tree that holds, or lies in, another sealed capsule's tree is refused before the point
/// of no return: the kernel gives each inode to one capsule, and at the next boot the two
/// seals would leave both trees with no inside.
fn refuse_nested_tree(
    reg: &Registry,
    sealed: &[SealRecord],
    name: &str,
    root: &std::path::Path,
) -> Result<()> {
    let real = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mine = real(root);
    for other in sealed {
        if other.name == name {
            continue;
        }
        // The header alone says where the tree is: no sealed manifest is read whole here.
        let path = registry::manifest_path_in(reg.dir(), &other.name, &other.digest);
        let m = match capsule_core::manifest::ManifestHeader::read(&path) {
            Ok(h) if h.name == other.name && h.digest == other.digest => h,
            // Reported by enforce and status; its tree is not known here.
            _ => continue,
        };
        let theirs = real(&m.root);
        if mine.starts_with(&theirs) || theirs.starts_with(&mine) {
            bail!(
                "capsule {name:?} cannot be sealed: its tree {} {} the tree of sealed capsule {:?} ({}); a file belongs to one capsule only",
                display::path(root),
                if mine.starts_with(&theirs) { "lies in" } else { "holds" },
                other.name,
                display::path(&m.root)
            );
        }
    }
    Ok(())
}

/// The bases a seal names must be sealed capsules with nobody inside (what nobody can
/// change), other than the capsule itself: sealed in this registry, or held by the guard so
/// (completed, untainted; a base of another registry, whose own boot enforcement comes
/// first).
fn refuse_unusable_bases(reg: &Registry, seal: &SealRecord) -> Result<()> {
    let name = &seal.name;
    let held = match seal.exec_from.is_empty() {
        true => Vec::new(),
        false => Guard::open()?
            .map(|g| g.capsules())
            .transpose()?
            .unwrap_or_default(),
    };
    for base in &seal.exec_from {
        if base == name {
            bail!("capsule {name:?} cannot be sealed: it names itself as a base (--exec-from)");
        }
        if reg.get(base)?.is_some() && reg.is_sealed(base)? {
            let rec = reg.require(base)?;
            if reg.seal_record(&rec)?.cgroup.is_some() {
                bail!("capsule {name:?} cannot be sealed: its base {base:?} (--exec-from) has processes inside, which can change its files; a base is sealed with no --cgroup");
            }
            continue;
        }
        let usable = held
            .iter()
            .any(|s| &s.name == base && s.inside.is_none() && s.complete() && !s.tainted());
        if !usable {
            bail!("capsule {name:?} cannot be sealed: its base {base:?} (--exec-from) is neither a sealed capsule of this registry nor one the guard holds with nobody inside; seal the base first");
        }
    }
    Ok(())
}
