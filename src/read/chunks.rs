//! The byte range of a file, assembled from verified chunks.
//!
//! Everything that fetches content goes through [`ChunkReader::chunk`], which looks in three
//! places in turn: a small in-memory LRU of verified chunks (so the many small kernel reads
//! inside one multi-MiB chunk cost one lookup), the node's disk cache, and the store (verified
//! against the chunk's SHA-256, then written to the disk cache). Concurrent requests for the
//! same chunk are merged into one fetch. The one exception is a part of a chunk that only the
//! disk cache holds, read anywhere but at the start of the chunk by a sequential reader: it
//! reads just the checked blocks it needs from the entry.

use super::budget::FetchBudget;
use super::fetch::{self, ContentError, Located, Origins};
use super::memory::MemoryCache;
use super::pack::{self, Member, Region};
use super::writes::Writes;
use crate::cache::{DiskCache, Kind};
use crate::format::{ChunkRef, EntryKind, Manifest, Sha256};
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;

type Fetch = Shared<BoxFuture<'static, Result<Bytes, ContentError>>>;

/// How long after a failed fetch a new fetch of the same chunk counts as a retry. When a read
/// fails, the kernel at once retries the page it was reading; without this, a store that is
/// down would make every failed read wait out the timeout twice.
const FAILURE_MEMORY: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a retry may take before it fails with the first error: long enough for a store
/// that is back to answer, short enough that a dead one fails a read within the timeout plus
/// this.
const RETRY_DEADLINE: std::time::Duration = std::time::Duration::from_millis(500);

/// How far behind a sequential reader its chunks leave memory (see [`ChunkReader::consumed`]):
/// the kernel's read-ahead requests in flight span 2 MiB at most (1 MiB requests).
const BEHIND: u64 = 8 << 20;

/// Verified chunks from memory, the disk cache or the store, one fetch per chunk at a time.
pub struct ChunkReader {
    origins: Origins,
    disk: Option<Arc<DiskCache>>,
    budget: Arc<FetchBudget>,
    writes: Arc<Writes>,
    cache: Mutex<MemoryCache>,
    in_flight: Mutex<HashMap<Sha256, Fetch>>,
    /// Chunks whose last fetch failed, when, and why (see [`FAILURE_MEMORY`]).
    failed: Mutex<HashMap<Sha256, (Instant, ContentError)>>,
}

impl ChunkReader {
    /// `memory_budget` bounds the verified chunks kept in memory; `fetch_budget` the bytes
    /// being fetched (from disk or store) at once, demand reads and read-ahead together.
    pub fn new(
        origins: impl Into<Origins>,
        memory_budget: u64,
        disk: Option<Arc<DiskCache>>,
        fetch_budget: u64,
    ) -> ChunkReader {
        ChunkReader {
            origins: origins.into(),
            disk,
            budget: Arc::new(FetchBudget::new(fetch_budget)),
            writes: Arc::default(),
            cache: Mutex::new(MemoryCache::new(memory_budget)),
            in_flight: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
        }
    }

