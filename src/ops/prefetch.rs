//! `prefetch`: warming the node's disk cache ahead of a job.
//!
//! Files are taken in the order given (a recorded trace replays a job's read order), their
//! chunks not yet cached are fetched in parallel, and small files that sit next to each other
//! in a pack are fetched together with one ranged GET per region. Every chunk is verified
//! against its SHA-256 before it is cached. Interrupted, it is simply run again: what is
//! cached is skipped.

use crate::cache::DiskCache;
use crate::content::{self, ContentError, Located};
use crate::format::{EntryKind, Location, Manifest, Sha256};
use crate::store::Store;
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The most bytes of neighbouring small files fetched with one request.
const REGION_MAX: u64 = 8 << 20;

#[derive(Debug, Default)]
pub struct PrefetchProgress {
    pub total_bytes: AtomicU64,
    pub done_bytes: AtomicU64,
}

#[derive(Debug, Default)]
pub struct PrefetchReport {
    pub files: u64,
    pub bytes: u64,
    pub cached_bytes: u64,
    pub fetched_bytes: u64,
    pub requests: u64,
}

/// One GET: a whole blob, or a region of a pack holding one or more small files.
struct Fetch {
    key: String,
    range: Option<std::ops::Range<u64>>,
    /// Each chunk in it: hash, offset inside the fetched bytes, length.
    members: Vec<(Sha256, u64, u32)>,
}

/// Caches every chunk of the given file entries of `m` (in order) that the cache lacks.
pub async fn prefetch(
    store: &Store,
    cache: &Arc<DiskCache>,
    m: &Manifest,
    files: &[usize],
    jobs: usize,
    progress: &PrefetchProgress,
) -> Result<PrefetchReport, ContentError> {
    let mut report = PrefetchReport::default();
    let mut seen = HashSet::new();
    let mut fetches: Vec<Fetch> = Vec::new();
    for &f in files {
        let EntryKind::File { size, chunks, .. } = m.entries[f].kind else {
            continue;
        };
        report.files += 1;
        report.bytes += size;
        for c in &m.chunks[chunks.range()] {
            if !seen.insert(c.hash) {
                continue;
            }
            if cache.on_disk(&c.hash) {
                report.cached_bytes += c.len as u64;
                continue;
            }
            let at = content::locate(m, c);
            // Coalesce with the previous fetch when this chunk continues its pack region.
            if let (Location::Pack { .. }, Some(last)) = (c.location, fetches.last_mut()) {
                if let (Some(r), Some(new)) = (&mut last.range, &at.range) {
                    if last.key == at.key && r.end == new.start && new.end - r.start <= REGION_MAX {
                        last.members.push((c.hash, new.start - r.start, c.len));
                        r.end = new.end;
                        continue;
                    }
                }
            }
            fetches.push(Fetch {
                key: at.key,
                range: at.range,
                members: vec![(c.hash, 0, c.len)],
            });
        }
    }
    let total: u64 = fetches
        .iter()
        .flat_map(|f| f.members.iter().map(|m| m.2 as u64))
        .sum();
    progress.total_bytes.store(total, Ordering::Relaxed);
    report.requests = fetches.len() as u64;
    let mut results = futures::stream::iter(fetches)
        .map(|f| fetch_one(store, cache, f, progress))
        .buffer_unordered(jobs.max(1));
    while let Some(r) = results.next().await {
        report.fetched_bytes += r?;
    }
    cache.stats.save(cache.dir());
    Ok(report)
}

async fn fetch_one(
    store: &Store,
    cache: &Arc<DiskCache>,
    f: Fetch,
    progress: &PrefetchProgress,
) -> Result<u64, ContentError> {
    let data = match (&f.range, f.members.as_slice()) {
        // One chunk: the verified fetch, with its refetch on a mismatch.
        (_, [(hash, _, len)]) => {
            let at = Located {
                key: f.key.clone(),
                range: f.range.clone(),
                hash: *hash,
                len: *len,
            };
            content::fetch(store, &at).await?
        }
        (Some(r), _) => store.get_range(&f.key, r.clone()).await?,
        (None, _) => store.get(&f.key).await?,
    };
    let mut fetched = 0;
    for (hash, off, len) in f.members {
        let Some(piece) = data.get(off as usize..(off + len as u64) as usize) else {
            return Err(corrupt(&f.key, hash));
        };
        if f.range.is_some() && Sha256::of(piece) != hash {
            // A damaged region: fetch this chunk on its own, which retries and reports.
            let at = Located {
                key: f.key.clone(),
                range: f
                    .range
                    .as_ref()
                    .map(|r| r.start + off..r.start + off + len as u64),
                hash,
                len,
            };
            let good = content::fetch(store, &at).await?;
            put(cache, hash, good).await;
        } else {
            put(
                cache,
                hash,
                data.slice(off as usize..(off + len as u64) as usize),
            )
            .await;
        }
        fetched += len as u64;
        progress.done_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
    Ok(fetched)
}

async fn put(cache: &Arc<DiskCache>, hash: Sha256, data: bytes::Bytes) {
    let c = cache.clone();
    let _ = tokio::task::spawn_blocking(move || c.put(&hash, &data)).await;
}

fn corrupt(key: &str, hash: Sha256) -> ContentError {
    ContentError::Corrupt {
        key: key.to_string(),
        start: 0,
        end: 0,
        expected: hash,
    }
}
