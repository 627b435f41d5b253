use super::*;
use crate::format::name::VersionSel;
use crate::push::walk::FileToRead;
use crate::store::{Store, StoreOptions};
use rand::{RngCore, SeedableRng};

fn catalog() -> Catalog {
    Catalog::new(Store::open("memory://", &StoreOptions::default()).unwrap())
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::SmallRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

async fn run(c: &Catalog, dir: &Path) -> PushReport {
    push(c, dir, "ds", &PushOptions::default(), Default::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn push_repush_and_edit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(root.join("a/small.txt"), b"hello").unwrap();
    std::fs::write(root.join("a/b/dup.txt"), b"hello").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("big.bin"), random(20 << 20, 1)).unwrap();
    std::os::unix::fs::symlink("../small.txt", root.join("a/out")).unwrap();

    let c = catalog();
    let first = run(&c, root).await;
    assert_eq!(first.version.version, 1);
    assert_eq!((first.files, first.dirs, first.symlinks), (4, 2, 1));
    assert!(first.uploaded_bytes >= (20 << 20) + 5);

    let v = c.resolve("ds", VersionSel::Latest).await.unwrap();
    let m = c.manifest(&v).await.unwrap();
    assert_eq!(m.entries.len(), 1 + 3 + 3 + 1);
    let chunk_count = m.chunks.len();
    assert!(
        chunk_count >= 3,
        "20 MiB must be several chunks plus the packed files"
    );

    let again = run(&c, root).await;
    assert!(again.unchanged);
    assert_eq!((again.uploaded_bytes, again.version.version), (0, 1));

    // One byte in the middle of the big file: only the chunks around it are uploaded.
    let mut big = std::fs::read(root.join("big.bin")).unwrap();
    big[10 << 20] ^= 0xff;
    std::fs::write(root.join("big.bin"), &big).unwrap();
    let edited = run(&c, root).await;
    assert_eq!(edited.version.version, 2);
    assert_eq!(edited.version.parent, Some(1));
    assert!(edited.uploaded_bytes > 0 && edited.uploaded_bytes < ((2 * 16) << 20) + (1 << 20));
    assert!(
        edited.uploaded_bytes < (20 << 20) / 2 + (1 << 20),
        "{}",
        edited.uploaded_bytes
    );
}

#[tokio::test]
async fn a_file_written_during_push_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("growing.bin");
    std::fs::write(&path, random(64 << 20, 2)).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                f.write_at(&[i as u8], (i * 4096) % (64 << 20)).unwrap();
                i += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let c = catalog();
    let err = push(
        &c,
        dir.path(),
        "ds",
        &PushOptions::default(),
        Default::default(),
    )
    .await
    .unwrap_err();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(matches!(err, PushError::Changed(_)), "{err}");
    assert!(
        c.latest("ds").await.unwrap().is_none(),
        "no version may be created"
    );
}

#[test]
fn a_vanished_file_is_reported() {
    let f = FileToRead {
        entry: 1,
        path: PathBuf::from("/nonexistent/datastore-test"),
        stamp: walk::Stamp {
            size: 1,
            mtime: (0, 0),
            ctime: (0, 0),
            ino: 0,
            dev: 0,
        },
    };
    assert!(matches!(
        ingest::read_small(&f),
        Err(PushError::Vanished(_))
    ));
}

