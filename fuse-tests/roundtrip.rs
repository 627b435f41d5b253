//! push → log → ls → get round-trips trees byte for byte, on the local store and on S3.

mod common;

use common::{tree, Env, Kind};
use proptest::prelude::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

fn round_trip(kind: Kind, seed: u64) {
    let env = Env::new(kind);
    let src = env.scratch.path().join("src");
    tree::random(&src, seed, 60, 6, true);
    let snapshot = tree::snapshot(&src);

    let r = env.push(&src, "ds");
    assert_eq!(r["version"], "ds@v1");
    assert_eq!(r["files"], tree::count_files(&src) as u64);
    let log = env.ok(["log", "ds"]);
    assert!(log.lines().nth(1).unwrap_or("").starts_with("v1 "), "{log}");

    // `ls -R` prints every entry once, on one line each, whatever its name.
    let listed = env.ok(["ls", "ds@latest", "-R"]);
    assert_eq!(listed.lines().count(), snapshot.len(), "{listed}");

    let dest = env.scratch.path().join("dest");
    env.ok([OsStr::new("get"), OsStr::new("ds@v1"), dest.as_os_str()]);
    tree::assert_same(&src, &dest);

    // A subdirectory on its own.
    // A real directory (not a symlink to one) with a UTF-8 path.
    let sub = snapshot
        .iter()
        .find(|(k, n)| std::str::from_utf8(k).is_ok() && matches!(n, tree::Node::Dir))
        .map(|(k, _)| k);
    if let Some(sub) = sub {
        let sub = std::str::from_utf8(sub).unwrap();
        let dest = env.scratch.path().join("sub");
        env.ok([
            OsStr::new("get"),
            OsStr::new(&format!("ds/{sub}")),
            dest.as_os_str(),
        ]);
        tree::assert_same(&src.join(sub), &dest);
    }
    env.ok(["verify", "ds"]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip_on_local_store(seed in any::<u64>()) {
        round_trip(Kind::Local, seed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip_on_s3(seed in any::<u64>()) {
        round_trip(Kind::S3, seed);
    }
}

/// Deep nesting and wide directories, which stress the manifest's layout, on every backend.
#[test]
fn deep_and_wide_trees_round_trip() {
    for env in Env::every_backend() {
        let src = env.dir("src");
        let mut deep = src.clone();
        for i in 0..64 {
            deep = deep.join(format!("d{i}"));
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("bottom.txt"), b"deep").unwrap();
        let wide = src.join("wide");
        std::fs::create_dir(&wide).unwrap();
        for i in 0..3000 {
            std::fs::write(wide.join(format!("f{i:05}")), format!("{i}")).unwrap();
        }
        std::fs::create_dir(src.join("empty-dir")).unwrap();
        let r = env.push(&src, "deep");
        assert_eq!(r["files"], 3001);
        let dest = env.scratch.path().join("dest");
        env.ok([OsStr::new("get"), OsStr::new("deep"), dest.as_os_str()]);
        tree::assert_same(&src, &dest);

        let du = env.ok(["du", "deep/wide"]);
        assert!(du.contains("3000 files"), "{du}");
        let ls = env.ok(["ls", "deep/wide", "-l"]);
        assert_eq!(ls.lines().count(), 3000);
    }
}

/// A tree with a large file crossing several chunk boundaries and names that are not UTF-8:
/// names are stored as raw bytes and come back unchanged; listings escape them.
#[test]
fn large_files_and_raw_names_round_trip() {
    use rand::SeedableRng;
    for env in Env::every_backend() {
        let src = env.dir("src");
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        tree::write_random(&src.join("big.bin"), 40 << 20, &mut rng);
        std::fs::write(src.join(OsStr::from_bytes(b"raw\xff\xfename")), b"x").unwrap();
        std::fs::write(src.join("tab\there"), b"y").unwrap();
        std::os::unix::fs::symlink("big.bin", src.join("link")).unwrap();
        env.push(&src, "big");
        let ls = env.ok(["ls", "big@1"]);
        assert!(ls.contains("raw\\xff\\xfename"), "{ls}");
        assert!(ls.contains("tab\\x09here"), "{ls}");
        let dest = env.scratch.path().join("dest");
        env.ok([OsStr::new("get"), OsStr::new("big"), dest.as_os_str()]);
        tree::assert_same(&src, &dest);
        // The link was stored as a link, not followed.
        assert_eq!(
            std::fs::read_link(dest.join("link")).unwrap(),
            std::path::Path::new("big.bin")
        );
        let du = env.ok(["du", "big"]);
        assert!(du.contains("1 symlink"), "{du}");
    }
}

/// A seed whose tree has a symlink to a directory next to real directories.
#[test]
fn a_tree_with_a_symlink_to_a_directory_round_trips() {
    round_trip(Kind::Local, 10751841006002852304);
}

/// A get that fails leaves nothing half-done: a new destination is not created at all, and
/// a conflict in an existing one is found before anything is written there.
#[test]
fn a_failed_get_leaves_nothing_behind() {
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    std::fs::create_dir_all(src.join("sub/deep")).unwrap();
    std::fs::write(src.join("a.txt"), b"a").unwrap();
    std::fs::write(src.join("sub/deep/b.txt"), b"b").unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    env.push(&src, "ds");
    fn get(dest: &std::path::Path) -> [&OsStr; 3] {
        [OsStr::new("get"), OsStr::new("ds"), dest.as_os_str()]
    }
    let out = env.scratch.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let leftovers = || std::fs::read_dir(&out).unwrap().count();

    // Content the store has damaged: no destination, no temporary directory beside it.
    let (pack, size) = env.objects(&["packs/"]).remove(0);
    let good = env.get_object(&pack);
    let mut bad = good.clone();
    bad[size as usize / 2] ^= 1;
    env.put_object(&pack, bad);
    let fresh = out.join("fresh");
    let line = env.fails(get(&fresh), "does not match its SHA-256");
    assert!(line.contains("cannot get ds@v1/"), "{line}");
    assert_eq!(
        leftovers(),
        0,
        "a failed get left something in {}",
        out.display()
    );
    env.put_object(&pack, good);

    // A file where the version has a directory: named, and nothing written.
    let clash = out.join("clash");
    std::fs::create_dir_all(&clash).unwrap();
    std::fs::write(clash.join("sub"), b"not a directory").unwrap();
    let line = env.fails(get(&clash), "is a file where ds@v1 has a directory");
    assert!(
        line.contains(&clash.join("sub").display().to_string()),
        "{line}"
    );
    assert_eq!(
        std::fs::read_dir(&clash).unwrap().count(),
        1,
        "written beside a clash"
    );

    // A destination whose directory is missing, and '-'.
    let orphan = out.join("no/such/a.txt");
    let line = env.fails(
        [
            OsStr::new("get"),
            OsStr::new("ds/a.txt"),
            orphan.as_os_str(),
        ],
        "does not exist; create it first",
    );
    assert!(
        !line.contains("os error") && !line.contains(".datastore-get"),
        "{line}"
    );
    env.fails(["get", "ds/a.txt", "-"], "not standard output");

    // And the get that works, into the new destination.
    env.ok(get(&fresh));
    tree::assert_same(&src, &fresh);
    assert_eq!(leftovers(), 2, "only the destinations");
}
