//! Property tests: any random tree walks twice to the same manifest, its encoding round-trips,
//! and any single mutation of it is detected, named by path, and changes the root digest.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use capsule_core::diff::{diff, DriftKind};
use capsule_core::manifest::{Manifest, Tree};
use capsule_core::walk::{walk, Progress, WalkOptions};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Node {
    File {
        content: Vec<u8>,
        mode: u32,
    },
    Dir {
        children: Vec<(String, Node)>,
        mode: u32,
    },
    Symlink(String),
}

fn name() -> impl Strategy<Value = String> {
    "[a-z]{1,6}"
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        4 => (proptest::collection::vec(any::<u8>(), 0..300), prop_oneof![Just(0o644), Just(0o600), Just(0o755), Just(0o4755)])
            .prop_map(|(content, mode)| Node::File { content, mode }),
        1 => name().prop_map(Node::Symlink),
    ];
    leaf.prop_recursive(3, 40, 6, |inner| {
        (
            proptest::collection::vec((name(), inner), 0..6),
            prop_oneof![Just(0o755), Just(0o700), Just(0o1777)],
        )
            .prop_map(|(mut children, mode)| {
                children.sort_by(|a, b| a.0.cmp(&b.0));
                children.dedup_by(|a, b| a.0 == b.0);
                Node::Dir { children, mode }
            })
    })
}

fn build(path: &Path, node: &Node) {
    match node {
        Node::File { content, mode } => {
            fs::write(path, content).unwrap();
            fs::set_permissions(path, fs::Permissions::from_mode(*mode)).unwrap();
        }
        Node::Symlink(target) => symlink(target, path).unwrap(),
        Node::Dir { children, mode } => {
            fs::create_dir(path).unwrap();
            for (n, c) in children {
                build(&path.join(n), c);
            }
            fs::set_permissions(path, fs::Permissions::from_mode(*mode)).unwrap();
        }
    }
}

fn read(root: &Path) -> Tree {
    walk(root, &WalkOptions::default(), &Progress::default())
        .unwrap()
        .tree
}

/// Applies mutation number `pick` to one of the tree's entries; returns the path it names.
fn mutate(root: &Path, tree: &Tree, pick: usize, which: usize) -> (String, DriftKind) {
    use capsule_core::manifest::EntryKind;
    let files: Vec<_> = tree
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .collect();
    let dirs: Vec<_> = tree
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Dir)
        .collect();
    let links: Vec<_> = tree
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Symlink)
        .collect();
    let rel = |p: &[u8]| String::from_utf8(p.to_vec()).unwrap();
    let at = |p: &str| {
        if p.is_empty() {
            root.to_path_buf()
        } else {
            root.join(p)
        }
    };
    match pick % 8 {
        0 if !files.is_empty() => {
            // Flip one bit, keeping the size.
            let f = files[which % files.len()];
            let p = at(&rel(&f.path));
            let mut c = fs::read(&p).unwrap();
            if c.is_empty() {
                c.push(1);
                fs::write(&p, &c).unwrap();
                return (rel(&f.path), DriftKind::Size);
            }
            let i = which % c.len();
            c[i] ^= 1 << (which % 8);
            fs::write(&p, &c).unwrap();
            (rel(&f.path), DriftKind::Content)
        }
        1 if !files.is_empty() => {
            let f = files[which % files.len()];
            let p = at(&rel(&f.path));
            fs::set_permissions(&p, fs::Permissions::from_mode(f.mode ^ 0o2000)).unwrap();
            (rel(&f.path), DriftKind::Mode)
        }
        2 if !files.is_empty() => {
            let f = files[which % files.len()];
            fs::remove_file(at(&rel(&f.path))).unwrap();
            (rel(&f.path), DriftKind::Removed)
        }
        3 if !links.is_empty() => {
            let l = links[which % links.len()];
            let p = at(&rel(&l.path));
            fs::remove_file(&p).unwrap();
            symlink("elsewhere-target", &p).unwrap();
            (rel(&l.path), DriftKind::SymlinkTarget)
        }
        4 if !files.is_empty() => {
            let f = files[which % files.len()];
            let p = at(&rel(&f.path));
            nix_chown(&p, 4242);
            (rel(&f.path), DriftKind::Owner)
        }
        5 if !files.is_empty() => {
            let f = files[which % files.len()];
            let p = at(&rel(&f.path));
            fs::remove_file(&p).unwrap();
            fs::create_dir(&p).unwrap();
            (rel(&f.path), DriftKind::Type)
        }
        6 => {
            let d = dirs[which % dirs.len()];
            let mut p = rel(&d.path);
            if !p.is_empty() {
                p.push('/');
            }
            p.push_str("NEWFILE");
            fs::write(at(&p), b"x").unwrap();
            (p, DriftKind::Added)
        }
        _ => {
            let d = dirs[which % dirs.len()];
            let p = at(&rel(&d.path));
            fs::set_permissions(&p, fs::Permissions::from_mode(d.mode ^ 0o020)).unwrap();
            (rel(&d.path), DriftKind::Mode)
        }
    }
}

fn nix_chown(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), None).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_verify_clean_and_every_mutation_is_detected(
        children in proptest::collection::vec((name(), node()), 0..8),
        pick in 0usize..8,
        which in 0usize..1000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("capsule");
        let mut children = children;
        children.sort_by(|a, b| a.0.cmp(&b.0));
        children.dedup_by(|a, b| a.0 == b.0);
        build(&root, &Node::Dir { children, mode: 0o755 });

        let first = read(&root);
        let second = read(&root);
        prop_assert!(diff(&first, &second).is_empty(), "an untouched tree must verify clean");
        prop_assert_eq!(first.digest(), second.digest());

        let m = Manifest { name: "t".into(), root: root.clone(), registered_at: 1, tree: first.clone() };
        let (bytes, digest) = m.encode_file();
        let (back, back_digest) = Manifest::decode_file(&bytes).unwrap();
        prop_assert_eq!(digest, back_digest);
        prop_assert_eq!(&back, &m);

        let (path, kind) = mutate(&root, &first, pick, which);
        let after = read(&root);
        let drift = diff(&first, &after);
        prop_assert!(
            drift.iter().any(|d| d.path.as_ref() == path.as_bytes() && d.kind == kind),
            "mutation {:?} of {:?} not reported; got {:?}", kind, path, drift
        );
        prop_assert_ne!(first.digest(), after.digest());
    }
}
