//! Which guard the kernel runs, told by the kernel's own ids and tags, never by paths alone.
//!
//! Pins are paths: root can hide them (a mount in a private namespace) and put an impostor's
//! at the same place, whose maps say whatever it wants. So before anything is reported as
//! enforced, the guard is identified from the kernel's side:
//!
//! - the LSM links the kernel has attached are listed by id; each program's tag (the SHA-1
//!   the kernel computes over the instructions it was given) is compared with the tag this
//!   build's embedded object has once relocated for this kernel (the same relocation the
//!   loader does; map descriptors don't count in a tag);
//! - every pinned link must be one of those attached links, and every pinned map one the
//!   guard's programs use: asked of the programs while the guard still hands them out
//!   (before the freeze), afterwards by the guard's own answer (it refuses to open its
//!   reports for writing, and nothing else in the kernel does).

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use aya::Btf;
use aya_obj::btf::BtfKind;
use sha1::{Digest, Sha1};
use sha2::Sha256;

use crate::batch::{open_pinned_map, open_pinned_map_ro, open_pinned_map_wo, BPF_F_RDONLY};
use crate::guard::{link_path, MAPS, PROGRAMS};
use crate::integrity::{
    by_id, info, prog_map_ids, syscall_err, BPF_LINK_GET_FD_BY_ID, BPF_LINK_GET_NEXT_ID,
    BPF_LINK_TYPE_TRACING, BPF_LSM_MAC, BPF_PROG_GET_FD_BY_ID,
};
use crate::{objects, Error, Result};

const BPF_LD_IMM64: u8 = 0x18;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const BPF_PSEUDO_MAP_VALUE: u8 = 2;

/// One of this build's programs: its hook's BTF id in the kernel and its tag.
#[derive(Debug, Clone)]
pub struct Expected {
    pub program: &'static str,
    pub hook_btf_id: u32,
    pub tag: [u8; 8],
}

/// An LSM link the kernel has attached.
#[derive(Debug, Clone)]
pub struct Attached {
    pub link_id: u32,
    pub prog_id: u32,
    pub hook_btf_id: u32,
    pub tag: [u8; 8],
}

/// What the kernel runs, compared with the pins in the guard's directory.
#[derive(Debug)]
pub enum Identity {
    /// Neither this build's programs attached nor pins.
    Absent,
    /// The pins are this build's programs, attached by the kernel, and its maps.
    Genuine {
        /// Per program, the id of the program behind its pinned link.
        progs: HashMap<&'static str, u32>,
        /// The guard's ways in and out and its reports, each opened once and bound to the
        /// guard through that very descriptor (see [`bind_maps`]): use these, never the
        /// paths again (a pin renamed meanwhile would be another map).
        maps: HeldMaps,
    },
    /// This build's programs are attached (so much is enforced), but their pins are not
    /// visible from here: a mount in this mount namespace hides them, or they were removed at
    /// level 0. Nothing here can read or change what the guard holds.
    Hidden { attached: usize, of: usize },
    /// Pins that are not (all) this build's guard as the kernel runs it.
    NotThis { why: String },
}

fn tag_hex(tag: &[u8; 8]) -> String {
    tag.iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest a kernel's program tags are made with: SHA-1 until Linux 6.17, SHA-256 since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagDigest {
    Sha1,
    Sha256,
}

/// `r0 = 0; exit`, whose tag tells which digest the kernel uses.
const PROBE: [[u8; 8]; 2] = [[0xb7, 0, 0, 0, 0, 0, 0, 0], [0x95, 0, 0, 0, 0, 0, 0, 0]];

impl TagDigest {
    /// Asks the running kernel: loads a two-instruction socket filter and compares its tag.
    pub fn of_kernel() -> Result<Self> {
        let prog = crate::integrity::load_probe_program().map_err(syscall_err(
            "load a probe program to learn the kernel's tags".into(),
        ))?;
        let tag = prog_fd_tag(&prog).map_err(syscall_err("read the probe program's tag".into()))?;
        [TagDigest::Sha1, TagDigest::Sha256]
            .into_iter()
            .find(|d| kernel_tag(&PROBE, *d) == tag)
            .ok_or_else(|| Error::Identity {
                what: format!(
                    "the kernel tags programs with neither SHA-1 nor SHA-256 (probe tag {})",
                    tag_hex(&tag)
                ),
            })
    }
}

