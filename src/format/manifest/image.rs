//! A manifest's image: its decoded tables as they lie in memory, written to a file on the node
//! that decoded it, so that a later mount of the version maps the file instead of fetching
//! and decoding the manifest again (1M entries: about 240 ms of decoding, plus the fetch,
//! against a few milliseconds to map and check an image).
//!
//! Unlike the rest of this module, an image never leaves the node: it is this build's memory
//! layout (`#[repr(C)]` tables, native byte order), so its header records the layout and a
//! reader from another build or machine refuses it and decodes the manifest instead. It is
//! written only from a manifest that was verified against its SHA-256 and validated, and a
//! CRC-32 over everything after the header, checked on every open, catches damage on disk;
//! with both, the tables are exactly the values that were written, which is what makes
//! reading them in place sound.
//!
//! Layout: a [`HEADER_LEN`]-byte header, then the tables in the header's order, each at an
//! offset that is a multiple of [`ALIGN`]. The source objects of an imported version are the
//! one table not kept in memory layout (its optional fields have no defined layout): they are
//! stored bincode-encoded and decoded on open.

use super::table::{Mapping, Table};
use super::{ChunkRef, Entry, Manifest, SourceObject, Span, CONFIG};
use crate::format::Sha256;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"DSMI";
/// Bumped whenever a mapped type changes, besides the sizes the header also checks.
const IMAGE_VERSION: u32 = 1;
/// Written as a native `u32`: a reader of the other byte order sees it reversed.
const BYTE_ORDER: u32 = 0x0102_0304;
const TABLES: usize = 6;
pub const HEADER_LEN: usize = 4 + 4 + 4 + 4 * LAYOUT_FIELDS + 16 * TABLES + 4 + 4;
const LAYOUT_FIELDS: usize = 6;
/// Every table starts at a multiple of this (at least the alignment of any mapped type).
pub const ALIGN: usize = 64;

/// The sizes and alignments an image's tables were written with.
fn layout() -> [u32; LAYOUT_FIELDS] {
    use std::mem::{align_of, size_of};
    [
        size_of::<Entry>() as u32,
        align_of::<Entry>() as u32,
        size_of::<ChunkRef>() as u32,
        align_of::<ChunkRef>() as u32,
        size_of::<Sha256>() as u32,
        size_of::<Span>() as u32,
    ]
}

/// Why an image cannot be used (the manifest is then decoded from the store, as on a first
/// mount).
#[derive(Debug, thiserror::Error)]
pub enum ImageFault {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("written by another build of datastore or machine")]
    Foreign,
    #[error("damaged: {0}")]
    Damaged(&'static str),
}

/// At least the bytes the image of `m` takes: the room to claim before writing it.
pub fn len_bound(m: &Manifest) -> u64 {
    // The encoded source object is at most its fields' widths plus a byte per varint.
    let objects = m.objects.len() * (std::mem::size_of::<SourceObject>() + 8);
    let tables = std::mem::size_of_val(&m.entries[..])
        + std::mem::size_of_val(&m.chunks[..])
        + std::mem::size_of_val(&m.packs[..])
        + m.strings.len()
        + std::mem::size_of_val(&m.sources[..])
        + objects;
    (HEADER_LEN + tables + ALIGN * TABLES) as u64
}

