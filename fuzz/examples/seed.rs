//! Writes the committed seed corpus, `corpus/<target>/<name>`, from real encoded values: a
//! fuzzer that starts from well-formed objects reaches the deep checks in seconds instead of
//! rediscovering magic numbers and varints. Deterministic; rerun after a format change with
//! `cargo run --manifest-path fuzz/Cargo.toml --example seed`.

use datastore::format::envelope::{self, Kind};
use datastore::format::lease::{Detail, Lease};
use datastore::format::manifest::{Run, Span, Timestamp, MAX_MANIFEST_BODY};
use datastore::format::{
    ChunkRef, Entry, EntryKind, Location, Manifest, Sha256, VersionRef, VersionState,
};
use std::path::Path;

/// A tree to encode: directories hold named children, files hold chunk lengths and places.
enum Node {
    Dir(Vec<(&'static [u8], Node)>),
    File(Vec<(u32, Location)>),
    Link(&'static [u8]),
}

/// Lays a tree out as the format requires: breadth first, each directory's children one
/// sorted run, each file's chunks one run in file order.
fn manifest(root: Node) -> Manifest {
    let mut m = Manifest {
        packs: vec![Sha256::of(b"pack 0"), Sha256::of(b"pack 1")],
        ..Manifest::default()
    };
    let mut queue = std::collections::VecDeque::from([(0u32, &b""[..], &root, 0u32)]);
    while let Some((idx, name, node, parent)) = queue.pop_front() {
        let span = push_str(&mut m, name);
        let kind = match node {
            Node::Dir(children) => {
                let mut sorted: Vec<_> = children.iter().collect();
                sorted.sort_by_key(|(n, _)| *n);
                let start = idx + 1 + queue.len() as u32;
                for (i, (n, child)) in sorted.iter().enumerate() {
                    queue.push_back((start + i as u32, n, child, idx));
                }
                EntryKind::Dir {
                    children: Run {
                        start,
                        len: children.len() as u32,
                    },
                }
            }
            Node::File(pieces) => {
                let sha256 = Sha256::of(name);
                let start = m.chunks.len() as u32;
                let mut offset = 0;
                for (i, &(len, location)) in pieces.iter().enumerate() {
                    m.chunks.push(ChunkRef {
                        // A single-chunk file's chunk is the file: its hash is left implied.
                        hash: if pieces.len() == 1 {
                            sha256
                        } else {
                            Sha256::of(&[name, &[i as u8]].concat())
                        },
                        file_offset: offset,
                        len,
                        location,
                    });
                    offset += len as u64;
                }
                EntryKind::File {
                    size: offset,
                    sha256,
                    chunks: Run {
                        start,
                        len: pieces.len() as u32,
                    },
                }
            }
            Node::Link(target) => EntryKind::Symlink {
                target: push_str(&mut m, target),
            },
        };
        m.entries.push(Entry {
            parent,
            name: span,
            mode: if matches!(node, Node::File(_)) {
                0o644
            } else {
                0o755
            },
            mtime: Timestamp {
                secs: 1_700_000_000 + idx as i64,
                nanos: 123_456_789,
            },
            kind,
        });
    }
    m
}

fn push_str(m: &mut Manifest, s: &[u8]) -> Span {
    let span = Span {
        start: m.strings.len() as u32,
        len: s.len() as u32,
    };
    m.strings.extend_from_slice(s);
    span
}

/// The same object with its body stored uncompressed, which every decoder also accepts.
fn plain(kind: Kind, stored: &[u8]) -> Vec<u8> {
    let body = envelope::open(kind, stored, MAX_MANIFEST_BODY).expect("a seed opens");
    envelope::seal(kind, &body, false)
}

/// The same object with its body zstd-compressed.
fn zstd(kind: Kind, stored: &[u8]) -> Vec<u8> {
    let body = envelope::open(kind, stored, MAX_MANIFEST_BODY).expect("a seed opens");
    envelope::seal(kind, &body, true)
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    std::fs::write(dir.join(name), bytes).expect("write a seed");
}

fn main() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let pack = |pack, offset| Location::Pack { pack, offset };

    let trees = [
        ("empty", Node::Dir(vec![])),
        (
            "tree",
            Node::Dir(vec![
                (
                    b"a",
                    Node::Dir(vec![
                        (b"empty", Node::File(vec![])),
                        (b"x", Node::File(vec![(300, pack(1, 4096))])),
                    ]),
                ),
                (b"b.txt", Node::File(vec![(12, Location::Blob)])),
                (
                    b"big.bin",
                    Node::File(vec![
                        (1 << 20, Location::Blob),
                        (3 << 20, Location::Blob),
                        (17, pack(0, 0)),
                    ]),
                ),
                (b"caf\xe9", Node::File(vec![(5, pack(0, 17))])),
                (b"link", Node::Link(b"a/x")),
            ]),
        ),
        (
            "deep",
            Node::Dir(vec![(
                b"d1",
                Node::Dir(vec![(
                    b"d2",
                    Node::Dir(vec![
                        (
                            b"d3",
                            Node::Dir(vec![(b"f", Node::File(vec![(1, pack(1, 0))]))]),
                        ),
                        (b"up", Node::Link(b"../../d1")),
                    ]),
                )]),
            )]),
        ),
    ];
    for (name, tree) in trees {
        let m = manifest(tree);
        let stored = m.encode();
        assert_eq!(
            Manifest::decode(&stored).expect("a seed manifest decodes"),
            m
        );
        write(&out, "manifest", &format!("{name}-stored"), &stored);
        write(
            &out,
            "manifest",
            &format!("{name}-plain"),
            &plain(Kind::Manifest, &stored),
        );
        if name == "tree" {
            write(&out, "envelope", "manifest", &stored);
        }
    }

    let committed = VersionRef {
        dataset: "imagenet".into(),
        version: 7,
        manifest: Sha256::of(b"manifest"),
        manifest_size: 36_600_000,
        parent: Some(6),
        created_unix: 1_700_000_000,
        files: 1_281_167,
        bytes: 147 << 30,
        message: "train split, résumé of v6".into(),
        state: VersionState::Committed,
    };
    let deleted = VersionRef {
        dataset: "tiny".into(),
        version: 1,
        parent: None,
        message: String::new(),
        state: VersionState::Deleted {
            at_unix: 1_700_000_100,
        },
        ..committed.clone()
    };
    for (name, r) in [("committed", &committed), ("deleted", &deleted)] {
        let stored = r.encode();
        assert_eq!(&VersionRef::decode(&stored).expect("a seed ref decodes"), r);
        write(&out, "version_ref", name, &stored);
    }
    let stored = committed.encode();
    write(
        &out,
        "version_ref",
        "committed-zstd",
        &zstd(Kind::VersionRef, &stored),
    );
    write(&out, "envelope", "version_ref", &stored);

    for (name, operation) in [("push", "push"), ("gc", "gc")] {
        let l = Lease {
            operation: operation.into(),
            host: "node-17.example".into(),
            pid: 4242,
            started_unix: 1_700_000_000,
        };
        let detail = Detail {
            dataset: "imagenet".into(),
            source: "/srv/imagenet".into(),
            files_done: 12,
            files_total: 1000,
            bytes_done: 1 << 20,
            bytes_total: 1 << 30,
            updated_unix: 1_700_000_015,
            failure: (name == "gc").then(|| "it failed".to_string()),
        };
        let stored = l.encode(&detail);
        assert_eq!(
            Lease::decode(&stored).expect("a seed lease decodes"),
            (l, Some(detail))
        );
        write(&out, "lease", name, &stored);
        if name == "gc" {
            write(&out, "envelope", "lease-zstd", &zstd(Kind::Lease, &stored));
        }
    }
    println!("seeds written under {}", out.display());
}
