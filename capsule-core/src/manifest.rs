//! The manifest: what a capsule tree is, entry by entry, and its canonical encoding.
//!
//! A manifest has two parts. The *tree* is canonical: entries sorted by path bytes,
//! encoded deterministically (see manifests/FORMAT.md); its BLAKE3 hash is the capsule's
//! root digest, the same for the same tree on any machine. The *binding* ties a tree to one
//! machine: capsule name, root path, registration time and each entry's (device, inode)
//! identity, which the kernel side keys its policy on. Only the tree is digested.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::codec::{Decoder, Encoder};
use crate::error::Error;

pub const TREE_MAGIC: &[u8; 16] = b"CAPSULE-TREE\0\0\0\0";
pub const FILE_MAGIC: &[u8; 16] = b"CAPSULE-MANIFEST";
pub const FORMAT_VERSION: u32 = 1;

/// The type of a tree entry. Discriminants are part of the canonical encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    Dir = 1,
    File = 2,
    Symlink = 3,
    Fifo = 4,
    Socket = 5,
    CharDevice = 6,
    BlockDevice = 7,
    /// A directory where another filesystem is mounted; recorded, never descended.
    MountPoint = 8,
}

impl EntryKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Dir,
            2 => Self::File,
            3 => Self::Symlink,
            4 => Self::Fifo,
            5 => Self::Socket,
            6 => Self::CharDevice,
            7 => Self::BlockDevice,
            8 => Self::MountPoint,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Dir => "dir",
            Self::File => "file",
            Self::Symlink => "symlink",
            Self::Fifo => "fifo",
            Self::Socket => "socket",
            Self::CharDevice => "char-device",
            Self::BlockDevice => "block-device",
            Self::MountPoint => "mount-point",
        }
    }
}

/// One extended attribute: its name and the BLAKE3 of its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Xattr {
    pub name: Box<[u8]>,
    pub value_hash: [u8; 32],
}

/// Entry flag: the entry could not be read and was recorded as such (`--skip-unreadable`).
pub const FLAG_UNREADABLE: u8 = 1;
/// Entry flag: the file has hard links outside the tree.
pub const FLAG_LINKS_OUTSIDE: u8 = 2;

/// One entry of a tree. `dev`/`ino` are the local identity (binding, not digested).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the root, raw bytes, `/`-separated; empty for the root itself.
    pub path: Box<[u8]>,
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Content size for files, target length for symlinks, 0 for everything else.
    pub size: u64,
    pub flags: u8,
    /// BLAKE3 of the content (files that were read).
    pub hash: Option<[u8; 32]>,
    /// Symlink target bytes.
    pub target: Option<Box<[u8]>>,
    /// (major, minor) of device nodes.
    pub rdev: Option<(u32, u32)>,
    /// For members of an in-tree hard-link group: the group's first path (sorted order).
    pub link_leader: Option<Box<[u8]>>,
    /// Sorted by name.
    pub xattrs: Box<[Xattr]>,
    pub dev: u64,
    pub ino: u64,
}

impl Entry {
    /// An entry with only its path and type: no metadata, content or identity yet. Walks and
    /// tests fill in the rest with struct-update syntax.
    pub fn bare(path: &[u8], kind: EntryKind) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            flags: 0,
            hash: None,
            target: None,
            rdev: None,
            link_leader: None,
            xattrs: Box::new([]),
            dev: 0,
            ino: 0,
        }
    }

    pub fn is_unreadable(&self) -> bool {
        self.flags & FLAG_UNREADABLE != 0
    }
    pub fn links_outside(&self) -> bool {
        self.flags & FLAG_LINKS_OUTSIDE != 0
    }

    fn encode_canonical(&self, e: &mut Encoder) {
        e.bytes(&self.path);
        e.u8(self.kind as u8);
        e.u32(self.mode);
        e.u32(self.uid);
        e.u32(self.gid);
        e.u64(self.size);
        e.u8(self.flags);
        match &self.hash {
            Some(h) => {
                e.u8(1);
                e.raw(h);
            }
            None => e.u8(0),
        }
        match &self.target {
            Some(t) => {
                e.u8(1);
                e.bytes(t);
            }
            None => e.u8(0),
        }
        match self.rdev {
            Some((maj, min)) => {
                e.u8(1);
                e.u32(maj);
                e.u32(min);
            }
            None => e.u8(0),
        }
        match &self.link_leader {
            Some(l) => {
                e.u8(1);
                e.bytes(l);
            }
            None => e.u8(0),
        }
        e.u32(self.xattrs.len() as u32);
        for x in self.xattrs.iter() {
            e.bytes(&x.name);
            e.raw(&x.value_hash);
        }
    }

    /// Length of the canonical encoding of this entry.
    pub fn encoded_len(&self) -> usize {
        let optional = |n: Option<usize>| 1 + n.unwrap_or(0);
        4 + self.path.len()
            + 1
            + 4 * 3
            + 8
            + 1
            + optional(self.hash.map(|_| 32))
            + optional(self.target.as_ref().map(|t| 4 + t.len()))
            + optional(self.rdev.map(|_| 8))
            + optional(self.link_leader.as_ref().map(|l| 4 + l.len()))
            + 4
            + self
                .xattrs
                .iter()
                .map(|x| 4 + x.name.len() + 32)
                .sum::<usize>()
    }
}

/// One entry read in place from its canonical encoding, every field checked, nothing copied
/// but the fixed-size ones. [`EntryRef::to_entry`] makes an [`Entry`] of it.
#[derive(Clone, Copy, Debug)]
pub struct EntryRef<'a> {
    /// The entry's whole canonical encoding.
    pub bytes: &'a [u8],
    pub path: &'a [u8],
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub flags: u8,
    pub hash: Option<&'a [u8; 32]>,
    pub target: Option<&'a [u8]>,
    pub rdev: Option<(u32, u32)>,
    pub link_leader: Option<&'a [u8]>,
    /// Offset of the link-group marker in `bytes`.
    link_at: usize,
    xattr_count: u32,
    /// The xattr list after its count (checked).
    xattrs: &'a [u8],
}

