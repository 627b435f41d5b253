use super::*;

fn stamp(ctime: i64) -> Stamp {
    Stamp {
        size: 5,
        mtime: (ctime, 0),
        ctime: (ctime, 7),
        ino: 42,
        dev: 1,
    }
}

/// A tree whose stamps are all settled is sealed as the version it was; the seal is found
/// by source, dataset and store, and by nothing else.
#[test]
fn a_settled_tree_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (state, source) = (dir.path().join("state"), dir.path());
    let mut c = StatCache::load(&state, "s3://b", "ds", source).unwrap();
    c.settled_before = (1000, 0);
    c.learn(b"a", &stamp(10), Sha256::of(b"hello"), None);
    let tree = Sha256::of(b"tree");
    c.seal_as(tree, 3, Sha256::of(b"manifest"));
    c.save();
    let seal = Seal::read(&state, "s3://b", "ds", source).unwrap();
    assert_eq!(
        seal,
        Seal {
            tree,
            version: 3,
            manifest: Sha256::of(b"manifest")
        }
    );
    assert_eq!(Seal::read(&state, "s3://b", "other", source), None);
    assert_eq!(Seal::read(&state, "s3://c", "ds", source), None);
    let path = file_for(&state, "s3://b", "ds", source).unwrap();
    std::fs::write(seal_path(&path), [1; 71]).unwrap();
    assert_eq!(
        Seal::read(&state, "s3://b", "ds", source),
        None,
        "a short seal"
    );
}

#[test]
fn remembers_settled_stamps_and_forgets_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = StatCache::none();
    c.path = Some(dir.path().join("push/x"));
    c.settled_before = (1000, 0);
    let h = Sha256::of(b"hello");
    c.learn(b"a", &stamp(10), h, None);
    c.learn(b"racy", &stamp(1000), h, None);
    let path = c.path.clone().unwrap();
    // A seal left by an earlier push is taken away: this tree cannot be sealed.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(seal_path(&path), [0; 72]).unwrap();
    c.seal_as(h, 3, h);
    c.save();
    assert!(
        !seal_path(&path).exists(),
        "a tree with a racy stamp has no seal"
    );
    let raw = std::fs::read(&path).unwrap();
    let (s, _): (Stored, _) =
        bincode::decode_from_slice(&raw, bincode::config::standard()).unwrap();
    assert_eq!(s.files.len(), 1, "the racy stamp is not remembered");

    let mut again = StatCache::none();
    again.known = s.files;
    assert_eq!(again.hash_of(b"a", &stamp(10)).map(|r| r.hash), Some(h));
    let mut touched = stamp(10);
    touched.ctime.1 += 1;
    assert_eq!(
        again.hash_of(b"a", &touched),
        None,
        "a new ctime is a change"
    );
    assert_eq!(again.hash_of(b"b", &stamp(10)), None);
    again.forget_known();
    assert_eq!(again.hash_of(b"a", &stamp(10)), None);
}

/// Files are found where the walk expects them, and elsewhere when files came and went;
/// a push that learnt nothing new leaves the stored cache as it was, with a new time.
#[test]
fn files_are_found_in_order_or_out_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x");
    let names: Vec<Vec<u8>> = (0..6).map(|i| format!("f{i}").into_bytes()).collect();
    let hash = |n: &[u8]| Sha256::of(n);
    let mut c = StatCache::none();
    c.path = Some(path.clone());
    c.settled_before = (1000, 0);
    for n in &names {
        c.learn(n, &stamp(10), hash(n), None);
    }
    c.save();
    let stored = std::fs::read(&path).unwrap();
    let load = || {
        let (s, _): (Stored, _) =
            bincode::decode_from_slice(&std::fs::read(&path).unwrap(), bincode::config::standard())
                .unwrap();
        let mut c = StatCache::none();
        c.path = Some(path.clone());
        c.settled_before = (1000, 0);
        c.known = s.files;
        c
    };

    // The same tree: every file where expected, no table built, the file kept as it was.
    let mut c = load();
    for n in &names {
        let r = c.hash_of(n, &stamp(10)).unwrap();
        assert_eq!(r.hash, hash(n));
        c.learn(n, &stamp(10), r.hash, Some(r));
    }
    assert!(c.index.is_none());
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    c.save();
    assert_eq!(std::fs::read(&path).unwrap(), stored);
    assert!(std::fs::metadata(&path).unwrap().modified().unwrap() > before);

    // f1 gone, "new" added, f4 and f5 swapped places: each known file still found.
    let mut c = load();
    let order: [&[u8]; 6] = [b"f0", b"f2", b"new", b"f3", b"f5", b"f4"];
    for n in order {
        let r = c.hash_of(n, &stamp(10));
        assert_eq!(r.map(|r| r.hash), (n != b"new").then(|| hash(n)), "{n:?}");
        c.learn(n, &stamp(10), hash(n), r);
    }
    c.save();
    let mut c = load();
    for n in order {
        assert_eq!(c.hash_of(n, &stamp(10)).map(|r| r.hash), Some(hash(n)));
    }
    assert_eq!(
        c.hash_of(b"f1", &stamp(10)),
        None,
        "a gone file is forgotten"
    );
}

#[test]
fn a_second_push_of_the_same_source_is_refused_while_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let first = StatCache::load(dir.path(), "memory://", "ds", src.path()).unwrap();
    let held = StatCache::load(dir.path(), "memory://", "ds", src.path());
    assert_eq!(held.err(), Some(std::process::id()), "names the holder");
    assert!(StatCache::load(dir.path(), "memory://", "other", src.path()).is_ok());
    first.save();
    assert!(StatCache::load(dir.path(), "memory://", "ds", src.path()).is_ok());
    let done = last_completed(dir.path(), "memory://", "ds", src.path()).unwrap();
    assert!(done.elapsed().unwrap() < Duration::from_secs(60));
}

#[test]
fn damaged_or_foreign_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let path = file_for(dir.path(), "memory://", "ds", src.path()).unwrap();
    assert!(path.starts_with(dir.path()));
    assert_ne!(
        path,
        file_for(dir.path(), "memory://", "other", src.path()).unwrap()
    );
    std::fs::write(&path, b"\xff\xff garbage").unwrap();
    let c = StatCache::load(dir.path(), "memory://", "ds", src.path()).unwrap();
    assert!(c.known.is_empty());
}
