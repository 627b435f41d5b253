//! The datasets and versions in a store: listing, resolving `NAME@VER`, loading manifests,
//! committing a new version atomically, and deleting versions.

pub mod lease;

use crate::format::envelope::{self, Kind};
use crate::format::name::{check_dataset_name, NameError, VersionSel};
use crate::format::{FormatError, Manifest, Sha256, VersionRef, VersionState};
use crate::store::tier::Tier;
use crate::store::{keys, Store, StoreError};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Why a dataset or version could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("dataset '{0}' not found; `datastore ls` lists the datasets in this store")]
    UnknownDataset(String),
    #[error("version {0}@v{1} not found; `datastore log {0}` lists its versions")]
    UnknownVersion(String, u64),
    #[error("version {0}@v{1} was deleted; `datastore log {0}` lists the versions that remain")]
    DeletedVersion(String, u64),
    #[error(
        "ref of {dataset}@v{version} ({key}) {fault}; the store is damaged: restore that object \
         from a backup, or drop the version with `datastore rm {dataset}@v{version}`",
        key = keys::version_ref(.dataset, *.version)
    )]
    BadRef {
        dataset: String,
        version: u64,
        fault: RefFault,
    },
    #[error(
        "ref of {dataset}@v{version} ({key}) uses format version {found}, newer than this \
         datastore understands; upgrade datastore",
        key = keys::version_ref(.dataset, *.version)
    )]
    NewerRef {
        dataset: String,
        version: u64,
        found: u16,
    },
    #[error(
        "{0} is under refs/ but is not a version ref (refs/NAME/N); the store is damaged: move \
         it out of refs/, and restore from a backup any ref it replaced"
    )]
    Unexpected(String),
    #[error("manifest of {label} ({key}) {fault}; {advice}", advice = .fault.advice(.label))]
    BadManifest {
        label: String,
        key: String,
        fault: ManifestFault,
    },
    #[error("could not find a free version number for '{0}' after {1} attempts; too many concurrent pushes")]
    CommitContention(String, u32),
}

impl CatalogError {
    /// Whether this is damage in the store (a ref or manifest that cannot be read, an object
    /// datastore never writes under refs/), rather than a name that is not there or a store
    /// that failed to answer.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            CatalogError::BadRef { .. }
                | CatalogError::NewerRef { .. }
                | CatalogError::Unexpected(_)
                | CatalogError::BadManifest { .. }
        )
    }
}

/// How a version ref object fails to be a ref, in words of our own: the decoder calls every
/// object shorter than a header truncated, garbage included, and its details are bincode's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefFault {
    #[error("is empty")]
    Empty,
    #[error("is truncated")]
    Truncated,
    #[error("holds something other than a version ref")]
    NotARef,
    #[error("does not decode")]
    Undecodable,
    #[error("names {0} instead")]
    Misnamed(String),
}

impl RefFault {
    fn of(bytes: &[u8], e: &FormatError) -> RefFault {
        match e {
            _ if bytes.is_empty() => RefFault::Empty,
            FormatError::Truncated(_) if starts_like_a_ref(bytes) => RefFault::Truncated,
            FormatError::Truncated(_) | FormatError::BadMagic(_) => RefFault::NotARef,
            _ => RefFault::Undecodable,
        }
    }
}

/// Whether `bytes` begin as every version ref begins (its magic number), so that a short
/// object is a ref cut off rather than something else.
fn starts_like_a_ref(bytes: &[u8]) -> bool {
    let header = envelope::seal(Kind::VersionRef, &[], false);
    let n = bytes.len().min(4);
    bytes[..n] == header[..n]
}

/// How a version's manifest fails to load.
#[derive(Debug, thiserror::Error)]
pub enum ManifestFault {
    #[error("is missing")]
    Missing,
    #[error("does not match its hash")]
    HashMismatch,
    /// It matches its hash, so it is the very object the push stored.
    #[error("is unreadable ({0})")]
    Unreadable(FormatError),
}

