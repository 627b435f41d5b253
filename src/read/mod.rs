//! The read engine: from (version, file, offset, size) to verified bytes.
//!
//! Everything between a mounted manifest and the bytes handed to a reader lives here: chunks
//! assembled into ranges ([`chunks`]), the verified fetch of one chunk ([`fetch`]), the memory
//! cache of recent chunks ([`memory`]), the one fetch budget ([`budget`]), read-ahead for
//! sequential readers ([`readahead`]), the manifest itself, mapped from the node's image of
//! it when there is one ([`manifests`]), pack-region fetches of small neighbouring files
//! ([`pack`], shared with `datastore prefetch`), and whole files assembled in the disk cache
//! ([`materialize`]) so that [`Reader::local_file`] can offer the kernel a local file to serve
//! by itself, and the read order a job hands over before it reads ([`order`]). The mount only
//! translates FUSE requests into calls of [`Reader`] and replies; nothing here knows about FUSE.

pub mod budget;
pub mod chunks;
pub mod fetch;
pub mod manifests;
pub mod materialize;
pub mod memory;
pub mod order;
pub mod pack;
pub mod readahead;
pub mod writes;

pub use budget::{default_fetch_budget, FetchBudget};
pub use fetch::{fetch_chunk, locate, ContentError, Located, Origins};

use crate::cache::DiskCache;
use crate::format::{EntryKind, Location, Manifest};
use bytes::Bytes;
use chunks::ChunkReader;
use materialize::Materializer;
use order::Order;
use readahead::{Prefetcher, Readahead};
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Bytes of verified chunks kept in memory by default.
pub const DEFAULT_MEMORY: u64 = 256 << 20;

/// What a reader of one mounted version needs: its manifest and where its bytes come from.
pub struct Reader {
    manifest: Arc<Manifest>,
    chunks: Arc<ChunkReader>,
    prefetcher: Prefetcher,
    disk: Option<Arc<DiskCache>>,
    materializer: Option<Arc<Materializer>>,
    /// The read order handed over last, if any (see [`order`]).
    order: Mutex<Option<Arc<Order>>>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(o) = self.order.get_mut().unwrap_or_else(|e| e.into_inner()) {
            o.stop();
        }
    }
}

/// One open file: which entry, and where its reads have been going.
pub struct OpenFile {
    file: usize,
    readahead: Mutex<Readahead>,
}

impl OpenFile {
    /// The manifest entry this handle reads.
    pub fn file(&self) -> usize {
        self.file
    }
}

/// What [`Reader::read`] decided for one read, before it runs.
#[derive(Default)]
struct ReadPlan {
    /// A range to fetch ahead of a file read sequentially.
    ahead: Option<std::ops::Range<u64>>,
    /// A small file not yet at hand: its neighbours in the pack are fetched too.
    small_miss: bool,
    /// The read continues the last: whole chunks are worth loading.
    sequential: bool,
}

/// How far past the furthest file opened a read order fetches. What it fetches must still be
/// cached when the readers get to it: half the disk cache, or without one half of what memory
/// keeps (and no more than half the fetch budget), so that other readers' chunks have room.
fn order_window(disk_quota: Option<u64>, fetch_budget: u64, memory: u64) -> u64 {
    match disk_quota {
        Some(quota) => quota / 2,
        None => memory.min(fetch_budget) / 2,
    }
}

impl Reader {
    /// `memory` bounds the verified chunks kept in memory, `fetch_budget` the bytes all
    /// fetches together may hold at once. Must be called inside the runtime that will fetch.
    pub fn new(
        manifest: Arc<Manifest>,
        origins: impl Into<Origins>,
        disk: Option<Arc<DiskCache>>,
        memory: u64,
        fetch_budget: u64,
    ) -> Reader {
        let chunks = Arc::new(ChunkReader::new(
            origins,
            memory,
            disk.clone(),
            fetch_budget,
        ));
        Reader {
            manifest,
            prefetcher: Prefetcher::new(chunks.clone()),
            chunks,
            materializer: disk.clone().map(|d| Arc::new(Materializer::new(d))),
            disk,
            order: Mutex::new(None),
        }
    }

    /// A reader of another version of the same store, sharing this one's memory, fetch
    /// budget, fetches in flight and disk cache: what a mount switched to `manifest` reads
    /// with, while the files still open in this version read on with this one.
    pub fn for_version(&self, manifest: Arc<Manifest>) -> Reader {
        Reader {
            manifest,
            chunks: self.chunks.clone(),
            prefetcher: Prefetcher::new(self.chunks.clone()),
            disk: self.disk.clone(),
            materializer: self.materializer.clone(),
            order: Mutex::new(None),
        }
    }

    pub fn disk(&self) -> Option<&Arc<DiskCache>> {
        self.disk.as_ref()
    }

    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    pub fn budget(&self) -> &FetchBudget {
        self.chunks.budget()
    }

    /// The disk cache's file entry holding file `file` whole, opened, if there is one of the
    /// right size: the kernel can then serve the file from it (passthrough). Every byte of it
    /// was verified against the file's SHA-256 before it was put there. Blocking (an open and
    /// an fstat).
    pub fn local_file(&self, file: usize) -> Option<std::fs::File> {
        let EntryKind::File { size, sha256, .. } = self.manifest.entries[file].kind else {
            return None;
        };
        if size == 0 {
            return None;
        }
        self.disk.as_ref()?.file(&sha256, size)
    }

