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
/// How long the order waits when the fetch budget is used up before it asks again.
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
///
/// Files are started in the order's order. A small file's fetch takes with it the files next
/// to it in its pack that the order also reads within the window: one ranged GET for all of
/// them, as a directory read in order would get from its neighbours' region. Its members are
/// claimed (in flight) as soon as it is started, so the places of those files find them
/// fetched or under way, and start nothing.
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
        // The places whose files may be fetched now.
        // (Always the next one, however large.)
        let whole = before.partition_point(|&b| b <= before[reached].saturating_add(ahead));
        let window = Window {
            order: &order,
            from: reached,
            to: whole
                .saturating_sub(1)
                .max(reached + 1)
                .min(order.files.len()),
        };
        let mut starved = false;
        while next < window.to && running.len() < REQUESTS {
            match start(&m, &chunks, order.files[next], &window) {
                Some(fetch) => {
                    running.push(fetch);
                    next += 1;
                }
                None => {
                    starved = true;
                    break;
                }
            }
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
            _ = tokio::time::sleep(BUDGET_RETRY), if starved => {}
        }
    }
}

/// The places of an order whose files may be fetched now: `from..to`.
struct Window<'a> {
    order: &'a Order,
    from: usize,
    to: usize,
}

impl Window<'_> {
    fn holds(&self, file: usize) -> bool {
        self.order
            .place
            .get(&file)
            .is_some_and(|&p| p >= self.from && p < self.to)
    }
}

type Fetch = futures::future::BoxFuture<'static, Fetched>;

/// Starts fetching what file `file` lacks; `None` if the budget cannot hold it now. A file
/// with nothing to fetch is a fetch that is already done.
fn start(m: &Manifest, chunks: &Arc<ChunkReader>, file: usize, window: &Window) -> Option<Fetch> {
    use futures::FutureExt;
    let EntryKind::File { chunks: run, .. } = m.entries[file].kind else {
        return Some(futures::future::ready(Fetched::default()).boxed());
    };
    let wanted: Vec<fetch::Located> = m.chunks[run.range()]
        .iter()
        .filter(|c| !chunks.has(&c.hash))
        .map(|c| {
            let mut at = fetch::locate(m, c);
            at.whole_file |= run.len == 1;
            at
        })
        .collect();
    if wanted.is_empty() {
        return Some(futures::future::ready(Fetched::default()).boxed());
    }
    if run.len == 1 && wanted[0].range.is_some() {
        // A small file: one region with its neighbours in the window, claimed now.
        let region = region_around(m, chunks, file, window)?;
        let permit = chunks.budget().try_take(region.bytes())?;
        let got = Fetched {
            files: region.members.len() as u64,
            bytes: region.bytes(),
        };
        let done = chunks.fetch_region(region, permit);
        return Some(
            done.map(move |r| if r.is_ok() { got } else { Fetched::default() })
                .boxed(),
        );
    }
    let chunks = chunks.clone();
    Some(
        async move {
            let mut got = Fetched::default();
            for at in wanted {
                let len = at.len as u64;
                let fetched = loop {
                    match chunks.prefetch(at.clone()).await {
                        Some(r) => break r.is_ok(),
                        None => tokio::time::sleep(BUDGET_RETRY).await,
                    }
                };
                if fetched {
                    got.bytes += len;
                }
            }
            got.files = u64::from(got.bytes > 0);
            got
        }
        .boxed(),
    )
}

