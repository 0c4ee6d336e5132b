//! `sealtool run NAME [--cgroup PATH] [--seal [--frozen GLOB]...] -- COMMAND...`: start work
//! inside a capsule: join the capsule's cgroup (creating it if needed), optionally seal the
//! capsule from there, then exec COMMAND, which is inside from its first instruction.
//!
//! Once a capsule is sealed nobody outside can join it (fsguard refuses writes to its
//! cgroup.procs, root included, at every level). So work goes into a capsule either before it
//! is sealed, `--seal` being the way to seal at creation with this process already inside, or
//! from a process that is inside already (a shell started in it, a service manager of its
//! own).
//!
//! COMMAND runs in the capsule's own root (capsule_core::jail): its sealed tree as `/`, a
//! fresh `/proc`, a minimal `/dev`, a private `/tmp`, other sealed trees read-only where
//! asked (`--with`); `--host-root` keeps the host's.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use capsule_core::display;
use capsule_core::registry::{Access, Registry};

use crate::cmd::seal::{self, SealOptions};
use crate::{Context, EXIT_DRIFT, EXIT_NOT_ENFORCED};

#[derive(clap::Args)]
pub struct Args {
    /// The capsule
    name: String,
    /// Seal the capsule once this process is inside, before COMMAND starts
    #[arg(long)]
    seal: bool,
    #[command(flatten)]
    options: SealOptions,
    /// Keep the core-dump limit COMMAND inherits (by default it is set to 1 byte, soft and
    /// hard, so that no capsule process dumps its memory where root's `core_pattern` says: a
    /// pipe pattern ignores a limit of 0)
    #[arg(long)]
    allow_core_dumps: bool,
    /// Run COMMAND on the host's root instead of the capsule's own (then the guard's exec
    /// rule alone keeps what runs sealed: the host's programs are refused unless a base the
    /// capsule runs from holds them)
    #[arg(long)]
    host_root: bool,
    /// Mount another sealed capsule's tree read-only at PATH of the capsule's own root
    /// (repeatable; a shared base: seal with `--exec-from CAPSULE` to run its files)
    #[arg(
        long = "with",
        value_name = "CAPSULE:PATH",
        conflicts_with = "host_root"
    )]
    with: Vec<String>,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// The environment COMMAND gets in the capsule's own root: these, where set, and a PATH of
/// the usual directories; nothing else of the caller's (LD_PRELOAD and the like name host
/// files).
const KEPT_ENV: &[&str] = &["TERM", "LANG", "LC_ALL", "TZ"];
const ROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The tree of capsule `name` as its sealed manifest says (the index only helps find it), or
/// its current manifest's for a capsule not sealed yet.
fn tree_of(reg: &Registry, name: &str) -> Result<PathBuf> {
    let rec = reg.require(name)?;
    let path = reg.manifest_path(&rec.name, &rec.digest);
    let m = capsule_core::manifest::ManifestBytes::read(&path, &rec.name, &rec.digest)?;
    Ok(m.root)
}

/// The capsule's own root as asked: its tree, and the `--with` trees (sealed capsules).
fn own_root(
    reg: &Registry,
    name: &str,
    with: &[String],
    notes: Option<&[String]>,
) -> Result<capsule_core::jail::OwnRoot> {
    let tree = tree_of(reg, name)?;
    // The bases it runs from: its seal's, or those the seal about to be made will name.
    let exec_from = if reg.is_sealed(name)? {
        reg.seal_record(&reg.require(name)?)?.exec_from
    } else {
        notes.unwrap_or_default().to_vec()
    };
    let mut mounts = Vec::new();
    for spec in with {
        let Some((other, at)) = spec.split_once(':') else {
            bail!("--with {spec}: expected CAPSULE:PATH");
        };
        if !reg.is_sealed(other)? {
            bail!("--with {spec}: capsule {other:?} is not sealed; only a sealed tree is mounted into a capsule's root");
        }
        if notes.is_some() && !exec_from.iter().any(|b| b == other) {
            eprintln!(
                "sealtool: note: capsule {name:?} does not run the files of {other:?} (it was not sealed with --exec-from {other}): they are mounted at {at} for reading only"
            );
        }
        mounts.push((tree_of(reg, other)?, PathBuf::from(at)));
    }
    Ok(capsule_core::jail::OwnRoot { tree, with: mounts })
}

