//! Manifest encoding and registry behaviour on temporary trees and temporary registries.

use std::fs;
use std::path::Path;

use capsule_core::manifest::Manifest;
use capsule_core::registry::{Access, CapsuleState, Registry};
use capsule_core::walk::{walk, Progress, WalkOptions};
use capsule_core::Error;

fn sample(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::write(root.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::write(root.join("README"), b"hello").unwrap();
    std::os::unix::fs::symlink("bin/tool", root.join("link")).unwrap();
}

fn manifest(name: &str, root: &Path) -> Manifest {
    let report = walk(root, &WalkOptions::default(), &Progress::default()).unwrap();
    Manifest {
        name: name.into(),
        root: report.root,
        registered_at: 1_700_000_000,
        tree: report.tree,
    }
}

#[test]
fn same_tree_same_digest_anywhere_and_any_change_differs() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    sample(&a.path().join("x"));
    sample(&b.path().join("deeper/y"));
    let ma = manifest("a", &a.path().join("x"));
    let mb = manifest("b", &b.path().join("deeper/y"));
    assert_eq!(
        ma.digest(),
        mb.digest(),
        "location and name are not part of the digest"
    );
    // Metadata only: one permission bit.
    let p = b.path().join("deeper/y/README");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o645)).unwrap();
    assert_ne!(
        ma.digest(),
        manifest("b", &b.path().join("deeper/y")).digest()
    );
}

#[test]
fn every_damaged_byte_of_a_manifest_file_is_detected() {
    let d = tempfile::tempdir().unwrap();
    sample(&d.path().join("t"));
    let m = manifest("t", &d.path().join("t"));
    let (bytes, digest) = m.encode_file();
    let (back, back_digest) = Manifest::decode_file(&bytes).unwrap();
    assert_eq!((back, back_digest), (m, digest));
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x40;
        assert!(
            Manifest::decode_file(&bad).is_err(),
            "flipped byte {i} went unnoticed"
        );
    }
    assert!(Manifest::decode_file(&bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn register_replace_and_rebuild() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("app");
    sample(&root);
    let regdir = d.path().join("registry");
    let first = {
        let reg = Registry::open(&regdir, Access::Write).unwrap();
        let rec = reg.register(&manifest("app", &root)).unwrap();
        assert_eq!(rec.state, CapsuleState::Registered);
        assert_eq!(
            reg.load_manifest(&rec).unwrap().tree.entries.len() as u64,
            rec.entries
        );
        rec
    };
    fs::write(root.join("README"), b"changed").unwrap();
    let second = {
        let reg = Registry::open(&regdir, Access::Write).unwrap();
        reg.register(&manifest("app", &root)).unwrap()
    };
    assert_ne!(first.digest, second.digest);
    let files: Vec<_> = fs::read_dir(regdir.join("manifests/app"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 2, "the replaced manifest file is kept");
    // Registered within the same second (the fixture's fixed time): dated after the first.
    assert_eq!(second.registered_at, first.registered_at + 1);
    {
        let reg = Registry::open(&regdir, Access::Read).unwrap();
        let h = reg.history("app").unwrap();
        let got: Vec<_> = h.iter().map(|e| (e.digest, e.current)).collect();
        assert_eq!(got, [(second.digest, true), (first.digest, false)]);
        assert!(reg.survey().unwrap().iter().all(|l| l.damage.is_none()));
    }

    // Lose the database entirely: the manifest files bring it back.
    fs::remove_dir_all(regdir.join("db")).unwrap();
    let report = Registry::rebuild(&regdir).unwrap();
    assert_eq!(report.recovered.len(), 1);
    let reg = Registry::open(&regdir, Access::Read).unwrap();
    let rec = reg.require("app").unwrap();
    assert_eq!(rec.digest, second.digest);
    assert_eq!(rec.root, second.root);
}

#[test]
fn a_second_writer_gets_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let regdir = d.path().join("registry");
    let _first = Registry::open(&regdir, Access::Write).unwrap();
    match Registry::open(&regdir, Access::Write) {
        Err(Error::RegistryBusy { holder, .. }) => {
            assert_eq!(holder, std::process::id().to_string())
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("two writers at once"),
    }
}

#[test]
fn unknown_capsule_and_bad_names() {
    let d = tempfile::tempdir().unwrap();
    let reg = Registry::open(d.path(), Access::Write).unwrap();
    assert!(matches!(
        reg.require("nope"),
        Err(Error::UnknownCapsule { .. })
    ));
    for bad in ["", "../x", "a/b", ".hidden", "-opt", &"x".repeat(65)] {
        assert!(
            capsule_core::registry::validate_name(bad).is_err(),
            "{bad:?} accepted"
        );
    }
}

/// sled releases its file from background threads after a `Db` is dropped: reopening the
/// registry at once in the same process (as `register` does after its sealed check) works.
#[test]
fn reopening_at_once_in_one_process_works() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("app");
    sample(&root);
    let m = manifest("app", &root);
    for _ in 0..50 {
        let reg = Registry::open(d.path(), Access::Write).unwrap();
        reg.register(&m).unwrap();
        drop(reg);
        Registry::open(d.path(), Access::Read)
            .unwrap()
            .require("app")
            .unwrap();
    }
}

/// Readers never create a registry; a missing one is an error naming the path.
#[test]
fn reading_never_creates_a_registry() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nowhere");
    match Registry::open(&missing, Access::Read) {
        Err(Error::RegistryMissing { path }) => assert_eq!(path, missing),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a registry that does not exist"),
    }
    assert!(!missing.exists(), "a reader created {}", missing.display());
    let e = Registry::open(&missing, Access::Read).err().unwrap();
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );
    // An existing directory without a database reads as an empty index, still creating
    // nothing.
    fs::create_dir(&missing).unwrap();
    let reg = Registry::open(&missing, Access::Read).unwrap();
    assert!(reg.survey().unwrap().is_empty());
    drop(reg);
    assert_eq!(fs::read_dir(&missing).unwrap().count(), 0);
}

