//! What push remembers of the files it has hashed, so that a re-push of a tree that did not
//! change reads none of its content (as git's index and restic's parent snapshot do).
//!
//! For one source directory, dataset and store, it keeps each file's stamp (size, mtime,
//! ctime, inode, device) and the SHA-256 its content had. A file whose stamp is the same at
//! the next push is taken to have that content, and its chunks are those of the file of that
//! SHA-256 in the parent version: nothing is read. Anything that writes a file changes its
//! ctime, which no user can set back, so an edit that keeps the mtime (`touch -r`, `cp -p`)
//! is still seen. `push --rehash` reads everything.
//!
//! The racy case: a file written again within the timestamp granularity of the filesystem
//! right after it was hashed would keep its stamp. So a stamp is remembered only if its ctime
//! is a margin older than the push, as git treats "racily clean" entries.
//!
//! The seal: a push whose files' stamps were all settled also keeps a digest of its whole
//! scan (every entry's name, mode and mtime, every file's stamp, see
//! [`Scanned::digest`](super::walk::Scanned::digest)) beside the SHA-256 of the manifest that
//! tree was. The next push whose scan has the same digest, while the dataset's latest version
//! is still that manifest, is the same tree again: it needs no lease, no manifest and no plan,
//! only the walk and one look at the dataset's versions.
//!
//! The cache is local state, one file per source in a directory the caller gives (the CLI's
//! is under the user's state directory, see [`state_dir`]). It is only ever advice: lost, stale or damaged, it costs a full read, never a wrong version,
//! because the hash it gives must also be in the parent version.

use super::walk::Stamp;
use crate::format::Sha256;
use bincode::{Decode, Encode};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How much older than the push a file's ctime must be for its stamp to be remembered:
/// more than the timestamp granularity of any filesystem people push from (FAT's is 2 s).
pub const RACY_MARGIN: Duration = Duration::from_secs(3);

/// Bumped when the layout below changes; an older file is ignored.
const FORMAT: u32 = 1;

/// A scanned tree and the version it was: see the module's doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seal {
    /// [`Scanned::digest`](super::walk::Scanned::digest) of the tree.
    pub tree: Sha256,
    /// The number of the version that tree was.
    pub version: u64,
    /// The SHA-256 of that version's encoded manifest.
    pub manifest: Sha256,
}

impl Seal {
    /// The seal the last push of `source` to `dataset` of `store_url` left in `dir`, if any.
    /// Read without the cache's lock: a seal is true whenever it was written (the writer
    /// renames it into place), and the version it names is checked against the store.
    pub fn read(dir: &Path, store_url: &str, dataset: &str, source: &Path) -> Option<Seal> {
        let path = file_for(dir, store_url, dataset, source)?;
        Seal::from_bytes(&std::fs::read(seal_path(&path)).ok()?)
    }

    fn to_bytes(self) -> [u8; 72] {
        let mut out = [0; 72];
        out[..32].copy_from_slice(&self.tree.0);
        out[32..40].copy_from_slice(&self.version.to_le_bytes());
        out[40..].copy_from_slice(&self.manifest.0);
        out
    }

    fn from_bytes(b: &[u8]) -> Option<Seal> {
        let b: &[u8; 72] = b.try_into().ok()?;
        Some(Seal {
            tree: Sha256(b[..32].try_into().ok()?),
            version: u64::from_le_bytes(b[32..40].try_into().ok()?),
            manifest: Sha256(b[40..].try_into().ok()?),
        })
    }
}

#[derive(Encode, Decode)]
struct Stored {
    format: u32,
    files: Vec<(Vec<u8>, StoredStamp, [u8; 32])>,
}

#[derive(Clone, Copy, PartialEq, Eq, Encode, Decode)]
struct StoredStamp {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    dev: u64,
}

impl From<&Stamp> for StoredStamp {
    fn from(s: &Stamp) -> StoredStamp {
        StoredStamp {
            size: s.size,
            mtime: s.mtime,
            ctime: s.ctime,
            ino: s.ino,
            dev: s.dev,
        }
    }
}

