//! bpf-probe: tries ONE way around the fsguard guard through the bpf(2) system call and says
//! whether the kernel let it happen. Used by the lock-down suite in the test guest
//! (tests/vm/guest/lockdown-suite.sh), as root.
//!
//! ```text
//! bpf-probe OP ARGS...
//! ```
//!
//! On stdout one line: `allowed` (exit 0), `refused` (EPERM, exit 1), `error: <errno>` (exit
//! 2, the operation failed otherwise), or for the counting operations the line described
//! below (exit 0). Usage errors: `error: usage`, exit 64.
//!
//! Operations:
//!   obj-get PATH [ro|wo]  BPF_OBJ_GET of a pin (read-write, BPF_F_RDONLY or BPF_F_WRONLY)
//!   blkpg-add DEV PNO START LEN   BLKPG_ADD_PARTITION (sectors) through a read-only descriptor
//!   blkrrpart DEV         BLKRRPART (re-read the partition table), read-only descriptor
//!   blk-ioctl DEV CMD     ioctl CMD (hex) with a zeroed 256-byte argument, read-only descriptor
//!   dm-linear NAME DEV    a device-mapper device NAME mapping all of block device DEV
//!   dm-table NAME SECTORS TYPE PARAMS  a device-mapper device NAME of one TYPE target
//!   dm-remove NAME        removes device-mapper device NAME
//!                         (DM_DEV_CREATE, DM_TABLE_LOAD (judged), resume); prints
//!                         `allowed dm-N` on success
//!   compat-ioctl PATH CMD ioctl CMD (hex) as a 32-bit caller makes it (int 0x80, so the kernel
//!                         takes compat_sys_ioctl), zeroed 256-byte argument below 4 GiB,
//!                         read-only descriptor
//!   kexec-file PATH       kexec_file_load of PATH as a kernel, no initramfs (judged)
//!   mprotect-write FD     maps inherited descriptor FD shared and read-only, then asks for
//!                         write access (mprotect, judged)
//!   ringbuf-rewind PATH N moves the ring buffer's shared read position back N bytes (judged:
//!                         opening it read-write); prints `allowed rewound N bytes`
//!   ringbuf-take PATH     opens the ring buffer pinned at PATH read-write (judged) and
//!                         consumes everything in it, as a reader other than the audit
//!                         collector would; prints `allowed took N bytes`
//!   loop-over DEV         a free loop device backed by DEV opened read-write (judged:
//!                         LOOP_SET_FD); prints `allowed loopN` on success
//!   loop-held FD          the same with this process's descriptor FD (inherited) as the
//!                         backing file
//!   loop-configure-held FD
//!                         the same through LOOP_CONFIGURE; prints `allowed loopN` or the
//!                         error's name (EPERM, EINVAL, ...)
//!   open-all-maps         BPF_MAP_GET_FD_BY_ID for every map id; prints
//!                         `opened N refused M` (M: EPERM)
//!   link-detach PATH      BPF_OBJ_GET the link pin (setup), BPF_LINK_DETACH (judged)
//!   request-level PIN_DIR N
//!                         leaves a request to set the level to N in PIN_DIR/requests, makes a
//!                         bpf(2) call so the guard applies it, and prints
//!                         `level L rejected R`: the level now and the guard's count of
//!                         rejected requests (from PIN_DIR/state)
//!   request-capsule PIN_DIR SLOT NAME
//!                         the same with a request to put capsule NAME (no inside) in SLOT
//!   request-capsule PIN_DIR SLOT NAME CGROUP_DIR
//!                         the same with the cgroup CGROUP_DIR as the capsule's inside
//!   request-inode PIN_DIR SLOT PATH FLAGS
//!                         the same with a request to protect PATH's inode in SLOT with FLAGS
//!                         (FSGUARD_INODE_*: 1 frozen, 2 append-only)
//!   request-trust PIN_DIR SLOT BASE
//!                         the same with a request to let SLOT run BASE's sealed entries
//!   request-complete PIN_DIR SLOT N
//!                         the same with a request saying SLOT's tree is in, N added
//!   request-cgroup PIN_DIR SLOT CGROUP_ID
//!                         the same with a request to make a cgroup the inside of SLOT
//!   request-cgroup-ancestor PIN_DIR SLOT CGROUP_DIR
//!                         the same with a request to register CGROUP_DIR as above SLOT's cgroup
//!   request-append-only PIN_DIR SLOT PATH
//!                         the same with a request to mark PATH's inode append-only in SLOT
//!   config-version PIN_DIR N
//!                         rewrites the version in PIN_DIR/config (level 0 only: what another
//!                         build's loader leaves there); `allowed` when written
//!   insert-inode PIN_DIR PATH SLOT
//!                         writes PATH's inode straight into PIN_DIR/inodes in capsule SLOT,
//!                         as another build's guard would add it (no fs_marks raise, no
//!                         entry_filesystems); `allowed` when written
//!   fs-mark PIN_DIR PATH  prints `ino I mark M valid V`: PATH's inode number and its
//!                         filesystem's slot of PIN_DIR/fs_marks (V: 1 when trusted)
//!   load-kprobe           BPF_PROG_LOAD of a two-instruction kprobe program (judged)
//!   load-reader socket|cgroup-device
//!                         BPF_PROG_LOAD of a socket filter or cgroup device program that
//!                         calls bpf_probe_read_user (judged)
//!   load-btf-reader       BPF_PROG_LOAD of a cgroup skb program that reads a socket's
//!                         tcp_sock through a BTF pointer (bpf_skc_to_tcp_sock, then a load
//!                         the verifier makes a probing one) (judged)
//!   load-filter           BPF_PROG_LOAD of a socket filter that calls bpf_ktime_get_ns, a
//!                         helper that reads nothing (judged)
//!   hold-reader           loads the socket filter of load-reader, prints `allowed ID` (its
//!                         program id) and keeps it loaded until killed
//!   perf-open             perf_event_open of a software clock on this process (judged)
//!   hold-perf             the same, kept open (after `allowed`) until killed
//!   sg-io DEVICE          open DEVICE read-only (setup), ioctl SG_IO with an empty
//!                         request (judged: `refused` only for EPERM)
//!   prog-stats            for every loaded program, a line `ID NAME RUN_CNT RUN_TIME_NS` (the
//!                         kernel counts only while sysctl kernel.bpf_stats_enabled is 1);
//!                         what scripts/bench-fsguard uses to say which hooks cost what

