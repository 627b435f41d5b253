//! Faults of the object store, injected by a TCP proxy between the daemon and a real S3
//! server: the server dying or hanging mid-epoch, a slow and lossy link, damaged objects,
//! and a push against a failing server.

use crate::common::mount::Mounted;
use crate::common::proxy::{Faults, Proxy};
use crate::common::tree::random_files;
use crate::common::{drop_page_cache, report, tree, Moto};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::{Duration, Instant};

fn same(mnt: &Mounted, src: &Path, name: &str) -> std::io::Result<bool> {
    let got = std::fs::read(mnt.point.join(name))?;
    Ok(got == std::fs::read(src.join(name)).unwrap())
}

/// The store dies (connections refused and reset) or hangs in the middle of an epoch: what
/// was read before keeps being served from the disk cache, what was not fails with EIO
/// within the timeout, and once the store is back every file reads right without a remount.
#[test]
fn the_store_dying_or_hanging_mid_epoch() {
    const TIMEOUT: u64 = 2;
    // The bound a reader may wait: the timeout, and slack for a loaded machine. (The kernel
    // retries a failed page at once; the daemon answers that retry from the failure it just
    // saw rather than waiting out the timeout again.)
    let bound = Duration::from_secs(TIMEOUT + 3);
    let rounds = report::pick(2, 10);
    let moto = Moto::start();
    let direct = moto.env();
    let src = direct.dir("src");
    random_files(&src, 1, 8, 2 << 20);
    direct.push(&src, "ds");
    let proxy = Proxy::start(moto.port, 1);
    let env = direct.via(proxy.port);
    let mut worst = Duration::ZERO;
    let mut eios = 0;
    for hang in [false, true] {
        for round in 0..rounds {
            // A fresh cache each round: half the files read before the outage, half not.
            let _ = std::fs::remove_dir_all(env.cache_dir());
            let mnt = env.mount("ds", &["memory=0", &format!("timeout={TIMEOUT}")]);
            let (before, after): (Vec<usize>, Vec<usize>) =
                (0..8).partition(|i| (i + round) % 2 == 0);
            for i in &before {
                assert!(same(&mnt, &src, &format!("f{i:03}.bin")).unwrap());
                drop_page_cache(&mnt.point.join(format!("f{i:03}.bin")));
            }
            if hang {
                proxy.set(Faults {
                    hang: true,
                    ..Faults::default()
                });
            } else {
                proxy.down();
            }
            for i in &before {
                let name = format!("f{i:03}.bin");
                assert!(
                    same(&mnt, &src, &name).unwrap_or(false),
                    "cached {name} not served during the outage: {}",
                    mnt.log()
                );
            }
            for i in &after {
                let start = Instant::now();
                let err = std::fs::read(mnt.point.join(format!("f{i:03}.bin"))).unwrap_err();
                let took = start.elapsed();
                assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
                assert!(took < bound, "EIO after {took:?}, bound {bound:?}");
                worst = worst.max(took);
                eios += 1;
            }
            proxy.set(Faults::default());
            proxy.up();
            for i in &after {
                let name = format!("f{i:03}.bin");
                assert!(
                    same(&mnt, &src, &name).unwrap(),
                    "{name} wrong after the store came back"
                );
            }
        }
    }
    report::row(
        "store outage mid-epoch",
        &format!(
            "server killed (refused + reset) and hung, {rounds} rounds each, 4 cached + 4 uncached files, timeout={TIMEOUT}s"
        ),
        2 * rounds as u64,
        &format!(
            "cached files served; {eios} uncached reads EIO, slowest {:.1}s (bound {}s); all read right after recovery without remount",
            worst.as_secs_f64(),
            bound.as_secs()
        ),
    );
}

