//! The crate's error type. Each variant's message says what failed; the underlying cause (an
//! aya or I/O error, e.g. the verifier log) is its `source()`. Print an error with
//! [`report`] to get the whole chain on one line.

use std::path::PathBuf;

use aya::maps::MapError;
use aya::programs::ProgramError;

use crate::support::{Unsupported, KERNEL_BTF_PATH};

/// Everything that can go wrong loading, configuring and attaching fsguard's programs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel cannot enforce at all (see [`crate::support`]).
    #[error("the kernel cannot enforce fsguard's BPF LSM programs")]
    Unsupported {
        /// Why not.
        #[from]
        source: Unsupported,
    },
    /// The kernel's BTF could not be read or parsed.
    #[error("cannot read the kernel's BTF from {KERNEL_BTF_PATH}")]
    KernelBtf {
        /// aya's parse or I/O error.
        #[source]
        source: aya::BtfError,
    },
    /// aya could not parse a BPF object, relocate it or create its maps in the kernel.
    #[error("cannot load BPF object `{object}` (ELF parsing, CO-RE relocation or map creation)")]
    LoadObject {
        /// Name of the object (`bpf/<object>.bpf.c`).
        object: &'static str,
        /// aya's error.
        #[source]
        source: aya::EbpfError,
    },
    /// The environment asks for an inode capacity the guard can't have.
    #[error(
        "{var}={value:?}: the guard's inode capacity must be a whole number from {min} to {max}"
    )]
    BadCapacity {
        /// The variable.
        var: &'static str,
        /// What it holds.
        value: String,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
    },
    /// A capsule being sealed is already in the guard, put there by somebody else.
    #[error(
        "the guard already holds a capsule named `{name}` (slot {slot}) that this seal did not \
         put there (anyone may leave requests): refusing to hand the tree to it"
    )]
    SlotTaken {
        /// The capsule's name.
        name: String,
        /// The slot that holds it.
        slot: u32,
    },
    /// A capsule held more, when its sealer said its tree was in, than the sealer's requests
    /// added: something slipped in while it was sealed (anyone may leave requests).
    #[error(
        "capsule slot {slot} held inodes or exec trusts its sealer did not add when its tree          was said to be in (a request slipped in while it was sealed): the guard refuses          everything its processes would run until the next boot"
    )]
    Tainted {
        /// The slot.
        slot: u32,
    },
    /// A capsule names a base the guard does not hold (not sealed, or not enforced yet).
    #[error(
        "capsule `{capsule}` runs the sealed files of capsule `{base}`, which the guard does not          hold (not sealed, or not enforced): enforce `{base}` first"
    )]
    NoBase {
        /// The capsule that names it.
        capsule: String,
        /// The base.
        base: String,
    },
    /// The reader helpers' calls (readers.rs) can't be learnt from the kernel's symbols.
    #[error(
        "cannot tell which BPF programs read other processes' memory, which level 2 needs: {why}"
    )]
    ReaderHelpers {
        /// Why.
        why: String,
    },
    /// A bpf(2) step of the guard's self-protection failed.
    #[error("cannot {what}")]
    Integrity {
        /// What was being done.
        what: String,
        /// The system call's error.
        #[source]
        source: std::io::Error,
    },
    /// Something from before the guard was sealed still reaches its maps or programs: the
    /// level is not raised above 0 while it exists.
    #[error(
        "the guard does not stand alone, so the level stays where it is: {}; end or remove \
         it, then raise the level again",
        holds.join("; ")
    )]
    NotAlone {
        /// What holds the guard's maps or programs.
        holds: Vec<String>,
    },
    /// A program the loader expects is not in the object.
    #[error("BPF object `{object}` has no program `{program}`")]
    MissingProgram {
        /// Name of the object.
        object: &'static str,
        /// The missing program (its C function name).
        program: &'static str,
    },
    /// A program is not of the expected type (e.g. its `SEC()` is not `lsm/...`).
    #[error("program `{program}` in BPF object `{object}` is not an LSM program")]
    NotLsm {
        /// Name of the object.
        object: &'static str,
        /// The program.
        program: &'static str,
        /// aya's error.
        #[source]
        source: ProgramError,
    },
    /// The kernel refused to load (verify) an LSM program.
    #[error(
        "cannot load LSM program `{program}` for hook `{hook}` into the kernel: {}",
        load_failure(cause)
    )]
    LoadProgram {
        /// The program.
        program: &'static str,
        /// The LSM hook (without `bpf_lsm_`), e.g. `file_open`.
        hook: &'static str,
        /// aya's error, including the verifier log when the verifier rejected it (not a
        /// `source`: the message already says the end of the log, and a report that
        /// follows sources would print the whole log after it).
        cause: ProgramError,
    },
    /// Attaching a loaded LSM program failed.
    #[error("cannot attach LSM program `{program}` to hook `{hook}`")]
    Attach {
        /// The program.
        program: &'static str,
        /// The LSM hook.
        hook: &'static str,
        /// aya's error.
        #[source]
        source: ProgramError,
    },
    /// An operation needs the program attached (or detached) and it is not.
    #[error("LSM program `{program}` is {state}")]
    AttachState {
        /// The program.
        program: &'static str,
        /// `"already attached"` or `"not attached"`.
        state: &'static str,
    },
    /// A map the loader expects is not in the object.
    #[error("BPF object `{object}` has no map `{map}`")]
    MissingMap {
        /// Name of the object.
        object: &'static str,
        /// The missing map.
        map: &'static str,
    },
    /// A map has another type or key/value size than the Rust side expects.
    #[error("map `{map}` in BPF object `{object}` does not match its Rust type (map type or key/value size)")]
    MapType {
        /// Name of the object.
        object: &'static str,
        /// The map.
        map: &'static str,
        /// aya's error.
        #[source]
        source: MapError,
    },
    /// A map read, update or delete failed.
    #[error("cannot {op} map `{map}`")]
    Map {
        /// What was attempted, e.g. `"insert into"`.
        op: &'static str,
        /// The map.
        map: &'static str,
        /// aya's error.
        #[source]
        source: MapError,
    },
    /// A bpffs pin could not be created, opened or removed.
    #[error("cannot {op} the pin {path}")]
    Pin {
        /// What was attempted.
        op: &'static str,
        /// The pin path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// This build's guard could not be told from what the kernel runs.
    #[error("cannot identify the guard: {what}")]
    Identity {
        /// What failed.
        what: String,
    },
    /// The kernel runs this build's guard, but its pins are not visible from here.
    #[error("the kernel runs this build's guard ({attached} of its {of} programs attached), but its pins in {dir} are not visible from here (hidden by a mount in this mount namespace, or removed at level 0); nothing can be read from or asked of it here")]
    Hidden {
        /// The pin directory.
        dir: PathBuf,
        /// This build's programs the kernel has attached.
        attached: usize,
        /// This build's programs.
        of: usize,
    },
    /// The pins are not this build's guard as the kernel runs it.
    #[error("the guard pinned in {dir} is not this build's guard as the kernel runs it: {why}")]
    NotThis {
        /// The pin directory.
        dir: PathBuf,
        /// What differs.
        why: String,
    },
    /// The guard's maps are pinned but its programs are not all attached, or the reverse.
    #[error("the guard in {dir} is incomplete: {what}")]
    Incomplete {
        /// The pin directory.
        dir: PathBuf,
        /// What is missing.
        what: String,
    },
    /// The level can only be raised.
    #[error("the level is {current}; lowering it to {requested} is refused (it can only be raised, until the next boot)")]
    LevelLowering {
        /// The level in force.
        current: u32,
        /// The level asked for.
        requested: u32,
    },
    /// A level above the highest one.
    #[error("level {requested} does not exist (levels are 0, 1 and 2)")]
    NoSuchLevel {
        /// The level asked for.
        requested: u32,
    },
    /// Every capsule slot is taken.
    #[error("no free capsule slot: the guard holds at most {max} capsules")]
    NoCapsuleSlot {
        /// Capacity.
        max: u32,
    },
    /// The guard refused requests: each would have taken something away, or found no room.
    #[error("the guard rejected {count} of {of} requests: each would have taken protection away (a slot, cgroup, level or inode it already holds otherwise), or its inode map was full")]
    Rejected {
        /// Requests rejected.
        count: u64,
        /// Requests submitted.
        of: usize,
    },
    /// Fewer of this sender's requests reached the guard than it left: another process
    /// holding a descriptor of `requests` replaced or removed them before the guard applied
    /// them (what it left instead was judged as its own, and may have been applied).
    #[error("{dir}: the guard applied {applied} and rejected {rejected} of the {of} requests this process left: the others were replaced or removed before it applied them (another process writes to its requests map), or their record was pushed out by {max} newer ones; what was asked is NOT enforced as asked")]
    NotAppliedAsSent {
        /// The pin directory.
        dir: std::path::PathBuf,
        /// Requests applied under this sender's tag.
        applied: u64,
        /// Requests rejected under this sender's tag.
        rejected: u64,
        /// Requests left.
        of: usize,
        /// The guard's record capacity (FSGUARD_MAX_RESULTS).
        max: u32,
    },
    /// The guard's record of this sender's tag is somebody else's, or holds requests with
    /// another key: what the guard applied can't be told to be what this process asked.
    #[error("{dir}: the guard's record of this process's requests holds {foreign} requests under another key, or was made by another sender (the record was pushed out and made again): what was asked is NOT known to be enforced as asked")]
    ForeignResults {
        /// The pin directory.
        dir: std::path::PathBuf,
        /// Requests counted under this tag with another key.
        foreign: u64,
    },
    /// No random number for a request tag (the kernel's getrandom failed).
    #[error("no random number to tag requests with: {source}")]
    NoRandom {
        /// The cause.
        source: getrandom::Error,
    },
    /// The guard did not apply the requests (its `bpf` hook is not attached?).
    #[error("{dir}: the guard left requests unapplied; is its bpf hook attached?")]
    RequestsPending {
        /// The pin directory.
        dir: std::path::PathBuf,
    },
    /// The kernel already enforces this capsule with another inside.
    #[error("capsule {name:?} is already enforced with a different inside (cgroup); an inside never changes once sealed")]
    InsideMismatch {
        /// The capsule.
        name: String,
    },
    /// Two capsules can't share a cgroup.
    #[error("cgroup {cgroup_id} is already the inside of capsule slot {slot}")]
    CgroupTaken {
        /// The cgroup v2 id.
        cgroup_id: u64,
        /// The slot that has it.
        slot: u32,
    },
    /// Reading a capsule's cgroup failed.
    #[error("{path}: cannot read the capsule's cgroup: {source}")]
    Cgroup {
        /// The cgroup file or directory.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `stat()` of a path failed.
    #[error("cannot stat {path}")]
    Stat {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A path's `st_dev` cannot be converted to a kernel `dev_t`.
    #[error("device number {st_dev:#x} of {path} does not fit a kernel dev_t (12-bit major, 20-bit minor)")]
    DeviceOutOfRange {
        /// The path.
        path: PathBuf,
        /// Its `st_dev`.
        st_dev: u64,
    },
}

/// `err` and all its sources, joined with `": "` (one line, unless the verifier log in it has
/// several).
pub fn report(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(cause) = cur {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        cur = cause.source();
    }
    out
}

/// Why the kernel refused a program, in a few lines: its answer and the end of the verifier's
/// log, which says which instruction it stopped at and why (the whole log runs to thousands of
/// lines).
fn load_failure(e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = &lines[lines.len().saturating_sub(12)..];
            if tail.is_empty() {
                io_error.to_string()
            } else {
                format!(
                    "{io_error}; the verifier's last words:\n  {}",
                    tail.join("\n  ")
                )
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_joins_the_chain() {
        let err = Error::Stat {
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        let text = report(&err);
        assert!(text.starts_with("cannot stat /x: "), "{text}");
        assert!(text.contains("No such file"), "{text}");
    }
}