    /// Bytes `offset..offset + size` of file entry `file` (fewer at the end of the file).
    /// `sequential` says the reader goes on from here, so whole chunks are worth loading.
    pub async fn read(
        &self,
        m: &Manifest,
        file: usize,
        offset: u64,
        size: u32,
        sequential: bool,
    ) -> Result<Bytes, ContentError> {
        let EntryKind::File {
            size: file_size,
            chunks,
            ..
        } = m.entries[file].kind
        else {
            return Ok(Bytes::new());
        };
        if offset >= file_size || size == 0 {
            return Ok(Bytes::new());
        }
        let end = file_size.min(offset + size as u64);
        let run = &m.chunks[chunks.range()];
        let first = run.partition_point(|c| c.file_offset + c.len as u64 <= offset);
        let needed: Vec<_> = run[first..]
            .iter()
            .take_while(|c| c.file_offset < end)
            .collect();
        let whole_file = run.len() == 1;
        let mut parts = futures::future::try_join_all(needed.iter().map(|c| {
            let from = offset.max(c.file_offset) - c.file_offset;
            let to = end.min(c.file_offset + c.len as u64) - c.file_offset;
            let mut at = fetch::locate(m, c);
            at.whole_file |= whole_file;
            self.part(at, from..to, sequential)
        }))
        .await?;
        if sequential {
            self.consumed(run, offset, end, file_size);
        }
        // One chunk (the usual case) is served without copying.
        if parts.len() == 1 {
            return Ok(parts.pop().unwrap_or_default());
        }
        // A read across a chunk boundary is put together in a pooled buffer: a fresh 1 MiB
        // allocation for each would be mapped, faulted in and unmapped every time.
        let mut out = crate::buffers::shared().filling((end - offset) as usize);
        for p in &parts {
            out.extend(p);
        }
        Ok(out.freeze())
    }

    /// Lets go of the chunks a sequential reader of `run` (a file's chunks, `file_size`
    /// bytes) is done with, after its read of `offset..end`: those wholly more than
    /// [`BEHIND`] behind it, and at the end of the file all of them. Kept, they would fill
    /// the memory bound with bytes the kernel holds in its page cache, crowding out other
    /// readers' read-ahead, and make the bound the daemon's memory rather than what its
    /// readers need. The margin is for the kernel's read-ahead requests, which arrive in
    /// parallel: one for a page just behind may still be on its way.
    fn consumed(&self, run: &[ChunkRef], offset: u64, end: u64, file_size: u64) {
        let behind = if end >= file_size {
            file_size
        } else {
            offset.saturating_sub(BEHIND)
        };
        let done = run.partition_point(|c| c.file_offset + c.len as u64 <= behind);
        let mut cache = self.lock_cache();
        // Newest first: the older ones went at earlier reads.
        for c in run[..done].iter().rev() {
            if !cache.remove(&c.hash) {
                break;
            }
        }
    }

    /// Bytes `range` of a chunk. A part of a chunk that is neither in memory nor on its way
    /// there is read from the disk cache alone (a chunk entry's blocks checked, a file entry's
    /// size and seal checked as at a passthrough open), so it costs that part of the cache
    /// entry, not the whole chunk: a random read, and a sequential read past the
    /// start of a chunk whose bytes left memory before the reader was done with them (many
    /// readers sharing the memory bound). Loading the whole chunk again there would read it
    /// again for every request, and the bytes in replies would go past the memory bound.
    /// A sequential read at the start of a chunk loads it whole, and everything else goes
    /// through [`chunk`](Self::chunk).
    async fn part(
        &self,
        at: Located,
        range: Range<u64>,
        sequential: bool,
    ) -> Result<Bytes, ContentError> {
        let partial = range.end - range.start < at.len as u64;
        let by_blocks = partial && !(sequential && range.start == 0);
        let disk = self
            .disk
            .as_ref()
            .filter(|_| by_blocks && !self.in_memory(&at.hash));
        // A chunk entry, its blocks checked; else a file entry of the same bytes.
        let entry = disk.and_then(|d| {
            [Kind::Chunk, Kind::File]
                .into_iter()
                .find(|k| d.contains_kind(*k, &at.hash))
                .map(|k| (d.clone(), k))
        });
        if let Some((disk, kind)) = entry {
            let (hash, len, r) = (at.hash, at.len as u64, range.clone());
            // A damaged entry is dropped; the chunk is then fetched whole below.
            if let Ok(Some(data)) = tokio::task::spawn_blocking(move || match kind {
                Kind::File => disk.get_file_range(&hash, len, r),
                _ => disk.get_range(&hash, r),
            })
            .await
            {
                return Ok(data);
            }
        }
        let data = self.chunk(at).await?;
        Ok(data.slice(range.start as usize..range.end as usize))
    }

