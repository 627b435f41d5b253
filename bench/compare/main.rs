//! datastore side by side with s3fs, rclone mount, the raw object-store rate and local disk,
//! in one run against S3 servers on 127.0.0.1 (s3s-fs for the large file, moto for the small
//! files, on which s3fs works), so that noise cancels. Run as root
//! through `bench/run`, which installs s3s-fs, s3fs, rclone and fio; `--quick` for a small
//! run. Prints a markdown table of figures, ratios and targets; a full run also writes it to
//! bench/RESULTS.md and bench/results.json.
//!
//! The workloads, each on every system: a sequential read of a large file cold, warm from the
//! system's disk cache (page cache dropped, fresh mount) and from the page cache; random 4 KiB
//! reads of it once cached; many ~100 KiB files read by 8 readers in shuffled order, cold then
//! warm; `find` with a stat of every entry; pushing. Every figure has a time limit, so a slow
//! system costs the run that limit, never hangs it.

mod fleet;
mod links;
mod measure;
mod order;
#[path = "../../fuse-tests/common/proxy.rs"]
#[allow(dead_code)]
mod proxy;
mod report;
mod setup;
mod systems;

use measure::Figure;
use report::{Row, Target};
use setup::Wide;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use systems::{Mount, Setup, System};

struct Plan {
    big: usize,
    small: usize,
    wide: Wide,
    limit: Duration,
    rand_secs: u64,
    /// The fleet group's version: this many 16 MiB files and this many small ones.
    fleet: (usize, usize),
}

/// Daemons in the fleet group, each a node with its own disk cache.
const NODES: usize = 16;

/// What one system scored.
#[derive(Default)]
struct Scores {
    cold: Option<Figure>,
    warm: Option<Figure>,
    page: Option<Figure>,
    rand: Option<Figure>,
    rand_disk: Option<Figure>,
    walk: Option<Figure>,
    small_cold: Option<Figure>,
    small_cold_mb: Option<Figure>,
    small_warm: Option<Figure>,
    small_warm_mb: Option<Figure>,
    rss_cold: Option<Figure>,
    rss_warm: Option<Figure>,
    rss_small: Option<Figure>,
}

fn mib(bytes: Option<u64>) -> Option<Figure> {
    bytes.map(|b| Figure::Done(b as f64 / (1 << 20) as f64))
}

