//! `prefetch`: warming the node's disk cache ahead of a job.
//!
//! Files are taken in the order given (a recorded trace replays a job's read order), their
//! chunks not yet cached are fetched in parallel, and small files that sit next to each other
//! in a pack are fetched together with one ranged GET per region. Every chunk is verified
//! against its SHA-256 before it is cached. Interrupted, it is simply run again: what is
//! cached is skipped.

use crate::cache::DiskCache;
use crate::format::{EntryKind, Manifest};
use crate::read::pack::{self, Region};
use crate::read::writes::keep_on_disk;
use crate::read::{locate, ContentError, Origins};
use crate::store::tier::Tier;
use crate::store::Store;
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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

/// Caches every chunk of the given file entries of `m` (in order) that the cache lacks.
pub async fn prefetch(
    store: &Store,
    tier: Option<Arc<Tier>>,
    cache: &Arc<DiskCache>,
    m: &Manifest,
    files: &[usize],
    jobs: usize,
    progress: &PrefetchProgress,
) -> Result<PrefetchReport, ContentError> {
    let mut report = PrefetchReport::default();
    let mut seen = HashSet::new();
    let mut regions: Vec<Region> = Vec::new();
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
            let mut at = locate(m, c);
            at.whole_file |= chunks.len == 1;
            pack::plan(&mut regions, at);
        }
    }
    let origins = Origins::from(store.clone()).with_tier(tier);
    let store = &origins;
    let total: u64 = regions.iter().map(Region::bytes).sum();
    progress.total_bytes.store(total, Ordering::Relaxed);
    report.requests = regions.len() as u64;
    let mut results = futures::stream::iter(regions)
        .map(|r| fetch_one(store, cache, r, progress))
        .buffer_unordered(jobs.max(1));
    while let Some(r) = results.next().await {
        report.fetched_bytes += r?;
    }
    cache.stats.save(cache.dir());
    Ok(report)
}

async fn fetch_one(
    store: &Origins,
    cache: &Arc<DiskCache>,
    region: Region,
    progress: &PrefetchProgress,
) -> Result<u64, ContentError> {
    let mut fetched = 0;
    for (member, data) in pack::fetch(store, &region).await? {
        let len = data.len() as u64;
        keep_on_disk(cache.clone(), member.hash, data, member.whole_file).await;
        fetched += len;
        progress.done_bytes.fetch_add(len, Ordering::Relaxed);
    }
    Ok(fetched)
}