/// Index records lost, undecodable or naming another manifest: the capsule is damaged by
/// name, never missing from the listing.
#[test]
fn index_and_files_that_disagree_are_damage() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("app");
    sample(&root);
    let regdir = d.path().join("registry");
    let (a, b) = {
        let reg = Registry::open(&regdir, Access::Write).unwrap();
        let a = reg.register(&manifest("app", &root)).unwrap();
        reg.register(&manifest("other", &root)).unwrap();
        fs::write(root.join("README"), b"changed").unwrap();
        let b = reg.register(&manifest("app", &root)).unwrap();
        (a, b)
    };
    let damage = |name: &str| -> Option<String> {
        let reg = Registry::open(&regdir, Access::Read).unwrap();
        let all = reg.survey().unwrap();
        assert!(all.iter().any(|l| l.name == "other" && l.damage.is_none()));
        all.into_iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("{name} is not listed"))
            .damage
    };
    assert_eq!(damage("app"), None);
    let with_index = |f: &dyn Fn(&sled::Tree)| {
        let db = sled::open(regdir.join("db")).unwrap();
        f(&db.open_tree("capsules").unwrap());
        db.flush().unwrap();
    };
    // The record points back at the older manifest (an interrupted update, or an attack).
    let good = {
        let db = sled::open(regdir.join("db")).unwrap();
        let t = db.open_tree("capsules").unwrap();
        t.get("app").unwrap().unwrap().to_vec()
    };
    let mut older = good.clone();
    let at = older.windows(32).position(|w| w == b.digest.0).unwrap();
    older[at..at + 32].copy_from_slice(&a.digest.0);
    with_index(&|t| {
        t.insert("app", older.clone()).unwrap();
    });
    let why = damage("app").expect("an index naming an older manifest is damage");
    assert!(
        why.contains(&a.digest.to_hex()) && why.contains(&b.digest.to_hex()),
        "{why}"
    );
    // Undecodable.
    with_index(&|t| {
        t.insert("app", &b"garbage"[..]).unwrap();
    });
    assert!(damage("app").unwrap().contains("undecodable"));
    // Lost.
    with_index(&|t| {
        t.remove("app").unwrap();
    });
    assert!(damage("app").unwrap().contains("no record"));
    let reg = Registry::open(&regdir, Access::Read).unwrap();
    assert!(matches!(
        reg.require_sound("app"),
        Err(Error::Damaged { .. })
    ));
    drop(reg);
    // A rebuild brings the newest manifest back.
    Registry::rebuild(&regdir).unwrap();
    assert_eq!(damage("app"), None);
    let reg = Registry::open(&regdir, Access::Read).unwrap();
    assert_eq!(reg.require_sound("app").unwrap().digest, b.digest);
}

/// The same tree registered again after another (A, B, A): A is current again, dated last,
/// and B stays in the history.
#[test]
fn a_tree_registered_again_is_current_and_history_is_kept() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("app");
    sample(&root);
    let reg = Registry::open(&d.path().join("r"), Access::Write).unwrap();
    let a = reg.register(&manifest("app", &root)).unwrap();
    fs::write(root.join("README"), b"B").unwrap();
    let b = reg.register(&manifest("app", &root)).unwrap();
    fs::write(root.join("README"), b"hello").unwrap();
    let a2 = reg.register(&manifest("app", &root)).unwrap();
    assert_eq!(a2.digest, a.digest);
    assert!(a2.registered_at > b.registered_at);
    let h = reg.history("app").unwrap();
    let got: Vec<_> = h.iter().map(|e| (e.digest, e.current)).collect();
    assert_eq!(got, [(a.digest, true), (b.digest, false)]);
    assert!(reg.survey().unwrap()[0].damage.is_none());
    assert_eq!(
        fs::read_dir(d.path().join("r/manifests/app"))
            .unwrap()
            .count(),
        2,
        "no temporary or backup file is left"
    );
}

/// A seal file planted under a name no capsule may have (the registry's and the guard's own
/// slots start with '.') is unusable at boot, whatever it holds: it must not take their
/// slots.
#[test]
fn seals_under_reserved_names_are_unusable() {
    use capsule_core::manifest::Digest;
    use capsule_core::policy::SealRecord;
    let dir = tempfile::tempdir().unwrap();
    for name in [".registry", ".fsguard", "-x", "app"] {
        let seal = SealRecord {
            name: name.into(),
            digest: Digest([7; 32]),
            cgroup: Some("/sys/fs/cgroup/app".into()),
            frozen: Vec::new(),
            sealed_at: 1_795_892_400,
            exec: Default::default(),
            exec_from: Vec::new(),
        };
        let d = dir.path().join("manifests").join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("{}.seal", seal.digest)), seal.encode()).unwrap();
    }
    let found = capsule_core::registry::seals_in(dir.path());
    let names: Vec<_> = found.seals.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["app"], "{:?}", found.bad);
    assert_eq!(found.bad.len(), 3, "{:?}", found.bad);
    assert!(found
        .bad
        .iter()
        .all(|(_, why)| why.contains("is not a capsule name")));
}
