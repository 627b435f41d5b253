//! Fetching content by its chunk reference, verified against its SHA-256 before anyone sees it.
//!
//! A mismatch is fetched once more (a torn read or a transient proxy fault heals), then is an
//! error naming the object: wrong bytes are never returned.

use crate::format::{ChunkRef, Location, Manifest, Sha256};
use crate::store::{keys, Store, StoreError};
use bytes::Bytes;

/// Why content could not be read.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ContentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{key} (bytes {start}..{end}) does not match its SHA-256 {expected}: the store holds damaged data; run `datastore verify`")]
    Corrupt {
        key: String,
        start: u64,
        end: u64,
        expected: Sha256,
    },
    #[error("{key} is missing from the store: the store is damaged; run `datastore verify` to see which versions need it")]
    Missing { key: String },
}

/// Everything needed to fetch one chunk, detached from its manifest so it can move into tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub key: String,
    /// The byte range inside the object, or `None` for the whole object.
    pub range: Option<std::ops::Range<u64>>,
    pub hash: Sha256,
    pub len: u32,
    /// The chunk is a whole file (a small file of a pack, or a file of one chunk): the disk
    /// cache keeps it as a file entry, which the kernel can serve by passthrough.
    pub whole_file: bool,
}

/// The store key and byte range that hold a chunk. A chunk in a pack is a whole small file;
/// a blob is taken to be part of a larger file unless the caller knows better.
pub fn locate(m: &Manifest, c: &ChunkRef) -> Located {
    let (key, range) = match c.location {
        Location::Blob => (keys::blob(&c.hash), None),
        Location::Pack { pack, offset } => (
            keys::pack(&m.packs[pack as usize]),
            Some(offset..offset + c.len as u64),
        ),
    };
    Located {
        key,
        whole_file: range.is_some(),
        range,
        hash: c.hash,
        len: c.len,
    }
}

/// Fetches one chunk of a manifest and checks its digest.
pub async fn fetch_chunk(store: &Store, m: &Manifest, c: &ChunkRef) -> Result<Bytes, ContentError> {
    fetch(store, &locate(m, c)).await
}

/// Fetches a located chunk and checks its digest.
pub async fn fetch(store: &Store, at: &Located) -> Result<Bytes, ContentError> {
    for _attempt in 0..2 {
        let data = match &at.range {
            None => store.get(&at.key).await,
            Some(r) => store.get_range(&at.key, r.clone()).await,
        }
        .map_err(|e| match e.is_not_found() {
            true => ContentError::Missing {
                key: at.key.clone(),
            },
            false => ContentError::Store(e),
        })?;
        if data.len() == at.len as usize && Sha256::of(&data) == at.hash {
            return Ok(data);
        }
        tracing::warn!(
            "{}: content does not match SHA-256 {}; fetching again",
            at.key,
            at.hash
        );
    }
    let (start, end) = at
        .range
        .clone()
        .map_or((0, at.len as u64), |r| (r.start, r.end));
    Err(ContentError::Corrupt {
        key: at.key.clone(),
        start,
        end,
        expected: at.hash,
    })
}
