//! Crashes at random points: kill -9 of the mount daemon during heavy reads, kill -9 of a
//! push, and a disk cache whose filesystem is full.

use crate::common::mount::{daemon_pids, Mounted};
use crate::common::tree::random_files;
use crate::common::{report, tree, Env, Kind};
use crate::faults::walk_names;
use datastore::format::Sha256;
use rand::{Rng, SeedableRng};
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Checks every disk cache entry: it reads back whole (a chunk entry with intact block
/// checksums) and its bytes hash to its name. Returns how many there are.
pub fn assert_cache_consistent(cache: &Path) -> usize {
    let buffers = datastore::buffers::Buffers::new(0);
    let entries = crate::common::cache_entries(cache);
    for path in &entries {
        let name = path.file_name().unwrap().to_string_lossy();
        let data = if crate::common::is_file_entry(path) {
            std::fs::read(path).unwrap_or_else(|err| panic!("file entry {name}: {err}"))
        } else {
            datastore::cache::entry::read(path, &buffers)
                .unwrap_or_else(|err| panic!("cache entry {name} is damaged: {err:?}"))
                .to_vec()
        };
        assert_eq!(
            Sha256::of(&data).to_hex(),
            name,
            "cache entry {name} holds other bytes"
        );
    }
    entries.len()
}

fn temporaries(cache: &Path) -> usize {
    std::fs::read_dir(cache.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// kill -9 of the daemon at a random moment of heavy reads, then umount and remount: every
/// byte right, every cache entry consistent, temporaries never piling up.
#[test]
fn kill_9_of_the_daemon_during_reads() {
    let iterations = report::pick(10, 100);
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    random_files(&src, 5, 16, 3 << 20);
    env.push(&src, "ds");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(6);
    let mut max_tmp = 0;
    for it in 0..iterations {
        let point = env.mount_point("killed");
        let guard = Mounted::adopt(&point);
        env.ok([OsStr::new("mount"), OsStr::new("ds"), point.as_os_str()]);
        let readers: Vec<_> = (0..4)
            .map(|t| {
                let point = point.clone();
                let src = src.clone();
                std::thread::spawn(move || {
                    for i in (t..16).step_by(4) {
                        let name = format!("f{i:03}.bin");
                        // Before the kill reads must be right; after it, they fail.
                        if let Ok(got) = std::fs::read(point.join(&name)) {
                            assert!(
                                got == std::fs::read(src.join(&name)).unwrap(),
                                "{name} differs"
                            );
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..400)));
        for pid in daemon_pids(&point) {
            // SAFETY: kill(2) of the daemon this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for r in readers {
            r.join().expect("a reader saw wrong bytes");
        }
        max_tmp = max_tmp.max(temporaries(&env.cache_dir()));
        env.ok([OsStr::new("umount"), point.as_os_str()]);
        drop(guard);
        // Every few rounds (and the last), remount and check every byte and cache entry.
        if it % 3 == 2 || it + 1 == iterations {
            let mnt = env.mount("ds", &[]);
            tree::assert_same(&src, &mnt.point);
            drop(mnt);
            assert_cache_consistent(&env.cache_dir());
            assert_eq!(
                temporaries(&env.cache_dir()),
                0,
                "temporaries left after a clean mount"
            );
        }
    }
    let entries = assert_cache_consistent(&env.cache_dir());
    assert!(max_tmp <= 16, "{max_tmp} temporaries after a kill");
    report::row(
        "kill -9 of the mount daemon during reads",
        "4 readers over 16 × 3 MiB, SIGKILL after 0–400 ms, umount, remount; every 3rd round all bytes compared",
        iterations as u64,
        &format!("every byte right; {entries} cache entries all consistent; at most {max_tmp} temporaries after a kill, 0 after the next mount"),
    );
}

/// kill -9 of `push` at a random point of its run, on the local store and on S3: never a
/// visible half version; the next push completes, uploading only what the killed one had not
/// stored.
#[test]
fn kill_9_of_push_at_random_points() {
    let iterations = report::pick(10, 100);
    let (mut killed, mut finished) = (0, 0);
    for (n, env) in Env::both().into_iter().enumerate() {
        let (k, f) = kill_pushes(&env, iterations / 2, 7 + n as u64);
        killed += k;
        finished += f;
    }
    report::row(
        "kill -9 of push",
        "6 of 24 files rewritten, push SIGKILLed at a random point of 0–1.2× its run time, then pushed again; half on the local store, half on S3",
        iterations as u64,
        &format!("{killed} killed before their commit (no version), {finished} committed first (a whole version that verifies); never a partial one; every re-push uploaded only the rest"),
    );
}

/// `rounds` of: change the tree, start a push, kill it at a random moment, check, push again.
/// Returns how many pushes were killed and how many finished before their kill.
fn kill_pushes(env: &Env, rounds: usize, seed: u64) -> (usize, usize) {
    let src = env.dir("src");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    random_files(&src, seed, 24, 512 << 10);
    let t = Instant::now();
    env.push(&src, "ds");
    let full = t.elapsed();
    let mut versions_now = 1;
    let (mut killed, mut finished) = (0, 0);
    for _ in 0..rounds {
        for _ in 0..6 {
            let i = rng.gen_range(0..24);
            tree::write_random(&src.join(format!("f{i:03}.bin")), 512 << 10, &mut rng);
        }
        let mut child = env
            .command(["push", src.to_str().unwrap(), "ds"])
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(rng.gen_range(0.0..1.2)));
        // SAFETY: kill(2) of the push this test started (a no-op if it already exited).
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let status = child.wait().unwrap();
        // A kill after the commit leaves a whole version: it must verify like any other.
        let now = env.versions("ds");
        if status.success() || now > versions_now {
            finished += 1;
        } else {
            killed += 1;
        }
        assert!(
            now == versions_now || now == versions_now + 1,
            "[{:?}] {now} versions after {versions_now} and one killed push",
            env.kind
        );
        versions_now = now;
        env.ok(["verify", "ds"]);
        let stored = env.content_keys().len();
        let r = env.push(&src, "ds");
        // After a push that finished before the kill, the tree is that version already.
        if r["unchanged"] != true {
            versions_now += 1;
        }
        let added = env.content_keys().len() - stored;
        assert!(
            r["uploaded_objects"].as_u64().unwrap() as usize <= added + 1,
            "[{:?}] the re-push uploaded what was stored: {r}",
            env.kind
        );
        env.ok(["verify", "ds"]);
    }
    let dest = env.scratch.path().join("dest");
    env.ok(["get", "ds", dest.to_str().unwrap()]);
    tree::assert_same(&src, &dest);
    (killed, finished)
}

/// A tmpfs of `size` bytes at `point`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(point: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(point).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(point)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs at {}", point.display());
        Tmpfs(point.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The disk cache's filesystem fills up: reads are still served (from the store), a warning
/// says why, and nothing in the cache is damaged or left half written.
#[test]
fn a_full_cache_filesystem() {
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    random_files(&src, 9, 24, 2 << 20);
    env.push(&src, "ds");
    let cache = env.scratch.path().join("small-cache");
    let _fs = Tmpfs::mount(&cache, "12m");
    let mnt = env.mount(
        "ds",
        &[
            "memory=0",
            &format!("cache_dir={}", cache.display()),
            "cache_size=1G",
        ],
    );
    for _round in 0..2 {
        tree::assert_same(&src, &mnt.point);
        for i in 0..24 {
            crate::common::drop_page_cache(&mnt.point.join(format!("f{i:03}.bin")));
        }
    }
    let log = mnt.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("disk cache") && l.contains("No space left")),
        "no warning about the full cache: {log}"
    );
    assert_eq!(
        warnings.len(),
        1,
        "one warning, not one per write: {}",
        warnings.join("\n")
    );
    drop(mnt);
    let entries = assert_cache_consistent(&cache);
    assert_eq!(
        temporaries(&cache),
        0,
        "{:?}",
        walk_names(&cache.join("tmp"))
    );
    report::row(
        "disk cache filesystem full",
        "48 MiB read twice through a 12 MiB tmpfs cache with cache_size=1G",
        2,
        &format!("all reads right (from the store); one warning naming the cache and ENOSPC; {entries} entries consistent, no temporaries left"),
    );
}
