//! Reusable buffers for reading cache entries.
//!
//! A chunk read from the disk cache is a few MiB. The allocator maps every allocation of that
//! size afresh (see `main.rs`), and the kernel then faults in and zeroes each of its pages as
//! the read fills it: on the warm read path that cost more CPU than the read itself. A buffer
//! whose last reader dropped it comes back here instead, up to a bound, and the next entry is
//! read into pages that are already in place.

use bytes::Bytes;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Buffers are sized in steps of this, so that chunks of similar sizes share them.
const STEP: usize = 1 << 20;

/// Idle buffers, and how many bytes of them to keep at most.
pub struct Buffers {
    idle: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl Buffers {
    pub fn new(keep: usize) -> Arc<Buffers> {
        Arc::new(Buffers {
            idle: Mutex::new(Vec::new()),
            keep,
        })
    }

    /// A whole file, read into a reused buffer where one is idle.
    pub fn read_file(self: &Arc<Buffers>, path: &Path) -> std::io::Result<Bytes> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len() as usize;
        let mut buf = self.take(len);
        file.read_to_end(&mut buf)?;
        Ok(Bytes::from_owner(Pooled {
            buf,
            home: self.clone(),
        }))
    }

    fn take(&self, len: usize) -> Vec<u8> {
        let mut idle = self.lock();
        match idle.iter().position(|b| b.capacity() >= len) {
            Some(i) => idle.swap_remove(i),
            None => Vec::with_capacity(len.div_ceil(STEP).max(1) * STEP),
        }
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        let mut idle = self.lock();
        let held: usize = idle.iter().map(Vec::capacity).sum();
        if held + buf.capacity() <= self.keep {
            buf.clear();
            idle.push(buf);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes held by idle buffers.
    pub fn idle_bytes(&self) -> usize {
        self.lock().iter().map(Vec::capacity).sum()
    }
}

/// A buffer lent out inside [`Bytes`]; returns home when the last of them is dropped.
struct Pooled {
    buf: Vec<u8>,
    home: Arc<Buffers>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.home.give_back(std::mem::take(&mut self.buf));
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
        std::fs::write(&b, vec![2u8; STEP / 2]).unwrap();
        let pool = Buffers::new(2 * STEP);
        let first = pool.read_file(&a).unwrap();
        assert_eq!(&first[..], &vec![1u8; 3 * STEP / 2][..]);
        let ptr = first.as_ptr();
        let part = first.slice(10..20);
        drop(first);
        assert_eq!(pool.idle_bytes(), 0, "a slice still holds the buffer");
        drop(part);
        assert_eq!(pool.idle_bytes(), 2 * STEP);
        // The smaller file is read into the same pages, with no stale bytes past its end.
        let second = pool.read_file(&b).unwrap();
        assert_eq!(second.as_ptr(), ptr);
        assert_eq!(&second[..], &vec![2u8; STEP / 2][..]);
        // Over the bound, a returning buffer is freed instead.
        let third = pool.read_file(&a).unwrap();
        drop(second);
        drop(third);
        assert_eq!(pool.idle_bytes(), 2 * STEP);
        assert!(pool.read_file(&dir.path().join("missing")).is_err());
    }
}
