//! A read order handed to a running mount: the files a job will read, in the order it will
//! read them, known before its first read (a shuffled sampler draws a whole epoch at once).
//!
//! The mount fetches ahead of its readers in that order: from the place of the furthest file
//! opened so far, the files that follow, up to a window of bytes, with many requests at once,
//! each holding its share of the fetch budget while it runs. What it fetches lands in the disk
//! cache (whole small files as file entries, which the kernel then serves by passthrough) and
//! in the memory cache; a reader that opens a file whose fetch is under way waits for that
//! fetch instead of starting its own. The window keeps the order from running far ahead of the
//! job and evicting what it is about to read; readers that overtake it leave it behind: the
//! files they passed are not fetched.

use super::chunks::ChunkReader;
use super::fetch;
use super::pack;
use crate::format::{EntryKind, Manifest};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::collections::HashMap;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Requests an order keeps in flight at most.
pub const REQUESTS: usize = 16;
/// The window, in bytes of files ahead of the furthest one opened, at most.
pub const AHEAD_MAX: u64 = 256 << 20;
/// How long a fetch that found the budget used up waits before it asks again.
const BUDGET_RETRY: Duration = Duration::from_millis(5);

/// The files of one version in the order they will be read, and how far the readers got.
pub struct Order {
    files: Vec<usize>,
    /// Each file's first place in `files`.
    place: HashMap<usize, usize>,
    /// One past the place of the furthest file opened.
    reached: AtomicUsize,
    moved: Notify,
    stopped: AtomicBool,
}

