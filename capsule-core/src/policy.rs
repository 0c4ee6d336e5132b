//! Seal policy: what sealing a capsule records (who is inside, what is frozen) and which
//! entries of its tree each rule covers. The kernel side receives the result as identities.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::codec::{checked_body_of, seal_with_checksum, Encoder};
use crate::glob::GlobSet;
use crate::manifest::{Digest, Entry, EntryKind};

const SEAL_MAGIC: &[u8; 16] = b"CAPSULE-SEAL\0\0\0\0";
/// 1: name, digest, cgroup, frozen globs, time. 2: and the exec rule's mode and bases
/// (written only when they are not the defaults, so a seal without them reads as before).
const SEAL_VERSION: u32 = 2;

/// What a capsule's processes may run (the guard's exec rule, once the capsule is sealed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExecMode {
    /// Files nobody outside can change: the capsule's own (its sealed tree, and what it
    /// wrote since), and the sealed files of the bases it names (`exec_from`). Anonymous
    /// executable memory (JIT compilers) is allowed.
    #[default]
    Own,
    /// Only the entries of its sealed manifest and of its bases' (nothing it wrote since its
    /// seal, no memfd); no anonymous, writable or copied-on-write memory made executable.
    Sealed,
}

/// A seal, stored beside the manifest it seals as `<digest>.seal`. Its existence is what
/// makes a capsule sealed: it is never removed or replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealRecord {
    pub name: String,
    pub digest: Digest,
    /// The cgroup v2 directory whose processes (and its descendants') are inside.
    pub cgroup: Option<PathBuf>,
    /// Globs of entries that nobody may modify, inside processes included.
    pub frozen: Vec<String>,
    pub sealed_at: u64,
    /// What may run inside.
    pub exec: ExecMode,
    /// Sealed capsules with nobody inside (shared bases) whose sealed files may run inside.
    pub exec_from: Vec<String>,
}

impl SealRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        let plain = self.exec == ExecMode::Own && self.exec_from.is_empty();
        e.raw(SEAL_MAGIC);
        e.u32(if plain { 1 } else { SEAL_VERSION });
        e.bytes(self.name.as_bytes());
        e.raw(&self.digest.0);
        match &self.cgroup {
            Some(c) => {
                e.u8(1);
                e.bytes(c.as_os_str().as_bytes());
            }
            None => e.u8(0),
        }
        e.u32(self.frozen.len() as u32);
        for f in &self.frozen {
            e.bytes(f.as_bytes());
        }
        e.u64(self.sealed_at);
        if !plain {
            e.u8(match self.exec {
                ExecMode::Own => 0,
                ExecMode::Sealed => 1,
            });
            e.u32(self.exec_from.len() as u32);
            for b in &self.exec_from {
                e.bytes(b.as_bytes());
            }
        }
        seal_with_checksum(e)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (mut d, version) = checked_body_of(bytes, SEAL_MAGIC, 1..=SEAL_VERSION, "seal record")?;
        let name = String::from_utf8(d.bytes("name")?.to_vec()).map_err(|_| "name is not UTF-8")?;
        let digest = Digest(d.array32("digest")?);
        let cgroup = match d.u8("cgroup marker")? {
            0 => None,
            1 => Some(PathBuf::from(std::ffi::OsStr::from_bytes(
                d.bytes("cgroup")?,
            ))),
            m => return Err(format!("bad cgroup marker {m}")),
        };
        let n = d.u32("frozen count")? as usize;
        let mut frozen = Vec::with_capacity(n.min(d.remaining() / 4));
        for _ in 0..n {
            frozen.push(
                String::from_utf8(d.bytes("frozen glob")?.to_vec())
                    .map_err(|_| "glob is not UTF-8")?,
            );
        }
        let sealed_at = d.u64("seal time")?;
        let (mut exec, mut exec_from) = (ExecMode::Own, Vec::new());
        if version >= 2 {
            exec = match d.u8("exec mode")? {
                0 => ExecMode::Own,
                1 => ExecMode::Sealed,
                m => return Err(format!("bad exec mode {m}")),
            };
            let n = d.u32("base count")? as usize;
            exec_from.reserve(n.min(d.remaining() / 4));
            for _ in 0..n {
                exec_from.push(
                    String::from_utf8(d.bytes("base name")?.to_vec())
                        .map_err(|_| "base name is not UTF-8")?,
                );
            }
        }
        d.finish("the seal record")?;
        Ok(SealRecord {
            name,
            digest,
            cgroup,
            frozen,
            sealed_at,
            exec,
            exec_from,
        })
    }
}

/// Decides which entries are frozen. A directory matched by a glob such as `bin/**` is
/// frozen itself (so nothing can be created in it), and so is everything below a frozen
/// directory.
pub struct FrozenRules {
    globs: GlobSet,
}

