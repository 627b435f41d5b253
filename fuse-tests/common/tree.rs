//! Random directory trees, and a byte-for-byte comparison of two trees.

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Names that have broken tools before: unicode, spaces, leading dots and dashes, names that
/// are not UTF-8 at all, and the longest name Linux allows.
const NAMES: &[&[u8]] = &[
    b"a",
    b"b.txt",
    b"data",
    b"train",
    b"val",
    b".hidden",
    b"-dash",
    b"with space",
    "données".as_bytes(),
    "日本語のファイル".as_bytes(),
    "emoji 🎉".as_bytes(),
    b"latin1 \xe9t\xe9",
    b"bad\xff\xfe",
    b"back\\slash",
    b"new\nline",
];

/// Builds a random tree under `root` from `seed`: nested directories up to `max_depth`, empty
/// files, small files (packed), files around the small-file threshold, large files spanning
/// several chunks when `large` is set, and symlinks (inside, outside and dangling).
pub fn random(root: &Path, seed: u64, entries: usize, max_depth: usize, large: bool) {
    let mut rng = SmallRng::seed_from_u64(seed);
    std::fs::create_dir_all(root).unwrap();
    let mut dirs: Vec<PathBuf> = vec![root.to_path_buf()];
    for i in 0..entries {
        let parent = dirs[rng.gen_range(0..dirs.len())].clone();
        let depth = parent.strip_prefix(root).unwrap().components().count();
        let mut name = NAMES[rng.gen_range(0..NAMES.len())].to_vec();
        if rng.gen_bool(0.5) {
            name.extend_from_slice(format!("-{i}").as_bytes());
        }
        if rng.gen_ratio(1, 40) {
            name = vec![b'n'; 255];
            name.extend_from_slice(format!("{i}").as_bytes());
            name.truncate(255);
        }
        let path = parent.join(OsStr::from_bytes(&name));
        if path.symlink_metadata().is_ok() {
            continue;
        }
        match rng.gen_range(0..10) {
            0..=2 if depth < max_depth => {
                std::fs::create_dir(&path).unwrap();
                dirs.push(path);
            }
            3 => {
                let target: &str = match rng.gen_range(0..3) {
                    // Dangling or not, but never out of the tree: push refuses those.
                    0 => "no/such/target",
                    1 => "./a/../a",
                    _ => "a",
                };
                std::os::unix::fs::symlink(target, &path).unwrap();
            }
            _ => {
                let size = match rng.gen_range(0..20) {
                    0 | 1 => 0,
                    2..=11 => rng.gen_range(1..64 << 10),
                    12 | 13 => rng.gen_range((1 << 20) - 10..(1 << 20) + 10),
                    14 if large => rng.gen_range(5 << 20..24 << 20),
                    _ => rng.gen_range(64 << 10..2 << 20),
                };
                write_random(&path, size, &mut rng);
                let mode = [0o644, 0o600, 0o755, 0o444][rng.gen_range(0..4)];
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
    }
}

/// Writes `n` files of `size` random bytes, f000.bin, f001.bin…, in `dir`.
pub fn random_files(dir: &Path, seed: u64, n: usize, size: usize) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    for i in 0..n {
        write_random(&dir.join(format!("f{i:03}.bin")), size, &mut rng);
    }
}

/// Writes `size` random bytes.
pub fn write_random(path: &Path, size: usize, rng: &mut impl RngCore) {
    let mut data = vec![0u8; size];
    rng.fill_bytes(&mut data);
    std::fs::write(path, data).unwrap();
}

/// What a tree looks like: every path with its type, content or target, permission bits and
/// mtime (seconds) for files.
#[derive(Debug, PartialEq, Eq)]
pub enum Node {
    Dir,
    File {
        mode: u32,
        mtime: i64,
        sha: [u8; 32],
        size: u64,
    },
    Symlink(Vec<u8>),
}

pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, Node>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let m = p.symlink_metadata().unwrap();
        let ft = m.file_type();
        if ft.is_dir() {
            out.insert(rel, Node::Dir);
            walk(root, &p, out);
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            out.insert(rel, Node::Symlink(t.as_os_str().as_bytes().to_vec()));
        } else if ft.is_file() {
            use sha2::Digest;
            let data = std::fs::read(&p).unwrap();
            out.insert(
                rel,
                Node::File {
                    mode: m.mode() & 0o7777,
                    mtime: m.mtime(),
                    sha: sha2::Sha256::digest(&data).into(),
                    size: data.len() as u64,
                },
            );
        }
    }
}

/// Asserts two trees are the same, naming the first difference.
pub fn assert_same(expected: &Path, actual: &Path) {
    let a = snapshot(expected);
    let b = snapshot(actual);
    for (k, v) in &a {
        let name = String::from_utf8_lossy(k);
        match b.get(k) {
            None => panic!("{name} missing from {}", actual.display()),
            Some(w) => assert_eq!(v, w, "{name} differs"),
        }
    }
    for k in b.keys() {
        assert!(
            a.contains_key(k),
            "{} is extra in {}",
            String::from_utf8_lossy(k),
            actual.display()
        );
    }
}

/// How many regular files a tree holds.
pub fn count_files(root: &Path) -> usize {
    snapshot(root)
        .values()
        .filter(|n| matches!(n, Node::File { .. }))
        .count()
}
