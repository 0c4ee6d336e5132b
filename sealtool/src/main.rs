//! sealtool: the command-line front of capsule. Parses and validates arguments, calls
//! capsule-core, prints results and maps them to exit statuses. One module per subcommand.

mod cmd;
mod output;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status when drift was found (`verify`, and `seal`/`enforce` when a tree differs).
pub const EXIT_DRIFT: u8 = 1;
/// Exit status for errors (bad input, unknown capsule, I/O).
pub const EXIT_ERROR: u8 = 2;
/// Exit status when a seal is recorded but the kernel is NOT enforcing it.
pub const EXIT_NOT_ENFORCED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "sealtool",
    version,
    about = "Register, verify and seal capsule trees"
)]
struct Cli {
    /// Registry directory [default: $CAPSULE_REGISTRY, else /var/lib/capsule]
    #[arg(long, global = true, value_name = "DIR")]
    registry: Option<PathBuf>,
    /// No progress display
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Walk and hash a tree and record it as a capsule
    Register(cmd::register::Args),
    /// Re-walk registered capsules and report every difference
    Verify(cmd::verify::Args),
    /// List registered capsules
    List,
    /// Show one capsule
    Show(cmd::show::Args),
    /// Seal a registered capsule forever; the kernel enforces it at once
    Seal(cmd::seal::Args),
    /// Show the guard's level, or raise it (0 maintenance, 1 sealed, 2 locked)
    Level(cmd::level::Args),
    /// Is kernel enforcement active, at which level, for which capsules
    Status,
    /// Load every sealed capsule into the kernel (what boot runs; idempotent)
    Enforce(cmd::enforce::Args),
    /// Show, follow, collect and check the audit log of refusals
    Audit(cmd::audit::Args),
    /// Watch sealed trees and report changes as they happen (detects, does not prevent)
    Watch(cmd::watch::Args),
    /// Start a command inside a capsule (joining its cgroup; optionally sealing it first)
    Run(cmd::run::Args),
    /// Forget an unsealed capsule
    Remove(cmd::remove::Args),
    /// Maintain the registry itself
    Registry {
        #[command(subcommand)]
        action: cmd::registry::Action,
    },
}

/// What every subcommand needs from the global options.
pub struct Context {
    pub registry_dir: PathBuf,
    pub quiet: bool,
}

fn main() -> ExitCode {
    // SAFETY: restoring the default SIGPIPE disposition before any thread starts, so that
    // `sealtool list | head` ends quietly like other Unix tools instead of panicking.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let ctx = Context {
        registry_dir: capsule_core::registry::Registry::resolve_dir(cli.registry.as_deref()),
        quiet: cli.quiet,
    };
    let result = match cli.command {
        Command::Register(a) => cmd::register::run(&ctx, a),
        Command::Verify(a) => cmd::verify::run(&ctx, a),
        Command::List => cmd::list::run(&ctx),
        Command::Show(a) => cmd::show::run(&ctx, a),
        Command::Seal(a) => cmd::seal::run(&ctx, a),
        Command::Level(a) => cmd::level::run(&ctx, a),
        Command::Status => cmd::status::run(&ctx),
        Command::Enforce(a) => cmd::enforce::run(&ctx, a),
        Command::Audit(a) => cmd::audit::run(&ctx, a),
        Command::Watch(a) => cmd::watch::run(&ctx, a),
        Command::Run(a) => cmd::run::run(&ctx, a),
        Command::Remove(a) => cmd::remove::run(&ctx, a),
        Command::Registry { action } => cmd::registry::run(&ctx, action),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Every error message already includes its cause; `{e:#}` would repeat it.
            eprintln!("sealtool: error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