    /// One verified chunk: from memory, from a fetch already under way, or from the disk
    /// cache or the store, waiting for its share of the memory budget first.
    pub async fn chunk(&self, at: Located) -> Result<Bytes, ContentError> {
        self.get(at, true)
            .await
            .expect("a read that waits for budget always runs")
    }

    /// Like [`chunk`](Self::chunk), for read-ahead: `None` if the budget is used up right now
    /// (read-ahead is skipped, never queued).
    pub async fn prefetch(&self, at: Located) -> Option<Result<Bytes, ContentError>> {
        self.get(at, false).await
    }

    async fn get(&self, at: Located, wait: bool) -> Option<Result<Bytes, ContentError>> {
        if let Some(b) = self.lock_cache().get(&at.hash) {
            return Some(Ok(b));
        }
        if let Some(b) = self.writes.data(&at.hash) {
            self.lock_cache().insert(at.hash, b.clone());
            return Some(Ok(b));
        }
        let hash = at.hash;
        let mut retry_of = self.recent_failure(&hash);
        let mut permit = None;
        let fetch = loop {
            if let Some(f) = self.lock_in_flight().get(&hash) {
                break f.clone();
            }
            match permit.take() {
                None => {
                    permit = Some(if wait {
                        self.budget.take(at.len as u64).await
                    } else {
                        self.budget.try_take(at.len as u64)?
                    });
                }
                Some(p) => {
                    let origins = self.origins.clone();
                    let disk = self.disk.clone();
                    let writes = self.writes.clone();
                    let fetch = fetch_through(origins, disk, writes, at, p);
                    let f = bounded_retry(fetch, retry_of.take()).boxed().shared();
                    self.lock_in_flight().insert(hash, f.clone());
                    break f;
                }
            }
        };
        let result = fetch.await;
        self.lock_in_flight().remove(&hash);
        match &result {
            Ok(data) => self.lock_cache().insert(hash, data.clone()),
            Err(e) => {
                let mut failed = self.lock_failed();
                failed.retain(|_, (at, _)| at.elapsed() < FAILURE_MEMORY);
                failed.insert(hash, (Instant::now(), e.clone()));
            }
        }
        Some(result)
    }

    /// The error of a fetch of this chunk that failed a moment ago (see [`FAILURE_MEMORY`]).
    fn recent_failure(&self, hash: &Sha256) -> Option<ContentError> {
        let failed = self.lock_failed();
        let (at, e) = failed.get(hash)?;
        (at.elapsed() < FAILURE_MEMORY).then(|| e.clone())
    }

