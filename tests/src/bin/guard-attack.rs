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
//!                         the guard's program NAME, loaded (judged) then attached with
//!                         BPF_LINK_CREATE naming no target (judged); setup: a descriptor of
//!                         that program
//!   ext-own               the same extension loaded against the attacker's own program and
//!                         attached to it (a control)
//!   filter-map PIN        a socket filter that uses the map pinned at PIN (setup: BPF_OBJ_GET)
//!   filter-own-map        a socket filter that uses a map of its own (a control)
//!   write-map PIN         rewrites element 0 of the array pinned at PIN with what it holds
//!                         (setup: BPF_OBJ_GET read-write, then a read)
//!   hold PIN_DIR NAME     at once: a read-write descriptor of PIN_DIR/config, a descriptor
//!                         of the guard's program NAME, and `retarget` loaded against the
//!                         attacker's own LSM program (loaded, not attached); prints `held`,
//!                         then for each line read on stdin (`go`) tries with them:
//!                         `write-config R`, `retarget R`, `filter R`, `attach-lsm R`; ends
//!                         at end of input
//!   hold-lsm              loads the attacker's own LSM program, prints `held`, attaches it at
//!                         the first line read on stdin (`attach-lsm R`); ends at end of input
//!   hold-fmodret          loads an fmod_ret program on security_inode_init_security, prints
//!                         `held`, at the first line on stdin attaches it through
//!                         BPF_LINK_CREATE (`link R`) and BPF_RAW_TRACEPOINT_OPEN (`rawtp R`)
//!   fmodret-attach        the same program loaded and attached (BPF_LINK_CREATE) at once
//!   skip-init-security    attaches an LSM program answering -EOPNOTSUPP in inode_init_security
//!                         (`attach-lsm R`, then `held`); keeps it until end of input
//!   iter-map PIN          an iterator over the elements of the map pinned at PIN (setup:
//!                         BPF_OBJ_GET, the program's load), its link (judged), then one run
//!                         that zeroes each element's first 4 bytes
//!   iter-own-map          the same over a map of its own, whose element must then read 0
//!   iter-pin PIN LINK     the iterator's link over PIN pinned at LINK (judged: the link)
//!   outer-map PIN         a map of maps whose inner maps are like the map pinned at PIN
//!                         (setup: BPF_OBJ_GET; judged: the map's creation)
//!   outer-own-map         the same with a map of its own, of a shape no guard map has
//!   outer-pin PIN AT      a map of maps whose inner maps are like the map pinned at PIN,
//!                         pinned at AT, empty (judged: its creation)
//!   hold-requests PIN_DIR rw|wo
//!                         a read-write (or write-only) descriptor of PIN_DIR/requests, held
//!                         until end of input; prints `held`
//!   replace-requests PIN_DIR SLOT TREE none|claims -- CMD...
//!                         runs CMD (sealtool) traced; after its first bpf(2) call that
//!                         leaves 1,000 requests or more (BPF_MAP_UPDATE_BATCH), writes 100
//!                         requests of its own (`claims`: TREE's inodes for SLOT) over keys
//!                         CMD left and the guard has not applied yet, through a write-only
//!                         descriptor, then lets CMD go on (`none`: writes nothing, the
//!                         control); prints `replaced N`, CMD's output, exits with its status
//!   during-raise N none|reader|loop PATH -- CMD...
//!                         runs CMD (`sealtool level L`) traced; as it writes its N-th batch
//!                         of requests (BPF_MAP_UPDATE_BATCH's entry; the first comes after
//!                         the raise's checks; a raise to 2 locks programs, then raises),
//!                         loads a socket filter calling bpf_probe_read_user and holds it
//!                         until CMD has exited (`reader`; prints `loaded (descriptor N)`), binds a loop
//!                         device to PATH (`loop`; prints `bound loopN`), or makes nothing
//!                         (`none`, the control; prints `nothing made`); CMD's output; exits
//!                         with its status
//!   impostor DIR MAPS [own-lsm] -- CMD...
//!                         an impostor's pins at DIR, seen only by CMD: takes the guard's pinned
//!                         links from DIR (and, MAPS `real`, its maps read-write, which only
//!                         level 0 before the freeze allows; `fake`, maps of its own shaped like
//!                         the reports; `fake-requests`, the guard's own maps as far as it
//!                         hands them out, with a map of its own as `requests`), then in a mount namespace of its own hides /sys/fs
//!                         under a tmpfs, mounts a bpffs at /sys/fs/bpf, pins them at DIR's
//!                         paths (with `own-lsm`, its own LSM program on file_open in place of
//!                         the guard's), and runs CMD there; prints CMD's output, exits with its
//!                         status (`error: ...`, 2, when the setup fails)

use std::ffi::CString;
use std::io::BufRead;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;

