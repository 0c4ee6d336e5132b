//! `fsguard-smoke`: end-to-end proof that the running kernel enforces fsguard's BPF LSM path.
//! Meant to run INSIDE the test guest, as root (never on the development hosts, whose kernel
//! refuses LSM programs).
//!
//! It creates two files, loads and attaches the smoke program (`bpf/smoke.bpf.c`), denies
//! writes to one file's (dev, ino), and checks that: a write-open of it fails with EPERM (and
//! was counted by the program), a read-open still works, a write-open of the other file works,
//! the config level and map removal switch enforcement off, and after detaching the write-open
//! succeeds again.
//!
//! Usage: `fsguard-smoke [--dir DIR] [--verbose]` (DIR defaults to /tmp; pass a directory on
//! a block-device filesystem to also exercise the st_dev -> kernel dev_t conversion, which
//! tmpfs cannot tell apart).
//!
//! Exit status: 0 and a last stdout line `fsguard-smoke: ok` when every check passed; 1 with
//! `fsguard-smoke: FAILED at step ...` on stderr when one failed; 2 with
//! `fsguard-smoke: SKIP: ...` when the kernel cannot enforce at all (no BPF LSM or no BTF).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fsguard::shared::{fsguard_config, FSGUARD_LEVEL_OFF};
use fsguard::smoke::Smoke;
use fsguard::{report, InodeKey};

const NAME: &str = "fsguard-smoke";
const PROTECTED_CONTENT: &[u8] = b"fsguard-smoke: protected\n";

/// A failed check: which step, and what happened.
struct Failure {
    step: &'static str,
    msg: String,
}

type Checked<T = ()> = Result<T, Failure>;

fn fail<T>(step: &'static str, msg: impl Into<String>) -> Checked<T> {
    Err(Failure {
        step,
        msg: msg.into(),
    })
}

/// Maps a library error to a failure of `step`, with its whole cause chain.
fn at<T, E: std::error::Error + 'static>(step: &'static str, r: Result<T, E>) -> Checked<T> {
    r.map_err(|e| Failure {
        step,
        msg: report(&e),
    })
}

struct Options {
    dir: PathBuf,
    verbose: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        dir: PathBuf::from("/tmp"),
        verbose: false,
    };
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--dir") => {
                opts.dir = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--dir needs a directory")?;
            }
            Some("-v" | "--verbose") => opts.verbose = true,
            Some("-h" | "--help") => {
                return Err("usage: fsguard-smoke [--dir DIR] [--verbose]".to_owned())
            }
            _ => return Err(format!("unexpected argument {arg:?}; try --help")),
        }
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{NAME}: {msg}");
            return ExitCode::from(1);
        }
    };
    if let Err(reason) = fsguard::check_support() {
        eprintln!(
            "{NAME}: SKIP: this kernel cannot enforce BPF LSM programs: {}",
            report(&reason)
        );
        return ExitCode::from(2);
    }
    match run(&opts) {
        Ok(()) => {
            println!("{NAME}: ok");
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("{NAME}: FAILED at step `{}`: {}", f.step, f.msg);
            ExitCode::from(1)
        }
    }
}