use std::ffi::CString;
use std::process::ExitCode;

use capsule_tests::{bpf, free_loop, load_program, READER_PROGRAM as READER};

const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_MAP_UPDATE_ELEM: i64 = 2;
const BPF_OBJ_GET: i64 = 7;
const BPF_MAP_GET_NEXT_ID: i64 = 12;
const BPF_MAP_GET_FD_BY_ID: i64 = 14;
const BPF_LINK_DETACH: i64 = 34;
const BPF_F_RDONLY: u32 = 1 << 3;
const BPF_F_WRONLY: u32 = 1 << 4;

/// Request kinds and the `state` layout, as in fsguard-kmod/bpf/fsguard.h.
const FSGUARD_REQ_INODE: u32 = 1;
const FSGUARD_REQ_CAPSULE: u32 = 2;
const FSGUARD_REQ_CGROUP: u32 = 3;
const FSGUARD_REQ_CGROUP_ANCESTOR: u32 = 8;
const FSGUARD_REQ_EXEC_TRUST: u32 = 10;
const FSGUARD_REQ_COMPLETE: u32 = 11;
const FSGUARD_INODE_APPEND_ONLY: u32 = 1 << 1;
const BPF_PROG_LOAD: i64 = 5;
const BPF_PROG_TYPE_KPROBE: u64 = 2;
const FSGUARD_REQ_LEVEL: u32 = 4;
const FSGUARD_CAPSULE_ACTIVE: u32 = 1;
const FSGUARD_CAPSULE_HAS_CGROUP: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy)]
struct Request {
    kind: u32,
    slot: u32,
    a: u64,
    b: u64,
    flags: u32,
    level: u32,
    cgroup_id: u64,
    cgroup_level: u32,
    capsule_flags: u32,
    name: [u8; 64],
    tag: u64,
    key: [u64; 2],
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct State {
    magic: u32,
    level: u32,
    next: u64,
    applied: u64,
    rejected: u64,
    reader_calls_count: u32,
    reader_calls: [u32; 24],
    tracing_locked: u32,
}

fn obj_get(path: &str, flags: u32) -> Result<i64, i32> {
    let c = CString::new(path.as_bytes()).map_err(|_| libc::EINVAL)?;
    // pathname (u64), then bpf_fd (u32) and file_flags (u32) share the second word.
    bpf(BPF_OBJ_GET, &[c.as_ptr() as u64, u64::from(flags) << 32])
}

fn errno_name(e: i32) -> String {
    match e {
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::EOPNOTSUPP => "EOPNOTSUPP".into(),
        libc::EBADF => "EBADF".into(),
        libc::ENOTTY => "ENOTTY".into(),
        other => format!("errno {other}"),
    }
}

fn judged(r: Result<i64, i32>) -> ExitCode {
    match r {
        Ok(_) => {
            println!("allowed");
            ExitCode::SUCCESS
        }
        Err(libc::EPERM) => {
            println!("refused");
            ExitCode::from(1)
        }
        Err(e) => {
            println!("error: {}", errno_name(e));
            ExitCode::from(2)
        }
    }
}

/// The id after `id` for a BPF_*_GET_NEXT_ID command; None when there is none.
fn next_id(cmd: i64, id: u32) -> Option<u32> {
    // start_id (u32) then next_id (u32), which the kernel fills in.
    let mut attr = [0u64; 16];
    attr[0] = u64::from(id);
    // SAFETY: a zero-padded, 128-byte image of `union bpf_attr`, live for the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128u32) };
    (rc >= 0).then_some((attr[0] >> 32) as u32)
}

fn open_all_maps() -> ExitCode {
    let (mut id, mut opened, mut refused) = (0u32, 0u32, 0u32);
    while let Some(next) = next_id(BPF_MAP_GET_NEXT_ID, id) {
        id = next;
        match bpf(BPF_MAP_GET_FD_BY_ID, &[u64::from(id)]) {
            Ok(fd) => {
                opened += 1;
                // SAFETY: closing the descriptor this process just received.
                unsafe { libc::close(fd as i32) };
            }
            Err(libc::EPERM) => refused += 1,
            Err(_) => {}
        }
    }
    println!("opened {opened} refused {refused}");
    ExitCode::SUCCESS
}

/// BPF_MAP_UPDATE_ELEM of `key` = `value` in the map pinned at `path`.
fn update_pinned<K, V>(path: &str, key: &K, value: &V) -> Result<i64, i32> {
    let map = obj_get(path, 0)?;
    bpf(
        BPF_MAP_UPDATE_ELEM,
        &[
            map as u64,
            key as *const K as u64,
            value as *const V as u64,
            0,
        ],
    )
}

/// `fsguard_config` as in fsguard.h.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Config {
    magic: u32,
    version: u32,
    level: u32,
    init_mnt_ns: u32,
}

