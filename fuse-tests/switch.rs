//! A live mount moved between versions (`datastore switch`, `-o follow`) on moto S3: open
//! files read on in the version they were opened in, new lookups see the new version with
//! nothing stale left in the kernel, refused switches leave the mount as it was, and old
//! versions are freed.

mod common;

use common::tree::{self, write_random};
use common::{block_on, Env, Kind};
use datastore::catalog::Catalog;
use datastore::format::name::VersionSel;
use datastore::format::Sha256;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Files read while switching: present in both versions, the same or changed.
const BOTH: &[&str] = &["same/a.bin", "same/small.txt", "changed.bin", "changed.txt"];

/// Version 1 of the test tree.
fn v1(dir: &Path) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    std::fs::create_dir_all(dir.join("same")).unwrap();
    std::fs::create_dir_all(dir.join("becomes")).unwrap();
    write_random(&dir.join("same/a.bin"), 5 << 19, &mut rng);
    std::fs::write(dir.join("same/small.txt"), b"the same in both").unwrap();
    write_random(&dir.join("changed.bin"), 3 << 20, &mut rng);
    std::fs::write(dir.join("changed.txt"), b"one").unwrap();
    std::fs::write(dir.join("removed.txt"), b"only in v1").unwrap();
    std::fs::write(dir.join("becomes/inner.txt"), b"a directory in v1").unwrap();
    std::os::unix::fs::symlink("same/small.txt", dir.join("link")).unwrap();
}

/// Version 2: files added, removed and changed (one grows), a directory become a file, a
/// link retargeted.
fn v2(dir: &Path) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(2);
    std::fs::remove_file(dir.join("removed.txt")).unwrap();
    std::fs::remove_dir_all(dir.join("becomes")).unwrap();
    std::fs::write(dir.join("becomes"), b"a file in v2").unwrap();
    write_random(&dir.join("changed.bin"), 4 << 20, &mut rng);
    std::fs::write(dir.join("changed.txt"), b"two, and longer").unwrap();
    std::fs::create_dir_all(dir.join("added")).unwrap();
    std::fs::write(dir.join("added/new.txt"), b"only in v2").unwrap();
    std::fs::remove_file(dir.join("link")).unwrap();
    std::os::unix::fs::symlink("changed.txt", dir.join("link")).unwrap();
}

/// Pushes v1 and v2 of the tree as ds@1 and ds@2; returns copies of both trees.
fn two_versions(env: &Env) -> (std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (env.dir("v1"), env.dir("v2"));
    v1(&a);
    env.push(&a, "ds");
    v1(&b);
    v2(&b);
    env.push(&b, "ds");
    (a, b)
}

fn switch(env: &Env, point: &Path, to: &str) -> String {
    env.ok([
        std::ffi::OsStr::new("switch"),
        point.as_os_str(),
        std::ffi::OsStr::new(to),
    ])
}

fn version_of(point: &Path) -> String {
    let v = xattr(point, "user.datastore.version");
    String::from_utf8(v).unwrap()
}

fn xattr(path: &Path, name: &str) -> Vec<u8> {
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the length given.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        len >= 0,
        "getxattr {name} of {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    buf.truncate(len as usize);
    buf
}

