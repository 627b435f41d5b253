//! Reusable, page-aligned buffers for chunks: the bodies of GETs and the entries read from the
//! disk cache.
//!
//! A chunk is a few MiB. The allocator maps every allocation of that size afresh (see
//! `main.rs`), and the kernel then faults in and zeroes each of its pages as it is filled, and
//! unmaps them (with a TLB flush) when it is freed: profiled on a cold 1 GiB read, that cost
//! a quarter of the daemon's CPU, more than hashing. A buffer whose last reader dropped it
//! comes back here instead, up to a bound, and the next chunk lands in pages already in place.
//!
//! Buffers start on a page boundary, so the disk cache can write a chunk that arrived in one
//! with O_DIRECT straight from it, with no staging copy (`cache::direct`).

use bytes::Bytes;
use std::collections::VecDeque;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, OnceLock};

/// Alignment of every buffer: a page, the largest logical block size of common devices.
pub const ALIGN: usize = 4096;
/// Buffers are sized in steps of this, so that chunks of similar sizes share them.
const STEP: usize = 256 << 10;
/// Idle bytes the process-wide pool keeps: a few chunks' worth, which is what a reader
/// streaming through a file frees and needs again at any moment.
const SHARED_IDLE: usize = 32 << 20;

/// Idle buffers, oldest first, and how many bytes of them to keep at most.
pub struct Buffers {
    idle: Mutex<VecDeque<Block>>,
    keep: usize,
}

/// The pool every fetch and cache read of the process shares, so that idle memory is
/// bounded once, not per user.
pub fn shared() -> &'static Arc<Buffers> {
    static SHARED: OnceLock<Arc<Buffers>> = OnceLock::new();
    SHARED.get_or_init(|| Buffers::new(SHARED_IDLE))
}

impl Buffers {
    pub fn new(keep: usize) -> Arc<Buffers> {
        Arc::new(Buffers {
            idle: Mutex::new(VecDeque::new()),
            keep,
        })
    }

    /// An empty buffer to fill with about `expected` bytes (it grows past that if it must).
    pub fn filling(self: &Arc<Buffers>, expected: usize) -> Filling {
        Filling(Pooled {
            block: self.take(expected),
            len: 0,
            home: self.clone(),
        })
    }