fn config_version(pin_dir: &str, version: u32) -> Result<i64, i32> {
    let path = format!("{pin_dir}/config");
    let mut cfg: Config = lookup_array(obj_get(&path, 0)?, 0)?;
    cfg.version = version;
    update_pinned(&path, &0u32, &cfg)
}

fn insert_inode(pin_dir: &str, path: &str, slot: u32) -> Result<i64, i32> {
    let (dev, ino) = kernel_key(path)?;
    let key: [u64; 2] = [dev, ino];
    let value: [u32; 2] = [slot, 0];
    update_pinned(&format!("{pin_dir}/inodes"), &key, &value)
}

/// As fsguard.h: the slots, the value that makes one trusted.
const FSGUARD_FS_MARK_SLOTS: u64 = 4096;
const FSGUARD_FS_MARK_VALID: u64 = 0x6673_676d_6172_6b31;

/// `ino I mark M valid V` for PATH's filesystem's slot, as fs_mark_slot() in fsguard.bpf.c
/// picks it.
fn fs_mark(pin_dir: &str, path: &str) -> Result<String, i32> {
    let (dev, ino) = kernel_key(path)?;
    let slot = ((dev & 0xffff_ffff) + (dev >> 20) * 613) % FSGUARD_FS_MARK_SLOTS;
    let map = obj_get(&format!("{pin_dir}/fs_marks"), BPF_F_RDONLY)?;
    let value: [u64; 2] = lookup_array(map, slot as u32)?;
    let valid = u8::from(value[1] == FSGUARD_FS_MARK_VALID);
    Ok(format!("ino {ino} mark {} valid {valid}", value[0]))
}

/// Element `index` of array map `map`, whose values are `V`s.
fn lookup_array<V: Default>(map: i64, index: u32) -> Result<V, i32> {
    let mut value = V::default();
    bpf(
        BPF_MAP_LOOKUP_ELEM,
        &[
            map as u64,
            &index as *const u32 as u64,
            &mut value as *mut V as u64,
        ],
    )?;
    Ok(value)
}

fn read_state(state: i64) -> Result<State, i32> {
    lookup_array(state, 0)
}

fn submit(pin_dir: &str, req: Request) -> ExitCode {
    // Write-only: from the freeze on the guard opens `requests` for nothing else.
    let fds = obj_get(&format!("{pin_dir}/requests"), BPF_F_WRONLY).and_then(|requests| {
        obj_get(&format!("{pin_dir}/state"), BPF_F_RDONLY).map(|state| (requests, state))
    });
    let (requests, state) = match fds {
        Ok(fds) => fds,
        Err(e) => {
            println!("error: setup obj-get: {}", errno_name(e));
            return ExitCode::from(2);
        }
    };
    let seq = match read_state(state) {
        Ok(st) => st.next,
        Err(e) => {
            println!("error: setup read state: {}", errno_name(e));
            return ExitCode::from(2);
        }
    };
    let seq_ptr = &seq as *const u64 as u64;
    let req_ptr = &req as *const Request as u64;
    if let Err(e) = bpf(BPF_MAP_UPDATE_ELEM, &[requests as u64, seq_ptr, req_ptr, 0]) {
        println!("error: setup request: {}", errno_name(e));
        return ExitCode::from(2);
    }
    // Any bpf(2) call (this read of `state` too) lets the guard apply pending requests.
    match read_state(state) {
        Ok(st) => {
            println!("level {} rejected {}", st.level, st.rejected);
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error: read state: {}", errno_name(e));
            ExitCode::from(2)
        }
    }
}

/// A request for capsule NAME in SLOT, its inside the cgroup (id, depth) if given.
fn capsule_request(slot: u32, name: &str, inside: Option<(u64, u32)>) -> Request {
    let mut r = request(FSGUARD_REQ_CAPSULE, slot, 0, 0, 0);
    for (d, s) in r.name.iter_mut().zip(name.bytes().take(63)) {
        *d = s;
    }
    r.capsule_flags = FSGUARD_CAPSULE_ACTIVE;
    if let Some((id, level)) = inside {
        r.cgroup_id = id;
        r.cgroup_level = level;
        r.capsule_flags |= FSGUARD_CAPSULE_HAS_CGROUP;
    }
    r
}