impl ManifestFault {
    /// What to do about it. Never `datastore verify`, which reports this same fault.
    fn advice(&self, label: &str) -> String {
        match self {
            ManifestFault::Missing | ManifestFault::HashMismatch => format!(
                "the store is damaged: restore that object from a backup, or drop the version \
                 with `datastore rm {label}`"
            ),
            ManifestFault::Unreadable(FormatError::UnsupportedVersion { found, .. })
                if *found > Kind::Manifest.newest() =>
            {
                "it was pushed by a newer datastore: upgrade datastore".into()
            }
            ManifestFault::Unreadable(_) => {
                format!("it was pushed that way: drop the version with `datastore rm {label}`")
            }
        }
    }
}

/// The refs found under refs/ (of one dataset or of all), and what could not be read there.
/// Commands that show or repair datasets list what reads and name the rest, so one damaged
/// object neither hides nor blocks every other version.
#[derive(Debug, Default)]
pub struct Listing {
    /// Every ref that reads, tombstones included: datasets in name order, each newest first.
    pub versions: Vec<VersionRef>,
    /// Everything else, each a damage error ([`CatalogError::is_damage`]).
    pub damage: Vec<CatalogError>,
}

impl Listing {
    /// The committed versions, in listing order.
    pub fn committed(&self) -> impl Iterator<Item = &VersionRef> {
        self.versions.iter().filter(|v| v.is_committed())
    }
}

/// How many refs are fetched at once by a listing.
const REF_FETCHES: usize = 32;

/// A new version, ready to be committed once its content and manifest are stored.
pub struct NewVersion {
    pub manifest: Sha256,
    pub manifest_size: u64,
    pub parent: Option<u64>,
    pub files: u64,
    pub bytes: u64,
    pub message: String,
}

/// The datasets and versions of one store.
#[derive(Clone)]
pub struct Catalog {
    store: Store,
    /// The shared cache tier manifests are read through first, if any (refs never are).
    tier: Option<Arc<Tier>>,
}

impl Catalog {
    pub fn new(store: Store) -> Self {
        Catalog { store, tier: None }
    }

    /// Manifests read through `tier` first: they are named by their SHA-256, like chunks.
    pub fn with_tier(mut self, tier: Option<Arc<Tier>>) -> Self {
        self.tier = tier;
        self
    }

