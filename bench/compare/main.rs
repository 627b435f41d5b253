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

mod dlio;
mod fleet;
mod links;
mod measure;
mod order;
#[path = "../../fuse-tests/common/proxy.rs"]
#[allow(dead_code)]
mod proxy;
mod report;
mod rounds;
mod setup;
mod systems;

use measure::Figure;
use report::{Row, Target};
use rounds::{median, score, Beside, Scores};
use setup::Wide;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use systems::{Mount, Setup, System};

pub struct Plan {
    pub big: usize,
    pub small: usize,
    pub wide: Wide,
    pub limit: Duration,
    pub rand_secs: u64,
    /// The fleet group's version: this many 16 MiB files and this many small ones.
    pub fleet: (usize, usize),
}

/// Daemons in the fleet group, each a node with its own disk cache.
pub const NODES: usize = 16;

/// What one `datastore push` did.
pub struct Pushed {
    pub secs: f64,
    pub uploaded_bytes: u64,
    /// Bytes of files read and hashed (the stat cache spares unchanged files).
    pub hashed_bytes: u64,
}

/// `datastore push`, timed.
pub fn push(s: &Setup, dir: &Path, name: &str) -> Pushed {
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
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("bench/.tools/bin/mount-s3")
            .exists(),
        "mount-s3 (Mountpoint-S3) missing: run bench/run, which builds it"
    );
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
        nic: None,
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
    let fleet_rows = fleet::group(&s, &server, &plan, &w.join("src/fleet"));

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
    // MLPerf Storage's workload, on moto with the small files (Mountpoint-S3 and s3fs list
    // its folder, which s3s-fs answers without ETags and with a 500 for a directory's key).
    let dlio_dir = w.join("src/dlio");
    dlio::generate(&dlio_dir, &w.join("dlio-generate"));
    push(&s_small, &dlio_dir, "dlio");
    let dlio_files: Vec<(String, PathBuf)> = std::fs::read_dir(dlio_dir.join("train"))
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            (format!("dlio/train/{name}"), e.path())
        })
        .collect();
    let dlio_bytes = dlio_files
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let dlio_keys = dlio_files.iter().map(|(k, _)| k.clone()).collect();
    rt.block_on(measure::upload(&small_plain, dlio_files));
    let workload = dlio::Workload {
        local: &dlio_dir,
        keys: dlio_keys,
        bytes: dlio_bytes,
        batch: 4,
        limit: plan.limit,
    };
    let data = links::Data {
        big: &s,
        small: &s_small,
        big_len: plan.big as u64,
        shards,
        small_files: &small,
        limit: plan.limit,
        dlio: &workload,
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
    let vs = |s: System, f: fn(&Scores) -> &Option<Figure>| v(f(&scores[s as usize]));
    let targets = [
        Target {
            what: "cold sequential ≥ 0.90 × raw GET",
            measured: ratio(v(&ds.cold), raw_seq),
            at_least: Some(0.9),
            at_most: None,
        },
        Target {
            what: "cold sequential ≥ 1.5 × s3fs",
            measured: ratio(v(&ds.cold), vs(System::S3fs, |s| &s.cold)),
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
            measured: ratio(v(&ds.small_cold), vs(System::S3fs, |s| &s.small_cold)),
            at_least: Some(5.0),
            at_most: None,
        },
        Target {
            what: "small files cold ≥ 3 × rclone (files/s)",
            measured: ratio(v(&ds.small_cold), vs(System::Rclone, |s| &s.small_cold)),
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
    // The S3-like link first: what a node reading from object storage meets.
    let lead = &links::profiles()[0];
    let s3_like: Vec<Row> = rows
        .iter()
        .filter(|r| r.workload.starts_with(&format!("L. {}:", lead.name)))
        .cloned()
        .collect();
    let _ = write!(
        body,
        "### Over the {} link ({})\n\n",
        lead.name,
        lead.describe()
    );
    body.push_str(&report::markdown(&s3_like, &[], plan.limit.as_secs()));
    body.push_str("\n### Every row\n\n");
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
