//! The persistent disk cache: verified chunks on local disk, keyed by their SHA-256.
//!
//! Because entries are named by the hash of their content, one cache serves every dataset,
//! version and mount on a node: a chunk shared by two versions or two datasets is stored and
//! downloaded once, and several daemons can share the directory. Writes are atomic (temporary
//! file, then rename), so whatever a crash leaves is either a whole entry or nothing; a cheap
//! check on read catches disk damage (see [`entry`]).
//!
//! The size is bounded by a quota: past it, the least recently used entries are deleted down to
//! a low watermark. The index lives in memory and is rebuilt from the directory in the
//! background when a daemon starts, so mounting never waits for it; recency survives restarts
//! through file modification times, refreshed on use at most every few minutes.
//!
//! Layout: `DIR/v2/ab/ab12…` entries, `DIR/tmp/` temporary files, `DIR/stats/PID.json`
//! counters of each daemon (read by `datastore cache stats`).

pub mod buffers;
pub mod entry;
pub mod stats;

use crate::format::Sha256;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The directory of entries, named after the entry format ([`entry`]) it holds.
pub const ENTRIES: &str = "v2";

/// Bytes of read buffers kept for reuse once their chunks are dropped (see [`buffers`]).
const IDLE_BUFFERS: usize = 16 << 20;

/// After an eviction the cache holds at most this share of its quota.
const LOW_WATERMARK: f64 = 0.9;
/// Recency is written to disk (as the file's mtime) at most this often per entry.
const TOUCH_EVERY: Duration = Duration::from_secs(300);

/// How big the cache may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheSize {
    Bytes(u64),
    /// A share of the cache directory's filesystem.
    Percent(u8),
}

impl CacheSize {
    /// `200G`, `512M`, `1000000` or `80%`.
    pub fn parse(s: &str) -> Option<CacheSize> {
        match s.trim().strip_suffix('%') {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 100)
                .map(CacheSize::Percent),
            None => crate::size::parse_size(s).map(CacheSize::Bytes),
        }
    }
}

impl std::str::FromStr for CacheSize {
    type Err = String;

    fn from_str(s: &str) -> Result<CacheSize, String> {
        CacheSize::parse(s).ok_or_else(|| format!("'{s}' is not a size such as 200G or 80%"))
    }
}

/// The default: a quarter of the cache's filesystem.
pub const DEFAULT_SIZE: CacheSize = CacheSize::Percent(25);

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

/// Why the cache could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot use cache directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
}

struct Index {
    /// Entry → (bytes on disk, when its mtime was last refreshed).
    lru: lru::LruCache<Sha256, (u64, SystemTime)>,
    bytes: u64,
}

pub struct DiskCache {
    dir: PathBuf,
    entries: PathBuf,
    tmp: PathBuf,
    quota: u64,
    index: Mutex<Index>,
    scanned: AtomicBool,
    buffers: Arc<buffers::Buffers>,
    pub stats: stats::Counters,
    /// When a failed write was last logged: a full disk fails every write, and one line a
    /// minute says so as well as thousands would.
    write_warned: Mutex<Option<std::time::Instant>>,
}

