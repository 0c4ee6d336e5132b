//! Mutation tests of every decoder that reads what root (or a disk) may have changed: the
//! manifest file (whole, as bytes, and its header), the seal file, the index record and the
//! audit record. Whatever the bytes: no panic; a manifest file altered in any way is refused,
//! and one altered and then given valid checksums again (what an attacker who knows the
//! format writes) is either refused or carries a digest other than the original's whenever
//! its tree differs, so the name and digest checks refuse it (its binding, root, time and
//! local identities, is covered by the checksum alone, which a forger can recompute: the
//! index cross-checks the root); the records without a checksum
//! decode only what their encoder writes (canonical), so two readings never differ.
//!
//! `CAPSULE_FUZZ_CASES` sets the cases per property (default 2,000: a few seconds);
//! `scripts/fuzz-decoders` runs a million.

use std::path::Path;
use std::sync::OnceLock;

use capsule_core::audit::{FindingRecord, LostRecord, Record, RefusalRecord};
use capsule_core::manifest::{Digest, Manifest, ManifestBytes, ManifestHeader, Tree};
use capsule_core::policy::SealRecord;
use capsule_core::registry::{CapsuleRecord, CapsuleState};
use capsule_core::walk::{walk, Progress, WalkOptions};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("CAPSULE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

/// Manifests of small real trees: files, a directory, a symlink, a hard link, an xattr
/// where the filesystem takes one, an exclude.
fn manifests() -> &'static [(Vec<u8>, Manifest, Digest)] {
    static M: OnceLock<Vec<(Vec<u8>, Manifest, Digest)>> = OnceLock::new();
    M.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("t");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
        std::fs::write(root.join("README"), b"hello").unwrap();
        std::fs::write(root.join("x.log"), b"log").unwrap();
        std::fs::hard_link(root.join("README"), root.join("again")).unwrap();
        std::os::unix::fs::symlink("bin/tool", root.join("link")).unwrap();
        let _ = xattr_set(&root.join("README"));
        let mut out = Vec::new();
        for (name, excludes) in [("app", vec![]), ("b", vec!["*.log".to_string()])] {
            let opts = WalkOptions {
                excludes: capsule_core::glob::GlobSet::new(&excludes).unwrap(),
                ..Default::default()
            };
            let tree = walk(&root, &opts, &Progress::default()).unwrap().tree;
            let m = Manifest {
                name: name.into(),
                root: root.clone(),
                registered_at: 1_795_892_400,
                tree,
            };
            let (bytes, digest) = m.encode_file();
            out.push((bytes, m, digest));
        }
        out
    })
}

