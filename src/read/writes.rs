//! Disk cache writes of verified bytes, off the reply path: started in the background, waited
//! for by whoever needs the cache complete.

use crate::cache::{DiskCache, Kind};
use crate::format::Sha256;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedSemaphorePermit;

/// The kind of entry verified bytes are cached as: a file entry when they are a whole file,
/// else a chunk entry.
fn kind(whole_file: bool) -> Kind {
    if whole_file {
        Kind::File
    } else {
        Kind::Chunk
    }
}

/// Caches verified bytes on disk (see [`kind`]) and waits until they are written.
pub async fn keep_on_disk(disk: Arc<DiskCache>, hash: Sha256, data: Bytes, whole_file: bool) {
    let kind = kind(whole_file);
    let _ = tokio::task::spawn_blocking(move || disk.put_as(kind, &hash, &data)).await;
}

/// Disk cache writes under way in the background, so that a read is answered as soon as its
/// chunk is verified, and so that whoever needs the cache complete (an unmount, a file about
/// to be assembled from its chunks) can wait for them.
#[derive(Default)]
pub struct Writes {
    /// Entries being written, by hash: how many writes (two fetches may write the same one),
    /// and the bytes, which a read may take while they are on their way to disk.
    pending: Mutex<HashMap<Sha256, (u32, Bytes)>>,
    done: tokio::sync::Notify,
}

impl Writes {
    /// Writes verified bytes to the disk cache in the background, holding `permit` (their
    /// share of the fetch budget) until they are on disk.
    pub fn start(
        self: &Arc<Self>,
        disk: Arc<DiskCache>,
        hash: Sha256,
        data: Bytes,
        whole_file: bool,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        self.lock().entry(hash).or_insert((0, data.clone())).0 += 1;
        let this = self.clone();
        tokio::spawn(async move {
            let kind = kind(whole_file);
            let _ = tokio::task::spawn_blocking(move || disk.put_as(kind, &hash, &data)).await;
            drop(permit);
            let mut pending = this.lock();
            if let Some((n, _)) = pending.get_mut(&hash) {
                *n -= 1;
                if *n == 0 {
                    pending.remove(&hash);
                }
            }
            drop(pending);
            this.done.notify_waiters();
        });
    }

    /// Whether an entry for `h` is being written.
    pub fn pending(&self, h: &Sha256) -> bool {
        self.lock().contains_key(h)
    }

    /// The bytes of an entry being written.
    pub fn data(&self, h: &Sha256) -> Option<Bytes> {
        self.lock().get(h).map(|(_, data)| data.clone())
    }

    /// Waits until no write of the entries `only` names (of any, if `None`) is under way.
    pub async fn settle(&self, only: Option<&[Sha256]>) {
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            let busy = {
                let pending = self.lock();
                match only {
                    None => !pending.is_empty(),
                    Some(hashes) => hashes.iter().any(|h| pending.contains_key(h)),
                }
            };
            if !busy {
                return;
            }
            done.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Sha256, (u32, Bytes)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}