impl<'a> EntryRef<'a> {
    /// Reads one entry, checking every field as [`Tree::decode`] does.
    pub fn decode(d: &mut Decoder<'a>) -> Result<Self, String> {
        let start = d.position();
        let path = d.bytes("entry path")?;
        let kind_byte = d.u8("entry type")?;
        let kind = EntryKind::from_u8(kind_byte)
            .ok_or_else(|| format!("unknown entry type {kind_byte}"))?;
        let mode = d.u32("mode")?;
        let uid = d.u32("uid")?;
        let gid = d.u32("gid")?;
        let size = d.u64("size")?;
        let flags = d.u8("flags")?;
        let hash = match d.u8("hash marker")? {
            0 => None,
            1 => Some(d.take(32, "content hash")?),
            v => return Err(format!("bad hash marker {v}")),
        };
        let target = match d.u8("target marker")? {
            0 => None,
            1 => Some(d.bytes("symlink target")?),
            v => return Err(format!("bad target marker {v}")),
        };
        let rdev = match d.u8("device marker")? {
            0 => None,
            1 => Some((d.u32("major")?, d.u32("minor")?)),
            v => return Err(format!("bad device marker {v}")),
        };
        let link_at = d.position() - start;
        let link_leader = match d.u8("link marker")? {
            0 => None,
            1 => Some(d.bytes("link leader")?),
            v => return Err(format!("bad link marker {v}")),
        };
        let xattr_count = d.u32("xattr count")?;
        let xattrs_start = d.position();
        for _ in 0..xattr_count {
            d.bytes("xattr name")?;
            d.take(32, "xattr value hash")?;
        }
        Ok(EntryRef {
            bytes: d.since(start),
            path,
            kind,
            mode,
            uid,
            gid,
            size,
            flags,
            hash: hash.and_then(|h| h.try_into().ok()),
            target,
            rdev,
            link_leader,
            link_at,
            xattr_count,
            xattrs: d.since(xattrs_start),
        })
    }

    /// Reads an entry that is all of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        let mut d = Decoder::new(bytes);
        let e = Self::decode(&mut d)?;
        d.finish("the entry")?;
        Ok(e)
    }

    /// The entry, with the given local identity.
    pub fn to_entry(&self, dev: u64, ino: u64) -> Entry {
        let mut xattrs = Vec::with_capacity(self.xattr_count as usize);
        let mut d = Decoder::new(self.xattrs);
        for _ in 0..self.xattr_count {
            // Checked by `decode`: these reads cannot fail.
            let (Ok(name), Ok(value_hash)) = (d.bytes("xattr name"), d.array32("xattr hash"))
            else {
                break;
            };
            xattrs.push(Xattr {
                name: name.into(),
                value_hash,
            });
        }
        Entry {
            path: self.path.into(),
            kind: self.kind,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            flags: self.flags,
            hash: self.hash.copied(),
            target: self.target.map(Into::into),
            rdev: self.rdev,
            link_leader: self.link_leader.map(Into::into),
            xattrs: xattrs.into(),
            dev,
            ino,
        }
    }
}

/// A whole tree: the exclude patterns it was walked with and its entries, sorted by path.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Tree {
    pub excludes: Vec<String>,
    pub entries: Vec<Entry>,
}

impl Tree {
    /// Sorts entries into canonical order. Paths are unique within a tree.
    pub fn canonicalize(&mut self) {
        self.entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    }

    /// The canonical encoding (manifests/FORMAT.md). Entries must be canonicalized.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        self.encode_into(&mut e);
        e.into_inner()
    }

    fn encode_into(&self, e: &mut Encoder) {
        encode_tree_header(e, &self.excludes, self.entries.len());
        for entry in &self.entries {
            entry.encode_canonical(e);
        }
    }

    /// Length of the canonical encoding.
    pub fn encoded_len(&self) -> usize {
        tree_header_len(&self.excludes) + self.entries.iter().map(Entry::encoded_len).sum::<usize>()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut entries = Vec::new();
        let layout = decode_tree(bytes, Some(&mut entries))?;
        Ok(Tree {
            excludes: layout.excludes,
            entries,
        })
    }

    /// The root digest: BLAKE3 of the canonical encoding.
    pub fn digest(&self) -> Digest {
        Digest(*blake3::hash(&self.encode()).as_bytes())
    }

    pub fn total_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| e.size)
            .sum()
    }

    pub fn find(&self, path: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| (*e.path).cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// The shortest canonical entry encoding: empty path, no optional field, no xattr.
const MIN_ENTRY_LEN: usize = 4 + 1 + 4 * 3 + 8 + 1 + 4 + 4;

fn tree_header_len(excludes: &[String]) -> usize {
    16 + 4 + 4 + excludes.iter().map(|x| 4 + x.len()).sum::<usize>() + 8
}

fn encode_tree_header(e: &mut Encoder, excludes: &[String], entries: usize) {
    e.raw(TREE_MAGIC);
    e.u32(FORMAT_VERSION);
    e.u32(excludes.len() as u32);
    for x in excludes {
        e.bytes(x.as_bytes());
    }
    e.u64(entries as u64);
}

/// Where the parts of a checked tree encoding lie.
struct TreeLayout {
    excludes: Vec<String>,
    count: usize,
    /// Offset of the first entry.
    entries_at: usize,
}

/// Checks a whole canonical tree encoding: magic, version, every entry, canonical order, no
/// trailing bytes. The entries are decoded into `out` if given (without local identities).
fn decode_tree(bytes: &[u8], mut out: Option<&mut Vec<Entry>>) -> Result<TreeLayout, String> {
    let mut d = Decoder::new(bytes);
    if d.take(16, "tree magic")? != TREE_MAGIC {
        return Err("not a capsule tree (bad magic)".into());
    }
    let version = d.u32("tree version")?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "tree format version {version} is not supported (this sealtool reads {FORMAT_VERSION})"
        ));
    }
    let nx = d.u32("exclude count")? as usize;
    let mut excludes = Vec::with_capacity(nx.min(d.remaining() / 4));
    for _ in 0..nx {
        let x = d.bytes("exclude pattern")?;
        excludes.push(String::from_utf8(x.to_vec()).map_err(|_| "exclude pattern is not UTF-8")?);
    }
    let n = d.u64("entry count")?;
    if let Some(out) = out.as_deref_mut() {
        out.reserve_exact((n as usize).min(d.remaining() / MIN_ENTRY_LEN));
    }
    let entries_at = d.position();
    let mut prev: Option<&[u8]> = None;
    for i in 0..n {
        let entry = EntryRef::decode(&mut d).map_err(|e| format!("entry {i}: {e}"))?;
        if let Some(p) = prev {
            if p >= entry.path {
                return Err(format!("entry {i}: entries are not in canonical order"));
            }
        }
        prev = Some(entry.path);
        if let Some(out) = out.as_deref_mut() {
            out.push(entry.to_entry(0, 0));
        }
    }
    d.finish("the tree")?;
    Ok(TreeLayout {
        excludes,
        // Every entry takes at least one byte, so the count fits.
        count: n as usize,
        entries_at,
    })
}

