//! Verified chunks kept in memory, least recently used first out once over a byte bound.
//!
//! The kernel reads a file in requests of at most 1 MiB while chunks are several MiB: keeping
//! the chunk in hand makes the requests after the first one lookup each.

use crate::format::Sha256;
use bytes::Bytes;

pub struct MemoryCache {
    chunks: lru::LruCache<Sha256, Bytes>,
    bytes: u64,
    bound: u64,
}

impl MemoryCache {
    pub fn new(bound: u64) -> MemoryCache {
        MemoryCache {
            chunks: lru::LruCache::unbounded(),
            bytes: 0,
            bound,
        }
    }

    pub fn get(&mut self, h: &Sha256) -> Option<Bytes> {
        self.chunks.get(h).cloned()
    }

    /// The most bytes it keeps.
    pub fn bound(&self) -> u64 {
        self.bound
    }

    pub fn contains(&self, h: &Sha256) -> bool {
        self.chunks.contains(h)
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Lets go of a chunk; whether it was held.
    pub fn remove(&mut self, h: &Sha256) -> bool {
        let old = self.chunks.pop(h);
        if let Some(old) = &old {
            self.bytes -= old.len() as u64;
        }
        old.is_some()
    }

    /// Keeps a chunk, dropping the least recently used ones past the bound. A chunk larger
    /// than the whole bound is not kept.
    pub fn insert(&mut self, hash: Sha256, data: Bytes) {
        if data.len() as u64 > self.bound {
            return;
        }
        self.bytes += data.len() as u64;
        if let Some(old) = self.chunks.put(hash, data) {
            self.bytes -= old.len() as u64;
        }
        while self.bytes > self.bound {
            match self.chunks.pop_lru() {
                Some((_, old)) => self.bytes -= old.len() as u64,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_its_bound_dropping_the_oldest() {
        let mut m = MemoryCache::new(10);
        let h = |i: u8| Sha256::of(&[i]);
        m.insert(h(1), Bytes::from(vec![1; 4]));
        m.insert(h(2), Bytes::from(vec![2; 4]));
        assert!(m.get(&h(1)).is_some());
        m.insert(h(3), Bytes::from(vec![3; 4]));
        assert!(!m.contains(&h(2)), "least recently used goes first");
        assert!(m.contains(&h(1)) && m.contains(&h(3)));
        assert_eq!(m.bytes(), 8);
        m.insert(h(4), Bytes::from(vec![4; 11]));
        assert!(!m.contains(&h(4)), "larger than the bound");
        assert_eq!(m.bytes(), 8);
        assert!(m.remove(&h(1)));
        assert!(!m.remove(&h(1)));
        assert!(!m.contains(&h(1)));
        assert_eq!(m.bytes(), 4);
    }
}
