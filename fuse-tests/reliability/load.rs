//! Load: many readers for minutes over a dataset larger than the cache, and many mounts of
//! one cache at once.

use crate::common::{report, tree, Moto};
use crate::crashes::assert_cache_consistent;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A `/proc/PID/status` field in bytes (for the kB ones).
fn status_bytes(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        << 10
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// What the open descriptors are (sockets, cache files…), for a failure message.
fn fd_kinds(pid: u32) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let t = std::fs::read_link(e.path())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let kind = match t.rsplit_once('/') {
            Some((dir, _)) if t.starts_with('/') => dir.to_string(),
            _ => t.split(['[', ':']).next().unwrap_or_default().to_string(),
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    kinds
}

struct Sample {
    at: Duration,
    rss: u64,
    fds: u64,
    cache: u64,
}

/// 64 readers, whole files and scattered ranges, over a dataset three times the cache, for
/// two minutes against moto (in the long run: ten minutes against s3s-fs, the fast server,
/// with a cache a sixth of the data, so that it turns over many times): no error, every byte
/// right, RSS and open descriptors flat after warm-up, the cache within its quota. The
/// kernel's copy of each file is dropped after every read, so every read reaches the daemon.
#[test]
fn sixty_four_readers_over_a_dataset_larger_than_the_cache() {
    let duration = Duration::from_secs(report::pick(120, 600));
    let quota: u64 = report::pick(48, 24) << 20;
    let (_moto, _s3s, env) = match report::long() {
        false => {
            let moto = Moto::start();
            let env = moto.env();
            (Some(moto), None, env)
        }
        true => {
            let s3s = crate::common::s3s::S3sFs::start();
            let env = s3s.env();
            (None, Some(s3s), env)
        }
    };
    let server = if report::long() { "s3s-fs" } else { "moto" };
    let src = env.dir("src");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    let mut names = vec![];
    std::fs::create_dir_all(src.join("big")).unwrap();
    for i in 0..36 {
        let name = format!("big/f{i:02}.bin");
        tree::write_random(&src.join(&name), 4 << 20, &mut rng);
        names.push(name);
    }
    for i in 0..200 {
        let name = format!("small/{:02}/s{i:03}.bin", i % 10);
        std::fs::create_dir_all(src.join(&name).parent().unwrap()).unwrap();
        tree::write_random(&src.join(&name), rng.gen_range(1..100_000), &mut rng);
        names.push(name);
    }
    env.push(&src, "ds");
    let want: BTreeMap<String, Vec<u8>> = names
        .iter()
        .map(|n| (n.clone(), std::fs::read(src.join(n)).unwrap()))
        .collect();
    let total: usize = want.values().map(|v| v.len()).sum();
    assert!(total as u64 > 3 * quota);
    let mnt = env.mount(
        "ds",
        &[
            &format!("cache_size={quota}"),
            "memory=16M",
            "fetch_budget=64M",
        ],
    );
    let pid = mnt.pid().unwrap();
    let stop = AtomicBool::new(false);
    let (reads, bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut samples = vec![];
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..64u64 {
            let (mnt, want, names, stop, reads, bytes) =
                (&mnt, &want, &names, &stop, &reads, &bytes);
            s.spawn(move || {
                let mut rng = rand::rngs::SmallRng::seed_from_u64(100 + t);
                while !stop.load(Ordering::Relaxed) {
                    let name = &names[rng.gen_range(0..names.len())];
                    let expect = &want[name];
                    let path = mnt.point.join(name);
                    if rng.gen_bool(0.5) {
                        let got = std::fs::read(&path)
                            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", mnt.log()));
                        assert!(&got == expect, "{name} differs");
                        bytes.fetch_add(got.len() as u64, Ordering::Relaxed);
                        // Versions are immutable, so the kernel would keep every page and
                        // the daemon would idle; dropping them sends each read to it.
                        crate::common::drop_page_cache(&path);
                    } else {
                        let f = std::fs::File::open(&path).unwrap();
                        for _ in 0..8 {
                            let off = rng.gen_range(0..expect.len());
                            let len = (64 << 10).min(expect.len() - off);
                            let mut buf = vec![0; len];
                            f.read_exact_at(&mut buf, off as u64)
                                .unwrap_or_else(|e| panic!("{name} at {off}: {e}\n{}", mnt.log()));
                            assert!(buf == expect[off..off + len], "{name} at {off} differs");
                            crate::common::drop_page_cache(&path);
                            bytes.fetch_add(len as u64, Ordering::Relaxed);
                        }
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while start.elapsed() < duration {
            std::thread::sleep(Duration::from_secs(2));
            samples.push(Sample {
                at: start.elapsed(),
                rss: status_bytes(pid, "VmRSS:"),
                fds: open_fds(pid),
                cache: datastore::cache::DiskCache::usage(&env.cache_dir()).1,
            });
        }
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed();
    let peak = status_bytes(pid, "VmHWM:");
    let fds_at_end = fd_kinds(pid);
    let series = |f: fn(&Sample) -> u64| {
        samples
            .iter()
            .map(|s| f(s).to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("soak RSS MiB: {}", series(|s| s.rss >> 20));
    println!("soak fds: {}", series(|s| s.fds));
    println!("soak cache MiB: {}", series(|s| s.cache >> 20));
    drop(mnt);
    // Growth is judged after a warm-up of a quarter of the run: the first third of what is
    // left against the last third.
    let settled: Vec<&Sample> = samples.iter().filter(|s| s.at > duration / 4).collect();
    let third = settled.len() / 3;
    assert!(third >= 2, "too few samples: {}", samples.len());
    let (early, late) = (&settled[..third], &settled[settled.len() - third..]);
    let max = |v: &[&Sample], f: fn(&Sample) -> u64| v.iter().map(|s| f(s)).max().unwrap();
    let (rss_early, rss_late) = (max(early, |s| s.rss), max(late, |s| s.rss));
    let (fd_early, fd_late) = (max(early, |s| s.fds), max(late, |s| s.fds));
    let cache_max = samples.iter().map(|s| s.cache).max().unwrap();
    assert!(
        rss_late <= rss_early + rss_early / 10 + (16 << 20),
        "RSS grew from {} to {} MiB",
        rss_early >> 20,
        rss_late >> 20
    );
    assert!(
        fd_late <= fd_early + 16,
        "open descriptors grew from {fd_early} to {fd_late}: {fds_at_end:?}"
    );
    // An entry is written before eviction brings the cache back under its quota.
    assert!(
        cache_max <= quota + (8 << 20),
        "cache at {cache_max} over {quota}"
    );
    assert_cache_consistent(&env.cache_dir());
    let reads = reads.load(Ordering::Relaxed);
    let mib = bytes.load(Ordering::Relaxed) >> 20;
    println!("soak: {reads} reads, {mib} MiB in {elapsed:?}; RSS {} → {} MiB, peak {} MiB; fds {fd_early} → {fd_late}; cache max {} MiB", rss_early >> 20, rss_late >> 20, peak >> 20, cache_max >> 20);
    report::row(
        "soak",
        &format!(
            "64 readers (whole files, 8 × 64 KiB ranges) over {} MiB in {} files, cache_size {}M, memory 16M, S3 on {server}, {} s",
            total >> 20,
            names.len(),
            quota >> 20,
            duration.as_secs()
        ),
        reads,
        &format!(
            "no error, all bytes right ({mib} MiB read, {} × the cache); RSS {} → {} MiB after warm-up (peak {}); fds {fd_early} → {fd_late}; cache at most {} MiB of {}",
            mib / (quota >> 20),
            rss_early >> 20,
            rss_late >> 20,
            peak >> 20,
            cache_max >> 20,
            quota >> 20
        ),
    );
}

/// Twenty versions mounted at once, every daemon on one cache directory with a quota a third
/// of the data, and a prefetch into it meanwhile: each mount shows its own version, byte for
/// byte, while all are read together, and the directory never holds more than the quota and
/// one entry, the daemons and the prefetch counting their use together.
#[test]
fn twenty_versions_mounted_at_once_from_one_cache() {
    const VERSIONS: usize = 20;
    let moto = Moto::start();
    let env = moto.env();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(12);
    let mut shared = vec![];
    for i in 0..8 {
        let mut data = vec![0u8; 512 << 10];
        rng.fill(&mut data[..]);
        shared.push((format!("shared/s{i}.bin"), data));
    }
    let mut srcs = vec![];
    for v in 1..=VERSIONS {
        let src = env.dir(&format!("src{v}"));
        for (name, data) in &shared {
            std::fs::create_dir_all(src.join(name).parent().unwrap()).unwrap();
            std::fs::write(src.join(name), data).unwrap();
        }
        std::fs::write(src.join("version.txt"), format!("{v}\n")).unwrap();
        tree::write_random(&src.join("own.bin"), 1 << 20, &mut rng);
        let r = env.push(&src, "ds");
        assert_eq!(r["version"], format!("ds@v{v}"));
        srcs.push(src);
    }
    let quota: u64 = 8 << 20;
    let size = format!("cache_size={quota}");
    let mounts: Vec<_> = (1..=VERSIONS)
        .map(|v| env.mount(&format!("ds@{v}"), &[&size]))
        .collect();
    let cache = env.cache_dir();
    let reading = std::sync::atomic::AtomicBool::new(true);
    let busiest = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut busiest = 0;
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                busiest = busiest.max(datastore::cache::DiskCache::usage(&cache).1);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            busiest
        });
        let readers: Vec<_> = mounts
            .iter()
            .zip(&srcs)
            .map(|(m, src)| s.spawn(move || tree::assert_same(src, &m.point)))
            .collect();
        let quota = quota.to_string();
        env.ok(["prefetch", "ds@1", "--cache-size", &quota]);
        for r in readers {
            r.join().unwrap();
        }
        reading.store(false, std::sync::atomic::Ordering::Relaxed);
        watcher.join().unwrap()
    });
    // The largest entry: an own.bin of 1 MiB, as a file entry (4 KiB blocks).
    let one_entry = (1 << 20) + 4096;
    assert!(
        busiest <= quota + one_entry,
        "the cache held {busiest} bytes at its busiest, over {quota} and one entry"
    );
    let pids: std::collections::BTreeSet<u32> = mounts.iter().map(|m| m.pid().unwrap()).collect();
    assert_eq!(pids.len(), VERSIONS);
    drop(mounts);
    let entries = assert_cache_consistent(&env.cache_dir());
    report::row(
        "many mounts",
        "20 versions (8 shared files + 2 own each) mounted at once by 20 daemons on one cache directory with an 8 MiB quota (a third of the data), read together beside a prefetch",
        VERSIONS as u64,
        &format!("every mount byte-identical to its version; the cache at most {} KiB at its busiest (quota 8,192 KiB); {entries} cache entries, all consistent", busiest >> 10),
    );
}
