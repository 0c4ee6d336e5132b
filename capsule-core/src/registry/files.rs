//! What a capsule's manifest directory says, read from the files alone: every manifest
//! (kept for good, one per registered tree), its seal, and from them which manifest is the
//! capsule's current one. The index must say the same; where it does not, the capsule is
//! damaged ([`judge`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::manifest::{Digest, ManifestHeader};
use crate::policy::SealRecord;

/// The files of one capsule: headers of its manifests, its seals, and what could not be used.
#[derive(Debug, Default)]
pub struct CapsuleFiles {
    pub manifests: Vec<(PathBuf, ManifestHeader)>,
    pub seals: Vec<(PathBuf, SealRecord)>,
    /// Files that could not be used, with the reason.
    pub bad: Vec<(PathBuf, String)>,
}

/// What the files make the capsule's record: the sealed manifest if there is a seal, else the
/// newest manifest (registration times only grow, see `Registry::register`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub path: PathBuf,
    pub header: ManifestHeader,
    pub sealed: bool,
}

/// Reads the directory `dir` of capsule `name`. `Ok(None)` when it does not exist. Names that
/// start with '.' (temporary files of a write in progress or interrupted) are not looked at.
pub fn read(dir: &Path, name: &str) -> io::Result<Option<CapsuleFiles>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = CapsuleFiles::default();
    for e in entries {
        let path = e?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            out.bad.push((path, "its name is not UTF-8".into()));
            continue;
        };
        if file.starts_with('.') {
            continue;
        }
        let (stem, ext) = file.rsplit_once('.').unwrap_or((file, ""));
        let named = Digest::from_hex(stem);
        match ext {
            "manifest" => match ManifestHeader::read(&path) {
                Ok(h) if h.name != name => {
                    let why = format!("it names capsule {:?}", h.name);
                    out.bad.push((path, why));
                }
                Ok(h) if named != Some(h.digest) => {
                    let why = format!("it holds digest {}, its name says {stem}", h.digest);
                    out.bad.push((path, why));
                }
                Ok(h) => out.manifests.push((path, h)),
                Err(e) => out.bad.push((path, e.to_string())),
            },
            "seal" => match crate::sys::read_regular(&path, crate::sys::MAX_SMALL_FILE)
                .map_err(|e| e.to_string())
                .and_then(|b| SealRecord::decode(&b))
            {
                Ok(s) if s.name != name || named != Some(s.digest) => out.bad.push((
                    path,
                    "its file name does not match the capsule and digest it seals".into(),
                )),
                Ok(s) => out.seals.push((path, s)),
                Err(reason) => out.bad.push((path, reason)),
            },
            _ => {}
        }
    }
    Ok(Some(out))
}

impl CapsuleFiles {
    /// The capsule's current manifest as the files tell it, or why they can't tell. Any file
    /// that can't be used makes the answer unknowable (it might be the newest).
    pub fn expected(&self) -> Result<Option<Expected>, String> {
        if let Some((path, reason)) = self.bad.first() {
            return Err(format!(
                "{}: {reason}",
                crate::display::path(path.as_path())
            ));
        }
        let mut sealed: Vec<Digest> = self.seals.iter().map(|(_, s)| s.digest).collect();
        sealed.sort();
        sealed.dedup();
        let pick = match sealed.as_slice() {
            [] => self
                .manifests
                .iter()
                .max_by_key(|(_, h)| (h.registered_at, h.digest)),
            [d] => Some(
                self.manifests
                    .iter()
                    .find(|(_, h)| h.digest == *d)
                    .ok_or_else(|| format!("it is sealed to manifest {d}, which is missing"))?,
            ),
            _ => return Err("it has seals of several manifests".into()),
        };
        Ok(pick.map(|(path, header)| Expected {
            path: path.clone(),
            header: header.clone(),
            sealed: !sealed.is_empty(),
        }))
    }

    /// The newest registration time among the manifests.
    pub fn newest_time(&self) -> Option<u64> {
        self.manifests.iter().map(|(_, h)| h.registered_at).max()
    }
}

/// The index record as far as it is checked against the files.
pub struct Indexed<'a> {
    pub digest: &'a Digest,
    pub root: &'a Path,
    pub registered_at: u64,
    pub sealed: bool,
}

/// Why the index entry of a capsule (`None`: it has none) and its files (`None`: it has no
/// directory) disagree, if they do.
pub fn judge(index: Option<Indexed<'_>>, files: Option<&CapsuleFiles>) -> Option<String> {
    let expected = match files.map(CapsuleFiles::expected) {
        None | Some(Ok(None)) => None,
        Some(Ok(Some(e))) => Some(e),
        Some(Err(why)) => return Some(why),
    };
    const CAUSE: &str = "an interrupted registration or a damaged index";
    match (index, expected) {
        (None, None) => None,
        (None, Some(e)) => Some(format!(
            "its manifest files exist ({}) but the index has no record of it",
            crate::display::path(&e.path)
        )),
        (Some(i), None) => Some(format!(
            "the index names manifest {} but the capsule has no manifest files",
            i.digest
        )),
        (Some(i), Some(e)) => {
            if *i.digest != e.header.digest {
                Some(format!(
                    "the index names manifest {}, the files say {} ({CAUSE})",
                    i.digest, e.header.digest
                ))
            } else if i.sealed != e.sealed {
                Some(if e.sealed {
                    format!("it is sealed but the index says it is not ({CAUSE})")
                } else {
                    "the index says it is sealed but it has no seal file".into()
                })
            } else if i.root != e.header.root {
                Some(format!(
                    "the registry index is damaged: it puts the tree at {} but its manifest at {}",
                    crate::display::path(i.root),
                    crate::display::path(&e.header.root)
                ))
            } else if i.registered_at != e.header.registered_at {
                Some(format!(
                    "the index says it was registered at {}, its manifest at {} ({CAUSE})",
                    i.registered_at, e.header.registered_at
                ))
            } else {
                None
            }
        }
    }
}