/// A cgroup directory's id (its inode number) and depth below /sys/fs/cgroup.
fn cgroup_of(dir: &str) -> Option<(u64, u32)> {
    use std::os::unix::fs::MetadataExt;
    let depth = std::path::Path::new(dir)
        .strip_prefix("/sys/fs/cgroup")
        .ok()?
        .components()
        .count();
    Some((std::fs::metadata(dir).ok()?.ino(), depth as u32))
}

fn request(kind: u32, slot: u32, a: u64, b: u64, flags: u32) -> Request {
    Request {
        kind,
        slot,
        a,
        b,
        flags,
        level: 0,
        cgroup_id: 0,
        cgroup_level: 0,
        capsule_flags: 0,
        name: [0; 64],
        tag: 0,
        key: [0; 2],
    }
}

/// The kernel's (dev, ino) of PATH, as fsguard keys it: dev is (major << 20) | minor. Err:
/// stat's errno.
fn kernel_key(path: &str) -> Result<(u64, u64), i32> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| e.raw_os_error().unwrap_or(libc::EINVAL))?;
    let dev = (u64::from(libc::major(m.dev())) << 20) | u64::from(libc::minor(m.dev()));
    Ok((dev, m.ino()))
}

fn load_kprobe() -> ExitCode {
    // r0 = 0; exit
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    judged(bpf(
        BPF_PROG_LOAD,
        &[
            BPF_PROG_TYPE_KPROBE | (2u64 << 32),
            insns.as_ptr() as u64,
            license.as_ptr() as u64,
        ],
    ))
}

const BPF_PROG_TYPE_SOCKET_FILTER: u64 = 1;
const BPF_PROG_TYPE_CGROUP_DEVICE: u64 = 15;
const BPF_OBJ_GET_INFO_BY_FD: i64 = 15;

const BPF_PROG_TYPE_CGROUP_SKB: u64 = 8;
/// r1 = skb->sk (struct __sk_buff, offset 168); if r1 == 0 goto out; r0 =
/// bpf_skc_to_tcp_sock(r1) (137); if r0 == 0 goto out; r0 = *(u32 *)(r0 + 0) (through the BTF
/// pointer); out: r0 = 1; exit.
const BTF_READER: [u64; 7] = [
    0x0000_0000_00a8_1179,
    0x0000_0000_0003_0115,
    0x0000_0089_0000_0085,
    0x0000_0000_0001_0015,
    0x0000_0000_0000_0061,
    0x0000_0001_0000_00b7,
    0x0000_0000_0000_0095,
];
/// call bpf_ktime_get_ns (5); r0 = 0; exit.
const CLOCK_READER: [u64; 3] = [
    0x0000_0005_0000_0085,
    0x0000_0000_0000_00b7,
    0x0000_0000_0000_0095,
];

/// Loads the reader socket filter and keeps it until killed (prints `allowed ID`).
fn hold_reader() -> ExitCode {
    let fd = match load_program(BPF_PROG_TYPE_SOCKET_FILTER, &READER) {
        Ok(fd) => fd,
        Err(e) => return judged(Err(e)),
    };
    let mut info = [0u32; 20];
    let got = bpf(
        BPF_OBJ_GET_INFO_BY_FD,
        &[(fd as u64) | (80u64 << 32), info.as_mut_ptr() as u64],
    );
    if let Err(e) = got {
        println!("error: read the program's id: {}", errno_name(e));
        return ExitCode::from(2);
    }
    println!("allowed {}", info[1]);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// `perf-open`; with `hold`, the event is kept (after `allowed`) until the process is killed.
fn perf_open(hold: bool) -> ExitCode {
    // struct perf_event_attr: type (u32), size (u32), config (u64), ...: a software
    // task-clock counter on this process.
    let mut attr = [0u64; 16];
    attr[0] = 1 | (128u64 << 32);
    attr[1] = 1;
    // SAFETY: a zeroed 128-byte perf_event_attr image, live for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_mut_ptr(),
            0,
            -1,
            -1,
            0u64,
        )
    };
    let code = judged(if rc < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(rc)
    });
    if hold && rc >= 0 {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    code
}

/// SG_IO with a zeroed sg_io_hdr (no data, no command) on a read-only descriptor.
fn sg_io(dev: &str) -> ExitCode {
    let mut hdr = [0u8; 88];
    hdr[0] = b'S'; // interface_id
    block_ioctl(dev, 0x2285, hdr.as_mut_ptr().cast())
}

const BLKPG: libc::c_ulong = 0x1269;
const BLKRRPART: libc::c_ulong = 0x125f;

/// A read-only descriptor of `path` (setup: a failure is printed and is the exit code).
fn open_read_only(path: &str) -> Result<i32, ExitCode> {
    let Ok(c) = CString::new(path.as_bytes()) else {
        return Err(usage());
    };
    // SAFETY: opening a path from a NUL-terminated string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        println!("error: setup open: {}", errno_name(e));
        return Err(ExitCode::from(2));
    }
    Ok(fd)
}

