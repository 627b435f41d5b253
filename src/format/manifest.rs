//! The manifest of one version: every entry of the tree and where each byte of each file lives.
//!
//! Layout, chosen so that a mount needs no index building after decoding:
//! - entries are in breadth-first order and the children of a directory are one contiguous run,
//!   sorted by name bytes; entry 0 is the root. An entry's index is its inode number minus one,
//!   a lookup is a binary search in the parent's run, and readdir is a slice.
//! - names and symlink targets are raw bytes in one `strings` blob (lossless for any Unix name,
//!   valid UTF-8 or not), so decoding allocates a handful of vectors, not one string per entry.
//! - chunks are one flat table; a file owns a contiguous run of it, in file order.
//!
//! The big arrays are decoded element by element with capacity bounded by the input size, so
//! no length field can make the decoder allocate more than the bytes it was given.

use super::envelope::{self, Kind};
use super::hash::Sha256;
use super::FormatError;
use bincode::config::{self, Configuration};
use bincode::{Decode, Encode};

/// The largest decompressed manifest body accepted (about 20 million entries).
pub const MAX_MANIFEST_BODY: u64 = 4 << 30;
/// Longest name component, as on Linux (NAME_MAX).
pub const MAX_NAME_LEN: usize = 255;
/// Longest symlink target, as on Linux (PATH_MAX).
pub const MAX_TARGET_LEN: usize = 4096;
/// Deepest entry, in levels below the root. A path 1,024 levels deep takes at least 2 KiB
/// (a byte a name and its slash): half of what Linux takes in one call (PATH_MAX, 4 KiB),
/// the rest left for where the tree is pushed from, mounted or got to. A deeper tree cannot
/// be named by paths at all, so ordinary tools cannot read or write it, and no dataset needs
/// it; past it, a hostile manifest could only make every walk of it costly.
pub const MAX_DEPTH: usize = 1024;

/// A byte range inside [`Manifest::strings`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
#[repr(C)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

/// A run of consecutive indices in one of the manifest's tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
#[repr(C)]
pub struct Run {
    pub start: u32,
    pub len: u32,
}

impl Run {
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Encode, Decode)]
#[repr(C)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

/// What an entry is, with what only that kind has.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[repr(C)]
pub enum EntryKind {
    /// A directory; `children` indexes [`Manifest::entries`].
    Dir { children: Run },
    /// A regular file; `chunks` indexes [`Manifest::chunks`], `sha256` is the whole file's digest.
    File {
        size: u64,
        sha256: Sha256,
        chunks: Run,
    },
    /// A symbolic link, stored and served as a link and never followed.
    Symlink { target: Span },
}

/// One file, directory or symlink of the pushed tree.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
#[repr(C)]
pub struct Entry {
    /// Index of the parent directory; the root is its own parent.
    pub parent: u32,
    pub name: Span,
    /// Permission bits (`0o7777` at most); the kind gives the file type.
    pub mode: u32,
    pub mtime: Timestamp,
    pub kind: EntryKind,
}

/// Where a chunk's bytes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
#[repr(C)]
pub enum Location {
    /// Its own object, `blobs/<hash>`.
    Blob,
    /// A byte range of a pack object; `pack` indexes [`Manifest::packs`].
    Pack { pack: u32, offset: u64 },
    /// Bytes `file_offset..file_offset + len` of an object outside the store, read in place
    /// (an imported version); `object` indexes [`Manifest::objects`]. Format version 2.
    External { object: u32 },
}

/// An object outside the store that an imported version reads where it is. Its text fields
/// are spans of [`Manifest::strings`], as names are, so that decoding allocates nothing a
/// length field claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SourceObject {
    /// Index into [`Manifest::sources`].
    pub source: u32,
    /// Its key below the source URL.
    pub key: Span,
    pub size: u64,
    /// The ETag it had when imported: reads ask for that ETag, so a changed object is refused
    /// by the store itself (its bytes are still checked against their SHA-256).
    pub etag: Option<Span>,
    /// Its version id, in a versioned bucket: reads ask for that version, which never changes.
    pub version: Option<Span>,
}

