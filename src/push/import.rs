//! Import: a version made from objects already in object storage.
//!
//! `datastore push s3://bucket/prefix NAME` lists the prefix and streams each object once
//! through the chunker a push uses, hashing every chunk and the whole object. The manifest
//! records each object (source URL, key, size, ETag, version id) in its source tables
//! (format version 2). By default the version reads the objects where they are: a chunk's
//! location is a byte range of its object, fetched with `If-Match` (and the version id, in a
//! versioned bucket) and verified against its SHA-256 like any other, so an object changed or
//! deleted after the import fails the reads of its file, never serves other bytes. `--copy`
//! stores the content as a push does (blobs and packs) and keeps the tables as provenance.
//!
//! A re-import reads only what changed: an object whose key, size and ETag are those the
//! parent version recorded takes the parent's hashes, as the stat cache does for files.
//! gc never touches sources: it lists and deletes only the store's own prefixes.

use super::ingest::SMALL_FILE;
use super::walk::{Scanned, Skipped};
use super::{conclude, under_lease, Assembly, Content, PushError, PushOptions, PushProgress};
use super::{upload::Uploader, PushReport, Tally};
use crate::catalog::Catalog;
use crate::format::manifest::{check_name, Run, SourceObject, Span, Timestamp, MAX_DEPTH};
use crate::format::name::check_dataset_name;
use crate::format::{ChunkRef, Entry, EntryKind, Location, Manifest, Sha256};
use crate::store::{keys, Listed, Pin, Store, StoreError};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The store's own prefixes: a source inside them would be content gc manages.
const LAYOUT: [&str; 5] = ["blobs", "packs", "manifests", "refs", "locks"];

/// Whether a push source is a store URL (an import) rather than a directory.
pub fn is_url(source: &str) -> bool {
    source.contains("://")
}

/// One object to read, by the file entry it becomes.
struct Object {
    entry: u32,
    key: String,
    size: u64,
    pin: Pin,
}

/// Imports the objects under `url` as the next version of `dataset`; `copy` stores their
/// content in the store instead of reading it in place.
pub async fn import(
    catalog: &Catalog,
    url: &str,
    dataset: &str,
    opts: &PushOptions,
    copy: bool,
    progress: Arc<PushProgress>,
) -> Result<PushReport, PushError> {
    check_dataset_name(dataset)?;
    let source = catalog.store().open_like(url).map_err(|e| match e {
        StoreError::Absent(place) => PushError::NothingToImport(place),
        e => PushError::Store(e),
    })?;
    refuse_own_layout(catalog.store(), &source)?;
    let listed = source.list("").await?;
    if listed.is_empty() {
        return Err(PushError::NothingToImport(source.url().to_string()));
    }
    let (mut scanned, objects) = tree(listed);
    progress
        .total_bytes
        .store(scanned.total_bytes, Ordering::Relaxed);
    progress
        .total_files
        .store(objects.len() as u64, Ordering::Relaxed);
    let shown = source.url().to_string();
    let work = async {
        let store = catalog.store().clone();
        let parent = catalog.latest(dataset).await?;
        let uploader = Arc::new(Uploader::new(
            store,
            opts.memory_budget,
            progress.upload.clone(),
        ));
        let mut state = Assembly::default();
        if let Some(p) = &parent {
            state.learn_parent(catalog.manifest(p).await?, &uploader);
        }
        add_tables(&mut scanned, &shown, &objects);
        // What the parent knows, taken before any file is placed.
        let known: Vec<Option<Content>> = {
            let parent = ParentObjects::new(&state.parent, &shown);
            let content = |(i, o)| parent.content(o, copy, i as u32);
            match opts.rehash {
                true => objects.iter().map(|_| None).collect(),
                false => objects.iter().enumerate().map(content).collect(),
            }
        };
        let (mut hashed_bytes, mut reused_files) = (0, 0);
        let reads = objects
            .iter()
            .zip(known)
            .enumerate()
            .map(|(i, (o, known))| {
                let index = i as u32;
                if let Some(c) = known {
                    progress.read_bytes.fetch_add(o.size, Ordering::Relaxed);
                    return futures::future::ready(Ok::<_, PushError>((c, true))).left_future();
                }
                let read = Read {
                    source: source.clone(),
                    key: o.key.clone(),
                    size: o.size,
                    pin: o.pin.clone(),
                    object: (!copy).then_some(index),
                };
                let (u, p) = (uploader.clone(), progress.clone());
                async move { Ok((read.run(u, p).await?, false)) }.right_future()
            });
        let mut results = futures::stream::iter(reads).buffered(opts.concurrency.max(1));
        let mut i = 0;
        while let Some(done) = results.next().await {
            let (content, reused) = done?;
            let o = &objects[i];
            i += 1;
            match reused {
                true => reused_files += 1,
                false => hashed_bytes += o.size,
            }
            state
                .place(&mut scanned, o.entry, content, &uploader)
                .await?;
            progress.done_files.fetch_add(1, Ordering::Relaxed);
        }
        drop(results);
        let tally = Tally {
            files: objects.len() as u64,
            hashed_bytes,
            reused_files,
        };
        let (report, _) = conclude(
            catalog, dataset, opts, state, scanned, &uploader, parent, tally,
        )
        .await?;
        Ok(report)
    };
    under_lease(catalog, dataset, shown.clone(), opts, &progress, |_| work).await
}

