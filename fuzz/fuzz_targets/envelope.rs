//! `envelope::open` on arbitrary bytes, as each kind of object: never a panic, never a body
//! other than the declared length, and a body that opens seals and opens again unchanged with
//! either codec.
#![no_main]

use datastore::format::envelope::{open, seal, Kind};
use datastore::format::manifest::MAX_MANIFEST_BODY;
use datastore::format::FormatError;
use datastore_fuzz::{body_within, CappedAlloc};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

/// Largest real body opened here. Header and codec handling do not depend on the body's size,
/// and a body of megabytes costs milliseconds to expand twice, which left unchecked slows this
/// target tenfold as the corpus collects them; the manifest target covers large bodies.
const MAX_BODY: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if !body_within(data, MAX_BODY) {
        return;
    }
    for kind in [Kind::Manifest, Kind::VersionRef, Kind::Lease] {
        // The manifest's limit, the largest any kind has: the header's length field is trusted
        // as little as the decoder allows.
        let Ok(body) = open(kind, data, MAX_MANIFEST_BODY) else {
            continue;
        };
        for compress in [false, true] {
            let sealed = seal(kind, &body, compress);
            let back = open(kind, &sealed, body.len() as u64)
                .unwrap_or_else(|e| panic!("a sealed body does not open ({compress}): {e}"));
            assert!(back == body, "body changed across seal and open");
            if !body.is_empty() {
                let short = open(kind, &sealed, body.len() as u64 - 1);
                assert!(matches!(short, Err(FormatError::TooLarge { .. })));
            }
        }
    }
});