    /// The shared cache tier content is read through, if any.
    pub fn tier(&self) -> Option<&Arc<Tier>> {
        self.tier.as_ref()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Every ref under refs/ (`dataset` `None`) or under refs/NAME/, read, with what could not
    /// be read named in [`Listing::damage`]. Fails only when the store does, or when the
    /// dataset asked for has nothing under refs/ at all.
    pub async fn list(&self, dataset: Option<&str>) -> Result<Listing, CatalogError> {
        let (numbers, unexpected) = self.scan(dataset).await?;
        if let Some(d) = dataset.filter(|_| numbers.is_empty() && unexpected.is_empty()) {
            return Err(CatalogError::UnknownDataset(d.into()));
        }
        let wanted = numbers
            .iter()
            .flat_map(|(d, ns)| ns.iter().rev().map(move |&n| (d.as_str(), n)));
        let read: Vec<Result<VersionRef, CatalogError>> = futures::stream::iter(wanted)
            .map(|(d, n)| self.version(d, n))
            .buffered(REF_FETCHES)
            .collect()
            .await;
        let mut listing = Listing::default();
        for r in read {
            match r {
                Ok(v) => listing.versions.push(v),
                Err(e) if e.is_damage() => listing.damage.push(e),
                Err(e) => return Err(e),
            }
        }
        listing
            .damage
            .extend(unexpected.into_iter().map(CatalogError::Unexpected));
        Ok(listing)
    }

    /// The refs of one dataset, for the commands that show or delete its versions. A dataset
    /// whose every version was deleted, and that holds no damage, is unknown to users, though
    /// its numbers stay taken.
    pub async fn list_dataset(&self, dataset: &str) -> Result<Listing, CatalogError> {
        let listing = self.list(Some(dataset)).await?;
        if listing.committed().next().is_none() && listing.damage.is_empty() {
            return Err(CatalogError::UnknownDataset(dataset.into()));
        }
        Ok(listing)
    }

    /// The version numbers of each dataset under refs/ (or refs/NAME/), ascending, and every
    /// entry there that datastore never writes: an object that is no `refs/NAME/N`, a
    /// directory where a ref belongs (a directory store shows an empty one only as a prefix),
    /// or an object where the prefix of the dataset asked for belongs.
    async fn scan(
        &self,
        dataset: Option<&str>,
    ) -> Result<(BTreeMap<String, Vec<u64>>, BTreeSet<String>), CatalogError> {
        let prefix = match dataset {
            Some(d) => {
                check_dataset_name(d)?;
                keys::dataset_refs(d)
            }
            None => keys::REFS.to_string(),
        };
        let (objects, dirs) =
            futures::try_join!(self.store.list(&prefix), self.store.list_dirs(&prefix))?;
        let mut numbers: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut unexpected = BTreeSet::new();
        for o in &objects {
            match parse_ref(&o.key) {
                Ok((name, n)) => numbers.entry(name.to_string()).or_default().push(n),
                Err(stray) => {
                    unexpected.insert(stray);
                }
            }
        }
        // The directories under refs/ are datasets, each of which may hold a directory where
        // a ref belongs; under refs/NAME/ every directory is one.
        let datasets = match dataset {
            Some(_) => {
                unexpected.extend(dirs.iter().map(|sub| format!("{prefix}{sub}/")));
                Vec::new()
            }
            None => {
                let (good, bad): (Vec<String>, Vec<String>) = dirs
                    .into_iter()
                    .partition(|d| check_dataset_name(d).is_ok());
                unexpected.extend(bad.iter().map(|d| format!("{prefix}{d}/")));
                good
            }
        };
        let subdirs: Vec<Vec<String>> = futures::stream::iter(datasets)
            .map(|d| async move {
                let p = keys::dataset_refs(&d);
                let subs = self.store.list_dirs(&p).await?;
                Ok::<_, StoreError>(subs.iter().map(|s| format!("{p}{s}/")).collect())
            })
            .buffer_unordered(REF_FETCHES)
            .try_collect()
            .await?;
        unexpected.extend(subdirs.into_iter().flatten());
        if let Some(d) = dataset.filter(|_| numbers.is_empty() && unexpected.is_empty()) {
            // Such an object hides the dataset from a listing of refs/ (it is no prefix).
            let key = format!("{}{d}", keys::REFS);
            if self.store.exists(&key).await? {
                unexpected.insert(key);
            }
        }
        for ns in numbers.values_mut() {
            ns.sort_unstable();
        }
        Ok((numbers, unexpected))
    }

    /// Version numbers that exist for `dataset` (including tombstones), ascending.
    pub async fn version_numbers(&self, dataset: &str) -> Result<Vec<u64>, CatalogError> {
        check_dataset_name(dataset)?;
        let prefix = keys::dataset_refs(dataset);
        let mut ns: Vec<u64> = self
            .store
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|l| keys::parse_ref_key(dataset, &l.key))
            .collect();
        ns.sort_unstable();
        Ok(ns)
    }

    /// Reads one ref.
    pub async fn version(&self, dataset: &str, n: u64) -> Result<VersionRef, CatalogError> {
        let bytes = match self.store.get(&keys::version_ref(dataset, n)).await {
            Err(e) if e.is_not_found() => {
                return Err(CatalogError::UnknownVersion(dataset.into(), n))
            }
            r => r?,
        };
        let bad = |fault| CatalogError::BadRef {
            dataset: dataset.into(),
            version: n,
            fault,
        };
        let r = match VersionRef::decode(&bytes) {
            Ok(r) => r,
            Err(FormatError::UnsupportedVersion { found, .. })
                if found > Kind::VersionRef.newest() =>
            {
                return Err(CatalogError::NewerRef {
                    dataset: dataset.into(),
                    version: n,
                    found,
                })
            }
            Err(e) => return Err(bad(RefFault::of(&bytes, &e))),
        };
        if r.dataset != dataset || r.version != n {
            // The name comes from the store: escaped, so it cannot break the message's line.
            let named = format!("{}@v{}", r.dataset.escape_debug(), r.version);
            return Err(bad(RefFault::Misnamed(named)));
        }
        Ok(r)
    }