/// The test directory, removed on drop (after the program is detached: declared first).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run(opts: &Options) -> Checked {
    let log = |what: &str| {
        if opts.verbose {
            eprintln!("{NAME}: {what}");
        }
    };

    // SAFETY: geteuid() has no preconditions, touches no memory and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return fail(
            "check root",
            format!("must run as root (euid is {euid}) to load BPF LSM programs"),
        );
    }

    let step = "create test files";
    let scratch = Scratch(opts.dir.join(format!("{NAME}.{}", std::process::id())));
    at(step, fs::create_dir(&scratch.0))?;
    let protected = scratch.0.join("protected");
    let other = scratch.0.join("other");
    at(step, fs::write(&protected, PROTECTED_CONTENT))?;
    at(step, fs::write(&other, b"other\n"))?;

    let key = at("compute inode identity", InodeKey::of_path(&protected))?;
    log(&format!(
        "{}: kernel dev {:#x} ({}:{}), ino {}",
        protected.display(),
        key.dev,
        key.dev >> fsguard::dev::MINORBITS,
        key.dev & u64::from(fsguard::dev::MAX_MINOR),
        key.ino
    ));

    let btf = at("read kernel BTF", fsguard::kernel_btf())?;
    let mut smoke = at("load smoke program", Smoke::load(&btf))?;
    at("attach smoke program", smoke.attach())?;
    log("loaded and attached");

    let write = OpenOptions::new().write(true).clone();
    let read_write = OpenOptions::new().read(true).write(true).clone();
    let read = OpenOptions::new().read(true).clone();

    expect_opens(
        "write-open before any deny rule (no false denial)",
        &protected,
        &write,
    )?;

    at("insert identity into deny map", smoke.deny_write(&key))?;
    log("denied writes to the protected file");

    expect_eperm(
        "write-open (O_WRONLY) of the denied file",
        &protected,
        &write,
    )?;
    expect_eperm(
        "read-write open (O_RDWR) of the denied file",
        &protected,
        &read_write,
    )?;

    let step = "read-open of the denied file";
    let mut content = Vec::new();
    at(
        step,
        expect_opens(step, &protected, &read)?.read_to_end(&mut content),
    )?;
    if content != PROTECTED_CONTENT {
        return fail(
            step,
            format!("content changed: {:?}", String::from_utf8_lossy(&content)),
        );
    }

    let step = "write-open of another file";
    at(
        step,
        expect_opens(step, &other, &write)?.write_all(b"written\n"),
    )?;

    let step = "denial counter";
    let denied = at(step, smoke.denied_writes())?;
    if denied != 2 {
        return fail(
            step,
            format!("the program counted {denied} refused write-opens, expected 2"),
        );
    }

    let step = "config level off";
    at(
        step,
        smoke.set_config(&fsguard_config::with_level(FSGUARD_LEVEL_OFF)),
    )?;
    expect_opens("write-open with level off", &protected, &write)?;
    at(step, smoke.set_config(&fsguard_config::enforcing()))?;
    expect_eperm("write-open with level back to enforce", &protected, &write)?;

    let step = "remove identity from deny map";
    at(step, smoke.forget(&key))?;
    expect_opens("write-open after removing the rule", &protected, &write)?;
    at(step, smoke.deny_write(&key))?;
    expect_eperm("write-open after re-adding the rule", &protected, &write)?;
    log("config level and map removal switch enforcement off and on");

    at("detach smoke program", smoke.detach())?;
    if smoke.is_attached() {
        return fail("detach smoke program", "still attached after detach");
    }
    let step = "write-open after detach";
    let write_truncate = OpenOptions::new().write(true).truncate(true).clone();
    let mut file = expect_opens(step, &protected, &write_truncate)?;
    at(step, file.write_all(b"rewritten\n"))?;
    drop(file);
    let step = "content after detach";
    if at(step, fs::read(&protected))? != b"rewritten\n" {
        return fail(step, "the write after detach did not reach the file");
    }
    log("detached: write-open succeeds again");

    drop(smoke);
    drop(scratch);
    Ok(())
}

/// `path` must open with `opts`.
fn expect_opens(step: &'static str, path: &Path, opts: &OpenOptions) -> Checked<File> {
    opts.open(path).or_else(|e| {
        fail(
            step,
            format!("opening {} failed: {e}, expected success", path.display()),
        )
    })
}

/// Opening `path` with `opts` must fail with EPERM.
fn expect_eperm(step: &'static str, path: &Path, opts: &OpenOptions) -> Checked {
    match opts.open(path) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(()),
        Err(e) => fail(
            step,
            format!("opening {} failed with {e}, expected EPERM", path.display()),
        ),
        Ok(_) => fail(
            step,
            format!(
                "opening {} succeeded, expected EPERM: the program did not enforce",
                path.display()
            ),
        ),
    }
}