/// The remembered stamps of one source, and those learnt by the push under way.
pub struct StatCache {
    path: Option<PathBuf>,
    /// Held while the push runs: a second push of the same source to the same dataset, from
    /// a timer that fired again or a hand, is refused rather than racing the first.
    _lock: Option<std::fs::File>,
    /// What the last push learnt, in the order it met the files (the walk's, which is the
    /// same again for a tree that did not change: each file is then found where the last one
    /// left off, with no table to build).
    known: Vec<(Vec<u8>, StoredStamp, [u8; 32])>,
    /// Where the next file is expected in `known`.
    next: usize,
    /// `known` by a digest of the path, built when a file is not where it was expected.
    index: Option<HashMap<u64, usize>>,
    learnt: Vec<Learnt>,
    /// The manifest of the version this push made or built on, to keep.
    manifest: Option<bytes::Bytes>,
    /// Stamps with a ctime after this are not remembered (see [`RACY_MARGIN`]).
    settled_before: (i64, i64),
    /// The seal of this push, kept when it is saved unless a stamp was too recent.
    new_seal: Option<Seal>,
    /// A stamp was too recent to remember: this tree gets no seal.
    racy: bool,
}

/// A file's content as the cache remembers it, from [`StatCache::hash_of`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remembered {
    pub hash: Sha256,
    /// Its place among what was known.
    slot: usize,
}

/// What this push learnt of one file.
enum Learnt {
    /// The same as known at this place: nothing to copy.
    Same(usize),
    New(Vec<u8>, StoredStamp, [u8; 32]),
}