#[tokio::test]
async fn bad_sources_are_named() {
    let c = catalog();
    let err = push(
        &c,
        Path::new("/nonexistent/src"),
        "ds",
        &PushOptions::default(),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/src does not exist"),
        "{err}"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = push(
        &c,
        file.path(),
        "ds",
        &PushOptions::default(),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    let err = push(
        &c,
        Path::new("/tmp"),
        "Bad Name",
        &PushOptions::default(),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("invalid dataset name"), "{err}");
}

/// A re-push of files unchanged since they were hashed reads none of them; a file rewritten
/// with its mtime put back is seen by its ctime; --rehash reads everything.
#[tokio::test]
async fn the_stat_cache_spares_reading_unchanged_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/small.txt"), b"hello").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    let big = random(6 << 20, 3);
    std::fs::write(root.join("big.bin"), &big).unwrap();
    // Stamps younger than the margin are not trusted.
    std::thread::sleep(stat_cache::RACY_MARGIN + Duration::from_millis(100));
    let opts = PushOptions {
        stat_dir: Some(dir.path().join("state")),
        ..PushOptions::default()
    };
    let c = catalog();
    let push_now = |opts: PushOptions| {
        let (c, root) = (&c, &root);
        async move {
            push(c, root, "ds", &opts, Default::default())
                .await
                .unwrap()
        }
    };
    let first = push_now(opts.clone()).await;
    assert_eq!((first.reused_files, first.hashed_bytes), (0, (6 << 20) + 5));
    let state_file = |ext: &str| {
        let found: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        found[0].clone()
    };
    let (seal, copy) = (state_file("seal"), state_file("manifest"));

    // Without the seal, the files are planned against the stamps. The parent's manifest is
    // then read from the copy kept beside them: the store's is not needed (taken away here to
    // prove it).
    let v = c.latest("ds").await.unwrap().unwrap();
    let key = keys::manifest(&v.manifest);
    let stored = c.store().get(&key).await.unwrap();
    c.store().delete(&key).await.unwrap();
    std::fs::remove_file(&seal).unwrap();
    let again = push_now(opts.clone()).await;
    assert!(again.unchanged);
    assert_eq!(
        (again.reused_files, again.hashed_bytes),
        (3, 0),
        "nothing is read"
    );
    assert!(seal.exists(), "the planned push seals the tree again");
    // A damaged copy is never taken for the manifest: the store's is fetched instead.
    c.store().put(&key, stored.clone()).await.unwrap();
    let mut damaged = std::fs::read(&copy).unwrap();
    damaged[40] ^= 1;
    std::fs::write(&copy, damaged).unwrap();
    std::fs::remove_file(&seal).unwrap();
    let again = push_now(opts.clone()).await;
    assert!(again.unchanged && again.reused_files == 3);
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        stored,
        "the copy is kept again"
    );

    // With the seal, an unchanged tree needs neither copy nor manifest, nor a lease: both
    // manifests gone, only the seal can tell.
    c.store().delete(&key).await.unwrap();
    std::fs::remove_file(&copy).unwrap();
    let sealed = push_now(opts.clone()).await;
    assert!(sealed.unchanged);
    assert_eq!(sealed.version.version, first.version.version);
    assert_eq!(
        (sealed.files, sealed.reused_files, sealed.hashed_bytes),
        (3, 3, 0)
    );
    c.store().put(&key, stored).await.unwrap();

    // A change to the tree that changes no file (a new empty directory) breaks the seal:
    // every file is known by its stamp, and the new tree is a new version.
    std::fs::create_dir(root.join("new")).unwrap();
    let grown = push_now(opts.clone()).await;
    assert!(!grown.unchanged, "a new directory was missed");
    assert_eq!((grown.reused_files, grown.hashed_bytes), (3, 0));
    std::fs::remove_dir(root.join("new")).unwrap();
    let back = push_now(opts.clone()).await;
    assert!(!back.unchanged && back.version.version == grown.version.version + 1);

    // The same size and mtime, other bytes: the ctime tells.
    let file = root.join("big.bin");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let mut edited = big.clone();
    edited[1 << 20] ^= 1;
    std::fs::write(&file, &edited).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let changed = push_now(opts.clone()).await;
    assert!(!changed.unchanged, "an edit that kept the mtime was missed");
    assert_eq!(changed.reused_files, 2);
    assert_eq!(changed.hashed_bytes, 6 << 20);

    let rehash = PushOptions {
        rehash: true,
        ..opts.clone()
    };
    let all = push_now(rehash).await;
    assert!(all.unchanged);
    assert_eq!((all.reused_files, all.hashed_bytes), (0, (6 << 20) + 5));

    // Without its memory, a push reads everything again and gets the same version.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let lost = push_now(opts).await;
    assert!(lost.unchanged && lost.reused_files == 0);
}