/// Reads of many readers over a link with 200 ms latency and 1 % of requests reset, then
/// 10 % reset, then 20 % of GETs answered `503 Slow Down`: every byte right, nothing hangs,
/// and the slowdown is reported.
#[test]
fn a_slow_lossy_link() {
    let moto = Moto::start();
    let direct = moto.env();
    let src = direct.dir("src");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(2);
    for d in 0..4 {
        for i in 0..8 {
            let size = if i < 2 {
                3 << 20
            } else {
                rng.gen_range(1..200_000)
            };
            std::fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
            tree::write_random(&src.join(format!("d{d}/f{i}.bin")), size, &mut rng);
        }
    }
    direct.push(&src, "ds");
    let proxy = Proxy::start(moto.port, 2);
    let env = direct.via(proxy.port);
    // Requests seen, and faults injected (resets and 503s).
    let counts = || {
        use std::sync::atomic::Ordering::Relaxed;
        let c = proxy.counters();
        (
            c.requests.load(Relaxed),
            c.resets.load(Relaxed) + c.slow_downs.load(Relaxed),
        )
    };
    let read_all = |faults: Faults| -> (Duration, u64, u64) {
        proxy.set(faults);
        let _ = std::fs::remove_dir_all(env.cache_dir());
        let (req0, faults0) = counts();
        let start = Instant::now();
        let mnt = env.mount("ds", &["timeout=30"]);
        std::thread::scope(|s| {
            for d in 0..4 {
                let (mnt, src) = (&mnt, &src);
                s.spawn(move || {
                    for i in 0..8 {
                        let name = format!("d{d}/f{i}.bin");
                        let got = std::fs::read(mnt.point.join(&name))
                            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", mnt.log()));
                        assert!(
                            got == std::fs::read(src.join(&name)).unwrap(),
                            "{name} differs"
                        );
                    }
                });
            }
        });
        let took = start.elapsed();
        drop(mnt);
        let (req, faults) = counts();
        (took, req - req0, faults - faults0)
    };
    let rounds = report::pick(1, 5);
    let (mut clean, mut slow, mut lossy, mut throttled) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let (mut requests, mut injected) = (0, 0);
    for _ in 0..rounds {
        clean += read_all(Faults::default()).0;
        let (t, q, r) = read_all(Faults {
            latency: Duration::from_millis(200),
            resets: 0.01,
            ..Faults::default()
        });
        slow += t;
        requests += q;
        injected += r;
        let (t, q, r) = read_all(Faults {
            resets: 0.10,
            ..Faults::default()
        });
        lossy += t;
        requests += q;
        injected += r;
        let (t, q, r) = read_all(Faults {
            slow_downs: 0.20,
            ..Faults::default()
        });
        assert!(r > 0, "no 503 was injected in {q} requests");
        throttled += t;
        requests += q;
        injected += r;
    }
    report::row(
        "slow, lossy link",
        &format!("4 readers × 8 files (2 × 3 MiB + small), mount to last byte; 200 ms + 1 % resets, then 10 % resets, then 20 % of GETs answered 503 Slow Down; {rounds} rounds"),
        rounds as u64,
        &format!(
            "all bytes right, no hang; {injected} resets and 503s injected in {requests} requests; time {:.1}s clean, {:.1}s at 200 ms + 1 %, {:.1}s at 10 % resets, {:.1}s at 20 % 503s",
            clean.as_secs_f64() / rounds as f64,
            slow.as_secs_f64() / rounds as f64,
            lossy.as_secs_f64() / rounds as f64,
            throttled.as_secs_f64() / rounds as f64
        ),
    );
}