/// Writes `m` as an image to `file`, from its start; `file` must be empty, readable and
/// writable. Returns the bytes written. Blocking.
pub fn write(m: &Manifest, file: &mut std::fs::File) -> std::io::Result<u64> {
    let objects = bincode::encode_to_vec(&m.objects[..], CONFIG).expect("encode to memory");
    let mut at = HEADER_LEN as u64;
    let mut tables = [(0u64, 0u64); TABLES];
    file.seek(SeekFrom::Start(at))?;
    let raw: [(*const u8, usize, usize); TABLES] = [
        raw_parts(&m.entries),
        raw_parts(&m.chunks),
        raw_parts(&m.packs),
        raw_parts(&m.strings),
        raw_parts(&m.sources),
        (objects.as_ptr(), objects.len(), objects.len()),
    ];
    for (slot, (ptr, bytes, count)) in tables.iter_mut().zip(raw) {
        let pad = at.next_multiple_of(ALIGN as u64) - at;
        file.write_all(&[0u8; ALIGN][..pad as usize])?;
        at += pad;
        *slot = (at, count as u64);
        write_raw(file, ptr, bytes)?;
        at += bytes as u64;
    }
    // The checksum is taken over the file as written, not over the tables in memory, whose
    // padding bytes are not values a program may read; read back in pieces rather than
    // mapped, so that the writer's resident memory does not grow by the image.
    let crc = crc_from(file, HEADER_LEN as u64)?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&IMAGE_VERSION.to_le_bytes());
    header.extend_from_slice(&BYTE_ORDER.to_ne_bytes());
    for v in layout() {
        header.extend_from_slice(&v.to_le_bytes());
    }
    for (offset, count) in tables {
        header.extend_from_slice(&offset.to_le_bytes());
        header.extend_from_slice(&count.to_le_bytes());
    }
    header.extend_from_slice(&crc.to_le_bytes());
    let own = crc32(&header);
    header.extend_from_slice(&own.to_le_bytes());
    debug_assert_eq!(header.len(), HEADER_LEN);
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&header)?;
    Ok(at)
}

/// Opens an image: checks its header and checksum, then maps its tables in place. Blocking;
/// reads every page of the file once (for the checksum), which the page cache then keeps.
pub fn open(file: &std::fs::File) -> Result<Manifest, ImageFault> {
    if file.metadata()?.len() < HEADER_LEN as u64 {
        return Err(ImageFault::Damaged("no image header"));
    }
    let map = Arc::new(Mapping::of(file)?);
    let bytes = map.bytes();
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
        return Err(ImageFault::Damaged("no image header"));
    }
    let mut words = bytes[4..HEADER_LEN - 8]
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")));
    let own = u32::from_le_bytes(bytes[HEADER_LEN - 4..HEADER_LEN].try_into().expect("4"));
    if crc32(&bytes[..HEADER_LEN - 4]) != own {
        return Err(ImageFault::Damaged("header checksum mismatch"));
    }
    let version = words.next();
    let order = u32::from_ne_bytes(bytes[8..12].try_into().expect("4 bytes"));
    words.next();
    let found: Vec<u32> = words.by_ref().take(LAYOUT_FIELDS).collect();
    if version != Some(IMAGE_VERSION) || order != BYTE_ORDER || found != layout() {
        return Err(ImageFault::Foreign);
    }
    let at = 12 + 4 * LAYOUT_FIELDS;
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let tables: Vec<(usize, usize)> = (0..TABLES)
        .map(|t| (u64_at(at + 16 * t), u64_at(at + 16 * t + 8)))
        .map(|(o, n)| {
            (
                usize::try_from(o).unwrap_or(usize::MAX),
                usize::try_from(n).unwrap_or(usize::MAX),
            )
        })
        .collect();
    let crc_at = at + 16 * TABLES;
    let crc = u32::from_le_bytes(bytes[crc_at..crc_at + 4].try_into().expect("4 bytes"));
    if crc32(&bytes[HEADER_LEN..]) != crc {
        return Err(ImageFault::Damaged("checksum mismatch"));
    }
    let bad = || ImageFault::Damaged("a table lies outside the file");
    // SAFETY: the header says this build wrote these tables (layout and byte order match),
    // and the checksum says the bytes are the ones it wrote, from valid values of each type.
    let m = unsafe {
        let (objects_at, objects_len) = tables[5];
        let objects = bytes
            .get(objects_at..objects_at.saturating_add(objects_len))
            .ok_or_else(bad)?;
        let (objects, _): (Vec<SourceObject>, usize) = bincode::decode_from_slice(objects, CONFIG)
            .map_err(|_| ImageFault::Damaged("unreadable source objects"))?;
        Manifest {
            entries: Table::mapped(map.clone(), tables[0].0, tables[0].1).ok_or_else(bad)?,
            chunks: Table::mapped(map.clone(), tables[1].0, tables[1].1).ok_or_else(bad)?,
            packs: Table::mapped(map.clone(), tables[2].0, tables[2].1).ok_or_else(bad)?,
            strings: Table::mapped(map.clone(), tables[3].0, tables[3].1).ok_or_else(bad)?,
            sources: Table::mapped(map.clone(), tables[4].0, tables[4].1).ok_or_else(bad)?,
            objects: objects.into(),
        }
    };
    debug_assert!(m.validate().is_ok(), "an image holds a validated manifest");
    Ok(m)
}

