//! FUSE passthrough: files whole in the disk cache are read by the kernel from their file
//! entries, through real mounts (root, /dev/fuse) of real S3 servers (moto).

mod common;

use common::mount::{wait_for, Metered};
use common::tree::random_files;
use common::{Env, Kind, Moto};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Empties the kernel's page cache, file entries' pages included, so a read that does not
/// reach the daemon is the kernel reading the backing file, not old pages.
fn drop_all_page_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop caches (needs root)");
}

/// The file entry a file with these bytes would have in `env`'s disk cache.
fn file_entry(env: &Env, data: &[u8]) -> PathBuf {
    let hex = datastore::format::Sha256::of(data).to_hex();
    env.cache_dir()
        .join(datastore::cache::FILES)
        .join(&hex[..2])
        .join(hex)
}

fn wait_for_file_entry(env: &Env, data: &[u8]) -> PathBuf {
    let path = file_entry(env, data);
    wait_for("a file entry", Duration::from_secs(30), || path.exists());
    path
}

/// Opens `path` once the daemon opens it by passthrough. An inode stays in the mode of its
/// open handles until the last is released, and the kernel sends a release after close(2)
/// returns: so the first open after a close may still be cached, and is retried.
fn open_by_passthrough(m: &Metered, path: &Path) -> std::fs::File {
    let start = std::time::Instant::now();
    loop {
        let before = m.passthrough_opens();
        let f = std::fs::File::open(path).unwrap();
        if m.passthrough_opens() > before {
            return f;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} not opened by passthrough",
            path.display()
        );
        drop(f);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The whole of an open file through `mmap`.
fn mapped(f: &std::fs::File, len: usize) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    // SAFETY: a read-only private mapping of an open file, unmapped before returning; the
    // slice does not outlive it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        let out = std::slice::from_raw_parts(p as *const u8, len).to_vec();
        libc::munmap(p, len);
        out
    }
}

/// A large file read cold becomes a file entry once whole in the cache, a small file of a pack
/// at once; opened again, both are read by the kernel (no READ reaches the daemon), through
/// read(2) and mmap, byte for byte the source.
#[test]
fn files_whole_in_the_cache_are_read_by_the_kernel() {
    let moto = Moto::start();
    let env = moto.env();
    let src = env.dir("src");
    random_files(&src, 21, 1, 12 << 20);
    let imgs = src.join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    random_files(&imgs, 22, 20, 8 << 10);
    env.push(&src, "ds");
    let big = std::fs::read(src.join("f000.bin")).unwrap();
    let small = std::fs::read(imgs.join("f003.bin")).unwrap();
    let m = Metered::mount(&env, &[]);
    let at = |p: &str| m.mnt.point.join(p);
    assert!(std::fs::read(at("f000.bin")).unwrap() == big);
    // Said once the kernel's INIT is answered, which the first request waits for.
    assert!(m.mnt.log().contains("passthrough on"), "{}", m.mnt.log());
    assert!(std::fs::read(at("imgs/f003.bin")).unwrap() == small);
    wait_for_file_entry(&env, &big);
    // A small file is a file entry as soon as it is fetched and written.
    wait_for_file_entry(&env, &small);
    drop_all_page_caches();

    let (reads, opens) = (m.reads(), m.passthrough_opens());
    assert!(reads > 0);
    assert!(std::fs::read(at("f000.bin")).unwrap() == big, "read(2)");
    let f = std::fs::File::open(at("f000.bin")).unwrap();
    assert!(mapped(&f, big.len()) == big, "mmap");
    let mut tail = vec![0u8; 4096];
    f.read_exact_at(&mut tail, big.len() as u64 - 4096).unwrap();
    assert_eq!(tail, big[big.len() - 4096..]);
    drop(f);
    assert!(std::fs::read(at("imgs/f003.bin")).unwrap() == small);
    assert_eq!(m.reads(), reads, "no READ reached the daemon");
    assert_eq!(m.passthrough_opens(), opens + 3);
    drop(m);
    let stats = env.ok(["cache", "stats"]);
    let line = stats.lines().find(|l| l.starts_with("opens")).unwrap();
    assert!(!line.contains(" 0 by passthrough"), "{stats}");
}

