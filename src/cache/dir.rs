//! A cache directory as `datastore cache` sees it, with or without daemons using it: its
//! entries listed, counted, checked or deleted, and what dead daemons left in `tmp/`.

use super::{entry, file_entry, DiskCache, Kind};
use crate::format::Sha256;
use std::path::{Path, PathBuf};

/// The default cache directory: shared under /var/cache for root, the user's cache dir otherwise.
pub fn default_dir() -> PathBuf {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/cache/datastore");
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("datastore")
}

impl DiskCache {
    /// Deletes every entry. Daemons using the cache simply miss and fetch again.
    pub fn clear(dir: &Path) -> std::io::Result<(u64, u64)> {
        let mut n = 0;
        let mut bytes = 0;
        for (_, path, m) in entry_files(dir)? {
            match std::fs::remove_file(path) {
                Ok(()) => {
                    n += 1;
                    bytes += file_entry::allocated(&m);
                }
                // Evicted meanwhile by a daemon: gone either way.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        recount(dir);
        Ok((n, bytes))
    }

    /// Entries and the bytes they take on disk in a cache directory, by listing it.
    pub fn usage(dir: &Path) -> (u64, u64) {
        let files = entry_files(dir).unwrap_or_default();
        let bytes = files.iter().map(|(_, _, m)| file_entry::allocated(m)).sum();
        (files.len() as u64, bytes)
    }

    /// Checks every entry of a cache directory against its SHA-256 and deletes those that do
    /// not match: what `datastore cache verify` runs, for damage that the checks on open and
    /// read cannot see (a file entry served by passthrough is read by the kernel, not by us).
    /// Blocking; returns the entries checked and those deleted.
    pub fn verify(dir: &Path) -> std::io::Result<(u64, Vec<PathBuf>)> {
        let buffers = crate::buffers::shared();
        let mut checked = 0;
        let mut damaged = Vec::new();
        for (kind, path, _) in entry_files(dir)? {
            let Some(h) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(Sha256::from_hex)
            else {
                continue;
            };
            let read = match kind {
                Kind::Chunk => entry::read(&path, buffers).and_then(|d| {
                    (Sha256::of(&d) == h)
                        .then_some(())
                        .ok_or(entry::Bad::Damaged("SHA-256 mismatch"))
                }),
                Kind::File => file_entry::read(&path, &h).map(drop),
                Kind::Manifest => super::images::check(&path),
            };
            match read {
                Ok(()) => checked += 1,
                Err(entry::Bad::Damaged(_)) => {
                    checked += 1;
                    if std::fs::remove_file(&path).is_ok() {
                        damaged.push(path);
                    }
                }
                // Evicted while we looked, or unreadable: nothing to say about its bytes.
                Err(entry::Bad::Missing) => {}
                Err(entry::Bad::Io(e)) => return Err(e),
            }
        }
        if !damaged.is_empty() {
            recount(dir);
        }
        Ok((checked, damaged))
    }
}

/// Tells the node's count of the cache's use what is left after entries were deleted here.
fn recount(dir: &Path) {
    if let Ok(ledger) = super::ledger::Ledger::open(dir) {
        let before = ledger.puts();
        ledger.measured(DiskCache::usage(dir).1, before, 0);
    }
}

/// Every entry file of a cache directory, with its kind and metadata (entries that vanish
/// while listed, evicted by another daemon, are left out).
pub(super) fn entry_files(dir: &Path) -> std::io::Result<Vec<(Kind, PathBuf, std::fs::Metadata)>> {
    let mut out = Vec::new();
    for kind in [Kind::Chunk, Kind::File, Kind::Manifest] {
        let top = match std::fs::read_dir(dir.join(kind.dir())) {
            Ok(t) => t,
            // A cache written before file entries or images existed has no such directory.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && kind != Kind::Chunk => continue,
            Err(e) => return Err(e),
        };
        for fan in top.flatten() {
            for e in std::fs::read_dir(fan.path())?.flatten() {
                if let Ok(m) = e.metadata() {
                    out.push((kind, e.path(), m));
                }
            }
        }
    }
    Ok(out)
}

/// Removes temporary files left by daemons that died while writing (their PID is in the name).
pub(super) fn remove_stale_temporaries(tmp: &Path) {
    for e in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = e.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(crate::host::process_alive);
        if !alive {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