/// Refuses a source inside the store's own layout (or the store's root, which holds it):
/// its objects are the store's, which gc deletes and rewrites.
fn refuse_own_layout(store: &Store, source: &Store) -> Result<(), PushError> {
    let (root, src) = (store.canonical(), source.canonical());
    let inside = match src.strip_prefix(&root) {
        Some("") => true,
        Some(rest) => rest
            .split('/')
            .next()
            .is_some_and(|first| LAYOUT.contains(&first)),
        None => false,
    };
    match inside {
        true => Err(PushError::SourceInStore(source.url().to_string())),
        false => Ok(()),
    }
}

/// The source tables as they will be stored: one source, and an object per file, in the
/// order of `objects` (which [`Location::External`] indexes).
fn add_tables(scanned: &mut Scanned, url: &str, objects: &[Object]) {
    let mut intern = |s: &str| scanned.intern(s.as_bytes());
    let source = intern(url);
    let objects: Vec<SourceObject> = objects
        .iter()
        .map(|o| SourceObject {
            source: 0,
            key: intern(&o.key),
            size: o.size,
            etag: o.pin.etag.as_deref().map(&mut intern),
            version: o.pin.version.as_deref().map(&mut intern),
        })
        .collect();
    scanned.sources = vec![source];
    scanned.objects = objects;
}

/// The objects the parent version imported from this import's source, by key.
struct ParentObjects<'a> {
    m: &'a Manifest,
    by_key: HashMap<&'a str, &'a SourceObject>,
}