/// The pack region of small file `file` and of the files next to it in its pack (its
/// directory's entries before and after it, at adjacent offsets) that the window holds and
/// that are not at hand, up to [`pack::REGION_MAX`] bytes.
fn region_around(
    m: &Manifest,
    chunks: &ChunkReader,
    file: usize,
    window: &Window,
) -> Option<pack::Region> {
    let (pack, offset, first) = pack::packed(m, file)?;
    let siblings = m.children(m.entries[file].parent as usize);
    let wanted = |i: usize| {
        window.holds(i) && pack::packed(m, i).is_some_and(|(_, _, c)| !chunks.has(&c.hash))
    };
    let (mut lo, mut hi) = (offset, offset + first.len as u64);
    let (mut first_i, mut last_i) = (file, file);
    // Forward, then backward, while the files are adjacent in the pack and wanted.
    for i in (file + 1)..siblings.end {
        match pack::packed(m, i) {
            Some((p, off, c)) if p == pack && off == hi && wanted(i) => {
                if off + c.len as u64 - lo > pack::REGION_MAX {
                    break;
                }
                hi = off + c.len as u64;
                last_i = i;
            }
            _ => break,
        }
    }
    for i in (siblings.start..file).rev() {
        match pack::packed(m, i) {
            Some((p, off, c)) if p == pack && off + c.len as u64 == lo && wanted(i) => {
                if hi - off > pack::REGION_MAX {
                    break;
                }
                lo = off;
                first_i = i;
            }
            _ => break,
        }
    }
    let mut regions = Vec::new();
    for i in first_i..=last_i {
        let (_, _, c) = pack::packed(m, i)?;
        let mut at = fetch::locate(m, c);
        at.whole_file = true;
        pack::plan(&mut regions, at);
    }
    (regions.len() == 1).then(|| regions.pop()).flatten()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::format::name::VersionSel;
    use crate::store::Store;

    /// A version of 40 small files of 1 KiB in one directory (one pack), pushed to memory.
    async fn small_files() -> (Store, Arc<Manifest>) {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..40 {
            std::fs::write(dir.path().join(format!("f{i:02}")), vec![i as u8; 1024]).unwrap();
        }
        let store = Store::open("memory://", &Default::default()).unwrap();
        let c = Catalog::new(store.clone());
        let opts = crate::push::PushOptions::default();
        crate::push::push(&c, dir.path(), "ds", &opts, Default::default())
            .await
            .unwrap();
        let v = c.resolve("ds", VersionSel::Latest).await.unwrap();
        (store, Arc::new(c.manifest(&v).await.unwrap()))
    }

    /// Waits until the order has nothing left to start or finish for now.
    async fn settle(chunks: &ChunkReader, m: &Manifest, files: &[usize]) -> Vec<bool> {
        let had = || -> Vec<bool> {
            files
                .iter()
                .map(|&f| match m.entries[f].kind {
                    EntryKind::File { chunks: run, .. } => {
                        chunks.has(&m.chunks[run.start as usize].hash)
                    }
                    _ => false,
                })
                .collect()
        };
        let mut last = had();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = had();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// The order fetches the files of its window, neighbours in the pack together, and
    /// nothing past it until a reader moves on; then the next window.
    #[tokio::test]
    async fn the_window_follows_the_readers() {
        let (store, m) = small_files().await;
        let mut files: Vec<usize> = (0..m.entries.len())
            .filter(|&i| matches!(m.entries[i].kind, EntryKind::File { .. }))
            .collect();
        assert_eq!(files.len(), 40);
        // Every other file first, then the rest.
        files.sort_by_key(|&f| (f % 2, f));
        let chunks = Arc::new(ChunkReader::new(store, 1 << 20, None, 1 << 20));
        let order = Order::new(files.clone());
        // Ten files' worth.
        let drive = tokio::spawn(drive(order.clone(), m.clone(), chunks.clone(), 10 << 10));
        let had = settle(&chunks, &m, &files).await;
        assert!(had[..10].iter().all(|&h| h), "the window's files: {had:?}");
        assert!(had[10..].iter().all(|&h| !h), "past the window: {had:?}");

        // A reader opens the file at place 25 (and reads it itself): the window is the ten
        // places after it now.
        order.opened(files[25]);
        let had = settle(&chunks, &m, &files).await;
        assert!(had[26..36].iter().all(|&h| h), "the next window: {had:?}");
        assert!(had[36..].iter().all(|&h| !h), "past it: {had:?}");
        assert!(
            had[10..26].iter().all(|&h| !h),
            "places passed are skipped: {had:?}"
        );

        // Near the end: the last places, and the order is done.
        order.opened(files[37]);
        let had = settle(&chunks, &m, &files).await;
        assert!(had[38] && had[39], "{had:?}");
        tokio::time::timeout(Duration::from_secs(5), drive)
            .await
            .expect("a finished order returns")
            .unwrap();
    }

    /// A stopped order starts nothing more.
    #[tokio::test]
    async fn a_stopped_order_ends() {
        let (store, m) = small_files().await;
        let chunks = Arc::new(ChunkReader::new(store, 1 << 20, None, 1 << 20));
        let order = Order::new(vec![1, 2, 3]);
        order.stop();
        tokio::time::timeout(
            Duration::from_secs(5),
            drive(order, m, chunks.clone(), 1 << 20),
        )
        .await
        .expect("a stopped order returns");
    }
}