/// The kernel's tag of a program given `insns`: a digest of the instructions with the map
/// descriptors of 64-bit immediate loads zeroed (kernel/bpf/core.c, bpf_prog_calc_tag), its
/// first 8 bytes.
pub fn kernel_tag(insns: &[[u8; 8]], digest: TagDigest) -> [u8; 8] {
    let mut bytes = Vec::with_capacity(insns.len() * 8);
    let mut was_ld_map = false;
    for insn in insns {
        let mut i = *insn;
        let (code, dst, src, off) = (
            i[0],
            i[1] & 0x0f,
            i[1] >> 4,
            i16::from_le_bytes([i[2], i[3]]),
        );
        if !was_ld_map
            && code == BPF_LD_IMM64
            && (src == BPF_PSEUDO_MAP_FD || src == BPF_PSEUDO_MAP_VALUE)
        {
            was_ld_map = true;
            i[4..8].fill(0);
        } else if was_ld_map && code == 0 && dst == 0 && src == 0 && off == 0 {
            was_ld_map = false;
            i[4..8].fill(0);
        } else {
            was_ld_map = false;
        }
        bytes.extend_from_slice(&i);
    }
    let mut tag = [0u8; 8];
    match digest {
        TagDigest::Sha1 => tag.copy_from_slice(&Sha1::digest(&bytes)[..8]),
        TagDigest::Sha256 => tag.copy_from_slice(&Sha256::digest(&bytes)[..8]),
    }
    tag
}

/// This build's programs as the loader would hand them to this kernel: the embedded object
/// relocated (CO-RE against `btf`, maps, calls) exactly as aya does before loading, each
/// program's tag computed as the kernel will.
pub fn expected(btf: &Btf, digest: TagDigest) -> Result<Vec<Expected>> {
    let bad = |what: String| Error::Identity {
        what: format!("relocate this build's guard object to compute its tags: {what}"),
    };
    let mut obj = aya_obj::Object::parse(objects::FSGUARD).map_err(|e| bad(e.to_string()))?;
    obj.relocate_btf(btf).map_err(|e| bad(e.to_string()))?;
    let text: HashSet<usize> = obj.functions.keys().map(|(s, _)| *s).collect();
    let maps = std::mem::take(&mut obj.maps);
    // Any descriptor number will do: the tag leaves them out.
    obj.relocate_maps(maps.iter().map(|(n, m)| (n.as_str(), 0, m)), &text)
        .map_err(|e| bad(e.to_string()))?;
    obj.relocate_calls(&text).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::with_capacity(PROGRAMS.len());
    for (program, hook) in PROGRAMS {
        let prog = obj
            .programs
            .get(*program)
            .ok_or_else(|| bad(format!("no program {program}")))?;
        let func = obj
            .functions
            .get(&prog.function_key())
            .ok_or_else(|| bad(format!("no function for {program}")))?;
        let insns: Vec<[u8; 8]> = func
            .instructions
            .iter()
            .map(|i| {
                let mut b = [0u8; 8];
                b[0] = i.code;
                b[1] = i.dst_reg() | (i.src_reg() << 4);
                b[2..4].copy_from_slice(&i.off.to_le_bytes());
                b[4..8].copy_from_slice(&i.imm.to_le_bytes());
                b
            })
            .collect();
        let hook_btf_id = btf
            .id_by_type_name_kind(&format!("bpf_lsm_{hook}"), BtfKind::Func)
            .map_err(|e| bad(format!("the kernel has no LSM hook {hook}: {e}")))?;
        out.push(Expected {
            program,
            hook_btf_id,
            tag: kernel_tag(&insns, digest),
        });
    }
    Ok(out)
}