impl<'a> ParentObjects<'a> {
    fn new(m: &'a Manifest, url: &str) -> ParentObjects<'a> {
        let ours =
            |o: &&SourceObject| m.sources.get(o.source as usize).map(|&s| m.text(s)) == Some(url);
        let by_key = m.objects.iter().filter(ours).map(|o| (m.text(o.key), o));
        ParentObjects {
            m,
            by_key: by_key.collect(),
        }
    }

    /// The content of object `o` (to be object `index` of the new version) if the parent
    /// imported it with the same size and ETag, in the same mode: its hashes serve, and,
    /// copied, its stored chunks.
    fn content(&self, o: &Object, copy: bool, index: u32) -> Option<Content> {
        let m = self.m;
        let etag = o.pin.etag.as_deref()?;
        let p = self.by_key.get(o.key.as_str())?;
        if p.size != o.size || p.etag.map(|s| m.text(s)) != Some(etag) {
            return None;
        }
        let path: Vec<&str> = o.key.split('/').collect();
        let entry = m.lookup(&path)?;
        let EntryKind::File {
            size,
            sha256,
            chunks,
        } = m.entries[entry].kind
        else {
            return None;
        };
        let run = &m.chunks[chunks.range()];
        let in_place = |c: &ChunkRef| matches!(c.location, Location::External { .. });
        if size != o.size {
            None
        } else if run.is_empty() {
            Some(Content::Small {
                sha: sha256,
                data: Vec::new(),
            })
        } else if copy && !run.iter().any(in_place) {
            Some(Content::Reused { sha: sha256, entry })
        } else if !copy && run.iter().all(in_place) {
            let chunks = run.iter().map(|c| ChunkRef {
                location: Location::External { object: index },
                ..*c
            });
            Some(Content::Chunked {
                sha: sha256,
                chunks: chunks.collect(),
            })
        } else {
            None
        }
    }
}

/// Reading one object: hashed and chunked; `object` is its index in the source tables when
/// the version reads it in place, `None` when its content is copied into the store.
struct Read {
    source: Store,
    key: String,
    size: u64,
    pin: Pin,
    object: Option<u32>,
}

impl Read {
    async fn run(
        self,
        uploader: Arc<Uploader>,
        progress: Arc<PushProgress>,
    ) -> Result<Content, PushError> {
        let object = format!("{}/{}", self.source.url().trim_end_matches('/'), self.key);
        let changed = |e: StoreError| match e {
            StoreError::Changed { .. } | StoreError::NotFound { .. } => {
                PushError::ObjectChanged(object.clone())
            }
            e => PushError::Store(e),
        };
        if self.size == 0 {
            return Ok(Content::Small {
                sha: Sha256::of(b""),
                data: Vec::new(),
            });
        }
        let body = self
            .source
            .get_stream(&self.key, &self.pin)
            .await
            .map_err(changed)?
            .boxed();
        let rt = tokio::runtime::Handle::current();
        let (size, at, name) = (self.size, self.object, object.clone());
        let read = tokio::task::spawn_blocking(move || {
            let mut reader = Blocking {
                rt: rt.clone(),
                body,
                piece: Bytes::new(),
                error: None,
            };
            let result = chunk(&name, &mut reader, size, at, &rt, &uploader, &progress);
            (result, reader.error)
        });
        let (result, error) = read.await.expect("reading an object does not panic");
        if let Some(e) = error {
            return Err(changed(e));
        }
        match result {
            Ok(Some(content)) => Ok(content),
            Ok(None) => Err(PushError::ObjectChanged(object)),
            Err(e) => Err(e),
        }
    }
}

/// Cuts what `reader` yields into chunks as a push cuts a file. `None` if it is not `size`
/// bytes long (the object changed since it was listed).
fn chunk(
    name: &str,
    reader: &mut Blocking,
    size: u64,
    object: Option<u32>,
    rt: &tokio::runtime::Handle,
    uploader: &Uploader,
    progress: &PushProgress,
) -> Result<Option<Content>, PushError> {
    use std::io::Read as _;
    // The reader fails only when the store does, which is reported from `reader.error`.
    let failed =
        |e: std::io::Error| PushError::Store(StoreError::Unusable(name.into(), e.to_string()));
    let location = match object {
        Some(object) => Location::External { object },
        None => Location::Blob,
    };
    if size < SMALL_FILE {
        let mut data = Vec::with_capacity(size as usize);
        reader
            .take(size + 1)
            .read_to_end(&mut data)
            .map_err(failed)?;
        progress
            .read_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if data.len() as u64 != size {
            return Ok(None);
        }
        let sha = Sha256::of(&data);
        return Ok(Some(match object {
            None => Content::Small { sha, data },
            Some(_) => Content::Chunked {
                sha,
                chunks: vec![ChunkRef {
                    hash: sha,
                    file_offset: 0,
                    len: size as u32,
                    location,
                }],
            },
        }));
    }
    let mut chunks = Vec::new();
    let (sha, len) = super::ingest::cut(&mut *reader, failed, |c| {
        let len = c.data.len() as u64;
        chunks.push(ChunkRef {
            hash: c.hash,
            file_offset: c.file_offset,
            len: len as u32,
            location,
        });
        progress.read_bytes.fetch_add(len, Ordering::Relaxed);
        if object.is_none() {
            rt.block_on(uploader.upload(keys::blob(&c.hash), c.data.into()))?;
        }
        Ok(())
    })?;
    if len != size {
        return Ok(None);
    }
    Ok(Some(Content::Chunked { sha, chunks }))
}

/// An object's body as a blocking reader, for the chunker (which runs off the async workers).
/// A failure of the store is kept in `error`, to be reported as itself.
struct Blocking {
    rt: tokio::runtime::Handle,
    body: BoxStream<'static, Result<Bytes, StoreError>>,
    piece: Bytes,
    error: Option<StoreError>,
}

impl std::io::Read for Blocking {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.piece.is_empty() {
            match self.rt.block_on(self.body.next()) {
                None => return Ok(0),
                Some(Ok(p)) => self.piece = p,
                Some(Err(e)) => {
                    let text = e.to_string();
                    self.error = Some(e);
                    return Err(std::io::Error::other(text));
                }
            }
        }
        let n = buf.len().min(self.piece.len());
        buf[..n].copy_from_slice(&self.piece[..n]);
        let _ = self.piece.split_to(n);
        Ok(n)
    }
}