/// An ioctl on a read-only descriptor of block device `dev`, judged.
fn block_ioctl(dev: &str, cmd: libc::c_ulong, arg: *mut libc::c_void) -> ExitCode {
    let fd = match open_read_only(dev) {
        Ok(fd) => fd,
        Err(code) => return code,
    };
    // SAFETY: `cmd` takes `arg` (a live struct of the right layout, or nothing).
    let rc = unsafe { libc::ioctl(fd, cmd, arg) };
    let r = if rc < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(i64::from(rc))
    };
    // SAFETY: closing our descriptor.
    unsafe { libc::close(fd) };
    judged(r)
}

/// One device-mapper control command on `ctl` with `data` after the header; the header back.
fn dm_command(ctl: i32, cmd: libc::c_ulong, name: &str, data: &[u8]) -> Result<Vec<u8>, i32> {
    const HEADER: usize = 312; // sizeof(struct dm_ioctl)
    let mut buf = vec![0u8; HEADER + data.len() + 16384];
    let put = |buf: &mut [u8], at: usize, v: u32| buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    put(&mut buf, 0, 4); // version 4.0.0
    let size = buf.len() as u32;
    put(&mut buf, 12, size); // data_size
    put(&mut buf, 16, HEADER as u32); // data_start
    put(&mut buf, 20, u32::from(!data.is_empty())); // target_count
    buf[48..48 + name.len().min(127)].copy_from_slice(&name.as_bytes()[..name.len().min(127)]);
    buf[HEADER..HEADER + data.len()].copy_from_slice(data);
    // SAFETY: `buf` is a struct dm_ioctl of data_size bytes, as the command expects.
    let rc = unsafe { libc::ioctl(ctl, cmd, buf.as_mut_ptr()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    Ok(buf)
}

/// `dm-linear NAME DEV`: device-mapper device NAME over all of DEV; the table load is judged.
fn dm_linear(name: &str, dev: &str) -> ExitCode {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dev) else {
        println!("error: setup: {dev}");
        return ExitCode::from(2);
    };
    let sectors = std::fs::read_to_string(format!(
        "/sys/dev/block/{}:{}/size",
        libc::major(meta.rdev()),
        libc::minor(meta.rdev())
    ))
    .ok()
    .and_then(|s| s.trim().parse::<u64>().ok())
    .unwrap_or(0);
    let params = format!(
        "{}:{} 0",
        libc::major(meta.rdev()),
        libc::minor(meta.rdev())
    );
    dm_table(name, sectors, "linear", &params)
}

/// /dev/mapper/control opened for reading and writing (an error line printed if it can't be).
fn dm_control() -> Option<std::fs::File> {
    let ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mapper/control");
    if ctl.is_err() {
        println!("error: setup: /dev/mapper/control");
    }
    ctl.ok()
}

/// `dm-table NAME SECTORS TYPE PARAMS`: device-mapper device NAME of one target TYPE over
/// SECTORS sectors, with PARAMS (devices as MAJ:MIN); the table load is judged.
fn dm_table(name: &str, sectors: u64, kind: &str, params: &str) -> ExitCode {
    let Some(ctl) = dm_control() else {
        return ExitCode::from(2);
    };
    let ctl = std::os::fd::AsRawFd::as_raw_fd(&ctl);
    if kind.len() >= 16 {
        println!("error: setup: target type {kind} is too long");
        return ExitCode::from(2);
    }
    if let Err(e) = dm_command(ctl, 0xc138_fd03, name, &[]) {
        println!("error: setup DM_DEV_CREATE: {}", errno_name(e));
        return ExitCode::from(2);
    }
    // struct dm_target_spec (40 bytes) + PARAMS and a NUL, padded to 8.
    let mut spec = vec![0u8; 40];
    spec[8..16].copy_from_slice(&sectors.to_ne_bytes());
    spec[24..24 + kind.len()].copy_from_slice(kind.as_bytes());
    spec.extend_from_slice(params.as_bytes());
    spec.push(0);
    spec.resize(spec.len().div_ceil(8) * 8, 0);
    match dm_command(ctl, 0xc138_fd09, name, &spec) {
        Ok(_) => {}
        Err(e) => {
            let _ = dm_command(ctl, 0xc138_fd04, name, &[]); // DM_DEV_REMOVE
            return judged(Err(e));
        }
    }
    match dm_command(ctl, 0xc138_fd06, name, &[]) {
        Ok(hdr) => {
            let dev = u64::from_ne_bytes(hdr[40..48].try_into().unwrap_or([0; 8]));
            println!("allowed dm-{}", libc::minor(dev));
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error: setup resume: {}", errno_name(e));
            ExitCode::from(2)
        }
    }
}

/// `dm-remove NAME`: removes device-mapper device NAME (DM_DEV_REMOVE); judged.
fn dm_remove(name: &str) -> ExitCode {
    let Some(ctl) = dm_control() else {
        return ExitCode::from(2);
    };
    judged(
        dm_command(
            std::os::fd::AsRawFd::as_raw_fd(&ctl),
            0xc138_fd04,
            name,
            &[],
        )
        .map(|_| 0),
    )
}

/// `compat-ioctl PATH CMD`: the ioctl through the 32-bit system call entry.
fn compat_ioctl(path: &str, cmd: u32) -> ExitCode {
    let fd = match open_read_only(path) {
        Ok(fd) => fd,
        Err(code) => return code,
    };
    // SAFETY: an anonymous private mapping below 4 GiB (a 32-bit caller's pointer).
    let arg = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    if arg == libc::MAP_FAILED {
        println!("error: setup mmap");
        return ExitCode::from(2);
    }
    let mut ret: i64 = 54; // __NR_ioctl in the i386 table
                           // SAFETY: int 0x80 is the i386 system call entry: eax the number, ebx/ecx/edx the
                           // arguments; it changes only eax. rbx, reserved by the compiler, is swapped in and out.
    unsafe {
        std::arch::asm!(
            "xchg {b}, rbx",
            "int 0x80",
            "xchg {b}, rbx",
            b = inout(reg) fd as u64 => _,
            inout("rax") ret,
            in("rcx") u64::from(cmd),
            in("rdx") arg as u64,
        );
    }
    // SAFETY: closing our descriptor.
    unsafe { libc::close(fd) };
    let ret = ret as i32;
    judged(if ret < 0 {
        Err(-ret)
    } else {
        Ok(i64::from(ret))
    })
}

/// `kexec-file PATH`: kexec_file_load(PATH, no initramfs, empty command line).
fn kexec_file(path: &str) -> ExitCode {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            println!("error: setup: {e}");
            return ExitCode::from(2);
        }
    };
    let cmdline = b"\0";
    // SAFETY: kexec_file_load(kernel_fd, initrd_fd, cmdline_len, cmdline, flags) with a live
    // descriptor and a NUL-terminated command line of that length.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            -1,
            cmdline.len(),
            cmdline.as_ptr(),
            4u64, // KEXEC_FILE_NO_INITRAMFS
        )
    };
    judged(if rc < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(rc)
    })
}