/// The tag of the program behind a link or program descriptor `fd`, from its fdinfo
/// (`prog_tag:`), which the kernel shows for every link (descriptors of the guard's programs
/// are refused).
fn prog_fd_tag(fd: &OwnedFd) -> std::io::Result<[u8; 8]> {
    use std::io::Read;
    let mut file = std::fs::File::open(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    // Only the kernel's procfs says what the kernel holds: a filesystem mounted over /proc
    // in a private namespace (FUSE) could serve any tag.
    // SAFETY: fstatfs on a descriptor we own, into a zeroed statfs it fills.
    let magic = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(file.as_raw_fd(), &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        st.f_type
    };
    if magic != libc::PROC_SUPER_MAGIC {
        return Err(std::io::Error::other(format!(
            "/proc is not the kernel's procfs (filesystem type {magic:#x})"
        )));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let hex = text
        .lines()
        .find_map(|l| l.strip_prefix("prog_tag:"))
        .map(str::trim)
        .ok_or_else(|| std::io::Error::other("no prog_tag in the link's fdinfo"))?;
    let mut tag = [0u8; 8];
    if hex.len() != 16 {
        return Err(std::io::Error::other(format!("odd prog_tag {hex:?}")));
    }
    for (i, t) in tag.iter_mut().enumerate() {
        *t = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| std::io::Error::other(format!("odd prog_tag {hex:?}")))?;
    }
    Ok(tag)
}

/// Every LSM link the kernel has attached (link descriptors are never refused).
pub fn attached_lsm() -> Result<Vec<Attached>> {
    let mut out = Vec::new();
    for id in crate::integrity::ids(BPF_LINK_GET_NEXT_ID)? {
        let fd = match by_id(BPF_LINK_GET_FD_BY_ID, id) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue, // detached meanwhile
            Err(e) => return Err(syscall_err(format!("open BPF link {id}"))(e)),
        };
        let head = info(&fd).map_err(syscall_err(format!("read BPF link {id}")))?;
        let w = head.words();
        if head.kind != BPF_LINK_TYPE_TRACING || w[4] != BPF_LSM_MAC {
            continue;
        }
        let tag = prog_fd_tag(&fd).map_err(syscall_err(format!("read BPF link {id}'s tag")))?;
        out.push(Attached {
            link_id: id,
            prog_id: head.third,
            hook_btf_id: w[6],
            tag,
        });
    }
    Ok(out)
}

/// Identifies the guard pinned in `dir` (see the module's documentation).
pub fn identify(dir: &Path, btf: &Btf) -> Result<Identity> {
    let any_pin = PROGRAMS
        .iter()
        .any(|(p, _)| std::fs::symlink_metadata(link_path(dir, p)).is_ok());
    let attached = attached_lsm()?;
    if !any_pin && attached.is_empty() {
        return Ok(Identity::Absent);
    }
    let expected = match expected(btf, TagDigest::of_kernel()?) {
        Ok(e) => e,
        // A kernel without one of the guard's hooks can't be running it.
        Err(_) if !any_pin => return Ok(Identity::Absent),
        Err(e) => return Err(e),
    };
    let running = |e: &Expected| -> Vec<&Attached> {
        attached
            .iter()
            .filter(|a| a.hook_btf_id == e.hook_btf_id && a.tag == e.tag)
            .collect()
    };
    let n_running = expected.iter().filter(|e| !running(e).is_empty()).count();
    let mut pinned: HashMap<&'static str, (u32, u32)> = HashMap::new();
    for e in &expected {
        let path = link_path(dir, e.program);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let link = open_pinned_map(&path)?;
        let head = info(&link).map_err(syscall_err(format!("read {}", path.display())))?;
        pinned.insert(e.program, (head.id, head.third));
    }
    if pinned.is_empty() {
        return Ok(if n_running == 0 {
            Identity::Absent
        } else {
            Identity::Hidden {
                attached: n_running,
                of: expected.len(),
            }
        });
    }
    for e in &expected {
        let Some((link_id, _)) = pinned.get(e.program) else {
            return Ok(Identity::NotThis {
                why: format!(
                    "{} is not pinned (the pins are incomplete)",
                    link_path(dir, e.program).display()
                ),
            });
        };
        if !running(e).iter().any(|a| a.link_id == *link_id) {
            let what = match attached.iter().find(|a| a.link_id == *link_id) {
                Some(a) if a.hook_btf_id != e.hook_btf_id => "attached to another hook",
                Some(a) => {
                    return Ok(Identity::NotThis {
                        why: format!(
                            "the program pinned as {} (link {link_id}) has tag {}, this build's has {}: another build's guard or an impostor",
                            e.program,
                            tag_hex(&a.tag),
                            tag_hex(&e.tag)
                        ),
                    })
                }
                None => "not an LSM link the kernel has attached",
            };
            return Ok(Identity::NotThis {
                why: format!(
                    "the link pinned as {} (link {link_id}) is {what}",
                    e.program
                ),
            });
        }
    }
    let progs: HashMap<&'static str, u32> =
        pinned.iter().map(|(p, (_, prog))| (*p, *prog)).collect();
    match bind_maps(dir, &progs)? {
        Ok(maps) => Ok(Identity::Genuine { progs, maps }),
        Err(why) => Ok(Identity::NotThis { why }),
    }
}

