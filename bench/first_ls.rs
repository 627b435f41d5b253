//! Time to first `ls` of a mounted 1,000,000-file version, and what the mount costs in memory.
//!
//! Builds a version of 1,000 directories × 1,000 small files (all in one pack) directly in a
//! local store, then, with the release binary: `datastore mount` (which returns once the mount
//! is live), `ls` of the root, `ls -l` of one directory, and one file read; then the daemon's
//! resident memory. Run as root:
//!
//!   cargo bench --bench first_ls
//!
//! Mount time covers fetching and decoding the manifest and nothing else.

use datastore::catalog::{Catalog, NewVersion};
use datastore::format::manifest::{Run, Span, Timestamp};
use datastore::format::{ChunkRef, Entry, EntryKind, Location, Manifest, Sha256};
use datastore::store::{keys, Store, StoreOptions};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const DIRS: u32 = 1000;
const FILES_PER_DIR: u32 = 1000;

fn build() -> (Manifest, Vec<u8>) {
    let mut m = Manifest::default();
    let name = |m: &mut Manifest, s: String| {
        let span = Span {
            start: m.strings.len() as u32,
            len: s.len() as u32,
        };
        m.strings.extend_from_slice(s.as_bytes());
        span
    };
    let t = Timestamp {
        secs: 1_700_000_000,
        nanos: 0,
    };
    m.entries.push(Entry {
        parent: 0,
        name: Span::default(),
        mode: 0o755,
        mtime: t,
        kind: EntryKind::Dir {
            children: Run {
                start: 1,
                len: DIRS,
            },
        },
    });
    for d in 0..DIRS {
        let span = name(&mut m, format!("d{d:04}"));
        m.entries.push(Entry {
            parent: 0,
            name: span,
            mode: 0o755,
            mtime: t,
            kind: EntryKind::Dir {
                children: Run {
                    start: 1 + DIRS + d * FILES_PER_DIR,
                    len: FILES_PER_DIR,
                },
            },
        });
    }
    // Every file holds different bytes (its own name), so the pack holds them all.
    let mut pack = Vec::new();
    for d in 0..DIRS {
        for f in 0..FILES_PER_DIR {
            let content = format!("file {d}/{f}\n").into_bytes();
            let hash = Sha256::of(&content);
            let span = name(&mut m, format!("f{f:06}.jpg"));
            m.chunks.push(ChunkRef {
                hash,
                file_offset: 0,
                len: content.len() as u32,
                location: Location::Pack {
                    pack: 0,
                    offset: pack.len() as u64,
                },
            });
            m.entries.push(Entry {
                parent: 1 + d,
                name: span,
                mode: 0o644,
                mtime: t,
                kind: EntryKind::File {
                    size: content.len() as u64,
                    sha256: hash,
                    chunks: Run {
                        start: m.chunks.len() as u32 - 1,
                        len: 1,
                    },
                },
            });
            pack.extend_from_slice(&content);
        }
    }
    m.packs.push(Sha256::of(&pack));
    m.validate().expect("a valid manifest");
    (m, pack)
}

fn timed(what: &str, cmd: &mut Command) {
    let t = Instant::now();
    let out = cmd.output().expect(what);
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{what:<32} {:>8.1} ms", t.elapsed().as_secs_f64() * 1000.0);
}

fn main() {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/datastore");
    assert!(Command::new("cargo")
        .args(["build", "--release", "--quiet"])
        .status()
        .unwrap()
        .success());
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let url = store_dir.display().to_string();
    let (m, pack) = build();
    let bytes = m.encode();
    println!(
        "manifest: {} entries, {:.1} MB stored",
        m.entries.len(),
        bytes.len() as f64 / 1e6
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&url, &StoreOptions::default()).unwrap();
        store
            .put(&keys::pack(&m.packs[0]), pack.into())
            .await
            .unwrap();
        let hash = Sha256::of(&bytes);
        store
            .put(&keys::manifest(&hash), bytes.clone().into())
            .await
            .unwrap();
        Catalog::new(store)
            .commit(
                "million",
                NewVersion {
                    manifest: hash,
                    manifest_size: bytes.len() as u64,
                    parent: None,
                    files: (DIRS * FILES_PER_DIR) as u64,
                    bytes: 0,
                    message: "bench".into(),
                },
            )
            .await
            .unwrap();
    });
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ds = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.arg("--store").arg(&url).args(args);
        c
    };
    let total = Instant::now();
    timed(
        "datastore mount (until live)",
        ds(&["mount", "million"]).arg(&mnt),
    );
    timed("ls of the root (1,000 dirs)", Command::new("ls").arg(&mnt));
    println!(
        "{:<32} {:>8.1} ms",
        "time to first ls",
        total.elapsed().as_secs_f64() * 1000.0
    );
    timed(
        "ls -l of one dir (1,000 files)",
        Command::new("ls").arg("-l").arg(mnt.join("d0500")),
    );
    timed(
        "cat of one file",
        Command::new("cat").arg(mnt.join("d0999/f000999.jpg")),
    );
    let status = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(status.contains("fuse.datastore"));
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline);
        if text.contains("--ready-fd") && text.contains(&*mnt.to_string_lossy()) {
            let st = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            if let Some(rss) = st.lines().find(|l| l.starts_with("VmRSS")) {
                println!("daemon {rss}");
            }
        }
    }
    let mut umount = Command::new(&bin);
    umount.arg("umount").arg(&mnt);
    timed("datastore umount", &mut umount);
}