pub fn run(ctx: &Context, args: Args) -> Result<u8> {
    let cgroup = {
        let reg = Registry::open(&ctx.registry_dir, Access::Read)?;
        let rec = reg.require(&args.name)?;
        let sealed_cgroup = if reg.is_sealed(&args.name)? {
            if args.seal {
                bail!("capsule {:?} is already sealed", args.name);
            }
            let seal = reg.seal_record(&rec)?;
            Some(seal.cgroup.ok_or_else(|| {
                anyhow::anyhow!(
                    "capsule {:?} was sealed without a cgroup: it has no inside, so nothing can run in it",
                    args.name
                )
            })?)
        } else {
            None
        };
        match (sealed_cgroup, &args.options.cgroup) {
            (Some(sealed), Some(asked)) if std::path::absolute(asked)? != sealed => bail!(
                "capsule {:?} is sealed with cgroup {}, not {}",
                args.name,
                display::path(&sealed),
                display::path(asked)
            ),
            (Some(sealed), _) => sealed,
            (None, Some(asked)) => std::path::absolute(asked)
                .map_err(|e| anyhow::anyhow!("{}: cannot resolve: {e}", asked.display()))?,
            (None, None) => bail!(
                "capsule {:?} has no cgroup yet: name one with --cgroup PATH",
                args.name
            ),
        }
    };
    let sealed = !args.seal && {
        let reg = Registry::open(&ctx.registry_dir, Access::Read)?;
        reg.is_sealed(&args.name)?
    };
    // Checked before anything changes (the seal below can't be undone).
    if !args.host_root {
        let reg = Registry::open(&ctx.registry_dir, Access::Read)?;
        capsule_core::jail::check(&own_root(
            &reg,
            &args.name,
            &args.with,
            Some(&args.options.exec_from),
        )?)
        .map_err(|e| {
            anyhow::anyhow!(
                "capsule {:?} can't run in its own root: {e} (--host-root runs it on the host's)",
                args.name
            )
        })?;
    }
    join(&args.name, &cgroup, sealed)?;
    if args.seal {
        let options = SealOptions {
            cgroup: Some(cgroup.clone()),
            ..args.options.clone()
        };
        let reg = Registry::open(&ctx.registry_dir, Access::Write)?;
        let code = seal::seal(ctx, &reg, &args.name, &options)?;
        match code {
            0 => {}
            EXIT_NOT_ENFORCED | EXIT_DRIFT => {
                eprintln!(
                    "sealtool: not starting {:?}: the seal is not enforced as asked (status {code})",
                    args.command[0]
                );
                return Ok(code);
            }
            other => return Ok(other),
        }
    }
    if !args.allow_core_dumps {
        // 1, not 0: do_coredump skips a pipe pattern only at 1, and a file pattern at any
        // limit below a page. Inherited by every process the capsule forks; only a capsule
        // process with CAP_SYS_RESOURCE can raise the hard limit again.
        use nix::sys::resource::{setrlimit, Resource};
        setrlimit(Resource::RLIMIT_CORE, 1, 1)
            .context("cannot set the core-dump limit (RLIMIT_CORE) to 1 before COMMAND")?;
    }
    let mut command = std::process::Command::new(&args.command[0]);
    command.args(&args.command[1..]);
    if !args.host_root {
        let root = {
            let reg = Registry::open(&ctx.registry_dir, Access::Read)?;
            own_root(&reg, &args.name, &args.with, None)?
        };
        capsule_core::jail::enter(&root).map_err(|e| {
            anyhow::anyhow!("capsule {:?} can't run in its own root: {e}", args.name)
        })?;
        command.env_clear().env("PATH", ROOT_PATH).env("HOME", "/");
        for k in KEPT_ENV {
            if let Some(v) = std::env::var_os(k) {
                command.env(k, v);
            }
        }
    }
    let err = command.exec();
    bail!("cannot run {:?}: {err}", args.command[0])
}

/// Moves this process into `cgroup` (creating the directory if absent).
fn join(name: &str, cgroup: &Path, sealed: bool) -> Result<()> {
    if !cgroup.is_dir() {
        std::fs::create_dir(cgroup).map_err(|e| {
            anyhow::anyhow!("{}: cannot create the cgroup: {e}", display::path(cgroup))
        })?;
    }
    let procs: PathBuf = cgroup.join("cgroup.procs");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .open(&procs)
        .and_then(|mut f| f.write_all(format!("{}\n", std::process::id()).as_bytes()));
    match written {
        Ok(()) => Ok(()),
        Err(e) if sealed && e.raw_os_error() == Some(libc::EPERM) => bail!(
            "{}: capsule {name:?} is sealed and this process is outside it: fsguard refuses every outside process joining its cgroup (rule: attach), root included; start the work from a process already inside",
            display::path(&procs)
        ),
        Err(e) => Err(e).with_context(|| {
            format!(
                "{}: cannot move this process into the cgroup",
                display::path(&procs)
            )
        }),
    }
}
