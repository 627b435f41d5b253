//! The rounds each system runs on loopback: the large file cold, warm and from the page cache,
//! random reads of it, the small files cold and warm, and a walk; local disk and the raw GET
//! are read beside every round, so both sides of a ratio see the machine in the same state.

use crate::measure::{self, Figure};
use crate::setup;
use crate::systems::{Mount, Setup, System};
use crate::Plan;
use std::path::PathBuf;
use std::time::Duration;

/// What one system scored.
#[derive(Default)]
pub struct Scores {
    pub cold: Option<Figure>,
    pub warm: Option<Figure>,
    pub page: Option<Figure>,
    pub rand: Option<Figure>,
    pub rand_disk: Option<Figure>,
    pub walk: Option<Figure>,
    pub small_cold: Option<Figure>,
    pub small_cold_mb: Option<Figure>,
    pub small_warm: Option<Figure>,
    pub small_warm_mb: Option<Figure>,
    pub rss_cold: Option<Figure>,
    pub rss_warm: Option<Figure>,
    pub rss_small: Option<Figure>,
}

fn mib(bytes: Option<u64>) -> Option<Figure> {
    bytes.map(|b| Figure::Done(b as f64 / (1 << 20) as f64))
}

/// Runs every workload on `system`, the large file from `big`'s server and the small files
/// from `small`'s; a mount that fails fails its figures, not the run.
pub fn score(
    big: &Setup,
    small_on: &Setup,
    system: System,
    plan: &Plan,
    small: &[PathBuf],
    beside: &mut Beside,
) -> Scores {
    let mut r = Scores::default();
    let cache = big.work.join(format!("cache-{}", system.name()));
    let failed = |e: String| Some(Figure::Failed(e));
    let mount = |dataset: &str| Mount::new(big, system, dataset, &cache);
    eprintln!("==> {}: sequential, cold", system.name());
    // Rounds, each from an empty disk cache, with a raw GET right before each: the server
    // shares this machine's cores, and its cost per byte moves by half between reads a
    // minute apart, so one cold figure against one raw figure was a ratio of two draws.
    let (mut cold, mut rss) = (vec![], None::<Figure>);
    for _ in 0..ROUNDS {
        beside.raw_get();
        let _ = std::fs::remove_dir_all(&cache);
        match mount("big") {
            Ok(m) => {
                setup::drop_caches();
                m.reset_peak();
                cold.push(measure::seq_read(&m.point.join("big.bin"), plan.limit));
                let peak = mib(m.peak_rss());
                if peak.as_ref().and_then(Figure::value) > rss.as_ref().and_then(Figure::value) {
                    rss = peak;
                }
                // s3fs and rclone finish writing their cache files in the background.
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(e) => {
                cold.push(Figure::Failed(e));
                break;
            }
        }
        if !cold.iter().all(Figure::done) {
            break;
        }
    }
    (r.cold, r.rss_cold) = (Some(median_figure(cold)), rss);
    eprintln!(
        "==> {}: sequential warm, page cache, random 4 KiB",
        system.name()
    );
    match mount("big") {
        Ok(m) => {
            let file = m.point.join("big.bin");
            m.reset_peak();
            let (mut warm, mut page) = (vec![], vec![]);
            for _ in 0..ROUNDS {
                beside.sequential();
                setup::drop_caches();
                warm.push(measure::seq_read(&file, plan.limit));
                page.push(measure::seq_read(&file, plan.limit));
                if !warm.iter().chain(&page).all(Figure::done) {
                    break;
                }
            }
            (r.warm, r.page) = (Some(median_figure(warm)), Some(median_figure(page)));
            // From the page cache the previous read filled, as on local disk; then from the
            // disk cache, which is not a like-for-like figure (a passthrough file's reads are
            // its backing file's, whose read-ahead one open shared by every job drives).
            r.rand = Some(measure::rand_read(&file, plan.rand_secs));
            setup::drop_caches();
            r.rand_disk = Some(measure::rand_read(&file, plan.rand_secs));
            r.rss_warm = mib(m.peak_rss());
        }
        Err(e) => r.warm = failed(e),
    }
    eprintln!("==> {}: small files", system.name());
    let cache = big.work.join(format!("cache-{}-small", system.name()));
    match Mount::new(small_on, system, "small", &cache) {
        Ok(m) => {
            let root = m.dataset_root("small");
            m.reset_peak();
            setup::drop_caches();
            let entries = 1 + 100 + small.len() as u64;
            r.walk = Some(measure::walk(&root, entries, plan.limit).0);
            setup::drop_caches();
            let (f, b) = measure::small_files(&root, small, 8, plan.limit);
            (r.small_cold, r.small_cold_mb) = (Some(f), Some(b));
            std::thread::sleep(Duration::from_secs(2));
            let (mut files, mut mb) = (vec![], vec![]);
            for _ in 0..ROUNDS {
                beside.small_files(small);
                setup::drop_caches();
                let (f, b) = measure::small_files(&root, small, 8, plan.limit);
                // Rounds only for a system that reads the tree in seconds.
                let quick = f.done() && f.value().is_some_and(|v| small.len() as f64 / v < 10.0);
                files.push(f);
                mb.push(b);
                if !quick {
                    break;
                }
            }
            (r.small_warm, r.small_warm_mb) = (Some(median_figure(files)), Some(median_figure(mb)));
            r.rss_small = mib(m.peak_rss());
        }
        Err(e) => r.small_cold = failed(e),
    }
    r
}

/// Rounds of the sequential and warm workloads. Local disk (and the raw GET, for cold reads)
/// is read beside every round, so both sides of a ratio see this VM in the same state: one
/// local figure taken minutes earlier moved the warm ratios by a quarter between runs with the
/// same code (the host caches its disk), and the raw GET rate moved by half (the server shares
/// the cores).
const ROUNDS: usize = 3;

/// The figures taken beside each system's rounds, local disk's and the raw GET's; the table
/// gives their medians.
pub struct Beside {
    pub big: PathBuf,
    pub small_dir: PathBuf,
    pub limit: Duration,
    /// The large file's plain object, for the raw GET.
    pub plain: datastore::store::Store,
    pub big_len: u64,
    pub rt: tokio::runtime::Handle,
    pub raw: Vec<f64>,
    pub seq: Vec<f64>,
    pub page: Vec<f64>,
    pub small: Vec<f64>,
    pub small_mb: Vec<f64>,
}

impl Beside {
    /// The large file fetched from the server with 16 parallel ranged GETs.
    pub fn raw_get(&mut self) {
        let rate = self
            .rt
            .block_on(measure::raw_get(&self.plain, "big.bin", self.big_len));
        self.raw.push(rate);
    }

    /// A sequential read of the large file with the page cache dropped, then from it.
    pub fn sequential(&mut self) {
        setup::drop_caches();
        self.seq
            .extend(measure::seq_read(&self.big, self.limit).value());
        self.page
            .extend(measure::seq_read(&self.big, self.limit).value());
    }

    /// The small files read by 8 readers with the page cache dropped.
    pub fn small_files(&mut self, files: &[PathBuf]) {
        setup::drop_caches();
        let (f, b) = measure::small_files(&self.small_dir, files, 8, self.limit);
        self.small.extend(f.value());
        self.small_mb.extend(b.value());
    }

    pub fn median(xs: &[f64]) -> Option<f64> {
        let m = median(xs.iter().copied());
        m.is_finite().then_some(m)
    }
}

/// The median of rounds of one figure; a round that did not finish is the figure.
fn median_figure(rounds: Vec<Figure>) -> Figure {
    if let Some(f) = rounds.iter().find(|f| !f.done()) {
        return f.clone();
    }
    Figure::Done(median(rounds.iter().filter_map(Figure::value)))
}

/// The median of `xs` (NaN if a run failed and gave NaN, or if there are none).
pub fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.collect();
    if v.is_empty() || v.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