impl FrozenRules {
    pub fn new(globs: GlobSet) -> Self {
        FrozenRules { globs }
    }

    /// Marks each entry (sorted by path, as in a manifest): true when frozen.
    pub fn mark(&self, entries: &[Entry]) -> Vec<bool> {
        let mut out = vec![false; entries.len()];
        if self.globs.is_empty() {
            return out;
        }
        // Frozen directories seen so far, as path prefixes; entries are in path order, but
        // "a/b" < "a/b-c" < "a/b/x", so ancestors are checked explicitly.
        let mut frozen_dirs: std::collections::HashSet<&[u8]> = Default::default();
        for (i, e) in entries.iter().enumerate() {
            let path: &[u8] = &e.path;
            let mut dir_form = path.to_vec();
            dir_form.push(b'/');
            let by_glob = !path.is_empty()
                && (self.globs.matches(path)
                    || (e.kind == EntryKind::Dir && self.globs.matches(&dir_form)));
            let by_ancestor = ancestors(path).any(|a| frozen_dirs.contains(a));
            if by_glob || by_ancestor {
                out[i] = true;
                if e.kind == EntryKind::Dir {
                    frozen_dirs.insert(path);
                }
            }
        }
        out
    }
}

fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.iter()
        .enumerate()
        .filter(|(_, &c)| c == b'/')
        .map(move |(i, _)| &path[..i])
}

/// The depth of a cgroup v2 directory below the hierarchy's root (the root is level 0).
pub fn cgroup_level(cgroup: &Path, hierarchy_root: &Path) -> Option<u32> {
    let rel = cgroup.strip_prefix(hierarchy_root).ok()?;
    Some(rel.components().count() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            mode: 0o755,
            ..Entry::bare(path.as_bytes(), kind)
        }
    }

    #[test]
    fn frozen_covers_matched_dirs_and_descendants() {
        let entries = vec![
            entry("", EntryKind::Dir),
            entry("bin", EntryKind::Dir),
            entry("bin-extra", EntryKind::File),
            entry("bin/sh", EntryKind::File),
            entry("bin/sub", EntryKind::Dir),
            entry("bin/sub/x", EntryKind::File),
            entry("etc", EntryKind::Dir),
            entry("etc/passwd", EntryKind::File),
            entry("etc/shadow", EntryKind::File),
        ];
        let rules = FrozenRules::new(GlobSet::new(&["bin/**", "etc/passwd"]).unwrap());
        let marks = rules.mark(&entries);
        let frozen: Vec<&str> = entries
            .iter()
            .zip(&marks)
            .filter(|(_, &m)| m)
            .map(|(e, _)| std::str::from_utf8(&e.path).unwrap())
            .collect();
        assert_eq!(
            frozen,
            ["bin", "bin/sh", "bin/sub", "bin/sub/x", "etc/passwd"]
        );
    }

    #[test]
    fn seal_record_round_trip_and_damage() {
        let r = SealRecord {
            name: "app".into(),
            digest: Digest([7; 32]),
            cgroup: Some("/sys/fs/cgroup/app".into()),
            frozen: vec!["bin/**".into()],
            sealed_at: 42,
            exec: ExecMode::Own,
            exec_from: Vec::new(),
        };
        let sealed = SealRecord {
            exec: ExecMode::Sealed,
            exec_from: vec!["base".into(), "libs".into()],
            ..r.clone()
        };
        for r in [r, sealed] {
            let b = r.encode();
            assert_eq!(SealRecord::decode(&b).unwrap(), r);
            for i in 0..b.len() {
                let mut bad = b.clone();
                bad[i] ^= 1;
                assert!(SealRecord::decode(&bad).is_err());
            }
        }
    }

    #[test]
    fn a_seal_without_exec_options_is_written_as_version_1() {
        let r = SealRecord {
            name: "app".into(),
            digest: Digest([7; 32]),
            cgroup: None,
            frozen: Vec::new(),
            sealed_at: 1,
            exec: ExecMode::Own,
            exec_from: Vec::new(),
        };
        let b = r.encode();
        assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 1);
        let with = SealRecord {
            exec_from: vec!["base".into()],
            ..r
        }
        .encode();
        assert_eq!(u32::from_le_bytes(with[16..20].try_into().unwrap()), 2);
    }

    #[test]
    fn cgroup_levels() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(cgroup_level(Path::new("/sys/fs/cgroup"), root), Some(0));
        assert_eq!(cgroup_level(Path::new("/sys/fs/cgroup/a/b"), root), Some(2));
        assert_eq!(cgroup_level(Path::new("/tmp/x"), root), None);
    }
}
