//! Packing small files into pack objects of tens of MiB, so that a dataset of a million small
//! files is a few thousand objects and a mount can fetch neighbours with one ranged GET.
//!
//! Pack boundaries are content-defined: a pack is sealed after a file whose digest matches a
//! bit pattern once it holds [`PACK_MIN`] bytes (or unconditionally at [`PACK_MAX`]). Packing the
//! same files in the same order thus yields byte-identical packs, so a push that resumes after a
//! crash finds the packs it already uploaded and skips them, and an inserted file changes only
//! the pack it lands in.

use crate::format::Sha256;
use std::collections::HashMap;

pub const PACK_MIN: usize = 16 << 20;
pub const PACK_MAX: usize = 48 << 20;

/// The manifest's pack table: reused packs of the parent version and new ones.
#[derive(Default)]
pub struct PackTable {
    pub hashes: Vec<Sha256>,
    index: HashMap<Sha256, u32>,
}

impl PackTable {
    /// The slot of an existing pack, adding it on first use.
    pub fn intern(&mut self, h: Sha256) -> u32 {
        *self.index.entry(h).or_insert_with(|| {
            self.hashes.push(h);
            (self.hashes.len() - 1) as u32
        })
    }

    /// Reserves a slot for a pack still being filled.
    fn reserve(&mut self) -> u32 {
        self.hashes.push(Sha256::default());
        (self.hashes.len() - 1) as u32
    }

    /// Fills a reserved slot once the pack is sealed (packs are unique: identical contents
    /// would have deduplicated file by file).
    fn fill(&mut self, slot: u32, h: Sha256) {
        self.hashes[slot as usize] = h;
        self.index.insert(h, slot);
    }
}

/// A sealed pack, ready to upload.
pub struct SealedPack {
    pub hash: Sha256,
    pub data: Vec<u8>,
}

/// The pack being filled.
#[derive(Default)]
pub struct Packer {
    buf: Vec<u8>,
    slot: Option<u32>,
}

impl Packer {
    /// Appends a file; returns its (slot, offset) and, if this file sealed the pack, the pack.
    pub fn add(
        &mut self,
        table: &mut PackTable,
        sha: &Sha256,
        data: &[u8],
    ) -> (u32, u64, Option<SealedPack>) {
        let slot = *self.slot.get_or_insert_with(|| table.reserve());
        let offset = self.buf.len() as u64;
        self.buf.extend_from_slice(data);
        let len = self.buf.len();
        let boundary = sha.0[31] & 0x07 == 0;
        let sealed = if len >= PACK_MAX || (len >= PACK_MIN && boundary) {
            self.seal(table)
        } else {
            None
        };
        (slot, offset, sealed)
    }

    /// Seals the pack being filled, if any.
    pub fn seal(&mut self, table: &mut PackTable) -> Option<SealedPack> {
        let slot = self.slot.take()?;
        let data = std::mem::take(&mut self.buf);
        let hash = Sha256::of(&data);
        table.fill(slot, hash);
        Some(SealedPack { hash, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack_all(files: &[Vec<u8>]) -> Vec<Sha256> {
        let (mut table, mut p, mut out) = (PackTable::default(), Packer::default(), vec![]);
        for f in files {
            if let (_, _, Some(s)) = p.add(&mut table, &Sha256::of(f), f) {
                out.push(s.hash);
            }
        }
        out.extend(p.seal(&mut table).map(|s| s.hash));
        assert_eq!(table.hashes, out);
        out
    }

    #[test]
    fn packs_are_deterministic_and_local() {
        let files: Vec<Vec<u8>> = (0..2000u32)
            .map(|i| {
                let mut v = vec![0u8; 60_000];
                v[..4].copy_from_slice(&i.to_le_bytes());
                v
            })
            .collect();
        let a = pack_all(&files);
        assert_eq!(a, pack_all(&files));
        assert!(a.len() >= 2, "120 MB must need several packs");
        // Inserting a file changes the pack it lands in (and at most the next); the packs
        // before it and after the boundaries resynchronise stay byte-identical.
        let mut edited = files.clone();
        edited.insert(1000, vec![1u8; 1000]);
        let b = pack_all(&edited);
        let changed = a.iter().filter(|h| !b.contains(h)).count();
        assert!(
            a.len() >= 6 && changed <= 2,
            "{changed} of {} packs changed",
            a.len()
        );
    }

    #[test]
    fn offsets_address_the_files() {
        let (mut table, mut p) = (PackTable::default(), Packer::default());
        let (s1, o1, _) = p.add(&mut table, &Sha256::of(b"ab"), b"ab");
        let (s2, o2, _) = p.add(&mut table, &Sha256::of(b"cde"), b"cde");
        let sealed = p.seal(&mut table).unwrap();
        assert_eq!((s1, o1, s2, o2), (0, 0, 0, 2));
        assert_eq!(&sealed.data[2..5], b"cde");
        assert_eq!(table.intern(sealed.hash), 0);
    }
}
