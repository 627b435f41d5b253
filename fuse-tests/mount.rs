//! The FUSE mount, for real: the mounted tree against the pushed one, read-only behaviour,
//! concurrency, store outages, and the ways it is started (datastore mount, mount(8), fstab).

mod common;

use common::mount::{daemon_pids, is_mounted, wait_for, HelperInstalled, Metered, Mounted};
use common::{tree, Env, Kind};
use datastore::catalog::Catalog;
use datastore::format::name::VersionSel;
use datastore::format::{EntryKind, Manifest};
use rand::{Rng, SeedableRng};
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

fn manifest(env: &Env, dataset: &str) -> Manifest {
    let catalog = Catalog::new(env.store());
    common::block_on(async {
        let v = catalog.resolve(dataset, VersionSel::Latest).await.unwrap();
        catalog.manifest(&v).await.unwrap()
    })
}

fn xattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the length passed.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(len as usize);
    Ok(buf)
}

fn sha_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A local store holding dataset `ds`: one file `f` that reads "content".
fn one_file_dataset() -> Env {
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    std::fs::write(src.join("f"), b"content").unwrap();
    env.push(&src, "ds");
    env
}

/// Reads of every file at random offsets and lengths, across every chunk boundary and past
/// the end, compared with the source.
fn check_ranges(src: &Path, mnt: &Path, m: &Manifest, seed: u64) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut walk = m.walk(0);
    while let Some((i, path)) = walk.next_entry() {
        let EntryKind::File { size, chunks, .. } = m.entries[i].kind else {
            continue;
        };
        let rel = OsStr::from_bytes(path);
        let want = std::fs::read(src.join(rel)).unwrap();
        let f = std::fs::File::open(mnt.join(rel)).unwrap();
        let mut ranges: Vec<(u64, usize)> = (0..8)
            .map(|_| (rng.gen_range(0..=size), rng.gen_range(0..200_000)))
            .collect();
        for c in &m.chunks[chunks.range()] {
            ranges.push((c.file_offset.saturating_sub(100), 200));
        }
        ranges.extend([(size.saturating_sub(5), 100), (size, 10), (size + 4096, 10)]);
        for (off, len) in ranges {
            let mut buf = vec![0u8; len];
            let mut got = 0;
            while got < len {
                let n = f.read_at(&mut buf[got..], off + got as u64).unwrap();
                if n == 0 {
                    break;
                }
                got += n;
            }
            let end = (off as usize + len).min(want.len());
            let expect = want.get(off as usize..end).unwrap_or(&[]);
            assert_eq!(
                &buf[..got],
                expect,
                "{} at {off}+{len}",
                String::from_utf8_lossy(path)
            );
        }
    }
}

#[test]
fn the_mounted_tree_is_the_pushed_tree() {
    let kinds = [
        (Kind::Local, &[1u64, 2, 3][..]),
        (Kind::S3, &[4, 5][..]),
        (Kind::Azure, &[6][..]),
        (Kind::Gcs, &[7][..]),
    ];
    for (kind, seeds) in kinds {
        for &seed in seeds {
            let env = Env::new(kind);
            let src = env.scratch.path().join("src");
            tree::random(&src, seed, 60, 5, true);
            env.push(&src, "ds");
            let mnt = env.mount("ds", &[]);
            // Names, kinds, sizes, modes, mtimes, symlink targets and whole-file contents.
            tree::assert_same(&src, &mnt.point);
            check_ranges(&src, &mnt.point, &manifest(&env, "ds"), seed);
        }
    }
}

