//! One cache entry on disk: a verified chunk behind a small header.
//!
//! ```text
//! "DSC1"  u32 CRC-32 of the data  u64 data length  data…
//! ```
//!
//! The data was checked against its SHA-256 before it was written, and the entry is named by
//! that hash. Reading checks the length and the CRC (an order of magnitude cheaper than
//! SHA-256), which catches a truncated file or flipped bits on disk; the caller then drops the
//! entry and fetches the chunk again. Entries are written to a temporary file and renamed into
//! place, so a crash leaves either no entry or a whole one.

use bytes::Bytes;
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8; 4] = b"DSC1";
pub const HEADER: usize = 16;

/// Why an entry on disk could not be used.
#[derive(Debug)]
pub enum Bad {
    Missing,
    /// Present but damaged: wrong magic, length or checksum.
    Damaged(&'static str),
    Io(std::io::Error),
}

/// Reads and checks an entry. Blocking.
pub fn read(path: &Path) -> Result<Bytes, Bad> {
    let raw = match std::fs::read(path) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Bad::Missing),
        Err(e) => return Err(Bad::Io(e)),
    };
    if raw.len() < HEADER || &raw[..4] != MAGIC {
        return Err(Bad::Damaged("bad header"));
    }
    let crc = u32::from_le_bytes(raw[4..8].try_into().unwrap_or_default());
    let len = u64::from_le_bytes(raw[8..16].try_into().unwrap_or_default());
    if raw.len() as u64 - HEADER as u64 != len {
        return Err(Bad::Damaged("wrong length"));
    }
    if crc32fast::hash(&raw[HEADER..]) != crc {
        return Err(Bad::Damaged("checksum mismatch"));
    }
    Ok(Bytes::from(raw).slice(HEADER..))
}

/// Writes an entry atomically: a temporary file in `tmp_dir` (same filesystem), then a
/// rename. Blocking. Returns the bytes the entry takes on disk.
pub fn write(tmp_dir: &Path, path: &Path, data: &[u8]) -> std::io::Result<u64> {
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("{}-", std::process::id()))
        .tempfile_in(tmp_dir)?;
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(MAGIC);
    header[4..8].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
    header[8..16].copy_from_slice(&(data.len() as u64).to_le_bytes());
    tmp.write_all(&header)?;
    tmp.write_all(data)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok((HEADER + data.len()) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ab/entry");
        let data = b"some verified chunk".repeat(100);
        assert_eq!(
            write(dir.path(), &path, &data).unwrap(),
            (HEADER + data.len()) as u64
        );
        assert_eq!(&read(&path).unwrap()[..], &data[..]);

        let mut raw = std::fs::read(&path).unwrap();
        raw[HEADER + 7] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        assert!(matches!(
            read(&path),
            Err(Bad::Damaged("checksum mismatch"))
        ));
        std::fs::write(&path, &raw[..raw.len() - 1]).unwrap();
        assert!(matches!(read(&path), Err(Bad::Damaged("wrong length"))));
        std::fs::write(&path, b"xx").unwrap();
        assert!(matches!(read(&path), Err(Bad::Damaged(_))));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(read(&path), Err(Bad::Missing)));
    }
}
