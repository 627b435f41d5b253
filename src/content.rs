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
}

/// The store key and byte range that hold a chunk.
pub fn location(m: &Manifest, c: &ChunkRef) -> (String, Option<std::ops::Range<u64>>) {
    match c.location {
        Location::Blob => (keys::blob(&c.hash), None),
        Location::Pack { pack, offset } => (
            keys::pack(&m.packs[pack as usize]),
            Some(offset..offset + c.len as u64),
        ),
    }
}

/// Fetches one chunk and checks its digest.
pub async fn fetch_chunk(store: &Store, m: &Manifest, c: &ChunkRef) -> Result<Bytes, ContentError> {
    let (key, range) = location(m, c);
    for _attempt in 0..2 {
        let data = match &range {
            None => store.get(&key).await?,
            Some(r) => store.get_range(&key, r.clone()).await?,
        };
        if data.len() == c.len as usize && Sha256::of(&data) == c.hash {
            return Ok(data);
        }
        tracing::warn!(
            "{key}: content does not match SHA-256 {}; fetching again",
            c.hash
        );
    }
    let (start, end) = range.map_or((0, c.len as u64), |r| (r.start, r.end));
    Err(ContentError::Corrupt {
        key,
        start,
        end,
        expected: c.hash,
    })
}