/// A BLAKE3 digest, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Digest(out))
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

/// A tree bound to this machine: what a manifest file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub root: PathBuf,
    /// Seconds since the Unix epoch.
    pub registered_at: u64,
    pub tree: Tree,
}

impl Manifest {
    pub fn digest(&self) -> Digest {
        self.tree.digest()
    }

    /// The manifest file: magic, version, binding, the canonical tree, the local identities,
    /// then BLAKE3 of everything before it. Returns the bytes and the root digest.
    pub fn encode_file(&self) -> (Vec<u8>, Digest) {
        // Sized exactly and the tree encoded in place (not copied), so that a million-entry
        // manifest is held in memory once; the digest is patched in afterwards.
        let n = self.tree.entries.len();
        let tree_len = self.tree.encoded_len();
        let mut e = Encoder::with_capacity(
            file_header_len(&self.name, &self.root) + tree_len + 8 + 16 * n + 32,
        );
        encode_file_header(
            &mut e,
            &self.name,
            &self.root,
            self.registered_at,
            &Digest([0; 32]),
            tree_len as u64,
        );
        let tree_start = e.len();
        self.tree.encode_into(&mut e);
        let written = (e.len() - tree_start) as u64;
        e.patch(tree_start - 8, &written.to_le_bytes());
        let digest = Digest(*blake3::hash(&e.as_slice()[tree_start..]).as_bytes());
        e.patch(tree_start - 8 - 32, &digest.0);
        e.u64(n as u64);
        for entry in &self.tree.entries {
            e.u64(entry.dev);
            e.u64(entry.ino);
        }
        (crate::codec::seal_with_checksum(e), digest)
    }

    /// Parses and checks a manifest file: trailer checksum, tree digest, ordering.
    pub fn decode_file(bytes: &[u8]) -> Result<(Self, Digest), String> {
        let mut entries = Vec::new();
        let file = check_file(bytes, Some(&mut entries))?;
        let mut d = Decoder::new(&bytes[file.ids_at..]);
        for entry in entries.iter_mut() {
            entry.dev = d.u64("device")?;
            entry.ino = d.u64("inode")?;
        }
        let digest = file.digest;
        Ok((
            Manifest {
                name: file.name,
                root: file.root,
                registered_at: file.registered_at,
                tree: Tree {
                    excludes: file.tree.excludes,
                    entries,
                },
            },
            digest,
        ))
    }
}

fn file_header_len(name: &str, root: &Path) -> usize {
    16 + 4 + 4 + name.len() + 4 + root.as_os_str().len() + 8 + 32 + 8
}

/// Everything of a manifest file before the tree.
fn encode_file_header(
    e: &mut Encoder,
    name: &str,
    root: &Path,
    registered_at: u64,
    digest: &Digest,
    tree_len: u64,
) {
    e.raw(FILE_MAGIC);
    e.u32(FORMAT_VERSION);
    e.bytes(name.as_bytes());
    e.bytes(root.as_os_str().as_bytes());
    e.u64(registered_at);
    e.raw(&digest.0);
    e.u64(tree_len);
}

/// A checked manifest file: its binding and where its parts lie.
struct FileLayout {
    name: String,
    root: PathBuf,
    registered_at: u64,
    digest: Digest,
    tree: TreeLayout,
    /// Offset of the tree.
    tree_at: usize,
    /// Offset of the first (st_dev, st_ino) pair.
    ids_at: usize,
}

/// Checks a whole manifest file (trailer checksum, magic, version, tree digest, every entry,
/// ordering, identities); `out` as for [`decode_tree`].
fn check_file(bytes: &[u8], out: Option<&mut Vec<Entry>>) -> Result<FileLayout, String> {
    let mut d = crate::codec::checked_body(bytes, FILE_MAGIC, FORMAT_VERSION, "manifest")?;
    let (
        ManifestHeader {
            name,
            root,
            registered_at,
            digest,
        },
        tree_len,
    ) = ManifestHeader::decode_binding(&mut d)?;
    let tree_at = d.position();
    let tree_bytes = d.take(
        usize::try_from(tree_len).map_err(|_| "tree length overflows")?,
        "tree",
    )?;
    if blake3::hash(tree_bytes).as_bytes() != &digest.0 {
        return Err("the tree does not match its recorded root digest".into());
    }
    let tree = decode_tree(tree_bytes, out)?;
    let n = d.u64("identity count")?;
    if n != tree.count as u64 {
        return Err(format!("{n} identities for {} entries", tree.count));
    }
    let ids_at = d.position();
    for _ in 0..n {
        d.u64("device")?;
        d.u64("inode")?;
    }
    d.finish("the manifest")?;
    Ok(FileLayout {
        name,
        root,
        registered_at,
        digest,
        tree,
        tree_at,
        ids_at,
    })
}