use aya::programs::{loaded_programs, Extension, Lsm, ProgramFd, SocketFilter};
use aya::{Btf, Ebpf, EbpfLoader};
use capsule_tests::bpf;

const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_MAP_UPDATE_ELEM: i64 = 2;
const BPF_PROG_LOAD: i64 = 5;
const BPF_F_RDONLY: u32 = 1 << 3;
const BPF_F_WRONLY: u32 = 1 << 4;
const BPF_OBJ_GET: i64 = 7;
const BPF_OBJ_GET_INFO_BY_FD: i64 = 15;
const BPF_PROG_GET_FD_BY_ID: i64 = 13;
const BPF_LINK_CREATE: i64 = 28;
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
                let mut cur: Option<&dyn std::error::Error> = e.source();
                let mut text = e.to_string();
                while let Some(c) = cur {
                    if let Some(io) = c.downcast_ref::<std::io::Error>() {
                        if io.raw_os_error() == Some(libc::EPERM) {
                            eprintln!("guard-attack: refused: {text}");
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

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: bpf(2) returned this new descriptor, owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

fn obj_get(path: &str) -> Result<OwnedFd, i32> {
    obj_get_with(path, 0)
}

/// A read-only descriptor: the guard refuses its reports to writers from the freeze on,
/// and the attacks that only need to name a map must not stop at that refusal.
fn obj_get_ro(path: &str) -> Result<OwnedFd, i32> {
    obj_get_with(path, BPF_F_RDONLY)
}

fn obj_get_with(path: &str, file_flags: u32) -> Result<OwnedFd, i32> {
    let c = CString::new(path.as_bytes()).map_err(|_| libc::EINVAL)?;
    // pathname, then bpf_fd (u32) and file_flags (u32) in the second word.
    bpf(
        BPF_OBJ_GET,
        &[c.as_ptr() as u64, u64::from(file_flags) << 32],
    )
    .map(owned)
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

/// Loads own_lsm (not attached) and returns a descriptor of it; the load is judged.
fn own_lsm(ebpf: &mut Ebpf) -> Result<ProgramFd, Outcome> {
    let btf = Btf::from_sys_fs().map_err(|e| Outcome::Error(e.to_string()))?;
    let l: &mut Lsm = ebpf
        .program_mut("own_lsm")
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| Outcome::Error("no own_lsm".into()))?;
    if let Err(e) = l.load("file_open", &btf) {
        return Err(Outcome::of_aya::<(), _>(Err(e)));
    }
    l.fd()
        .and_then(|fd| fd.try_clone().map_err(Into::into))
        .map_err(|e| Outcome::Error(e.to_string()))
}

/// Attaches own_lsm (loaded) to its hook; judged.
fn attach_own_lsm(ebpf: &mut Ebpf) -> Outcome {
    match ebpf
        .program_mut("own_lsm")
        .and_then(|p| TryInto::<&mut Lsm>::try_into(p).ok())
    {
        Some(l) => Outcome::of_aya(l.attach()),
        None => Outcome::Error("no own_lsm".into()),
    }
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
    // Attached to the program it was loaded for, naming no target (BPF_LINK_CREATE with
    // target_fd 0), as an attacker would to avoid a check on the target.
    let prog = match ext.fd() {
        Ok(fd) => fd.as_fd().as_raw_fd(),
        Err(e) => return Outcome::Error(e.to_string()),
    };
    Outcome::of(bpf(BPF_LINK_CREATE, &[u64::from(prog as u32)]).map(|fd| drop(owned(fd))))
}

fn ext_own() -> Outcome {
    let run = || -> Result<Outcome, Outcome> {
        let mut ebpf = attack_object(1)?;
        let own = own_lsm(&mut ebpf)?;
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
        // BPF_OBJ_GET_INFO_BY_FD (15): bpf_prog_info's id is its second u32.
        let words = [
            own.as_fd().as_raw_fd() as u64 | ((info.len() as u64 * 8) << 32),
            info.as_mut_ptr() as u64,
        ];
        if bpf(15, &words).is_err() {
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

const BPF_ITER_CREATE: i64 = 33;
const BPF_OBJ_PIN: i64 = 6;
const BPF_PROG_TYPE_TRACING: u64 = 26;
const BPF_TRACE_ITER: u64 = 28;
const BPF_MODIFY_RETURN: u64 = 26;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u64 = 12;

/// An iterator program over map elements that zeroes the first 4 bytes of each value.
fn load_map_iter() -> Result<OwnedFd, Outcome> {
    let btf = Btf::from_sys_fs().map_err(|e| Outcome::Error(e.to_string()))?;
    let target = btf
        .id_by_type_name_kind("bpf_iter_bpf_map_elem", aya_obj::btf::BtfKind::Func)
        .map_err(|e| Outcome::Error(e.to_string()))?;
    let insns: [u64; 6] = [
        0x79 | (2 << 8) | (1 << 12) | (24 << 16), // r2 = ctx->value
        0x15 | (2 << 8) | (2 << 16),              // if r2 == 0 goto +2
        0xb7 | (3 << 8),                          // r3 = 0
        0x63 | (2 << 8) | (3 << 12),              // *(u32 *)(r2 + 0) = r3
        0xb7,                                     // r0 = 0
        0x95,                                     // exit
    ];
    let license = c"GPL";
    let mut attr = [0u64; 16];
    attr[0] = BPF_PROG_TYPE_TRACING | ((insns.len() as u64) << 32);
    attr[1] = insns.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    attr[8] = BPF_TRACE_ITER << 32; // prog_ifindex (u32 at 64), expected_attach_type (68)
    attr[13] = u64::from(target) << 32; // attach_btf_id (u32 at 108)
    bpf(BPF_PROG_LOAD, &attr)
        .map(owned)
        .map_err(|e| Outcome::Error(format!("setup: iterator load: errno {e}")))
}

/// BPF_LINK_CREATE of the iterator over `map`.
fn iter_link(prog: &OwnedFd, map: &OwnedFd) -> Result<OwnedFd, i32> {
    let info = [map.as_raw_fd() as u32, 0, 0, 0];
    bpf(
        28, // BPF_LINK_CREATE
        &[
            prog.as_raw_fd() as u64,
            BPF_TRACE_ITER,
            info.as_ptr() as u64,
            16,
        ],
    )
    .map(owned)
}

/// Runs the iterator of `link` once (BPF_ITER_CREATE, read to the end).
fn run_iter(link: &OwnedFd) -> Result<(), i32> {
    use std::io::Read;
    let fd = bpf(BPF_ITER_CREATE, &[link.as_raw_fd() as u64]).map(owned)?;
    let mut f = std::fs::File::from(fd);
    let mut out = Vec::new();
    f.read_to_end(&mut out)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    Ok(())
}

/// BPF_OBJ_PIN of `fd` at `path`.
fn pin(fd: &OwnedFd, path: &str) -> Result<(), String> {
    let c = CString::new(path).map_err(|_| "bad path".to_string())?;
    bpf(
        BPF_OBJ_PIN,
        &[c.as_ptr() as u64, u64::from(fd.as_raw_fd() as u32)],
    )
    .map(|_| ())
    .map_err(|e| format!("pin {path}: errno {e}"))
}

/// A map of the same type and sizes as the one behind `fd` (a report's shape).
fn same_shape(fd: &OwnedFd) -> Result<OwnedFd, String> {
    // bpf_map_info: type, id, key_size, value_size, max_entries, map_flags.
    let mut info = [0u32; 20];
    bpf(
        BPF_OBJ_GET_INFO_BY_FD,
        &[
            u64::from(fd.as_raw_fd() as u32) | (std::mem::size_of_val(&info) as u64) << 32,
            info.as_mut_ptr() as u64,
        ],
    )
    .map_err(|e| format!("map info: errno {e}"))?;
    bpf(
        BPF_MAP_CREATE,
        &[
            u64::from(info[0]) | u64::from(info[2]) << 32,
            u64::from(info[3]) | u64::from(info[4]) << 32,
        ],
    )
    .map(owned)
    .map_err(|e| format!("map create: errno {e}"))
}

fn impostor(dir: &str, maps: &str, rest: &[&str]) -> ExitCode {
    let run = || -> Result<ExitCode, String> {
        let (own_lsm, cmd) = match rest {
            ["own-lsm", "--", cmd @ ..] => (true, cmd),
            ["--", cmd @ ..] => (false, cmd),
            _ => return Err("usage: impostor DIR real|fake [own-lsm] -- CMD...".into()),
        };
        let cmd = cmd.first().map(|c| (c, &cmd[1..])).ok_or("no CMD")?;
        // What the impostor takes before hiding the guard's pins.
        let mut taken: Vec<(String, OwnedFd)> = Vec::new();
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| format!("{dir}: {e}"))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in &names {
            let path = format!("{dir}/{name}");
            let fd = if name.starts_with("link_") {
                obj_get(&path).map_err(|e| format!("{path}: errno {e}"))?
            } else if maps == "real" {
                obj_get(&path).map_err(|e| format!("{path}: errno {e}"))?
            } else if maps == "fake-requests" {
                // The guard's own maps wherever it still hands them out (read-write, else
                // read-only, else write-only), a map of its own shaped like `requests` in its
                // place.
                let own = obj_get(&path)
                    .or_else(|_| obj_get_ro(&path))
                    .or_else(|_| obj_get_with(&path, BPF_F_WRONLY));
                match (name.as_str(), own) {
                    ("requests", Ok(fd)) => same_shape(&fd)?,
                    (_, Ok(fd)) => fd,
                    (_, Err(_)) => new_array(4).map_err(|o| o.word())?,
                }
            } else {
                match obj_get_ro(&path) {
                    // A shape the kernel won't make again from the sizes alone (ring
                    // buffer, storage maps): any map will do.
                    Ok(fd) => match same_shape(&fd) {
                        Ok(m) => m,
                        Err(_) => new_array(4).map_err(|o| o.word())?,
                    },
                    // An enforcing map, refused from the freeze on: any map will do.
                    Err(libc::EPERM) => new_array(4).map_err(|o| o.word())?,
                    Err(e) => return Err(format!("{path}: errno {e}")),
                }
            };
            taken.push((name.clone(), fd));
        }
        let mut ebpf = attack_object(1).map_err(|o| o.word())?;
        let mut own_link = None;
        if own_lsm {
            let btf = Btf::from_sys_fs().map_err(|e| e.to_string())?;
            let l: &mut Lsm = ebpf
                .program_mut("own_lsm")
                .and_then(|p| p.try_into().ok())
                .ok_or("no own_lsm")?;
            l.load("file_open", &btf).map_err(|e| e.to_string())?;
            let id = l.attach().map_err(|e| e.to_string())?;
            own_link = Some(aya::programs::links::FdLink::from(
                l.take_link(id).map_err(|e| e.to_string())?,
            ));
        }
        // SAFETY: plain system calls with NUL-terminated constant strings.
        let rc = unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                -1
            } else if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                -2
            } else if libc::mount(
                c"t".as_ptr(),
                c"/sys/fs".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ) != 0
            {
                -3
            } else {
                0
            }
        };
        if rc != 0 {
            return Err(format!(
                "namespace step {}: {}",
                -rc,
                std::io::Error::last_os_error()
            ));
        }
        std::fs::create_dir("/sys/fs/bpf").map_err(|e| e.to_string())?;
        // SAFETY: as above.
        if unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                c"/sys/fs/bpf".as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        } != 0
        {
            return Err(format!("mount bpffs: {}", std::io::Error::last_os_error()));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
        for (name, fd) in &taken {
            let path = format!("{dir}/{name}");
            if own_lsm && name == "link_fsguard_file_open" {
                continue;
            }
            pin(fd, &path)?;
        }
        if let Some(link) = own_link {
            link.pin(format!("{dir}/link_fsguard_file_open"))
                .map_err(|e| e.to_string())?;
        }
        let out = std::process::Command::new(cmd.0)
            .args(cmd.1)
            .output()
            .map_err(|e| format!("{}: {e}", cmd.0))?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        Ok(ExitCode::from(out.status.code().unwrap_or(125) as u8))
    };
    run().unwrap_or_else(|e| Outcome::Error(e).exit())
}

fn new_array(value_size: u64) -> Result<OwnedFd, Outcome> {
    bpf(
        BPF_MAP_CREATE,
        &[BPF_MAP_TYPE_ARRAY | (4 << 32), value_size | (1 << 32)],
    )
    .map(owned)
    .map_err(|e| Outcome::Error(format!("setup: map create: errno {e}")))
}

fn iter_map(map: Result<OwnedFd, Outcome>, check_zeroed: bool) -> Outcome {
    let run = || -> Result<Outcome, Outcome> {
        let map = map?;
        let prog = load_map_iter()?;
        let link = match iter_link(&prog, &map) {
            Ok(l) => l,
            Err(e) => return Ok(Outcome::of(Err(e))),
        };
        if check_zeroed {
            let key = 0u32;
            let mut value = 0xffff_ffffu32;
            bpf(
                BPF_MAP_UPDATE_ELEM,
                &[
                    map.as_raw_fd() as u64,
                    &key as *const u32 as u64,
                    &value as *const u32 as u64,
                    0,
                ],
            )
            .map_err(|e| Outcome::Error(format!("setup: write: errno {e}")))?;
            run_iter(&link).map_err(|e| Outcome::Error(format!("run: errno {e}")))?;
            bpf(
                BPF_MAP_LOOKUP_ELEM,
                &[
                    map.as_raw_fd() as u64,
                    &key as *const u32 as u64,
                    &mut value as *mut u32 as u64,
                    0,
                ],
            )
            .map_err(|e| Outcome::Error(format!("read: errno {e}")))?;
            if value != 0 {
                return Err(Outcome::Error(format!(
                    "the iterator did not write (value {value:#x})"
                )));
            }
        }
        Ok(Outcome::Allowed)
    };
    run().unwrap_or_else(|o| o)
}

fn iter_pin(pin: &str, at: &str) -> Outcome {
    let run = || -> Result<Outcome, Outcome> {
        let map =
            obj_get_ro(pin).map_err(|e| Outcome::Error(format!("setup: {pin}: errno {e}")))?;
        let prog = load_map_iter()?;
        let link = match iter_link(&prog, &map) {
            Ok(l) => l,
            Err(e) => return Ok(Outcome::of(Err(e))),
        };
        let c = CString::new(at).map_err(|_| Outcome::Error("bad path".into()))?;
        Ok(Outcome::of(
            bpf(BPF_OBJ_PIN, &[c.as_ptr() as u64, link.as_raw_fd() as u64]).map(drop),
        ))
    };
    run().unwrap_or_else(|o| o)
}

/// BPF_MAP_CREATE of an array of maps whose inner maps are like `inner`.
fn outer_map(inner: Result<OwnedFd, Outcome>) -> Outcome {
    match inner {
        // map_type, key_size, value_size, max_entries, map_flags, inner_map_fd
        Ok(fd) => Outcome::of(
            bpf(
                BPF_MAP_CREATE,
                &[
                    BPF_MAP_TYPE_ARRAY_OF_MAPS | (4 << 32),
                    4 | (1 << 32),
                    u64::from(fd.as_raw_fd() as u32) << 32,
                ],
            )
            .map(|m| drop(owned(m))),
        ),
        Err(o) => o,
    }
}

/// Loads LSM program `name` of the attack object for `hook`, prints `held`, then attaches it
/// at the first line read on stdin (`attach-lsm R`) or at once; keeps it until end of input.
fn hold_lsm(name: &str, hook: &str, now: bool) -> ExitCode {
    let mut ebpf = match attack_object(1) {
        Ok(e) => e,
        Err(o) => return o.exit(),
    };
    let btf = match Btf::from_sys_fs() {
        Ok(b) => b,
        Err(e) => return Outcome::Error(e.to_string()).exit(),
    };
    let Some(l) = ebpf
        .program_mut(name)
        .and_then(|p| TryInto::<&mut Lsm>::try_into(p).ok())
    else {
        return Outcome::Error(format!("no {name}")).exit();
    };
    if let Err(e) = l.load(hook, &btf) {
        return Outcome::of_aya::<(), _>(Err(e)).exit();
    }
    let mut lines = std::io::stdin().lock().lines();
    if now {
        let o = Outcome::of_aya(l.attach());
        let failed = !matches!(o, Outcome::Allowed);
        println!("attach-lsm {}", o.word());
        if failed {
            return ExitCode::from(1);
        }
        println!("held");
    } else {
        println!("held");
        if lines.next().is_some() {
            println!("attach-lsm {}", Outcome::of_aya(l.attach()).word());
        }
    }
    for _ in lines {}
    ExitCode::SUCCESS
}

/// An fmod_ret program on security_inode_init_security (r0 = 0; exit): loaded, not attached.
fn load_fmod_ret() -> Result<OwnedFd, Outcome> {
    let btf = Btf::from_sys_fs().map_err(|e| Outcome::Error(e.to_string()))?;
    let target = btf
        .id_by_type_name_kind("security_inode_init_security", aya_obj::btf::BtfKind::Func)
        .map_err(|e| Outcome::Error(e.to_string()))?;
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = c"GPL";
    let mut attr = [0u64; 16];
    attr[0] = BPF_PROG_TYPE_TRACING | ((insns.len() as u64) << 32);
    attr[1] = insns.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    attr[8] = BPF_MODIFY_RETURN << 32;
    attr[13] = u64::from(target) << 32;
    bpf(BPF_PROG_LOAD, &attr)
        .map(owned)
        .map_err(|e| Outcome::of(Err(e)))
}

/// Attaches an fmod_ret program: BPF_LINK_CREATE (attach type BPF_MODIFY_RETURN), or
/// BPF_RAW_TRACEPOINT_OPEN without a name; the link is closed again.
fn attach_fmod_ret(prog: &OwnedFd, raw: bool) -> Outcome {
    let r = if raw {
        bpf(17, &[0, prog.as_raw_fd() as u64])
    } else {
        bpf(28, &[prog.as_raw_fd() as u64, BPF_MODIFY_RETURN])
    };
    Outcome::of(r.map(|fd| drop(owned(fd))))
}

/// `hold-fmodret`: loads the fmod_ret program, prints `held`, and at the first line read on
/// stdin tries both attachments (`link R`, `rawtp R`).
fn hold_fmod_ret() -> ExitCode {
    let prog = match load_fmod_ret() {
        Ok(p) => p,
        Err(o) => return o.exit(),
    };
    println!("held");
    let mut lines = std::io::stdin().lock().lines();
    if lines.next().is_some() {
        println!("link {}", attach_fmod_ret(&prog, false).word());
        println!("rawtp {}", attach_fmod_ret(&prog, true).word());
    }
    for _ in lines {}
    ExitCode::SUCCESS
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
    let own = match own_lsm(&mut ebpf) {
        Ok(f) => f,
        Err(o) => return Outcome::Error(format!("setup: own LSM program: {}", o.word())).exit(),
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
        println!("attach-lsm {}", attach_own_lsm(&mut ebpf).word());
    }
    ExitCode::SUCCESS
}

/// A map of maps whose inner maps are like the map pinned at `inner`, kept (pinned at `at`)
/// with nothing in it yet.
fn outer_pin(inner: &str, at: &str) -> Outcome {
    let inner = match obj_get(inner)
        .or_else(|_| obj_get_ro(inner))
        .or_else(|_| obj_get_with(inner, BPF_F_WRONLY))
    {
        Ok(fd) => fd,
        Err(e) => return Outcome::Error(format!("setup: {inner}: errno {e}")),
    };
    let made = bpf(
        BPF_MAP_CREATE,
        &[
            BPF_MAP_TYPE_ARRAY_OF_MAPS | (4 << 32),
            4 | (1 << 32),
            u64::from(inner.as_raw_fd() as u32) << 32,
        ],
    );
    match made {
        Ok(m) => match pin(&owned(m), at) {
            Ok(()) => Outcome::Allowed,
            Err(e) => Outcome::Error(e),
        },
        Err(e) => Outcome::of(Err(e)),
    }
}

/// Holds a descriptor of `requests` opened `mode` (`rw`, `wo`) until end of input.
fn hold_requests(dir: &str, mode: &str) -> ExitCode {
    let flags = if mode == "wo" { BPF_F_WRONLY } else { 0 };
    let _held = match obj_get_with(&format!("{dir}/requests"), flags) {
        Ok(fd) => fd,
        Err(e) => return Outcome::Error(format!("setup: requests: errno {e}")).exit(),
    };
    println!("held");
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}

/// TREE's inodes as the guard keys them ((major << 20) | minor, inode number).
fn tree_keys(tree: &str) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo = vec![std::path::PathBuf::from(tree)];
    while let Some(p) = todo.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let dev = (u64::from(libc::major(m.dev())) << 20) | u64::from(libc::minor(m.dev()));
        out.push((dev, m.ino()));
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                todo.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    out
}

/// A request as `struct fsguard_request` lays it out (136 bytes): an inode claim for `slot`.
fn inode_claim(slot: u32, dev: u64, ino: u64) -> [u8; 136] {
    let mut r = [0u8; 136];
    r[0..4].copy_from_slice(&1u32.to_ne_bytes()); // FSGUARD_REQ_INODE
    r[4..8].copy_from_slice(&slot.to_ne_bytes());
    r[8..16].copy_from_slice(&dev.to_ne_bytes());
    r[16..24].copy_from_slice(&ino.to_ne_bytes());
    r
}

/// Writes `claims` requests over keys the guard has not reached yet: reading `state` is a
/// bpf(2) call, and so is the write, each letting the guard apply up to 128 requests first.
fn overwrite_pending(
    requests: &OwnedFd,
    state: &OwnedFd,
    claims: &[[u8; 136]],
) -> Result<usize, String> {
    // struct fsguard_state, 136 bytes (the lookup writes all of it): st[1] is `next`.
    let mut st = [0u64; 17];
    let zero = 0u32;
    bpf(
        BPF_MAP_LOOKUP_ELEM,
        &[
            state.as_raw_fd() as u64,
            &zero as *const u32 as u64,
            st.as_mut_ptr() as u64,
        ],
    )
    .map_err(|e| format!("read state: errno {e}"))?;
    let first = st[1] + 512;
    let keys: Vec<u64> = (first..first + claims.len() as u64).collect();
    let mut count = claims.len() as u32;
    let attr = [
        0,
        0,
        keys.as_ptr() as u64,
        claims.as_ptr() as u64,
        u64::from(count) | ((requests.as_raw_fd() as u64) << 32),
        0,
        0,
    ];
    let mut words = attr;
    // BPF_MAP_UPDATE_BATCH: the kernel writes back in `count` how many it wrote.
    let r = capsule_tests::bpf_attr(26, &mut words);
    count = words[4] as u32;
    r.map_err(|e| format!("write requests: errno {e} after {count}"))?;
    Ok(count as usize)
}

/// Runs `cmd` traced and overwrites requests it left (see `replace-requests`).
fn replace_requests(dir: &str, slot: &str, tree: &str, mode: &str, cmd: &[&str]) -> ExitCode {
    let setup = |what: String| Outcome::Error(format!("setup: {what}")).exit();
    let Ok(slot) = slot.parse::<u32>() else {
        return setup("SLOT is a number".into());
    };
    let (Ok(requests), Ok(state)) = (
        obj_get_with(&format!("{dir}/requests"), BPF_F_WRONLY),
        obj_get_ro(&format!("{dir}/state")),
    ) else {
        return setup("open requests (write-only) and state".into());
    };
    let claims: Vec<[u8; 136]> = tree_keys(tree)
        .iter()
        .take(100)
        .map(|&(dev, ino)| inode_claim(slot, dev, ino))
        .collect();
    let Some((program, args)) = cmd.split_first() else {
        return setup("no CMD".into());
    };
    let stop = |pid: libc::pid_t, regs: &libc::user_regs_struct| {
        if regs.orig_rax != libc::SYS_bpf as u64 || regs.rdi != 26 || regs.rax != 0 {
            return false;
        }
        // union bpf_attr's batch: `count` is the u32 at offset 32.
        // SAFETY: a read of the stopped tracee's memory at the address it passed to bpf(2).
        let word = unsafe { libc::ptrace(libc::PTRACE_PEEKDATA, pid, regs.rsi + 32, 0) };
        (word as u64 & 0xffff_ffff) >= 1000
    };
    let act = || {
        if mode == "claims" {
            overwrite_pending(&requests, &state, &claims)
        } else {
            Ok(0)
        }
    };
    let (outcome, code) = match traced(program, args, false, stop, act) {
        Ok(r) => r,
        Err(e) => return setup(e),
    };
    match outcome {
        Some(Ok(n)) => println!("replaced {n}"),
        Some(Err(e)) => println!("error: {e}"),
        None => println!("error: CMD left no batch of 1,000 requests"),
    }
    ExitCode::from(code)
}

/// Runs `program` with `args` traced; at the exit (or the entry, `at_entry`) of its first
/// system call that `stop` picks (given the tracee's pid and registers), runs `act`, lets it
/// go on untraced, and waits for it. `act`'s result (None: no such call) and the program's
/// exit code (128 + signal).
fn traced<R>(
    program: &str,
    args: &[&str],
    at_entry: bool,
    stop: impl Fn(libc::pid_t, &libc::user_regs_struct) -> bool,
    act: impl FnOnce() -> R,
) -> Result<(Option<R>, u8), String> {
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new(program);
    child.args(args);
    // SAFETY: between fork and exec the child only asks to be traced (an async-signal-safe
    // system call); it then stops at its exec (SIGTRAP), once spawn() has seen the exec.
    unsafe {
        child.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let pid = match child.spawn() {
        Ok(c) => c.id() as libc::pid_t,
        Err(e) => return Err(format!("{program}: {e}")),
    };
    let mut status = 0;
    let mut act = Some(act);
    // SAFETY: plain system calls on the child this process traces; `regs` and `status` are
    // live locals the kernel writes into.
    let outcome = unsafe {
        libc::waitpid(pid, &mut status, 0);
        libc::ptrace(
            libc::PTRACE_SETOPTIONS,
            pid,
            0,
            libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL | libc::PTRACE_O_TRACEEXEC,
        );
        let mut in_call = false;
        let mut signal = 0;
        let mut done = None;
        loop {
            libc::ptrace(libc::PTRACE_SYSCALL, pid, 0, signal);
            signal = 0;
            if libc::waitpid(pid, &mut status, 0) != pid || !libc::WIFSTOPPED(status) {
                break;
            }
            if libc::WSTOPSIG(status) != (libc::SIGTRAP | 0x80) {
                // An event (a later exec) is not a signal to pass on; a signal is.
                if status >> 16 == 0 {
                    signal = libc::WSTOPSIG(status);
                }
                continue;
            }
            in_call = !in_call;
            if in_call != at_entry {
                continue;
            }
            let mut regs: libc::user_regs_struct = std::mem::zeroed();
            libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut regs);
            if !stop(pid, &regs) {
                continue;
            }
            done = act.take().map(|f| f());
            libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0);
            break;
        }
        done
    };
    // SAFETY: waits for the child, no longer traced.
    unsafe {
        if libc::WIFSTOPPED(status) {
            libc::waitpid(pid, &mut status, 0);
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((outcome, code as u8))
}

/// What `during-raise` made while the raise was under way.
enum Made {
    Nothing,
    /// A program calling bpf_probe_read_user, held until this process exits.
    Reader(OwnedFd),
    /// A loop device bound to the file, left bound.
    Loop(String),
}

/// `during-raise N none|reader|loop PATH -- CMD`: runs CMD traced; as it writes its N-th
/// batch of requests (at the entry of its N-th BPF_MAP_UPDATE_BATCH; `sealtool level` makes
/// the first only after its checks), makes what MODE says: a socket filter that calls bpf_probe_read_user, held
/// until CMD has exited (`reader`), a loop device bound to PATH (`loop`), or nothing (`none`,
/// the control).
fn during_raise(nth: &str, mode: &str, path: Option<&str>, cmd: &[&str]) -> ExitCode {
    let (Some((program, args)), Ok(nth)) = (cmd.split_first(), nth.parse::<u32>()) else {
        return Outcome::Error("setup: N is a number, CMD is given".into()).exit();
    };
    // At the call's entry: any bpf(2) call lets the guard apply pending requests first, so
    // once a request is written the next call (the reader's load) would meet what it asks.
    let seen = std::cell::Cell::new(0u32);
    let stop = |_: libc::pid_t, regs: &libc::user_regs_struct| {
        if regs.orig_rax != libc::SYS_bpf as u64 || regs.rdi != 26 {
            return false;
        }
        seen.set(seen.get() + 1);
        seen.get() == nth
    };
    let act = || -> Result<Made, String> {
        match (mode, path) {
            ("reader", None) => load_reader().map(Made::Reader),
            ("loop", Some(p)) => bind_loop(p).map(Made::Loop),
            _ => Ok(Made::Nothing),
        }
    };
    let (outcome, code) = match traced(program, args, true, stop, act) {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("setup: {e}")).exit(),
    };
    match &outcome {
        // Its descriptor, held until now: the program lived until CMD exited.
        Some(Ok(Made::Reader(fd))) => println!("loaded (descriptor {})", fd.as_raw_fd()),
        Some(Ok(Made::Loop(name))) => println!("bound {name}"),
        Some(Ok(Made::Nothing)) => println!("nothing made"),
        Some(Err(e)) => println!("error: {e}"),
        None => println!("error: CMD wrote no request"),
    }
    ExitCode::from(code)
}

/// Loads capsule_tests::READER_PROGRAM, a socket filter calling bpf_probe_read_user.
fn load_reader() -> Result<OwnedFd, String> {
    let fd =
        capsule_tests::load_program(BPF_PROG_TYPE_SOCKET_FILTER, &capsule_tests::READER_PROGRAM)
            .map_err(|e| format!("load the reader: errno {e}"))?;
    // SAFETY: BPF_PROG_LOAD returned this new descriptor, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Binds a free loop device to `path` (opened read-write) with LOOP_SET_FD; its name.
fn bind_loop(path: &str) -> Result<String, String> {
    let err = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let (n, lo) = capsule_tests::free_loop().map_err(|e| err("a free loop device", e))?;
    let backing = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| err(path, e))?;
    // SAFETY: LOOP_SET_FD takes the backing descriptor as its argument.
    if unsafe { libc::ioctl(lo.as_raw_fd(), 0x4C00, backing.as_raw_fd()) } < 0 {
        return Err(err("LOOP_SET_FD", std::io::Error::last_os_error()));
    }
    Ok(format!("loop{n}"))
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
        ["filter-map", pin] => match obj_get_ro(pin) {
            Ok(fd) => Outcome::of(filter_using(fd.as_raw_fd())),
            Err(e) => Outcome::Error(format!("setup: {pin}: errno {e}")),
        },
        ["filter-own-map"] => filter_own_map(),
        // Refused at the open (a report, from the freeze on) or at the write (frozen).
        ["write-map", pin] => Outcome::of(obj_get(pin).and_then(|fd| write_elem0(&fd))),
        ["hold", dir, name] => return hold(dir, name),
        ["hold-lsm"] => return hold_lsm("own_lsm", "file_open", false),
        ["hold-fmodret"] => return hold_fmod_ret(),
        ["fmodret-attach"] => match load_fmod_ret() {
            Ok(p) => attach_fmod_ret(&p, false),
            Err(o) => o,
        },
        ["skip-init-security"] => {
            return hold_lsm("skip_init_security", "inode_init_security", true)
        }
        ["iter-map", pin] => iter_map(
            obj_get_ro(pin).map_err(|e| Outcome::Error(format!("setup: {pin}: errno {e}"))),
            false,
        ),
        ["iter-own-map"] => iter_map(new_array(4), true),
        ["iter-pin", pin, at] => iter_pin(pin, at),
        ["outer-map", pin] => outer_map(
            obj_get_ro(pin).map_err(|e| Outcome::Error(format!("setup: {pin}: errno {e}"))),
        ),
        ["outer-own-map"] => outer_map(new_array(12)),
        ["impostor", dir, maps, rest @ ..] => return impostor(dir, maps, rest),
        ["hold-requests", dir, mode] => return hold_requests(dir, mode),
        ["outer-pin", pin_path, at] => outer_pin(pin_path, at),
        ["replace-requests", dir, slot, tree, mode, "--", cmd @ ..] => {
            return replace_requests(dir, slot, tree, mode, cmd)
        }
        ["during-raise", n, "loop", path, "--", cmd @ ..] => {
            return during_raise(n, "loop", Some(path), cmd)
        }
        ["during-raise", n, mode, "--", cmd @ ..] => return during_raise(n, mode, None, cmd),
        _ => {
            println!("error: usage");
            return ExitCode::from(64);
        }
    };
    outcome.exit()
}
