//! `du`: how much a subtree holds, and how much of it is distinct content.

use crate::format::{EntryKind, Manifest};
use std::collections::HashSet;

/// Sizes of a subtree.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Sum of file sizes.
    pub bytes: u64,
    /// Sum of sizes of distinct file contents (identical files counted once).
    pub unique_bytes: u64,
}

pub fn usage(m: &Manifest, start: usize) -> Usage {
    let mut u = Usage::default();
    let mut seen = HashSet::new();
    for idx in m.walk(start).indices() {
        match &m.entries[idx].kind {
            EntryKind::Dir { .. } => u.dirs += 1,
            EntryKind::Symlink { .. } => u.symlinks += 1,
            EntryKind::File { size, sha256, .. } => {
                u.files += 1;
                u.bytes += size;
                if seen.insert(*sha256) {
                    u.unique_bytes += size;
                }
            }
        }
    }
    u
}
