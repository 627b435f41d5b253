//! Reading one file: hashing it, and cutting a large one into content-defined chunks.
//!
//! A file is opened without following symlinks and must look the same after reading as when
//! it was scanned (same inode, size, mtime and ctime, and exactly `size` bytes read), so a
//! version never holds a file that was being written while it was pushed.

use super::walk::{FileToRead, Stamp};
use super::PushError;
use crate::format::hash::StreamHasher;
use crate::format::Sha256;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

/// Files smaller than this are packed together; larger ones are chunked.
pub const SMALL_FILE: u64 = 1 << 20;
/// Content-defined chunk sizes: an edit re-uploads only the few chunks around it.
pub const CHUNK_MIN: u32 = 1 << 20;
pub const CHUNK_AVG: u32 = 4 << 20;
pub const CHUNK_MAX: u32 = 16 << 20;

/// Opens a scanned file, refusing a symlink that replaced it since the scan.
fn open(f: &FileToRead) -> Result<File, PushError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&f.path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PushError::Vanished(f.path.clone()),
            _ if e.raw_os_error() == Some(libc::ELOOP) => PushError::Changed(f.path.clone()),
            _ => PushError::read(&f.path, e),
        })
}

fn check_unchanged(file: &File, f: &FileToRead, bytes_read: u64) -> Result<(), PushError> {
    let now = file.metadata().map_err(|e| PushError::read(&f.path, e))?;
    if Stamp::of(&now) != f.stamp || bytes_read != f.stamp.size {
        return Err(PushError::Changed(f.path.clone()));
    }
    Ok(())
}

/// Reads a small file whole. Blocking.
pub fn read_small(f: &FileToRead) -> Result<(Sha256, Vec<u8>), PushError> {
    let mut file = open(f)?;
    let mut data = Vec::with_capacity(f.stamp.size as usize);
    // Read one byte past the scanned size so that a file that grew is noticed.
    (&mut file)
        .take(f.stamp.size + 1)
        .read_to_end(&mut data)
        .map_err(|e| PushError::read(&f.path, e))?;
    check_unchanged(&file, f, data.len() as u64)?;
    Ok((Sha256::of(&data), data))
}

/// One chunk of a large file, handed to the uploader as it is cut.
pub struct Chunk {
    pub hash: Sha256,
    pub file_offset: u64,
    pub data: Vec<u8>,
}

/// Streams a large file through FastCDC, handing each chunk to `sink`; returns the whole-file
/// digest. Blocking; memory stays at about one maximum chunk plus what `sink` keeps.
pub fn read_chunked(
    f: &FileToRead,
    sink: impl FnMut(Chunk) -> Result<(), PushError>,
) -> Result<Sha256, PushError> {
    let file = open(f)?;
    let (sha, len) = cut(&file, |io| PushError::read(&f.path, io), sink)?;
    check_unchanged(&file, f, len)?;
    Ok(sha)
}

/// Cuts what `reader` yields into content-defined chunks, handing each to `sink`; returns
/// the digest of all of it and its length. `failed` words a read error. Blocking.
pub fn cut(
    reader: impl Read,
    failed: impl Fn(std::io::Error) -> PushError,
    mut sink: impl FnMut(Chunk) -> Result<(), PushError>,
) -> Result<(Sha256, u64), PushError> {
    let mut whole = StreamHasher::default();
    let mut offset = 0u64;
    let cdc = fastcdc::v2020::StreamCDC::new(reader, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX);
    for chunk in cdc {
        let chunk = chunk.map_err(|e| match e {
            fastcdc::v2020::Error::IoError(io) => failed(io),
            other => failed(std::io::Error::other(other.to_string())),
        })?;
        whole.update(&chunk.data);
        let len = chunk.data.len() as u64;
        sink(Chunk {
            hash: Sha256::of(&chunk.data),
            file_offset: offset,
            data: chunk.data,
        })?;
        offset += len;
    }
    Ok((whole.finish(), offset))
}