/// A piece of a file: its digest, its place in the file, and where to fetch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
#[repr(C)]
pub struct ChunkRef {
    pub hash: Sha256,
    /// Offset of the chunk's first byte in the file.
    pub file_offset: u64,
    pub len: u32,
    pub location: Location,
}

/// A decoded, validated manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub entries: Table<Entry>,
    pub chunks: Table<ChunkRef>,
    pub packs: Table<Sha256>,
    pub strings: Table<u8>,
    /// URLs of the stores an imported version reads objects from (spans of `strings`).
    pub sources: Table<Span>,
    /// The objects [`Location::External`] chunks are read from.
    pub objects: Table<SourceObject>,
}

/// A chunk as encoded: the hash is left out when it equals the digest of the single-chunk file
/// that owns it (most files), which halves the size of manifests of small files.
#[derive(Encode, Decode)]
struct StoredChunk {
    hash: Option<Sha256>,
    file_offset: u64,
    len: u32,
    location: Location,
}

#[derive(Encode, Decode)]
struct Counts {
    entries: u64,
    chunks: u64,
    packs: u64,
    strings: u64,
}

/// What format version 2 adds after the chunks: the tables of an imported version.
#[derive(Encode, Decode)]
struct ExternalCounts {
    sources: u64,
    objects: u64,
}

const CONFIG: Configuration = config::standard();

impl Manifest {
    /// The bytes of a name or symlink target.
    pub fn string(&self, span: Span) -> &[u8] {
        &self.strings[span.start as usize..span.start as usize + span.len as usize]
    }

    /// A text field of the source tables, UTF-8 by validation.
    pub fn text(&self, span: Span) -> &str {
        std::str::from_utf8(self.string(span)).unwrap_or_default()
    }

    /// Whether the version reads objects outside the store (it was imported in place).
    pub fn is_external(&self) -> bool {
        !self.objects.is_empty()
    }

