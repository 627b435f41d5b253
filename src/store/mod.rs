//! The object-store seam: the only module that knows about `object_store`, URLs and backends.
//!
//! Every operation is bounded by the configured timeout (retries included), so an unreachable
//! or stalled store becomes an error in bounded time, never a hang.

mod explain;
pub mod keys;
mod open;
mod settings;
pub mod tier;

pub use settings::is_client_panic;

use crate::buffers::Buffers;
use crate::format::hash::{Sha256, StreamHasher};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetResultPayload, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How a store is reached.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The longest one operation may take, retries included.
    pub timeout: Duration,
    /// Create a local directory store that does not exist yet. Only what writes a version
    /// asks for this: a read of a mistyped path must say there is nothing there, not make an
    /// empty store that lists nothing.
    pub create: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            timeout: Duration::from_secs(30),
            create: false,
        }
    }
}

/// A failed store operation. Messages name the store, the operation and the key.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL '{0}': {1}")]
    BadUrl(String, String),
    /// A setting of the store (a variable, or a setting in its URL) that cannot be used, in
    /// a line that names it and the fix.
    #[error("{0}")]
    Setting(String),
    /// A refusal people can fix (a missing bucket, credentials), in their words.
    #[error("{store}: {what}")]
    Refused { store: String, what: String },
    #[error("no store at {0}: nothing has been pushed there; check the store URL (--store, $DATASTORE_STORE or the config file), or push a dataset to create it")]
    Absent(String),
    #[error("cannot use {0} as a store: {1}")]
    Unusable(String, String),
    #[error("{store}: {key} not found")]
    NotFound { store: String, key: String },
    /// A pinned read (see [`Pin`]) found the object changed since the pin was taken.
    #[error("{store}: {key} has changed since it was imported")]
    Changed { store: String, key: String },
    #[error("{store}: {op} {key} timed out after {secs}s; check that the store is reachable (raise --timeout for slow links)")]
    Timeout {
        store: String,
        op: &'static str,
        key: String,
        secs: u64,
    },
    #[error("{store}: {op} {key} failed: {detail}")]
    Backend {
        store: String,
        op: &'static str,
        key: String,
        detail: String,
    },
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

/// One listed object: its key relative to the store root, size and modification time.
#[derive(Clone, Debug)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
    /// The store's tag for this content of the object, where it gives one.
    pub etag: Option<String>,
    /// The object's version id, in a versioned bucket.
    pub version: Option<String>,
}

impl Listed {
    fn of(store: &Store, m: object_store::ObjectMeta) -> Listed {
        Listed {
            key: store.relative(&m.location),
            size: m.size,
            modified: m.last_modified.into(),
            etag: m.e_tag,
            version: m.version,
        }
    }
}

/// Which content of an object a read wants: the one it had when its hashes were taken.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pin {
    /// Sent as `If-Match`: a changed object is refused by the store.
    pub etag: Option<String>,
    /// That version of the object, in a versioned bucket.
    pub version: Option<String>,
}

impl Pin {
    fn options(&self, range: Option<Range<u64>>) -> GetOptions {
        GetOptions {
            if_match: self.etag.clone(),
            version: self.version.clone(),
            range: range.map(Into::into),
            ..Default::default()
        }
    }
}

/// A response body landing in a reused buffer, hashed piece by piece as it arrives, while
/// each piece is still in the CPU's cache from the socket copy (hashing the whole buffer
/// afterwards read every byte back from memory, and took half as long again). A body longer
/// than `most` bytes is cut after `most + 1`: enough for the caller to see that it is not
/// what was asked for, without holding whatever a broken server sends.
pub(crate) struct Landing {
    buf: crate::buffers::Filling,
    hasher: StreamHasher,
    keep: usize,
}

/// The most room a [`Landing`] makes before bytes arrive: the largest chunk a push makes
/// (`push::ingest::CHUNK_MAX`; the store does not depend on push). A length a server
/// declares (a tier's Content-Length for a manifest, whose size the caller cannot bound) is a
/// claim, not bytes; past this, room grows only with what actually arrives.
const FIRST_ROOM: usize = 16 << 20;

impl Landing {
    /// Room is made for `expected` bytes at first (at most [`FIRST_ROOM`]).
    pub(crate) fn new(buffers: &Arc<Buffers>, most: usize, expected: usize) -> Landing {
        Landing {
            buf: buffers.filling(expected.min(most).min(FIRST_ROOM)),
            hasher: StreamHasher::default(),
            keep: most.saturating_add(1),
        }
    }