/// `mprotect-write FD`: a shared read-only mapping of FD made writable.
fn mprotect_write(fd: i32) -> ExitCode {
    // SAFETY: mapping one page of an inherited descriptor shared, read-only.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if at == libc::MAP_FAILED {
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        println!("error: setup mmap: {}", errno_name(e));
        return ExitCode::from(2);
    }
    // SAFETY: changing the protection of the page mapped above; nothing is written.
    let rc = unsafe { libc::mprotect(at, 4096, libc::PROT_READ | libc::PROT_WRITE) };
    judged(if rc < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(0)
    })
}

/// `ringbuf-take PATH`: moves the ring buffer's consumer position to its producer position;
/// `ringbuf-rewind PATH N` (back: Some(N)) moves it back N bytes.
fn ringbuf_take(path: &str, back: Option<u64>) -> ExitCode {
    let fd = match obj_get(path, 0) {
        Ok(fd) => fd as i32,
        Err(e) => return judged(Err(e)),
    };
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    // SAFETY: the ring buffer's first page (the consumer position) is mapped shared and
    // writable, the second (the producer position) read-only, as libbpf's reader does.
    let (cons, prod) = unsafe {
        (
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            ),
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                page as libc::off_t,
            ),
        )
    };
    if cons == libc::MAP_FAILED || prod == libc::MAP_FAILED {
        let e = std::io::Error::last_os_error();
        println!("error: mmap: {e}");
        return ExitCode::from(2);
    }
    // SAFETY: both positions are naturally aligned u64s at the start of their mapped pages,
    // shared with the kernel: accessed atomically.
    let took = unsafe {
        let cons = &*(cons as *const std::sync::atomic::AtomicU64);
        let prod = &*(prod as *const std::sync::atomic::AtomicU64);
        let p = prod.load(std::sync::atomic::Ordering::Acquire);
        match back {
            Some(n) => {
                let c = cons.load(std::sync::atomic::Ordering::Acquire);
                cons.store(c.saturating_sub(n), std::sync::atomic::Ordering::Release);
                c.min(n)
            }
            None => {
                let c = cons.swap(p, std::sync::atomic::Ordering::Release);
                p.saturating_sub(c)
            }
        }
    };
    match back {
        Some(_) => println!("allowed rewound {took} bytes"),
        None => println!("allowed took {took} bytes"),
    }
    ExitCode::SUCCESS
}