    /// The newest committed version, or `None` if the dataset has none. Refused while the
    /// dataset's refs hold an entry datastore never writes, which may hide the newest.
    pub async fn latest(&self, dataset: &str) -> Result<Option<VersionRef>, CatalogError> {
        let (mut numbers, unexpected) = self.scan(Some(dataset)).await?;
        if let Some(stray) = unexpected.into_iter().next() {
            return Err(CatalogError::Unexpected(stray));
        }
        let ns = numbers.remove(dataset).unwrap_or_default();
        for n in ns.into_iter().rev() {
            let r = self.version(dataset, n).await?;
            if r.is_committed() {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// Version `n` of `dataset`, if it is the latest, committed, with manifest `manifest`:
    /// what [`latest`](Self::latest) would say, in one round trip instead of two (the listing
    /// and the ref are asked at once). `None` when it is not, or cannot be told.
    pub async fn latest_if(&self, dataset: &str, n: u64, manifest: &Sha256) -> Option<VersionRef> {
        let (scanned, r) = futures::join!(self.scan(Some(dataset)), self.version(dataset, n));
        let ((numbers, unexpected), r) = (scanned.ok()?, r.ok()?);
        let newest = numbers.get(dataset)?.iter().max();
        (unexpected.is_empty() && newest == Some(&n) && r.is_committed() && r.manifest == *manifest)
            .then_some(r)
    }

    /// Resolves `NAME@VER` to a committed version.
    pub async fn resolve(
        &self,
        dataset: &str,
        sel: VersionSel,
    ) -> Result<VersionRef, CatalogError> {
        check_dataset_name(dataset)?;
        match sel {
            VersionSel::Latest => self
                .latest(dataset)
                .await?
                .ok_or_else(|| CatalogError::UnknownDataset(dataset.into())),
            VersionSel::Number(n) => {
                let r = match self.version(dataset, n).await {
                    Err(CatalogError::UnknownVersion(..))
                        if self.version_numbers(dataset).await?.is_empty() =>
                    {
                        return Err(CatalogError::UnknownDataset(dataset.into()))
                    }
                    r => r?,
                };
                if !r.is_committed() {
                    return Err(CatalogError::DeletedVersion(dataset.into(), n));
                }
                Ok(r)
            }
        }
    }

    /// Fetches a version's manifest, checks it against the hash in the ref, and decodes it.
    pub async fn manifest(&self, v: &VersionRef) -> Result<Manifest, CatalogError> {
        let bytes = self.manifest_bytes(v).await?;
        let v = v.clone();
        // Decoding a large manifest takes a noticeable fraction of a second: keep it off the
        // async workers.
        tokio::task::spawn_blocking(move || Self::decode_manifest(&v, &bytes))
            .await
            .expect("manifest decoding does not panic")
    }

    /// The stored bytes of version `v`'s manifest, checked against its SHA-256.
    pub async fn manifest_bytes(&self, v: &VersionRef) -> Result<Bytes, CatalogError> {
        let key = keys::manifest(&v.manifest);
        let bad = |fault| CatalogError::BadManifest {
            label: v.label(),
            key: key.clone(),
            fault,
        };
        let tiered = match &self.tier {
            Some(t) => t.get(&self.store, &key, None, usize::MAX, false).await,
            None => None,
        };
        match tiered {
            Some((b, sha256)) if sha256 == v.manifest => Ok(b),
            other => {
                if let (Some(t), Some(_)) = (&self.tier, other) {
                    t.mismatched(&self.store, &key);
                }
                let bytes = match self.store.get_sized(&key, v.manifest_size).await {
                    Err(e) if e.is_not_found() => return Err(bad(ManifestFault::Missing)),
                    r => r?,
                };
                if Sha256::of(&bytes) != v.manifest {
                    return Err(bad(ManifestFault::HashMismatch));
                }
                Ok(bytes)
            }
        }
    }

    /// Decodes the bytes of version `v`'s manifest (from
    /// [`manifest_bytes`](Self::manifest_bytes), or a copy checked against its SHA-256).
    /// Blocking: a large manifest takes a noticeable fraction of a second.
    pub fn decode_manifest(v: &VersionRef, bytes: &[u8]) -> Result<Manifest, CatalogError> {
        Manifest::decode(bytes).map_err(|e| CatalogError::BadManifest {
            label: v.label(),
            key: keys::manifest(&v.manifest),
            fault: ManifestFault::Unreadable(e),
        })
    }

    /// Makes a version visible: creates the next free ref with an atomic create-if-absent, so
    /// concurrent pushes get distinct numbers and a number is never reused.
    pub async fn commit(&self, dataset: &str, v: NewVersion) -> Result<VersionRef, CatalogError> {
        check_dataset_name(dataset)?;
        const ATTEMPTS: u32 = 64;
        let mut next = self
            .version_numbers(dataset)
            .await?
            .last()
            .map_or(1, |n| n + 1);
        for _ in 0..ATTEMPTS {
            let r = VersionRef {
                dataset: dataset.to_string(),
                version: next,
                manifest: v.manifest,
                manifest_size: v.manifest_size,
                parent: v.parent,
                created_unix: unix_now(),
                files: v.files,
                bytes: v.bytes,
                message: v.message.clone(),
                state: VersionState::Committed,
            };
            let key = keys::version_ref(dataset, next);
            let bytes = Bytes::from(r.encode());
            if self.store.put_if_absent(&key, bytes.clone()).await? {
                return Ok(r);
            }
            // Taken: by another push, or by this one, if the store made the ref but its answer
            // was lost and the client sent the create again. The bytes tell which (they hold
            // the creation time of this attempt): ours is committed, not to be made twice.
            match self.store.get(&key).await {
                Ok(there) if there == bytes => return Ok(r),
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            next += 1;
        }
        Err(CatalogError::CommitContention(dataset.into(), ATTEMPTS))
    }

    /// Turns a committed version into a tombstone. Its content stays until `gc`. A damaged ref
    /// becomes a tombstone too: deleting its version is how a user repairs it when no backup
    /// holds the ref.
    pub async fn delete(&self, dataset: &str, n: u64) -> Result<VersionRef, CatalogError> {
        let state = VersionState::Deleted {
            at_unix: unix_now(),
        };
        let r = match self.version(dataset, n).await {
            Ok(r) if !r.is_committed() => {
                return Err(CatalogError::DeletedVersion(dataset.into(), n))
            }
            Ok(r) => VersionRef { state, ..r },
            // What the damaged ref named is unknown: its tombstone names no manifest, and
            // keeps the number taken.
            Err(CatalogError::BadRef { .. }) => VersionRef {
                dataset: dataset.into(),
                version: n,
                manifest: Sha256::default(),
                manifest_size: 0,
                parent: None,
                created_unix: 0,
                files: 0,
                bytes: 0,
                message: String::new(),
                state,
            },
            // No version of it at all: it is the dataset that is not there.
            Err(CatalogError::UnknownVersion(..))
                if self.version_numbers(dataset).await?.is_empty() =>
            {
                return Err(CatalogError::UnknownDataset(dataset.into()))
            }
            Err(e) => return Err(e),
        };
        self.store
            .put(&keys::version_ref(dataset, n), Bytes::from(r.encode()))
            .await?;
        Ok(r)
    }
}

/// The dataset and number a key under refs/ names; or, when it names none, the entry to
/// report: the key itself, or the directory it lies in where datastore makes none.
fn parse_ref(key: &str) -> Result<(&str, u64), String> {
    let rest = key.strip_prefix(keys::REFS).unwrap_or(key);
    let Some((name, tail)) = rest.split_once('/') else {
        return Err(key.to_string());
    };
    if check_dataset_name(name).is_err() {
        return Err(format!("{}{name}/", keys::REFS));
    }
    if let Some((sub, _)) = tail.split_once('/') {
        return Err(format!("{}{sub}/", keys::dataset_refs(name)));
    }
    keys::parse_ref_key(name, key)
        .map(|n| (name, n))
        .ok_or_else(|| key.to_string())
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests;
