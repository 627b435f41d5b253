use super::*;
use std::collections::BTreeMap;

/// Builds a manifest from `path → file size` (0-sized dirs end in '/', symlinks are "->target").
pub(crate) fn build(paths: &[&str]) -> Manifest {
    #[derive(Default)]
    struct Node {
        children: BTreeMap<Vec<u8>, Node>,
        leaf: Option<String>,
    }
    let mut root = Node::default();
    for p in paths {
        let mut n = &mut root;
        let path = p.split("->").next().unwrap_or_default();
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            n = n.children.entry(part.as_bytes().to_vec()).or_default();
            if i == parts.len() - 1 && !p.ends_with('/') {
                n.leaf = Some(p.to_string());
            }
        }
    }
    let mut m = Manifest::default();
    let push_str = |m: &mut Manifest, s: &[u8]| {
        let span = Span {
            start: m.strings.len() as u32,
            len: s.len() as u32,
        };
        m.strings.to_mut().extend_from_slice(s);
        span
    };
    m.entries.push(Entry {
        parent: 0,
        name: Span::default(),
        mode: 0o755,
        mtime: Timestamp::default(),
        kind: EntryKind::Dir {
            children: Run::default(),
        },
    });
    let mut queue = std::collections::VecDeque::from([(0usize, &root)]);
    while let Some((idx, node)) = queue.pop_front() {
        let start = m.entries.len() as u32;
        for (name, child) in &node.children {
            let span = push_str(&mut m, name);
            let kind = match &child.leaf {
                Some(p) if p.contains("->") => {
                    let t = push_str(&mut m, p.split("->").nth(1).unwrap().as_bytes());
                    EntryKind::Symlink { target: t }
                }
                Some(p) => {
                    let size = p.len() as u64;
                    let cstart = m.chunks.len() as u32;
                    m.chunks.push(ChunkRef {
                        hash: Sha256::of(p.as_bytes()),
                        file_offset: 0,
                        len: size as u32,
                        location: Location::Blob,
                    });
                    EntryKind::File {
                        size,
                        sha256: Sha256::of(p.as_bytes()),
                        chunks: Run {
                            start: cstart,
                            len: 1,
                        },
                    }
                }
                None => EntryKind::Dir {
                    children: Run::default(),
                },
            };
            m.entries.push(Entry {
                parent: idx as u32,
                name: span,
                mode: 0o644,
                mtime: Timestamp { secs: 1, nanos: 2 },
                kind,
            });
        }
        let len = m.entries.len() as u32 - start;
        if let EntryKind::Dir { children } = &mut m.entries[idx].kind {
            *children = Run { start, len };
        }
        for (i, child) in node.children.values().enumerate() {
            if child.leaf.is_none() {
                queue.push_back((start as usize + i, child));
            }
        }
    }
    m
}

#[test]
fn round_trip() {
    let m = build(&["a/b/c.txt", "a/d.txt", "e/", "e/link->../a", "z.bin"]);
    m.validate().unwrap();
    let bytes = m.encode();
    assert_eq!(Manifest::decode(&bytes).unwrap(), m);
}

/// `m` with every file's chunks read in place from objects of one source, `s3://b/p`.
pub(crate) fn imported(mut m: Manifest) -> Manifest {
    let intern = |m: &mut Manifest, s: &str| {
        let span = Span {
            start: m.strings.len() as u32,
            len: s.len() as u32,
        };
        m.strings.to_mut().extend_from_slice(s.as_bytes());
        span
    };
    let url = intern(&mut m, "s3://b/p");
    m.sources.push(url);
    for i in 0..m.chunks.len() {
        let key = intern(&mut m, &format!("key {i}"));
        let etag = intern(&mut m, "\"e\"");
        m.objects.push(SourceObject {
            source: 0,
            key,
            size: m.chunks[i].len as u64,
            etag: Some(etag),
            version: None,
        });
        m.chunks[i].location = Location::External { object: i as u32 };
    }
    m
}

