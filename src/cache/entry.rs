//! One cache entry on disk: a verified chunk behind a table of block checksums.
//!
//! ```text
//! "DSC2"  u32 block size  u64 data length  u32 CRC-32 of the table  u32 zero
//! u32 CRC-32 of each block of the data …  zeros up to a multiple of 4096 bytes
//! data …
//! ```
//!
//! The data was checked against its SHA-256 before it was written, and the entry is named by
//! that hash. Reading checks the CRC of every block it returns (an order of magnitude cheaper
//! than SHA-256), which catches a truncated file or flipped bits on disk; the caller then drops
//! the entry and fetches the chunk again. Per-block checksums let a part of an entry be served
//! and still be checked: a random 4 KiB read costs one 64 KiB block, not the whole chunk.
//! Entries are written to a temporary file and renamed into place, so a crash leaves either
//! no entry or a whole one.

use crate::buffers::Buffers;
use bytes::Bytes;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"DSC2";
/// The unit of checking.
pub const BLOCK: usize = 64 << 10;
const FIXED: usize = 24;

/// Why an entry on disk could not be used.
#[derive(Debug)]
pub enum Bad {
    Missing,
    /// Present but damaged: wrong magic, length or checksum.
    Damaged(&'static str),
    Io(std::io::Error),
}

impl From<std::io::Error> for Bad {
    fn from(e: std::io::Error) -> Bad {
        match e.kind() {
            std::io::ErrorKind::NotFound => Bad::Missing,
            std::io::ErrorKind::UnexpectedEof => Bad::Damaged("wrong length"),
            _ => Bad::Io(e),
        }
    }
}

fn blocks(len: u64) -> usize {
    len.div_ceil(BLOCK as u64) as usize
}

/// The data starts on a page boundary.
const ALIGN: usize = 4096;

/// Where the data of an entry of `len` bytes starts.
fn data_offset(len: u64) -> usize {
    (FIXED + 4 * blocks(len)).div_ceil(ALIGN) * ALIGN
}

/// The bytes an entry holding `len` bytes of data takes on disk.
pub fn size_on_disk(len: u64) -> u64 {
    data_offset(len) as u64 + len
}

/// What the header says, once checked against the file's size and the table's own CRC.
struct Header {
    len: u64,
    offset: usize,
    crcs: Vec<u32>,
}

impl Header {
    fn encode(data: &[u8]) -> Vec<u8> {
        let len = data.len() as u64;
        let mut h = vec![0u8; data_offset(len)];
        let table: Vec<u8> = data
            .chunks(BLOCK)
            .flat_map(|b| crc32fast::hash(b).to_le_bytes())
            .collect();
        h[..4].copy_from_slice(MAGIC);
        h[4..8].copy_from_slice(&(BLOCK as u32).to_le_bytes());
        h[8..16].copy_from_slice(&len.to_le_bytes());
        h[16..20].copy_from_slice(&crc32fast::hash(&table).to_le_bytes());
        h[FIXED..FIXED + table.len()].copy_from_slice(&table);
        h
    }

    /// Parses the header at the start of `raw` (at least its fixed part) of a file of
    /// `file_size` bytes; `None` if `raw` is too short to hold the table, which is then
    /// [`Header::needs`] bytes long.
    fn parse(raw: &[u8], file_size: u64) -> Result<Option<Header>, Bad> {
        let word = |at: usize| u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
        if raw.len() < FIXED || &raw[..4] != MAGIC {
            return Err(Bad::Damaged("bad header"));
        }
        if word(4) as usize != BLOCK {
            return Err(Bad::Damaged("unknown block size"));
        }
        let len = u64::from_le_bytes(raw[8..16].try_into().unwrap_or_default());
        // Checked before anything is sized by it: a damaged length must not allocate.
        if len > file_size || size_on_disk(len) != file_size {
            return Err(Bad::Damaged("wrong length"));
        }
        let n = blocks(len);
        if raw.len() < FIXED + 4 * n {
            return Ok(None);
        }
        let table = &raw[FIXED..FIXED + 4 * n];
        if crc32fast::hash(table) != word(16) {
            return Err(Bad::Damaged("checksum mismatch"));
        }
        Ok(Some(Header {
            len,
            offset: data_offset(len),
            crcs: (0..n).map(|i| word(FIXED + 4 * i)).collect(),
        }))
    }

    /// Checks the blocks of `data`, which starts at block `first`.
    fn check(&self, first: usize, data: &[u8]) -> Result<(), Bad> {
        for (i, b) in data.chunks(BLOCK).enumerate() {
            if self.crcs.get(first + i) != Some(&crc32fast::hash(b)) {
                return Err(Bad::Damaged("checksum mismatch"));
            }
        }
        Ok(())
    }
}

/// Reads and checks a whole entry. Blocking.
pub fn read(path: &Path, buffers: &Arc<Buffers>) -> Result<Bytes, Bad> {
    let raw = buffers.read_file(path)?;
    let h = Header::parse(&raw, raw.len() as u64)?.ok_or(Bad::Damaged("bad header"))?;
    let data = raw.slice(h.offset..);
    h.check(0, &data)?;
    Ok(data)
}

/// Reads bytes `range` of an entry's data, checking only the blocks they lie in, and the
/// length of the whole data. Blocking.
pub fn read_range(path: &Path, range: Range<u64>) -> Result<(Bytes, u64), Bad> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut head = vec![0u8; (ALIGN as u64).min(size) as usize];
    file.read_exact_at(&mut head, 0)?;
    let h = match Header::parse(&head, size)? {
        Some(h) => h,
        None => {
            head.resize(
                data_offset(u64::from_le_bytes(
                    head[8..16].try_into().unwrap_or_default(),
                )),
                0,
            );
            file.read_exact_at(&mut head, 0)?;
            Header::parse(&head, size)?.ok_or(Bad::Damaged("bad header"))?
        }
    };
    if range.start > range.end || range.end > h.len {
        return Err(Bad::Damaged("range past the end"));
    }
    let first = range.start as usize / BLOCK;
    let from = (first * BLOCK) as u64;
    let to = (range.end.div_ceil(BLOCK as u64) * BLOCK as u64).min(h.len);
    let data =
        crate::buffers::shared().read_at(&file, h.offset as u64 + from, (to - from) as usize)?;
    h.check(first, &data)?;
    Ok((
        data.slice((range.start - from) as usize..(range.end - from) as usize),
        h.len,
    ))
}