    /// Takes the next piece of the body; false once it holds all it keeps.
    pub(crate) fn take(&mut self, piece: &[u8]) -> bool {
        let piece = &piece[..piece.len().min(self.keep - self.buf.len())];
        self.hasher.update(piece);
        self.buf.extend(piece);
        self.buf.len() < self.keep
    }

    /// The bytes kept and their SHA-256.
    pub(crate) fn done(self) -> (Bytes, Sha256) {
        (self.buf.freeze(), self.hasher.finish())
    }
}

/// A store root: a backend and a key prefix inside it.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// Presigns GET URLs of the store's objects (S3), for an HTTP cache tier that holds no
    /// credentials.
    signer: Option<Arc<dyn object_store::signer::Signer>>,
    root: String,
    url: String,
    /// Where it lives, for explaining refusals.
    place: Arc<explain::Place>,
    timeout: Duration,
}

impl Store {
    /// A URL that GETs `key` for `valid` without credentials of its own, if this kind of
    /// store can make one (S3).
    pub async fn signed_get(&self, key: &str, valid: Duration) -> Option<url::Url> {
        let signer = self.signer.as_ref()?;
        let path = self.path(key);
        signer
            .signed_url(object_store::signer::Method::GET, &path, valid)
            .await
            .ok()
    }

    /// The store's URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where the store's root is, one way however it was named (`/srv/s` and `file:///srv/s`
    /// alike, the endpoint included), ending in `/`: to tell whether one store lies inside
    /// another. Not a URL.
    pub fn canonical(&self) -> String {
        let p = &self.place;
        let root = match self.root.is_empty() {
            true => String::new(),
            false => format!("{}/", self.root),
        };
        let endpoint = p.endpoint.as_deref().unwrap_or_default();
        let bucket = p.bucket.trim_end_matches('/');
        format!("{}://{endpoint}|{bucket}/{root}", p.scheme)
    }

    /// The backend path of `key`, taken as it is: `Path::from` would percent-encode non-ASCII
    /// bytes, and a listed key such as `ünï.txt` would then name another object.
    fn path(&self, key: &str) -> Path {
        let full = match self.root.is_empty() {
            true => key.to_string(),
            false => format!("{}/{key}", self.root),
        };
        Path::parse(&full).unwrap_or_else(|_| Path::from(full))
    }

    fn relative(&self, p: &Path) -> String {
        let s = p.as_ref();
        if self.root.is_empty() {
            s.to_string()
        } else {
            s.strip_prefix(&self.root)
                .map(|r| r.trim_start_matches('/').to_string())
                .unwrap_or_else(|| s.to_string())
        }
    }

    async fn bounded<T>(
        &self,
        op: &'static str,
        key: &str,
        fut: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T, StoreError> {
        use futures::FutureExt;
        let started = std::time::Instant::now();
        // object_store panics on settings it cannot make a request from (a character no URL
        // or header may hold); `settings::check` refuses those it knows of, and any other
        // becomes this store's error here, not the end of the process.
        let fut = std::panic::AssertUnwindSafe(fut).catch_unwind();
        let outcome = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Err(_) => Err(self.timed_out(op, key)),
            Ok(Ok(Err(e))) => Err(self.failed(op, key, e)),
            Ok(Err(panic)) => Err(settings::client_panic(&self.url, self.place.scheme, panic)),
        };
        // A missing key is an answer, not a failure of the store.
        let ok = matches!(outcome, Ok(_) | Err(StoreError::NotFound { .. }));
        crate::metrics::store_request(op, started.elapsed(), ok);
        outcome
    }

    fn timed_out(&self, op: &'static str, key: &str) -> StoreError {
        StoreError::Timeout {
            store: self.url.clone(),
            op,
            key: key.to_string(),
            secs: self.timeout.as_secs(),
        }
    }