fn xattr_set(p: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(p.as_os_str().as_bytes())?;
    // SAFETY: NUL-terminated strings and a buffer that outlive the call.
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            c"user.test".as_ptr(),
            b"v".as_ptr().cast(),
            1,
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn seal() -> SealRecord {
    SealRecord {
        name: "app".into(),
        digest: Digest([7; 32]),
        cgroup: Some("/sys/fs/cgroup/app".into()),
        frozen: vec!["bin/**".into(), "etc/passwd".into()],
        sealed_at: 1_795_892_400,
        exec: Default::default(),
        exec_from: Vec::new(),
    }
}

fn index_record() -> CapsuleRecord {
    CapsuleRecord {
        name: "app".into(),
        root: "/jails/app".into(),
        digest: Digest([9; 32]),
        state: CapsuleState::Sealed,
        registered_at: 1_795_892_400,
        entries: 12,
        bytes: 4096,
    }
}

fn audit_records() -> Vec<Record> {
    vec![
        Record::Refusal(RefusalRecord {
            time_ns: 1_795_892_400_000_000_000,
            capsule: "app".into(),
            op: "unlink".into(),
            rule: "outside".into(),
            level: 1,
            path: Some(b"/jails/app/etc/passwd".to_vec()),
            dev: 8 << 20,
            ino: 12,
            pid: 5,
            target_pid: 0,
            uid: 0,
            comm: b"rm".to_vec(),
            cgroup_id: 3,
        }),
        Record::Lost(LostRecord {
            time_ns: 1,
            ratelimited: 10,
            dropped: 2,
            taken: 0,
        }),
        Record::Finding(FindingRecord {
            time_ns: 2,
            what: "the registry index is damaged".into(),
        }),
    ]
}

/// One change to a byte string.
#[derive(Clone, Debug)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        value: u8,
    },
    /// A length or count: a little-endian u32 or u64 written over the bytes at `at`.
    Number {
        at: usize,
        value: u64,
        wide: bool,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    Append {
        bytes: Vec<u8>,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    let number = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u32::MAX as u64),
        Just(u64::MAX),
        Just(1 << 31),
        0u64..300,
        any::<u64>(),
    ];
    prop_oneof![
        (at, 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (at, any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        (at, number, any::<bool>()).prop_map(|(at, value, wide)| Mutation::Number {
            at,
            value,
            wide
        }),
        (at, proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (at, 1usize..64).prop_map(|(at, len)| Mutation::Remove { at, len }),
        at.prop_map(|at| Mutation::Truncate { at }),
        proptest::collection::vec(any::<u8>(), 1..16).prop_map(|bytes| Mutation::Append { bytes }),
    ]
}

/// Applies the mutations; `within` limits where they land (a part of the bytes).
fn apply(bytes: &[u8], muts: &[Mutation], within: std::ops::Range<usize>) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for m in muts {
        let span = within.end.min(b.len()).saturating_sub(within.start).max(1);
        let pos = |at: usize| (within.start + at % span).min(b.len());
        match m {
            Mutation::Flip { at, bit } => {
                let p = pos(*at);
                if p < b.len() {
                    b[p] ^= 1 << bit;
                }
            }
            Mutation::Set { at, value } => {
                let p = pos(*at);
                if p < b.len() {
                    b[p] = *value;
                }
            }
            Mutation::Number { at, value, wide } => {
                let p = pos(*at);
                let v = value.to_le_bytes();
                let n = if *wide { 8 } else { 4 };
                for i in 0..n {
                    if p + i < b.len() {
                        b[p + i] = v[i];
                    }
                }
            }
            Mutation::Insert { at, bytes } => {
                let p = pos(*at);
                b.splice(p..p, bytes.iter().copied());
            }
            Mutation::Remove { at, len } => {
                let p = pos(*at);
                let end = (p + len).min(b.len());
                b.drain(p..end);
            }
            Mutation::Truncate { at } => {
                let p = pos(*at);
                b.truncate(p);
            }
            Mutation::Append { bytes } => b.extend_from_slice(bytes),
        }
    }
    b
}

/// Gives `bytes` a valid trailing checksum again (BLAKE3 of everything before the last 32).
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() < 32 {
        return bytes;
    }
    let n = bytes.len() - 32;
    let sum = *blake3::hash(&bytes[..n]).as_bytes();
    bytes[n..].copy_from_slice(&sum);
    bytes
}

/// Where the tree of a manifest file starts and how long the header is.
fn tree_at(m: &Manifest) -> usize {
    use std::os::unix::ffi::OsStrExt;
    16 + 4 + 4 + m.name.len() + 4 + m.root.as_os_str().as_bytes().len() + 8 + 32 + 8
}

/// Also recomputes the tree digest in the header, as a forger would, when the tree length
/// still reads in bounds.
fn reseal_tree(mut bytes: Vec<u8>, m: &Manifest) -> Vec<u8> {
    let at = tree_at(m);
    if bytes.len() >= at {
        let len = u64::from_le_bytes(bytes[at - 8..at].try_into().unwrap());
        if let Some(end) = usize::try_from(len).ok().and_then(|l| at.checked_add(l)) {
            if end <= bytes.len() {
                let d = *blake3::hash(&bytes[at..end]).as_bytes();
                bytes[at - 40..at - 8].copy_from_slice(&d);
            }
        }
    }
    reseal(bytes)
}

/// What a manifest file decodes to, checked by both readers, which must agree.
fn decode_both(bytes: &[u8]) -> Result<(Manifest, Digest), String> {
    let whole = Manifest::decode_file(bytes);
    let packed = ManifestBytes::parse(bytes.to_vec());
    let _ = ManifestHeader::decode(bytes);
    match (&whole, packed) {
        (Ok((m, d)), Ok(p)) => {
            assert_eq!(p.digest, *d, "the two readers disagree on the digest");
            assert_eq!(&p.to_manifest(), m, "the two readers disagree");
        }
        (Err(_), Err(_)) => {}
        (w, p) => panic!(
            "the two readers disagree: {:?} / {:?}",
            w.as_ref().err(),
            p.err()
        ),
    }
    whole
}

