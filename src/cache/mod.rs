//! The persistent disk cache: verified content on local disk, keyed by its SHA-256.
//!
//! Because entries are named by the hash of their content, one cache serves every dataset,
//! version and mount on a node: content shared by two versions or two datasets is stored and
//! downloaded once, and several daemons can share the directory. Writes are atomic (temporary
//! file, then rename), so whatever a crash leaves is either a whole entry or nothing.
//!
//! Three kinds of entry share one quota and one LRU ([`Kind`]): chunk entries, a chunk of a
//! large file behind a table of block checksums ([`entry`]), file entries, the exact bytes
//! of a whole file, which the kernel can serve by passthrough ([`file_entry`]), and manifest
//! images, the decoded manifest of a version mounted before, mapped by later mounts
//! ([`images`]). A file of one
//! chunk is only ever a file entry; a file entry assembled from chunks sends those chunks to
//! the cold end of the LRU, so they are the first to go when room is needed.
//!
//! The size is bounded by a quota on the blocks entries take on disk: past it, the least
//! recently used entries are deleted down to a low watermark. The index lives in memory and is
//! rebuilt from the directory in the background when a daemon starts, so mounting never waits
//! for it; recency survives restarts through file modification times, refreshed on use at
//! most every few minutes.
//!
//! Layout: `DIR/v2/ab/ab12…` chunk entries, `DIR/files/ab/ab12…` file entries,
//! `DIR/manifests/ab/ab12…` manifest images (named by the manifest's SHA-256), `DIR/tmp/`
//! temporary files, `DIR/stats/PID.json` counters of each daemon (read by `datastore cache
//! stats`).

mod dir;
mod direct;
pub mod entry;
mod evict;
use evict::Listed;
pub mod file_entry;
mod images;
mod ledger;
mod put;
pub mod seal;
mod size;
pub mod stats;

pub use dir::default_dir;
use dir::{entry_files, remove_stale_temporaries};
pub use put::FileWriter;
pub use size::{CacheSize, DEFAULT_SIZE};

use crate::format::Sha256;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The directory of chunk entries, named after their format ([`entry`]).
pub const ENTRIES: &str = "v2";
/// The directory of file entries ([`file_entry`]).
pub const FILES: &str = "files";
/// The directory of manifest images ([`images`]).
pub const MANIFESTS: &str = "manifests";

/// What an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One chunk of a file, behind block checksums ([`entry`]).
    Chunk,
    /// A whole file, byte for byte ([`file_entry`]).
    File,
    /// The image of a decoded manifest ([`images`]).
    Manifest,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Chunk => ENTRIES,
            Kind::File => FILES,
            Kind::Manifest => MANIFESTS,
        }
    }
}

/// An entry: what it holds and the SHA-256 of its bytes.
type Key = (Kind, Sha256);

/// After an eviction the cache holds at most this share of its quota.
const LOW_WATERMARK: f64 = 0.9;
/// A process that must make room but knows of no entry lists the directory for entries other
/// processes wrote at most this often.
const RELIST_EVERY: Duration = Duration::from_secs(2);
/// A process that must make room lists the directory first if it has not for this long: the
/// node's count of entries drifts when two processes put the same entry in place at once (the
/// second rename replaces the first, and both count it), and a listing sets it right. A
/// listing of a cache of millions of small entries takes seconds, hence not more often.
const REMEASURE_EVERY: Duration = Duration::from_secs(300);
/// Recency is written to disk (as the file's mtime) at most this often per entry.
const TOUCH_EVERY: Duration = Duration::from_secs(300);

/// Why the cache could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot use cache directory {}: {}; choose another with --cache-dir or -o cache_dir=", .0.display(), crate::io_cause::Cause(.1))]
    Dir(PathBuf, std::io::Error),
}

struct Index {
    /// Entry → (bytes on disk, when its mtime was last refreshed).
    lru: lru::LruCache<Key, (u64, SystemTime)>,
    bytes: u64,
    /// Room claimed by entries being written ([`DiskCache::make_room`]): made before they
    /// reach the disk, so that the directory never holds more than the quota, even briefly.
    claimed: u64,
}

pub struct DiskCache {
    dir: PathBuf,
    tmp: PathBuf,
    quota: u64,
    /// The use of the directory by every process on the node, which the quota bounds.
    ledger: ledger::Ledger,
    index: Mutex<Index>,
    /// When the directory was last listed to measure it, and to find entries to evict.
    listed: Mutex<Listed>,
    scanned: AtomicBool,
    /// Whether the cache's filesystem keeps the seals in mtimes ([`seal`]).
    seals: bool,
    pub stats: stats::Counters,
    /// When a failed write was last logged: a full disk fails every write, and one line a
    /// minute says so as well as thousands would.
    write_warned: Mutex<Option<std::time::Instant>>,
}