/// Runs every workload on `system`, the large file from `big`'s server and the small files
/// from `small`'s; a mount that fails fails its figures, not the run.
fn score(
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
            let root = match system {
                System::Datastore => m.point.clone(),
                _ => m.point.join("small"),
            };
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

/// What one `datastore push` did.
struct Pushed {
    secs: f64,
    uploaded_bytes: u64,
    /// Bytes of files read and hashed (the stat cache spares unchanged files).
    hashed_bytes: u64,
}

/// Rounds of the sequential and warm workloads. Local disk (and the raw GET, for cold reads)
/// is read beside every round, so both sides of a ratio see this VM in the same state: one
/// local figure taken minutes earlier moved the warm ratios by a quarter between runs with the
/// same code (the host caches its disk), and the raw GET rate moved by half (the server shares
/// the cores).
const ROUNDS: usize = 3;

/// The figures taken beside each system's rounds, local disk's and the raw GET's; the table
/// gives their medians.
struct Beside {
    big: PathBuf,
    small_dir: PathBuf,
    limit: Duration,
    /// The large file's plain object, for the raw GET.
    plain: datastore::store::Store,
    big_len: u64,
    rt: tokio::runtime::Handle,
    raw: Vec<f64>,
    seq: Vec<f64>,
    page: Vec<f64>,
    small: Vec<f64>,
    small_mb: Vec<f64>,
}

impl Beside {
    /// The large file fetched from the server with 16 parallel ranged GETs.
    fn raw_get(&mut self) {
        let rate = self
            .rt
            .block_on(measure::raw_get(&self.plain, "big.bin", self.big_len));
        self.raw.push(rate);
    }

    /// A sequential read of the large file with the page cache dropped, then from it.
    fn sequential(&mut self) {
        setup::drop_caches();
        self.seq
            .extend(measure::seq_read(&self.big, self.limit).value());
        self.page
            .extend(measure::seq_read(&self.big, self.limit).value());
    }

    /// The small files read by 8 readers with the page cache dropped.
    fn small_files(&mut self, files: &[PathBuf]) {
        setup::drop_caches();
        let (f, b) = measure::small_files(&self.small_dir, files, 8, self.limit);
        self.small.extend(f.value());
        self.small_mb.extend(b.value());
    }

    fn median(xs: &[f64]) -> Option<f64> {
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
fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.collect();
    if v.is_empty() || v.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `datastore push`, timed.
fn push(s: &Setup, dir: &Path, name: &str) -> Pushed {
    let t = Instant::now();
    let out = Command::new(&s.bin)
        .env("AWS_ENDPOINT_URL", &s.endpoint)
        .env("DATASTORE_STATE_DIR", s.work.join("state"))
        .args(["--store", &s.store, "-q", "push", "--json"])
        .arg(dir)
        .arg(name)
        .output()
        .expect("run datastore push");
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "push {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("push --json");
    let field = |k: &str| v[k].as_u64().unwrap_or(u64::MAX);
    Pushed {
        secs,
        uploaded_bytes: field("uploaded_bytes"),
        hashed_bytes: field("hashed_bytes"),
    }
}

/// The fleet group: [`NODES`] daemons read a version of large and small files all at once,
/// without a tier, through the shipped tier config (1 MiB slices) and through a variant that
/// caches whole objects; then a tenth of the small files, through each tier config. Returns the
/// rows and the store bytes ÷ version bytes through the shipped tier.
fn fleet_group(
    s: &Setup,
    server: &setup::Server,
    plan: &Plan,
    dir: &Path,
) -> (Vec<Row>, Option<f64>) {
    let (large, small) = plan.fleet;
    for i in 0..large {
        setup::random_file(
            &dir.join(format!("large/{i:02}.bin")),
            16 << 20,
            100 + i as u64,
        );
    }
    let small_files = setup::small_tree(&dir.join("small"), small, 3);
    push(s, dir, "fleet");
    let sized = |p: PathBuf| {
        let size = std::fs::metadata(dir.join(&p)).map_or(0, |m| m.len());
        (p, size)
    };
    let mut all: Vec<(PathBuf, u64)> = (0..large)
        .map(|i| sized(PathBuf::from(format!("large/{i:02}.bin"))))
        .collect();
    let small_sized: Vec<(PathBuf, u64)> = small_files
        .iter()
        .map(|p| sized(Path::new("small").join(p)))
        .collect();
    all.extend(small_sized.iter().cloned());
    // The same tenth of the small files on every node, each in its own order.
    let tenth: Vec<(PathBuf, u64)> = small_sized.iter().step_by(10).cloned().collect();
    let version_bytes: u64 = all.iter().map(|(_, n)| n).sum();
    let tenth_bytes: u64 = tenth.iter().map(|(_, n)| n).sum();
    let port: u16 = server
        .endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the server's port");
    let limit = plan.limit * 4;
    let run = |files: &[(PathBuf, u64)], tier| {
        setup::drop_caches();
        fleet::run(s, port, "fleet", files, NODES, tier, limit)
    };
    let tiers = [fleet::Tier::None, fleet::Tier::Sliced, fleet::Tier::Whole];
    let full: Vec<_> = tiers.iter().map(|&t| run(&all, t)).collect();
    let part: Vec<_> = tiers[1..].iter().map(|&t| run(&tenth, t)).collect();
    let figure = |r: &Result<fleet::Outcome, String>, f: &dyn Fn(&fleet::Outcome) -> f64| match r {
        Ok(o) => Figure::Done(f(o)),
        Err(e) => Figure::Failed(e.clone()),
    };
    let mb = version_bytes >> 20;
    let names = [
        "no tier",
        "one nginx tier, 1 MiB slices (shipped)",
        "one nginx tier, whole objects",
    ];
    let mut rows = Vec::new();
    for (r, name) in full.iter().zip(names) {
        let mut row = Row::new(
            format!(
                "9. {NODES} nodes read a {mb} MiB version at once, {name}: store bytes ÷ version"
            ),
            "×",
        );
        row.higher_is_better = false;
        row.set(
            System::Datastore,
            figure(r, &|o| o.store_bytes as f64 / version_bytes as f64),
        );
        rows.push(row);
    }
    for (r, name) in full.iter().zip(names) {
        let mut row = Row::new(
            format!("9. {NODES} nodes read a {mb} MiB version at once, {name}: all nodes' rate"),
            "MB/s",
        );
        row.set(System::Datastore, figure(r, &|o| o.rate_mb()));
        rows.push(row);
    }
    for (r, name) in part.iter().zip(&names[1..]) {
        let mut row = Row::new(
            format!("9. {NODES} nodes read a tenth of the small files, {name}: store bytes ÷ bytes read once"),
            "×",
        );
        row.higher_is_better = false;
        row.set(
            System::Datastore,
            figure(r, &|o| o.store_bytes as f64 / tenth_bytes as f64),
        );
        rows.push(row);
        let mut row = Row::new(
            format!("9. {NODES} nodes read a tenth of the small files, {name}: time"),
            "s",
        );
        row.higher_is_better = false;
        row.set(System::Datastore, figure(r, &|o| o.secs));
        rows.push(row);
    }
    let tier_ratio = full[1]
        .as_ref()
        .ok()
        .map(|o| o.store_bytes as f64 / version_bytes as f64);
    (rows, tier_ratio)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--worker") {
        return measure::small_files_worker(&args[3..]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let plan = if quick {
        Plan {
            big: 128 << 20,
            small: 2_000,
            wide: Wide {
                dirs: 100,
                per_dir: 1000,
            },
            limit: Duration::from_secs(10),
            rand_secs: 3,
            fleet: (2, 200),
        }
    } else {
        Plan {
            big: 1 << 30,
            small: 20_000,
            wide: Wide {
                dirs: 1000,
                per_dir: 1000,
            },
            limit: Duration::from_secs(60),
            rand_secs: 15,
            fleet: (8, 1000),
        }
    };
    for tool in ["s3fs", "rclone", "fio", "find"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "{tool} not found: run bench/run, which installs it");
    }
    let started = Instant::now();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = setup::release_binary();
    let work = tempfile::Builder::new()
        .prefix("bench-")
        .tempdir_in(root.join("target"))
        .unwrap();
    let w = work.path();
    let s3 = w.join("s3");
    for b in ["datastore", "plain", "raw"] {
        std::fs::create_dir_all(s3.join(b)).unwrap();
    }
    let server = setup::start_s3s(&s3);
    let moto = setup::start_moto(&["datastore", "plain"]);

    eprintln!("==> making the datasets");
    let big_dir = w.join("src/big");
    let big_file = big_dir.join("big.bin");
    setup::random_file(&big_file, plan.big, 1);
    let small_dir = w.join("src/small");
    let small = setup::small_tree(&small_dir, plan.small, 2);
    // s3fs and rclone read the same files as plain objects, uploaded with PUT (s3s-fs
    // computes the ETag of a file it did not receive on every GET of it).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let small_plain = moto.store("s3://plain");
    let uploads = small
        .iter()
        .map(|p| (format!("small/{}", p.display()), small_dir.join(p)))
        .collect();
    rt.block_on(measure::upload(&small_plain, uploads));
    let plain = server.store("s3://plain");
    let uploads = vec![("big.bin".to_string(), big_file.clone())];
    rt.block_on(measure::upload(&plain, uploads));
    let setup_on = |server: &setup::Server| Setup {
        bin: bin.clone(),
        store: "s3://datastore/store".into(),
        endpoint: server.endpoint.clone(),
        bucket: "plain".into(),
        work: w.to_path_buf(),
    };
    let (s, s_small) = (setup_on(&server), setup_on(&moto));

    eprintln!("==> local disk and raw object-store rates");
    let mut beside = Beside {
        big: big_file.clone(),
        small_dir: small_dir.clone(),
        limit: plan.limit,
        plain: plain.clone(),
        big_len: plan.big as u64,
        rt: rt.handle().clone(),
        raw: vec![],
        seq: vec![],
        page: vec![],
        small: vec![],
        small_mb: vec![],
    };
    beside.sequential();
    let local_rand = measure::rand_read(&big_file, plan.rand_secs).value();
    setup::drop_caches();
    let local_rand_disk = measure::rand_read(&big_file, plan.rand_secs).value();
    setup::drop_caches();
    let local_walk = measure::walk(&small_dir, 0, plan.limit).0.value();
    beside.small_files(&small);
    beside.raw_get();
    let keys: Vec<String> = small
        .iter()
        .map(|p| format!("small/{}", p.display()))
        .collect();
    let (raw_small, raw_small_mb) = rt.block_on(measure::raw_get_objects(&small_plain, &keys));
    let fresh = bytes::Bytes::from(std::fs::read(&big_file).unwrap());
    let raw = server.store("s3://raw");
    let raw_put = rt.block_on(measure::raw_put(&raw, fresh));

    eprintln!("==> push");
    let push_secs = push(&s, &big_dir, "big").secs;
    let repush = push(&s, &big_dir, "big");
    let small_push_secs = push(&s, &small_dir, "small").secs;
    // The limit of a re-push that finds nothing changed: a stat of every entry. Each side is
    // the median of five runs: one takes tens of milliseconds, which a scheduling hiccup or a
    // delayed ACK (s3s-fs sends a small body after its headers) moves by half.
    let small_stat = median((0..5).map(|_| {
        let (walked, entries) = measure::walk(&small_dir, 0, plan.limit);
        walked
            .value()
            .map_or(f64::NAN, |rate| entries as f64 / rate)
    }));
    let small_stat = small_stat.is_finite().then_some(small_stat);
    let repushes: Vec<Pushed> = (0..5).map(|_| push(&s, &small_dir, "small")).collect();
    let small_repush = Pushed {
        secs: median(repushes.iter().map(|p| p.secs)),
        uploaded_bytes: repushes.iter().map(|p| p.uploaded_bytes).sum(),
        hashed_bytes: repushes.iter().map(|p| p.hashed_bytes).sum(),
    };
    // The copy the small-file workloads read, beside the plain objects s3fs and rclone read.
    push(&s_small, &small_dir, "small");
    let small_bytes: u64 = small
        .iter()
        .map(|p| std::fs::metadata(small_dir.join(p)).map_or(0, |m| m.len()))
        .sum();

    let scores: Vec<Scores> = System::ALL
        .iter()
        .map(|&sys| score(&s, &s_small, sys, &plan, &small, &mut beside))
        .collect();
    let raw_seq = Beside::median(&beside.raw);
    let local_cold = Beside::median(&beside.seq);
    let local_page = Beside::median(&beside.page);
    let (local_small, local_small_mb) = (
        Beside::median(&beside.small),
        Beside::median(&beside.small_mb),
    );

    eprintln!("==> metadata: {} entries", plan.wide.entries());
    plan.wide.commit(&server.store(&s.store), "wide");
    let t = Instant::now();
    let wide = Mount::new(&s, System::Datastore, "wide", &w.join("cache-datastore"))
        .expect("mount the wide version");
    let listed = std::fs::read_dir(&wide.point).map_or(0, |d| d.count());
    let first_ls_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(listed, plan.wide.dirs as usize, "ls of the wide version");
    wide.reset_peak();
    let (wide_walk, _) = measure::walk(&wide.point, plan.wide.entries(), plan.limit);
    // Again, with the kernel's inodes and dentries of the first walk in place.
    let (wide_rewalk, _) = measure::walk(&wide.point, plan.wide.entries(), plan.limit);
    let wide_rss = wide.peak_rss();
    drop(wide);
    // Again on the same node: the manifest comes from the image the first mount left.
    let t = Instant::now();
    let again = Mount::new(&s, System::Datastore, "wide", &w.join("cache-datastore"))
        .expect("mount the wide version again");
    let relisted = std::fs::read_dir(&again.point).map_or(0, |d| d.count());
    let second_ls_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(
        relisted, plan.wide.dirs as usize,
        "ls of the wide version, again"
    );
    drop(again);
    let tmpfs = setup::Tmpfs::mount(&w.join("tmpfs"));
    plan.wide.write(&tmpfs.0);
    let tmpfs_walk = measure::walk(&tmpfs.0, plan.wide.entries(), plan.limit)
        .0
        .value();
    drop(tmpfs);

    eprintln!("==> a shuffled cold epoch, with and without its read order");
    let (epoch_plain, epoch_ordered) = order::epoch(&s_small, &small, plan.limit, w);

    eprintln!("==> {NODES} nodes reading one version");
    let fleet_rows = fleet_group(&s, &server, &plan, &w.join("src/fleet"));

    eprintln!("==> cold reads over links shaped like object storage's");
    // At the bucket's root: s3s-fs answers a HEAD of a directory's key with 500, which s3fs
    // retries (see systems.rs).
    let sharded = w.join("src/sharded");
    let shards: Vec<PathBuf> = (0..8)
        .map(|i| PathBuf::from(format!("shard-{i:02}.bin")))
        .collect();
    for (i, p) in shards.iter().enumerate() {
        setup::random_file(&sharded.join(p), plan.big / 8, 200 + i as u64);
    }
    push(&s, &sharded, "shards");
    let uploads = shards
        .iter()
        .map(|p| (p.display().to_string(), sharded.join(p)))
        .collect();
    rt.block_on(measure::upload(&plain, uploads));
    let data = links::Data {
        big: &s,
        small: &s_small,
        big_len: plan.big as u64,
        shards,
        small_files: &small,
        limit: plan.limit,
    };
    let link_rows = links::group(&data, &rt);
    std::env::set_var("AWS_ENDPOINT_URL", &server.endpoint);

    // The table.
    let ds = &scores[0];
    let size = format!("{} MiB", plan.big >> 20);
    let n = plan.small;
    let row = |name: String, unit, limit, local, pick: fn(&Scores) -> &Option<Figure>| {
        let mut r = Row::new(name, unit);
        (r.limit, r.local) = (limit, local);
        for (sys, sc) in System::ALL.iter().zip(&scores) {
            if let Some(f) = pick(sc) {
                r.set(*sys, f.clone());
            }
        }
        r
    };
    let lower = |mut r: Row| {
        r.higher_is_better = false;
        r
    };
    let one = |name: String, unit, limit, local, f: Figure| {
        let mut r = Row::new(name, unit);
        (r.limit, r.local) = (limit, local);
        r.set(System::Datastore, f);
        r
    };
    let entries = plan.wide.entries();
    let per_entry = wide_rss.map(|b| b as f64 / entries as f64);
    let big_mb = plan.big as f64 / 1e6;
    let mut rows = vec![
        row(
            format!("1. sequential read, {size}, cold"),
            "MB/s",
            raw_seq,
            local_cold,
            |s| &s.cold,
        ),
        row(
            format!("2. sequential read, {size}, warm (disk cache)"),
            "MB/s",
            None,
            local_cold,
            |s| &s.warm,
        ),
        row(
            "3. sequential re-read from the page cache".into(),
            "MB/s",
            None,
            local_page,
            |s| &s.page,
        ),
        row(
            format!("4. {n} small files, 8 readers, cold"),
            "files/s",
            Some(raw_small),
            local_small,
            |s| &s.small_cold,
        ),
        row(
            format!("4. {n} small files, 8 readers, cold"),
            "MB/s",
            Some(raw_small_mb),
            local_small_mb,
            |s| &s.small_cold_mb,
        ),
        row(
            format!("4. {n} small files, 8 readers, warm"),
            "files/s",
            None,
            local_small,
            |s| &s.small_warm,
        ),
        row(
            format!("4. {n} small files, 8 readers, warm"),
            "MB/s",
            None,
            local_small_mb,
            |s| &s.small_warm_mb,
        ),
        row(
            format!("5. find + stat, {n}-file tree (first walk)"),
            "entries/s",
            None,
            local_walk,
            |s| &s.walk,
        ),
        one(
            format!("5. find + stat, {entries}-entry version (tmpfs as local)"),
            "entries/s",
            None,
            tmpfs_walk,
            wide_walk.clone(),
        ),
        one(
            format!("5. find + stat again, {entries}-entry version"),
            "entries/s",
            None,
            tmpfs_walk,
            wide_rewalk,
        ),
        lower(one(
            format!("5. mount to first ls, {entries}-entry version"),
            "ms",
            None,
            None,
            Figure::Done(first_ls_ms),
        )),
        lower(one(
            format!("5. second mount on the node to first ls, {entries}-entry version"),
            "ms",
            None,
            None,
            Figure::Done(second_ls_ms),
        )),
        row(
            "6. random 4 KiB reads, file in the page cache, 4 jobs".into(),
            "IOPS",
            None,
            local_rand,
            |s| &s.rand,
        ),
        row(
            "6. random 4 KiB reads, page cache dropped first, 4 jobs".into(),
            "IOPS",
            None,
            local_rand_disk,
            |s| &s.rand_disk,
        ),
        one(
            format!("7. push {size} of fresh data"),
            "MB/s",
            Some(raw_put),
            None,
            Figure::Done(big_mb / push_secs),
        ),
        one(
            format!("7. re-push unchanged {size}"),
            "MB/s",
            Some(raw_put),
            None,
            Figure::Done(big_mb / repush.secs),
        ),
        lower(one(
            "7. re-push unchanged: bytes uploaded".into(),
            "bytes",
            None,
            None,
            Figure::Done(repush.uploaded_bytes as f64),
        )),
        lower(one(
            format!("7. re-push unchanged: bytes read, {size} and {n} small files"),
            "bytes",
            None,
            None,
            Figure::Done((repush.hashed_bytes + small_repush.hashed_bytes) as f64),
        )),
        lower(one(
            format!("7. re-push unchanged {n} small files, median of 5 (local: `find -printf` stat walk, median of 5)"),
            "s",
            None,
            small_stat,
            Figure::Done(small_repush.secs),
        )),
        one(
            format!("7. push {n} small files"),
            "MB/s",
            Some(raw_put),
            None,
            Figure::Done(small_bytes as f64 / 1e6 / small_push_secs),
        ),
        lower(row(
            "8. daemon peak RSS: sequential cold".into(),
            "MiB",
            None,
            None,
            |s| &s.rss_cold,
        )),
        lower(row(
            "8. daemon peak RSS: warm, page cache, random".into(),
            "MiB",
            None,
            None,
            |s| &s.rss_warm,
        )),
        lower(row(
            "8. daemon peak RSS: small files and walk".into(),
            "MiB",
            None,
            None,
            |s| &s.rss_small,
        )),
        lower(one(
            format!("8. daemon peak RSS per entry, {entries}-entry walk"),
            "bytes",
            None,
            None,
            per_entry.map_or(Figure::Failed("no daemon found".into()), Figure::Done),
        )),
    ];
    let (fleet_rows, tier_ratio) = fleet_rows;
    rows.extend(fleet_rows);
    rows.extend(link_rows);
    let readers = order::READERS;
    rows.push(one(
        format!("10. shuffled cold epoch of {n} small files, {readers} readers, no order"),
        "files/s",
        None,
        None,
        epoch_plain.clone(),
    ));
    rows.push(one(
        format!("10. shuffled cold epoch of {n} small files, {readers} readers, order handed to the mount first"),
        "files/s",
        None,
        None,
        epoch_ordered.clone(),
    ));

    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    let v = |f: &Option<Figure>| f.as_ref().and_then(Figure::value);
    let vs = |i: usize, f: fn(&Scores) -> &Option<Figure>| v(f(&scores[i]));
    let targets = [
        Target {
            what: "cold sequential ≥ 0.90 × raw GET",
            measured: ratio(v(&ds.cold), raw_seq),
            at_least: Some(0.9),
            at_most: None,
        },
        Target {
            what: "cold sequential ≥ 1.5 × s3fs",
            measured: ratio(v(&ds.cold), vs(1, |s| &s.cold)),
            at_least: Some(1.5),
            at_most: None,
        },
        Target {
            what: "warm ≥ 0.95 × local disk",
            measured: ratio(v(&ds.warm), local_cold),
            at_least: Some(0.95),
            at_most: None,
        },
        Target {
            what: "page-cache re-read ≥ 0.95 × local",
            measured: ratio(v(&ds.page), local_page),
            at_least: Some(0.95),
            at_most: None,
        },
        Target {
            what: "random 4 KiB reads (page cache) ≥ 0.8 × local",
            measured: ratio(v(&ds.rand), local_rand),
            at_least: Some(0.8),
            at_most: None,
        },
        Target {
            what: "small files warm ≥ 0.8 × local (files/s)",
            measured: ratio(v(&ds.small_warm), local_small),
            at_least: Some(0.8),
            at_most: None,
        },
        Target {
            what: "daemon peak RSS, sequential groups, defaults ≤ 150 MiB",
            measured: match (v(&ds.rss_cold), v(&ds.rss_warm)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            at_least: None,
            at_most: Some(150.0),
        },
        Target {
            what: "small files cold ≥ 5 × s3fs (files/s)",
            measured: ratio(v(&ds.small_cold), vs(1, |s| &s.small_cold)),
            at_least: Some(5.0),
            at_most: None,
        },
        Target {
            what: "small files cold ≥ 3 × rclone (files/s)",
            measured: ratio(v(&ds.small_cold), vs(2, |s| &s.small_cold)),
            at_least: Some(3.0),
            at_most: None,
        },
        Target {
            what: "1M-entry walk time ≤ 2 × tmpfs (first walk)",
            measured: ratio(tmpfs_walk, wide_walk.value()),
            at_least: None,
            at_most: Some(2.0),
        },
        Target {
            what: "re-push of unchanged small files ≤ 2 × a stat walk",
            measured: ratio(Some(small_repush.secs), small_stat),
            at_least: None,
            at_most: Some(2.0),
        },
        Target {
            what: "re-push of unchanged trees reads 0 bytes",
            measured: Some((repush.hashed_bytes + small_repush.hashed_bytes) as f64),
            at_least: None,
            at_most: Some(0.0),
        },
        Target {
            what: "shuffled cold epoch: faster with the read order given (× without)",
            measured: ratio(epoch_ordered.value(), epoch_plain.value()),
            at_least: Some(1.0),
            at_most: None,
        },
        Target {
            what: "first ls < 1000 ms",
            measured: Some(first_ls_ms),
            at_least: None,
            at_most: Some(1000.0),
        },
        Target {
            what: "16 nodes through one tier: store bytes ≤ 1.1 × the version",
            measured: tier_ratio,
            at_least: None,
            at_most: Some(1.1),
        },
        Target {
            what: "second mount to first ls ≤ 100 ms",
            measured: Some(second_ls_ms),
            at_least: None,
            at_most: Some(100.0),
        },
        Target {
            what: "RSS ≤ 200 bytes per entry (walk only: no prefetch memory in use)",
            measured: per_entry,
            at_least: None,
            at_most: Some(200.0),
        },
    ];

    let command = if quick {
        "bench/run --quick"
    } else {
        "bench/run"
    };
    let mut body = format!(
        "`{command}` (as root), {}; {:.0} s in all.\n\nMachine: {}.\n\n",
        Command::new("date")
            .arg("-u")
            .arg("+%Y-%m-%d %H:%M UTC")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
        started.elapsed().as_secs_f64(),
        report::machine(w),
    );
    body.push_str(&report::markdown(&rows, &targets, plan.limit.as_secs()));
    println!("\n{body}");
    let out = if quick {
        root.join("target/bench-quick")
    } else {
        root.join("bench")
    };
    std::fs::create_dir_all(&out).unwrap();
    report::write_results(&out.join("RESULTS.md"), &body).unwrap();
    let json = serde_json::to_string_pretty(&report::json(&rows)).unwrap();
    std::fs::write(out.join("results.json"), json).unwrap();
    eprintln!("==> written to {}", out.join("RESULTS.md").display());
}