/// A manifest file checked whole (as [`Manifest::decode_file`] checks it) but kept as its
/// bytes: entries are read in place, one at a time, so a large manifest is held once, in
/// its compact encoded form.
pub struct ManifestBytes {
    bytes: Vec<u8>,
    pub name: String,
    pub root: PathBuf,
    /// Seconds since the Unix epoch.
    pub registered_at: u64,
    pub digest: Digest,
    pub excludes: Vec<String>,
    count: usize,
    entries_at: usize,
    ids_at: usize,
}

impl ManifestBytes {
    /// Checks a manifest file; errors are those of [`Manifest::decode_file`].
    pub fn parse(bytes: Vec<u8>) -> Result<Self, String> {
        let file = check_file(&bytes, None)?;
        Ok(ManifestBytes {
            name: file.name,
            root: file.root,
            registered_at: file.registered_at,
            digest: file.digest,
            excludes: file.tree.excludes,
            count: file.tree.count,
            entries_at: file.tree_at + file.tree.entries_at,
            ids_at: file.ids_at,
            bytes,
        })
    }

    /// Reads the manifest file at `path` and checks it, and that it is the manifest of capsule
    /// `name` with root digest `digest` (its file name is `<digest>.manifest`), with the
    /// errors of the registry's `load_manifest`.
    pub fn read(path: &Path, name: &str, digest: &Digest) -> crate::Result<Self> {
        let bytes = crate::sys::read_regular(path, crate::sys::MAX_MANIFEST_FILE)
            .map_err(|e| Error::io(path, "read the manifest", e))?;
        let corrupt = |reason: String| Error::ManifestCorrupt {
            path: path.to_path_buf(),
            reason,
        };
        let m = Self::parse(bytes).map_err(corrupt)?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if Digest::from_hex(stem) != Some(m.digest) {
            return Err(corrupt(format!(
                "its content has digest {}, its name says {stem}",
                m.digest
            )));
        }
        if m.digest != *digest || m.name != name {
            return Err(corrupt(format!(
                "it describes capsule {:?} with digest {}, the registry expects {name:?} with {digest}",
                m.name, m.digest
            )));
        }
        Ok(m)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries, in canonical order, without their local identities.
    pub fn entries(&self) -> impl Iterator<Item = EntryRef<'_>> + '_ {
        let mut d = Decoder::new(&self.bytes[self.entries_at..self.ids_at]);
        // Checked by `parse`: decoding cannot fail.
        (0..self.count).map_while(move |_| EntryRef::decode(&mut d).ok())
    }

    /// The local identities (st_dev, st_ino), in entry order.
    pub fn identities(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.bytes[self.ids_at..self.bytes.len() - 32]
            .chunks_exact(16)
            .map(|c| (le_u64(&c[..8]), le_u64(&c[8..])))
    }

    /// The whole manifest, decoded.
    pub fn to_manifest(&self) -> Manifest {
        let entries = self
            .entries()
            .zip(self.identities())
            .map(|(e, (dev, ino))| e.to_entry(dev, ino))
            .collect();
        Manifest {
            name: self.name.clone(),
            root: self.root.clone(),
            registered_at: self.registered_at,
            tree: Tree {
                excludes: self.excludes.clone(),
                entries,
            },
        }
    }
}

/// The binding at the start of a manifest file (name, root, time, digest), read without the
/// rest of the file: enough to tell which manifest of a capsule is the newest, not to trust
/// its tree (that takes [`ManifestBytes::read`] or [`Manifest::decode_file`], which check the
/// whole file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestHeader {
    pub name: String,
    pub root: PathBuf,
    /// Seconds since the Unix epoch.
    pub registered_at: u64,
    pub digest: Digest,
}

/// The most a header can take: magic, version, a name, a root path of up to PATH_MAX, time,
/// digest, tree length.
const MAX_HEADER: u64 = 16 + 4 + 4 + 64 + 4 + 4096 + 8 + 32 + 8;

impl ManifestHeader {
    /// Decodes the header at the start of `bytes` (a whole file or its first part).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut d = Decoder::new(bytes);
        if d.take(16, "magic")? != FILE_MAGIC {
            return Err("not a capsule manifest (bad magic)".into());
        }
        let v = d.u32("version")?;
        if v != FORMAT_VERSION {
            return Err(format!(
                "manifest format version {v} is not supported (this sealtool reads {FORMAT_VERSION})"
            ));
        }
        Self::decode_binding(&mut d).map(|(h, _)| h)
    }

    /// The binding after the magic and version, and the tree length that follows it.
    fn decode_binding(d: &mut Decoder<'_>) -> Result<(Self, u64), String> {
        let name = String::from_utf8(d.bytes("capsule name")?.to_vec())
            .map_err(|_| "capsule name is not UTF-8")?;
        let root = PathBuf::from(std::ffi::OsStr::from_bytes(d.bytes("root path")?));
        let registered_at = d.u64("registration time")?;
        let digest = Digest(d.array32("root digest")?);
        let tree_len = d.u64("tree length")?;
        let header = ManifestHeader {
            name,
            root,
            registered_at,
            digest,
        };
        Ok((header, tree_len))
    }

    /// Reads the header of the manifest file at `path`.
    pub fn read(path: &Path) -> crate::Result<Self> {
        use std::io::Read;
        let mut bytes = Vec::new();
        crate::sys::open_regular(std::fs::OpenOptions::new().read(true), path)
            .and_then(|f| f.take(MAX_HEADER).read_to_end(&mut bytes))
            .map_err(|e| Error::io(path, "read the manifest", e))?;
        Self::decode(&bytes).map_err(|reason| Error::ManifestCorrupt {
            path: path.to_path_buf(),
            reason,
        })
    }
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Bytes of a packed record before the entry's canonical encoding: st_dev, st_ino, the link
/// count, the length of the encoding.
const PACKED_HEADER: usize = 8 + 8 + 4 + 4;

