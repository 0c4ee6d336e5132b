//! `sealtool enforce [--boot]`: load every sealed capsule from the registry into the kernel.
//! Idempotent. `--boot` is what init runs: each tree is verified first and drift is reported
//! loudly (enforcement goes on regardless), then the guard is raised to the configured level.

use anyhow::Result;
use capsule_core::audit::{AuditLog, FindingRecord, Record, DEFAULT_WAIT};
use capsule_core::check;
use capsule_core::display;
use capsule_core::manifest::ManifestBytes;
use capsule_core::registry::{Access, CapsuleState, Registry};
use capsule_core::walk::Progress;
use fsguard::enforce;
use fsguard::guard::Guard;

use crate::cmd::{bounded, INDEX_WAIT};
use crate::{Context, EXIT_DRIFT, EXIT_NOT_ENFORCED};

#[derive(clap::Args)]
pub struct Args {
    /// Boot mode: report drift loudly, then raise the level the registry configures
    #[arg(long)]
    boot: bool,
}

/// Prints a finding on stderr and sends it to syslog (authpriv, error): at boot, stderr is
/// the journal at best, and nobody reads it unless told.
macro_rules! loud {
    ($($arg:tt)*) => {{
        let msg = format!($($arg)*);
        eprintln!("{msg}");
        crate::cmd::audit::syslog_error(&msg);
        FINDINGS.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
    }};
}

/// What `loud!` said during this run, for the audit log at its end.
static FINDINGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Appends this run's findings to the registry's audit log (chained like its refusals),
/// once the registry's database is no longer held here. A log that can't be opened (the
/// database itself damaged) is said, on stderr and to syslog.
pub(crate) fn record_findings(dir: &std::path::Path) {
    let findings = std::mem::take(&mut *FINDINGS.lock().unwrap_or_else(|e| e.into_inner()));
    if findings.is_empty() {
        return;
    }
    // No registry there: none is made for the log (the findings went to syslog).
    if !dir.join("manifests").is_dir() {
        return;
    }
    let time_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let records: Vec<Record> = findings
        .into_iter()
        .map(|what| Record::Finding(FindingRecord { time_ns, what }))
        .collect();
    let n = records.len();
    let dir = dir.to_path_buf();
    let appended = bounded(INDEX_WAIT, move || {
        AuditLog::open(&dir, DEFAULT_WAIT)
            .and_then(|log| log.append(&records, None))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    if let Err(e) = appended {
        let msg = format!(
            "sealtool: ERROR: {n} finding(s) above could not be added to the audit log: {e}"
        );
        eprintln!("{msg}");
        crate::cmd::audit::syslog_error(&msg);
    }
}

/// What enforcing the registry did, for one summary line.
pub struct Summary {
    pub capsules: usize,
    pub inodes: usize,
    pub drifted: Vec<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sealed capsules enforced, {} inodes protected",
            self.capsules, self.inodes
        )?;
        if !self.drifted.is_empty() {
            write!(f, "; DRIFT in {}", self.drifted.join(", "))?;
        }
        Ok(())
    }
}

/// Where the registry index and the seal files disagree, in words.
fn index_disagreements(
    reg: &Registry,
    seals: &[capsule_core::policy::SealRecord],
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for rec in reg
        .list()?
        .iter()
        .filter(|r| r.state == CapsuleState::Sealed)
    {
        if !seals
            .iter()
            .any(|s| s.name == rec.name && s.digest == rec.digest)
        {
            out.push(format!(
                "the registry index says {} is sealed, but no seal file matches it; it is NOT enforced",
                rec.name
            ));
        }
    }
    for seal in seals {
        let indexed = reg.get(&seal.name)?;
        match indexed {
            Some(r) if r.state == CapsuleState::Sealed && r.digest == seal.digest => {
                let path = capsule_core::registry::manifest_path_in(reg.dir(), &r.name, &r.digest);
                if let Ok(m) = ManifestBytes::read(&path, &r.name, &r.digest) {
                    if m.root != r.root {
                        out.push(format!(
                            "the registry index puts {} at {}, its sealed manifest at {}; enforcing the manifest's",
                            r.name,
                            display::path(&r.root),
                            display::path(&m.root)
                        ));
                    }
                }
            }
            _ => out.push(format!(
                "seal file of {} ({}) is not in the registry index as sealed; enforcing the seal file",
                seal.name, seal.digest
            )),
        }
    }
    Ok(out)
}