    /// A whole file, read into a reused buffer where one is idle. A file shorter than its
    /// size said when opened is an `UnexpectedEof` error.
    pub fn read_file(self: &Arc<Buffers>, path: &Path) -> std::io::Result<Bytes> {
        let file = std::fs::File::open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| std::io::Error::other("file too large"))?;
        self.read_at(&file, 0, len)
    }

    /// Bytes `offset..offset + len` of `file`, read into a reused buffer.
    pub fn read_at(
        self: &Arc<Buffers>,
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> std::io::Result<Bytes> {
        use std::os::unix::fs::FileExt;
        let mut buf = self.filling(len);
        file.read_exact_at(buf.spare(len), offset)?;
        buf.0.len = len;
        Ok(buf.freeze())
    }

    /// A buffer of at least `len` bytes: the smallest idle one that holds them, cut down to
    /// size, or else the largest, grown (only the pages added are new), or else a new one.
    /// Every buffer is cut to what it holds, so memory in use is what chunks take.
    fn take(&self, len: usize) -> Block {
        let want = len.div_ceil(STEP).max(1) * STEP;
        let mut idle = self.lock();
        let caps = idle.iter().map(|b| b.cap).enumerate();
        let fit = caps
            .clone()
            .filter(|&(_, c)| c >= want)
            .min_by_key(|&(_, c)| c);
        let pick = fit.or_else(|| caps.max_by_key(|&(_, c)| c)).map(|(i, _)| i);
        let block = pick.and_then(|i| idle.remove(i));
        drop(idle);
        match block.map(|b| b.resized(want)) {
            Some(Ok(b)) => b,
            _ => Block::new(want),
        }
    }

    /// Keeps `block` for reuse, letting go of the oldest idle ones past the bound.
    fn give_back(&self, block: Block) {
        if block.cap > self.keep {
            return;
        }
        let mut freed = Vec::new();
        let mut idle = self.lock();
        idle.push_back(block);
        let mut held: usize = idle.iter().map(|b| b.cap).sum();
        while held > self.keep {
            let Some(old) = idle.pop_front() else { break };
            held -= old.cap;
            freed.push(old);
        }
        drop(idle);
        // Unmapped outside the lock.
        drop(freed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Block>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes held by idle buffers.
    pub fn idle_bytes(&self) -> usize {
        self.lock().iter().map(|b| b.cap).sum()
    }
}

/// A buffer being filled; [`Filling::freeze`] makes its bytes a [`Bytes`] that returns the
/// buffer to its pool when the last of them is dropped.
pub struct Filling(Pooled);

impl Filling {
    /// Appends `data`, moving to a larger buffer if it does not fit.
    pub fn extend(&mut self, data: &[u8]) {
        let need = self.0.len + data.len();
        self.reserve(need);
        let p = &mut self.0;
        p.block.bytes_mut()[p.len..need].copy_from_slice(data);
        p.len = need;
    }

    /// Room for `len` more bytes, for a read to fill; the caller then counts them in.
    fn spare(&mut self, len: usize) -> &mut [u8] {
        let at = self.0.len;
        self.reserve(at + len);
        &mut self.0.block.bytes_mut()[at..at + len]
    }

    /// Moves to a buffer of at least `need` bytes, keeping those filled, if this one is
    /// smaller.
    fn reserve(&mut self, need: usize) {
        let p = &mut self.0;
        if need > p.block.cap {
            let mut larger = p.home.take(need.max(2 * p.len));
            larger.bytes_mut()[..p.len].copy_from_slice(&p.block.bytes()[..p.len]);
            p.home.give_back(std::mem::replace(&mut p.block, larger));
        }
    }

    pub fn len(&self) -> usize {
        self.0.len
    }

    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self.0)
    }
}

/// A buffer lent out; returns home when dropped.
struct Pooled {
    block: Block,
    len: usize,
    home: Arc<Buffers>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.block.bytes()[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let block = std::mem::replace(&mut self.block, Block::empty());
        if block.cap > 0 {
            self.home.give_back(block);
        }
    }
}

/// Pages of their own (an anonymous mapping): page-aligned, zero until written, so every byte
/// is always initialized, and resized in place or by moving page tables, never by copying.
struct Block {
    ptr: NonNull<u8>,
    cap: usize,
}

// SAFETY: a Block owns its mapping exclusively, like a Vec<u8> its memory.
unsafe impl Send for Block {}
// SAFETY: shared access only reads.
unsafe impl Sync for Block {}

