//! What a push is doing and what it did: its progress, readable while it runs, and its report.

use super::upload::UploadStats;
use super::walk::{Scanned, Skipped};
use crate::format::VersionRef;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Progress, readable while a push runs (for progress bars).
#[derive(Default, Debug)]
pub struct PushProgress {
    pub total_bytes: AtomicU64,
    pub read_bytes: AtomicU64,
    pub total_files: AtomicU64,
    pub done_files: AtomicU64,
    pub upload: Arc<UploadStats>,
}

/// What a push did.
#[derive(Debug)]
pub struct PushReport {
    /// The new version, or the latest one if the tree was unchanged.
    pub version: VersionRef,
    /// True if the tree matched the latest version and no version was created.
    pub unchanged: bool,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub uploaded_bytes: u64,
    pub uploaded_objects: u64,
    /// Bytes of files read and hashed; the others were known by the stat cache.
    pub hashed_bytes: u64,
    /// Files whose content the stat cache knew, not read.
    pub reused_files: u64,
    pub skipped: Vec<Skipped>,
}

impl PushReport {
    /// Bytes of the tree that did not need uploading because the store already had them.
    pub fn dedup_bytes(&self) -> u64 {
        self.bytes.saturating_sub(self.uploaded_bytes)
    }
}

/// What a push or an import read, for its report.
pub(super) struct Tally {
    pub files: u64,
    /// Bytes read and hashed.
    pub hashed_bytes: u64,
    /// Files whose content was known from the parent, not read.
    pub reused_files: u64,
}

/// The report of a push that found the tree sealed as `version` (see `stat_cache`): every
/// file known, nothing read or uploaded.
pub(super) fn unchanged(
    version: VersionRef,
    scanned: Scanned,
    progress: &PushProgress,
) -> PushReport {
    let files = scanned.files.len() as u64;
    for (total, done, n) in [
        (
            &progress.total_bytes,
            &progress.read_bytes,
            scanned.total_bytes,
        ),
        (&progress.total_files, &progress.done_files, files),
    ] {
        total.store(n, Ordering::Relaxed);
        done.store(n, Ordering::Relaxed);
    }
    PushReport {
        version,
        unchanged: true,
        files,
        dirs: scanned.dirs,
        symlinks: scanned.symlinks,
        bytes: scanned.total_bytes,
        uploaded_bytes: 0,
        uploaded_objects: 0,
        hashed_bytes: 0,
        reused_files: files,
        skipped: scanned.skipped,
    }
}
