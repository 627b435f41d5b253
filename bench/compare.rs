//! datastore side by side with s3fs, rclone mount, the raw GET rate and local disk, all in one
//! run against one s3s-fs server on 127.0.0.1, so that noise cancels. Run as root through
//! `bench/run` (which installs s3s-fs, s3fs and rclone); `--quick` for a small run.
//!
//! Prints a markdown table of figures and ratios for bench/RESULTS.md.

mod common;

use datastore::store::{Store, StoreOptions};
use futures::StreamExt;
use rand::{Rng, RngCore, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A mount this run made; unmounted (lazily, so it cannot hang) when dropped.
struct Mount {
    point: PathBuf,
    _daemon: Option<common::Owned>,
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.point).status();
    }
}

fn is_mounted(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*p.to_string_lossy()))
}

fn wait_mounted(p: &Path) {
    let start = Instant::now();
    while !is_mounted(p) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} never mounted",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn seq_rate(path: &Path) -> f64 {
    common::seq_rate(path).1
}

/// Files per second for 8 readers reading every file once, each its own shuffled share.
fn small_files_rate(root: &Path, files: &[PathBuf]) -> f64 {
    let mut order = files.to_vec();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    let start = Instant::now();
    std::thread::scope(|s| {
        for part in order.chunks(order.len().div_ceil(8)) {
            s.spawn(move || {
                for f in part {
                    std::fs::read(root.join(f)).unwrap();
                }
            });
        }
    });
    files.len() as f64 / start.elapsed().as_secs_f64()
}