#[test]
fn metadata_xattrs_and_statfs() {
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    std::fs::create_dir(src.join("dir")).unwrap();
    std::fs::write(src.join("dir/file"), b"hello").unwrap();
    std::os::unix::fs::symlink("dir/file", src.join("link")).unwrap();
    env.push(&src, "ds");
    let mnt = env.mount("ds@1", &[]);
    let p = &mnt.point;

    assert_eq!(
        xattr(&p.join("dir/file"), "user.datastore.sha256").unwrap(),
        sha_hex(b"hello").as_bytes()
    );
    assert_eq!(
        xattr(&p.join("dir/file"), "user.datastore.version").unwrap(),
        b"ds@v1"
    );
    assert_eq!(xattr(p, "user.datastore.version").unwrap(), b"ds@v1");
    assert_eq!(
        xattr(&p.join("dir"), "user.datastore.sha256"),
        Err(libc::ENODATA)
    );
    assert_eq!(xattr(&p.join("dir/file"), "user.other"), Err(libc::ENODATA));

    // `..` does not lead anywhere inside the mount that is not there.
    let root = std::fs::metadata(p).unwrap();
    assert_eq!(
        std::fs::metadata(p.join("dir/..")).unwrap().ino(),
        root.ino()
    );
    assert_eq!(
        std::fs::read_link(p.join("link")).unwrap(),
        Path::new("dir/file")
    );
    assert_eq!(
        std::fs::canonicalize(p.join("dir/../..")).unwrap(),
        std::fs::canonicalize(env.scratch.path()).unwrap()
    );
    assert_eq!(
        std::fs::metadata(p.join("missing"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENOENT)
    );

    let cpath = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid path and a zeroed statvfs to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(cpath.as_ptr(), &mut st) }, 0);
    assert_ne!(st.f_flag & libc::ST_RDONLY, 0);
    assert_ne!(st.f_flag & libc::ST_NOSUID, 0);
    assert_eq!(st.f_files, 4);
}

#[test]
fn every_write_is_erofs() {
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    std::fs::create_dir(src.join("dir")).unwrap();
    std::fs::write(src.join("file"), b"data").unwrap();
    env.push(&src, "ds");
    let mnt = env.mount("ds", &[]);
    let p = &mnt.point;
    let erofs = |what: &str, r: std::io::Result<()>| {
        assert_eq!(
            r.unwrap_err().raw_os_error(),
            Some(libc::EROFS),
            "{what} should fail with EROFS"
        );
    };
    use std::os::unix::fs::PermissionsExt;
    erofs("create", std::fs::write(p.join("new"), b"x"));
    erofs(
        "open for writing",
        std::fs::OpenOptions::new()
            .write(true)
            .open(p.join("file"))
            .map(drop),
    );
    erofs(
        "truncate",
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(p.join("file"))
            .map(drop),
    );
    erofs("unlink", std::fs::remove_file(p.join("file")));
    erofs("mkdir", std::fs::create_dir(p.join("d2")));
    erofs("rmdir", std::fs::remove_dir(p.join("dir")));
    erofs("rename", std::fs::rename(p.join("file"), p.join("moved")));
    erofs("symlink", std::os::unix::fs::symlink("x", p.join("l")));
    erofs("link", std::fs::hard_link(p.join("file"), p.join("h")));
    erofs(
        "chmod",
        std::fs::set_permissions(p.join("file"), std::fs::Permissions::from_mode(0o777)),
    );
    let f = std::fs::File::open(p.join("file")).unwrap();
    erofs("set mtime", f.set_modified(std::time::SystemTime::now()));
    let c = CString::new(p.join("file").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C strings and a value buffer of the length passed.
    let rc = unsafe { libc::setxattr(c.as_ptr(), c"user.x".as_ptr(), b"v".as_ptr().cast(), 1, 0) };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EROFS)
    );
    assert_eq!(std::fs::read(p.join("file")).unwrap(), b"data");
    common::report::row(
        "write operations",
        "create, open for writing, truncate, unlink, mkdir, rmdir, rename, symlink, link, chmod, set mtime, setxattr",
        12,
        "every one EROFS; the file unchanged",
    );
}

/// The kernel reads ahead of a sequential reader in requests of 1 MiB, the most it sends,
/// not in the 128 KiB it offers a new mount at first: a cold 16 MiB file reaches the daemon in
/// about 16 READs, not 128.
#[test]
fn a_sequential_reader_is_read_ahead_in_requests_of_a_mebibyte() {
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    tree::random_files(&src, 31, 1, 16 << 20);
    env.push(&src, "ds");
    let want = std::fs::read(src.join("f000.bin")).unwrap();
    let m = Metered::mount(&env, &[]);
    let dev = std::fs::metadata(&m.mnt.point).unwrap().dev();
    let knob = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    let kb = || std::fs::read_to_string(&knob).unwrap();
    // Raised once the mount answers, right after it is up.
    wait_for("the mount's read-ahead", Duration::from_secs(10), || {
        kb().trim() == "1024"
    });
    let before = m.reads();
    let mut f = std::fs::File::open(m.mnt.point.join("f000.bin")).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == want, "wrong bytes");
    let reads = m.reads() - before;
    assert!(
        (16..=24).contains(&reads),
        "{reads} READ requests for 16 MiB (read_ahead_kb {})",
        kb().trim()
    );
}