/// A blob whose bytes were changed on the server, a truncated one and one replaced by another
/// blob: the read is EIO, the log names the dataset, the path and the blob, nothing of it is
/// cached, and once the object is repaired the same mount reads it right.
#[test]
fn damaged_objects_on_the_server() {
    let moto = Moto::start();
    let env = moto.env();
    let src = env.dir("src");
    random_files(&src, 3, 4, 3 << 20);
    env.push(&src, "ds");
    let blobs: Vec<(String, u64)> = env.objects(&["blobs/"]);
    assert!(blobs.len() >= 4, "{blobs:?}");
    let mut tried = 0;
    for (n, how) in ["bit flip", "truncation", "another blob"]
        .iter()
        .enumerate()
    {
        let _ = std::fs::remove_dir_all(env.cache_dir());
        let (key, size) = &blobs[n];
        let good = env.get_object(key);
        let bad = match n {
            0 => {
                let mut b = good.clone();
                b[*size as usize / 3] ^= 0x01;
                b
            }
            1 => good[..good.len() - 1].to_vec(),
            _ => env.get_object(&blobs[n + 1].0),
        };
        env.put_object(key, bad);
        let mnt = env.mount("ds", &["memory=0"]);
        let mut failed = vec![];
        for i in 0..4 {
            let name = format!("f{i:03}.bin");
            match std::fs::read(mnt.point.join(&name)) {
                Ok(got) => assert!(
                    got == std::fs::read(src.join(&name)).unwrap(),
                    "{how}: {name} served wrong bytes"
                ),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{how}: {name}: {e}");
                    failed.push(name);
                }
            }
        }
        assert_eq!(
            failed.len(),
            1,
            "{how}: exactly the damaged file fails: {failed:?}"
        );
        let log = mnt.log();
        let line = log
            .lines()
            .find(|l| l.contains("does not match its SHA-256"))
            .unwrap_or_else(|| panic!("{how}: no damage logged: {log}"));
        for part in ["ds@v1", failed[0].as_str(), key.as_str()] {
            assert!(
                line.contains(part),
                "{how}: the log line should name {part}: {line}"
            );
        }
        let hash = key.rsplit('/').next().unwrap();
        let cached = walk_names(&env.cache_dir());
        assert!(
            !cached.iter().any(|n| n.contains(hash)),
            "{how}: damaged blob in the cache: {cached:?}"
        );
        env.put_object(key, good);
        assert!(
            same(&mnt, &src, &failed[0]).unwrap(),
            "{how}: not right after repair"
        );
        tried += 1;
    }
    report::row(
        "damaged object on the server",
        "bit flip, truncation by one byte, replaced by another blob (S3, fresh cache each)",
        tried,
        "EIO for the damaged file only, log line names dataset@version, path and blob key; nothing cached; right after repair without remount",
    );
}

