//! `sealtool run NAME [--cgroup PATH] [--seal [--frozen GLOB]...] -- COMMAND...`: start work
//! inside a capsule: join the capsule's cgroup (creating it if needed), optionally seal the
//! capsule from there, then exec COMMAND, which is inside from its first instruction.
//!
//! Once a capsule is sealed nobody outside can join it (fsguard refuses writes to its
//! cgroup.procs, root included, at every level). So work goes into a capsule either before it
//! is sealed, `--seal` being the way to seal at creation with this process already inside, or
//! from a process that is inside already (a shell started in it, a service manager of its
//! own).

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
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
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
    join(&args.name, &cgroup, sealed)?;
    if args.seal {
        let options = SealOptions {
            cgroup: Some(cgroup.clone()),
            frozen: args.options.frozen.clone(),
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
    let err = std::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .exec();
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
