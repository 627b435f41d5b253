//! Fetching content by its chunk reference, verified against its SHA-256 before anyone sees it.
//!
//! A mismatch is fetched once more (a torn read or a transient proxy fault heals), then is an
//! error naming the object: wrong bytes are never returned.

use crate::format::{ChunkRef, Location, Manifest, Sha256};
use crate::store::tier::Tier;
use crate::store::{keys, Pin, Store, StoreError};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    /// An object an imported version reads in place was deleted, or its bytes changed.
    #[error("{object} {how} since this version was imported from it; import it again to make a version of what is there now")]
    SourceChanged { object: String, how: &'static str },
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
    /// Read in place from a source of an imported version, not from the store.
    pub source: Option<Source>,
}

/// Which source object a chunk of an imported version is read from, and which content of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The source's URL, as the manifest's source table gives it.
    pub url: Arc<str>,
    pub pin: Pin,
}

/// The stores chunks come from: the store, and the sources imported versions read in place,
/// each opened at its first use (opening touches no network) and kept for every version
/// mounted after. A source that cannot be opened fails the reads of its files only.
#[derive(Clone, Debug)]
pub struct Origins {
    store: Store,
    sources: Arc<Mutex<Opened>>,
    /// The shared cache tier the store's own objects are read through first, if any.
    tier: Option<Arc<Tier>>,
}

/// Sources by URL, opened or not.
type Opened = HashMap<Arc<str>, Result<Store, StoreError>>;

impl From<Store> for Origins {
    fn from(store: Store) -> Origins {
        Origins {
            store,
            sources: Arc::default(),
            tier: None,
        }
    }
}

impl Origins {
    /// The store's content read through `tier` first.
    pub fn with_tier(mut self, tier: Option<Arc<Tier>>) -> Origins {
        self.tier = tier;
        self
    }

    /// The source at `url`, opened like the store.
    fn source(&self, url: &Arc<str>) -> Result<Store, StoreError> {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources
            .entry(url.clone())
            .or_insert_with(|| self.store.open_like(url))
            .clone()
    }

    /// The store itself (packs and blobs live there).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Bytes of `key` (a range, or the whole object), `len` of them unless something is
    /// wrong, from the store, or from a source at its pinned content; a source object deleted
    /// or changed since is [`ContentError::SourceChanged`].
    pub async fn get(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
        len: u64,
        source: Option<&Source>,
    ) -> Result<Bytes, ContentError> {
        Ok(self.get_from(key, range, len, source, false).await?.data)
    }

    /// Like [`get`](Self::get); `direct` skips the tier.
    async fn get_from(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
        len: u64,
        source: Option<&Source>,
        direct: bool,
    ) -> Result<Got, ContentError> {
        let most = usize::try_from(len).unwrap_or(usize::MAX);
        if let (Some(tier), None, false) = (&self.tier, source, direct) {
            if let Some((data, sha256)) =
                tier.get(&self.store, key, range.clone(), most, false).await
            {
                return Ok(Got {
                    data,
                    sha256: Some(sha256),
                    tiered: true,
                });
            }
        }
        let Some(src) = source else {
            let (data, sha256) = self
                .store
                .get_into(key, range, most, crate::buffers::shared())
                .await
                .map_err(|e| match e {
                    StoreError::NotFound { .. } => ContentError::Missing { key: key.into() },
                    e => ContentError::Store(e),
                })?;
            return Ok(Got {
                data,
                sha256: Some(sha256),
                tiered: false,
            });
        };
        let data = self.get_source(key, range, src).await?;
        Ok(Got {
            data,
            sha256: None,
            tiered: false,
        })
    }

    /// Bytes of `key` from an imported version's source, at its pinned content.
    async fn get_source(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
        src: &Source,
    ) -> Result<Bytes, ContentError> {
        let store = &self.source(&src.url).map_err(ContentError::Store)?;
        let range = match range {
            Some(r) => r,
            None => {
                0..store
                    .head(key)
                    .await
                    .map_err(|e| changed(store, key, e))?
                    .size
            }
        };
        store
            .get_pinned(key, range, &src.pin)
            .await
            .map_err(|e| changed(store, key, e))
    }