    fn lock_failed(&self) -> std::sync::MutexGuard<'_, HashMap<Sha256, (Instant, ContentError)>> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<Sha256, Fetch>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn budget(&self) -> &Arc<FetchBudget> {
        &self.budget
    }

    /// The most bytes of verified chunks kept in memory.
    pub fn memory_bound(&self) -> u64 {
        self.lock_cache().bound()
    }

    /// The disk cache writes this reader has under way.
    pub fn writes(&self) -> &Arc<Writes> {
        &self.writes
    }

    /// Whether a chunk is in memory, on disk or on its way: fetching it from the store ahead
    /// of time would be waste.
    pub fn has(&self, h: &Sha256) -> bool {
        self.in_memory(h) || self.disk.as_ref().is_some_and(|d| d.contains(h))
    }

    /// Whether a chunk is in memory or on its way there: reading it ahead would be waste.
    pub fn in_memory(&self, h: &Sha256) -> bool {
        self.lock_cache().contains(h) || self.lock_in_flight().contains_key(h)
    }

    /// Fetches a pack region in the background (holding `permit`, its share of the budget),
    /// caching each member on disk and in memory. Its members count as being fetched until it
    /// is done: a read of one of them waits for this fetch instead of starting its own, and
    /// other region fetches leave them out, so no member is fetched or written twice.
    pub fn fetch_region(
        self: &Arc<Self>,
        region: Region,
        permit: OwnedSemaphorePermit,
    ) -> tokio::task::JoinHandle<()> {
        let members = region.members.clone();
        let origins = self.origins.clone();
        let all = async move { pack::fetch(&origins, &region).await.map(Arc::new) }
            .boxed()
            .shared();
        let mut ours = Vec::new();
        {
            let mut in_flight = self.lock_in_flight();
            for (i, m) in members.iter().enumerate() {
                if in_flight.contains_key(&m.hash) {
                    continue;
                }
                let one: BoxFuture<'static, Result<Bytes, ContentError>> = all
                    .clone()
                    .map(move |r: Result<Arc<Vec<(Member, Bytes)>>, ContentError>| {
                        r.map(|v| v[i].1.clone())
                    })
                    .boxed();
                in_flight.insert(m.hash, one.shared());
                ours.push(m.hash);
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            let result = all.await;
            let mut in_flight = this.lock_in_flight();
            for h in &ours {
                in_flight.remove(h);
            }
            drop(in_flight);
            match result {
                Ok(fetched) => {
                    for (m, data) in fetched.iter() {
                        this.remember(m.hash, data.clone());
                        if let Some(disk) = &this.disk {
                            this.writes.start(
                                disk.clone(),
                                m.hash,
                                data.clone(),
                                m.whole_file,
                                None,
                            );
                        }
                    }
                }
                Err(e) => tracing::debug!("neighbour prefetch failed: {e}"),
            }
            drop(permit);
        })
    }

    /// Keeps verified bytes in memory.
    fn remember(&self, h: Sha256, data: Bytes) {
        self.lock_cache().insert(h, data);
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, MemoryCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// From the disk cache if it has the chunk, else from the store, then into the disk cache.
/// The permit (its bytes of the budget) is held until the chunk is in hand, and, for a chunk
/// from the store, until it is on disk.
async fn fetch_through(
    origins: Origins,
    disk: Option<Arc<DiskCache>>,
    writes: Arc<Writes>,
    at: Located,
    permit: OwnedSemaphorePermit,
) -> Result<Bytes, ContentError> {
    let Some(disk) = disk else {
        return fetch::fetch(&origins, &at).await;
    };
    let hash = at.hash;
    let d = disk.clone();
    if let Ok(Some(data)) = tokio::task::spawn_blocking(move || d.get(&hash)).await {
        if data.len() == at.len as usize {
            return Ok(data);
        }
    }
    let data = fetch::fetch(&origins, &at).await?;
    // Written once the read is answered, off its path.
    writes.start(disk, hash, data.clone(), at.whole_file, Some(permit));
    Ok(data)
}

/// A fetch; if it retries one that failed a moment ago (`retry_of`), it gets
/// [`RETRY_DEADLINE`] rather than the store's whole timeout, and then fails with that error.
async fn bounded_retry(
    fetch: impl Future<Output = Result<Bytes, ContentError>>,
    retry_of: Option<ContentError>,
) -> Result<Bytes, ContentError> {
    match retry_of {
        None => fetch.await,
        Some(first) => tokio::time::timeout(RETRY_DEADLINE, fetch)
            .await
            .unwrap_or(Err(first)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::tests::build;
    use crate::format::manifest::Run;
    use crate::format::Location;
    use crate::store::{keys, Store};

    /// A manifest with one file `f` cut at `cuts`, its chunks stored as blobs.
    async fn chunked_file(store: &Store, data: &[u8], cuts: &[usize]) -> Manifest {
        let mut m = build(&["f"]);
        m.chunks.to_mut().clear();
        let mut bounds = cuts.to_vec();
        bounds.push(data.len());
        for w in bounds.windows(2) {
            let piece = &data[w[0]..w[1]];
            let hash = Sha256::of(piece);
            store
                .put(&keys::blob(&hash), Bytes::copy_from_slice(piece))
                .await
                .unwrap();
            m.chunks.push(ChunkRef {
                hash,
                file_offset: w[0] as u64,
                len: piece.len() as u32,
                location: Location::Blob,
            });
        }
        m.entries[1].kind = EntryKind::File {
            size: data.len() as u64,
            sha256: Sha256::of(data),
            chunks: Run {
                start: 0,
                len: m.chunks.len() as u32,
            },
        };
        m.validate().unwrap();
        m
    }

    #[tokio::test]
    async fn reads_any_range_across_chunks() {
        let store = Store::open("memory://", &Default::default()).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let m = chunked_file(&store, &data, &[0, 3000, 3001, 7000]).await;
        let r = ChunkReader::new(store, 4096, None, 1 << 20);
        let cases = [
            (0, 10_000),
            (2999, 3),
            (3000, 1),
            (6999, 5000),
            (9999, 10),
            (10_000, 5),
            (123, 0),
        ];
        for (off, len) in cases {
            let got = r.read(&m, 1, off, len, true).await.unwrap();
            let end = (off as usize + len as usize).min(data.len());
            let want = data.get(off as usize..end).unwrap_or(&[]);
            assert_eq!(&got[..], want, "read({off}, {len})");
        }
        assert!(r.lock_cache().bytes() <= 4096);
    }

    /// A sequential reader's chunks leave memory once it is [`BEHIND`] past them, and all at
    /// the end of the file; a random reader's stay.
    #[tokio::test]
    async fn chunks_a_sequential_reader_is_done_with_leave_memory() {
        let store = Store::open("memory://", &Default::default()).unwrap();
        let mib = 1 << 20;
        let data: Vec<u8> = (0..20 * mib as u32).map(|i| (i * 7 % 251) as u8).collect();
        let m = chunked_file(&store, &data, &[0, 3 * mib, 6 * mib, 9 * mib]).await;
        let r = ChunkReader::new(store, 64 << 20, None, 64 << 20);
        let held = |r: &ChunkReader| -> Vec<bool> {
            m.chunks.iter().map(|c| r.in_memory(&c.hash)).collect()
        };
        for (off, want) in [
            (0, [true, false, false, false]),
            (4, [true, true, false, false]),
            (7, [true, true, true, false]),
            (10, [true, true, true, true]),
            (11, [false, true, true, true]),
            (15, [false, false, true, true]),
            (19, [false, false, false, false]),
        ] {
            let off = off * mib as u64;
            let got = r.read(&m, 1, off, mib as u32, true).await.unwrap();
            assert!(got[..] == data[off as usize..off as usize + mib]);
            assert_eq!(held(&r), want, "after a read at {} MiB", off >> 20);
        }
        r.read(&m, 1, 10 * mib as u64, 10 * mib as u32, false)
            .await
            .unwrap();
        assert!(held(&r)[3], "a random read keeps its chunk");
    }

    /// The kernel retries a failed page at once: against a store that still does not answer,
    /// that retry gives up after the short deadline with the first error; against one that is
    /// back, it reads.
    #[tokio::test]
    async fn a_retry_of_a_failed_fetch_is_bounded() {
        let first = ContentError::Corrupt {
            key: "k".into(),
            start: 0,
            end: 1,
            expected: Sha256::default(),
        };
        let t = Instant::now();
        let hung = futures::future::pending::<Result<Bytes, ContentError>>();
        let e = bounded_retry(hung, Some(first.clone())).await.unwrap_err();
        assert!(matches!(e, ContentError::Corrupt { .. }), "{e}");
        assert!(t.elapsed() >= RETRY_DEADLINE && t.elapsed() < 2 * RETRY_DEADLINE);
        let ok = bounded_retry(async { Ok(Bytes::from_static(b"x")) }, Some(first)).await;
        assert_eq!(ok.unwrap(), Bytes::from_static(b"x"));

        // Through the reader: a failure is remembered for its chunk, and a read once the
        // object is back succeeds at once.
        let store = Store::open("memory://", &Default::default()).unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 13) as u8).collect();
        let m = chunked_file(&store, &data, &[0]).await;
        let key = keys::blob(&m.chunks[0].hash);
        store.delete(&key).await.unwrap();
        let r = ChunkReader::new(store.clone(), 1 << 20, None, 1 << 20);
        assert!(r.read(&m, 1, 0, 100, true).await.is_err());
        assert!(r.recent_failure(&m.chunks[0].hash).is_some());
        store
            .put(&key, Bytes::copy_from_slice(&data))
            .await
            .unwrap();
        assert_eq!(
            &r.read(&m, 1, 0, 100, true).await.unwrap()[..],
            &data[..100]
        );
    }

    #[tokio::test]
    async fn damaged_chunks_are_errors_not_data() {
        let store = Store::open("memory://", &Default::default()).unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let m = chunked_file(&store, &data, &[0, 2500]).await;
        let key = keys::blob(&m.chunks[1].hash);
        store.put(&key, Bytes::from(vec![8u8; 2500])).await.unwrap();
        let r = ChunkReader::new(store, 1 << 20, None, 1 << 20);
        assert_eq!(r.read(&m, 1, 0, 100, true).await.unwrap().len(), 100);
        let e = r.read(&m, 1, 2000, 1000, true).await.unwrap_err();
        assert!(matches!(e, ContentError::Corrupt { .. }), "{e}");
    }

    #[tokio::test]
    async fn reads_inside_a_cached_chunk_read_only_the_blocks_they_need() {
        let store = Store::open("memory://", &Default::default()).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 253) as u8).collect();
        let m = chunked_file(&store, &data, &[0]).await;
        let hash = m.chunks[0].hash;
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::open(dir.path(), crate::cache::CacheSize::Bytes(1 << 30)).unwrap();
        disk.put(&hash, &data);
        // Only the disk cache can answer now.
        store.delete(&keys::blob(&hash)).await.unwrap();
        let r = ChunkReader::new(store, 1 << 20, Some(disk.clone()), 1 << 20);
        let got = r.read(&m, 1, 70_000, 4096, false).await.unwrap();
        assert_eq!(&got[..], &data[70_000..74_096]);
        assert!(!r.in_memory(&hash), "a random read loads no whole chunk");
        assert_eq!(disk.stats.snapshot().hit_bytes, 4096);
        // A sequential read does: the reads after it are served from memory.
        let got = r.read(&m, 1, 0, 4096, true).await.unwrap();
        assert_eq!(&got[..], &data[..4096]);
        assert!(r.in_memory(&hash));
        assert_eq!(disk.stats.snapshot().hit_bytes, 4096 + data.len() as u64);
        // A sequential reader whose chunk left memory before it was done reads on by blocks:
        // loading the chunk whole again for each of its requests would read it many times.
        r.lock_cache().remove(&hash);
        let got = r.read(&m, 1, 100_000, 4096, true).await.unwrap();
        assert_eq!(&got[..], &data[100_000..104_096]);
        assert!(!r.in_memory(&hash));
        assert_eq!(disk.stats.snapshot().hit_bytes, 8192 + data.len() as u64);
        // A file entry of the same bytes serves parts as well.
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskCache::open(dir.path(), crate::cache::CacheSize::Bytes(1 << 30)).unwrap();
        disk.put_file(&hash, &data);
        let r = ChunkReader::new(r.origins.clone(), 1 << 20, Some(disk.clone()), 1 << 20);
        let got = r.read(&m, 1, 200_000, 4096, false).await.unwrap();
        assert_eq!(&got[..], &data[200_000..204_096]);
        assert!(!r.in_memory(&hash));
        assert_eq!(disk.stats.snapshot().hit_bytes, 4096);
    }
}