    /// Serializes and compresses the manifest into the bytes that are stored.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.entries.len() * 48 + self.strings.len());
        let counts = Counts {
            entries: self.entries.len() as u64,
            chunks: self.chunks.len() as u64,
            packs: self.packs.len() as u64,
            strings: self.strings.len() as u64,
        };
        bincode::encode_into_std_write(&counts, &mut body, CONFIG).expect("encode to memory");
        body.extend_from_slice(&self.strings);
        for p in &self.packs {
            body.extend_from_slice(&p.0);
        }
        for e in &self.entries {
            bincode::encode_into_std_write(e, &mut body, CONFIG).expect("encode to memory");
        }
        let mut implied = vec![false; self.chunks.len()];
        for e in &self.entries {
            if let EntryKind::File { sha256, chunks, .. } = &e.kind {
                let i = chunks.start as usize;
                if chunks.len == 1 && self.chunks.get(i).is_some_and(|c| c.hash == *sha256) {
                    implied[i] = true;
                }
            }
        }
        for (c, implied) in self.chunks.iter().zip(implied) {
            let stored = StoredChunk {
                hash: (!implied).then_some(c.hash),
                file_offset: c.file_offset,
                len: c.len,
                location: c.location,
            };
            bincode::encode_into_std_write(stored, &mut body, CONFIG).expect("encode to memory");
        }
        // Version 1 unless the version references objects outside the store, so that older
        // datastores read every manifest they can.
        if self.sources.is_empty() && self.objects.is_empty() {
            return envelope::seal(Kind::Manifest, &body, true);
        }
        let counts = ExternalCounts {
            sources: self.sources.len() as u64,
            objects: self.objects.len() as u64,
        };
        bincode::encode_into_std_write(&counts, &mut body, CONFIG).expect("encode to memory");
        for s in &self.sources {
            bincode::encode_into_std_write(s, &mut body, CONFIG).expect("encode to memory");
        }
        for o in &self.objects {
            bincode::encode_into_std_write(o, &mut body, CONFIG).expect("encode to memory");
        }
        envelope::seal_as(Kind::Manifest, 2, &body, true)
    }

    /// Decodes stored bytes and validates every invariant the mount relies on.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, FormatError> {
        let (version, body) = envelope::open_versioned(Kind::Manifest, bytes, MAX_MANIFEST_BODY)?;
        let mut cur = Cursor { buf: &body, pos: 0 };
        let counts: Counts = cur.item()?;
        let strings = cur.bytes(counts.strings)?.to_vec();
        let mut packs = Vec::with_capacity(cur.capacity(counts.packs, 32));
        for _ in 0..counts.packs {
            let raw = cur.bytes(32)?;
            packs.push(Sha256(raw.try_into().expect("32 bytes")));
        }
        // The smallest encoded entry is 8 bytes, the smallest chunk 4.
        let mut entries: Vec<Entry> = Vec::with_capacity(cur.capacity(counts.entries, 8));
        for _ in 0..counts.entries {
            entries.push(cur.item()?);
        }
        let mut stored: Vec<StoredChunk> = Vec::with_capacity(cur.capacity(counts.chunks, 4));
        for _ in 0..counts.chunks {
            stored.push(cur.item()?);
        }
        let (mut sources, mut objects) = (Vec::new(), Vec::new());
        if version >= 2 {
            let counts: ExternalCounts = cur.item()?;
            sources.reserve(cur.capacity(counts.sources, 2));
            for _ in 0..counts.sources {
                sources.push(cur.item()?);
            }
            objects.reserve(cur.capacity(counts.objects, 5));
            for _ in 0..counts.objects {
                objects.push(cur.item()?);
            }
        }
        if cur.pos != body.len() {
            return Err(corrupt("trailing bytes after the last chunk"));
        }
        let mut hashes: Vec<Option<Sha256>> = stored.iter().map(|c| c.hash).collect();
        for e in &entries {
            if let EntryKind::File { sha256, chunks, .. } = &e.kind {
                if chunks.len == 1 {
                    if let Some(h @ None) = hashes.get_mut(chunks.start as usize) {
                        *h = Some(*sha256);
                    }
                }
            }
        }
        let chunks = stored
            .into_iter()
            .zip(hashes)
            .map(|(c, h)| {
                Ok(ChunkRef {
                    hash: h.ok_or_else(|| corrupt("a chunk has no hash"))?,
                    file_offset: c.file_offset,
                    len: c.len,
                    location: c.location,
                })
            })
            .collect::<Result<Vec<_>, FormatError>>()?;
        let m = Manifest {
            entries: entries.into(),
            chunks: chunks.into(),
            packs: packs.into(),
            strings: strings.into(),
            sources: sources.into(),
            objects: objects.into(),
        };
        m.validate()?;
        Ok(m)
    }

    /// Checks that the manifest is a well-formed tree that cannot name anything outside itself.
    pub fn validate(&self) -> Result<(), FormatError> {
        let n = self.entries.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(corrupt("no root entry"));
        }
        let root = &self.entries[0];
        if root.parent != 0 || root.name.len != 0 || !matches!(root.kind, EntryKind::Dir { .. }) {
            return Err(corrupt("entry 0 is not the root directory"));
        }
        // Each entry's own fields first, so that the tree checks below only ever compare names
        // already known to be short: comparing unchecked spans of a huge string table would
        // cost the length of the table per comparison.
        for (i, e) in self.entries.iter().enumerate() {
            self.check_span(e.name)?;
            if e.mode & !0o7777 != 0 {
                return Err(corrupt(format!("entry {i} has mode bits outside 0o7777")));
            }
            // Readers turn mtimes into system times, where a carry out of the nanoseconds can
            // overflow (a panic) at the edge of the range; no clock produces such a value.
            if e.mtime.nanos >= 1_000_000_000 {
                return Err(corrupt(format!(
                    "entry {i} has an mtime of {} nanoseconds",
                    e.mtime.nanos
                )));
            }
            if i > 0 {
                let name = self.string(e.name);
                check_name(name).map_err(|why| corrupt(format!("entry {i}: {why}")))?;
            }
            if let EntryKind::Symlink { target } = &e.kind {
                self.check_span(*target)?;
                let t = self.string(*target);
                if t.is_empty() || t.len() > MAX_TARGET_LEN || t.contains(&0) {
                    return Err(corrupt(format!("entry {i} has an invalid symlink target")));
                }
            }
        }
        self.check_sources()?;
        // One bit per chunk: which chunks a file already owns.
        let mut owned = vec![0u64; self.chunks.len().div_ceil(64)];
        // Each entry's depth, known from its parent's, which comes first.
        let mut depth = vec![0u16; n];
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                let p = e.parent as usize;
                if p >= i {
                    return Err(corrupt(format!("entry {i} comes before its parent")));
                }
                depth[i] = depth[p] + 1;
                if depth[i] as usize > MAX_DEPTH {
                    return Err(corrupt(format!(
                        "entry {i} is deeper than {MAX_DEPTH} levels"
                    )));
                }
                match &self.entries[p].kind {
                    EntryKind::Dir { children } if children.range().contains(&i) => {}
                    _ => return Err(corrupt(format!("entry {i} is not listed by its parent"))),
                }
            }
            match &e.kind {
                EntryKind::Dir { children } => self.check_children(i, *children)?,
                EntryKind::File { size, chunks, .. } => {
                    self.check_chunks(i, *size, *chunks, &mut owned)?
                }
                EntryKind::Symlink { .. } => {}
            }
        }
        // Only once the tree is known to be well formed can targets be walked through it.
        if let Some((i, fault)) = self.escaping_link() {
            return Err(corrupt(format!(
                "symlink {} leads outside the dataset ({})",
                self.link_path(i),
                fault.why()
            )));
        }
        Ok(())
    }

    /// The source tables of an imported version: every text a span of valid UTF-8, every key
    /// non-empty, every object in a listed source.
    fn check_sources(&self) -> Result<(), FormatError> {
        let text = |s: Span, what: &str| -> Result<(), FormatError> {
            self.check_span(s)?;
            match std::str::from_utf8(self.string(s)) {
                Ok(t) if !t.is_empty() => Ok(()),
                _ => Err(corrupt(format!("a source {what} is empty or not UTF-8"))),
            }
        };
        for &s in &self.sources {
            text(s, "URL")?;
        }
        for o in &self.objects {
            if o.source as usize >= self.sources.len() {
                return Err(corrupt(
                    "a source object names a source that does not exist",
                ));
            }
            text(o.key, "key")?;
            for s in [o.etag, o.version].into_iter().flatten() {
                text(s, "ETag or version")?;
            }
        }
        Ok(())
    }

    fn check_span(&self, s: Span) -> Result<(), FormatError> {
        match (s.start as usize).checked_add(s.len as usize) {
            Some(end) if end <= self.strings.len() => Ok(()),
            _ => Err(corrupt("a name points outside the string table")),
        }
    }

    fn check_children(&self, dir: usize, run: Run) -> Result<(), FormatError> {
        if run.len == 0 {
            return Ok(());
        }
        let end = run.start as usize + run.len as usize;
        if (run.start as usize) <= dir || end > self.entries.len() {
            return Err(corrupt(format!(
                "directory {dir} has children out of range"
            )));
        }
        let mut prev: Option<&[u8]> = None;
        for c in run.range() {
            let child = &self.entries[c];
            if child.parent as usize != dir {
                return Err(corrupt(format!(
                    "entry {c} is listed by a directory that is not its parent"
                )));
            }
            self.check_span(child.name)?;
            let name = self.string(child.name);
            if prev.is_some_and(|p| p >= name) {
                return Err(corrupt(format!(
                    "directory {dir} has duplicate or unsorted names"
                )));
            }
            prev = Some(name);
        }
        Ok(())
    }

    /// Checks that a file's chunks tile it and that no other file owns any of them (`owned`):
    /// a chunk shared by two files would make validation cost files × chunks, the sum of file
    /// sizes overflow, and the encoding ambiguous (a hash left implied by one file would be
    /// filled in from the other on decode).
    fn check_chunks(
        &self,
        file: usize,
        size: u64,
        run: Run,
        owned: &mut [u64],
    ) -> Result<(), FormatError> {
        let end = run.start as usize + run.len as usize;
        if end > self.chunks.len() {
            return Err(corrupt(format!("file {file} has chunks out of range")));
        }
        let mut offset = 0u64;
        for (k, c) in run.range().zip(&self.chunks[run.range()]) {
            let (word, bit) = (k / 64, 1u64 << (k % 64));
            if owned[word] & bit != 0 {
                return Err(corrupt(format!(
                    "file {file} shares chunk {k} with another file"
                )));
            }
            owned[word] |= bit;
            if c.file_offset != offset || c.len == 0 {
                return Err(corrupt(format!(
                    "file {file} has a gap or overlap in its chunks"
                )));
            }
            match c.location {
                Location::Pack { pack, offset: po } => {
                    if pack as usize >= self.packs.len() || po.checked_add(c.len as u64).is_none() {
                        return Err(corrupt(format!(
                            "file {file} points at a pack that does not exist"
                        )));
                    }
                }
                Location::External { object } => match self.objects.get(object as usize) {
                    Some(o)
                        if offset
                            .checked_add(c.len as u64)
                            .is_some_and(|e| e <= o.size) => {}
                    Some(_) => {
                        return Err(corrupt(format!(
                            "file {file} reads past the end of its source object"
                        )))
                    }
                    None => {
                        return Err(corrupt(format!(
                            "file {file} points at a source object that does not exist"
                        )))
                    }
                },
                Location::Blob => {}
            }
            offset += c.len as u64;
        }
        if offset != size {
            return Err(corrupt(format!(
                "file {file} has chunks totalling {offset} bytes but a size of {size}"
            )));
        }
        Ok(())
    }
}

