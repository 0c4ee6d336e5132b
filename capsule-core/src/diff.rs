//! Compares a recorded tree with a fresh walk and names every difference by path.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::display;
use crate::manifest::{Entry, EntryRef, ManifestBytes, PackedTree, Tree};

/// The class of a difference. The names are stable: scripts read them from `--json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DriftKind {
    Added,
    Removed,
    Type,
    Content,
    Size,
    Mode,
    Owner,
    SymlinkTarget,
    Device,
    Xattrs,
    HardLinks,
    Readability,
    Excludes,
}

impl DriftKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Type => "type",
            Self::Content => "content",
            Self::Size => "size",
            Self::Mode => "mode",
            Self::Owner => "owner",
            Self::SymlinkTarget => "symlink-target",
            Self::Device => "device",
            Self::Xattrs => "xattrs",
            Self::HardLinks => "hard-links",
            Self::Readability => "readability",
            Self::Excludes => "excludes",
        }
    }
}

/// One difference: where, what class, and a human sentence with the old and new values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub path: Box<[u8]>,
    pub kind: DriftKind,
    pub detail: String,
}

fn hex8(h: &[u8; 32]) -> String {
    h[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn xattr_names(e: &Entry) -> Vec<String> {
    e.xattrs
        .iter()
        .map(|x| display::escape_bytes(&x.name))
        .collect()
}

fn compare_entry(old: &Entry, new: &Entry, out: &mut Vec<Drift>) {
    let mut push = |kind, detail: String| {
        out.push(Drift {
            path: old.path.clone(),
            kind,
            detail,
        })
    };
    if old.kind != new.kind {
        push(
            DriftKind::Type,
            format!("was a {}, now a {}", old.kind.name(), new.kind.name()),
        );
        // Nothing else is comparable across types.
        return;
    }
    if old.is_unreadable() != new.is_unreadable() {
        let (a, b) = if old.is_unreadable() {
            ("unreadable", "readable")
        } else {
            ("readable", "unreadable")
        };
        push(DriftKind::Readability, format!("was {a}, now {b}"));
    }
    if old.hash != new.hash && !old.is_unreadable() && !new.is_unreadable() {
        let show = |h: &Option<[u8; 32]>| h.as_ref().map(hex8).unwrap_or_else(|| "-".into());
        push(
            DriftKind::Content,
            format!(
                "content hash was {}…, now {}…",
                show(&old.hash),
                show(&new.hash)
            ),
        );
    }
    if old.size != new.size && old.target.is_none() {
        push(
            DriftKind::Size,
            format!("size was {}, now {}", old.size, new.size),
        );
    }
    if old.mode != new.mode {
        push(
            DriftKind::Mode,
            format!("mode was {:04o}, now {:04o}", old.mode, new.mode),
        );
    }
    if (old.uid, old.gid) != (new.uid, new.gid) {
        push(
            DriftKind::Owner,
            format!(
                "owner was {}:{}, now {}:{}",
                old.uid, old.gid, new.uid, new.gid
            ),
        );
    }
    if old.target != new.target {
        let show =
            |t: &Option<Box<[u8]>>| t.as_deref().map(display::escape_bytes).unwrap_or_default();
        push(
            DriftKind::SymlinkTarget,
            format!(
                "target was {:?}, now {:?}",
                show(&old.target),
                show(&new.target)
            ),
        );
    }
    if old.rdev != new.rdev {
        let show = |d: Option<(u32, u32)>| d.map(|(a, b)| format!("{a}:{b}")).unwrap_or_default();
        push(
            DriftKind::Device,
            format!("device was {}, now {}", show(old.rdev), show(new.rdev)),
        );
    }
    if old.xattrs != new.xattrs {
        let (o, n) = (xattr_names(old), xattr_names(new));
        let added: Vec<_> = n.iter().filter(|x| !o.contains(x)).cloned().collect();
        let removed: Vec<_> = o.iter().filter(|x| !n.contains(x)).cloned().collect();
        let changed: Vec<_> = old
            .xattrs
            .iter()
            .filter(|x| {
                new.xattrs
                    .iter()
                    .any(|y| y.name == x.name && y.value_hash != x.value_hash)
            })
            .map(|x| display::escape_bytes(&x.name))
            .collect();
        let mut parts = Vec::new();
        for (label, list) in [("added", added), ("removed", removed), ("changed", changed)] {
            if !list.is_empty() {
                parts.push(format!("{label} {}", list.join(", ")));
            }
        }
        push(
            DriftKind::Xattrs,
            format!("extended attributes: {}", parts.join("; ")),
        );
    }
    if old.link_leader != new.link_leader || old.links_outside() != new.links_outside() {
        let show = |e: &Entry| {
            let mut s = match &e.link_leader {
                Some(l) if **l == *e.path => "leads an in-tree hard-link group".to_string(),
                Some(l) => format!("hard link of {}", display::rel_path(l)),
                None => "no in-tree hard links".to_string(),
            };
            if e.links_outside() {
                s.push_str(", linked from outside the tree");
            }
            s
        };
        push(
            DriftKind::HardLinks,
            format!("was: {}; now: {}", show(old), show(new)),
        );
    }
}

fn compare_excludes(old: &[String], new: &[String], out: &mut Vec<Drift>) {
    if old != new {
        out.push(Drift {
            path: Box::new([]),
            kind: DriftKind::Excludes,
            detail: format!("exclude patterns were {old:?}, now {new:?}"),
        });
    }
}

/// Every difference between `old` (recorded) and `new` (walked), in path order.
pub fn diff(old: &Tree, new: &Tree) -> Vec<Drift> {
    let mut out = Vec::new();
    compare_excludes(&old.excludes, &new.excludes, &mut out);
    let (a, b) = (&old.entries, &new.entries);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let ord = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.path.cmp(&y.path),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match ord {
            Ordering::Less => {
                out.push(Drift {
                    path: a[i].path.clone(),
                    kind: DriftKind::Removed,
                    detail: format!("{} removed", a[i].kind.name()),
                });
                i += 1;
            }
            Ordering::Greater => {
                out.push(Drift {
                    path: b[j].path.clone(),
                    kind: DriftKind::Added,
                    detail: format!("{} added", b[j].kind.name()),
                });
                j += 1;
            }
            Ordering::Equal => {
                compare_entry(&a[i], &b[j], &mut out);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// [`diff`] of two trees given as their exclude patterns and their entries' canonical
/// encodings in canonical order (`ManifestBytes::entries`, `PackedTree::encoded_entries`),
/// read one at a time: entries encoded alike are equal and are not decoded, so neither tree
/// is ever held as [`Entry`] values. Fails only on an encoding that does not parse.
pub fn diff_encoded<'a, 'b>(
    old_excludes: &[String],
    new_excludes: &[String],
    old: impl IntoIterator<Item = Cow<'a, [u8]>>,
    new: impl IntoIterator<Item = Cow<'b, [u8]>>,
) -> Result<Vec<Drift>, String> {
    let mut out = Vec::new();
    compare_excludes(old_excludes, new_excludes, &mut out);
    let (mut a, mut b) = (old.into_iter(), new.into_iter());
    let (mut x, mut y) = (a.next(), b.next());
    loop {
        let ord = match (&x, &y) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(p), Some(q)) if p == q => Ordering::Equal,
            (Some(p), Some(q)) => EntryRef::parse(p)?.path.cmp(EntryRef::parse(q)?.path),
        };
        match ord {
            Ordering::Less => {
                if let Some(p) = &x {
                    let e = EntryRef::parse(p)?;
                    out.push(Drift {
                        path: e.path.into(),
                        kind: DriftKind::Removed,
                        detail: format!("{} removed", e.kind.name()),
                    });
                }
                x = a.next();
            }
            Ordering::Greater => {
                if let Some(q) = &y {
                    let e = EntryRef::parse(q)?;
                    out.push(Drift {
                        path: e.path.into(),
                        kind: DriftKind::Added,
                        detail: format!("{} added", e.kind.name()),
                    });
                }
                y = b.next();
            }
            Ordering::Equal => {
                if let (Some(p), Some(q)) = (&x, &y) {
                    if p != q {
                        let (old, new) = (EntryRef::parse(p)?, EntryRef::parse(q)?);
                        compare_entry(&old.to_entry(0, 0), &new.to_entry(0, 0), &mut out);
                    }
                }
                x = a.next();
                y = b.next();
            }
        }
    }
    Ok(out)
}

/// [`diff`] of a recorded manifest, kept encoded, and a walk, kept packed (see
/// [`diff_encoded`]).
pub fn diff_packed(old: &ManifestBytes, new: &PackedTree) -> Result<Vec<Drift>, String> {
    diff_encoded(
        &old.excludes,
        &new.excludes,
        old.entries().map(|e| Cow::Borrowed(e.bytes)),
        new.encoded_entries(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{EntryKind, Manifest, ManifestBytes, Xattr};

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            mode: 0o755,
            dev: 1,
            ino: 2,
            ..Entry::bare(path.as_bytes(), kind)
        }
    }

    fn tree(entries: Vec<Entry>) -> Tree {
        let mut t = Tree {
            excludes: vec![],
            entries,
        };
        t.canonicalize();
        t
    }

    fn encoded(t: &Tree) -> ManifestBytes {
        let m = Manifest {
            name: "t".into(),
            root: "/t".into(),
            registered_at: 0,
            tree: t.clone(),
        };
        ManifestBytes::parse(m.encode_file().0).unwrap()
    }

    fn both(old: &Tree, new: &Tree) -> Vec<Drift> {
        let (a, b) = (encoded(old), encoded(new));
        let streamed = diff_encoded(
            &a.excludes,
            &b.excludes,
            a.entries().map(|e| Cow::Borrowed(e.bytes)),
            b.entries().map(|e| Cow::Borrowed(e.bytes)),
        )
        .unwrap();
        let whole = diff(old, new);
        assert_eq!(streamed, whole);
        whole
    }

    #[test]
    fn encoded_diff_is_the_diff() {
        let mut file = entry("a/f", EntryKind::File);
        file.hash = Some([1; 32]);
        file.size = 3;
        let mut link = entry("a-l", EntryKind::Symlink);
        link.target = Some(b"a/f".as_slice().into());
        let base = tree(vec![
            entry("", EntryKind::Dir),
            entry("a", EntryKind::Dir),
            file.clone(),
            link.clone(),
            entry("b", EntryKind::Fifo),
            entry("c", EntryKind::Dir),
        ]);
        assert!(both(&base, &base).is_empty());
        assert!(both(&tree(vec![]), &tree(vec![])).is_empty());
        assert_eq!(both(&tree(vec![]), &base).len(), base.entries.len());
        assert_eq!(both(&base, &tree(vec![])).len(), base.entries.len());

        let mut changed = base.clone();
        changed.excludes = vec!["*.o".into()];
        changed.entries.retain(|e| &*e.path != b"b");
        changed.entries.push(entry("a/g", EntryKind::File));
        changed.entries.push(entry("0", EntryKind::File));
        changed.entries.push(entry("zz", EntryKind::Socket));
        for e in changed.entries.iter_mut() {
            match &*e.path {
                b"a/f" => {
                    e.hash = Some([2; 32]);
                    e.size = 4;
                    e.mode = 0o4755;
                    e.uid = 7;
                    e.xattrs = vec![Xattr {
                        name: b"user.x".as_slice().into(),
                        value_hash: [3; 32],
                    }]
                    .into();
                    e.link_leader = Some(b"a/f".as_slice().into());
                }
                b"a-l" => e.target = Some(b"elsewhere".as_slice().into()),
                b"c" => e.kind = EntryKind::File,
                _ => {}
            }
        }
        changed.canonicalize();
        let d = both(&base, &changed);
        let kinds: Vec<_> = d.iter().map(|d| d.kind).collect();
        for k in [
            DriftKind::Excludes,
            DriftKind::Added,
            DriftKind::Removed,
            DriftKind::Content,
            DriftKind::Size,
            DriftKind::Mode,
            DriftKind::Owner,
            DriftKind::Xattrs,
            DriftKind::HardLinks,
            DriftKind::SymlinkTarget,
            DriftKind::Type,
        ] {
            assert!(kinds.contains(&k), "{k:?} missing from {d:?}");
        }
        both(&changed, &base);
    }

    #[test]
    fn encoded_diff_refuses_what_does_not_parse() {
        let bad = [Cow::Borrowed(&[1u8, 2, 3][..])];
        let good = encoded(&tree(vec![entry("", EntryKind::Dir)]));
        let good = || good.entries().map(|e| Cow::Owned(e.bytes.to_vec()));
        assert!(diff_encoded(&[], &[], bad.clone(), good()).is_err());
        assert!(diff_encoded(&[], &[], good(), bad).is_err());
    }
}
