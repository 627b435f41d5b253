//! `Manifest::decode` (envelope, zstd, body, `validate`) on arbitrary bytes, then what a mount
//! and the CLI do with the result: look every entry up by path, list directories, walk the
//! tree, convert times and add up sizes. A manifest that validates must never make any of
//! that panic, and must survive an encode and a second decode unchanged.
//!
//! Seeds are both as stored (zstd) and with the body left uncompressed, which the decoder also
//! accepts: mutations of the plain body reach the field decoding and `validate` directly
//! instead of mostly breaking the zstd stream.
#![no_main]

use datastore::format::{EntryKind, Manifest};
use datastore_fuzz::{body_within, CappedAlloc, MAX_FUZZ_BODY};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

/// Entries looked up by path per input; path lengths grow with the index, so this bounds the
/// work to well under the timeout however deep the tree.
const LOOKUPS: usize = 1024;
/// Largest total of walked path bytes. Comparing every walked path with `path_of` costs the
/// sum of the paths, quadratic in depth; past this the walk is not checked.
const MAX_WALK_BYTES: u64 = 64 << 20;

fuzz_target!(|data: &[u8]| {
    if !body_within(data, MAX_FUZZ_BODY) {
        return;
    }
    let Ok(m) = Manifest::decode(data) else {
        return;
    };
    exercise(&m);
    let again = Manifest::decode(&m.encode())
        .unwrap_or_else(|e| panic!("a re-encoded manifest does not decode: {e}"));
    assert!(again == m, "manifest changed across encode and decode");
});

fn exercise(m: &Manifest) {
    let n = m.entries.len();
    let mut total = 0u64;
    for e in &m.entries {
        // The mount turns every mtime into a SystemTime for getattr.
        let (secs, nanos) = (e.mtime.secs, e.mtime.nanos);
        assert!(nanos < 1_000_000_000, "mtime with {nanos} nanoseconds");
        let t = if secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos))
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(secs.unsigned_abs()))
                .and_then(|t| t.checked_add(Duration::from_nanos(nanos.into())))
        };
        assert!(
            t.is_some(),
            "mtime {secs}.{nanos} is not a representable time"
        );
        // The mount reports the sum of all file sizes in statfs.
        if let EntryKind::File { size, .. } = e.kind {
            total = total.checked_add(size).expect("file sizes overflow u64");
        }
    }

    // Every entry is found again by its path, through one binary search per component.
    for i in 0..n.min(LOOKUPS) {
        let path = m.path_of(i);
        let parts: Vec<&[u8]> = if path.is_empty() {
            Vec::new()
        } else {
            path.split(|&b| b == b'/').collect()
        };
        assert_eq!(m.lookup(&parts), Some(i), "entry {i} not found at its path");
        // Listing a directory: each child is found by name in it.
        for c in m.children(i).take(LOOKUPS) {
            assert_eq!(m.child(i, m.name(&m.entries[c])), Some(c));
        }
    }

    // A walk from the root reaches every entry exactly once, each with its full path.
    let mut path_len = vec![0u64; n];
    let mut walk_bytes = 0u64;
    for i in 1..n {
        let e = &m.entries[i];
        path_len[i] = path_len[e.parent as usize] + 1 + m.name(e).len() as u64;
        walk_bytes += path_len[i];
    }
    if walk_bytes <= MAX_WALK_BYTES {
        let mut walk = m.walk(0);
        let mut seen = vec![false; n];
        let mut walked = 0;
        while let Some((i, p)) = walk.next_entry() {
            assert!(
                !std::mem::replace(&mut seen[i], true),
                "entry {i} walked twice"
            );
            assert_eq!(p, m.path_of(i), "walk and path_of disagree on entry {i}");
            walked += 1;
        }
        assert_eq!(walked, n, "walk does not reach every entry once");
    }
}
