//! `VersionRef::decode` on arbitrary bytes: never a panic, and whatever decodes survives an
//! encode and a second decode unchanged (`log`, `gc` and `rm` rewrite refs they have read).
#![no_main]

use datastore::format::VersionRef;
use datastore_fuzz::CappedAlloc;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = VersionRef::decode(data) else {
        return;
    };
    let again = VersionRef::decode(&r.encode())
        .unwrap_or_else(|e| panic!("a re-encoded version ref does not decode: {e}"));
    assert_eq!(again, r, "version ref changed across encode and decode");
    let _ = (r.label(), r.is_committed());
});