fn peak_rss_mib(point: &Path) -> Option<u64> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmd);
        if text.contains("datastore") && text.contains(&*point.to_string_lossy()) {
            let st = std::fs::read_to_string(e.path().join("status")).ok()?;
            let kib: u64 = st
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            return Some(kib >> 10);
        }
    }
    None
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (big, small_n) = if quick {
        (256usize << 20, 2_000)
    } else {
        (1 << 30, 20_000)
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = common::release_binary();
    let work = tempfile::Builder::new()
        .prefix("datastore-compare-")
        .tempdir_in(root.join("target"))
        .unwrap();
    let w = work.path();
    let s3root = w.join("s3");
    for b in ["bench", "plain"] {
        std::fs::create_dir_all(s3root.join(b)).unwrap();
    }
    let (_server, endpoint) = common::start_s3s(&s3root);

    // The datasets: one large file, and small files of ~100 KiB in 100 directories.
    let src = w.join("src");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    std::fs::create_dir_all(&src).unwrap();
    let mut data = vec![0u8; big];
    rng.fill_bytes(&mut data);
    std::fs::write(src.join("big.bin"), &data).unwrap();
    drop(data);
    let mut small = Vec::new();
    for i in 0..small_n {
        let rel = PathBuf::from(format!("small/d{:03}/f{i:05}.jpg", i % 100));
        std::fs::create_dir_all(src.join(rel.parent().unwrap())).unwrap();
        let mut d = vec![0u8; rng.gen_range(50_000..150_000)];
        rng.fill_bytes(&mut d);
        std::fs::write(src.join(&rel), d).unwrap();
        small.push(rel);
    }
    // Plain objects for s3fs and rclone: s3s-fs serves its directory as the bucket.
    assert!(Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(src.join("big.bin"))
        .arg(src.join("small"))
        .arg(s3root.join("plain"))
        .status()
        .unwrap()
        .success());
    let ds = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.args(["--store", "s3://bench/ds", "-q"]).args(args);
        c
    };
    let t = Instant::now();
    assert!(ds(&["push", src.to_str().unwrap(), "bench"])
        .status()
        .unwrap()
        .success());
    let push_mb_s = (big as f64 + small.len() as f64 * 100e3) / 1e6 / t.elapsed().as_secs_f64();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let raw = rt.block_on(async {
        let store = Store::open("s3://plain", &StoreOptions::default()).unwrap();
        let ranges: Vec<_> = (0..big as u64)
            .step_by(8 << 20)
            .map(|o| o..(o + (8 << 20)).min(big as u64))
            .collect();
        let start = Instant::now();
        let n: u64 = futures::stream::iter(ranges)
            .map(|r| {
                let s = store.clone();
                async move { s.get_range("big.bin", r).await.unwrap().len() as u64 }
            })
            .buffer_unordered(16)
            .fold(0, |a, n| async move { a + n })
            .await;
        n as f64 / 1e6 / start.elapsed().as_secs_f64()
    });

    let pw = w.join("s3fs.passwd");
    std::fs::write(&pw, "bench:benchbench\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();

    let mount = |name: &str| -> Mount {
        let point = w.join(format!("mnt-{name}"));
        let cache = w.join(format!("cache-{name}"));
        std::fs::create_dir_all(&point).unwrap();
        std::fs::create_dir_all(&cache).unwrap();
        let daemon = match name {
            "datastore" => {
                let out = ds(&["mount", "bench", point.to_str().unwrap(), "--cache-dir"])
                    .arg(&cache)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                None
            }
            "s3fs" => {
                let opts = format!(
                    "url={endpoint},use_path_request_style,passwd_file={},use_cache={}",
                    pw.display(),
                    cache.display()
                );
                assert!(Command::new("s3fs")
                    .arg("plain")
                    .arg(&point)
                    .args(["-o", &opts])
                    .status()
                    .unwrap()
                    .success());
                None
            }
            _ => Some(common::Owned(
                Command::new("rclone")
                    .env_remove("AWS_CA_BUNDLE")
                    .env("RCLONE_CONFIG_S3_TYPE", "s3")
                    .env("RCLONE_CONFIG_S3_PROVIDER", "Other")
                    .env("RCLONE_CONFIG_S3_ENDPOINT", &endpoint)
                    .env("RCLONE_CONFIG_S3_ACCESS_KEY_ID", "bench")
                    .env("RCLONE_CONFIG_S3_SECRET_ACCESS_KEY", "benchbench")
                    .args(["mount", "s3:plain"])
                    .arg(&point)
                    .args(["--vfs-cache-mode", "full", "--cache-dir"])
                    .arg(&cache)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )),
        };
        wait_mounted(&point);
        Mount {
            point,
            _daemon: daemon,
        }
    };

    // Local disk baselines.
    common::drop_caches();
    let local_cold = seq_rate(&src.join("big.bin"));
    let local_page = seq_rate(&src.join("big.bin"));
    common::drop_caches();
    let local_small = small_files_rate(&src, &small);

    struct Row {
        cold: f64,
        warm: f64,
        page: f64,
        small_cold: f64,
        small_warm: f64,
        rss: Option<u64>,
    }
    let mut rows = Vec::new();
    for name in ["datastore", "s3fs", "rclone"] {
        let m = mount(name);
        common::drop_caches();
        let cold = seq_rate(&m.point.join("big.bin"));
        // rclone and s3fs finish writing their cache files in the background.
        std::thread::sleep(Duration::from_secs(2));
        common::drop_caches();
        let warm = seq_rate(&m.point.join("big.bin"));
        let page = seq_rate(&m.point.join("big.bin"));
        common::drop_caches();
        let small_cold = small_files_rate(&m.point, &small);
        std::thread::sleep(Duration::from_secs(2));
        common::drop_caches();
        let small_warm = small_files_rate(&m.point, &small);
        let rss = if name == "datastore" {
            peak_rss_mib(&m.point)
        } else {
            None
        };
        eprintln!("{name}: done");
        rows.push((
            name,
            Row {
                cold,
                warm,
                page,
                small_cold,
                small_warm,
                rss,
            },
        ));
    }

    let d = &rows[0].1;
    println!(
        "{} run: {} MiB file, {} small files of 50–150 KB; s3s-fs 0.14.1 on 127.0.0.1",
        if quick { "quick" } else { "full" },
        big >> 20,
        small.len()
    );
    println!();
    println!("| workload | raw GET / local | datastore | s3fs | rclone | ds/limit | ds/local | ds/s3fs | ds/rclone |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let line = |what: &str, limit: f64, local: f64, f: &dyn Fn(&Row) -> f64| {
        let (a, b, c) = (f(&rows[0].1), f(&rows[1].1), f(&rows[2].1));
        println!(
            "| {what} | {limit:.0} / {local:.0} | {a:.0} | {b:.0} | {c:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            a / limit,
            a / local,
            a / b,
            a / c
        );
    };
    line("cold sequential MB/s", raw, local_cold, &|r| r.cold);
    line(
        "warm sequential MB/s (page cache dropped)",
        raw,
        local_cold,
        &|r| r.warm,
    );
    line("page-cache re-read MB/s", local_page, local_page, &|r| {
        r.page
    });
    line(
        "small files cold, files/s (8 readers)",
        local_small,
        local_small,
        &|r| r.small_cold,
    );
    line(
        "small files warm, files/s (8 readers)",
        local_small,
        local_small,
        &|r| r.small_warm,
    );
    println!();
    println!(
        "push: {push_mb_s:.0} MB/s; datastore daemon peak RSS: {} MiB",
        d.rss.unwrap_or(0)
    );
}