    /// The URL of `key` where `source` says it is, for messages.
    pub fn object_url(&self, key: &str, source: Option<&Source>) -> String {
        let store = match source.map(|s| self.source(&s.url)) {
            Some(Ok(s)) => s,
            _ => self.store.clone(),
        };
        format!("{}/{key}", store.url().trim_end_matches('/'))
    }
}

/// Bytes as they came, with their SHA-256 where it was taken on the way in.
struct Got {
    data: Bytes,
    sha256: Option<Sha256>,
    /// From the shared cache tier, not the store.
    tiered: bool,
}

/// A source object's failure: gone or changed is [`ContentError::SourceChanged`].
fn changed(store: &Store, key: &str, e: StoreError) -> ContentError {
    let how = match e {
        StoreError::NotFound { .. } => "was deleted",
        StoreError::Changed { .. } => "has changed",
        e => return ContentError::Store(e),
    };
    ContentError::SourceChanged {
        object: format!("{}/{key}", store.url().trim_end_matches('/')),
        how,
    }
}

/// The store key and byte range that hold a chunk. A chunk in a pack is a whole small file;
/// a blob is taken to be part of a larger file unless the caller knows better.
pub fn locate(m: &Manifest, c: &ChunkRef) -> Located {
    let range = |offset: u64| Some(offset..offset + c.len as u64);
    let (key, range, whole_file, source) = match c.location {
        Location::Blob => (keys::blob(&c.hash), None, false, None),
        Location::Pack { pack, offset } => (
            keys::pack(&m.packs[pack as usize]),
            range(offset),
            true,
            None,
        ),
        Location::External { object } => {
            let o = &m.objects[object as usize];
            let source = Source {
                url: m.text(m.sources[o.source as usize]).into(),
                pin: Pin {
                    etag: o.etag.map(|s| m.text(s).to_string()),
                    version: o.version.map(|s| m.text(s).to_string()),
                },
            };
            let whole = c.file_offset == 0 && c.len as u64 == o.size;
            (
                m.text(o.key).to_string(),
                range(c.file_offset),
                whole,
                Some(source),
            )
        }
    };
    Located {
        key,
        whole_file,
        range,
        hash: c.hash,
        len: c.len,
        source,
    }
}

/// Fetches one chunk of a manifest and checks its digest.
pub async fn fetch_chunk(
    origins: &Origins,
    m: &Manifest,
    c: &ChunkRef,
) -> Result<Bytes, ContentError> {
    fetch(origins, &locate(m, c)).await
}

/// Fetches a located chunk and checks its digest.
pub async fn fetch(origins: &Origins, at: &Located) -> Result<Bytes, ContentError> {
    let source = at.source.as_ref();
    let (mut direct, mut from_store) = (false, 0);
    while from_store < 2 {
        let got = origins
            .get_from(&at.key, at.range.clone(), at.len as u64, source, direct)
            .await?;
        let data = got.data;
        if data.len() == at.len as usize
            && got.sha256.unwrap_or_else(|| Sha256::of(&data)) == at.hash
        {
            return Ok(data);
        }
        if let (true, Some(tier)) = (got.tiered, &origins.tier) {
            tier.mismatched(&origins.store, &at.key);
            direct = true;
            continue;
        }
        from_store += 1;
        tracing::warn!(
            "{}: content does not match SHA-256 {}; fetching again",
            at.key,
            at.hash
        );
    }
    if source.is_some() {
        // The source served the ETag we asked for with other bytes (or keeps no ETags): the
        // object was rewritten all the same.
        return Err(ContentError::SourceChanged {
            object: origins.object_url(&at.key, source),
            how: "has changed",
        });
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