    /// A failure of the backend, in people's words where we know them.
    fn failed(&self, op: &'static str, key: &str, e: object_store::Error) -> StoreError {
        let text = one_line(&e);
        let explained =
            explain::explain(&self.place, &text).or_else(|| explain::local(&self.place, op, &e));
        match explained {
            Some(what) => StoreError::Refused {
                store: self.url.clone(),
                what,
            },
            None if matches!(e, object_store::Error::Precondition { .. }) && op == "GET" => {
                StoreError::Changed {
                    store: self.url.clone(),
                    key: key.to_string(),
                }
            }
            // A write to a key cannot find it missing: what is missing is where it goes.
            None if matches!(e, object_store::Error::NotFound { .. })
                && op == "PUT"
                && !matches!(self.place.scheme, "" | "file") =>
            {
                StoreError::Refused {
                    store: self.url.clone(),
                    what: explain::missing_bucket(&self.place),
                }
            }
            None if matches!(e, object_store::Error::NotFound { .. })
                || (matches!(op, "GET" | "HEAD") && explain::through_a_file(&self.place, &e)) =>
            {
                StoreError::NotFound {
                    store: self.url.clone(),
                    key: key.to_string(),
                }
            }
            None => StoreError::Backend {
                store: self.url.clone(),
                op,
                key: key.to_string(),
                detail: explain::server_said(&text).unwrap_or(text),
            },
        }
    }