/// `loop-configure-held FD`: a free loop device backed by descriptor FD through
/// LOOP_CONFIGURE (struct loop_config: fd, block_size, a loop_info64, reserved words).
fn loop_configure(fd: i32) -> ExitCode {
    use std::os::fd::AsRawFd;
    let (n, lo) = match free_loop() {
        Ok(s) => s,
        Err(e) => {
            println!("error: setup: {e}");
            return ExitCode::from(2);
        }
    };
    // struct loop_config: u32 fd, u32 block_size, struct loop_info64 (232 bytes), u64[8].
    let mut config = [0u8; 304];
    config[0..4].copy_from_slice(&(fd as u32).to_ne_bytes());
    // SAFETY: LOOP_CONFIGURE (0x4C0A) reads a struct loop_config (304 bytes) at `config`.
    let rc = unsafe { libc::ioctl(lo.as_raw_fd(), 0x4C0A, config.as_ptr()) };
    if rc < 0 {
        println!(
            "{}",
            errno_name(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        );
        return ExitCode::from(1);
    }
    println!("allowed loop{n}");
    ExitCode::SUCCESS
}

/// `loop-over DEV`: a free loop device backed by DEV (read-write); LOOP_SET_FD is judged.
/// `loop-held FD` (`dev` None): backed by descriptor FD, inherited.
fn loop_over(dev: &str, held: Option<i32>) -> ExitCode {
    use std::os::fd::AsRawFd;
    let setup = || -> std::io::Result<(i32, std::fs::File, Option<std::fs::File>)> {
        let (n, lo) = free_loop()?;
        if held.is_some() {
            return Ok((n, lo, None));
        }
        let backing = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dev)?;
        Ok((n, lo, Some(backing)))
    };
    let (n, lo, backing) = match setup() {
        Ok(s) => s,
        Err(e) => {
            println!("error: setup: {e}");
            return ExitCode::from(2);
        }
    };
    let fd = backing
        .as_ref()
        .map(|b| b.as_raw_fd())
        .or(held)
        .unwrap_or(-1);
    // SAFETY: LOOP_SET_FD takes the backing descriptor as its argument.
    let rc = unsafe { libc::ioctl(lo.as_raw_fd(), 0x4C00, fd) };
    if rc < 0 {
        return judged(Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(0)));
    }
    println!("allowed loop{n}");
    ExitCode::SUCCESS
}

