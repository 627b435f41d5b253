//! What every fuzz target shares: an allocator that turns an oversized allocation into a
//! crash, and a bound on how much real output a stored object may decompress to.
//!
//! Without a sanitizer (stable Rust, `-s none`) libFuzzer cannot see allocations, so a decoder
//! that sizes a buffer from a length field it read would only show up as an out-of-memory kill,
//! or not at all when the kernel hands out the pages lazily. [`CappedAlloc`] makes any single
//! allocation over [`ALLOC_CAP`] abort the process, which libFuzzer records as a crash with
//! the input that caused it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};

/// Largest single allocation a target may make. No legitimate decode of an input that
/// passes [`body_within`] comes near it.
pub const ALLOC_CAP: usize = 256 << 20;

/// Largest decompressed body a target decodes. The decoders accept far more by design
/// (`MAX_MANIFEST_BODY` is 4 GiB) and really do hold such a body in memory; an input that truly
/// expands past this is a legitimate large manifest, not a defect, so targets skip it rather
/// than have the allocation cap report it.
pub const MAX_FUZZ_BODY: u64 = 16 << 20;

/// The system allocator, aborting on any single allocation larger than [`ALLOC_CAP`].
pub struct CappedAlloc;

// SAFETY: every call is forwarded unchanged to the system allocator once the size is checked.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

/// Aborts on an oversized request. A panic is not an option inside the allocator (unwinding
/// allocates), so the message is formatted on the stack and written straight to stderr.
fn check(size: usize) {
    if size <= ALLOC_CAP {
        return;
    }
    let mut msg = *b"fuzz: single allocation of 00000000000000000000 bytes exceeds the cap\n";
    let mut n = size;
    for d in msg[26..46].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let _ = std::io::stderr().write_all(&msg);
    std::process::abort();
}

/// Byte offsets of the envelope header every stored object starts with: magic (4), format
/// version (2), codec (1), declared body length (8), then the payload.
const CODEC_AT: usize = 6;
const PAYLOAD_AT: usize = 15;
const CODEC_ZSTD: u8 = 1;

/// Whether the body `data` really decompresses to is at most `max` bytes, measured by
/// decompressing into nothing. It looks only at real output, never at the declared length, so
/// a decoder that trusts the header is still exercised (and caught by the allocation cap).
pub fn body_within(data: &[u8], max: u64) -> bool {
    if data.len() <= PAYLOAD_AT || data[CODEC_AT] != CODEC_ZSTD {
        // Uncompressed bodies are the input itself, bounded by libFuzzer's -max_len.
        return true;
    }
    let Ok(mut decoder) = zstd::stream::read::Decoder::new(&data[PAYLOAD_AT..]) else {
        return true;
    };
    // Counted by hand: a stream that expands and then turns out damaged has still made the
    // decoder under test hold everything before the damage.
    let mut buf = [0u8; 64 << 10];
    let mut total = 0u64;
    while total <= max {
        match decoder.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    total <= max
}
