//! The BPF helpers that read memory a program points them at, and the programs that call
//! them: what level 2 refuses besides tracing (see `calls_reader` in fsguard.bpf.c).
//!
//! The kernel gives these helpers to every program type once the loader has CAP_PERFMON
//! (`bpf_base_func_proto`), and many non-tracing programs run in the context of the process
//! that caused them (a cgroup device program runs as the process that opens a device): with
//! `bpf_probe_read_user` such a program reads a capsule process's memory. A verified program
//! names a helper by the 32-bit immediate of its call, the helper's address minus
//! `__bpf_call_base`'s (what bpftool resolves through /proc/kallsyms to print helper names);
//! the same table serves the guard, which looks at every program at level 2 as it is made,
//! and the scan before a raise to 2, which looks at those made before.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::shared::{fsguard_state, FSGUARD_READER_CALLS};
use crate::{Error, Result};

/// The helpers' functions, by their names in /proc/kallsyms: those `bpf_base_func_proto`
/// gives only to a loader with CAP_PERFMON that read memory or hand out a task (whose memory
/// the others then read), and the tracing programs' own readers.
pub const READER_HELPERS: &[&str] = &[
    "bpf_probe_read_user",
    "bpf_probe_read_user_str",
    "bpf_probe_read_kernel",
    "bpf_probe_read_kernel_str",
    "bpf_probe_read_compat",
    "bpf_probe_read_compat_str",
    "bpf_copy_from_user",
    "bpf_copy_from_user_task",
    "bpf_get_current_task",
    "bpf_get_current_task_btf",
    "bpf_task_pt_regs",
    // Their formats read strings at any address ("%s", "%pus", "%pks").
    "bpf_snprintf",
    "bpf_snprintf_btf",
    "bpf_trace_printk",
    "bpf_trace_vprintk",
    // A per-CPU kernel variable named by a typed ksym (a run queue, and its tasks).
    "bpf_per_cpu_ptr",
    "bpf_this_cpu_ptr",
];

/// Present in every kernel the guard runs on (5.5 and later): a table without them was not
/// read from a kernel's symbols.
const ALWAYS_THERE: &[&str] = &["bpf_probe_read_user", "bpf_probe_read_kernel"];

/// The reader helpers' call immediates in the running kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderCalls {
    calls: Vec<(u32, &'static str)>,
}

impl ReaderCalls {
    /// From /proc/kallsyms (root sees the addresses unless kernel.kptr_restrict is 2).
    pub fn from_kallsyms() -> Result<Self> {
        let path = "/proc/kallsyms";
        let text = std::fs::read_to_string(path).map_err(|e| Error::ReaderHelpers {
            why: format!("cannot read {path}: {e}"),
        })?;
        Self::parse(&text).map_err(|why| Error::ReaderHelpers {
            why: format!("{path}: {why}"),
        })
    }

    /// From the text of a kallsyms listing (`ADDRESS TYPE NAME [MODULE]` lines).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut base = None;
        let mut found: Vec<(u64, &'static str)> = Vec::new();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let (Some(addr), Some(_kind), Some(name), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue; // a module's symbol, or not a symbol line
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if name == "__bpf_call_base" {
                base = Some(addr);
            } else if let Some(h) = READER_HELPERS.iter().find(|h| **h == name) {
                found.push((addr, h));
            }
        }
        let base = base.ok_or("__bpf_call_base is not listed")?;
        if base == 0 || found.iter().any(|(a, _)| *a == 0) {
            return Err("its addresses are hidden (kernel.kptr_restrict is 2)".into());
        }
        for must in ALWAYS_THERE {
            if !found.iter().any(|(_, n)| n == must) {
                return Err(format!("{must} is not listed"));
            }
        }
        let mut calls = Vec::new();
        for (addr, name) in found {
            let off = addr.wrapping_sub(base) as i64;
            let imm = i32::try_from(off)
                .map_err(|_| format!("{name} is beyond a call's reach of __bpf_call_base"))?;
            if !calls.iter().any(|(i, _)| *i == imm as u32) {
                calls.push((imm as u32, name));
            }
        }
        if calls.len() > FSGUARD_READER_CALLS as usize {
            return Err(format!(
                "{} reader helper functions, more than the guard holds ({FSGUARD_READER_CALLS})",
                calls.len()
            ));
        }
        calls.sort_unstable();
        Ok(Self { calls })
    }

    /// The helper a call immediate names, if it is a reader.
    pub fn name_of(&self, imm: u32) -> Option<&'static str> {
        self.calls.iter().find(|(i, _)| *i == imm).map(|(_, n)| *n)
    }

    /// Writes the table into the guard's state (as the loader does).
    pub fn write_into(&self, st: &mut fsguard_state) {
        st.reader_calls = [0; FSGUARD_READER_CALLS as usize];
        for (slot, (imm, _)) in st.reader_calls.iter_mut().zip(&self.calls) {
            *slot = *imm;
        }
        st.reader_calls_count = self.calls.len() as u32;
    }

    /// Whether the guard's state holds exactly this table.
    pub fn held_by(&self, st: &fsguard_state) -> bool {
        let n = st.reader_calls_count as usize;
        n == self.calls.len()
            && n <= st.reader_calls.len()
            && st.reader_calls[..n]
                .iter()
                .copied()
                .collect::<HashSet<u32>>()
                == self.calls.iter().map(|(i, _)| *i).collect()
    }
}