impl Order {
    /// An order of file entries (`files`, in reading order).
    pub fn new(files: Vec<usize>) -> Arc<Order> {
        let mut place = HashMap::with_capacity(files.len());
        for (i, &f) in files.iter().enumerate() {
            place.entry(f).or_insert(i);
        }
        Arc::new(Order {
            files,
            place,
            reached: AtomicUsize::new(0),
            moved: Notify::new(),
            stopped: AtomicBool::new(false),
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Whether file `file` is in the order (its neighbours in a pack need not be guessed at).
    pub fn covers(&self, file: usize) -> bool {
        self.place.contains_key(&file)
    }

    /// A reader opened file `file`: the window moves on if it is further than any before.
    pub fn opened(&self, file: usize) {
        if let Some(&p) = self.place.get(&file) {
            if self.reached.fetch_max(p + 1, Ordering::Relaxed) < p + 1 {
                self.moved.notify_one();
            }
        }
    }

    /// Ends the fetching: another order replaced this one, or its version is no longer read.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.moved.notify_one();
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

/// What an order fetched, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    pub files: u64,
    pub bytes: u64,
}

/// Fetches ahead of the readers of `m` in `order`, at most `ahead` bytes of files past the
/// furthest one opened, until the order is done or stopped.
pub async fn drive(order: Arc<Order>, m: Arc<Manifest>, chunks: Arc<ChunkReader>, ahead: u64) {
    let size = |f: usize| match m.entries[f].kind {
        EntryKind::File { size, .. } => size,
        _ => 0,
    };
    // Bytes of the files before each place.
    let mut before = Vec::with_capacity(order.files.len() + 1);
    before.push(0u64);
    for &f in &order.files {
        before.push(before.last().copied().unwrap_or(0) + size(f));
    }
    let mut next = 0;
    let mut running = FuturesUnordered::new();
    loop {
        if order.stopped() {
            return;
        }
        let reached = order.reached.load(Ordering::Relaxed);
        next = next.max(reached);
        while next < order.files.len()
            && running.len() < REQUESTS
            && (next == reached || before[next + 1] - before[reached] <= ahead)
        {
            running.push(fetch_file(&m, &chunks, order.files[next]));
            next += 1;
        }
        if next >= order.files.len() && running.is_empty() {
            return;
        }
        tokio::select! {
            Some(got) = running.next(), if !running.is_empty() => {
                if got.files > 0 {
                    metrics::counter!(crate::metrics::ORDER_FILES).increment(got.files);
                    metrics::counter!(crate::metrics::ORDER_BYTES).increment(got.bytes);
                }
            }
            _ = order.moved.notified() => {}
        }
    }
}

/// Fetches what file `file` lacks into the caches; what it fetched.
fn fetch_file(
    m: &Arc<Manifest>,
    chunks: &Arc<ChunkReader>,
    file: usize,
) -> impl std::future::Future<Output = Fetched> + Send + 'static {
    let wanted: Vec<fetch::Located> = match m.entries[file].kind {
        EntryKind::File { chunks: run, .. } => m.chunks[run.range()]
            .iter()
            .filter(|c| !chunks.has(&c.hash))
            .map(|c| {
                let mut at = fetch::locate(m, c);
                at.whole_file |= run.len == 1;
                at
            })
            .collect(),
        _ => Vec::new(),
    };
    let chunks = chunks.clone();
    async move {
        let mut got = Fetched::default();
        for at in wanted {
            let len = at.len as u64;
            let done = match at.range {
                // A range of a pack (or of an imported object): fetched as a region of one,
                // so that its fetch is shared with readers and cached like a neighbour's.
                Some(_) => {
                    let mut regions = Vec::new();
                    pack::plan(&mut regions, at);
                    let Some(region) = regions.pop() else {
                        continue;
                    };
                    let permit = loop {
                        if let Some(p) = chunks.budget().try_take(region.bytes()) {
                            break p;
                        }
                        tokio::time::sleep(BUDGET_RETRY).await;
                    };
                    chunks.fetch_region(region, permit).await.is_ok()
                }
                None => loop {
                    match chunks.prefetch(at.clone()).await {
                        Some(r) => break r.is_ok(),
                        None => tokio::time::sleep(BUDGET_RETRY).await,
                    }
                },
            };
            if done {
                got.bytes += len;
            }
        }
        got.files = u64::from(got.bytes > 0);
        got
    }
}

/// Skipped lines shown in a report.
const SHOWN: usize = 3;

/// The files a list names in `m`, in its order: one path per line, relative to the root
/// (leading and doubled `/` ignored); empty lines and `#` lines are not paths.
#[derive(Debug, Default)]
pub struct Listed {
    pub files: Vec<usize>,
    /// Lines that name no file.
    pub skipped: usize,
    /// The first few of them: (line number, the line, why).
    first_skipped: Vec<(usize, String, &'static str)>,
    /// Lines read so far (numbers continue across [`Listed::add`] calls).
    lines: usize,
}

impl Listed {
    /// Reads the list `text` (or the next piece of it, which ends at a line's end).
    pub fn add(&mut self, m: &Manifest, text: impl BufRead) -> std::io::Result<()> {
        for line in text.split(b'\n') {
            let line = line?;
            self.lines += 1;
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            let parts: Vec<&[u8]> = line
                .split(|&b| b == b'/')
                .filter(|p| !p.is_empty())
                .collect();
            let why = match m.lookup(&parts).map(|i| (i, &m.entries[i].kind)) {
                Some((i, EntryKind::File { .. })) => {
                    self.files.push(i);
                    continue;
                }
                Some((_, EntryKind::Dir { .. })) => "a directory",
                Some((_, EntryKind::Symlink { .. })) => "a symlink",
                None => "not there",
            };
            self.skipped += 1;
            if self.first_skipped.len() < SHOWN {
                let shown = String::from_utf8_lossy(&line).into_owned();
                self.first_skipped.push((self.lines, shown, why));
            }
        }
        Ok(())
    }

    /// The skipped lines in one line of text, the first few shown.
    pub fn skipped_line(&self) -> Option<String> {
        if self.skipped == 0 {
            return None;
        }
        let shown: Vec<String> = self
            .first_skipped
            .iter()
            .map(|(n, p, why)| format!("line {n} '{}' ({why})", p.escape_debug()))
            .collect();
        let more = match self.skipped.saturating_sub(SHOWN) {
            0 => String::new(),
            k => format!(" and {k} more"),
        };
        Some(format!("{}{more}", shown.join(", ")))
    }
}