/// The registry's check of a decoded manifest against its file name and capsule.
fn accepted_as(bytes: &[u8], name: &str, digest: &Digest) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{digest}.manifest"));
    std::fs::write(&path, bytes).unwrap();
    ManifestBytes::read(&path, name, digest).is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Some mutations give the bytes back unchanged (about 1 in 800), and are skipped.
        max_global_rejects: cases() / 50 + 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any change to a manifest file's bytes is refused.
    #[test]
    fn manifest_altered_is_refused(
        which in 0usize..2,
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let (bytes, _, _) = &manifests()[which];
        let bad = apply(bytes, &muts, 0..bytes.len());
        prop_assume!(bad != *bytes);
        prop_assert!(decode_both(&bad).is_err());
    }

    /// Changed and given valid checksums and tree digest again: either refused, or its
    /// digest tells a changed tree from the original (so the registry's name and digest
    /// check refuses it); a manifest with the original digest has the original tree.
    #[test]
    fn manifest_forged_cannot_pass_for_the_original(
        which in 0usize..2,
        muts in proptest::collection::vec(mutation(), 1..4),
        in_tree in any::<bool>(),
    ) {
        let (bytes, m, digest) = &manifests()[which];
        let range = if in_tree { tree_at(m)..bytes.len() - 32 } else { 0..bytes.len() };
        let forged = reseal_tree(apply(bytes, &muts, range), m);
        prop_assume!(forged != *bytes);
        if let Ok((back, d)) = decode_both(&forged) {
            // The tree as digested (the local identities are binding, like the root and the
            // time: covered by the checksum only, which a forger recomputes).
            let same_tree = back.tree.encode() == m.tree.encode();
            if d == *digest {
                prop_assert!(same_tree, "a changed tree kept the original digest");
            }
            if !same_tree || back.name != m.name {
                prop_assert!(!accepted_as(&forged, &m.name, digest));
            }
        }
    }

    /// Random bytes, and random bytes behind a valid magic: no panic in any decoder.
    #[test]
    fn any_bytes_never_panic(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..600),
        magic in 0usize..4,
    ) {
        let magics: [&[u8]; 4] = [
            capsule_core::manifest::FILE_MAGIC,
            capsule_core::manifest::TREE_MAGIC,
            b"CAPSULE-SEAL\0\0\0\0",
            b"",
        ];
        let mut b = magics[magic].to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.append(&mut bytes);
        for input in [&b, &reseal(b.clone())] {
            let _ = decode_both(input);
            let _ = Tree::decode(input);
            let _ = SealRecord::decode(input);
            let _ = CapsuleRecord::decode(input);
            let _ = Record::decode(input);
            let _ = ManifestHeader::decode(input);
        }
    }

    /// A seal file altered is refused; altered and resealed, it decodes only to what encodes
    /// back to the same bytes.
    #[test]
    fn seal_altered_is_refused(muts in proptest::collection::vec(mutation(), 1..4)) {
        let bytes = seal().encode();
        let bad = apply(&bytes, &muts, 0..bytes.len());
        prop_assume!(bad != bytes);
        prop_assert!(SealRecord::decode(&bad).is_err());
        let forged = reseal(bad);
        if let Ok(s) = SealRecord::decode(&forged) {
            prop_assert_eq!(s.encode(), forged);
        }
    }

    /// Index and audit records (no checksum of their own: the audit chain covers the
    /// latter) decode only what their encoders write.
    #[test]
    fn records_decode_canonically(
        which in 0usize..4,
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let bytes = match which {
            0 => index_record().encode(),
            n => audit_records()[n - 1].encode(),
        };
        let bad = apply(&bytes, &muts, 0..bytes.len());
        match which {
            0 => {
                if let Ok(r) = CapsuleRecord::decode(&bad) {
                    prop_assert_eq!(r.encode(), bad);
                }
            }
            _ => {
                if let Ok(r) = Record::decode(&bad) {
                    prop_assert_eq!(r.encode(), bad);
                }
            }
        }
    }
}

/// The fixtures themselves decode (a control: the properties above would pass vacuously
/// on fixtures that never decode).
#[test]
fn fixtures_decode() {
    for (bytes, m, d) in manifests() {
        let (back, digest) = decode_both(bytes).unwrap();
        assert_eq!((&back, &digest), (m, d));
        assert!(accepted_as(bytes, &m.name, d));
        assert!(m.tree.entries.len() >= 5);
    }
    assert_ne!(
        manifests()[0].2,
        manifests()[1].2,
        "the excludes are in the digest"
    );
    assert_eq!(SealRecord::decode(&seal().encode()).unwrap(), seal());
    assert_eq!(
        CapsuleRecord::decode(&index_record().encode()).unwrap(),
        index_record()
    );
    for r in audit_records() {
        assert_eq!(Record::decode(&r.encode()).unwrap(), r);
    }
}