/// Creates the cache directory readable by its owner alone (0700), and closes one that is open
/// to others, if it is ours: the cache holds the content of every dataset the node has read,
/// whoever may read the datasets themselves. Entries are created 0600 besides.
fn make_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.mode() & 0o077 == 0 {
        return Ok(());
    }
    // SAFETY: geteuid cannot fail.
    let mine = meta.uid() == unsafe { libc::geteuid() };
    // Only a directory that holds nothing but a cache is ours to close (not /tmp, say).
    let ours = [
        ENTRIES,
        FILES,
        MANIFESTS,
        "tmp",
        "stats",
        "v1",
        ledger::LEDGER,
    ];
    let only_cache = std::fs::read_dir(dir)?
        .flatten()
        .all(|e| ours.iter().any(|o| e.file_name() == *o));
    if mine && only_cache {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        tracing::info!(
            "disk cache {}: closed to other users (mode 0700)",
            dir.display()
        );
    } else {
        tracing::warn!(
            "disk cache {} is open to other users (mode {:o}): they can read what it caches; \
             use a directory of its own, or make this one 0700",
            dir.display(),
            meta.mode() & 0o777
        );
    }
    Ok(())
}

impl DiskCache {
    /// Opens (creating) a cache directory and starts rebuilding its index in the background.
    pub fn open(dir: &Path, size: CacheSize) -> Result<Arc<DiskCache>, CacheError> {
        let err = |e| CacheError::Dir(dir.to_path_buf(), e);
        make_private(dir).map_err(err)?;
        let tmp = dir.join("tmp");
        for d in [
            &dir.join(ENTRIES),
            &dir.join(FILES),
            &dir.join(MANIFESTS),
            &tmp,
            &dir.join("stats"),
        ] {
            std::fs::create_dir_all(d).map_err(err)?;
        }
        let quota = size.bytes_in(dir).map_err(err)?;
        let ledger = ledger::Ledger::open(dir).map_err(err)?;
        let seals = seal::supported(&tmp);
        if !seals {
            tracing::info!(
                "disk cache {}: its filesystem keeps no nanoseconds in mtimes; entries served \
                 by passthrough are checked by size alone (run `datastore cache verify`)",
                dir.display()
            );
        }
        let cache = Arc::new(DiskCache {
            dir: dir.to_path_buf(),
            tmp,
            quota,
            ledger,
            listed: Mutex::new(Listed::default()),
            index: Mutex::new(Index {
                lru: lru::LruCache::unbounded(),
                bytes: 0,
                claimed: 0,
            }),
            scanned: AtomicBool::new(false),
            seals,
            stats: stats::Counters::default(),
            write_warned: Mutex::new(None),
        });
        remove_stale_temporaries(&cache.tmp);
        let c = cache.clone();
        std::thread::Builder::new()
            .name("cache-scan".into())
            .spawn(move || c.scan())
            .map_err(err)?;
        Ok(cache)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// Bytes the index accounts for.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Whether the background scan of existing entries has finished.
    pub fn scanned(&self) -> bool {
        self.scanned.load(Ordering::Acquire)
    }

    fn path(&self, (kind, h): Key) -> PathBuf {
        let hex = h.to_hex();
        self.dir.join(kind.dir()).join(&hex[..2]).join(hex)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the index knows `h`, as either kind of entry (no disk access; an entry written
    /// by another daemon may be missed).
    pub fn contains(&self, h: &Sha256) -> bool {
        let idx = self.lock();
        idx.lru.contains(&(Kind::Chunk, *h)) || idx.lru.contains(&(Kind::File, *h))
    }

    /// Whether the index knows an entry of this kind for `h`.
    pub fn contains_kind(&self, kind: Kind, h: &Sha256) -> bool {
        self.lock().lru.contains(&(kind, *h))
    }

    /// Whether `file`, opened earlier by [`file`](Self::file) for the file entry `h` of `len`
    /// bytes, still has that size and its seal (one fstat). If not, the entry is damaged: it
    /// is dropped, if it is still in place, and `false` returned. Blocking.
    pub fn file_intact(&self, h: &Sha256, len: u64, file: &std::fs::File) -> bool {
        let key = (Kind::File, *h);
        match file_entry::check(file, h, len, self.seals) {
            Ok(()) => true,
            Err(e) => {
                let path = self.path(key);
                let same = |p: &Path| {
                    use std::os::unix::fs::MetadataExt;
                    let (a, b) = (std::fs::metadata(p), file.metadata());
                    matches!((a, b), (Ok(a), Ok(b)) if a.ino() == b.ino() && a.dev() == b.dev())
                };
                if same(&path) {
                    self.served(key, &path, Err(e));
                } else if let entry::Bad::Damaged(why) = e {
                    tracing::warn!("an evicted cache entry {} is damaged ({why})", h);
                }
                false
            }
        }
    }

    /// Whether an entry for `h` exists on disk (at most two stats; its content is checked
    /// when read).
    pub fn on_disk(&self, h: &Sha256) -> bool {
        self.on_disk_as((Kind::File, *h)) || self.on_disk_as((Kind::Chunk, *h))
    }

    /// The verified bytes of `h`, if cached and undamaged: from a chunk entry (its block
    /// checksums checked) or a file entry (its SHA-256 checked). Blocking.
    pub fn get(&self, h: &Sha256) -> Option<Bytes> {
        let key = (Kind::Chunk, *h);
        let path = self.path(key);
        match entry::read(&path, crate::buffers::shared()) {
            Err(entry::Bad::Missing) => {}
            read => return self.served(key, &path, read),
        }
        let key = (Kind::File, *h);
        let path = self.path(key);
        self.served(key, &path, file_entry::read(&path, h))
    }

    /// Bytes `range` of the cached chunk entry `h`, checked block by block, if cached and
    /// undamaged there: a small read of a large chunk reads a little of the entry, not all of
    /// it. Blocking.
    pub fn get_range(&self, h: &Sha256, range: std::ops::Range<u64>) -> Option<Bytes> {
        let key = (Kind::Chunk, *h);
        let path = self.path(key);
        self.served(key, &path, entry::read_range(&path, range).map(|(d, _)| d))
    }

    /// Bytes `range` of the file entry `h` of `len` bytes, if cached with that size and its
    /// seal: checked as a passthrough open checks it, not hashed again (the entry was hashed
    /// as it was written). Blocking.
    pub fn get_file_range(
        &self,
        h: &Sha256,
        len: u64,
        range: std::ops::Range<u64>,
    ) -> Option<Bytes> {
        let key = (Kind::File, *h);
        let path = self.path(key);
        self.served(
            key,
            &path,
            file_entry::read_range(&path, h, len, self.seals, range),
        )
    }

    /// The file entry of a file with SHA-256 `h` and `len` bytes, opened for the kernel to
    /// serve, if it is cached and has the right size (a wrong size drops it). Blocking.
    pub fn file(&self, h: &Sha256, len: u64) -> Option<std::fs::File> {
        let key = (Kind::File, *h);
        let path = self.path(key);
        let file = match file_entry::open(&path, h, len, self.seals) {
            Ok(f) => f,
            // Not a miss of a lookup: most files opened have no file entry yet.
            Err(entry::Bad::Missing) => {
                self.forget(key);
                return None;
            }
            Err(e) => {
                self.served(key, &path, Err(e));
                return None;
            }
        };
        self.served(key, &path, Ok(Bytes::new()));
        Some(file)
    }

    /// Counts a read of entry `key` (the bytes served), refreshes its recency, and drops the
    /// entry if damaged.
    fn served(&self, key: Key, path: &Path, read: Result<Bytes, entry::Bad>) -> Option<Bytes> {
        match read {
            Ok(data) => {
                self.stats.hit(data.len() as u64);
                let now = SystemTime::now();
                let mut idx = self.lock();
                let touched = match idx.lru.get(&key) {
                    Some(&(_, t)) => t,
                    None => {
                        // Written by another daemon sharing the directory: learn it.
                        let size = std::fs::metadata(path)
                            .map(|m| file_entry::allocated(&m))
                            .unwrap_or(0);
                        idx.bytes += size;
                        idx.lru.put(key, (size, SystemTime::UNIX_EPOCH));
                        SystemTime::UNIX_EPOCH
                    }
                };
                if now.duration_since(touched).unwrap_or_default() > TOUCH_EVERY {
                    if let Some(v) = idx.lru.get_mut(&key) {
                        v.1 = now;
                    }
                    drop(idx);
                    let _ = std::fs::File::options()
                        .append(true)
                        .open(path)
                        .and_then(|f| f.set_modified(seal::at(&key.1, now)));
                }
                Some(data)
            }
            Err(entry::Bad::Missing) => {
                self.forget(key);
                self.stats.miss();
                None
            }
            Err(entry::Bad::Damaged(why)) => {
                tracing::warn!(
                    "cache entry {} is damaged ({why}); dropping it",
                    path.display()
                );
                self.stats.damaged();
                self.remove(key);
                None
            }
            Err(entry::Bad::Io(e)) => {
                tracing::warn!("cannot read cache entry {}: {e}", path.display());
                self.stats.miss();
                None
            }
        }
    }

    /// Whether entry `key` is known, or on disk (written by another daemon).
    fn on_disk_as(&self, key: Key) -> bool {
        self.lock().lru.contains(&key) || self.path(key).exists()
    }

    /// Sends chunk entry `h` to the cold end of the LRU: its bytes are also in a file entry,
    /// so it is the first to go when room is needed.
    pub fn demote_chunk(&self, h: &Sha256) {
        self.lock().lru.demote(&(Kind::Chunk, *h));
    }
}

#[cfg(test)]
mod tests;