/// What makes program `fd` one that level 2 refuses, if anything, as far as its instructions
/// tell: a type that runs in other processes' context, a call to a reader helper or to a
/// kernel function (kfunc). (Loads through a BTF pointer show only to the guard: the dump
/// gives them as plain loads.) Its instructions as verified
/// (BPF_OBJ_GET_INFO_BY_FD's xlated_prog_insns keep the calls' immediates for a caller who may
/// see kernel addresses; a zeroed one can't be told, and counts).
pub fn why_refused_at_2(fd: &OwnedFd, calls: &ReaderCalls) -> std::io::Result<Option<String>> {
    #[repr(C)]
    #[derive(Default)]
    struct ProgInfo {
        kind: u32,
        id: u32,
        tag: [u8; 8],
        jited_prog_len: u32,
        xlated_prog_len: u32,
        jited_prog_insns: u64,
        xlated_prog_insns: u64,
    }
    let get = |info: &mut ProgInfo| {
        let mut attr = crate::integrity::InfoAttr {
            bpf_fd: fd.as_raw_fd() as u32,
            info_len: std::mem::size_of::<ProgInfo>() as u32,
            info: info as *mut ProgInfo as u64,
        };
        crate::batch::bpf(crate::integrity::BPF_OBJ_GET_INFO_BY_FD, &mut attr)
    };
    let mut info = ProgInfo::default();
    get(&mut info)?;
    if let Some(kind) = others_context_kind(info.kind) {
        return Ok(Some(format!("is a {kind} program")));
    }
    let mut insns = vec![0u64; info.xlated_prog_len as usize / 8];
    let wanted = info.xlated_prog_len;
    info = ProgInfo {
        xlated_prog_len: wanted,
        xlated_prog_insns: insns.as_mut_ptr() as u64,
        ..Default::default()
    };
    get(&mut info)?;
    // A program is immutable once loaded: a length that changed is not the kernel's answer.
    if info.xlated_prog_len != wanted {
        return Err(std::io::Error::from_raw_os_error(libc::EIO));
    }
    // The kernel withholds a blinded program's instructions from a caller who may not see
    // kernel addresses (it zeroes the pointer): what isn't shown can't be let be.
    if wanted > 0 && info.xlated_prog_insns == 0 {
        return Ok(Some("has instructions this process may not see".into()));
    }
    for insn in insns {
        let (code, src, imm) = (insn & 0xff, (insn >> 12) & 0xf, (insn >> 32) as u32);
        if code != 0x85 {
            continue;
        }
        if src == 2 {
            return Ok(Some("calls a kernel function (kfunc)".into()));
        }
        if src != 0 {
            continue;
        }
        if imm == 0 {
            return Ok(Some(
                "calls helpers this process may not see (kernel.kptr_restrict)".into(),
            ));
        }
        if let Some(name) = calls.name_of(imm) {
            return Ok(Some(format!("calls {name}")));
        }
    }
    Ok(None)
}