/// The maps sealtool uses, by name: `requests` write-only and `events` read-write (the ways
/// in and out), the reports `state`, `results`, `stats`, `capsules_view` read-only.
#[derive(Debug)]
pub struct HeldMaps(Vec<(&'static str, OwnedFd)>);

impl HeldMaps {
    /// The descriptor of map `name` (one of [`USED`]).
    pub fn take(&mut self, name: &str) -> Option<OwnedFd> {
        let i = self.0.iter().position(|(n, _)| *n == name)?;
        Some(self.0.swap_remove(i).1)
    }
}

/// How sealtool opens one of the maps it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// A way in (`requests`): from the freeze on the guard opens it for nothing else.
    WriteOnly,
    /// The way out (`events`): its reader moves the ring's consumer position.
    ReadWrite,
    /// A report: from the freeze on the guard refuses it to writers.
    ReadOnly,
}

/// The maps sealtool opens, and how. `state` comes third ([`bind_maps`] relies on it).
pub const USED: &[(&str, Opened)] = &[
    ("requests", Opened::WriteOnly),
    ("events", Opened::ReadWrite),
    ("state", Opened::ReadOnly),
    ("results", Opened::ReadOnly),
    ("stats", Opened::ReadOnly),
    ("capsules_view", Opened::ReadOnly),
];

/// A descriptor of map `id` opened with `open_flags`, refused with EPERM?
fn refused_by_id(id: u32, open_flags: u32) -> Result<bool> {
    match crate::integrity::map_by_id(id, open_flags) {
        Ok(_) => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(true),
        Err(e) => Err(syscall_err(format!("open map {id} again by id"))(e)),
    }
}

/// Opens each map of [`USED`] from its pin once and binds that very object to the guard
/// whose programs are `progs`, or says why it is not the guard's.
///
/// Before the freeze the guard hands out descriptors of its programs, and each map's id
/// must be among their maps. From the freeze on it refuses those, and answers for its own
/// maps as nothing else in the kernel does: its reports refused to writers, its ways in and
/// out (`requests`, `events`) refused to readers. Each such answer is asked for by the id of
/// the descriptor held (ids are not reused while it is held), so a pin renamed in between
/// can't pass another map off. The reports are asked first: a program descriptor refused
/// would be reported as an attempt on the guard each time sealtool opens it.
pub fn bind_maps(
    dir: &Path,
    progs: &HashMap<&'static str, u32>,
) -> Result<std::result::Result<HeldMaps, String>> {
    let mut held = Vec::new();
    let mut ids = Vec::new();
    for (map, opened) in USED {
        let path = dir.join(map);
        let rw = *opened != Opened::ReadOnly;
        let fd = match match opened {
            Opened::WriteOnly => open_pinned_map_wo(&path),
            Opened::ReadWrite => open_pinned_map(&path),
            Opened::ReadOnly => open_pinned_map_ro(&path),
        } {
            Ok(fd) => fd,
            Err(Error::Pin { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(Err(format!("{} is not pinned", path.display())))
            }
            Err(e) => return Err(e),
        };
        let id = info(&fd)
            .map_err(syscall_err(format!("read {}", path.display())))?
            .id;
        ids.push((*map, rw, id, path));
        held.push((*map, fd));
    }
    let frozen = {
        let (_, _, state_id, _) = &ids[2];
        refused_by_id(*state_id, 0)?
    };
    if frozen {
        for (map, rw, id, path) in &ids {
            // A way in or out is refused to readers; a report to writers.
            let flags = if *rw { BPF_F_RDONLY } else { 0 };
            if !refused_by_id(*id, flags)? {
                return Ok(Err(format!(
                    "{} (map {id}) opens {}, which the guard refuses for its own {map} from the freeze on",
                    path.display(),
                    if *rw { "read-only" } else { "for writing" }
                )));
            }
        }
        return Ok(Ok(HeldMaps(held)));
    }
    let mut used = HashSet::new();
    for (name, id) in progs {
        match by_id(BPF_PROG_GET_FD_BY_ID, *id) {
            Ok(fd) => used.extend(
                prog_map_ids(&fd)
                    .map_err(syscall_err(format!("read the maps of program {name}")))?,
            ),
            // Frozen since the report was asked (a raise meanwhile)? Then it is asked again.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                let (_, _, state_id, _) = &ids[2];
                if refused_by_id(*state_id, 0)? {
                    return bind_maps(dir, progs);
                }
                return Ok(Err(format!(
                    "{} opens for writing while the guard refuses its programs (from the freeze on it refuses both)",
                    ids[2].3.display()
                )));
            }
            Err(e) => return Err(syscall_err(format!("open the guard's program {name}"))(e)),
        }
    }
    // The other maps too, as pinned (the scan before the first raise starts from them).
    for map in MAPS.iter().filter(|m| !USED.iter().any(|(u, _)| u == *m)) {
        let path = dir.join(map);
        let fd = match open_pinned_map_ro(&path) {
            Ok(fd) => fd,
            Err(Error::Pin { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(Err(format!("{} is not pinned", path.display())))
            }
            Err(e) => return Err(e),
        };
        let id = info(&fd)
            .map_err(syscall_err(format!("read {}", path.display())))?
            .id;
        ids.push((map, false, id, path));
    }
    for (_, _, id, path) in &ids {
        if !used.contains(id) {
            return Ok(Err(format!(
                "{} (map {id}) is not a map the guard's programs use",
                path.display()
            )));
        }
    }
    Ok(Ok(HeldMaps(held)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_of_a_known_program() {
        // `r0 = 0; exit`, as Linux 6.1 (SHA-1) and 6.18 (SHA-256) show it in fdinfo.
        assert_eq!(
            tag_hex(&kernel_tag(&PROBE, TagDigest::Sha1)),
            "a04f5eef06a7f555"
        );
        assert_eq!(
            tag_hex(&kernel_tag(&PROBE, TagDigest::Sha256)),
            "59f4a931744dcdc6"
        );
    }

    #[test]
    fn map_descriptors_do_not_count() {
        let with_fd = |fd: u8, off: u8| {
            [
                [
                    BPF_LD_IMM64,
                    1 | (BPF_PSEUDO_MAP_VALUE << 4),
                    0,
                    0,
                    fd,
                    0,
                    0,
                    0,
                ],
                [0, 0, 0, 0, off, 0, 0, 0],
                [0x95, 0, 0, 0, 0, 0, 0, 0],
            ]
        };
        assert_eq!(
            kernel_tag(&with_fd(3, 8), TagDigest::Sha1),
            kernel_tag(&with_fd(9, 16), TagDigest::Sha1)
        );
        // A plain 64-bit immediate load keeps its value in the tag.
        let plain = |v: u8| {
            [
                [BPF_LD_IMM64, 1, 0, 0, v, 0, 0, 0],
                [0, 0, 0, 0, 0, 0, 0, 0],
                [0x95, 0, 0, 0, 0, 0, 0, 0],
            ]
        };
        assert_ne!(
            kernel_tag(&plain(3), TagDigest::Sha1),
            kernel_tag(&plain(9), TagDigest::Sha1)
        );
    }
}