impl Block {
    fn new(cap: usize) -> Block {
        // SAFETY: a new private anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        match mapped(ptr) {
            Some(ptr) => Block { ptr, cap },
            None => std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(cap, ALIGN)
                    .unwrap_or(std::alloc::Layout::new::<u8>()),
            ),
        }
    }

    /// This block with `cap` bytes: cut in place, or grown where the kernel finds room.
    fn resized(mut self, cap: usize) -> std::io::Result<Block> {
        if cap == self.cap {
            return Ok(self);
        }
        // SAFETY: remaps this block's own mapping; on success the old address is no longer
        // used (the block takes the new one), on failure the mapping is unchanged.
        let ptr = unsafe {
            libc::mremap(
                self.ptr.as_ptr().cast(),
                self.cap,
                cap,
                libc::MREMAP_MAYMOVE,
            )
        };
        match mapped(ptr) {
            Some(ptr) => {
                self.ptr = ptr;
                self.cap = cap;
                Ok(self)
            }
            _ => Err(std::io::Error::last_os_error()),
        }
    }

    /// A block of no memory, left behind by one moved out.
    fn empty() -> Block {
        Block {
            ptr: NonNull::dangling(),
            cap: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `cap` bytes from `ptr` are mapped, initialized (zero-filled by the kernel
        // or written since) and owned by this block; a dangling pointer has `cap` 0.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.cap) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }
}

/// What mmap or mremap returned, unless it failed.
fn mapped(ptr: *mut libc::c_void) -> Option<NonNull<u8>> {
    if ptr == libc::MAP_FAILED {
        return None;
    }
    NonNull::new(ptr.cast())
}

impl Drop for Block {
    fn drop(&mut self) {
        if self.cap > 0 {
            // SAFETY: this block's own mapping, unmapped once.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.cap) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_are_reused_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, vec![1u8; 3 * STEP / 2]).unwrap();
        std::fs::write(&b, vec![2u8; 5 * STEP / 4]).unwrap();
        let pool = Buffers::new(2 * STEP);
        let first = pool.read_file(&a).unwrap();
        assert_eq!(&first[..], &vec![1u8; 3 * STEP / 2][..]);
        assert_eq!(first.as_ptr() as usize % ALIGN, 0, "page-aligned");
        let ptr = first.as_ptr();
        let part = first.slice(10..20);
        drop(first);
        assert_eq!(pool.idle_bytes(), 0, "a slice still holds the buffer");
        drop(part);
        assert_eq!(pool.idle_bytes(), 2 * STEP);
        // A slightly smaller file is read into the same pages, with no stale bytes past its end.
        let second = pool.read_file(&b).unwrap();
        assert_eq!(second.as_ptr(), ptr);
        assert_eq!(&second[..], &vec![2u8; 5 * STEP / 4][..]);
        // Over the bound, the oldest idle buffer is freed.
        let third = pool.read_file(&a).unwrap();
        drop(second);
        drop(third);
        assert_eq!(pool.idle_bytes(), 2 * STEP);
        assert!(pool.read_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn idle_buffers_are_cut_or_grown_to_the_need() {
        let pool = Buffers::new(64 * STEP);
        let mut big = pool.filling(32 * STEP);
        big.extend(&[7; 100]);
        drop(big.freeze());
        assert_eq!(pool.idle_bytes(), 32 * STEP);
        let small = pool.filling(STEP);
        assert_eq!(pool.idle_bytes(), 0, "the idle buffer was taken");
        assert_eq!(small.0.block.cap, STEP, "and cut down to the need");
        drop(small);
        let mut grown = pool.filling(3 * STEP);
        assert_eq!((pool.idle_bytes(), grown.0.block.cap), (0, 3 * STEP));
        let data: Vec<u8> = (0..3 * STEP).map(|i| (i % 241) as u8).collect();
        grown.extend(&data);
        assert_eq!(&grown.freeze()[..], &data[..]);
        assert_eq!(pool.idle_bytes(), 3 * STEP);
    }

    #[test]
    fn filling_grows_past_what_was_expected_and_keeps_every_byte() {
        let pool = Buffers::new(16 * STEP);
        let mut f = pool.filling(10);
        let data: Vec<u8> = (0..3 * STEP + 17).map(|i| (i * 7 % 251) as u8).collect();
        for piece in data.chunks(STEP / 3) {
            f.extend(piece);
        }
        assert_eq!(f.len(), data.len());
        let b = f.freeze();
        assert_eq!(&b[..], &data[..]);
        drop(b);
        assert!(pool.idle_bytes() >= 4 * STEP, "every buffer went back");
    }

    #[test]
    fn a_file_shorter_than_asked_is_an_error_not_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, [1u8; 100]).unwrap();
        let pool = Buffers::new(STEP);
        let f = std::fs::File::open(&a).unwrap();
        assert_eq!(&pool.read_at(&f, 10, 20).unwrap()[..], &[1u8; 20][..]);
        let e = pool.read_at(&f, 90, 20).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