/// The start, byte length and count of a table's values.
fn raw_parts<T>(t: &[T]) -> (*const u8, usize, usize) {
    (t.as_ptr() as *const u8, std::mem::size_of_val(t), t.len())
}

/// Writes `len` bytes of memory from `ptr` with write(2): the memory of `#[repr(C)]` values
/// holds padding, which the kernel copies but a Rust program may not read as bytes.
fn write_raw(file: &std::fs::File, mut ptr: *const u8, mut len: usize) -> std::io::Result<()> {
    while len > 0 {
        // SAFETY: `ptr..ptr+len` is memory of live values borrowed by the caller.
        let n = unsafe { libc::write(file.as_raw_fd(), ptr as *const libc::c_void, len) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        // SAFETY: `n <= len` bytes were written, so the rest is still inside the values.
        ptr = unsafe { ptr.add(n as usize) };
        len -= n as usize;
    }
    Ok(())
}

/// The CRC-32 of `file` from byte `start` to its end.
fn crc_from(file: &std::fs::File, start: u64) -> std::io::Result<u32> {
    use std::os::unix::fs::FileExt;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = start;
    loop {
        match file.read_at(&mut buf, at) {
            Ok(0) => return Ok(hasher.finalize()),
            Ok(n) => {
                hasher.update(&buf[..n]);
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::tests::{build, imported};

    fn sample() -> Manifest {
        imported(build(&[
            "a/b/c.bin",
            "a/d/",
            "e.txt",
            "link->a/b/c.bin",
            "z",
        ]))
    }

    fn written(m: &Manifest) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        write(m, f.as_file_mut()).unwrap();
        f
    }

    #[test]
    fn an_image_opens_as_the_manifest_it_was_written_from_with_its_tables_mapped() {
        let m = sample();
        assert!(m.is_external(), "the sample has every table");
        let f = written(&m);
        let back = open(f.as_file()).unwrap();
        assert_eq!(back, m);
        assert!(back.entries.is_mapped() && back.chunks.is_mapped() && back.strings.is_mapped());
        back.validate().unwrap();
        // Changing a mapped table copies it and leaves the file alone.
        let mut changed = back.clone();
        changed.entries[0].mode = 0o700;
        assert!(!changed.entries.is_mapped());
        assert_eq!(open(f.as_file()).unwrap(), m);
    }

    #[test]
    fn a_damaged_truncated_or_foreign_image_is_refused() {
        let m = sample();
        let f = written(&m);
        let good = std::fs::read(f.path()).unwrap();
        let refused = |bytes: &[u8]| {
            let mut t = tempfile::NamedTempFile::new().unwrap();
            t.write_all(bytes).unwrap();
            open(t.as_file()).unwrap_err()
        };
        for at in [
            0,
            5,
            HEADER_LEN - 1,
            HEADER_LEN + 3,
            good.len() / 2,
            good.len() - 1,
        ] {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            assert!(
                matches!(refused(&bad), ImageFault::Damaged(_)),
                "byte {at} flipped"
            );
        }
        for len in [0, 10, HEADER_LEN, good.len() - 1] {
            assert!(
                matches!(refused(&good[..len]), ImageFault::Damaged(_)),
                "{len} bytes"
            );
        }
        // Another layout, with a header that is otherwise whole.
        let mut other = good.clone();
        other[12] ^= 8;
        let own = crc32(&other[..HEADER_LEN - 4]);
        other[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&own.to_le_bytes());
        assert!(matches!(refused(&other), ImageFault::Foreign));
    }

    #[test]
    fn the_mapped_layout_is_the_one_this_image_version_names() {
        // A change of a mapped type must bump IMAGE_VERSION as well as change this figure.
        assert_eq!(layout(), [88, 8, 72, 8, 32, 8], "bump IMAGE_VERSION");
    }
}