/// A directory tree of listed objects, in the manifest's breadth-first layout, and the
/// objects to read. A key that is no path (an empty, `.` or `..` component, a name over 255
/// bytes, more than `MAX_DEPTH` components) is skipped and reported, as is an object with the
/// name of a directory (`a` beside
/// `a/b`: the directory wins, as in other S3 file systems); keys ending in `/` are
/// directories.
fn tree(listed: Vec<Listed>) -> (Scanned, Vec<Object>) {
    #[derive(Default)]
    struct Dir {
        children: BTreeMap<Vec<u8>, Node>,
        mtime: Timestamp,
    }
    enum Node {
        Dir(Dir),
        File(usize),
    }
    let mut out = Scanned::default();
    let mut root = Dir::default();
    let skip = |out: &mut Scanned, key: &str, note| {
        out.skipped.push(Skipped {
            path: PathBuf::from(key),
            kind: "object",
            note,
        })
    };
    for (i, l) in listed.iter().enumerate() {
        let is_dir = l.key.ends_with('/');
        let parts: Vec<&str> = l.key.trim_end_matches('/').split('/').collect();
        if parts.iter().any(|p| check_name(p.as_bytes()).is_err()) {
            skip(&mut out, &l.key, "its key is not a path");
            continue;
        }
        if parts.len() > MAX_DEPTH {
            skip(&mut out, &l.key, "its key is deeper than 1,024 levels");
            continue;
        }
        let mut dir = &mut root;
        let mut shadowed = None;
        for (depth, part) in parts.iter().enumerate() {
            let last = depth == parts.len() - 1;
            let slot = dir.children.entry(part.as_bytes().to_vec());
            if last && !is_dir {
                match slot {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(Node::File(i));
                    }
                    std::collections::btree_map::Entry::Occupied(_) => shadowed = Some(i),
                }
                break;
            }
            let node = slot.or_insert_with(|| Node::Dir(Dir::default()));
            if let Node::File(f) = node {
                shadowed = Some(*f);
                *node = Node::Dir(Dir::default());
            }
            let Node::Dir(d) = node else {
                unreachable!("made a directory above")
            };
            if last {
                d.mtime = timestamp(l.modified);
            }
            dir = d;
        }
        if let Some(f) = shadowed {
            skip(&mut out, &listed[f].key, "a directory has the same name");
        }
    }
    out.entries.push(Entry {
        parent: 0,
        name: Span::default(),
        mode: 0o755,
        mtime: root.mtime,
        kind: EntryKind::Dir {
            children: Run::default(),
        },
    });
    let mut objects = Vec::new();
    let mut queue = std::collections::VecDeque::from([(0u32, root)]);
    while let Some((idx, dir)) = queue.pop_front() {
        let start = out.entries.len() as u32;
        for (name, node) in dir.children {
            let name = out.intern(&name);
            let entry = out.entries.len() as u32;
            let (kind, mtime, mode) = match node {
                Node::Dir(d) => {
                    out.dirs += 1;
                    let mtime = d.mtime;
                    queue.push_back((entry, d));
                    let kind = EntryKind::Dir {
                        children: Run::default(),
                    };
                    (kind, mtime, 0o755)
                }
                Node::File(i) => {
                    let l = &listed[i];
                    out.total_bytes += l.size;
                    objects.push(Object {
                        entry,
                        key: l.key.clone(),
                        size: l.size,
                        pin: Pin {
                            etag: l.etag.clone(),
                            version: l.version.clone(),
                        },
                    });
                    let kind = EntryKind::File {
                        size: l.size,
                        sha256: Sha256::default(),
                        chunks: Run::default(),
                    };
                    (kind, timestamp(l.modified), 0o644)
                }
            };
            out.entries.push(Entry {
                parent: idx,
                name,
                mode,
                mtime,
                kind,
            });
        }
        let len = out.entries.len() as u32 - start;
        if let EntryKind::Dir { children } = &mut out.entries[idx as usize].kind {
            *children = Run { start, len };
        }
    }
    (out, objects)
}

fn timestamp(t: std::time::SystemTime) -> Timestamp {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        secs: d.as_secs() as i64,
        nanos: d.subsec_nanos(),
    }
}

#[cfg(test)]
mod tests;
