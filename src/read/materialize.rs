//! Whole files assembled in the disk cache from their cached chunks, so that the kernel can
//! serve them itself (FUSE passthrough) from the next open on.
//!
//! A file of one chunk becomes a file entry as soon as that chunk is fetched. A larger file is
//! fetched chunk by chunk, as it is read; once every chunk is in the disk cache, the file is
//! offered here (when it is opened or closed), and its chunks are copied, in order, into one
//! file entry, hashed as they go: the entry is put in place only if the whole matches the
//! file's SHA-256. Its chunk entries then go to the cold end of the cache's LRU, so the bytes
//! are on disk twice only until the cache needs room. One file is assembled at a time, holding
//! one chunk of the fetch budget, so it never competes with readers for more than that.

use super::budget::FetchBudget;
use super::writes::Writes;
use crate::cache::{DiskCache, Kind};
use crate::format::{EntryKind, Manifest, Sha256};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Assembles file entries in the background, one at a time.
pub struct Materializer {
    disk: Arc<DiskCache>,
    /// Files being assembled or waiting to be: offered again, they are not queued twice.
    pending: Mutex<HashSet<Sha256>>,
    one_at_a_time: tokio::sync::Semaphore,
    /// Set at unmount: files not started yet are left for another time.
    closing: std::sync::atomic::AtomicBool,
    /// Offers come from FUSE threads, outside the runtime.
    rt: tokio::runtime::Handle,
}

impl Materializer {
    /// Must be called inside the runtime that will assemble the files.
    pub fn new(disk: Arc<DiskCache>) -> Materializer {
        Materializer {
            disk,
            pending: Mutex::new(HashSet::new()),
            one_at_a_time: tokio::sync::Semaphore::new(1),
            closing: Default::default(),
            rt: tokio::runtime::Handle::current(),
        }
    }

    /// Assembles file `file` of `m` in the background if it has no file entry yet and every
    /// one of its chunks is in the disk cache, or being written there (`writes`). Cheap when
    /// there is nothing to do.
    pub fn offer(
        self: &Arc<Self>,
        m: &Arc<Manifest>,
        file: usize,
        budget: &Arc<FetchBudget>,
        writes: &Arc<Writes>,
    ) {
        let EntryKind::File {
            size,
            sha256,
            chunks,
        } = m.entries[file].kind
        else {
            return;
        };
        let run = &m.chunks[chunks.range()];
        let at_hand = |h: &Sha256| self.disk.contains(h) || writes.pending(h);
        // A file of one chunk is written as a file entry when it is fetched: only one cached
        // as a chunk entry, before file entries existed, is left to assemble.
        let needs_assembly = run.len() > 1
            || run
                .first()
                .is_some_and(|c| self.disk.contains_kind(Kind::Chunk, &c.hash));
        if size == 0
            || !needs_assembly
            || self.disk.contains_kind(Kind::File, &sha256)
            || !run.iter().all(|c| at_hand(&c.hash))
            || !self.lock().insert(sha256)
        {
            return;
        }
        let hashes: Vec<Sha256> = run.iter().map(|c| c.hash).collect();
        let largest = run.iter().map(|c| c.len as u64).max().unwrap_or(0);
        let (this, budget, writes) = (self.clone(), budget.clone(), writes.clone());
        self.rt.spawn(async move {
            let _turn = this.one_at_a_time.acquire().await;
            if this.closing.load(std::sync::atomic::Ordering::Acquire) {
                this.lock().remove(&sha256);
                return;
            }
            // The last chunks read may still be on their way to disk.
            writes.settle(Some(&hashes)).await;
            let disk = this.disk.clone();
            if !hashes.iter().all(|h| disk.contains(h)) {
                this.lock().remove(&sha256);
                return;
            }
            let _permit = budget.take(largest).await;
            let done = tokio::task::spawn_blocking(move || assemble(&disk, sha256, size, &hashes))
                .await
                .unwrap_or(false);
            tracing::debug!(
                "file entry {sha256}: {}",
                if done { "written" } else { "not written" }
            );
            this.lock().remove(&sha256);
        });
    }

    /// At unmount: waits for the file being assembled, if any, and starts no other.
    pub async fn settle(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Release);
        drop(self.one_at_a_time.acquire().await);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Sha256>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Copies the cached chunks `hashes` into a file entry for `sha256`; `false` if a chunk has
/// gone from the cache meanwhile or the entry could not be written. Blocking.
fn assemble(disk: &Arc<DiskCache>, sha256: Sha256, size: u64, hashes: &[Sha256]) -> bool {
    let Some(mut w) = disk.file_writer(sha256, size) else {
        return false;
    };
    for h in hashes {
        let Some(data) = disk.get(h) else {
            return false;
        };
        if w.write(&data).is_err() {
            return false;
        }
    }
    if !w.finish() {
        return false;
    }
    for h in hashes {
        disk.demote_chunk(h);
    }
    true
}