/// Packed records are kept in chunks of this size: large enough that the allocator maps and
/// unmaps each one whole (glibc's mmap threshold never exceeds 32 MiB), so that a chunk
/// dropped is memory returned. Only the pages written to take memory.
const PACK_CHUNK: usize = 32 << 20;
/// The first chunk of each packer is smaller, so that a small walk reserves little.
const FIRST_PACK_CHUNK: usize = 256 << 10;

/// Collects entries in packed form as they are walked (one per walking thread): each entry's
/// canonical encoding after its local facts, about a hundred bytes where an [`Entry`]
/// takes nearly two hundred.
#[derive(Default)]
pub(crate) struct Packer {
    chunks: Vec<Vec<u8>>,
    count: usize,
}

impl Packer {
    /// Packs an entry whose `link_leader` is not yet known (it is set in [`PackedTree`]).
    pub(crate) fn push(&mut self, entry: &Entry, nlink: u32) {
        let need = PACKED_HEADER + entry.encoded_len();
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= need);
        if !fits {
            let size = if self.chunks.is_empty() {
                FIRST_PACK_CHUNK
            } else {
                PACK_CHUNK
            };
            self.chunks.push(Vec::with_capacity(size.max(need)));
        }
        let last = self.chunks.len() - 1;
        let chunk = &mut self.chunks[last];
        let mut e = Encoder::from_vec(std::mem::take(chunk));
        let start = e.len();
        e.u64(entry.dev);
        e.u64(entry.ino);
        e.u32(nlink);
        e.u32(0);
        entry.encode_canonical(&mut e);
        let len = (e.len() - start - PACKED_HEADER) as u32;
        e.patch(start + PACKED_HEADER - 4, &len.to_le_bytes());
        *chunk = e.into_inner();
        self.count += 1;
    }
}

/// A record's place: chunk index in the high half, offset in the low half.
fn record_ref(chunk: usize, offset: usize) -> u64 {
    ((chunk as u64) << 32) | offset as u64
}

/// The canonical encoding of the record at `r` (without its link group).
fn record_in(chunks: &[Vec<u8>], r: u64) -> (&[u8], &[u8]) {
    let chunk = &chunks[(r >> 32) as usize];
    let at = (r & 0xffff_ffff) as usize;
    let len = le_u32(&chunk[at + PACKED_HEADER - 4..]) as usize;
    (
        &chunk[at..at + PACKED_HEADER],
        &chunk[at + PACKED_HEADER..at + PACKED_HEADER + len],
    )
}

fn encoded_path(canon: &[u8]) -> &[u8] {
    let n = le_u32(canon) as usize;
    &canon[4..4 + n]
}

/// Offsets in a canonical entry encoding, after the path: type, size, flags.
const KIND_AFTER_PATH: usize = 0;
const SIZE_AFTER_PATH: usize = 1 + 4 * 3;
const FLAGS_AFTER_PATH: usize = SIZE_AFTER_PATH + 8;

/// A walked tree held packed: each entry as its canonical encoding (see [`Packer`]), in
/// canonical order through an index, with its local identity. It encodes to exactly the
/// bytes of the equivalent [`Tree`]; [`PackedTree::into_tree`] makes one.
pub struct PackedTree {
    pub excludes: Vec<String>,
    chunks: Vec<Vec<u8>>,
    /// Records in canonical order.
    order: Vec<u64>,
    /// In-tree hard links: (position, position of the group's leader), by position.
    links: Vec<(u32, u32)>,
    digest: OnceLock<Digest>,
}

impl std::fmt::Debug for PackedTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedTree")
            .field("excludes", &self.excludes)
            .field("entries", &self.order.len())
            .finish_non_exhaustive()
    }
}

