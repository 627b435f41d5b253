//! Entries put into the cache within its quota: room is claimed before an entry is written
//! (evicting first if need be) and given back once the entry is in place or has failed, so the
//! directory never holds more than the quota, even while writes are under way. A failed write
//! (disk full, permissions) costs nothing but the entry: the cache is an optimisation.

use super::{entry, file_entry, seal, DiskCache, Key, Kind};
use crate::format::Sha256;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// How often a persisting cache write failure is logged again.
const WRITE_WARNING_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Bytes an entry of `len` bytes of content is expected to take on disk: whole blocks.
pub(super) fn expected_size(len: u64) -> u64 {
    len.div_ceil(4096) * 4096
}

impl DiskCache {
    /// Stores a verified chunk under its hash, then evicts if over quota. Blocking. A failure
    /// (disk full, permissions) is logged and otherwise ignored: the cache is an optimisation.
    pub fn put(&self, h: &Sha256, data: &[u8]) {
        if entry::size_on_disk(data.len() as u64) > self.quota {
            return;
        }
        let mtime = seal::at(h, SystemTime::now());
        let size = expected_size(entry::size_on_disk(data.len() as u64));
        self.store((Kind::Chunk, *h), size, |tmp, path| {
            entry::write(tmp, path, data, mtime)
        });
    }

    /// Stores the verified bytes of a whole file (SHA-256 `h`) as a file entry. Blocking;
    /// failures as for [`put`](Self::put).
    pub fn put_file(&self, h: &Sha256, data: &[u8]) {
        if data.len() as u64 > self.quota {
            return;
        }
        let mtime = seal::at(h, SystemTime::now());
        self.store(
            (Kind::File, *h),
            expected_size(data.len() as u64),
            |tmp, path| file_entry::write(tmp, path, h, data, mtime),
        );
    }

    /// Stores verified bytes as an entry of `kind`: [`put_file`](Self::put_file) or
    /// [`put`](Self::put).
    pub fn put_as(&self, kind: Kind, h: &Sha256, data: &[u8]) {
        match kind {
            Kind::Chunk => self.put(h, data),
            Kind::File => self.put_file(h, data),
            // Written from a decoded manifest ([`put_image`](Self::put_image)), never bytes.
            Kind::Manifest => {}
        }
    }

    /// Starts a file entry written piece by piece (see [`FileWriter`]). Blocking.
    pub fn file_writer(self: &Arc<Self>, h: Sha256, len: u64) -> Option<FileWriter> {
        if len > self.quota || self.on_disk_as((Kind::File, h)) {
            return None;
        }
        match file_entry::Writer::new(&self.tmp) {
            Ok(w) => Some(FileWriter {
                claim: self.claim(expected_size(len)),
                hash: h,
                len,
                writer: w,
            }),
            Err(e) => {
                self.write_failed(&e);
                None
            }
        }
    }

    /// Writes entry `key` of about `size` bytes on disk with `write` (given the temporary
    /// directory and the entry's path, it returns the bytes the entry takes), unless it is
    /// there already.
    pub(super) fn store(
        &self,
        key: Key,
        size: u64,
        write: impl FnOnce(&Path, &Path) -> std::io::Result<u64>,
    ) {
        if self.quota == 0 || self.on_disk_as(key) {
            return;
        }
        self.make_room(size);
        let result = write(&self.tmp, &self.path(key));
        self.stored(key, size, result);
    }

    /// Claims `bytes` of the quota for an entry about to be written, evicting first if the
    /// entries and the claims of other writers leave too little. The claim is given back by
    /// [`stored`](Self::stored) or [`give_back`](Self::give_back).
    fn make_room(&self, bytes: u64) {
        self.lock().claimed += bytes;
        if self.ledger.claim(bytes) > self.quota {
            self.evict();
        }
    }

    fn give_back(&self, claimed: u64) {
        let mut idx = self.lock();
        idx.claimed = idx.claimed.saturating_sub(claimed);
        self.ledger.release(claimed);
    }

    /// Room claimed for an entry written over time, given back when the claim is dropped.
    fn claim(self: &Arc<Self>, bytes: u64) -> Claim {
        self.make_room(bytes);
        Claim {
            cache: self.clone(),
            bytes,
        }
    }

    /// Counts an entry written in the room claimed for it, giving the claim back.
    fn stored(&self, key: Key, claimed: u64, result: std::io::Result<u64>) {
        match result {
            Ok(size) => {
                self.stats.written(size);
                let mut idx = self.lock();
                // Known already: learnt from the disk by a reader between the rename and now,
                // or written twice at once (the second rename replaced the first). Either way
                // the node's count holds it at most once so far, so it is not taken off.
                if let Some((old, _)) = idx.lru.put(key, (size, SystemTime::now())) {
                    idx.bytes -= old;
                }
                idx.bytes += size;
                idx.claimed = idx.claimed.saturating_sub(claimed);
                drop(idx);
                self.ledger.put(size);
                self.ledger.release(claimed);
                if self.ledger.used() > self.quota {
                    self.evict();
                }
            }
            Err(e) => {
                self.give_back(claimed);
                self.write_failed(&e);
            }
        }
    }

    fn write_failed(&self, e: &std::io::Error) {
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

/// A file entry being assembled from its chunks, in order (see [`file_entry::Writer`]). It is
/// put in place only if the whole hashes to the file's SHA-256.
pub struct FileWriter {
    /// Its room in the quota, held while the entry is written in the temporary directory.
    claim: Claim,
    hash: Sha256,
    len: u64,
    writer: file_entry::Writer,
}

impl FileWriter {
    /// Appends the next bytes. Blocking; an error leaves no entry.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.writer.write(data)
    }

    /// Puts the entry in place if it is whole and right. Blocking.
    pub fn finish(mut self) -> bool {
        let key = (Kind::File, self.hash);
        let mtime = seal::at(&self.hash, SystemTime::now());
        let cache = self.claim.cache.clone();
        let result = self
            .writer
            .finish(&cache.path(key), &self.hash, self.len, mtime);
        let ok = result.is_ok();
        cache.stored(key, std::mem::take(&mut self.claim.bytes), result);
        ok
    }
}

/// Room in a cache's quota, given back when dropped (see [`DiskCache::make_room`]).
struct Claim {
    cache: Arc<DiskCache>,
    bytes: u64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.cache.give_back(self.bytes);
        }
    }
}