impl StatCache {
    /// The cache in `dir` of pushes of `source` to `dataset` of the store at `store_url`;
    /// empty if there is none yet, or if it cannot be read. `Err` with the PID of the
    /// holder when another push of the same source to the same dataset is running here.
    pub fn load(
        dir: &Path,
        store_url: &str,
        dataset: &str,
        source: &Path,
    ) -> Result<StatCache, u32> {
        let path = file_for(dir, store_url, dataset, source);
        let lock = match &path {
            Some(p) => lock(p)?,
            None => None,
        };
        let known = path
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|raw| {
                bincode::decode_from_slice::<Stored, _>(&raw, bincode::config::standard())
                    .ok()
                    .map(|(s, _)| s)
            })
            .filter(|s| s.format == FORMAT)
            .map(|s| s.files)
            .unwrap_or_default();
        let settled = SystemTime::now()
            .checked_sub(RACY_MARGIN)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .unwrap_or_default();
        Ok(StatCache {
            path,
            _lock: lock,
            known,
            next: 0,
            index: None,
            learnt: Vec::new(),
            manifest: None,
            settled_before: (settled.as_secs() as i64, settled.subsec_nanos() as i64),
            new_seal: None,
            racy: false,
        })
    }

    /// A cache that knows nothing and remembers nothing (a push of a source with no home).
    pub fn none() -> StatCache {
        StatCache {
            path: None,
            _lock: None,
            known: Vec::new(),
            next: 0,
            index: None,
            learnt: Vec::new(),
            manifest: None,
            settled_before: (0, 0),
            new_seal: None,
            racy: false,
        }
    }

    /// Forgets what was known (for `--rehash`), still remembering what this push learns.
    pub fn forget_known(&mut self) {
        self.known.clear();
        self.index = None;
    }

    /// Seals this push's tree as `version`, when it is saved: unless a file's stamp was too
    /// recent to trust, a later scan with digest `tree` is that version again.
    pub fn seal_as(&mut self, tree: Sha256, version: u64, manifest: Sha256) {
        self.new_seal = Some(Seal {
            tree,
            version,
            manifest,
        });
    }

    /// Ends a push that found its seal unbroken: nothing was learnt, so only the time of the
    /// last completed push is set (see [`last_completed`]).
    pub fn confirm(self) {
        if let Some(path) = &self.path {
            if let Err(e) = touch(path) {
                tracing::warn!(
                    "cannot set the time of {}: {}",
                    path.display(),
                    crate::io_cause::Cause(&e)
                );
            }
        }
    }

    /// The SHA-256 that the file at `rel` (its path in the tree) had when it last had this
    /// stamp. Asked in the walk's order: a file is looked for where the previous one was
    /// found, and only elsewhere if it is not there.
    pub fn hash_of(&mut self, rel: &[u8], stamp: &Stamp) -> Option<Remembered> {
        let slot = match self.known.get(self.next) {
            Some((p, ..)) if p.as_slice() == rel => self.next,
            _ => self.find(rel)?,
        };
        self.next = slot + 1;
        let (_, known, hash) = &self.known[slot];
        (*known == StoredStamp::from(stamp)).then_some(Remembered {
            hash: Sha256(*hash),
            slot,
        })
    }

    /// Where `rel` is among what was known, wherever it is.
    fn find(&mut self, rel: &[u8]) -> Option<usize> {
        let known = &self.known;
        let index = self.index.get_or_insert_with(|| {
            known
                .iter()
                .enumerate()
                .map(|(i, (p, ..))| (digest(p), i))
                .collect()
        });
        let &slot = index.get(&digest(rel))?;
        (self.known[slot].0 == rel).then_some(slot)
    }

    /// Records that the file at `rel` with `stamp` has content `hash`, unless the stamp is
    /// too recent to be trusted next time. `remembered` is what [`hash_of`](Self::hash_of)
    /// said of it.
    pub fn learn(
        &mut self,
        rel: &[u8],
        stamp: &Stamp,
        hash: Sha256,
        remembered: Option<Remembered>,
    ) {
        match remembered {
            Some(r) if r.hash == hash => self.learnt.push(Learnt::Same(r.slot)),
            _ if stamp.ctime < self.settled_before && stamp.mtime < self.settled_before => self
                .learnt
                .push(Learnt::New(rel.to_vec(), StoredStamp::from(stamp), hash.0)),
            _ => self.racy = true,
        }
    }

    /// The manifest of the version the last push made or built on, if it is the one of
    /// SHA-256 `hash`: a copy kept beside the stamps, so that the next push of an unchanged
    /// tree need not fetch it (checked by its hash, it can never stand for another).
    pub fn manifest_copy(&self, hash: &Sha256) -> Option<bytes::Bytes> {
        let bytes = std::fs::read(manifest_path(self.path.as_ref()?)).ok()?;
        (Sha256::of(&bytes) == *hash).then(|| bytes.into())
    }

    /// Keeps `manifest` (the encoded manifest of the version this push made or built on) for
    /// [`manifest_copy`](Self::manifest_copy), when the push is saved.
    pub fn keep_manifest(&mut self, manifest: bytes::Bytes) {
        self.manifest = Some(manifest);
    }

    /// Replaces the stored cache by what this push learnt (files no longer in the tree are
    /// forgotten). Written aside and renamed, so a reader never sees half of it; when it
    /// would be the same again, only its time is set (it tells when the last push ended). A
    /// failure is logged and costs only a full read next time.
    pub fn save(self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        if let Some(m) = &self.manifest {
            if let Err(e) = write_aside(&manifest_path(&path), m) {
                tracing::warn!(
                    "cannot keep a copy of the manifest in {}: {}; the next push fetches it",
                    path.display(),
                    crate::io_cause::Cause(&e)
                );
            }
        }
        let seal = self.new_seal.filter(|_| !self.racy);
        let sealed = match seal {
            Some(seal) => write_aside(&seal_path(&path), &seal.to_bytes()),
            None => std::fs::remove_file(seal_path(&path)).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            }),
        };
        if let Err(e) = sealed {
            tracing::warn!(
                "cannot keep the seal of this tree in {}: {}; the next push plans every file",
                path.display(),
                crate::io_cause::Cause(&e)
            );
        }
        let same = !self.known.is_empty()
            && self.learnt.len() == self.known.len()
            && self
                .learnt
                .iter()
                .enumerate()
                .all(|(i, l)| matches!(l, Learnt::Same(s) if *s == i));
        let result = if same {
            touch(&path)
        } else {
            self.write(&path)
        };
        if let Err(e) = result {
            tracing::warn!(
                "cannot save what this push learnt of its files in {}: {}; the next push \
                 reads them all again",
                path.display(),
                crate::io_cause::Cause(&e)
            );
        }
    }

    fn write(self, path: &Path) -> std::io::Result<()> {
        let mut known: Vec<_> = self.known.into_iter().map(Some).collect();
        let files = self
            .learnt
            .into_iter()
            .filter_map(|l| match l {
                Learnt::Same(i) => known[i].take(),
                Learnt::New(p, st, h) => Some((p, st, h)),
            })
            .collect();
        let stored = Stored {
            format: FORMAT,
            files,
        };
        let bytes = bincode::encode_to_vec(&stored, bincode::config::standard())
            .map_err(std::io::Error::other)?;
        write_aside(path, &bytes)
    }
}