#[test]
fn eight_readers_over_a_thousand_files() {
    let env = Env::new(Kind::S3);
    let src = env.dir("src");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(8);
    let mut files = vec![];
    for i in 0..1000 {
        let dir = src.join(format!("d{:02}", i % 20));
        std::fs::create_dir_all(&dir).unwrap();
        let size = if i % 100 == 0 {
            3 << 20
        } else {
            rng.gen_range(0..200_000)
        };
        let path = dir.join(format!("f{i:04}.bin"));
        tree::write_random(&path, size, &mut rng);
        files.push(path.strip_prefix(&src).unwrap().to_path_buf());
    }
    env.push(&src, "many");
    let mnt = env.mount("many", &[]);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (files, src, point) = (&files, &src, &mnt.point);
            s.spawn(move || {
                let mut order = files.clone();
                let mut rng = rand::rngs::SmallRng::seed_from_u64(t);
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.gen_range(0..=i));
                }
                for f in order {
                    let got = std::fs::read(point.join(&f)).unwrap();
                    let want = std::fs::read(src.join(&f)).unwrap();
                    assert!(got == want, "{} differs", f.display());
                }
            });
        }
    });
    println!("8 readers x 1000 files over S3: {:?}", start.elapsed());
}

#[test]
fn latest_follows_new_pushes_while_old_mounts_keep_their_version() {
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    std::fs::write(src.join("f"), b"one").unwrap();
    env.push(&src, "ds");
    let old = env.mount("ds", &[]);
    std::fs::write(src.join("f"), b"two").unwrap();
    std::fs::write(src.join("added"), b"new").unwrap();
    env.push(&src, "ds");
    let new = env.mount("ds@latest", &[]);
    assert_eq!(std::fs::read(new.point.join("f")).unwrap(), b"two");
    assert_eq!(std::fs::read(new.point.join("added")).unwrap(), b"new");
    assert_eq!(
        xattr(&new.point, "user.datastore.version").unwrap(),
        b"ds@v2"
    );
    assert_eq!(std::fs::read(old.point.join("f")).unwrap(), b"one");
    assert!(!old.point.join("added").exists());
    assert_eq!(
        xattr(&old.point, "user.datastore.version").unwrap(),
        b"ds@v1"
    );
}