/// Tracing made before level 2 that level 2 refuses to make: probes defined through tracefs
/// (they record any process's registers and memory, no BPF needed) and perf events held by a
/// process (a descriptor, or a mapping of its ring buffer), other than this one's. A process
/// whose descriptors and mappings the guard keeps from root outside (a capsule's) is not
/// looked at.
pub fn tracing_state() -> Result<Vec<String>> {
    let mut found = Vec::new();
    found.extend(tracefs_state()?);
    found.extend(audit_state());
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Err(Error::ReaderHelpers {
            why: "cannot list /proc".into(),
        });
    };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let perf = |target: &str| target == "anon_inode:[perf_event]";
        let by_fd = std::fs::read_dir(p.path().join("fd"))
            .ok()
            .is_some_and(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|t| perf(&t.to_string_lossy()))
                })
            });
        let by_map = std::fs::read_to_string(p.path().join("maps"))
            .is_ok_and(|m| m.lines().any(|l| l.ends_with("anon_inode:[perf_event]")));
        if by_fd || by_map {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            found.push(format!(
                "process {pid} ({}) holds a perf event (it samples what it was opened on)",
                comm.trim()
            ));
        }
    }
    Ok(found)
}

/// The audit rules loaded, asked of the kernel (AUDIT_LIST_RULES on an audit netlink socket):
/// a rule records the system calls of the processes it matches, capsule processes' included
/// (arguments, paths, exec arguments), which level 2 refuses to set up. A kernel without audit
/// has none; rules that can't be listed are a finding (what they record can't be told).
fn audit_state() -> Vec<String> {
    match audit_rules() {
        Ok(0) => Vec::new(),
        Ok(n) => vec![format!(
            "{n} audit rule(s) are loaded (they record the system calls of the processes they \
             match; `auditctl -l` lists them, `auditctl -D` deletes them)"
        )],
        Err(e) => vec![format!(
            "the audit rules can't be listed ({e}): what they record can't be told"
        )],
    }
}

/// How many audit rules the kernel holds.
fn audit_rules() -> std::result::Result<usize, String> {
    use nix::errno::Errno;
    use nix::sys::socket::{
        recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
        SockProtocol, SockType,
    };
    const AUDIT_LIST_RULES: u16 = 1013;
    const NLM_F_REQUEST: u16 = 1;
    let fd = match socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkAudit,
    ) {
        Ok(fd) => fd,
        Err(Errno::EPROTONOSUPPORT | Errno::EAFNOSUPPORT) => return Ok(0),
        Err(e) => return Err(format!("audit netlink socket: {e}")),
    };
    let timeout = nix::sys::time::TimeVal::new(10, 0);
    setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).map_err(|e| format!("timeout: {e}"))?;
    // struct nlmsghdr: length, type, flags, sequence, port (0: the kernel).
    let mut req = [0u8; 16];
    req[0..4].copy_from_slice(&16u32.to_ne_bytes());
    req[4..6].copy_from_slice(&AUDIT_LIST_RULES.to_ne_bytes());
    req[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    sendto(
        fd.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(|e| format!("AUDIT_LIST_RULES: {e}"))?;
    let mut rules = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())
            .map_err(|e| format!("reading the rules: {e}"))?;
        if n == 0 {
            return Err("the audit socket closed before the list ended".into());
        }
        if audit_replies(&buf[..n.min(buf.len())], &mut rules)? {
            return Ok(rules);
        }
    }
}

/// Counts the rules (AUDIT_LIST_RULES messages) in one datagram of the kernel's answer into
/// `rules`; true once its end (NLMSG_DONE) is seen. An error message, or one whose length
/// does not fit the datagram, is an error.
fn audit_replies(datagram: &[u8], rules: &mut usize) -> std::result::Result<bool, String> {
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const AUDIT_LIST_RULES: u16 = 1013;
    let word = |at: usize| {
        datagram
            .get(at..at + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0)
    };
    let mut off = 0;
    while datagram.len().saturating_sub(off) >= 16 {
        let len = word(off) as usize;
        let kind = u16::from_ne_bytes([datagram[off + 4], datagram[off + 5]]);
        if len < 16 || len > datagram.len() - off {
            return Err(format!(
                "a reply of {len} bytes in a datagram of {}",
                datagram.len()
            ));
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR if len >= 20 && word(off + 16) != 0 => {
                return Err(format!(
                    "AUDIT_LIST_RULES: {}",
                    std::io::Error::from_raw_os_error(-(word(off + 16) as i32))
                ));
            }
            AUDIT_LIST_RULES => *rules += 1,
            _ => {}
        }
        off += (len + 3) & !3;
    }
    Ok(false)
}