/// Hands every sealed capsule to `guard`. The seal files are the source of truth (the sled
/// index is derived data, which root could rewrite at level 2): they are read without the
/// index (see [`report_index`] for the comparison, made after). A seal file that can't be
/// used, or a capsule that can't be enforced, is reported loudly and the others are enforced
/// all the same; the error comes at the end. Two seals
/// naming one capsule (a planted one), or two capsules whose insides overlap, fail closed:
/// those trees are enforced with no inside.
/// Each tree is re-walked for its live identities only (no file read); drift is looked for
/// after, by [`drift_all`].
pub fn enforce_all(dir: &std::path::Path, guard: &mut Guard) -> Result<Summary> {
    let mut summary = Summary {
        capsules: 0,
        inodes: 0,
        drifted: Vec::new(),
    };
    let files = capsule_core::registry::seals_in(dir);
    let mut failed = Vec::new();
    for (path, why) in &files.bad {
        loud!(
            "sealtool: ERROR: seal file {} is unusable and NOT enforced: {why}",
            display::path(path)
        );
        failed.push(display::path(path));
    }
    // Two capsules whose insides overlap: neither gets one (which came first can't be told
    // from anything root can't rewrite, and the kernel would give the cgroup to the first
    // enforced).
    let claims: Vec<enforce::InsideClaim> = files
        .seals
        .iter()
        .filter_map(|s| {
            s.cgroup
                .as_ref()
                .map(|c| enforce::InsideClaim::new(&s.name, c))
        })
        .collect();
    let mut no_inside = std::collections::BTreeSet::new();
    for (a, b) in enforce::overlapping_insides(&claims) {
        loud!(
            "sealtool: ERROR: the insides of capsules {} (cgroup {}) and {} (cgroup {}) overlap; both trees are enforced with NO inside until one seal file is removed",
            a.name,
            display::path(&a.cgroup),
            b.name,
            display::path(&b.cgroup)
        );
        no_inside.insert(a.name.clone());
        no_inside.insert(b.name.clone());
    }
    // Every tree is walked and planned first; trees that share inodes (one nested in the
    // other, hard links between them) are then protected together with nobody inside,
    // before any capsule's own slot: the kernel gives an inode to the first capsule that
    // asks, and the order of seal files is the name's, which whoever plants a seal chooses.
    let mut prepared = Vec::new();
    for seal in &files.seals {
        let mut seal = seal.clone();
        if no_inside.contains(&seal.name) {
            seal.cgroup = None;
            failed.push(seal.name.clone());
        }
        if files.seals.iter().filter(|s| s.name == seal.name).count() > 1 {
            loud!(
                "sealtool: ERROR: capsule {} has more than one seal file; its tree ({}) is enforced with NO inside until this is resolved",
                seal.name, seal.digest
            );
            seal.cgroup = None;
            failed.push(seal.name.clone());
        }
        match prepare_one(dir, &seal) {
            Ok(p) => prepared.push(p),
            Err(e) => {
                loud!(
                    "sealtool: ERROR: capsule {} is NOT enforced: {e:#}",
                    seal.name
                );
                failed.push(seal.name.clone());
            }
        }
    }
    let plans: Vec<&enforce::Plan> = prepared.iter().map(|p| &p.plan).collect();
    let mut contested = std::collections::BTreeSet::new();
    for (a, b) in enforce::shared_inodes(&plans) {
        loud!(
            "sealtool: ERROR: the trees of capsules {} and {} share inodes (one holds the other, or hard links join them); both are enforced with NO inside until one seal file is removed",
            prepared[a].name,
            prepared[b].name
        );
        contested.insert(a);
        contested.insert(b);
    }
    if !contested.is_empty() {
        let together: Vec<&enforce::Plan> = contested.iter().map(|&i| &prepared[i].plan).collect();
        if let Err(e) = enforce::apply_fail_closed_all(guard, &together) {
            loud!(
                "sealtool: ERROR: the trees that share inodes are not (fully) protected: {}",
                fsguard::report(&e)
            );
        }
        for &i in &contested {
            failed.push(prepared[i].name.clone());
        }
    }
    // Bases (nobody inside) first: a capsule that runs from one needs its slot.
    let order = (0..prepared.len())
        .filter(|&i| prepared[i].plan.inside.is_none())
        .chain((0..prepared.len()).filter(|&i| prepared[i].plan.inside.is_some()));
    for i in order {
        let p = &prepared[i];
        if contested.contains(&i) {
            continue;
        }
        match apply_one(guard, p) {
            Ok(()) => {
                summary.capsules += 1;
                summary.inodes += p.plan.inodes.len();
            }
            Err(e) => {
                loud!("sealtool: ERROR: capsule {} is NOT enforced: {e:#}", p.name);
                failed.push(p.name.clone());
            }
        }
    }
    if !failed.is_empty() {
        failed.sort();
        failed.dedup();
        anyhow::bail!(
            "sealed capsules not (fully) enforced: {} ({summary})",
            failed.join(", ")
        );
    }
    Ok(summary)
}