/// `mount -t fuse.datastore`, an fstab line with `mount MOUNTPOINT`, and `datastore mount` /
/// `umount` in the background, each checked live and then gone, daemon included.
#[test]
fn mount_helper_fstab_and_background_mounts() {
    let _helper = HelperInstalled::new();
    let env = one_file_dataset();
    let store_opt = format!("store={},cache_dir={}", env.url, env.cache_dir().display());

    let gone = |point: &Path| {
        wait_for("the mount to go", Duration::from_secs(10), || {
            !is_mounted(point)
        });
        wait_for("the daemon to exit", Duration::from_secs(10), || {
            daemon_pids(point).is_empty()
        });
    };

    // mount -t fuse.datastore, through mount.fuse3, with mount(8) options to ignore.
    let point = env.mount_point("by-type");
    let guard = Mounted::adopt(&point);
    let out = std::process::Command::new("mount")
        .args(["-t", "fuse.datastore", "ds@1"])
        .arg(&point)
        .args([
            "-o",
            &format!("{store_opt},allow_other,_netdev,dev,suid,noatime"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mounted(&point));
    assert_eq!(std::fs::read(point.join("f")).unwrap(), b"content");
    assert!(std::process::Command::new("umount")
        .arg(&point)
        .status()
        .unwrap()
        .success());
    gone(&point);
    drop(guard);

    // An fstab line, mounted by its mount point (from a test fstab, via mount -T).
    let point = env.mount_point("by-fstab");
    let guard = Mounted::adopt(&point);
    let fstab = env.scratch.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "ds@latest {} fuse.datastore ro,_netdev,nofail,allow_other,{store_opt} 0 0\n",
            point.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new("mount")
        .arg("-T")
        .arg(&fstab)
        .arg(&point)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(point.join("f")).unwrap(), b"content");
    assert!(std::process::Command::new("umount")
        .arg(&point)
        .status()
        .unwrap()
        .success());
    gone(&point);
    drop(guard);

    // datastore mount (background) and datastore umount.
    let point = env.mount_point("by-cli");
    let guard = Mounted::adopt(&point);
    env.ok([OsStr::new("mount"), OsStr::new("ds"), point.as_os_str()]);
    assert!(
        is_mounted(&point),
        "mount returned before the mount was live"
    );
    assert_eq!(std::fs::read(point.join("f")).unwrap(), b"content");
    assert_eq!(daemon_pids(&point).len(), 1);
    env.ok([OsStr::new("umount"), point.as_os_str()]);
    gone(&point);
    drop(guard);

    // A failure is reported by the command itself, not lost in the background.
    env.fails(
        [OsStr::new("mount"), OsStr::new("ds@7"), point.as_os_str()],
        "ds@v7 not found",
    );
    assert!(!is_mounted(&point));
}

#[test]
fn a_killed_daemon_leaves_a_mount_that_umount_clears() {
    let env = one_file_dataset();
    let point = env.mount_point("killed");
    let _guard = Mounted::adopt(&point);
    env.ok([OsStr::new("mount"), OsStr::new("ds"), point.as_os_str()]);
    let pids = daemon_pids(&point);
    assert_eq!(pids.len(), 1);
    // SAFETY: kill(2) of the daemon this test started.
    unsafe { libc::kill(pids[0], libc::SIGKILL) };
    wait_for("the daemon to die", Duration::from_secs(10), || {
        daemon_pids(&point).is_empty()
    });
    // A dead FUSE connection: ENOTCONN, or ECONNABORTED on newer kernels.
    let e = std::fs::metadata(&point).unwrap_err().raw_os_error();
    assert!(
        matches!(e, Some(libc::ENOTCONN | libc::ECONNABORTED)),
        "{e:?}"
    );
    env.fails(
        [OsStr::new("mount"), OsStr::new("ds"), point.as_os_str()],
        "daemon has died",
    );
    env.ok([OsStr::new("umount"), point.as_os_str()]);
    assert!(!is_mounted(&point));
    env.ok([OsStr::new("mount"), OsStr::new("ds"), point.as_os_str()]);
    assert_eq!(std::fs::read(point.join("f")).unwrap(), b"content");
    env.fails(
        [OsStr::new("umount"), env.scratch.path().as_os_str()],
        "not a datastore mount",
    );
}

/// Damaged bytes in the store never reach a reader: the read fails with EIO and the daemon
/// logs which object is damaged; undamaged files keep reading.
#[test]
fn damaged_content_is_eio_never_wrong_bytes() {
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    tree::write_random(&src.join("big.bin"), 3 << 20, &mut rng);
    std::fs::write(src.join("small.txt"), b"small").unwrap();
    env.push(&src, "ds");
    for (key, size) in env.objects(&["blobs/"]) {
        let mut bad = env.get_object(&key);
        bad[size as usize / 2] ^= 0x80;
        env.put_object(&key, bad);
    }
    let mnt = env.mount("ds", &[]);
    let err = std::fs::read(mnt.point.join("big.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        mnt.log().contains("does not match its SHA-256"),
        "{}",
        mnt.log()
    );
    assert_eq!(
        std::fs::read(mnt.point.join("small.txt")).unwrap(),
        b"small"
    );
}

/// SIGTERM unmounts and the daemon exits cleanly.
#[test]
fn sigterm_unmounts_cleanly() {
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    std::fs::write(src.join("f"), b"x").unwrap();
    env.push(&src, "ds");
    let point = env.mount_point("term");
    let _guard = Mounted::adopt(&point);
    let mut child = env
        .command([
            OsStr::new("mount"),
            OsStr::new("ds"),
            point.as_os_str(),
            OsStr::new("--foreground"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the mount", Duration::from_secs(30), || is_mounted(&point));
    // SAFETY: kill(2) of the daemon this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = common::wait_child(&mut child, Duration::from_secs(10));
    assert!(out.success(), "{out}");
    assert!(!is_mounted(&point));
}

/// Without allow_other only the mounting user (root here) may enter the mount; with it,
/// other users read what the pushed modes let them read.
#[test]
fn allow_other_is_opt_in() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "the mount tests run as root");
    let env = Env::new(Kind::Local);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = env.dir("src");
    std::fs::write(src.join("public"), b"for all").unwrap();
    std::fs::write(src.join("private"), b"owner only").unwrap();
    std::fs::set_permissions(src.join("private"), std::fs::Permissions::from_mode(0o600)).unwrap();
    env.push(&src, "ds");
    let as_nobody = common::cat_as_nobody;
    let closed = env.mount("ds@1", &[]);
    let out = as_nobody(&closed.point.join("public"));
    assert!(
        !out.status.success(),
        "another user read a mount without allow_other"
    );
    let open = env.mount("ds@latest", &["allow_other"]);
    let out = as_nobody(&open.point.join("public"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"for all");
    let out = as_nobody(&open.point.join("private"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    // Set-user-ID bits and device files of a dataset never take effect.
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.contains(&format!(" {} ", open.point.display())))
        .unwrap();
    let opts = line.split(' ').nth(5).unwrap();
    for o in ["ro", "nosuid", "nodev"] {
        assert!(opts.split(',').any(|x| x == o), "{o} missing: {line}");
    }
    common::report::row(
        "permissions",
        "another user (uid 65534) reads a mount without allow_other, then a 0644 and a 0600 file with it; mount flags",
        3,
        "refused without allow_other; with it the 0644 file reads and the 0600 one is EACCES (default_permissions); mounted ro,nosuid,nodev",
    );
}

/// A mount point that holds files is refused with one line naming it and the way out, and
/// stays as it was; `-o nonempty` mounts over it, hiding its files only while mounted.
#[test]
fn a_mount_point_that_holds_files_is_refused_unless_asked() {
    let env = one_file_dataset();
    let point = env.mount_point("occupied");
    std::fs::write(point.join("mine.txt"), b"keep").unwrap();
    let guard = Mounted::adopt(&point);
    let err = env.fails(
        [OsStr::new("mount"), OsStr::new("ds"), point.as_os_str()],
        "is not empty",
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&point.display().to_string()) && err.contains("-o nonempty"),
        "{err}"
    );
    assert!(!is_mounted(&point));
    assert_eq!(std::fs::read(point.join("mine.txt")).unwrap(), b"keep");

    env.ok([
        OsStr::new("mount"),
        OsStr::new("ds"),
        point.as_os_str(),
        OsStr::new("-o"),
        OsStr::new("nonempty"),
    ]);
    assert_eq!(std::fs::read(point.join("f")).unwrap(), b"content");
    assert!(!point.join("mine.txt").exists(), "hidden while mounted");
    env.ok([OsStr::new("umount"), point.as_os_str()]);
    wait_for("the mount to go", Duration::from_secs(10), || {
        !is_mounted(&point)
    });
    drop(guard);
    assert_eq!(std::fs::read(point.join("mine.txt")).unwrap(), b"keep");
}

/// A background mount says where its daemon logs: the `-o log=` file if given, else syslog
/// when something listens on /dev/log, else a file named after the mount point, which then
/// holds the daemon's lines (a machine without syslog keeps its logs).
#[test]
fn a_background_mount_says_where_it_logs() {
    let env = one_file_dataset();
    let mount = |point: &Path, opts: &[&str]| {
        let mut args = vec![OsStr::new("mount"), OsStr::new("ds"), point.as_os_str()];
        for o in opts {
            args.extend([OsStr::new("-o"), OsStr::new(o)]);
        }
        let out = env.ok(args);
        let said = format!("ds mounted at {}; log: ", point.display());
        let line = out.lines().find(|l| l.starts_with(&said));
        let place =
            line.unwrap_or_else(|| panic!("no '{said}' in {out:?}"))[said.len()..].to_string();
        assert_eq!(std::fs::read(point.join("f")).unwrap(), b"content");
        place
    };
    let unmount = |point: &Path| {
        env.ok([OsStr::new("umount"), point.as_os_str()]);
        wait_for("the daemon to exit", Duration::from_secs(10), || {
            daemon_pids(point).is_empty()
        });
    };
    let holds_lines = |file: &Path| {
        wait_for("the daemon's log lines", Duration::from_secs(10), || {
            std::fs::read_to_string(file).is_ok_and(|l| l.contains("passthrough"))
        });
    };

    let point = env.mount_point("logged");
    let guard = Mounted::adopt(&point);
    let place = mount(&point, &[]);
    let listening = std::os::unix::net::UnixDatagram::unbound()
        .unwrap()
        .connect("/dev/log")
        .is_ok();
    if listening {
        assert!(place.starts_with("syslog"), "{place}");
    } else {
        let file = Path::new(&place);
        let name = format!(
            "{}.log",
            point
                .display()
                .to_string()
                .trim_matches('/')
                .replace('/', "-")
        );
        assert_eq!(file, Path::new("/var/log/datastore").join(name));
        holds_lines(file);
        unmount(&point);
        let _ = std::fs::remove_file(file);
    }
    if is_mounted(&point) {
        unmount(&point);
    }

    let file = env.dir("logs").join("ds.log");
    let place = mount(&point, &[&format!("log={}", file.display())]);
    assert_eq!(place, file.display().to_string());
    holds_lines(&file);
    unmount(&point);
    drop(guard);
}

/// A background mount under /datastores/ is unmounted by its dataset's name, and the mount
/// point it made goes with it; a mount the daemon refuses leaves no log file of its own.
#[test]
fn umount_by_name_takes_the_mount_point_it_made() {
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    std::fs::write(src.join("f"), b"content").unwrap();
    let name = format!("made-{}", std::process::id());
    env.push(&src, &name);
    let point = Path::new("/datastores").join(&name);
    assert!(
        !point.exists(),
        "{} is left from an earlier run",
        point.display()
    );
    let _guard = Mounted::adopt(&point);
    env.ok(["mount", &name]);
    assert_eq!(std::fs::read(point.join("f")).unwrap(), b"content");
    env.ok(["umount", &name]);
    wait_for("the daemon to exit", Duration::from_secs(10), || {
        daemon_pids(&point).is_empty()
    });
    assert!(!is_mounted(&point));
    assert!(!point.exists(), "the mount point the mount made is left");

    // Two mounts of one dataset: its name alone does not say which.
    let (a, b) = (env.mount_point("a"), env.mount_point("b"));
    let _guards = (Mounted::adopt(&a), Mounted::adopt(&b));
    for p in [&a, &b] {
        env.ok([OsStr::new("mount"), OsStr::new(&name), p.as_os_str()]);
    }
    let line = env.fails(["umount", &name], "say which to unmount");
    assert!(
        line.contains(&a.display().to_string()) && line.contains(&b.display().to_string()),
        "{line}"
    );
    for p in [&a, &b] {
        env.ok([OsStr::new("umount"), p.as_os_str()]);
        assert!(p.exists(), "a mount point that was there before is kept");
    }
    // The logs of the mounts that were made, where they went to a file of their own.
    for p in [point.as_path(), &a, &b] {
        if let datastore::mount::daemon::LogPlace::File(f) =
            datastore::mount::daemon::LogPlace::default_for(p)
        {
            let _ = std::fs::remove_file(f);
        }
    }

    // Refused by the daemon (the mount point holds a file): its error is printed, and no log
    // file is left where the default one would be.
    let full = env.mount_point("full");
    std::fs::write(full.join("mine"), b"x").unwrap();
    let log = datastore::mount::daemon::LogPlace::default_for(&full);
    env.fails(
        [OsStr::new("mount"), OsStr::new(&name), full.as_os_str()],
        "is not empty",
    );
    if let datastore::mount::daemon::LogPlace::File(file) = log {
        assert!(!file.exists(), "a refused mount left {}", file.display());
    }
}