/// What tracefs records that level 2 refuses to set up, read from a tracefs mount of this
/// process's own, attached nowhere (fsopen + fsmount): tracefs has one superblock, so it
/// shows the kernel's state, and nothing mounted over a path (a tmpfs over the usual mount
/// point, a file bound over `set_event`) can hide a file of it.
fn tracefs_state() -> Result<Vec<String>> {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mnt = private_tracefs().map_err(|e| Error::ReaderHelpers {
        why: format!("cannot mount a tracefs of its own to look at: {e}"),
    })?;
    let read = |rel: &str| -> std::io::Result<String> {
        let fd = nix::fcntl::openat(
            Some(mnt.as_raw_fd()),
            rel,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_CLOEXEC
                | nix::fcntl::OFlag::O_NOFOLLOW,
            nix::sys::stat::Mode::empty(),
        )?;
        // SAFETY: openat just returned this descriptor, which nothing else owns.
        let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        Ok(text)
    };
    let list = |rel: &str| -> std::io::Result<Vec<String>> {
        let mut dir = nix::dir::Dir::openat(
            Some(mnt.as_raw_fd()),
            rel,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        Ok(dir
            .iter()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "." && n != "..")
            .collect())
    };
    Ok(tracefs_findings(read, list))
}

/// A detached tracefs mount (FSOPEN_CLOEXEC, FSCONFIG_CMD_CREATE, FSMOUNT_CLOEXEC).
fn private_tracefs() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let name = c"tracefs";
    // SAFETY: fsopen reads a NUL-terminated name; it returns a new descriptor or -1.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), 1 as libc::c_uint) };
    if fs < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fsopen just returned this descriptor, which nothing else owns.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    // SAFETY: FSCONFIG_CMD_CREATE (6) takes no key, value or aux (NULL, NULL, 0).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            6 as libc::c_uint,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0 as libc::c_int,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fsmount takes the context's descriptor and two flag words; it returns a new
    // descriptor of the detached mount or -1.
    let mnt = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            1 as libc::c_uint,
            0 as libc::c_uint,
        )
    };
    if mnt < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fsmount just returned this descriptor, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(mnt as i32) })
}