impl PackedTree {
    /// Puts the packed entries in canonical order. Paths must be unique.
    pub(crate) fn new(excludes: Vec<String>, packers: Vec<Packer>) -> Self {
        let count = packers.iter().map(|p| p.count).sum();
        let chunks: Vec<Vec<u8>> = packers.into_iter().flat_map(|p| p.chunks).collect();
        let mut order = Vec::with_capacity(count);
        for (ci, chunk) in chunks.iter().enumerate() {
            let mut at = 0;
            while at < chunk.len() {
                order.push(record_ref(ci, at));
                at += PACKED_HEADER + le_u32(&chunk[at + PACKED_HEADER - 4..]) as usize;
            }
        }
        order.par_sort_unstable_by(|&a, &b| {
            encoded_path(record_in(&chunks, a).1).cmp(encoded_path(record_in(&chunks, b).1))
        });
        PackedTree {
            excludes,
            chunks,
            order,
            links: Vec::new(),
            digest: OnceLock::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The packed encoding of entry `i` (canonical order), without its link group.
    fn packed(&self, i: usize) -> &[u8] {
        record_in(&self.chunks, self.order[i]).1
    }

    pub fn path(&self, i: usize) -> &[u8] {
        encoded_path(self.packed(i))
    }

    pub fn kind(&self, i: usize) -> EntryKind {
        let p = self.packed(i);
        let k = p[4 + encoded_path(p).len() + KIND_AFTER_PATH];
        // Written from an `EntryKind`.
        EntryKind::from_u8(k).unwrap_or(EntryKind::File)
    }

    pub fn flags(&self, i: usize) -> u8 {
        let p = self.packed(i);
        p[4 + encoded_path(p).len() + FLAGS_AFTER_PATH]
    }

    pub fn size(&self, i: usize) -> u64 {
        let p = self.packed(i);
        le_u64(&p[4 + encoded_path(p).len() + SIZE_AFTER_PATH..])
    }

    /// (st_dev, st_ino) of entry `i`.
    pub fn identity(&self, i: usize) -> (u64, u64) {
        let h = record_in(&self.chunks, self.order[i]).0;
        (le_u64(&h[..8]), le_u64(&h[8..16]))
    }

    /// The link count entry `i` had when walked.
    pub fn nlink(&self, i: usize) -> u32 {
        le_u32(&record_in(&self.chunks, self.order[i]).0[16..])
    }

    pub(crate) fn add_flags(&mut self, i: usize, flags: u8) {
        let r = self.order[i];
        let at = (r & 0xffff_ffff) as usize + PACKED_HEADER;
        let chunk = &mut self.chunks[(r >> 32) as usize];
        let path_len = le_u32(&chunk[at..]) as usize;
        chunk[at + 4 + path_len + FLAGS_AFTER_PATH] |= flags;
        self.digest = OnceLock::new();
    }

    /// Sets the in-tree hard-link groups: (member, leader) positions.
    pub(crate) fn set_links(&mut self, mut links: Vec<(u32, u32)>) {
        links.sort_unstable();
        self.links = links;
        self.digest = OnceLock::new();
    }

    fn leader(&self, i: usize) -> Option<usize> {
        if self.links.is_empty() {
            return None;
        }
        let i = i as u32;
        self.links
            .binary_search_by_key(&i, |&(m, _)| m)
            .ok()
            .map(|k| self.links[k].1 as usize)
    }

    /// Splits the packed encoding of a linked entry around its (empty) link marker.
    fn split_at_link(packed: &[u8]) -> (&[u8], &[u8]) {
        // Packed from an `Entry`, so it parses.
        let at = EntryRef::parse(packed).map_or(packed.len(), |e| e.link_at);
        (&packed[..at], &packed[(at + 1).min(packed.len())..])
    }

    /// The canonical encoding of entry `i`.
    pub fn encoded(&self, i: usize) -> Cow<'_, [u8]> {
        let packed = self.packed(i);
        match self.leader(i) {
            None => Cow::Borrowed(packed),
            Some(l) => {
                let leader = self.path(l);
                let (head, tail) = Self::split_at_link(packed);
                let mut v = Vec::with_capacity(packed.len() + 4 + leader.len());
                v.extend_from_slice(head);
                v.push(1);
                v.extend_from_slice(&(leader.len() as u32).to_le_bytes());
                v.extend_from_slice(leader);
                v.extend_from_slice(tail);
                Cow::Owned(v)
            }
        }
    }

    /// The canonical encodings of all entries, in canonical order.
    pub fn encoded_entries(&self) -> impl Iterator<Item = Cow<'_, [u8]>> + '_ {
        (0..self.len()).map(|i| self.encoded(i))
    }

    /// Entry `i`, decoded.
    pub fn entry(&self, i: usize) -> Entry {
        let (dev, ino) = self.identity(i);
        let enc = self.encoded(i);
        EntryRef::parse(&enc)
            .expect("a packed entry is well formed")
            .to_entry(dev, ino)
    }

    pub fn total_bytes(&self) -> u64 {
        (0..self.len())
            .filter(|&i| self.kind(i) == EntryKind::File)
            .map(|i| self.size(i))
            .sum()
    }

    /// Length of the canonical encoding of the tree.
    pub fn encoded_len(&self) -> usize {
        let entries: usize =
            self.chunks.iter().map(Vec::len).sum::<usize>() - PACKED_HEADER * self.len();
        let links: usize = self
            .links
            .iter()
            .map(|&(_, l)| 4 + self.path(l as usize).len())
            .sum();
        tree_header_len(&self.excludes) + entries + links
    }

    /// Writes the canonical encoding of the tree; returns its length.
    pub fn write_tree(&self, w: &mut impl Write) -> io::Result<u64> {
        let mut e = Encoder::new();
        encode_tree_header(&mut e, &self.excludes, self.len());
        w.write_all(e.as_slice())?;
        let mut n = e.len() as u64;
        for i in 0..self.len() {
            let packed = self.packed(i);
            match self.leader(i) {
                None => w.write_all(packed)?,
                Some(l) => {
                    let leader = self.path(l);
                    let (head, tail) = Self::split_at_link(packed);
                    w.write_all(head)?;
                    w.write_all(&[1])?;
                    w.write_all(&(leader.len() as u32).to_le_bytes())?;
                    w.write_all(leader)?;
                    w.write_all(tail)?;
                    n += 4 + leader.len() as u64;
                }
            }
            n += packed.len() as u64;
        }
        Ok(n)
    }

    /// The root digest: BLAKE3 of the canonical encoding (computed once).
    pub fn digest(&self) -> Digest {
        *self.digest.get_or_init(|| {
            let mut hasher = blake3::Hasher::new();
            let mut w = io::BufWriter::with_capacity(64 << 10, &mut hasher);
            // Writing to a hasher cannot fail.
            let _ = self.write_tree(&mut w).and_then(|_| w.flush());
            drop(w);
            Digest(*hasher.finalize().as_bytes())
        })
    }

    /// The tree as [`Entry`] values. Chunks are decoded and released one after the other, so
    /// that both forms are never held whole at once.
    pub fn into_tree(self) -> Tree {
        let PackedTree {
            excludes,
            chunks,
            order,
            links,
            ..
        } = self;
        let mut leaders: HashMap<u64, Box<[u8]>> = links
            .iter()
            .map(|&(m, l)| {
                let leader = encoded_path(record_in(&chunks, order[l as usize]).1);
                (order[m as usize], leader.into())
            })
            .collect();
        let n = order.len();
        drop(order);
        let mut entries = Vec::with_capacity(n);
        for (ci, chunk) in chunks.into_iter().enumerate() {
            let mut at = 0;
            while at < chunk.len() {
                let (head, packed) = record_in(std::slice::from_ref(&chunk), at as u64);
                let (dev, ino) = (le_u64(&head[..8]), le_u64(&head[8..16]));
                let mut entry = EntryRef::parse(packed)
                    .expect("a packed entry is well formed")
                    .to_entry(dev, ino);
                entry.link_leader = leaders.remove(&record_ref(ci, at));
                entries.push(entry);
                at += PACKED_HEADER + packed.len();
            }
            // The chunk is released here, before the next one is decoded.
        }
        entries.par_sort_unstable_by(|a, b| a.path.cmp(&b.path));
        Tree { excludes, entries }
    }
}

/// A packed tree bound to this machine: what [`Manifest`] is for a [`Tree`], written to its
/// file without the file being held in memory.
#[derive(Debug)]
pub struct PackedManifest {
    pub name: String,
    pub root: PathBuf,
    /// Seconds since the Unix epoch.
    pub registered_at: u64,
    pub tree: PackedTree,
}

/// Passes writes through and hashes them.
struct Checksummed<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl PackedManifest {
    pub fn digest(&self) -> Digest {
        self.tree.digest()
    }

