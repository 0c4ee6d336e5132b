//! guard-attack: tries ONE way around the guard that goes through the guard's own programs
//! and maps, as root outside a capsule would, and says whether the kernel let it happen. Used
//! by the guard-integrity suite in the test guest (tests/vm/guest/integrity-suite.sh).
//!
//! ```text
//! guard-attack OP ARGS...
//! ```
//!
//! On stdout one line: `allowed` (exit 0), `refused` (EPERM, exit 1), `error: <cause>` (exit
//! 2: the attempt failed otherwise, or its setup did). `hold` prints more (below).
//!
//! Operations:
//!   prog-fd NAME          a descriptor of the guard's program NAME by id
//!                         (BPF_PROG_GET_FD_BY_ID; setup: the id, from its pinned link)
//!   own-prog-fd           loads own_filter, then a descriptor of it by id (a control)
//!   ext-guard NAME SLOT   an extension answering SLOT for every fsguard_current_capsule of
//!                         the guard's program NAME (setup: that program's descriptor)
//!   ext-own               the same extension loaded against the attacker's own program and
//!                         attached to it (a control)
//!   filter-map PIN        a socket filter that uses the map pinned at PIN (setup: BPF_OBJ_GET)
//!   filter-own-map        a socket filter that uses a map of its own (a control)
//!   write-map PIN         rewrites element 0 of the array pinned at PIN with what it holds
//!                         (setup: BPF_OBJ_GET read-write, then a read)
//!   hold PIN_DIR NAME     at once: a read-write descriptor of PIN_DIR/config, a descriptor
//!                         of the guard's program NAME, and `retarget` loaded against the
//!                         attacker's own program; prints `held`, then for each line read on
//!                         stdin (`go`) tries with them: `write-config R`, `retarget R`,
//!                         `filter R`; ends at end of input

use std::ffi::CString;
use std::io::BufRead;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;

use aya::programs::{loaded_programs, Extension, ProgramFd, SocketFilter};
use aya::{Ebpf, EbpfLoader};

const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_MAP_UPDATE_ELEM: i64 = 2;
const BPF_PROG_LOAD: i64 = 5;
const BPF_OBJ_GET: i64 = 7;
const BPF_PROG_GET_FD_BY_ID: i64 = 13;
const BPF_MAP_TYPE_ARRAY: u64 = 2;
const BPF_PROG_TYPE_SOCKET_FILTER: u64 = 1;

static ATTACK: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/attack.bpf.o"));

/// What one attempt came to.
enum Outcome {
    Allowed,
    Refused,
    Error(String),
}

impl Outcome {
    fn of(r: Result<(), i32>) -> Self {
        match r {
            Ok(()) => Outcome::Allowed,
            Err(libc::EPERM) => Outcome::Refused,
            Err(e) => Outcome::Error(std::io::Error::from_raw_os_error(e).to_string()),
        }
    }

    /// aya's errors carry the system call's errno somewhere in their chain.
    fn of_aya<T, E: std::error::Error + 'static>(r: Result<T, E>) -> Self {
        match r {
            Ok(_) => Outcome::Allowed,
            Err(e) => {
                let mut cur: Option<&dyn std::error::Error> = Some(&e);
                let mut text = e.to_string();
                while let Some(c) = cur {
                    if let Some(io) = c.downcast_ref::<std::io::Error>() {
                        if io.raw_os_error() == Some(libc::EPERM) {
                            return Outcome::Refused;
                        }
                    }
                    text = format!("{text}: {c}");
                    cur = c.source();
                }
                Outcome::Error(text)
            }
        }
    }

    fn word(&self) -> String {
        match self {
            Outcome::Allowed => "allowed".into(),
            Outcome::Refused => "refused".into(),
            Outcome::Error(e) => format!("error: {e}"),
        }
    }

    fn exit(self) -> ExitCode {
        println!("{}", self.word());
        ExitCode::from(match self {
            Outcome::Allowed => 0,
            Outcome::Refused => 1,
            Outcome::Error(_) => 2,
        })
    }
}

/// bpf(2) with a zeroed 128-byte attribute block starting with `words`.
fn bpf(cmd: i64, words: &[u64]) -> Result<i64, i32> {
    let mut attr = [0u64; 16];
    attr[..words.len()].copy_from_slice(words);
    // SAFETY: `attr` is a zero-padded, 128-byte image of `union bpf_attr` for `cmd`, valid for
    // the call; pointers inside it point to live buffers of the caller.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128u32) };
    if rc < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(rc)
    }
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: bpf(2) returned this new descriptor, owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