/// How long checking every sealed tree for drift may take, after enforcement (15 minutes;
/// `CAPSULE_DRIFT_WAIT_SECS` in the environment sets another bound).
fn drift_wait() -> std::time::Duration {
    let secs = std::env::var("CAPSULE_DRIFT_WAIT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(900);
    std::time::Duration::from_secs(secs)
}

/// Checks every sealed tree against its manifest (the files' content hashed), after
/// enforcement, in a thread of its own for a bounded time ([`drift_wait`]): returns the
/// capsules that drifted, each difference printed on stderr when `loud`. A tree that can't be read, or a
/// check that does not end in time, is a finding.
pub(crate) fn drift_all(dir: &std::path::Path, loud: bool) -> Vec<String> {
    let seals = capsule_core::registry::seals_in(dir).seals;
    let dir = dir.to_path_buf();
    let checked = bounded(drift_wait(), move || {
        let mut out = Vec::new();
        for seal in &seals {
            let path = capsule_core::registry::manifest_path_in(&dir, &seal.name, &seal.digest);
            let Ok((manifest, _)) = capsule_core::registry::read_manifest_file(&path) else {
                continue; // already reported by enforcement
            };
            let drift = match check::against_manifest(&manifest, &Progress::default()) {
                Ok((_, drift)) => drift,
                Err(e) => {
                    out.push((seal.name.clone(), Err(format!("{e:#}"))));
                    continue;
                }
            };
            if drift.is_empty() {
                continue;
            }
            if loud {
                eprintln!(
                    "sealtool: DRIFT: sealed capsule {} at {} differs from its manifest in {} places (enforced anyway):",
                    seal.name,
                    display::path(&manifest.root),
                    drift.len()
                );
                for d in &drift {
                    eprintln!(
                        "sealtool: DRIFT:   {} {}: {}",
                        d.kind.name(),
                        display::rel_path(&d.path),
                        d.detail
                    );
                }
            }
            out.push((seal.name.clone(), Ok(())));
        }
        Ok(out)
    });
    let mut drifted = Vec::new();
    match checked {
        Ok(found) => {
            for (name, r) in found {
                if let Err(e) = r {
                    loud!("sealtool: ERROR: sealed capsule {name} could not be checked for drift: {e}");
                }
                drifted.push(name);
            }
        }
        Err(e) => loud!(
            "sealtool: ERROR: the sealed trees could not all be checked for drift ({e}); everything was enforced before"
        ),
    }
    drifted
}

/// One sealed capsule, walked and planned, ready for the kernel.
struct Prepared {
    name: String,
    plan: enforce::Plan,
    /// Why its inside can't be given (its tree goes in the registry's slot), if so.
    no_inside: Option<String>,
}

/// Reads a sealed capsule's manifest, walks its tree for the live identities (no file read)
/// and plans it; a plan whose inside or frozen rules can't be used is made
/// without them, to be protected with nobody inside.
fn prepare_one(dir: &std::path::Path, seal: &capsule_core::policy::SealRecord) -> Result<Prepared> {
    let path = capsule_core::registry::manifest_path_in(dir, &seal.name, &seal.digest);
    let (manifest, _) = capsule_core::registry::read_manifest_file(&path)?;
    if manifest.name != seal.name {
        anyhow::bail!(
            "{} describes capsule {:?}, not {:?}",
            display::path(&path),
            manifest.name,
            seal.name
        );
    }
    // Identities only: no file's content is read before every tree is handed over (a tree
    // planted with endless or huge files must not hold enforcement up); drift after.
    let report = check::identities(&manifest)?;
    let (plan, no_inside) = match enforce::plan(&report.tree, &report.root, seal) {
        Ok(plan) => (plan, None),
        Err(e) if seal.cgroup.is_some() || !seal.frozen.is_empty() => {
            // Its inside or frozen rules can't be used (no cgroup2 where the seal says, a
            // pattern that does not parse): the tree is protected all the same.
            let bare = capsule_core::policy::SealRecord {
                cgroup: None,
                frozen: Vec::new(),
                ..seal.clone()
            };
            (
                enforce::plan(&report.tree, &report.root, &bare)?,
                Some(e.to_string()),
            )
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Prepared {
        name: seal.name.clone(),
        plan,
        no_inside,
    })
}

/// Hands one prepared capsule to the guard in its own slot; where that can't be (its inside
/// unusable, its slot refused: its cgroup taken, the slots used up) the tree is protected
/// with nobody inside, in the registry's slot, and the answer is an error that says so.
fn apply_one(guard: &mut Guard, p: &Prepared) -> Result<()> {
    let why = match &p.no_inside {
        Some(why) => why.clone(),
        None => match enforce::apply(guard, &p.plan) {
            Ok(_) if !p.plan.unknown_beneath.is_empty() => anyhow::bail!(
                "its tree is protected, but what lies beneath its filesystem can't be told and is NOT: {}",
                p.plan.unknown_beneath.join("; ")
            ),
            Ok(_) => return Ok(()),
            Err(e) => fsguard::report(&e),
        },
    };
    enforce::apply_fail_closed(guard, &p.plan)?;
    anyhow::bail!("{why} (its tree is protected with NO inside until this is resolved)")
}

pub fn run(ctx: &Context, args: Args) -> Result<u8> {
    let result = run_enforce(ctx, args);
    record_findings(&ctx.registry_dir);
    result
}

fn run_enforce(ctx: &Context, args: Args) -> Result<u8> {
    let dir = &ctx.registry_dir;
    // The seal files are what counts, and the index (sled: a crafted database can make it
    // panic or block for good) is not touched before everything is enforced, the level
    // raised and the registry locked; then it is compared with the seal files in a thread
    // of its own, for a bounded time, only to report.
    if let Err(why) = fsguard::check_support() {
        println!("enforcement is NOT active: {why}");
        return Ok(EXIT_NOT_ENFORCED);
    }
    let configured = match capsule_core::registry::configured_level_in(dir) {
        Ok(level) => level,
        Err(e) if args.boot => {
            // The level file is frozen at level 2: an unreadable one was tampered with.
            loud!("sealtool: ERROR: {e}; raising to level 2 (fail closed)");
            Some(fsguard::shared::FSGUARD_LEVEL_LOCKED)
        }
        Err(e) => return Err(e.into()),
    };
    // A registry that is not there (renamed, not mounted, hidden by a mount) is not "nothing
    // sealed": every seal it held would be dropped without a word.
    let missing = !dir.join("manifests").is_dir();
    if missing {
        loud!(
            "sealtool: ERROR: no registry at {} (its manifests/ directory is missing): NOTHING sealed there is enforced",
            display::path(dir)
        );
    }
    let initial = configured.unwrap_or(fsguard::shared::FSGUARD_LEVEL_SEALED);
    let mut late = Vec::new();
    // Loaded at level 2, what was made earlier in boot that level 2 refuses (a tracing
    // program, a perf event, a trace event) is reported once every tree is enforced, not
    // before: the trees would stay unprotected meanwhile.
    let (mut guard, loaded_now) = Guard::open_or_load_reporting(initial)?;
    let mut carried = guard.take_load_findings();
    let enforced = enforce_all(dir, &mut guard);
    // Loop devices bound before the guard was loaded (earlier in boot) to a file it now
    // protects would keep writing it with no hook of their own: a finding (they can be
    // detached at every level).
    match guard.loops_on_sealed() {
        Ok(found) => carried.extend(found),
        Err(e) => carried.push(format!("the loop devices could not be looked at: {e}")),
    }
    // Likewise fanotify marks on a sealed tree's filesystem and a SysRq key that signals,
    // made earlier in boot: level 1 refuses to make them, not to end them.
    if configured.is_some_and(|l| l >= fsguard::shared::FSGUARD_LEVEL_SEALED) {
        carried.extend(crate::cmd::level::carried_past_level_1(dir));
    }
    for found in &carried {
        loud!("sealtool: ERROR: {found}");
    }
    // The level is raised and the registry locked even when a capsule failed.
    if args.boot {
        if let Some(level) = configured {
            let from = guard.level()?;
            if from < level {
                guard.raise_level(level)?;
                // Made while the raise was under way (see `sealtool level`).
                if level >= fsguard::shared::FSGUARD_LEVEL_LOCKED
                    && from < fsguard::shared::FSGUARD_LEVEL_LOCKED
                {
                    late = guard.refused_at_2()?;
                }
            }
        }
    }
    // Whichever way the guard came to level 2 (raised now, or loaded at the configured
    // level), level 2's locks hold as after `sealtool level 2`.
    // Each lock is tried whatever the other did; a failure is a finding.
    let mut unlocked = false;
    if guard.level()? >= fsguard::shared::FSGUARD_LEVEL_LOCKED {
        if let Err(e) = crate::cmd::level::lock_kernel() {
            loud!("sealtool: ERROR: lockdown is not raised: {e:#}");
            unlocked = true;
        }
        if let Err(e) = crate::cmd::level::lock_registry(dir, &mut guard) {
            loud!("sealtool: ERROR: the registry is not (fully) locked: {e:#}");
            unlocked = true;
        }
        // Enabled before enforcement (a target's configuration restored earlier in boot):
        // the kernel keeps writing for them, which level 2 can't refuse.
        let exports = crate::cmd::level::carried_exports(dir);
        if !exports.is_empty() {
            loud!("sealtool: ERROR: storage-target exports are enabled while a sealed tree lies on a block device, and the kernel writes their device for them past every check: {}; disable them (they can't be enabled again at level 2)", exports.join(", "));
            unlocked = true;
        }
        let copiers = crate::cmd::level::carried_copiers(dir);
        if !copiers.is_empty() {
            loud!("sealtool: ERROR: devices built over a sealed tree's device and another copy one over the other from the kernel, past every check: {}; stop them (they can't be built again at level 2)", copiers.join("; "));
            unlocked = true;
        }
    }
    let index_ok = missing || report_index(dir);
    // The collector only after enforcement: it opens files in the registry directory, which
    // root may have replaced.
    if !missing {
        crate::cmd::audit::start_collector(ctx);
    }
    // Drift is looked for once everything is enforced and locked, whatever enforcement said.
    let drifted = drift_all(dir, args.boot);
    let mut summary = enforced?;
    summary.drifted = drifted;
    if missing {
        anyhow::bail!("no registry at {} ({summary})", display::path(dir));
    }
    if unlocked {
        anyhow::bail!("every usable seal file is enforced ({summary}), but level 2's locks are not all in place (above)");
    }
    if !carried.is_empty() {
        anyhow::bail!(
            "every usable seal file is enforced ({summary}), but NOT whole: {}",
            carried.join("; ")
        );
    }
    if !late.is_empty() {
        anyhow::bail!(
            "every usable seal file is enforced ({summary}), but the level is NOT whole: made while it was being raised: {}",
            late.join("; ")
        );
    }
    if !index_ok {
        anyhow::bail!(
            "every usable seal file is enforced ({summary}), but the registry index is damaged or disagrees with them (above); run `sealtool registry rebuild`"
        );
    }
    println!(
        "fsguard {} at level {}; {summary}",
        if loaded_now {
            "loaded"
        } else {
            "already loaded"
        },
        guard.level()?
    );
    Ok(if summary.drifted.is_empty() {
        0
    } else {
        EXIT_DRIFT
    })
}

/// Compares the registry index with the seal files, in a thread of its own for a bounded
/// time (sled on a crafted database can panic or block for good), only to report: each
/// disagreement, or why the index can't be used, is a finding. Returns whether they agree.
pub(crate) fn report_index(dir: &std::path::Path) -> bool {
    let found = bounded(INDEX_WAIT, {
        let dir = dir.to_path_buf();
        let seals = capsule_core::registry::seals_in(&dir).seals;
        move || {
            let reg = Registry::open(&dir, Access::Read).map_err(|e| e.to_string())?;
            index_disagreements(&reg, &seals).map_err(|e| format!("{e:#}"))
        }
    });
    match found {
        Ok(found) => {
            for what in &found {
                loud!("sealtool: WARNING: {what} (run `sealtool registry rebuild`)");
            }
            found.is_empty()
        }
        Err(e) => {
            loud!(
                "sealtool: ERROR: the registry index can't be used ({e}); everything was enforced from the seal files alone (run `sealtool registry rebuild`)"
            );
            false
        }
    }
}