    /// The whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key);
        let data = self
            .bounded("GET", key, async {
                self.inner.get(&path).await?.bytes().await
            })
            .await?;
        crate::metrics::store_bytes("GET", data.len() as u64);
        Ok(data)
    }

    /// The whole object, whose size is known beforehand: a large one comes in parallel
    /// ranged GETs, faster than one stream (a million-file manifest is tens of MB and stands
    /// between `mount` and the first `ls`). `size` comes from the store too and may be wrong:
    /// the caller checks what it gets, and a size past any sane object is fetched with one
    /// plain GET rather than split into that many requests.
    pub async fn get_sized(&self, key: &str, size: u64) -> Result<Bytes, StoreError> {
        use futures::{StreamExt, TryStreamExt};
        const PART: u64 = 8 << 20;
        const MOST_PARTS: u64 = 1024;
        if size <= PART || size > PART * MOST_PARTS {
            return self.get(key).await;
        }
        let ranges = (0..size)
            .step_by(PART as usize)
            .map(|o| o..(o + PART).min(size));
        let parts: Vec<Bytes> = futures::stream::iter(ranges)
            .map(|r| self.get_range(key, r))
            .buffered(16)
            .try_collect()
            .await?;
        let mut out = bytes::BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
        for p in parts {
            out.extend_from_slice(&p);
        }
        Ok(out.freeze())
    }

    /// A byte range of an object.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let path = self.path(key);
        let data = self
            .bounded("GET", key, self.inner.get_range(&path, range))
            .await?;
        crate::metrics::store_bytes("GET", data.len() as u64);
        Ok(data)
    }

    /// Bytes of `key` (`range` of it, or all of it) in a buffer from `buffers`, whose pages
    /// are reused from chunk to chunk rather than mapped afresh for every GET, with their
    /// SHA-256, taken as they arrive (see [`Landing`]). A body longer than `most` bytes is cut
    /// after `most + 1`.
    pub async fn get_into(
        &self,
        key: &str,
        range: Option<Range<u64>>,
        most: usize,
        buffers: &Arc<Buffers>,
    ) -> Result<(Bytes, Sha256), StoreError> {
        let path = self.path(key);
        let opts = GetOptions {
            range: range.map(Into::into),
            ..Default::default()
        };
        let data = self
            .bounded("GET", key, async {
                let got = self.inner.get_opts(&path, opts).await?;
                let keep = most.saturating_add(1);
                match got.payload {
                    // A local directory: one read into the buffer.
                    GetResultPayload::File(file, _) => {
                        let (at, len) = (got.range.start, got.range.end - got.range.start);
                        let len = usize::try_from(len).unwrap_or(usize::MAX).min(keep);
                        let buffers = buffers.clone();
                        let read = move || {
                            let data = buffers.read_at(&file, at, len)?;
                            let sha256 = Sha256::of(&data);
                            Ok((data, sha256))
                        };
                        tokio::task::spawn_blocking(read)
                            .await
                            .map_err(std::io::Error::other)
                            .and_then(|r| r)
                            .map_err(|e| object_store::Error::Generic {
                                store: "LocalFileSystem",
                                source: Box::new(e),
                            })
                    }
                    GetResultPayload::Stream(mut body) => {
                        let mut landing = Landing::new(buffers, most, most);
                        while let Some(piece) = body.next().await {
                            if !landing.take(&piece?) {
                                break;
                            }
                        }
                        Ok(landing.done())
                    }
                }
            })
            .await?;
        crate::metrics::store_bytes("GET", data.0.len() as u64);
        Ok(data)
    }

    /// A byte range of an object as it was when `pin` was taken. An object changed since is
    /// [`StoreError::Changed`], one deleted since [`StoreError::NotFound`].
    pub async fn get_pinned(
        &self,
        key: &str,
        range: Range<u64>,
        pin: &Pin,
    ) -> Result<Bytes, StoreError> {
        let path = self.path(key);
        let got = self
            .bounded("GET", key, async {
                self.inner
                    .get_opts(&path, pin.options(Some(range)))
                    .await?
                    .bytes()
                    .await
            })
            .await;
        let data = match got {
            // A precondition on an object that is gone fails too on some servers (Azurite):
            // whether it changed or went is worth telling people.
            Err(changed @ StoreError::Changed { .. }) => {
                return Err(match self.head(key).await {
                    Err(gone @ StoreError::NotFound { .. }) => gone,
                    _ => changed,
                })
            }
            other => other?,
        };
        crate::metrics::store_bytes("GET", data.len() as u64);
        Ok(data)
    }

    /// The whole object as a stream of pieces, for objects too large to hold: each piece must
    /// arrive within the timeout (a stalled transfer is an error, a long one is not).
    pub async fn get_stream(
        &self,
        key: &str,
        pin: &Pin,
    ) -> Result<impl futures::Stream<Item = Result<Bytes, StoreError>> + Send + 'static, StoreError>
    {
        let path = self.path(key);
        let result = self
            .bounded("GET", key, self.inner.get_opts(&path, pin.options(None)))
            .await?;
        let state = (self.clone(), key.to_string(), result.into_stream());
        Ok(futures::stream::unfold(Some(state), |state| async move {
            let (this, key, mut body) = state?;
            let piece = match tokio::time::timeout(this.timeout, body.next()).await {
                Err(_) => Err(this.timed_out("GET", &key)),
                Ok(None) => return None,
                Ok(Some(Ok(piece))) => Ok(piece),
                Ok(Some(Err(e))) => Err(this.failed("GET", &key, e)),
            };
            match piece {
                Ok(p) => {
                    crate::metrics::store_bytes("GET", p.len() as u64);
                    Some((Ok(p), Some((this, key, body))))
                }
                Err(e) => Some((Err(e), None)),
            }
        }))
    }

    /// An object's size, ETag and version.
    pub async fn head(&self, key: &str) -> Result<Listed, StoreError> {
        let path = self.path(key);
        let m = self.bounded("HEAD", key, self.inner.head(&path)).await?;
        Ok(Listed::of(self, m))
    }

    /// Another store, reached the same way (the same timeout): a source an imported version
    /// reads from. Opening touches no network.
    pub fn open_like(&self, url: &str) -> Result<Store, StoreError> {
        let opts = StoreOptions {
            timeout: self.timeout,
            create: false,
        };
        Store::open(url, &opts)
    }

    /// Writes an object, replacing any previous one (content keys hold the same bytes anyway).
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let path = self.path(key);
        self.bounded(
            "PUT",
            key,
            self.inner.put(&path, PutPayload::from_bytes(data)),
        )
        .await
        .map(|_| ())
    }

    /// Writes an object only if no object has the key; `Ok(false)` if one already did.
    /// This is the store's atomic create (`If-None-Match: *` on S3, a hard link locally).
    pub async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError> {
        let path = self.path(key);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.bounded("PUT", key, async {
            match self
                .inner
                .put_opts(&path, PutPayload::from_bytes(data), opts)
                .await
            {
                Ok(_) => Ok(true),
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.path(key);
        match self.bounded("HEAD", key, self.inner.head(&path)).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every object whose key starts with `prefix` (which should end in '/').
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let path = self.path(prefix.trim_end_matches('/'));
        let items: Vec<object_store::ObjectMeta> = self
            .bounded("LIST", prefix, self.inner.list(Some(&path)).try_collect())
            .await?;
        Ok(items.into_iter().map(|m| Listed::of(self, m)).collect())
    }

    /// The names of the "directories" directly under `prefix` (which should end in '/').
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let path = self.path(prefix.trim_end_matches('/'));
        let res = self
            .bounded("LIST", prefix, self.inner.list_with_delimiter(Some(&path)))
            .await?;
        Ok(res
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Deletes an object; deleting one that is already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key);
        match self.bounded("DELETE", key, self.inner.delete(&path)).await {
            Err(e) if e.is_not_found() => Ok(()),
            r => r,
        }
    }
}

/// An error and its sources on one line, the way users see every error.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