/// Why a name component cannot appear in a tree; `Ok` for every name a Unix directory can hold.
pub fn check_name(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("empty name")
    } else if name == b"." || name == b".." {
        Err("name is '.' or '..'")
    } else if name.contains(&b'/') {
        Err("name contains '/'")
    } else if name.contains(&0) {
        Err("name contains NUL")
    } else if name.len() > MAX_NAME_LEN {
        Err("name longer than 255 bytes")
    } else {
        Ok(())
    }
}

fn corrupt(why: impl Into<String>) -> FormatError {
    FormatError::Corrupt("manifest", why.into())
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn item<T: Decode<()>>(&mut self) -> Result<T, FormatError> {
        let (v, used) = bincode::decode_from_slice(&self.buf[self.pos..], CONFIG)
            .map_err(|e| corrupt(e.to_string()))?;
        self.pos += used;
        Ok(v)
    }

    fn bytes(&mut self, n: u64) -> Result<&[u8], FormatError> {
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(FormatError::Truncated("manifest"));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    /// A capacity for `count` items of at least `min_size` encoded bytes each that the
    /// remaining input could actually hold.
    fn capacity(&self, count: u64, min_size: usize) -> usize {
        let left = (self.buf.len() - self.pos) / min_size;
        count.min(left as u64) as usize
    }
}

pub mod image;
mod links;
mod table;
pub use links::LinkFault;
pub use table::Table;

#[cfg(test)]
pub(crate) mod tests;
