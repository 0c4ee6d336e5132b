//! Compares a recorded tree with a fresh walk and names every difference by path.

use crate::display;
use crate::manifest::{Entry, Tree};

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

/// Every difference between `old` (recorded) and `new` (walked), in path order.
pub fn diff(old: &Tree, new: &Tree) -> Vec<Drift> {
    let mut out = Vec::new();
    if old.excludes != new.excludes {
        out.push(Drift {
            path: Box::new([]),
            kind: DriftKind::Excludes,
            detail: format!(
                "exclude patterns were {:?}, now {:?}",
                old.excludes, new.excludes
            ),
        });
    }
    let (a, b) = (&old.entries, &new.entries);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let ord = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.path.cmp(&y.path),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                out.push(Drift {
                    path: a[i].path.clone(),
                    kind: DriftKind::Removed,
                    detail: format!("{} removed", a[i].kind.name()),
                });
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(Drift {
                    path: b[j].path.clone(),
                    kind: DriftKind::Added,
                    detail: format!("{} added", b[j].kind.name()),
                });
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                compare_entry(&a[i], &b[j], &mut out);
                i += 1;
                j += 1;
            }
        }
    }
    out
}
