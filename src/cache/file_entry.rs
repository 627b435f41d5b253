//! File entries: the exact bytes of one whole file of a version, and nothing else.
//!
//! A file entry is named by the file's SHA-256 (the manifest's `sha256`), so it is the same
//! for every version and dataset holding that content, and it is laid out as the file itself:
//! the kernel can serve it by FUSE passthrough, reads, `mmap` and page cache alike, with no
//! daemon in the way. A file of one chunk (every small file, and large files under the
//! maximum chunk size) is cached only this way: its one chunk is the whole file, with the same
//! hash. Larger files become file entries once all their chunks are cached
//! (`read::materialize`), checked against the file's SHA-256 as they are written.
//!
//! There is no room for checksums inside the file, so damage is caught in two ways: the size
//! is checked at every open with the mtime seal (an entry torn by a crash, truncated or written
//! over is never served), the SHA-256 whenever the daemon reads a whole entry itself, and by
//! `datastore cache verify`, which drops entries whose bytes have rotted or been changed. Entries are written
//! to a temporary file and renamed into place, so a crash leaves no entry or a whole one.

use super::entry::Bad;
use crate::format::hash::StreamHasher;
use crate::format::Sha256;
use bytes::Bytes;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

/// Bytes a file takes on disk: its allocated blocks.
pub fn allocated(m: &std::fs::Metadata) -> u64 {
    m.blocks() * 512
}

/// A file entry being written, piece by piece, and hashed as it goes.
///
/// Written the ordinary way, through the page cache, unlike chunk entries
/// ([`super::direct`]): a file entry is what passthrough hands the kernel, and the first
/// passthrough read of one written with O_DIRECT ran at 0.35-0.45 of one written this way
/// (1 GiB, page cache dropped, every time; a second read was as fast). Files become entries
/// after they are read, off the reader's path, so the copy costs no reader anything.
pub struct Writer {
    tmp: tempfile::NamedTempFile,
    hasher: StreamHasher,
    len: u64,
}

impl Writer {
    /// A new temporary file in `tmp_dir` (on the cache's filesystem). Blocking.
    pub fn new(tmp_dir: &Path) -> std::io::Result<Writer> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .tempfile_in(tmp_dir)?;
        Ok(Writer {
            tmp,
            hasher: StreamHasher::default(),
            len: 0,
        })
    }

    /// Appends the next bytes of the file. Blocking.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.hasher.update(data);
        self.len += data.len() as u64;
        self.tmp.write_all(data)
    }

    /// Puts the entry in place at `path` if what was written is `len` bytes hashing to `hash`,
    /// with mtime `mtime`, and returns the bytes it takes on disk; anything else is an error
    /// and leaves nothing. Blocking.
    pub fn finish(
        self,
        path: &Path,
        hash: &Sha256,
        len: u64,
        mtime: SystemTime,
    ) -> std::io::Result<u64> {
        if self.len != len || self.hasher.finish() != *hash {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the pieces of {hash} do not hash to it"),
            ));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        self.tmp.as_file().set_modified(mtime)?;
        let size = allocated(&self.tmp.as_file().metadata()?);
        self.tmp.persist(path).map_err(|e| e.error)?;
        Ok(size)
    }
}

/// Writes verified bytes as a file entry with mtime `mtime`. Blocking.
pub fn write(
    tmp_dir: &Path,
    path: &Path,
    hash: &Sha256,
    data: &[u8],
    mtime: SystemTime,
) -> std::io::Result<u64> {
    let mut w = Writer::new(tmp_dir)?;
    w.write(data)?;
    w.finish(path, hash, data.len() as u64, mtime)
}

/// Reads a whole entry and checks it against its SHA-256. Blocking.
pub fn read(path: &Path, hash: &Sha256) -> Result<Bytes, Bad> {
    let data = crate::buffers::shared().read_file(path)?;
    if Sha256::of(&data) != *hash {
        return Err(Bad::Damaged("SHA-256 mismatch"));
    }
    Ok(data)
}

/// Bytes `range` of an entry of `len` bytes, after the checks of [`open`]: what the kernel
/// would read from it by passthrough, for a handle that was opened before the file was whole
/// in the cache. Blocking.
pub fn read_range(
    path: &Path,
    hash: &Sha256,
    len: u64,
    sealed: bool,
    range: std::ops::Range<u64>,
) -> Result<Bytes, Bad> {
    if range.start > range.end || range.end > len {
        return Err(Bad::Damaged("range past the end"));
    }
    let file = open(path, hash, len, sealed)?;
    let size = (range.end - range.start) as usize;
    Ok(crate::buffers::shared().read_at(&file, range.start, size)?)
}

/// Opens an entry for the kernel to serve, if it holds `len` bytes and, where `sealed` says
/// seals are kept, its mtime still carries the seal for `hash` ([`super::seal`]). Blocking.
pub fn open(path: &Path, hash: &Sha256, len: u64, sealed: bool) -> Result<std::fs::File, Bad> {
    let file = std::fs::File::open(path)?;
    check(&file, hash, len, sealed)?;
    Ok(file)
}

/// The checks of [`open`], on a file already open. Blocking (one fstat).
pub fn check(file: &std::fs::File, hash: &Sha256, len: u64, sealed: bool) -> Result<(), Bad> {
    let meta = file.metadata()?;
    if meta.len() != len {
        return Err(Bad::Damaged("wrong length"));
    }
    if sealed && !super::seal::holds(hash, meta.modified()?) {
        return Err(Bad::Damaged("changed since it was cached"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_the_file_itself_and_wrong_pieces_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ab/entry");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let hash = Sha256::of(&data);
        let mut w = Writer::new(dir.path()).unwrap();
        w.write(&data[..3000]).unwrap();
        w.write(&data[3000..]).unwrap();
        let sealed = super::super::seal::at(&hash, SystemTime::now());
        let size = w.finish(&path, &hash, data.len() as u64, sealed).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data, "exactly the file");
        assert!(size >= data.len() as u64);
        assert_eq!(&read(&path, &hash).unwrap()[..], &data[..]);
        let len = data.len() as u64;
        assert!(open(&path, &hash, len, true).is_ok());
        assert!(matches!(open(&path, &hash, 1, true), Err(Bad::Damaged(_))));

        let other = dir.path().join("ab/other");
        let e = write(dir.path(), &other, &hash, &data[1..], sealed).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(!other.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "no temporary left: {left:?}");

        let mut bad = data.clone();
        bad[5000] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(read(&path, &hash), Err(Bad::Damaged(_))));
        // Written over: caught at open by its mtime, though the size is right.
        assert!(matches!(
            open(&path, &hash, len, true),
            Err(Bad::Damaged(_))
        ));
        assert!(
            open(&path, &hash, len, false).is_ok(),
            "size alone cannot see it"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(read(&path, &hash), Err(Bad::Missing)));
        assert!(matches!(open(&path, &hash, 1, true), Err(Bad::Missing)));
    }
}
