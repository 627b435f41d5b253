//! Keeping the cache within its quota: least recently used entries go first, down to a low
//! watermark, and the directory is listed (when a daemon starts, every few minutes, and when
//! room is needed and no entry is known) to learn of entries other processes wrote.

use super::*;

impl DiskCache {
    /// Deletes least recently used entries until the entries and claims of every process on
    /// the node are down to the low watermark. Entries are taken off the node's count by
    /// whoever unlinks them; when this process knows of no entry left, it lists the directory
    /// for those others wrote (at most every few seconds).
    pub(super) fn evict(&self) {
        let target = (self.quota as f64 * LOW_WATERMARK) as u64;
        let measured = self.listed().measured;
        if measured.is_some_and(|t| t.elapsed() > REMEASURE_EVERY) {
            self.relist(true);
        }
        loop {
            if self.ledger.used() <= target {
                return;
            }
            let victim = {
                let mut idx = self.lock();
                match idx.lru.pop_lru() {
                    Some((h, (size, _))) => {
                        idx.bytes -= size;
                        Some((h, size))
                    }
                    None => None,
                }
            };
            match victim {
                Some((key, size)) => {
                    if self.unlink(key, size) {
                        self.stats.evicted();
                    }
                }
                None if self.may_list_for_room() && self.relist(false) => {}
                None => return,
            }
        }
    }

    /// Deletes entry `key` of `size` bytes from disk, taking it off the node's count if this
    /// process is the one that removed it. A reader that already opened the file (the kernel,
    /// for a passthrough file) keeps reading it: unlinking is safe.
    pub(super) fn unlink(&self, key: Key, size: u64) -> bool {
        match std::fs::remove_file(self.path(key)) {
            Ok(()) => {
                self.ledger.removed(size);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                tracing::warn!("cannot evict cache entry: {e}");
                false
            }
        }
    }

    /// Whether this process may list the directory to find entries to evict: not again within
    /// a moment (claims of other processes may keep the count high however often it lists).
    pub(super) fn may_list_for_room(&self) -> bool {
        let last = self.listed().for_room;
        last.is_none_or(|t| t.elapsed() >= RELIST_EVERY)
    }

    pub(super) fn listed(&self) -> std::sync::MutexGuard<'_, Listed> {
        self.listed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Learns the entries on disk this process does not know (written by others), oldest
    /// first, and with `measure` sets the node's count of entries to what it found; false if
    /// it learned of none. A measurement may miss an entry put in place while the directory is
    /// listed (so the quota may be passed by one entry until the next), and is made only every
    /// few minutes for that reason.
    pub(super) fn relist(&self, measure: bool) -> bool {
        {
            let now = Some(std::time::Instant::now());
            let mut listed = self.listed();
            listed.for_room = now;
            if measure {
                listed.measured = now;
            }
        }
        let before = self.ledger.puts();
        let mut found = on_disk(&self.dir);
        let mut idx = self.lock();
        if measure {
            self.ledger
                .measured(found.iter().map(|f| f.2).sum(), before, idx.claimed);
        }
        found.retain(|(_, key, _)| !idx.lru.contains(key));
        let learned = !found.is_empty();
        for (t, key, size) in found {
            idx.lru.put(key, (size, t));
            idx.bytes += size;
        }
        learned
    }

    pub(super) fn forget(&self, key: Key) -> Option<u64> {
        let mut idx = self.lock();
        let (size, _) = idx.lru.pop(&key)?;
        idx.bytes -= size;
        Some(size)
    }

    pub(super) fn remove(&self, key: Key) {
        let size = self.forget(key);
        let size = size.unwrap_or_else(|| {
            std::fs::metadata(self.path(key))
                .map(|m| file_entry::allocated(&m))
                .unwrap_or(0)
        });
        self.unlink(key, size);
    }

    /// Learns the entries already on disk (oldest first, so they are evicted before anything
    /// used since this daemon started), then enforces the quota.
    pub(super) fn scan(&self) {
        let started = std::time::Instant::now();
        // Entries of the first format (before per-block checksums) are never read again.
        let _ = std::fs::remove_dir_all(self.dir.join("v1"));
        let before = self.ledger.puts();
        let found = on_disk(&self.dir);
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
            // Entries this process wrote meanwhile are counted once, whether listed or not.
            self.ledger.measured(bytes, before, idx.claimed);
            self.listed().measured = Some(std::time::Instant::now());
        }
        tracing::info!(
            "disk cache {}: {n} entries indexed in {:?}",
            self.dir.display(),
            started.elapsed()
        );
        if self.ledger.used() > self.quota {
            self.evict();
        }
        // Said once the quota holds again.
        self.scanned.store(true, Ordering::Release);
    }
}

/// When a process last listed its cache directory.
#[derive(Default)]
pub(super) struct Listed {
    /// To measure (at start, and every few minutes): the node's count of entries was set then.
    measured: Option<std::time::Instant>,
    /// Because it had to make room and knew of no entry.
    for_room: Option<std::time::Instant>,
}

/// The entries in `dir`, oldest first: when each was last used, what it is, and the bytes it
/// takes on disk.
fn on_disk(dir: &Path) -> Vec<(SystemTime, Key, u64)> {
    let mut found: Vec<(SystemTime, Key, u64)> = entry_files(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(kind, path, m)| {
            let h = path.file_name()?.to_str().and_then(Sha256::from_hex)?;
            let t = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            Some((t, (kind, h), file_entry::allocated(&m)))
        })
        .collect();
    found.sort_unstable_by_key(|(t, _, _)| *t);
    found
}
