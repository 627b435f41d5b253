//! Read-ahead: fetching what a reader is about to ask for while it reads what it has.
//!
//! Two patterns matter for training jobs:
//! - **Sequential reads of a large file.** Each open file tracks where its last read ended;
//!   reads that continue from there grow a read-ahead window geometrically (1 MiB, 2, 4 … up
//!   to 64 MiB), whose chunks are fetched in parallel, from the disk cache or the store, into
//!   memory. A read elsewhere (a seek) resets it, so random access fetches nothing extra.
//! - **Many small files of one directory**, as a DataLoader reads them. They sit next to each
//!   other in one pack, so a miss on one fetches the pack region holding its following
//!   neighbours with one ranged GET, splits it, verifies each file and caches it.
//!
//! Reads and read-ahead share the fetch budget ([`super::budget`]): reads wait for their
//! share, read-ahead is skipped, never queued, when it is used up. Prefetched data lands in the
//! disk cache, so it is never fetched twice.

use super::chunks::ChunkReader;
use super::fetch;
use super::pack::{self, Region};
use crate::format::{EntryKind, Manifest};
use std::ops::Range;
use std::sync::Arc;

const FIRST_WINDOW: u64 = 1 << 20;
const MAX_WINDOW: u64 = 64 << 20;

/// Where an open file's reads have been going.
#[derive(Debug, Default)]
pub struct Readahead {
    next: u64,
    window: u64,
    prefetched_to: u64,
}

impl Readahead {
    /// Whether the last read continued the one before it.
    pub fn sequential(&self) -> bool {
        self.window > 0
    }

    /// Records a read and returns the byte range to fetch ahead of it, if any.
    pub fn on_read(&mut self, offset: u64, size: u32, file_size: u64) -> Option<Range<u64>> {
        let end = (offset + size as u64).min(file_size);
        if offset == self.next {
            self.window = (self.window * 2).clamp(FIRST_WINDOW, MAX_WINDOW);
        } else {
            self.window = 0;
            self.prefetched_to = 0;
        }
        self.next = end;
        if self.window == 0 {
            return None;
        }
        let from = end.max(self.prefetched_to);
        let to = (end + self.window).min(file_size);
        if from >= to {
            return None;
        }
        self.prefetched_to = to;
        Some(from..to)
    }
}

/// Starts read-ahead within the reader's memory budget.
pub struct Prefetcher {
    reader: Arc<ChunkReader>,
}

impl Prefetcher {
    pub fn new(reader: Arc<ChunkReader>) -> Prefetcher {
        Prefetcher { reader }
    }

    /// Starts fetching the chunks of `file` that overlap `range` and are not yet at hand.
    pub fn ahead(&self, m: &Arc<Manifest>, file: usize, range: Range<u64>) {
        let EntryKind::File { chunks, .. } = m.entries[file].kind else {
            return;
        };
        for c in &m.chunks[chunks.range()] {
            let (start, end) = (c.file_offset, c.file_offset + c.len as u64);
            // Chunks in the disk cache are read ahead too: into memory, off the reader's path.
            if end <= range.start || start >= range.end || self.reader.in_memory(&c.hash) {
                continue;
            }
            let reader = self.reader.clone();
            let at = fetch::locate(m, c);
            tokio::spawn(async move {
                if let Some(Err(e)) = reader.prefetch(at).await {
                    tracing::debug!("read-ahead failed: {e}");
                }
            });
        }
    }

    /// After a miss on small file `file`, fetches the pack region of the neighbours that follow
    /// it in its directory, with one ranged GET.
    pub fn neighbours(&self, m: &Arc<Manifest>, file: usize) {
        let Some(region) = neighbour_region(m, file, &self.reader) else {
            return;
        };
        let Some(permit) = self.reader.budget().try_take(region.bytes()) else {
            return;
        };
        self.reader.fetch_region(region, permit);
    }
}

/// The contiguous pack region holding the small files after `file` in its directory that are
/// not at hand yet, up to [`pack::REGION_MAX`] bytes.
fn neighbour_region(m: &Manifest, file: usize, reader: &ChunkReader) -> Option<Region> {
    let (pack, offset, first) = pack::packed(m, file)?;
    let siblings = m.children(m.entries[file].parent as usize);
    let mut cursor = offset + first.len as u64;
    let mut regions = Vec::new();
    for i in (file + 1)..siblings.end {
        let Some((p, off, c)) = pack::packed(m, i) else {
            break;
        };
        if p != pack || off != cursor {
            break;
        }
        cursor += c.len as u64;
        if reader.has(&c.hash) {
            if regions.is_empty() {
                continue;
            }
            break;
        }
        pack::plan(&mut regions, fetch::locate(m, c));
        if regions.len() > 1 {
            break;
        }
    }
    regions.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_grows_on_sequential_reads_and_resets_on_a_seek() {
        let mut r = Readahead::default();
        let size = 1 << 30;
        let step = 128 << 10;
        let first = r.on_read(0, step, size).unwrap();
        assert_eq!(first, step as u64..step as u64 + FIRST_WINDOW);
        let mut last = first;
        let mut off = step as u64;
        for _ in 0..20 {
            if let Some(next) = r.on_read(off, step, size) {
                assert!(next.start >= last.end, "refetched {next:?} after {last:?}");
                last = next;
            }
            off += step as u64;
        }
        assert!(r.window == MAX_WINDOW || r.window > 8 * FIRST_WINDOW);
        // A seek: nothing ahead of a random read.
        assert_eq!(r.on_read(700 << 20, 4096, size), None);
        assert_eq!(r.window, 0);
        // Ahead of the end of the file: nothing.
        let mut r = Readahead::default();
        assert_eq!(r.on_read(0, 100, 100), None);
    }
}