    /// Length of the manifest file.
    pub fn file_len(&self) -> usize {
        file_header_len(&self.name, &self.root)
            + self.tree.encoded_len()
            + 8
            + 16 * self.tree.len()
            + 32
    }

    /// Writes the manifest file (byte for byte what [`Manifest::encode_file`] gives for the
    /// same tree) through a buffer; returns the root digest.
    pub fn write_file(&self, w: impl Write) -> io::Result<Digest> {
        self.write_file_at(w, self.registered_at)
    }

    /// [`PackedManifest::write_file`] with `registered_at` as the registration time.
    pub fn write_file_at(&self, w: impl Write, registered_at: u64) -> io::Result<Digest> {
        let digest = self.digest();
        let tree_len = self.tree.encoded_len() as u64;
        let mut out = io::BufWriter::with_capacity(
            256 << 10,
            Checksummed {
                inner: w,
                hasher: blake3::Hasher::new(),
            },
        );
        let mut e = Encoder::new();
        encode_file_header(
            &mut e,
            &self.name,
            &self.root,
            registered_at,
            &digest,
            tree_len,
        );
        out.write_all(e.as_slice())?;
        if self.tree.write_tree(&mut out)? != tree_len {
            return Err(io::Error::other("internal error: the tree length changed"));
        }
        out.write_all(&(self.tree.len() as u64).to_le_bytes())?;
        for i in 0..self.tree.len() {
            let (dev, ino) = self.tree.identity(i);
            out.write_all(&dev.to_le_bytes())?;
            out.write_all(&ino.to_le_bytes())?;
        }
        let mut sum = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        let check = sum.hasher.finalize();
        sum.inner.write_all(check.as_bytes())?;
        sum.inner.flush()?;
        Ok(digest)
    }

    /// The manifest file in memory (see [`PackedManifest::write_file`]).
    pub fn encode_file(&self) -> (Vec<u8>, Digest) {
        let mut bytes = Vec::with_capacity(self.file_len());
        // Writing to a vector cannot fail.
        let digest = self
            .write_file(&mut bytes)
            .unwrap_or_else(|_| self.digest());
        (bytes, digest)
    }

