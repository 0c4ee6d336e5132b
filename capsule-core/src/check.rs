//! Re-reading a registered tree the way it was registered (same excludes) and comparing it
//! with its manifest: what `verify`, `seal` and boot enforcement all start from.

use crate::diff::{diff, Drift};
use crate::error::Result;
use crate::glob::GlobSet;
use crate::manifest::Manifest;
use crate::walk::{walk, Progress, WalkOptions, WalkReport};

/// The live tree of `manifest`'s root and every difference from the manifest. Unreadable
/// entries are walked as such, so that they show up as drift instead of aborting.
pub fn against_manifest(
    manifest: &Manifest,
    progress: &Progress,
) -> Result<(WalkReport, Vec<Drift>)> {
    let report = walk_as_registered(manifest, false, progress)?;
    let drift = diff(&manifest.tree, &report.tree);
    Ok((report, drift))
}

/// Walks `manifest`'s root with its recorded excludes, unreadable entries walked as such.
fn walk_as_registered(
    manifest: &Manifest,
    identities_only: bool,
    progress: &Progress,
) -> Result<WalkReport> {
    let opts = WalkOptions {
        excludes: GlobSet::new(&manifest.tree.excludes)?,
        skip_unreadable: true,
        identities_only,
    };
    walk(&manifest.root, &opts, progress)
}

/// The live tree of `manifest`'s root, identities and metadata only (no file is read): what
/// enforcement needs, and quick whatever the files hold.
pub fn identities(manifest: &Manifest) -> Result<WalkReport> {
    walk_as_registered(manifest, true, &Progress::default())
}