/// Version 2 is written only for a version that reads objects outside the store.
#[test]
fn imported_versions_round_trip_as_version_2() {
    let plain = build(&["a/b", "c"]);
    assert_eq!(plain.encode()[4], 1);
    let m = imported(plain);
    m.validate().unwrap();
    let bytes = m.encode();
    assert_eq!(bytes[4], 2);
    assert_eq!(Manifest::decode(&bytes).unwrap(), m);
    for cut in 0..bytes.len() {
        assert!(Manifest::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn broken_source_tables_are_refused() {
    let ok = imported(build(&["a/b", "c"]));
    let mut past_end = ok.clone();
    past_end.objects[0].size -= 1;
    let mut no_object = ok.clone();
    no_object.chunks[0].location = Location::External { object: 9 };
    let mut no_source = ok.clone();
    no_source.objects[1].source = 1;
    let mut not_utf8 = ok.clone();
    not_utf8.strings.push(0xff);
    not_utf8.objects[0].key = Span {
        start: not_utf8.strings.len() as u32 - 1,
        len: 1,
    };
    let mut outside = ok.clone();
    outside.sources[0].len = 1 << 30;
    for (what, m) in [
        ("past the end", past_end),
        ("does not exist", no_object),
        ("source that does not exist", no_source),
        ("not UTF-8", not_utf8),
        ("outside the string table", outside),
    ] {
        let e = Manifest::decode(&m.encode()).unwrap_err().to_string();
        assert!(e.contains(what), "{what}: {e}");
    }
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = build(&["a/b", "c", "d/e/f"]).encode();
    for cut in 0..bytes.len() {
        assert!(Manifest::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

fn rename(m: &mut Manifest, entry: usize, name: &[u8]) {
    let span = Span {
        start: m.strings.len() as u32,
        len: name.len() as u32,
    };
    m.strings.to_mut().extend_from_slice(name);
    m.entries[entry].name = span;
}

#[test]
fn hostile_names_are_refused() {
    for bad in [&b".."[..], b".", b"a/b", b"a\0b", b""] {
        let mut m = build(&["a", "b"]);
        rename(&mut m, 1, bad);
        let err = Manifest::decode(&m.encode()).unwrap_err().to_string();
        assert!(err.contains("manifest is corrupt"), "{bad:?}: {err}");
    }
    // Duplicate names in one directory.
    let mut m = build(&["a", "b"]);
    rename(&mut m, 2, b"a");
    assert!(Manifest::decode(&m.encode()).is_err());
}

#[test]
fn broken_structure_is_refused() {
    // A cycle: an entry that claims to be its own parent.
    let mut m = build(&["a/b"]);
    m.entries[2].parent = 2;
    assert!(m.validate().is_err());
    // A child range pointing backwards, at the root.
    let mut m = build(&["a/b"]);
    m.entries[1].kind = EntryKind::Dir {
        children: Run { start: 0, len: 1 },
    };
    assert!(m.validate().is_err());
    // Chunks that do not add up to the size.
    let mut m = build(&["f"]);
    if let EntryKind::File { size, .. } = &mut m.entries[1].kind {
        *size += 1;
    }
    assert!(m.validate().is_err());
    // A pack index past the pack table.
    let mut m = build(&["f"]);
    m.chunks[0].location = Location::Pack { pack: 3, offset: 0 };
    assert!(m.validate().is_err());
    // Setuid bits are allowed in 0o7777 but file-type bits are not.
    let mut m = build(&["f"]);
    m.entries[1].mode = 0o100644;
    assert!(m.validate().is_err());
}

#[test]
fn huge_counts_do_not_allocate() {
    // A header claiming 2^60 entries in a few bytes must fail fast, not abort on allocation.
    let mut body = Vec::new();
    let counts = Counts {
        entries: 1 << 60,
        chunks: 1 << 60,
        packs: 0,
        strings: 0,
    };
    bincode::encode_into_std_write(&counts, &mut body, CONFIG).unwrap();
    let bytes = envelope::seal(Kind::Manifest, &body, true);
    assert!(Manifest::decode(&bytes).is_err());
}

/// Decoding a million-entry manifest is what a mount waits for; this prints the figure that
/// doc/FORMAT.md quotes (release build: `cargo test --release -- --nocapture million`).
#[test]
fn million_entries_decode() {
    let names: Vec<String> = (0..1_000_000)
        .map(|i| format!("d{:03}/f{i:07}.jpg", i % 1000))
        .collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let m = build(&refs);
    let bytes = m.encode();
    let t = std::time::Instant::now();
    let back = Manifest::decode(&bytes).unwrap();
    let took = t.elapsed();
    assert_eq!(back.entries.len(), 1_001_001);
    println!(
        "1M-entry manifest: {} bytes stored, decoded and validated in {:?}",
        bytes.len(),
        took
    );
}

/// Targets are walked through the tree as the kernel would, links expanded on the way.
#[test]
fn symlinks_that_lead_out_of_the_tree_are_refused() {
    use super::LinkFault::*;
    let inside = [
        &["a/b/up->..", "a/b/f"][..],
        &["a/l->../x/y", "x/y"],
        &["a/b/up->..", "a/b/l->up/../x", "x"],
        // Dangling, or through a file: the kernel's walk ends there.
        &["a/l->../missing/../../..", "a/f"],
        &["a/l->f/../../..", "a/f"],
        // A cycle ends in ELOOP, inside.
        &["a->b", "b->a"],
        &["d/loop->.."],
    ];
    for paths in inside {
        let m = build(paths);
        assert_eq!(m.escaping_link(), None, "{paths:?}");
        m.validate().unwrap();
    }
    let outside = [
        (&["l->/etc/passwd"][..], Absolute),
        (&["a/l->../../etc"], Escapes),
        (&["l->.."], Escapes),
        (&["a/l->./../b/../..", "b/"], Escapes),
        // `up` is a/, so `up/..` is the root and one more `..` climbs out, although the
        // target read as text (a/b + up/../..) stays inside.
        (&["a/b/up->..", "a/b/l->up/../.."], Escapes),
        (&["a/l->../b/abs", "b/abs->/etc"], Absolute),
    ];
    for (paths, fault) in outside {
        let m = build(paths);
        assert_eq!(m.escaping_link().map(|(_, f)| f), Some(fault), "{paths:?}");
        let err = m.validate().unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
    }
}

/// Found by the `manifest` fuzz target: an entry whose mtime has 4,037,292,779 nanoseconds
/// decoded and validated. Readers build a `SystemTime` from an mtime, and the carry out of the
/// nanoseconds overflows (a panic) when the seconds are near `i64::MAX`.
#[test]
fn mtime_nanoseconds_past_a_second_are_refused() {
    let crash = hex::decode(concat!(
        "44534d46010001570000000000000028b52ffd2057b9020001000200c55a7a80e37cc918",
        "36337b074baa40529e5212ba82ee7172c302491119a20930be955617dac3a89aee7058a1",
        "cca9ef93617148273b677c694b3bbf87367ef35d000000fbed01fc00e2a7cafceb32a4f0",
        "000100",
    ))
    .unwrap();
    let err = Manifest::decode(&crash).unwrap_err().to_string();
    assert!(err.contains("nanoseconds"), "{err}");
    let mut m = build(&["f"]);
    m.entries[1].mtime = Timestamp {
        secs: i64::MAX,
        nanos: 1_000_000_000,
    };
    assert!(m.validate().is_err());
    m.entries[1].mtime.nanos = 999_999_999;
    m.validate().unwrap();
    assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
}

/// Two files naming the same chunk validated, and did not survive a round trip: the hash left
/// implied by the second file's digest was filled in from the first file's on decode.
#[test]
fn files_sharing_chunks_are_refused() {
    let mut m = build(&["a", "b"]);
    // `a` now names `b`'s chunk, whose hash is `b`'s digest, not its own.
    if let EntryKind::File { chunks, .. } = &mut m.entries[1].kind {
        *chunks = Run { start: 1, len: 1 };
    }
    let err = m.validate().unwrap_err().to_string();
    assert!(err.contains("shares chunk 1"), "{err}");
    assert!(Manifest::decode(&m.encode()).is_err());
}

/// Names are compared (sorted, unique) only once each is known to be at most 255 bytes, so a
/// hostile table of long overlapping names cannot make each comparison cost megabytes.
#[test]
fn long_names_are_refused_before_they_are_compared() {
    let mut m = build(&["a", "b"]);
    rename(&mut m, 1, &[b'b'; 300]);
    rename(&mut m, 2, &[b'a'; 300]);
    let err = m.validate().unwrap_err().to_string();
    assert!(err.contains("longer than 255"), "{err}");
}