    /// The manifest with its tree decoded (see [`PackedTree::into_tree`]).
    pub fn into_manifest(self) -> Manifest {
        Manifest {
            name: self.name,
            root: self.root,
            registered_at: self.registered_at,
            tree: self.tree.into_tree(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            mode: 0o644,
            uid: 1000,
            gid: 100,
            dev: 0x801,
            ino: path.len() as u64 * 1000 + path.bytes().map(u64::from).sum::<u64>(),
            ..Entry::bare(path.as_bytes(), kind)
        }
    }

    /// A tree with every kind of field, canonical, and the same entries in walk order with
    /// their link counts.
    fn sample() -> (Tree, Vec<(Entry, u32)>) {
        let mut entries = vec![entry("", EntryKind::Dir)];
        let mut dir = entry("d", EntryKind::Dir);
        dir.xattrs = vec![
            Xattr {
                name: b"user.a".as_slice().into(),
                value_hash: [1; 32],
            },
            Xattr {
                name: b"user.b\xff".as_slice().into(),
                value_hash: [2; 32],
            },
        ]
        .into();
        entries.push(dir);
        let mut f = entry("d/file", EntryKind::File);
        f.size = 12345;
        f.hash = Some([7; 32]);
        entries.push(f);
        let mut l = entry("d-link", EntryKind::Symlink);
        l.target = Some(b"d/file".as_slice().into());
        l.size = 6;
        entries.push(l);
        let mut c = entry("dev", EntryKind::CharDevice);
        c.rdev = Some((1, 3));
        entries.push(c);
        let mut u = entry("locked", EntryKind::Dir);
        u.flags = FLAG_UNREADABLE;
        entries.push(u);
        entries.push(entry("mnt", EntryKind::MountPoint));
        // A hard-link group of three inside the tree, linked once more from outside.
        for p in ["h1", "d/h2", "z/h3"] {
            let mut h = entry(p, EntryKind::File);
            h.ino = 99;
            h.size = 1;
            h.hash = Some([9; 32]);
            entries.push(h);
        }
        entries.push(entry("z", EntryKind::Dir));
        let nlink = |e: &Entry| if e.ino == 99 { 4 } else { 1 };
        let walked: Vec<(Entry, u32)> = entries.iter().map(|e| (e.clone(), nlink(e))).collect();
        let mut tree = Tree {
            excludes: vec!["*.log".into(), "var/cache/**".into()],
            entries,
        };
        tree.canonicalize();
        for e in tree.entries.iter_mut().filter(|e| e.ino == 99) {
            e.link_leader = Some(b"d/h2".as_slice().into());
            e.flags |= FLAG_LINKS_OUTSIDE;
        }
        (tree, walked)
    }

    /// Packs `walked` over two packers and sets the link groups as the walk does.
    fn packed(excludes: &[String], walked: &[(Entry, u32)]) -> PackedTree {
        let mut packers = vec![Packer::default(), Packer::default()];
        for (i, (e, nlink)) in walked.iter().enumerate() {
            packers[i % 2].push(e, *nlink);
        }
        let mut tree = PackedTree::new(excludes.to_vec(), packers);
        let members: Vec<usize> = (0..tree.len()).filter(|&i| tree.nlink(i) > 1).collect();
        tree.set_links(
            members
                .iter()
                .map(|&i| (i as u32, members[0] as u32))
                .collect(),
        );
        for &i in &members {
            tree.add_flags(i, FLAG_LINKS_OUTSIDE);
        }
        tree
    }

    #[test]
    fn packed_tree_encodes_like_the_tree() {
        let (tree, walked) = sample();
        let p = packed(&tree.excludes, &walked);
        assert_eq!(p.len(), tree.entries.len());
        let mut bytes = Vec::new();
        let n = p.write_tree(&mut bytes).unwrap();
        assert_eq!(bytes, tree.encode());
        assert_eq!(n as usize, bytes.len());
        assert_eq!(p.encoded_len(), bytes.len());
        assert_eq!(tree.encoded_len(), bytes.len());
        assert_eq!(p.digest(), tree.digest());
        assert_eq!(p.total_bytes(), tree.total_bytes());
        for (i, e) in tree.entries.iter().enumerate() {
            assert_eq!(p.path(i), &*e.path);
            assert_eq!(p.kind(i), e.kind);
            assert_eq!(p.flags(i), e.flags);
            assert_eq!(p.identity(i), (e.dev, e.ino));
            assert_eq!(p.entry(i), *e);
            assert_eq!(e.encoded_len(), p.encoded(i).len());
            let enc = p.encoded(i);
            let r = EntryRef::parse(&enc).unwrap();
            assert_eq!(r.to_entry(e.dev, e.ino), *e);
        }
        assert_eq!(p.into_tree(), tree);
    }

    #[test]
    fn packed_manifest_file_is_the_manifest_file() {
        let (tree, walked) = sample();
        let pm = PackedManifest {
            name: "cap".into(),
            root: PathBuf::from("/srv/c\u{e9}"),
            registered_at: 1_700_000_000,
            tree: packed(&tree.excludes, &walked),
        };
        let m = Manifest {
            name: pm.name.clone(),
            root: pm.root.clone(),
            registered_at: pm.registered_at,
            tree,
        };
        let (bytes, digest) = m.encode_file();
        assert_eq!(
            bytes.len(),
            bytes.capacity(),
            "encode_file sizes its buffer exactly"
        );
        assert_eq!(pm.encode_file(), (bytes.clone(), digest));
        assert_eq!(pm.file_len(), bytes.len());
        assert_eq!(pm.digest(), digest);

        let raw = ManifestBytes::parse(bytes.clone()).unwrap();
        assert_eq!(raw.digest, digest);
        assert_eq!(raw.len(), m.tree.entries.len());
        assert_eq!(raw.to_manifest(), m);
        assert_eq!(
            raw.entries().map(|e| e.bytes.to_vec()).collect::<Vec<_>>(),
            (0..pm.tree.len())
                .map(|i| pm.tree.encoded(i).into_owned())
                .collect::<Vec<_>>()
        );
        assert_eq!(Manifest::decode_file(&bytes).unwrap(), (m.clone(), digest));
        assert_eq!(pm.into_manifest(), m);

        // ManifestBytes rejects what decode_file rejects, with the same reason.
        for i in (0..bytes.len()).step_by(7) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            let a = Manifest::decode_file(&bad).map(|_| ());
            let b = ManifestBytes::parse(bad).map(|_| ());
            assert!(a.is_err());
            assert_eq!(a, b, "byte {i}");
        }
    }

    #[test]
    fn checked_but_malformed_trees_are_refused_alike() {
        // Damage inside the tree with the digests and checksum recomputed: only the tree
        // checks can notice.
        let (tree, _) = sample();
        let m = Manifest {
            name: "cap".into(),
            root: "/r".into(),
            registered_at: 5,
            tree,
        };
        let (bytes, _) = m.encode_file();
        let tree_at = file_header_len(&m.name, &m.root);
        let tree_len = m.tree.encoded_len();
        for i in 0..tree_len {
            for flip in [0x01, 0x80] {
                let mut bad = bytes.clone();
                bad[tree_at + i] ^= flip;
                let digest = blake3::hash(&bad[tree_at..tree_at + tree_len]);
                bad[tree_at - 40..tree_at - 8].copy_from_slice(digest.as_bytes());
                let end = bad.len() - 32;
                let check = blake3::hash(&bad[..end]);
                bad[end..].copy_from_slice(check.as_bytes());
                let a = Manifest::decode_file(&bad).map(|(m, d)| (m.tree.encode(), d));
                let b =
                    ManifestBytes::parse(bad).map(|r| (r.to_manifest().tree.encode(), r.digest));
                assert_eq!(a, b, "tree byte {i} ^ {flip:#x}");
            }
        }
    }
}
