//! The library's error type: every variant names the path or capsule concerned and the cause.

use std::path::PathBuf;

use crate::display;

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn shown(p: &std::path::Path) -> String {
    display::path(p)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: cannot {op}: {source}", shown(path))]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: the capsule root does not exist", shown(path))]
    RootMissing { path: PathBuf },
    #[error(
        "{}: the capsule root is a symbolic link; name the real directory",
        shown(path)
    )]
    RootIsSymlink { path: PathBuf },
    #[error("{}: the capsule root is not a directory", shown(path))]
    RootNotDirectory { path: PathBuf },
    #[error("{}: the capsule root must be an absolute path", shown(path))]
    RootNotAbsolute { path: PathBuf },
    #[error(
        "{}: unreadable: {source} (pass --skip-unreadable to record it as unreadable)",
        shown(path)
    )]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: the file changed while it was being hashed ({what}), twice in a row",
        shown(path)
    )]
    ChangedWhileHashing { path: PathBuf, what: String },
    #[error("{}: damaged manifest: {reason}", shown(path))]
    ManifestCorrupt { path: PathBuf, reason: String },
    #[error("{}: damaged registry: {reason} (run `sealtool registry rebuild` to recreate it from the manifest files)", shown(path))]
    RegistryCorrupt { path: PathBuf, reason: String },
    #[error(
        "{}: there is no registry here (the directory does not exist); commands that only \
         read never create one: check --registry or $CAPSULE_REGISTRY",
        shown(path)
    )]
    RegistryMissing { path: PathBuf },
    #[error("capsule {name:?} is damaged: {reason}")]
    Damaged { name: String, reason: String },
    #[error("{}: registry database error: {source}", shown(path))]
    Database {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("{}: the registry is in use by another sealtool process (pid {holder}); try again when it has finished", shown(path))]
    RegistryBusy { path: PathBuf, holder: String },
    #[error("no capsule named {name:?} is registered")]
    UnknownCapsule { name: String },
    #[error("{name:?} is not a valid capsule name: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("capsule {name:?} is sealed: {action} is refused for a sealed capsule, forever")]
    Sealed { name: String, action: &'static str },
    #[error("capsule {name:?} cannot be sealed: {reason}")]
    CannotSeal { name: String, reason: String },
    #[error("{pattern:?} is not a valid glob: {reason}")]
    BadGlob {
        pattern: String,
        reason: &'static str,
    },
    #[error(
        "capsule {capsule:?}: cannot watch {}: the inotify watch limit is reached; raise it \
         (sysctl fs.inotify.max_user_watches, now {limit}) and start again: a tree is never \
         watched in part",
        shown(path)
    )]
    WatchLimit {
        capsule: String,
        path: PathBuf,
        limit: String,
    },
    #[error("capsule {capsule:?}: cannot watch {}: {reason}", shown(path))]
    Watch {
        capsule: String,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot start watching: {reason} (is fs.inotify.max_user_instances reached?)")]
    WatchStart { reason: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }
}