fn obj_get(path: &str) -> Result<OwnedFd, i32> {
    let c = CString::new(path.as_bytes()).map_err(|_| libc::EINVAL)?;
    bpf(BPF_OBJ_GET, &[c.as_ptr() as u64]).map(owned)
}

/// A socket filter that only loads `map_fd` (it is then among the program's maps) and
/// returns 0; the program is closed again at once.
fn filter_using(map_fd: i32) -> Result<(), i32> {
    let insns: [u64; 4] = [
        // r1 = map (BPF_LD_IMM64, src BPF_PSEUDO_MAP_FD), two slots
        0x18 | (1 << 8) | (1 << 12) | (u64::from(map_fd as u32) << 32),
        0,
        0xb7, // r0 = 0
        0x95, // exit
    ];
    let license = c"GPL";
    bpf(
        BPF_PROG_LOAD,
        &[
            BPF_PROG_TYPE_SOCKET_FILTER | (4u64 << 32),
            insns.as_ptr() as u64,
            license.as_ptr() as u64,
        ],
    )
    .map(|fd| drop(owned(fd)))
}

fn write_elem0(fd: &OwnedFd) -> Result<(), i32> {
    let mut value = [0u8; 4096];
    let key = 0u32;
    let words = |v: &mut [u8; 4096]| {
        [
            fd.as_raw_fd() as u64,
            &key as *const u32 as u64,
            v.as_mut_ptr() as u64,
            0,
        ]
    };
    bpf(BPF_MAP_LOOKUP_ELEM, &words(&mut value)).map_err(|_| libc::ENODATA)?;
    bpf(BPF_MAP_UPDATE_ELEM, &words(&mut value)).map(drop)
}

/// A descriptor of the guard's program NAME by id (BPF_PROG_GET_FD_BY_ID), the id read
/// from its pinned link (whose descriptor the guard does not refuse).
fn guard_prog_by_id(name: &str) -> Outcome {
    let link = match obj_get(&format!("/sys/fs/bpf/fsguard/link_{name}")) {
        Ok(fd) => fd,
        Err(e) => return Outcome::Error(format!("setup: link pin of {name}: errno {e}")),
    };
    // BPF_OBJ_GET_INFO_BY_FD (15): bpf_link_info is type, id, prog_id (u32 each).
    let mut info = [0u32; 8];
    let words = [
        link.as_raw_fd() as u64 | ((info.len() as u64 * 4) << 32),
        info.as_mut_ptr() as u64,
    ];
    if let Err(e) = bpf(15, &words) {
        return Outcome::Error(format!("setup: link info: errno {e}"));
    }
    Outcome::of(bpf(BPF_PROG_GET_FD_BY_ID, &[u64::from(info[2])]).map(|fd| drop(owned(fd))))
}

/// The loaded program whose name is NAME cut to the kernel's 15 bytes, for aya.
fn guard_prog(name: &str) -> Result<ProgramFd, Outcome> {
    match guard_prog_by_id(name) {
        Outcome::Allowed => {}
        o => return Err(o),
    }
    let want = &name.as_bytes()[..name.len().min(15)];
    for info in loaded_programs().flatten() {
        if info.name() == want {
            return info.fd().map_err(|e| Outcome::of_aya::<(), _>(Err(e)));
        }
    }
    Err(Outcome::Error(format!("no loaded program {name}")))
}

fn attack_object(slot: u32) -> Result<Ebpf, Outcome> {
    EbpfLoader::new()
        .set_global("slot", &slot, true)
        .load(ATTACK)
        .map_err(|e| Outcome::Error(format!("attack.bpf.o: {e}")))
}

/// Loads own_filter from `ebpf` and returns a descriptor of it.
fn own_filter(ebpf: &mut Ebpf) -> Result<ProgramFd, Outcome> {
    let f: &mut SocketFilter = ebpf
        .program_mut("own_filter")
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| Outcome::Error("no own_filter".into()))?;
    f.load().map_err(|e| Outcome::Error(e.to_string()))?;
    f.fd()
        .and_then(|fd| fd.try_clone().map_err(Into::into))
        .map_err(|e| Outcome::Error(e.to_string()))
}

fn extension<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Extension, Outcome> {
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| Outcome::Error(format!("no {name}")))
}

fn ext_guard(name: &str, slot: u32) -> Outcome {
    let target = match guard_prog(name) {
        Ok(t) => t,
        Err(o) => return o,
    };
    let mut ebpf = match attack_object(slot) {
        Ok(e) => e,
        Err(o) => return o,
    };
    let ext = match extension(&mut ebpf, "everyone_inside") {
        Ok(x) => x,
        Err(o) => return o,
    };
    if let Err(e) = ext.load(target, "fsguard_current_capsule") {
        return Outcome::of_aya::<(), _>(Err(e));
    }
    Outcome::of_aya(ext.attach())
}

