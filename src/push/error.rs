//! Why a push failed, in words that name what is at fault.

use crate::catalog::CatalogError;
use crate::format::name::NameError;
use crate::store::StoreError;
use std::path::{Path, PathBuf};

/// Why a push failed. Whatever the reason, no version was created.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("source directory {0} does not exist")]
    SourceMissing(PathBuf),
    #[error("source {0} is not a directory; push takes a directory")]
    SourceNotDir(PathBuf),
    /// (`error` is not a `source`: its text is in the message, in words.)
    #[error("cannot read {}: {}; fix its permissions or move it out of the tree", path.display(), crate::io_cause::Cause(error))]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0} changed while it was being pushed; push again once nothing writes to the tree")]
    Changed(PathBuf),
    #[error("{0} vanished while it was being pushed; push again once nothing writes to the tree")]
    Vanished(PathBuf),
    #[error("{0}: {1}")]
    BadName(PathBuf, &'static str),
    #[error("{} holds no files: pushing it would make the latest version of '{dataset}' empty; check the path, or add --allow-empty if an empty version is meant", dir.display())]
    Empty { dir: PathBuf, dataset: String },
    #[error("nothing to import at {0}: no objects under that prefix; check the URL")]
    NothingToImport(String),
    #[error("{0} is inside the store's own objects; import a prefix outside blobs/, packs/, manifests/, refs/ and locks/")]
    SourceInStore(String),
    #[error(
        "{0} changed while it was being imported; import again once nothing writes to the prefix"
    )]
    ObjectChanged(String),
    #[error("{path} is a symlink to '{target}' that leads outside the pushed tree ({why}); a mount would send readers there: replace the link with what it points to, or remove it")]
    LinkOutside {
        path: PathBuf,
        target: String,
        why: &'static str,
    },
    /// (Never shown: the push that stopped its walk fails for another reason.)
    #[error("the walk of {0} was stopped")]
    Stopped(PathBuf),
    #[error("{0} has more than 4 billion entries; push it as several datasets")]
    TooManyEntries(PathBuf),
    /// `path` is the start of the path below the root (the whole may be kilobytes long).
    #[error("{} holds a path deeper than {} levels ({path}…); datastore keeps trees up to that depth (deeper paths pass what Linux takes in one call): push a directory inside it, or flatten the tree", .root.display(), crate::format::manifest::MAX_DEPTH)]
    TooDeep { path: String, root: PathBuf },
    #[error("gc is running on this store ({0}); push again when it has finished")]
    GcRunning(String),
    #[error("another push of {} to '{dataset}' is running on this machine (pid {pid}); wait for it to finish", dir.display())]
    AlreadyPushing {
        dir: PathBuf,
        dataset: String,
        pid: u32,
    },
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PushError {
    pub fn read(path: &Path, error: std::io::Error) -> PushError {
        PushError::Read {
            path: path.to_path_buf(),
            error,
        }
    }
}
