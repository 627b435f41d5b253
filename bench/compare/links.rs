//! Cold reads over links shaped like object storage's, through the test proxy in front of the
//! servers: on loopback a server answers at once and a connection carries whatever the CPU
//! allows, which hides what a real link costs. Each profile gets its own limit (the best of
//! 16, 32, 64 and 128 parallel ranged GETs through the same link), and every system reads
//! through it.

use crate::dlio;
use crate::measure::{self, Figure};
use crate::proxy::{Faults, Link, Proxy};
use crate::report::Row;
use crate::systems::{Mount, Setup, System};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MB: u64 = 1_000_000;

/// How many of the small files each profile's raw GETs of them fetch.
const RAW_SMALL_FILES: usize = 2_000;

/// A link, and what it stands for.
pub struct Profile {
    pub name: &'static str,
    pub link: Link,
    /// Whether MLPerf Storage's engine trains over it too (the S3-like profile: a DLIO run
    /// costs a minute a system).
    pub dlio: bool,
}

impl Profile {
    /// The link in words, for the results' headings.
    pub fn describe(&self) -> String {
        let mb = |r: Option<u64>| r.map_or("no cap".to_string(), |r| format!("{} MB/s", r / MB));
        let mut s = format!(
            "{} ms to first byte, {} a connection, {} in all",
            self.link.first_byte.as_millis(),
            mb(self.link.per_connection),
            mb(self.link.total)
        );
        if self.link.stalls > 0.0 {
            s += &format!(
                ", {}% of requests stalled {} s",
                self.link.stalls * 100.0,
                self.link.stall.as_secs_f64()
            );
        }
        s
    }
}

/// The profiles every run measures (bench/README.md says why these numbers): S3 answers in
/// 10-30 ms and serves a connection at ~90 MB/s, so a 100 Gb/s node needs 100+ requests in
/// flight; scaled down to what two shared cores carry through the proxy (raw GETs reached
/// 150 MB/s of a 200 MB/s cap here): 25 ms, 5 MB/s a connection, 100 MB/s in all, so that
/// 20 connections are needed to fill it.
pub fn profiles() -> [Profile; 3] {
    let s3 = Link {
        first_byte: Duration::from_millis(25),
        per_connection: Some(5 * MB),
        total: Some(100 * MB),
        ..Default::default()
    };
    [
        Profile {
            name: "S3-like",
            link: s3.clone(),
            dlio: true,
        },
        Profile {
            name: "far",
            link: Link {
                first_byte: Duration::from_millis(60),
                per_connection: Some(20 * MB),
                ..s3.clone()
            },
            dlio: false,
        },
        Profile {
            name: "S3-like, 1% stalled 2 s",
            link: Link {
                stalls: 0.01,
                stall: Duration::from_secs(2),
                ..s3
            },
            dlio: false,
        },
    ]
}

/// What the link group reads: the large file and its shards on the fast server, the small
/// files on moto.
pub struct Data<'a> {
    pub big: &'a Setup,
    pub small: &'a Setup,
    pub big_len: u64,
    /// The shards' paths below a mount's root (the same for every system).
    pub shards: Vec<PathBuf>,
    /// The small files' paths below `small/` (the same for every system).
    pub small_files: &'a [PathBuf],
    pub limit: Duration,
    /// DLIO's workload, on the small files' server.
    pub dlio: &'a dlio::Workload<'a>,
}

/// Reads every file under `dir`, so that it is in the page cache.
fn warm(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => warm(&p),
            Ok(t) if t.is_file() => {
                if let Ok(mut f) = std::fs::File::open(&p) {
                    let _ = std::io::copy(&mut f, &mut std::io::sink());
                }
            }
            _ => {}
        }
    }
}

fn port_of(s: &Setup) -> u16 {
    s.endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the server's port")
}

/// Runs `f`, and the mean number of requests `link` had in flight meanwhile: how much of
/// the link's bandwidth-delay product a system kept busy.
fn in_flight<T>(link: &Proxy, f: impl FnOnce() -> T) -> (T, f64) {
    let c = link.counters();
    let (before, t) = (c.in_flight_ns_now(), Instant::now());
    let v = f();
    let ns = c.in_flight_ns_now().saturating_sub(before);
    (v, ns as f64 / t.elapsed().as_nanos().max(1) as f64)
}

/// The best rate of `measure` at 16, 32, 64 and 128 requests at once, and how many gave it.
fn best(measure: impl Fn(usize) -> f64) -> (f64, usize) {
    [16, 32, 64, 128]
        .into_iter()
        .map(|n| (measure(n), n))
        .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a })
}

/// Every row of every profile.
pub fn group(d: &Data, rt: &tokio::runtime::Runtime) -> Vec<Row> {
    // The servers' files in the page cache, once: the link, not the disk under the server,
    // is what these rows measure. (Clients start cold from an empty disk cache and a fresh
    // mount, which has no pages; nothing here drops the page cache.)
    warm(&d.big.work.join("s3"));
    let mut rows = Vec::new();
    for p in profiles() {
        rows.extend(profile(d, &p, rt));
    }
    rows
}