    /// Whether `local`, a local file of file `file` handed out earlier, still holds what it
    /// held then: its size and mtime seal are checked (one fstat). An entry evicted since is
    /// still intact behind the open file. One that is not drops its entry from the cache.
    pub fn local_file_intact(&self, file: usize, local: &std::fs::File) -> bool {
        let EntryKind::File { size, sha256, .. } = self.manifest.entries[file].kind else {
            return false;
        };
        self.disk
            .as_ref()
            .is_some_and(|d| d.file_intact(&sha256, size, local))
    }

    /// Waits until every disk cache write under way is done, and the file being assembled,
    /// if any: before the daemon exits, so that what was read stays cached.
    pub async fn settle(&self) {
        self.chunks.writes().settle(None).await;
        if let Some(m) = &self.materializer {
            m.settle().await;
        }
    }

    /// Counts an open served by the kernel from a local file (`true`) or through us.
    pub fn count_open(&self, by_passthrough: bool) {
        if let Some(d) = &self.disk {
            d.stats.opened(by_passthrough);
        }
    }

    /// File `file`, read through us, was closed: if all its chunks are cached now, they are
    /// assembled into a local file in the background (see [`materialize`]), for the opens
    /// after this one.
    pub fn offer_local_file(&self, file: usize) {
        if let Some(m) = &self.materializer {
            m.offer(
                &self.manifest,
                file,
                self.chunks.budget(),
                self.chunks.writes(),
            );
        }
    }

    /// Hands over the order in which file entries `files` will be read, replacing any order
    /// before it; the returned future fetches ahead of the readers in that order (see
    /// [`order`]) until it is done or replaced, and can be spawned.
    pub fn follow(&self, files: Vec<usize>) -> impl Future<Output = ()> + Send + 'static {
        let order = Order::new(files);
        if let Some(old) = self.lock_order().replace(order.clone()) {
            old.stop();
        }
        let ahead = order_window(
            self.disk.as_ref().map(|d| d.quota()),
            self.budget().total(),
            self.chunks.memory_bound(),
        );
        order::drive(order, self.manifest.clone(), self.chunks.clone(), ahead)
    }

    fn lock_order(&self) -> std::sync::MutexGuard<'_, Option<Arc<Order>>> {
        self.order.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts reading file entry `file`.
    pub fn open(&self, file: usize) -> OpenFile {
        if let Some(o) = &*self.lock_order() {
            o.opened(file);
        }
        OpenFile {
            file,
            readahead: Mutex::new(Readahead::default()),
        }
    }

    /// Bytes `offset..offset + size` of an open file (fewer at its end). What to fetch ahead is
    /// decided now, in the order reads arrive; the returned future fetches and can be spawned.
    pub fn read(
        self: &Arc<Self>,
        open: &OpenFile,
        offset: u64,
        size: u32,
    ) -> impl Future<Output = Result<Bytes, ContentError>> + Send + 'static {
        let plan = self.plan(open, offset, size);
        let (this, file) = (self.clone(), open.file);
        async move {
            let m = &this.manifest;
            if let Some(range) = plan.ahead {
                this.prefetcher.ahead(m, file, range);
            }
            let result = this
                .chunks
                .read(m, file, offset, size, plan.sequential)
                .await;
            if plan.small_miss {
                this.prefetcher.neighbours(m, file);
            }
            result
        }
    }

    fn plan(&self, open: &OpenFile, offset: u64, size: u32) -> ReadPlan {
        let mut plan = ReadPlan::default();
        let EntryKind::File {
            size: file_size,
            chunks,
            ..
        } = self.manifest.entries[open.file].kind
        else {
            return plan;
        };
        let ahead = {
            let mut r = open.readahead.lock().unwrap_or_else(|e| e.into_inner());
            let ahead = r.on_read(offset, size, file_size);
            plan.sequential = r.sequential();
            ahead
        };
        if chunks.len == 1 {
            let c = &self.manifest.chunks[chunks.start as usize];
            let small = matches!(c.location, Location::Pack { .. });
            // A file in a handed-over order is fetched in that order, not with its neighbours.
            plan.small_miss = small
                && offset == 0
                && !self.chunks.has(&c.hash)
                && !self
                    .lock_order()
                    .as_ref()
                    .is_some_and(|o| o.covers(open.file));
        } else {
            plan.ahead = ahead;
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::order_window;

    #[test]
    fn an_order_fetches_no_further_ahead_than_its_cache_keeps() {
        const MIB: u64 = 1 << 20;
        // Half the disk cache, whatever memory holds.
        assert_eq!(
            order_window(Some(10_000 * MIB), 1536 * MIB, 256 * MIB),
            5_000 * MIB
        );
        // Without one, half the memory cache, which a default fetch budget exceeds...
        assert_eq!(order_window(None, 1536 * MIB, 256 * MIB), 128 * MIB);
        // ...and half the fetch budget where it is the smaller.
        assert_eq!(order_window(None, 64 * MIB, 256 * MIB), 32 * MIB);
    }
}