fn ext_own() -> Outcome {
    let run = || -> Result<Outcome, Outcome> {
        let mut ebpf = attack_object(1)?;
        let own = own_filter(&mut ebpf)?;
        let ext = extension(&mut ebpf, "retarget")?;
        if let Err(e) = ext.load(own, "own_capsule") {
            return Ok(Outcome::of_aya::<(), _>(Err(e)));
        }
        Ok(Outcome::of_aya(ext.attach()))
    };
    run().unwrap_or_else(|o| o)
}

fn own_prog_fd() -> Outcome {
    let run = || -> Result<Outcome, Outcome> {
        let mut ebpf = attack_object(1)?;
        let own = own_filter(&mut ebpf)?;
        let mut info = [0u64; 4];
        let mut attr = [0u64; 16];
        attr[0] = own.as_fd().as_raw_fd() as u64 | ((info.len() as u64 * 8) << 32);
        attr[1] = info.as_mut_ptr() as u64;
        // BPF_OBJ_GET_INFO_BY_FD (15): bpf_prog_info's id is its second u32.
        // SAFETY: as in bpf(); `info` outlives the call.
        let rc = unsafe { libc::syscall(libc::SYS_bpf, 15i64, attr.as_mut_ptr(), 128u32) };
        if rc < 0 {
            return Err(Outcome::Error("cannot read own program's id".into()));
        }
        let id = (info[0] >> 32) & 0xffff_ffff;
        Ok(Outcome::of(
            bpf(BPF_PROG_GET_FD_BY_ID, &[id]).map(|fd| drop(owned(fd))),
        ))
    };
    run().unwrap_or_else(|o| o)
}

fn filter_own_map() -> Outcome {
    // BPF_MAP_CREATE: type, key_size, value_size, max_entries.
    match bpf(
        BPF_MAP_CREATE,
        &[BPF_MAP_TYPE_ARRAY | (4 << 32), 8 | (1 << 32)],
    ) {
        Ok(fd) => {
            let fd = owned(fd);
            Outcome::of(filter_using(fd.as_raw_fd()))
        }
        Err(e) => Outcome::Error(format!("map create: errno {e}")),
    }
}

fn hold(dir: &str, name: &str) -> ExitCode {
    let config = match obj_get(&format!("{dir}/config")) {
        Ok(fd) => fd,
        Err(e) => return Outcome::Error(format!("setup: config: errno {e}")).exit(),
    };
    let target = match guard_prog(name) {
        Ok(t) => t,
        Err(o) => return Outcome::Error(format!("setup: {}", o.word())).exit(),
    };
    let mut ebpf = match attack_object(1) {
        Ok(e) => e,
        Err(o) => return o.exit(),
    };
    let own = match own_filter(&mut ebpf) {
        Ok(f) => f,
        Err(o) => return o.exit(),
    };
    if let Err(o) = extension(&mut ebpf, "retarget").and_then(|x| {
        x.load(own, "own_capsule")
            .map_err(|e| Outcome::Error(format!("setup: retarget: {e}")))
    }) {
        return o.exit();
    }
    println!("held");
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
        println!("write-config {}", Outcome::of(write_elem0(&config)).word());
        let r = extension(&mut ebpf, "retarget")
            .map(|x| Outcome::of_aya(x.attach_to_program(&target, "fsguard_current_capsule")))
            .unwrap_or_else(|o| o);
        println!("retarget {}", r.word());
        println!(
            "filter {}",
            Outcome::of(filter_using(config.as_raw_fd())).word()
        );
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match a.as_slice() {
        ["prog-fd", name] => guard_prog_by_id(name),
        ["own-prog-fd"] => own_prog_fd(),
        ["ext-guard", name, slot] => match slot.parse() {
            Ok(s) => ext_guard(name, s),
            Err(_) => Outcome::Error("usage: SLOT is a number".into()),
        },
        ["ext-own"] => ext_own(),
        ["filter-map", pin] => match obj_get(pin) {
            Ok(fd) => Outcome::of(filter_using(fd.as_raw_fd())),
            Err(e) => Outcome::Error(format!("setup: {pin}: errno {e}")),
        },
        ["filter-own-map"] => filter_own_map(),
        ["write-map", pin] => match obj_get(pin) {
            Ok(fd) => Outcome::of(write_elem0(&fd)),
            Err(e) => Outcome::Error(format!("setup: {pin}: errno {e}")),
        },
        ["hold", dir, name] => return hold(dir, name),
        _ => {
            println!("error: usage");
            return ExitCode::from(64);
        }
    };
    outcome.exit()
}