fn profile(d: &Data, p: &Profile, rt: &tokio::runtime::Runtime) -> Vec<Row> {
    let faults = Faults {
        link: p.link.clone(),
        ..Default::default()
    };
    let (big_link, small_link) = (
        Proxy::start(port_of(d.big), 11),
        Proxy::start(port_of(d.small), 12),
    );
    big_link.set(faults.clone());
    small_link.set(faults);
    let on_link = |s: &Setup, port| Setup {
        nic: p.link.total,
        ..s.through(port)
    };
    let (big, small) = (
        on_link(d.big, big_link.port),
        on_link(d.small, small_link.port),
    );
    let name = p.name;

    eprintln!("==> link {name}: the limit");
    std::env::set_var("AWS_ENDPOINT_URL", &big.endpoint);
    let plain = datastore::store::Store::open("s3://plain", &Default::default())
        .expect("the plain bucket through the link");
    let (raw, raw_at) = best(|n| rt.block_on(measure::raw_get_at(&plain, "big.bin", d.big_len, n)));
    std::env::set_var("AWS_ENDPOINT_URL", &small.endpoint);
    let plain_small = datastore::store::Store::open("s3://plain", &Default::default())
        .expect("the plain bucket of small files through the link");
    // A rate needs no more than a few thousand of them: all 20,000, four times over from
    // moto (~150 files/s), took 9 minutes a profile.
    let keys: Vec<String> = d
        .small_files
        .iter()
        .take(RAW_SMALL_FILES)
        .map(|f| format!("small/{}", f.display()))
        .collect();
    let (raw_small, raw_small_at) = best(|n| {
        rt.block_on(measure::raw_get_objects_at(&plain_small, &keys, n))
            .1
    });
    if let Some(nic) = p.link.total {
        eprintln!(
            "    raw GET {raw:.0} MB/s at {raw_at} at once: {:.2} of the NIC cap",
            raw / (nic / MB) as f64
        );
    }

    let size = format!("{} MiB", d.big_len >> 20);
    let shard = format!("{} MiB", (d.big_len / d.shards.len() as u64) >> 20);
    let n = d.small_files.len();
    let mut one = Row::new(format!("L. {name}: one reader, {size}, cold"), "MB/s");
    one.limit = Some(raw);
    let mut eight = Row::new(
        format!("L. {name}: 8 readers of 8 shards of {shard}, cold"),
        "MB/s",
    );
    eight.limit = Some(raw);
    let mut files = Row::new(
        format!("L. {name}: {n} small files, 8 readers, shuffled, cold"),
        "MB/s",
    );
    files.limit = Some(raw_small);
    // What each system kept in flight, beside what the limit needed.
    let mut one_n = Row::new(
        format!("L. {name}: one reader, requests in flight (mean; limit: the raw GETs' best)"),
        "requests",
    );
    one_n.limit = Some(raw_at as f64);
    let mut eight_n = Row::new(
        format!("L. {name}: 8 readers of 8 shards, requests in flight (mean)"),
        "requests",
    );
    eight_n.limit = Some(raw_at as f64);
    let mut rss = Row::new(format!("L. {name}: peak RSS, 8 readers of 8 shards"), "MiB");
    rss.higher_is_better = false;
    for system in System::ALL {
        eprintln!("==> link {name}: {}", system.name());
        let cache = d.big.work.join(format!("cache-link-{}", system.name()));
        let fresh = |s: &Setup, dataset: &str| {
            let _ = std::fs::remove_dir_all(&cache);
            Mount::new(s, system, dataset, &cache)
        };
        match fresh(&big, "big") {
            Ok(m) => {
                let file = m.point.join("big.bin");
                let (f, n) = in_flight(&big_link, || measure::seq_read(&file, d.limit));
                one.set(system, f);
                one_n.set(system, Figure::Done(n));
            }
            Err(e) => one.set(system, Figure::Failed(e)),
        }
        let (f, peak) = match fresh(&big, "shards") {
            Ok(m) => {
                m.reset_peak();
                let paths: Vec<PathBuf> = d.shards.iter().map(|s| m.point.join(s)).collect();
                let (f, n) = in_flight(&big_link, || measure::seq_read_all(&paths, d.limit));
                eight_n.set(system, Figure::Done(n));
                (f, m.peak_rss())
            }
            Err(e) => (Figure::Failed(e), None),
        };
        eight.set(system, f);
        if let Some(b) = peak {
            rss.set(system, Figure::Done(b as f64 / (1 << 20) as f64));
        }
        files.set(
            system,
            match fresh(&small, "small") {
                Ok(m) => {
                    let root = m.dataset_root("small");
                    measure::small_files(&root, d.small_files, 8, d.limit).1
                }
                Err(e) => Figure::Failed(e),
            },
        );
        let _ = std::fs::remove_dir_all(&cache);
    }
    let c = big_link.counters();
    eprintln!(
        "    the link carried {} requests at most {} at once; small files' limit at {raw_small_at} at once",
        c.requests.load(std::sync::atomic::Ordering::Relaxed),
        c.max_in_flight.load(std::sync::atomic::Ordering::Relaxed)
    );
    let mut rows = vec![one, one_n, eight, eight_n, files, rss];
    if p.dlio {
        eprintln!("==> link {name}: DLIO's limit");
        let (limit, _) = best(|n| {
            rt.block_on(measure::raw_get_objects_at(&plain_small, &d.dlio.keys, n))
                .1
        });
        rows.extend(dlio::rows(d.dlio, name, &small, limit));
    }
    rows
}