/// Every file name under `dir`, recursively.
pub fn walk_names(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.extend(walk_names(&e.path()));
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// A push through a link that resets connections mid-upload either retries to success or
/// fails cleanly; a push whose server dies midway fails within the timeout with one error
/// line; neither leaves a version, and the next push completes, uploading only the rest.
#[test]
fn push_against_a_failing_server() {
    let rounds = report::pick(2, 10);
    let moto = Moto::start();
    let direct = moto.env();
    let proxy = Proxy::start(moto.port, 4);
    let env = direct.via(proxy.port);
    let src = env.dir("src");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(4);
    let (mut retried_ok, mut failed_clean, mut died) = (0, 0, 0);
    for round in 0..rounds {
        // New content each round, so there is something to upload.
        for i in 0..24 {
            tree::write_random(&src.join(format!("f{i:03}.bin")), 1 << 20, &mut rng);
        }
        let have = direct.versions("ds");
        proxy.set(Faults {
            resets: 0.05,
            ..Faults::default()
        });
        let out = env.run(["push", src.to_str().unwrap(), "ds", "--timeout", "20"]);
        proxy.set(Faults::default());
        if out.status.success() {
            retried_ok += 1;
        } else {
            assert_eq!(out.status.code(), Some(1), "{out:?}");
            assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
            failed_clean += 1;
        }
        // A push whose commit landed but whose answer was lost fails with a whole version.
        let now = direct.versions("ds");
        assert!(
            now == have + 1 || (now == have && !out.status.success()),
            "{now} after {have}: {out:?}"
        );
        if now > have {
            direct.ok(["verify", "ds"]);
        }

        // The server dies once the push has stored some of the new content.
        for i in 0..24 {
            tree::write_random(&src.join(format!("f{i:03}.bin")), 1 << 20, &mut rng);
        }
        let have = direct.versions("ds");
        let before = direct.content_keys().len();
        // A slow link, so that the server dies while the upload is still going.
        proxy.set(Faults {
            latency: Duration::from_millis(200),
            ..Faults::default()
        });
        let mut child = env
            .command(["push", src.to_str().unwrap(), "ds", "--timeout", "3"])
            .spawn()
            .unwrap();
        let start = Instant::now();
        while direct.content_keys().len() < before + 1 && child.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "push stored nothing"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy.down();
        let t = Instant::now();
        let out = crate::common::wait(child, Duration::from_secs(120)).unwrap();
        let took = t.elapsed();
        proxy.set(Faults::default());
        proxy.up();
        if !out.status.success() {
            died += 1;
            assert_eq!(out.status.code(), Some(1), "{out:?}");
            let errors = out
                .stderr
                .lines()
                .filter(|l| l.starts_with("datastore: "))
                .count();
            assert_eq!(errors, 1, "{}", out.stderr);
            assert!(took < Duration::from_secs(30), "push took {took:?} to fail");
            assert_eq!(direct.versions("ds"), have, "a failed push left a version");
        }
        let stored = direct.content_keys().len();
        let r = env.push(&src, "ds");
        let new_objects = direct.content_keys().len() - stored;
        assert!(
            r["uploaded_objects"].as_u64().unwrap() as usize <= new_objects + 1,
            "the next push re-uploaded what was stored: {r}"
        );
        let dest = env.scratch.path().join(format!("get{round}"));
        env.ok(["get", "ds", dest.to_str().unwrap()]);
        tree::assert_same(&src, &dest);
    }
    assert!(died > 0, "the server never died while a push was uploading");
    report::row(
        "push against a failing server",
        &format!("{rounds} rounds of 24 MiB: 5 % of requests reset; then, over a 200 ms link, the server killed once the upload has begun"),
        rounds as u64,
        &format!(
            "{retried_ok} pushes retried to success, {failed_clean} failed with one error line; {died} killed-server pushes failed cleanly; never a partial version; next push uploaded only the rest"
        ),
    );
}

/// S3 throttling writes: with 20 % of PUTs answered `503 Slow Down`, pushes complete by
/// retrying with back-off, each making exactly one whole version; with the first two tries
/// of each ref commit (a conditional PUT) answered 503, the commit is retried and never
/// makes two versions.
#[test]
fn push_through_throttled_writes() {
    use std::sync::atomic::Ordering::Relaxed;
    let rounds = report::pick(2, 10);
    let moto = Moto::start();
    let direct = moto.env();
    let proxy = Proxy::start(moto.port, 5);
    let env = direct.via(proxy.port);
    let src = env.dir("src");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    let (mut throttled, mut throttled_refs) = (0, 0);
    for round in 0..rounds {
        for (matching, share, first) in [("", 0.20, 0), ("/refs/", 0.0, 2)] {
            // New content each time, so there is something to upload and to commit.
            for i in 0..12 {
                tree::write_random(&src.join(format!("f{i:03}.bin")), 1 << 20, &mut rng);
            }
            std::fs::write(src.join("small.txt"), format!("{round} {matching}")).unwrap();
            let have = direct.versions("ds");
            let before = proxy.counters().write_slow_downs.load(Relaxed);
            proxy.set(Faults {
                write_slow_downs: share,
                first_writes_slowed: first,
                writes_matching: matching,
                ..Faults::default()
            });
            let out = env.run(["push", src.to_str().unwrap(), "ds", "--json"]);
            proxy.set(Faults::default());
            let injected = proxy.counters().write_slow_downs.load(Relaxed) - before;
            assert!(out.status.success(), "{out:?}");
            assert_eq!(direct.versions("ds"), have + 1, "{injected} 503s: {out:?}");
            if matching.is_empty() {
                throttled += injected;
            } else {
                assert_eq!(injected, first, "each commit is answered 503 twice");
                throttled_refs += injected;
            }
            let dest = env
                .scratch
                .path()
                .join(format!("get{round}{}", matching.len()));
            env.ok(["get", "ds", dest.to_str().unwrap()]);
            tree::assert_same(&src, &dest);
        }
    }
    assert!(throttled > 0, "no PUT was answered 503");
    assert!(throttled_refs > 0, "no ref commit was answered 503");
    direct.ok(["verify", "ds"]);
    report::row(
        "throttled writes",
        &format!("{rounds} rounds: a push of 12 MiB with 20 % of PUTs answered 503 Slow Down, then one whose ref commit is answered 503 twice"),
        rounds as u64,
        &format!(
            "every push completed with one whole version; {throttled} PUTs and {throttled_refs} ref commits throttled and retried"
        ),
    );
}
