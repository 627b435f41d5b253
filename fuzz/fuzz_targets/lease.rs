//! `Lease::decode` on arbitrary bytes: never a panic, and whatever decodes survives an encode
//! and a second decode unchanged.
#![no_main]

use datastore::format::lease::Lease;
use datastore_fuzz::CappedAlloc;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

fuzz_target!(|data: &[u8]| {
    let Ok((l, detail)) = Lease::decode(data) else {
        return;
    };
    // A lease without detail (an older datastore's) is written back with an empty one.
    let detail = detail.unwrap_or_default();
    let again = Lease::decode(&l.encode(&detail))
        .unwrap_or_else(|e| panic!("a re-encoded lease does not decode: {e}"));
    assert_eq!(
        again,
        (l, Some(detail)),
        "lease changed across encode and decode"
    );
});