/// The findings of `tracefs_state`, from `read` (a file's text, by path relative to the
/// tracefs root) and `list` (a directory's entries): probes defined (kprobe_events,
/// uprobe_events, dynamic_events); in every instance, the static events enabled
/// (`set_event`), a tracer other than `nop` (`current_tracer`) and function probe commands
/// (`set_ftrace_filter` lines with a `:command`: enable_event, stacktrace, snapshot). A file
/// that can't be read (but is not there at all) is a finding: what it holds can't be told.
fn tracefs_findings(
    read: impl Fn(&str) -> std::io::Result<String>,
    list: impl Fn(&str) -> std::io::Result<Vec<String>>,
) -> Vec<String> {
    let mut found = Vec::new();
    let entries = |rel: &str, found: &mut Vec<String>| -> Vec<String> {
        match read(rel) {
            Ok(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                found.push(format!(
                    "tracefs's {rel} can't be read ({e}): what it holds can't be told"
                ));
                Vec::new()
            }
        }
    };
    let mut probes: Vec<String> = Vec::new();
    for file in ["dynamic_events", "kprobe_events", "uprobe_events"] {
        for l in entries(file, &mut found) {
            if !probes.contains(&l) {
                probes.push(l);
            }
        }
    }
    for l in probes {
        found.push(format!(
            "the tracefs probe `{l}` is defined (remove it: `-:NAME`)"
        ));
    }
    let mut instances = vec![(String::new(), String::new())];
    match list("instances") {
        Ok(names) => instances.extend(
            names
                .into_iter()
                .map(|n| (format!(" in instance {n}"), format!("instances/{n}/"))),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => found.push(format!(
            "tracefs's instances can't be listed ({e}): what they record can't be told"
        )),
    }
    for (which, at) in instances {
        for event in entries(&format!("{at}set_event"), &mut found) {
            found.push(format!(
                "the trace event `{event}` is enabled{which} (it records what every process does; \
                 `echo > set_event`)"
            ));
        }
        if let Some(tracer) = entries(&format!("{at}current_tracer"), &mut found).first() {
            if tracer != "nop" {
                found.push(format!(
                    "the tracer `{tracer}` is set{which} (`echo nop > current_tracer`)"
                ));
            }
        }
        for probe in entries(&format!("{at}set_ftrace_filter"), &mut found) {
            if probe.contains(':') {
                found.push(format!(
                    "the function probe `{probe}` is set{which} (`echo > set_ftrace_filter`)"
                ));
            }
        }
    }
    found
}

/// The name of a program type that runs in other processes' context (level 2 loads none).
fn others_context_kind(kind: u32) -> Option<&'static str> {
    Some(match kind {
        2 => "kprobe",
        5 => "tracepoint",
        7 => "perf event",
        17 => "raw tracepoint",
        24 => "writable raw tracepoint",
        26 => "tracing (fentry/fexit)",
        28 => "extension",
        29 => "LSM",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "\
ffffffff81200000 T __bpf_call_base
ffffffff81200100 T bpf_probe_read_user
ffffffff81200200 T bpf_probe_read_kernel
ffffffff811fff00 t bpf_get_current_task
ffffffff81200300 T bpf_probe_read_user_str
ffffffff81200400 t bpf_snprintf\t[some_module]
ffffffff81200500 T not_a_reader
";

    #[test]
    fn immediates_are_offsets_from_the_call_base() {
        let c = ReaderCalls::parse(LISTING).unwrap();
        assert_eq!(c.name_of(0x100), Some("bpf_probe_read_user"));
        assert_eq!(c.name_of(0x200), Some("bpf_probe_read_kernel"));
        assert_eq!(c.name_of(0x300), Some("bpf_probe_read_user_str"));
        assert_eq!(c.name_of((-0x100i32) as u32), Some("bpf_get_current_task"));
        // A module's symbol of the same name is not the helper; other functions aren't readers.
        assert_eq!(c.name_of(0x400), None);
        assert_eq!(c.name_of(0x500), None);
    }

    #[test]
    fn hidden_or_partial_listings_are_refused() {
        let hidden = LISTING.replace("ffffffff812", "000000000");
        assert!(ReaderCalls::parse(&hidden).unwrap_err().contains("hidden"));
        let no_base = LISTING.replace("__bpf_call_base", "x");
        assert!(ReaderCalls::parse(&no_base)
            .unwrap_err()
            .contains("__bpf_call_base"));
        let no_read = LISTING.replace("bpf_probe_read_kernel", "x");
        assert!(ReaderCalls::parse(&no_read)
            .unwrap_err()
            .contains("bpf_probe_read_kernel"));
        let far = LISTING.replace("ffffffff81200100", "fffffffe81200100");
        assert!(ReaderCalls::parse(&far).unwrap_err().contains("reach"));
    }

    /// Loads a socket filter (BPF_PROG_TYPE_SOCKET_FILTER) of `insns`.
    fn load_socket_filter(insns: &[u64]) -> OwnedFd {
        let license = c"GPL";
        let mut attr = [0u64; 6];
        attr[0] = 1 | ((insns.len() as u64) << 32);
        attr[1] = insns.as_ptr() as u64;
        attr[2] = license.as_ptr() as u64;
        let fd = crate::batch::bpf(5, &mut attr)
            .expect("load a socket filter (the tests run as root, where the kernel allows it)");
        crate::integrity::owned(fd)
    }

    /// The table against this machine's kernel, its verifier and its xlated dump (no LSM
    /// needed: socket filters load on the host).
    #[test]
    fn the_running_kernel_names_a_reader_call_and_no_other() {
        let calls = ReaderCalls::from_kallsyms().expect("read /proc/kallsyms as root");
        // r1 = r10 - 8; r2 = 8; r3 = 0; call bpf_probe_read_user; r0 = 0; exit
        let reader = load_socket_filter(&[
            0xa1bf,
            0xffff_fff8_0000_0107,
            0x8_0000_02b7,
            0x3b7,
            0x70_0000_0085,
            0xb7,
            0x95,
        ]);
        // call bpf_ktime_get_ns; r0 = 0; exit
        let clock = load_socket_filter(&[0x5_0000_0085, 0xb7, 0x95]);
        assert_eq!(
            why_refused_at_2(&reader, &calls).unwrap().as_deref(),
            Some("calls bpf_probe_read_user")
        );
        assert_eq!(why_refused_at_2(&clock, &calls).unwrap(), None);
    }

    /// A kernel function's call (kfunc) is told, whatever it reads: this host's kernel (newer
    /// than 6.1) gives every program type bpf_rcu_read_lock/unlock, and kfuncs beside them
    /// that read any address (bpf_rdonly_cast, inlined into plain loads).
    #[test]
    fn the_running_kernel_names_a_kfunc_call() {
        use aya_obj::btf::{Btf, BtfKind};
        let calls = ReaderCalls::from_kallsyms().expect("read /proc/kallsyms as root");
        let btf = Btf::from_sys_fs().expect("this kernel's BTF");
        let id = |name| {
            u64::from(
                btf.id_by_type_name_kind(name, BtfKind::Func)
                    .expect("a kfunc of this kernel"),
            )
        };
        // call bpf_rcu_read_lock (kfunc: src_reg 2, imm its BTF id); call bpf_rcu_read_unlock;
        // r0 = 0; exit
        let kfunc = load_socket_filter(&[
            0x2085 | (id("bpf_rcu_read_lock") << 32),
            0x2085 | (id("bpf_rcu_read_unlock") << 32),
            0xb7,
            0x95,
        ]);
        assert_eq!(
            why_refused_at_2(&kfunc, &calls).unwrap().as_deref(),
            Some("calls a kernel function (kfunc)")
        );
    }

    #[test]
    fn the_state_holds_the_table_in_any_order() {
        let c = ReaderCalls::parse(LISTING).unwrap();
        let mut st = fsguard_state::default();
        assert!(!c.held_by(&st));
        c.write_into(&mut st);
        assert_eq!(st.reader_calls_count, 4);
        assert!(c.held_by(&st));
        st.reader_calls.swap(0, 3);
        assert!(c.held_by(&st));
        st.reader_calls[1] = 0x999;
        assert!(!c.held_by(&st));
    }

    fn netlink(kind: u16, body: &[u8]) -> Vec<u8> {
        let len = 16 + body.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m.resize((len + 3) & !3, 0);
        m
    }

    #[test]
    fn audit_replies_count_rules_until_done_and_fail_on_errors() {
        let mut rules = 0;
        let first = [netlink(1013, &[1; 30]), netlink(1013, &[2; 40])].concat();
        assert_eq!(audit_replies(&first, &mut rules), Ok(false));
        let last = [netlink(1013, &[3; 8]), netlink(3, &[0; 4])].concat();
        assert_eq!(audit_replies(&last, &mut rules), Ok(true));
        assert_eq!(rules, 3);
        let eperm = netlink(2, &(-1i32).to_ne_bytes());
        let err = audit_replies(&eperm, &mut rules).unwrap_err();
        assert!(err.contains("not permitted"), "{err}");
        let ack = netlink(2, &0i32.to_ne_bytes());
        assert_eq!(audit_replies(&ack, &mut rules), Ok(false));
        let mut torn = netlink(1013, &[0; 20]);
        torn.truncate(24);
        assert!(audit_replies(&torn, &mut rules)
            .unwrap_err()
            .contains("36 bytes"));
    }

    #[test]
    fn tracefs_findings_name_probes_events_and_tracers_in_every_instance() {
        let files: std::collections::HashMap<&str, &str> = [
            ("kprobe_events", "p:kprobes/x ksys_write\n"),
            ("dynamic_events", "p:kprobes/x ksys_write\n# a comment\n"),
            ("set_event", "sched:sched_process_exec\n"),
            ("current_tracer", "nop\n"),
            ("set_ftrace_filter", "#### all functions enabled ####\n"),
            ("instances/mine/set_event", ""),
            ("instances/mine/current_tracer", "function\n"),
            (
                "instances/mine/set_ftrace_filter",
                "do_sys_openat2:stacktrace:unlimited\nksys_write\n",
            ),
            ("instances/quiet/set_event", "\n"),
            ("instances/quiet/current_tracer", "nop\n"),
        ]
        .into_iter()
        .collect();
        let read = |rel: &str| match (rel, files.get(rel)) {
            ("instances/quiet/set_ftrace_filter", _) => {
                Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
            }
            (_, Some(t)) => Ok(t.to_string()),
            (_, None) => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        };
        let list = |_: &str| Ok(vec!["mine".to_string(), "quiet".to_string()]);
        let found = tracefs_findings(read, list);
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(found[0].contains("`p:kprobes/x ksys_write` is defined"));
        assert!(found[1].contains("`sched:sched_process_exec` is enabled ("));
        assert!(found[2].contains("`function` is set in instance mine"));
        assert!(found[3].contains("`do_sys_openat2:stacktrace:unlimited` is set in instance mine"));
        assert!(found[4].contains("instances/quiet/set_ftrace_filter can't be read"));
    }
}