/// How often a persisting cache write failure is logged again.
const WRITE_WARNING_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl DiskCache {
    /// Opens (creating) a cache directory and starts rebuilding its index in the background.
    pub fn open(dir: &Path, size: CacheSize) -> Result<Arc<DiskCache>, CacheError> {
        let err = |e| CacheError::Dir(dir.to_path_buf(), e);
        let entries = dir.join(ENTRIES);
        let tmp = dir.join("tmp");
        for d in [&entries, &tmp, &dir.join("stats")] {
            std::fs::create_dir_all(d).map_err(err)?;
        }
        let quota = match size {
            CacheSize::Bytes(b) => b,
            CacheSize::Percent(p) => filesystem_size(dir).map_err(err)? / 100 * p as u64,
        };
        let cache = Arc::new(DiskCache {
            dir: dir.to_path_buf(),
            entries,
            tmp,
            quota,
            index: Mutex::new(Index {
                lru: lru::LruCache::unbounded(),
                bytes: 0,
            }),
            scanned: AtomicBool::new(false),
            buffers: buffers::Buffers::new(IDLE_BUFFERS),
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

    fn path(&self, h: &Sha256) -> PathBuf {
        let hex = h.to_hex();
        self.entries.join(&hex[..2]).join(hex)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the index knows `h` (no disk access; an entry written by another daemon may be
    /// missed).
    pub fn contains(&self, h: &Sha256) -> bool {
        self.lock().lru.contains(h)
    }

    /// Whether an entry for `h` exists on disk (one stat; its content is checked when read).
    pub fn on_disk(&self, h: &Sha256) -> bool {
        self.contains(h) || self.path(h).exists()
    }

    /// The verified bytes of `h`, if cached and undamaged. Blocking.
    pub fn get(&self, h: &Sha256) -> Option<Bytes> {
        let path = self.path(h);
        let read = entry::read(&path, &self.buffers).map(|data| {
            let len = data.len() as u64;
            (data, len)
        });
        self.served(h, &path, read)
    }

    /// Bytes `range` of the cached chunk `h`, checked block by block, if cached and undamaged
    /// there: a small read of a large chunk reads a little of the entry, not all of it.
    /// Blocking.
    pub fn get_range(&self, h: &Sha256, range: std::ops::Range<u64>) -> Option<Bytes> {
        let path = self.path(h);
        self.served(h, &path, entry::read_range(&path, range))
    }

    /// Counts a read of entry `h` (the bytes served and the length of its data), refreshes its
    /// recency, and drops it if damaged.
    fn served(
        &self,
        h: &Sha256,
        path: &Path,
        read: Result<(Bytes, u64), entry::Bad>,
    ) -> Option<Bytes> {
        match read {
            Ok((data, len)) => {
                self.stats.hit(data.len() as u64);
                let now = SystemTime::now();
                let mut idx = self.lock();
                let touched = match idx.lru.get(h) {
                    Some(&(_, t)) => t,
                    None => {
                        // Written by another daemon sharing the directory: learn it.
                        let size = entry::size_on_disk(len);
                        idx.bytes += size;
                        idx.lru.put(*h, (size, SystemTime::UNIX_EPOCH));
                        SystemTime::UNIX_EPOCH
                    }
                };
                if now.duration_since(touched).unwrap_or_default() > TOUCH_EVERY {
                    if let Some(v) = idx.lru.get_mut(h) {
                        v.1 = now;
                    }
                    drop(idx);
                    let _ = std::fs::File::options()
                        .append(true)
                        .open(path)
                        .and_then(|f| f.set_modified(now));
                }
                Some(data)
            }
            Err(entry::Bad::Missing) => {
                self.forget(h);
                self.stats.miss();
                None
            }
            Err(entry::Bad::Damaged(why)) => {
                tracing::warn!(
                    "cache entry {} is damaged ({why}); dropping it",
                    path.display()
                );
                self.stats.damaged();
                self.remove(h);
                None
            }
            Err(entry::Bad::Io(e)) => {
                tracing::warn!("cannot read cache entry {}: {e}", path.display());
                self.stats.miss();
                None
            }
        }
    }

    /// Stores verified bytes under their hash, then evicts if over quota. Blocking. A failure
    /// (disk full, permissions) is logged and otherwise ignored: the cache is an optimisation.
    pub fn put(&self, h: &Sha256, data: &[u8]) {
        if self.quota == 0 || entry::size_on_disk(data.len() as u64) > self.quota {
            return;
        }
        if self.lock().lru.contains(h) {
            return;
        }
        match entry::write(&self.tmp, &self.path(h), data) {
            Ok(size) => {
                self.stats.written(size);
                let mut idx = self.lock();
                if idx.lru.put(*h, (size, SystemTime::now())).is_none() {
                    idx.bytes += size;
                }
                let over = idx.bytes > self.quota;
                drop(idx);
                if over {
                    self.evict();
                }
            }
            Err(e) => {
                self.stats.write_failed();
                let mut last = self.write_warned.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|t| t.elapsed() >= WRITE_WARNING_EVERY) {
                    *last = Some(std::time::Instant::now());
                    tracing::warn!(
                        "cannot write to the disk cache in {}: {e}; reads go on from the store \
                         (failed writes so far: {}; free space there or lower cache_size)",
                        self.dir.display(),
                        self.stats.snapshot().write_failures
                    );
                }
            }
        }
    }

    /// Deletes least recently used entries down to the low watermark.
    fn evict(&self) {
        let target = (self.quota as f64 * LOW_WATERMARK) as u64;
        loop {
            let victim = {
                let mut idx = self.lock();
                if idx.bytes <= target {
                    return;
                }
                match idx.lru.pop_lru() {
                    Some((h, (size, _))) => {
                        idx.bytes -= size;
                        h
                    }
                    None => return,
                }
            };
            // A reader that already opened the file keeps reading it: unlinking is safe.
            match std::fs::remove_file(self.path(&victim)) {
                Ok(()) => self.stats.evicted(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("cannot evict cache entry: {e}"),
            }
        }
    }

    fn forget(&self, h: &Sha256) {
        let mut idx = self.lock();
        if let Some((size, _)) = idx.lru.pop(h) {
            idx.bytes -= size;
        }
    }

    fn remove(&self, h: &Sha256) {
        self.forget(h);
        let _ = std::fs::remove_file(self.path(h));
    }

    /// Learns the entries already on disk (oldest first, so they are evicted before anything
    /// used since this daemon started), then enforces the quota.
    fn scan(&self) {
        let started = std::time::Instant::now();
        // Entries of the first format (before per-block checksums) are never read again.
        let _ = std::fs::remove_dir_all(self.dir.join("v1"));
        let mut found: Vec<(SystemTime, Sha256, u64)> = entry_files(&self.dir)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(path, m)| {
                let h = path.file_name()?.to_str().and_then(Sha256::from_hex)?;
                Some((m.modified().unwrap_or(SystemTime::UNIX_EPOCH), h, m.len()))
            })
            .collect();
        found.sort_unstable_by_key(|(t, _, _)| *t);
        let n = found.len();
        {
            let mut idx = self.lock();
            let mut rebuilt = lru::LruCache::unbounded();
            let mut bytes = 0;
            for (t, h, size) in found {
                if !idx.lru.contains(&h) {
                    rebuilt.put(h, (size, t));
                    bytes += size;
                }
            }
            // Entries used since start-up are the most recent.
            while let Some((h, v)) = idx.lru.pop_lru() {
                bytes += v.0;
                rebuilt.put(h, v);
            }
            idx.lru = rebuilt;
            idx.bytes = bytes;
        }
        self.scanned.store(true, Ordering::Release);
        tracing::info!(
            "disk cache {}: {n} entries indexed in {:?}",
            self.dir.display(),
            started.elapsed()
        );
        if self.bytes() > self.quota {
            self.evict();
        }
    }

    /// Deletes every entry. Daemons using the cache simply miss and fetch again.
    pub fn clear(dir: &Path) -> std::io::Result<(u64, u64)> {
        let mut n = 0;
        let mut bytes = 0;
        for (path, m) in entry_files(dir)? {
            if std::fs::remove_file(path).is_ok() {
                n += 1;
                bytes += m.len();
            }
        }
        Ok((n, bytes))
    }

    /// Entries and bytes in a cache directory, by listing it.
    pub fn usage(dir: &Path) -> (u64, u64) {
        let files = entry_files(dir).unwrap_or_default();
        (files.len() as u64, files.iter().map(|(_, m)| m.len()).sum())
    }
}

/// Every entry file of a cache directory, with its metadata (entries that vanish while
/// listed, evicted by another daemon, are left out).
fn entry_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, std::fs::Metadata)>> {
    let mut out = Vec::new();
    for fan in std::fs::read_dir(dir.join(ENTRIES))?.flatten() {
        for e in std::fs::read_dir(fan.path())?.flatten() {
            if let Ok(m) = e.metadata() {
                out.push((e.path(), m));
            }
        }
    }
    Ok(out)
}

/// Total size of the filesystem holding `dir`.
fn filesystem_size(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: c is a valid path; st is a plain struct the call fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_blocks as u64 * st.f_frsize as u64)
}

/// Whether process `pid` runs: it exists and is not a zombie (a killed daemon nobody has
/// reaped yet still has a /proc entry).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses and may hold spaces.
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    })
}

/// Removes temporary files left by daemons that died while writing (their PID is in the name).
fn remove_stale_temporaries(tmp: &Path) {
    for e in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = e.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(process_alive);
        if !alive {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests;