/// `blkpg-add DEV PNO START LEN`: BLKPG_ADD_PARTITION of partition PNO over sectors
/// [START, START + LEN) of DEV, through a read-only descriptor.
fn blkpg_add(dev: &str, pno: i32, start: i64, len: i64) -> ExitCode {
    #[repr(C)]
    struct Partition {
        start: i64,
        length: i64,
        pno: i32,
        devname: [u8; 64],
        volname: [u8; 64],
    }
    #[repr(C)]
    struct Arg {
        op: i32,
        flags: i32,
        datalen: i32,
        data: *mut Partition,
    }
    let mut part = Partition {
        start: start * 512,
        length: len * 512,
        pno,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = Arg {
        op: 1, // BLKPG_ADD_PARTITION
        flags: 0,
        datalen: std::mem::size_of::<Partition>() as i32,
        data: &mut part,
    };
    block_ioctl(dev, BLKPG, &mut arg as *mut Arg as *mut libc::c_void)
}

/// `prog-stats`: name, run count and run time of every loaded program.
fn prog_stats() -> ExitCode {
    const BPF_PROG_GET_NEXT_ID: i64 = 11;
    const BPF_PROG_GET_FD_BY_ID: i64 = 13;
    const BPF_OBJ_GET_INFO_BY_FD: i64 = 15;
    let mut id = 0u32;
    while let Some(next) = next_id(BPF_PROG_GET_NEXT_ID, id) {
        id = next;
        let fd = match bpf(BPF_PROG_GET_FD_BY_ID, &[u64::from(id)]) {
            Ok(fd) => fd,
            Err(_) => continue,
        };
        let mut info = [0u64; 29]; // struct bpf_prog_info, 232 bytes
        let len = std::mem::size_of_val(&info) as u64;
        let r = bpf(
            BPF_OBJ_GET_INFO_BY_FD,
            &[(fd as u64) | (len << 32), info.as_mut_ptr() as u64],
        );
        // SAFETY: closing our descriptor.
        unsafe { libc::close(fd as i32) };
        if r.is_err() {
            continue;
        }
        // name: bytes 64..80; run_time_ns: byte 192; run_cnt: byte 200.
        let name: Vec<u8> = info[8..10]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .take_while(|b| *b != 0)
            .collect();
        println!(
            "{id} {} {} {}",
            String::from_utf8_lossy(&name),
            info[25],
            info[24]
        );
    }
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    println!("error: usage");
    ExitCode::from(64)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["obj-get", path] => judged(obj_get(path, 0)),
        ["obj-get", path, "ro"] => judged(obj_get(path, BPF_F_RDONLY)),
        ["obj-get", path, "wo"] => judged(obj_get(path, BPF_F_WRONLY)),
        ["open-all-maps"] => open_all_maps(),
        ["config-version", dir, n] => match n.parse::<u32>() {
            Ok(version) => judged(config_version(dir, version)),
            Err(_) => usage(),
        },
        ["fs-mark", dir, path] => match fs_mark(dir, path) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("error: {}", errno_name(e));
                ExitCode::from(2)
            }
        },
        ["insert-inode", dir, path, slot] => match slot.parse::<u32>() {
            Ok(slot) => judged(insert_inode(dir, path, slot)),
            Err(_) => usage(),
        },
        ["prog-stats"] => prog_stats(),
        ["link-detach", path] => match obj_get(path, 0) {
            Ok(fd) => judged(bpf(BPF_LINK_DETACH, &[fd as u64])),
            Err(e) => {
                println!("error: setup obj-get: {}", errno_name(e));
                ExitCode::from(2)
            }
        },
        ["request-level", dir, n] => match n.parse::<u32>() {
            Ok(level) => submit(
                dir,
                Request {
                    level,
                    ..request(FSGUARD_REQ_LEVEL, 0, 0, 0, 0)
                },
            ),
            Err(_) => usage(),
        },
        ["request-capsule", dir, slot, name] => match slot.parse::<u32>() {
            Ok(slot) => submit(dir, capsule_request(slot, name, None)),
            Err(_) => usage(),
        },
        ["request-capsule", dir, slot, name, cgroup] => {
            match (slot.parse::<u32>(), cgroup_of(cgroup)) {
                (Ok(slot), Some(inside)) => submit(dir, capsule_request(slot, name, Some(inside))),
                _ => usage(),
            }
        }
        ["request-inode", dir, slot, path, flags] => {
            match (slot.parse::<u32>(), kernel_key(path), flags.parse::<u32>()) {
                (Ok(slot), Ok((dev, ino)), Ok(flags)) => {
                    submit(dir, request(FSGUARD_REQ_INODE, slot, dev, ino, flags))
                }
                _ => usage(),
            }
        }
        ["request-trust", dir, slot, base] => match (slot.parse::<u32>(), base.parse::<u64>()) {
            (Ok(slot), Ok(base)) => submit(dir, request(FSGUARD_REQ_EXEC_TRUST, slot, base, 0, 0)),
            _ => usage(),
        },
        ["request-complete", dir, slot, n] => match (slot.parse::<u32>(), n.parse::<u64>()) {
            (Ok(slot), Ok(n)) => submit(dir, request(FSGUARD_REQ_COMPLETE, slot, n, 0, 0)),
            _ => usage(),
        },
        ["request-cgroup", dir, slot, id] => match (slot.parse::<u32>(), id.parse::<u64>()) {
            (Ok(slot), Ok(id)) => submit(dir, request(FSGUARD_REQ_CGROUP, slot, id, 0, 0)),
            _ => usage(),
        },
        ["request-cgroup-ancestor", dir, slot, cgroup] => {
            match (slot.parse::<u32>(), cgroup_of(cgroup)) {
                (Ok(slot), Some((id, _))) => {
                    submit(dir, request(FSGUARD_REQ_CGROUP_ANCESTOR, slot, id, 0, 0))
                }
                _ => usage(),
            }
        }
        ["request-append-only", dir, slot, path] => match (slot.parse::<u32>(), kernel_key(path)) {
            (Ok(slot), Ok((dev, ino))) => submit(
                dir,
                request(FSGUARD_REQ_INODE, slot, dev, ino, FSGUARD_INODE_APPEND_ONLY),
            ),
            _ => usage(),
        },
        ["load-kprobe"] => load_kprobe(),
        ["load-reader", "socket"] => judged(load_program(BPF_PROG_TYPE_SOCKET_FILTER, &READER)),
        ["load-reader", "cgroup-device"] => {
            judged(load_program(BPF_PROG_TYPE_CGROUP_DEVICE, &READER))
        }
        ["load-filter"] => judged(load_program(BPF_PROG_TYPE_SOCKET_FILTER, &CLOCK_READER)),
        ["load-btf-reader"] => judged(load_program(BPF_PROG_TYPE_CGROUP_SKB, &BTF_READER)),
        ["hold-reader"] => hold_reader(),
        ["perf-open"] => perf_open(false),
        ["hold-perf"] => perf_open(true),
        ["sg-io", dev] => sg_io(dev),
        ["blkpg-add", dev, pno, start, len] => match (pno.parse(), start.parse(), len.parse()) {
            (Ok(p), Ok(s), Ok(l)) => blkpg_add(dev, p, s, l),
            _ => usage(),
        },
        ["dm-linear", name, dev] => dm_linear(name, dev),
        ["dm-remove", name] => dm_remove(name),
        ["dm-table", name, sectors, kind, params] => match sectors.parse() {
            Ok(n) => dm_table(name, n, kind, params),
            Err(_) => usage(),
        },
        ["loop-over", dev] => loop_over(dev, None),
        ["loop-held", fd] => match fd.parse::<i32>() {
            Ok(fd) => loop_over("", Some(fd)),
            Err(_) => usage(),
        },
        ["loop-configure-held", fd] => match fd.parse::<i32>() {
            Ok(fd) => loop_configure(fd),
            Err(_) => usage(),
        },
        ["ringbuf-take", path] => ringbuf_take(path, None),
        ["ringbuf-rewind", path, n] => match n.parse() {
            Ok(n) => ringbuf_take(path, Some(n)),
            Err(_) => usage(),
        },
        ["compat-ioctl", path, cmd] => {
            match u32::from_str_radix(cmd.trim_start_matches("0x"), 16) {
                Ok(c) => compat_ioctl(path, c),
                Err(_) => usage(),
            }
        }
        ["kexec-file", path] => kexec_file(path),
        ["mprotect-write", fd] => match fd.parse() {
            Ok(fd) => mprotect_write(fd),
            Err(_) => usage(),
        },
        ["blkrrpart", dev] => block_ioctl(dev, BLKRRPART, std::ptr::null_mut()),
        ["blk-ioctl", dev, cmd] => match u64::from_str_radix(cmd.trim_start_matches("0x"), 16) {
            Ok(c) => {
                let mut buf = [0u8; 256];
                block_ioctl(dev, c as libc::c_ulong, buf.as_mut_ptr().cast())
            }
            Err(_) => usage(),
        },
        _ => usage(),
    }
}