/// The SHA-256 the open file says it has.
fn fsha(f: &std::fs::File) -> String {
    let n = std::ffi::CString::new("user.datastore.sha256").unwrap();
    let mut buf = vec![0u8; 128];
    // SAFETY: f is open; the buffer has the length given.
    let len = unsafe {
        libc::fgetxattr(
            f.as_raw_fd(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert!(len > 0, "fgetxattr: {}", std::io::Error::last_os_error());
    String::from_utf8(buf[..len as usize].to_vec()).unwrap()
}

/// Eight readers hash files present in both versions, holding each open across switches,
/// while the mount is switched back and forth fifty times: every file reads whole as one
/// version or the other, as the version it was opened in says, and no read fails.
#[test]
fn readers_keep_their_version_while_the_mount_switches_back_and_forth() {
    let env = Env::new(Kind::S3);
    let (a, b) = two_versions(&env);
    let want: BTreeMap<&str, [String; 2]> = BOTH
        .iter()
        .map(|p| {
            let h = |d: &Path| Sha256::of(&std::fs::read(d.join(p)).unwrap()).to_hex();
            (*p, [h(&a), h(&b)])
        })
        .collect();
    let mnt = env.mount("ds@1", &[]);
    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for r in 0..8 {
            let (point, want, stop, reads) = (&mnt.point, &want, &stop, &reads);
            s.spawn(move || {
                let mut n = r;
                while !stop.load(Ordering::Relaxed) {
                    let path = BOTH[n % BOTH.len()];
                    n += 1;
                    let mut f = std::fs::File::open(point.join(path))
                        .unwrap_or_else(|e| panic!("open {path}: {e}"));
                    let said = fsha(&f);
                    let mut data = Vec::new();
                    let mut buf = vec![0u8; 256 << 10];
                    loop {
                        let got = f
                            .read(&mut buf)
                            .unwrap_or_else(|e| panic!("read {path}: {e}"));
                        if got == 0 {
                            break;
                        }
                        data.extend_from_slice(&buf[..got]);
                        // Slow enough that switches come while files are open.
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    let got = Sha256::of(&data).to_hex();
                    assert_eq!(got, said, "{path} read other bytes than its version holds");
                    assert!(want[path].contains(&got), "{path} is neither version");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for i in 0..50 {
            let to = if i % 2 == 0 { "ds@2" } else { "ds@1" };
            let said = switch(&env, &mnt.point, to);
            assert!(
                said.contains(&format!("-> {to}").replace("@", "@v")),
                "{said}"
            );
            std::thread::sleep(Duration::from_millis(40));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        reads.load(Ordering::Relaxed) >= 50,
        "the readers hardly read"
    );
    assert_eq!(version_of(&mnt.point), "ds@v1");
    let log = mnt.log();
    assert!(!log.contains("ERROR"), "{log}");
}

/// Every path that differs between the versions, looked up by name, without listing a
/// directory first (a listing refreshes the kernel's names of that directory by itself):
/// the same in `expected` and `actual`.
fn by_name(expected: &Path, actual: &Path) {
    let paths = [
        "changed.txt",
        "changed.bin",
        "becomes",
        "becomes/inner.txt",
        "removed.txt",
        "added",
        "added/new.txt",
        "link",
        "same/a.bin",
    ];
    for p in paths {
        let (e, a) = (expected.join(p), actual.join(p));
        let (me, ma) = (e.symlink_metadata().ok(), a.symlink_metadata().ok());
        assert_eq!(me.is_some(), ma.is_some(), "{p}: there in one version only");
        let (Some(me), Some(ma)) = (me, ma) else {
            continue;
        };
        assert_eq!(me.file_type(), ma.file_type(), "{p}: another kind");
        if me.is_file() {
            assert_eq!(me.len(), ma.len(), "{p}: another size");
            assert!(
                std::fs::read(&e).unwrap() == std::fs::read(&a).unwrap(),
                "{p}: other bytes"
            );
        }
        if me.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(&e).unwrap(),
                std::fs::read_link(&a).unwrap(),
                "{p}"
            );
        }
    }
}

/// After a switch the tree is exactly the new version, though the kernel had cached names,
/// attributes, listings and pages of the old one: a file that grew, a directory that became
/// a file, a link retargeted, names added and removed. And back again.
#[test]
fn after_a_switch_the_tree_is_exactly_the_new_version() {
    let env = Env::new(Kind::S3);
    let (a, b) = two_versions(&env);
    let mnt = env.mount("ds@1", &[]);
    // Everything the kernel can cache of v1: names (and absent names), attributes, listings,
    // pages.
    tree::assert_same(&a, &mnt.point);
    assert!(!mnt.point.join("added").exists());
    // Open files keep the old version alive: whatever the kernel still knows of it would be
    // answered, not refused as stale.
    let _held = (
        std::fs::File::open(mnt.point.join("changed.bin")).unwrap(),
        std::fs::File::open(mnt.point.join("becomes")).unwrap(),
    );
    let done = switch(&env, &mnt.point, "ds@2");
    assert!(done.contains("ds@v1 -> ds@v2"), "{done}");
    assert_eq!(version_of(&mnt.point), "ds@v2");
    by_name(&b, &mnt.point);
    tree::assert_same(&b, &mnt.point);
    assert!(mnt.point.join("becomes").is_file());
    switch(&env, &mnt.point, "ds@1");
    by_name(&a, &mnt.point);
    tree::assert_same(&a, &mnt.point);
    assert!(mnt.point.join("becomes/inner.txt").is_file());
    let again = switch(&env, &mnt.point, "ds@1");
    assert!(again.contains("already on ds@v1"), "{again}");
}

/// `-o follow=2s` on an @latest mount: a push appears within seconds, while a reader holding
/// a file of the old version open reads it whole throughout.
#[test]
fn a_following_mount_moves_to_each_new_version() {
    let env = Env::new(Kind::S3);
    let a = env.dir("v1");
    v1(&a);
    env.push(&a, "ds");
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mnt = env.mount_with("ds", &["follow=2s"], &["--metrics-addr", &addr]);
    let live = || {
        let body = common::http_get(port, "/metrics");
        body.lines()
            .find(|l| l.starts_with("datastore_live_version{dataset=\"ds\"}"))
            .map(|l| l.rsplit(' ').next().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no live version in {body}"))
    };
    assert_eq!(live(), "1");
    let old = std::fs::read(a.join("changed.bin")).unwrap();
    let mut held = std::fs::File::open(mnt.point.join("changed.bin")).unwrap();
    let mut first = vec![0u8; 1 << 20];
    held.read_exact(&mut first).unwrap();
    v2(&a);
    env.push(&a, "ds");
    let pushed = Instant::now();
    common::mount::wait_for("the mount to follow", Duration::from_secs(20), || {
        mnt.point.join("added/new.txt").exists()
    });
    assert!(
        pushed.elapsed() < Duration::from_secs(10),
        "{:?}",
        pushed.elapsed()
    );
    assert_eq!(version_of(&mnt.point), "ds@v2");
    assert_eq!(live(), "2");
    let mut rest = Vec::new();
    held.read_to_end(&mut rest).unwrap();
    first.extend_from_slice(&rest);
    assert!(first == old, "the open file changed under its reader");
    tree::assert_same(&a, &mnt.point);
    assert!(
        mnt.log().contains("switched from ds@v1 to ds@v2"),
        "{}",
        mnt.log()
    );
    env.fails(
        [
            "mount",
            "ds@1",
            "-o",
            "follow=2s",
            env.mount_point("fixed").to_str().unwrap(),
        ],
        "follow= moves a mount to each new version",
    );
}

/// A switch to a version that cannot be opened (deleted, damaged, of another dataset, not
/// there) is refused with one line, and the mount still serves its version; a second mount
/// of the dataset at the same point is pointed to `switch`.
#[test]
fn a_switch_that_cannot_be_done_leaves_the_mount_as_it_was() {
    let env = Env::new(Kind::S3);
    let (a, b) = two_versions(&env);
    env.push(&b, "other");
    std::fs::write(b.join("third"), b"3").unwrap();
    env.push(&b, "ds");
    env.ok(["rm", "ds@2"]);
    let catalog = Catalog::new(env.store());
    let v3 = block_on(catalog.resolve("ds", VersionSel::Number(3))).unwrap();
    env.put_object(
        &datastore::store::keys::manifest(&v3.manifest),
        b"not a manifest".to_vec(),
    );
    let mnt = env.mount("ds@1", &[]);
    let point = mnt.point.to_str().unwrap();
    for (to, why) in [
        ("ds@2", "ds@v2"),
        ("ds@3", "ds@v3"),
        ("ds@9", "ds@v9"),
        ("other@1", "another version of ds only"),
    ] {
        let e = env.fails(["switch", point, to], why);
        assert!(e.contains("cannot switch"), "{e}");
        assert_eq!(version_of(&mnt.point), "ds@v1");
    }
    env.fails(["switch", point, "Bad Name@1"], "Bad Name");
    env.fails(["switch", point, "ds@1/same"], "not a path inside it");
    tree::assert_same(&a, &mnt.point);
    let errors = mnt.log().lines().filter(|l| l.contains("refused")).count();
    assert_eq!(
        errors,
        4,
        "one line per refusal the daemon saw:\n{}",
        mnt.log()
    );
    env.fails(["mount", "ds@1", point], "datastore switch");
    let plain = env.dir("plain");
    env.fails(
        ["switch", plain.to_str().unwrap(), "ds@1"],
        "not a datastore mount",
    );
}

/// Old versions are freed once nothing holds them: a hundred switches between two versions
/// of a few thousand files leave the daemon's memory where the first ones left it (a leaked
/// manifest and inode table of each would be over 30 MiB).
#[test]
fn a_hundred_switches_leave_memory_flat() {
    let env = Env::new(Kind::S3);
    let src = env.dir("many");
    for d in 0..30 {
        let dir = src.join(format!("d{d:02}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(
                dir.join(format!("file-with-a-longish-name-{f:03}")),
                format!("{d}/{f}"),
            )
            .unwrap();
        }
    }
    env.push(&src, "ds");
    std::fs::write(src.join("d00/one-more"), b"v2").unwrap();
    env.push(&src, "ds");
    let mnt = env.mount("ds@1", &[]);
    let pid = mnt.pid().unwrap();
    let rss = || {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb: u64 = s
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb << 10
    };
    // The first switches and walks grow the daemon by some MiB once (the store client's
    // connections, the allocator's arenas of the FUSE and runtime threads); from then on it
    // must stay flat.
    let round = |n: usize| {
        for i in 0..n {
            switch(&env, &mnt.point, if i % 2 == 0 { "ds@2" } else { "ds@1" });
            if i % 10 == 0 {
                assert_eq!(tree::count_files(&mnt.point), 3001);
            }
        }
    };
    round(50);
    let after_first = rss();
    round(100);
    let after = rss();
    eprintln!("RSS after the first 50 switches: {after_first}, after 100 more: {after}");
    assert!(
        after < after_first + (6 << 20),
        "RSS grew from {after_first} to {after} over 100 switches"
    );
}