/// Writes an entry atomically: a temporary file in `tmp_dir` (same filesystem), then a
/// rename; its mtime is `mtime`. Blocking. Returns the bytes the entry takes on disk (its
/// allocated blocks).
pub fn write(
    tmp_dir: &Path,
    path: &Path,
    data: &[u8],
    mtime: std::time::SystemTime,
) -> std::io::Result<u64> {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{}-", std::process::id()))
        .tempfile_in(tmp_dir)?;
    let mut out = super::direct::Appender::new(tmp.as_file());
    out.write(tmp.as_file(), &Header::encode(data))?;
    out.write(tmp.as_file(), data)?;
    out.finish(tmp.as_file())?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    tmp.as_file().set_modified(mtime)?;
    let size = super::file_entry::allocated(&tmp.as_file().metadata()?);
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> Result<Bytes, Bad> {
        super::read(path, &Buffers::new(1 << 20))
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn round_trip_whole_and_in_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ab/entry");
        for len in [0, 1, 1000, BLOCK, 3 * BLOCK + 17] {
            let d = data(len);
            let size = write(dir.path(), &path, &d, std::time::SystemTime::now()).unwrap();
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(size, super::super::file_entry::allocated(&meta));
            assert_eq!(meta.len(), size_on_disk(len as u64));
            assert_eq!(&read(&path).unwrap()[..], &d[..], "{len}");
            let l = len as u64;
            let b = BLOCK as u64;
            for r in [
                0..l,
                0..l.min(1),
                l / 2..l,
                l.saturating_sub(1)..l,
                l.min(b - 1)..l.min(b + 1),
            ] {
                let (got, total) = read_range(&path, r.clone()).unwrap();
                assert_eq!(total, l);
                assert_eq!(
                    &got[..],
                    &d[r.start as usize..r.end as usize],
                    "{len} {r:?}"
                );
            }
            assert!(matches!(read_range(&path, 0..l + 1), Err(Bad::Damaged(_))));
        }
    }

    #[test]
    fn a_table_larger_than_a_page_is_read_in_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry");
        let d = data(1100 * BLOCK);
        write(dir.path(), &path, &d, std::time::SystemTime::now()).unwrap();
        assert!(data_offset(d.len() as u64) > ALIGN);
        let r = 1099 * BLOCK as u64 + 5..1100 * BLOCK as u64;
        assert_eq!(
            &read_range(&path, r.clone()).unwrap().0[..],
            &d[r.start as usize..]
        );
        assert_eq!(read(&path).unwrap().len(), d.len());
    }

    #[test]
    fn damage_is_detected_where_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry");
        let d = data(3 * BLOCK);
        write(dir.path(), &path, &d, std::time::SystemTime::now()).unwrap();
        let mut raw = std::fs::read(&path).unwrap();
        let at = data_offset(d.len() as u64) + 2 * BLOCK + 7;
        raw[at] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        fn mismatch<T>(r: Result<T, Bad>) -> bool {
            matches!(r, Err(Bad::Damaged("checksum mismatch")))
        }
        assert!(mismatch(read(&path)));
        assert!(mismatch(read_range(
            &path,
            2 * BLOCK as u64..2 * BLOCK as u64 + 10
        )));
        // Undamaged blocks of the entry are still served, checked.
        let (ok, _) = read_range(&path, 0..BLOCK as u64 + 10).unwrap();
        assert_eq!(&ok[..], &d[..BLOCK + 10]);
        // A damaged table is caught before any block is trusted.
        raw[at] ^= 1;
        raw[FIXED + 1] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        assert!(mismatch(read(&path)));
        assert!(mismatch(read_range(&path, 0..1)));

        std::fs::write(&path, &raw[..raw.len() - 1]).unwrap();
        assert!(matches!(read(&path), Err(Bad::Damaged("wrong length"))));
        assert!(matches!(
            read_range(&path, 0..1),
            Err(Bad::Damaged("wrong length"))
        ));
        // A length field far past the file is refused before anything is sized by it.
        raw[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &raw).unwrap();
        assert!(matches!(
            read_range(&path, 0..1),
            Err(Bad::Damaged("wrong length"))
        ));
        std::fs::write(&path, b"xx").unwrap();
        assert!(matches!(read(&path), Err(Bad::Damaged(_))));
        assert!(matches!(read_range(&path, 0..1), Err(Bad::Damaged(_))));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(read(&path), Err(Bad::Missing)));
        assert!(matches!(read_range(&path, 0..1), Err(Bad::Missing)));
    }
}