/// With passthrough refused (`-o passthrough=off`, and a mount by a user without
/// CAP_SYS_ADMIN) every read goes through the daemon, and is right.
#[test]
fn without_passthrough_every_read_goes_through_the_daemon_and_is_right() {
    let env = Env::new(Kind::S3);
    let src = env.dir("src");
    random_files(&src, 23, 2, 6 << 20);
    env.push(&src, "ds");
    let want = std::fs::read(src.join("f001.bin")).unwrap();
    {
        let m = Metered::mount(&env, &["passthrough=off"]);
        let path = m.mnt.point.join("f001.bin");
        assert!(path.exists());
        let log = m.mnt.log();
        assert!(log.contains("passthrough off: -o passthrough=off"), "{log}");
        for _ in 0..2 {
            let reads = m.reads();
            assert!(std::fs::read(&path).unwrap() == want);
            assert!(m.reads() > reads, "the daemon answered the reads");
            drop_all_page_caches();
        }
        assert_eq!(m.passthrough_opens(), 0);
        assert!(
            !file_entry(&env, &want).exists(),
            "nothing assembled for passthrough"
        );
    }

    // A user's mount: through fusermount3, without the privilege passthrough needs.
    use std::os::unix::fs::PermissionsExt;
    let dev = std::fs::metadata("/dev/fuse").unwrap().permissions().mode();
    assert_eq!(
        dev & 0o006,
        0o006,
        "/dev/fuse is closed to other users (mode {dev:o}); ./scripts/test opens it as udev would"
    );
    let nobody = common::NOBODY;
    std::fs::set_permissions(env.scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = env.cache_dir();
    std::fs::create_dir_all(&cache).unwrap();
    for e in walk(&cache) {
        std::os::unix::fs::chown(&e, Some(nobody), Some(nobody)).unwrap();
    }
    let mnt = env.mount_as("ds", &[], &[], Some(nobody));
    for _ in 0..2 {
        let out = common::cat_as_nobody(&mnt.point.join("f001.bin"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == want, "wrong bytes through a user's mount");
        drop_all_page_caches();
    }
    let log = mnt.log();
    assert!(
        log.contains("passthrough off: it needs CAP_SYS_ADMIN"),
        "{log}"
    );
}

/// Every file under `dir`, and `dir` itself.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// A file entry damaged after it was cached is not served once detected: written over (its
/// mtime seal broken) or truncated, the next open sees it; bits changed behind a restored
/// mtime, `datastore cache verify` sees it. Each time the read comes from elsewhere, right.
#[test]
fn a_damaged_file_entry_is_never_served_once_detected() {
    let moto = Moto::start();
    let env = moto.env();
    let src = env.dir("src");
    random_files(&src, 24, 1, 12 << 20);
    env.push(&src, "ds");
    let want = std::fs::read(src.join("f000.bin")).unwrap();
    let m = Metered::mount(&env, &[]);
    let path = m.mnt.point.join("f000.bin");
    assert!(std::fs::read(&path).unwrap() == want);
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 3] = [
        ("written over", |e| {
            let mut raw = std::fs::read(e).unwrap();
            raw[5 << 20] ^= 1;
            std::fs::write(e, raw).unwrap();
        }),
        ("truncated", |e| {
            std::fs::File::options()
                .write(true)
                .open(e)
                .unwrap()
                .set_len(1 << 20)
                .unwrap();
        }),
        ("rotted", |e| {
            let mtime = std::fs::metadata(e).unwrap().modified().unwrap();
            let f = std::fs::File::options().write(true).open(e).unwrap();
            f.write_all_at(&[0xA5], 7 << 20).unwrap();
            f.set_modified(mtime).unwrap();
        }),
    ];
    for (how, damage) in damages {
        let entry = wait_for_file_entry(&env, &want);
        damage(&entry);
        if how == "rotted" {
            let out = env.run(["cache", "verify"]);
            assert!(
                !out.status.success(),
                "{how}: verify found nothing: {}",
                out.stdout
            );
            assert!(out.stdout.contains("damaged, deleted"), "{}", out.stdout);
            assert!(!entry.exists());
        }
        drop_all_page_caches();
        let fallbacks = m.fallbacks();
        assert!(
            std::fs::read(&path).unwrap() == want,
            "{how}: wrong bytes served"
        );
        assert_eq!(
            m.fallbacks(),
            fallbacks + 1,
            "{how}: not read through the daemon"
        );
        if how != "rotted" {
            assert!(m.mnt.log().contains("damaged"), "{how}: {}", m.mnt.log());
        }
    }
    // The damage never reached the store: every chunk was fetched once.
    for (key, _) in env.objects(&["blobs/"]) {
        assert_eq!(moto.gets(&key), 1, "{key}");
    }
}

/// File entries evicted under the quota while the kernel has them open by passthrough: the
/// open handles keep reading the right bytes.
#[test]
fn evicting_files_open_by_passthrough_keeps_their_handles_right() {
    let env = Env::new(Kind::S3);
    let src = env.dir("src");
    // One small file per directory, so that no read fetches its neighbours.
    for d in 0..8 {
        let dir = src.join(format!("d{d}"));
        std::fs::create_dir(&dir).unwrap();
        random_files(&dir, 30 + d, 1, 900 << 10);
    }
    env.push(&src, "ds");
    let quota = 4 << 20;
    let m = Metered::mount(&env, &[&format!("cache_size={quota}")]);
    let name = |d: usize| format!("d{d}/f000.bin");
    let want: Vec<Vec<u8>> = (0..8)
        .map(|d| std::fs::read(src.join(name(d))).unwrap())
        .collect();
    for (d, w) in want.iter().enumerate().take(3) {
        assert!(std::fs::read(m.mnt.point.join(name(d))).unwrap() == *w);
        wait_for_file_entry(&env, w);
    }
    let held: Vec<std::fs::File> = (0..3)
        .map(|d| open_by_passthrough(&m, &m.mnt.point.join(name(d))))
        .collect();
    for (d, w) in want.iter().enumerate().skip(3) {
        assert!(std::fs::read(m.mnt.point.join(name(d))).unwrap() == *w);
    }
    let evicted = (0..3)
        .filter(|&d| !file_entry(&env, &want[d]).exists())
        .count();
    assert!(evicted > 0, "the quota evicted none of the open files");
    drop_all_page_caches();
    for (f, w) in held.iter().zip(&want) {
        let mut got = vec![0u8; w.len()];
        f.read_exact_at(&mut got, 0).unwrap();
        assert!(
            got == *w,
            "an evicted file read wrong through its open handle"
        );
    }
}

/// An inode open the cached way when its file becomes whole keeps being opened that way until
/// its last handle closes (the kernel refuses passthrough beside cached opens, which a reader
/// would see as EIO); then it is opened by passthrough, every open sharing one backing file,
/// even once the cache has evicted it. A backing file changed on disk fails new opens instead
/// of serving them its bytes.
#[test]
fn opens_never_switch_an_inode_under_its_readers() {
    let env = Env::new(Kind::S3);
    let src = env.dir("src");
    random_files(&src, 25, 1, 12 << 20);
    env.push(&src, "ds");
    let want = std::fs::read(src.join("f000.bin")).unwrap();
    let m = Metered::mount(&env, &[]);
    let path = m.mnt.point.join("f000.bin");
    let whole = |f: &std::fs::File| {
        let mut got = vec![0u8; want.len()];
        f.read_exact_at(&mut got, 0).unwrap();
        got == want
    };
    let a = std::fs::File::open(&path).unwrap();
    assert!(whole(&a));
    // Other handles, closed: the file is whole in the cache and gets its file entry.
    let entry = file_entry(&env, &want);
    wait_for("a file entry", Duration::from_secs(30), || {
        assert!(std::fs::read(&path).unwrap() == want);
        entry.exists()
    });
    let c = std::fs::File::open(&path).expect("an open beside a cached one");
    assert!(whole(&c) && whole(&a));
    assert_eq!(m.passthrough_opens(), 0);
    drop((a, c));

    let d = open_by_passthrough(&m, &path);
    assert_eq!(m.passthrough_opens(), 1);
    let e = std::fs::File::open(&path).unwrap();
    assert_eq!(
        m.passthrough_opens(),
        2,
        "a second open shares the backing file"
    );
    // Evicted (unlinked) while open: still whole behind the open handles, and shared.
    std::fs::remove_file(&entry).unwrap();
    let f = std::fs::File::open(&path).expect("an open of an evicted passthrough file");
    assert_eq!(m.passthrough_opens(), 3);
    assert!(whole(&f) && whole(&d) && whole(&e));
    drop((d, e, f));
    // Closed everywhere: read through the daemon, and assembled again. Until the kernel has
    // sent the releases, an open still shares the evicted backing file and the daemon sees no
    // read, so the read is repeated.
    wait_for("a file entry again", Duration::from_secs(30), || {
        assert!(std::fs::read(&path).unwrap() == want);
        entry.exists()
    });

    // (Reads above that came before the releases shared the old backing file, so opens are
    // not counted from here on: this one is by passthrough, of the new entry.)
    let g = open_by_passthrough(&m, &path);
    let mut raw = std::fs::read(&entry).unwrap();
    raw[1 << 20] ^= 1;
    std::fs::write(&entry, raw).unwrap();
    let refused = std::fs::File::open(&path).map(drop).unwrap_err();
    assert_eq!(
        refused.raw_os_error(),
        Some(libc::EIO),
        "an open of a changed backing file"
    );
    assert!(m.mnt.log().contains("changed on disk"), "{}", m.mnt.log());
    assert!(!entry.exists(), "the changed entry is dropped");
    drop(g);
    drop_all_page_caches();
    assert!(
        std::fs::read(&path).unwrap() == want,
        "read through the daemon, right"
    );

    // Whole again and closed everywhere, then first opens of the inode all at once: each
    // finds the file entry and registers it with the kernel outside the daemon's lock; one
    // registration is kept and shared (two backing files for one inode would fail opens with
    // EBUSY), and every handle reads right.
    wait_for("a file entry once more", Duration::from_secs(30), || {
        assert!(std::fs::read(&path).unwrap() == want);
        entry.exists()
    });
    // Until the kernel has sent the releases of the reads above, the inode is still open the
    // cached way and the opens stay cached: the burst is repeated until it is by passthrough.
    let start = std::time::Instant::now();
    loop {
        let before = m.passthrough_opens();
        let ready = std::sync::Barrier::new(16);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    ready.wait();
                    let f = std::fs::File::open(&path).expect("one of opens at once");
                    assert!(whole(&f), "a handle of opens at once reads right");
                });
            }
        });
        if m.passthrough_opens() > before {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "opens at once never by passthrough"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A read order handed to a running mount (`prefetch --mount`) is fetched ahead of the
/// readers, file by file in its order, and nothing else: before any read, every listed file
/// is cached (small files as file entries); read in that order, none costs a request to the
/// store, and small ones are served by passthrough. A file not in the order is not fetched.
#[test]
fn an_order_handed_to_a_mount_is_fetched_ahead_of_its_readers() {
    let moto = Moto::start();
    let env = moto.env();
    let src = env.dir("src");
    let imgs = src.join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    random_files(&imgs, 31, 40, 20 << 10);
    random_files(&src, 32, 1, 6 << 20);
    env.push(&src, "ds");
    let m = Metered::mount(&env, &[]);
    let shuffled = [
        "imgs/f017.bin",
        "imgs/f003.bin",
        "f000.bin",
        "imgs/f031.bin",
        "imgs/f008.bin",
        "imgs/f022.bin",
        "imgs/f000.bin",
        "imgs/f039.bin",
    ];
    let list = env.dir("lists").join("epoch.order");
    std::fs::write(
        &list,
        format!("{}\nimgs/nope.bin\nimgs\n", shuffled.join("\n")),
    )
    .unwrap();
    let point = m.mnt.point.to_str().unwrap();
    let said = env.ok([
        "prefetch",
        "--mount",
        point,
        "--from-list",
        list.to_str().unwrap(),
    ]);
    assert!(said.contains("following an order of 8 files"), "{said}");
    assert!(
        said.contains("2 lines naming no file skipped")
            && said.contains("'imgs/nope.bin' (not there)")
            && said.contains("'imgs' (a directory)"),
        "{said}"
    );
    let want = |p: &str| std::fs::read(src.join(p)).unwrap();
    for p in shuffled.iter().filter(|p| p.starts_with("imgs/")) {
        wait_for_file_entry(&env, &want(p));
    }
    wait_for("the order fetched", Duration::from_secs(30), || {
        m.value("datastore_order_files_total") == 8
    });
    assert!(
        !file_entry(&env, &want("imgs/f001.bin")).exists(),
        "a file not in the order was fetched"
    );

    let (gets, opens) = (moto.gets("/"), m.passthrough_opens());
    for p in shuffled {
        assert!(
            std::fs::read(m.mnt.point.join(p)).unwrap() == want(p),
            "{p}"
        );
    }
    assert_eq!(
        moto.gets("/"),
        gets,
        "a read in the order went to the store"
    );
    assert_eq!(
        m.passthrough_opens(),
        opens + 7,
        "the small files by passthrough"
    );
    assert!(std::fs::read(m.mnt.point.join("imgs/f001.bin")).unwrap() == want("imgs/f001.bin"));
    assert!(
        moto.gets("/") > gets,
        "a file not in the order came from the store"
    );

    // A directory that is no datastore mount is named.
    let plain = env.dir("plain");
    env.fails(
        [
            "prefetch",
            "--mount",
            plain.to_str().unwrap(),
            "--from-list",
            list.to_str().unwrap(),
        ],
        "is not a datastore mount",
    );
}