/// Writes `bytes` as the file `path`, aside and renamed: a reader sees the old or the new.
fn write_aside(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("the cache file is in a directory");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Where the manifest copy of the cache file `path` is.
fn manifest_path(path: &Path) -> PathBuf {
    path.with_extension("manifest")
}

/// Sets the time of the cache file `path` to now: the end of the last completed push.
fn touch(path: &Path) -> std::io::Result<()> {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()))
}

/// Where the seal of the cache file `path` is.
fn seal_path(path: &Path) -> PathBuf {
    path.with_extension("seal")
}

/// A digest of a path, to find it among the known ones.
fn digest(path: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// When the last push of `source` to `dataset` of `store_url` that ran to its end finished,
/// changed or not (the time its cache was saved).
pub fn last_completed(
    dir: &Path,
    store_url: &str,
    dataset: &str,
    source: &Path,
) -> Option<SystemTime> {
    let path = file_for(dir, store_url, dataset, source)?;
    std::fs::metadata(path).ok()?.modified().ok()
}

/// Takes the lock beside the cache file `path`, or says which process holds it. A lock
/// that cannot be made (no state directory) is no lock: the push goes on.
fn lock(path: &Path) -> Result<Option<std::fs::File>, u32> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let Some(dir) = path.parent() else {
        return Ok(None);
    };
    if std::fs::create_dir_all(dir).is_err() {
        return Ok(None);
    }
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path.with_extension("lock"))
    else {
        return Ok(None);
    };
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut pid = String::new();
        let _ = f.read_to_string(&mut pid);
        return Err(pid.trim().parse().unwrap_or(0));
    }
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = write!(f, "{}", std::process::id());
    Ok(Some(f))
}

/// Where the cache of one source, dataset and store lives in `dir`: named by a digest of the
/// three, so that any path and URL make a valid, fixed-length name.
fn file_for(dir: &Path, store_url: &str, dataset: &str, source: &Path) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let source = std::fs::canonicalize(source).ok()?;
    let mut key = Vec::new();
    for part in [
        store_url.as_bytes(),
        dataset.as_bytes(),
        source.as_os_str().as_bytes(),
    ] {
        key.extend_from_slice(part);
        key.push(0);
    }
    let name = Sha256::of(&key).to_hex()[..32].to_string();
    Some(dir.join(name))
}

/// The directory of datastore's local state on this machine: `$DATASTORE_STATE_DIR`, else
/// `$XDG_STATE_HOME/datastore`, else `~/.local/state/datastore`.
pub fn state_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DATASTORE_STATE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    dirs::state_dir().map(|d| d.join("datastore"))
}

#[cfg(test)]
mod tests;
