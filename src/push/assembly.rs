//! Files placed into the new version's tables: each file's content read, hashed, chunked and
//! uploaded ([`read_file`]), or taken from the parent version unread, then given its chunk run
//! and, for a small file, its place in a pack ([`Assembly`]).

use super::ingest::{self, SMALL_FILE};
use super::packer::{PackTable, Packer};
use super::report::PushProgress;
use super::upload::Uploader;
use super::walk::{FileToRead, Scanned};
use super::PushError;
use crate::format::manifest::Run;
use crate::format::{ChunkRef, EntryKind, Location, Manifest, Sha256};
use crate::store::keys;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A file's content, read and hashed, or known to be that of a file of the parent version.
pub(super) enum Content {
    Small {
        sha: Sha256,
        data: Vec<u8>,
    },
    Chunked {
        sha: Sha256,
        chunks: Vec<ChunkRef>,
    },
    /// The content of file entry `entry` of the parent.
    Reused {
        sha: Sha256,
        entry: usize,
    },
}

/// Reads, hashes and (for a large file) chunks and uploads one file, counting bytes as they are
/// read so progress moves through a large file.
pub(super) async fn read_file(
    f: FileToRead,
    uploader: Arc<Uploader>,
    progress: Arc<PushProgress>,
) -> Result<(FileToRead, Content), PushError> {
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let content = if f.stamp.size < SMALL_FILE {
            let (sha, data) = ingest::read_small(&f)?;
            progress
                .read_bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            Content::Small { sha, data }
        } else {
            let mut chunks = Vec::new();
            let sha = ingest::read_chunked(&f, |c| {
                chunks.push(ChunkRef {
                    hash: c.hash,
                    file_offset: c.file_offset,
                    len: c.data.len() as u32,
                    location: Location::Blob,
                });
                progress
                    .read_bytes
                    .fetch_add(c.data.len() as u64, Ordering::Relaxed);
                rt.block_on(uploader.upload(keys::blob(&c.hash), c.data.into()))?;
                Ok(())
            })?;
            Content::Chunked { sha, chunks }
        };
        Ok((f, content))
    })
    .await
    .expect("file reading does not panic")
}

/// The manifest's chunk and pack tables as files are placed, in entry order.
#[derive(Default)]
pub(super) struct Assembly {
    /// The parent version, and its files by content.
    pub(super) parent: Manifest,
    parent_files: HashMap<Sha256, usize>,
    pub(super) chunks: Vec<ChunkRef>,
    pub(super) packs: PackTable,
    pub(super) packer: Packer,
    /// Where each small file already stored (by the parent or earlier in this push) lives.
    small: HashMap<Sha256, (Sha256, u64)>,
    /// Small files packed by this push, by pack slot, until their pack is sealed.
    pending: HashMap<Sha256, (u32, u64)>,
}

impl Assembly {
    pub(super) fn learn_parent(&mut self, m: Manifest, uploader: &Uploader) {
        *self = Assembly::of_parent(m);
        self.parent_present(uploader);
    }

    /// An assembly that builds on manifest `m`, the parent version's. Blocking: its tables
    /// take a while for a large manifest.
    pub(super) fn of_parent(m: Manifest) -> Assembly {
        let mut a = Assembly::default();
        a.small.reserve(m.chunks.len());
        for c in &m.chunks {
            if let Location::Pack { pack, offset } = c.location {
                a.small.insert(c.hash, (m.packs[pack as usize], offset));
            }
        }
        a.parent_files.reserve(m.entries.len());
        for (i, e) in m.entries.iter().enumerate() {
            if let EntryKind::File { sha256, .. } = e.kind {
                a.parent_files.insert(sha256, i);
            }
        }
        a.parent = m;
        a
    }

    /// Tells `uploader` that what the parent references is in the store.
    pub(super) fn parent_present(&self, uploader: &Uploader) {
        let m = &self.parent;
        let blobs = m.chunks.iter().filter(|c| c.location == Location::Blob);
        uploader.assume_present(blobs.map(|c| keys::blob(&c.hash)));
        uploader.assume_present(m.packs.iter().map(keys::pack));
    }

    /// The content of a file the stat cache says has SHA-256 `sha`, if the parent has a file
    /// of that digest and size to take the chunks of.
    pub(super) fn reuse(&self, sha: &Sha256, size: u64) -> Option<Content> {
        let &entry = self.parent_files.get(sha)?;
        match self.parent.entries[entry].kind {
            // Content read in place from a source object is read again: a push of a directory
            // copies its files into the store.
            EntryKind::File {
                size: s, chunks, ..
            } if s == size
                && !self.parent.chunks[chunks.range()]
                    .iter()
                    .any(|c| matches!(c.location, Location::External { .. })) =>
            {
                Some(Content::Reused { sha: *sha, entry })
            }
            _ => None,
        }
    }

    pub(super) async fn place(
        &mut self,
        scanned: &mut Scanned,
        entry: u32,
        content: Content,
        uploader: &Uploader,
    ) -> Result<Sha256, PushError> {
        let start = self.chunks.len() as u32;
        let sha = match content {
            Content::Reused { sha, entry } => {
                let EntryKind::File { chunks, .. } = self.parent.entries[entry].kind else {
                    unreachable!("reuse takes files only")
                };
                for c in &self.parent.chunks[chunks.range()] {
                    let location = match c.location {
                        Location::Pack { pack, offset } => Location::Pack {
                            pack: self.packs.intern(self.parent.packs[pack as usize]),
                            offset,
                        },
                        other => other,
                    };
                    self.chunks.push(ChunkRef { location, ..*c });
                }
                sha
            }
            Content::Chunked { sha, chunks } => {
                self.chunks.extend(chunks);
                sha
            }
            Content::Small { sha, data } if data.is_empty() => sha,
            Content::Small { sha, data } => {
                let len = data.len() as u32;
                let (slot, offset) = if let Some(&(pack, offset)) = self.small.get(&sha) {
                    (self.packs.intern(pack), offset)
                } else if let Some(&(slot, offset)) = self.pending.get(&sha) {
                    (slot, offset)
                } else {
                    let (slot, offset, sealed) = self.packer.add(&mut self.packs, &sha, &data);
                    self.pending.insert(sha, (slot, offset));
                    if let Some(pack) = sealed {
                        uploader
                            .upload(keys::pack(&pack.hash), pack.data.into())
                            .await?;
                    }
                    (slot, offset)
                };
                self.chunks.push(ChunkRef {
                    hash: sha,
                    file_offset: 0,
                    len,
                    location: Location::Pack { pack: slot, offset },
                });
                sha
            }
        };
        let run = Run {
            start,
            len: self.chunks.len() as u32 - start,
        };
        if let EntryKind::File { sha256, chunks, .. } = &mut scanned.entries[entry as usize].kind {
            *sha256 = sha;
            *chunks = run;
        }
        Ok(sha)
    }
}
