//! The manifest: what a capsule tree is, entry by entry, and its canonical encoding.
//!
//! A manifest has two parts. The *tree* is canonical: entries sorted by path bytes,
//! encoded deterministically (see manifests/FORMAT.md); its BLAKE3 hash is the capsule's
//! root digest, the same for the same tree on any machine. The *binding* ties a tree to one
//! machine: capsule name, root path, registration time and each entry's (device, inode)
//! identity, which the kernel side keys its policy on. Only the tree is digested.

use std::path::PathBuf;

use crate::codec::{Decoder, Encoder};

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

    fn decode_canonical(d: &mut Decoder<'_>) -> Result<Self, String> {
        let path: Box<[u8]> = d.bytes("entry path")?.into();
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
            1 => Some(d.array32("content hash")?),
            v => return Err(format!("bad hash marker {v}")),
        };
        let target = match d.u8("target marker")? {
            0 => None,
            1 => Some(d.bytes("symlink target")?.into()),
            v => return Err(format!("bad target marker {v}")),
        };
        let rdev = match d.u8("device marker")? {
            0 => None,
            1 => Some((d.u32("major")?, d.u32("minor")?)),
            v => return Err(format!("bad device marker {v}")),
        };
        let link_leader = match d.u8("link marker")? {
            0 => None,
            1 => Some(d.bytes("link leader")?.into()),
            v => return Err(format!("bad link marker {v}")),
        };
        let n = d.u32("xattr count")? as usize;
        let mut xattrs = Vec::with_capacity(n.min(d.remaining() / 36));
        for _ in 0..n {
            let name = d.bytes("xattr name")?.into();
            let value_hash = d.array32("xattr value hash")?;
            xattrs.push(Xattr { name, value_hash });
        }
        Ok(Entry {
            path,
            kind,
            mode,
            uid,
            gid,
            size,
            flags,
            hash,
            target,
            rdev,
            link_leader,
            xattrs: xattrs.into(),
            dev: 0,
            ino: 0,
        })
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
        e.raw(TREE_MAGIC);
        e.u32(FORMAT_VERSION);
        e.u32(self.excludes.len() as u32);
        for x in &self.excludes {
            e.bytes(x.as_bytes());
        }
        e.u64(self.entries.len() as u64);
        for entry in &self.entries {
            entry.encode_canonical(e);
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
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
            excludes
                .push(String::from_utf8(x.to_vec()).map_err(|_| "exclude pattern is not UTF-8")?);
        }
        let n = d.u64("entry count")?;
        let mut entries = Vec::with_capacity((n as usize).min(d.remaining() / 40));
        let mut prev: Option<Box<[u8]>> = None;
        for i in 0..n {
            let entry = Entry::decode_canonical(&mut d).map_err(|e| format!("entry {i}: {e}"))?;
            if let Some(p) = &prev {
                if *p >= entry.path {
                    return Err(format!("entry {i}: entries are not in canonical order"));
                }
            }
            prev = Some(entry.path.clone());
            entries.push(entry);
        }
        d.finish("the tree")?;
        Ok(Tree { excludes, entries })
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
        use std::os::unix::ffi::OsStrExt;
        // The tree is encoded in place (not copied) so that a million-entry manifest is held
        // in memory once; the digest and the tree length are patched in afterwards.
        let mut e = Encoder::new();
        e.raw(FILE_MAGIC);
        e.u32(FORMAT_VERSION);
        e.bytes(self.name.as_bytes());
        e.bytes(self.root.as_os_str().as_bytes());
        e.u64(self.registered_at);
        let digest_at = e.len();
        e.raw(&[0u8; 32]);
        let len_at = e.len();
        e.u64(0);
        let tree_start = e.len();
        self.tree.encode_into(&mut e);
        let tree_len = (e.len() - tree_start) as u64;
        let digest = Digest(*blake3::hash(&e.as_slice()[tree_start..]).as_bytes());
        e.patch(digest_at, &digest.0);
        e.patch(len_at, &tree_len.to_le_bytes());
        e.u64(self.tree.entries.len() as u64);
        for entry in &self.tree.entries {
            e.u64(entry.dev);
            e.u64(entry.ino);
        }
        let check = blake3::hash(e.as_slice());
        e.raw(check.as_bytes());
        (e.into_inner(), digest)
    }

    /// Parses and checks a manifest file: trailer checksum, tree digest, ordering.
    pub fn decode_file(bytes: &[u8]) -> Result<(Self, Digest), String> {
        use std::os::unix::ffi::OsStrExt;
        if bytes.len() < 32 {
            return Err("file too short".into());
        }
        let (body, trailer) = bytes.split_at(bytes.len() - 32);
        if blake3::hash(body).as_bytes() != trailer {
            return Err("checksum mismatch: the file was altered or damaged".into());
        }
        let mut d = Decoder::new(body);
        if d.take(16, "file magic")? != FILE_MAGIC {
            return Err("not a capsule manifest (bad magic)".into());
        }
        let version = d.u32("file version")?;
        if version != FORMAT_VERSION {
            return Err(format!(
                "manifest format version {version} is not supported"
            ));
        }
        let name = String::from_utf8(d.bytes("capsule name")?.to_vec())
            .map_err(|_| "capsule name is not UTF-8")?;
        let root = PathBuf::from(std::ffi::OsStr::from_bytes(d.bytes("root path")?));
        let registered_at = d.u64("registration time")?;
        let digest = Digest(d.array32("root digest")?);
        let tree_len = d.u64("tree length")?;
        let tree_bytes = d.take(
            usize::try_from(tree_len).map_err(|_| "tree length overflows")?,
            "tree",
        )?;
        if blake3::hash(tree_bytes).as_bytes() != &digest.0 {
            return Err("the tree does not match its recorded root digest".into());
        }
        let mut tree = Tree::decode(tree_bytes)?;
        let n = d.u64("identity count")?;
        if n != tree.entries.len() as u64 {
            return Err(format!("{n} identities for {} entries", tree.entries.len()));
        }
        for entry in tree.entries.iter_mut() {
            entry.dev = d.u64("device")?;
            entry.ino = d.u64("inode")?;
        }
        d.finish("the manifest")?;
        Ok((
            Manifest {
                name,
                root,
                registered_at,
                tree,
            },
            digest,
        ))
    }
}
