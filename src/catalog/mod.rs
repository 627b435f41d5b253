//! The datasets and versions in a store: listing, resolving `NAME@VER`, loading manifests,
//! committing a new version atomically, and deleting versions.

pub mod lease;

use crate::format::name::{check_dataset_name, NameError, VersionSel};
use crate::format::{FormatError, Manifest, Sha256, VersionRef, VersionState};
use crate::store::{keys, Store, StoreError};
use bytes::Bytes;

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
        "ref of {0}@v{1} (refs/{0}/{1}) is unreadable ({2}); the store is damaged: restore that object from a backup"
    )]
    BadRef(String, u64, FormatError),
    #[error("manifest of {label} is unreadable ({source}); the store is damaged: run `datastore verify {dataset}`")]
    BadManifest {
        label: String,
        dataset: String,
        source: FormatError,
    },
    #[error(
        "manifest of {0} does not match its hash; the store is damaged: run `datastore verify {1}`"
    )]
    ManifestHashMismatch(String, String),
    #[error("could not find a free version number for '{0}' after {1} attempts; too many concurrent pushes")]
    CommitContention(String, u32),
}

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
}

impl Catalog {
    pub fn new(store: Store) -> Self {
        Catalog { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Names of datasets that have at least one ref (committed or deleted), sorted.
    pub async fn dataset_names(&self) -> Result<Vec<String>, CatalogError> {
        let mut names: Vec<String> = self
            .store
            .list_dirs(keys::REFS)
            .await?
            .into_iter()
            .filter(|n| check_dataset_name(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
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
        let r =
            VersionRef::decode(&bytes).map_err(|e| CatalogError::BadRef(dataset.into(), n, e))?;
        if r.dataset != dataset || r.version != n {
            let why = FormatError::Corrupt("version ref", format!("it names {}", r.label()));
            return Err(CatalogError::BadRef(dataset.into(), n, why));
        }
        Ok(r)
    }

    /// All refs of a dataset, newest first, tombstones included.
    pub async fn versions(&self, dataset: &str) -> Result<Vec<VersionRef>, CatalogError> {
        let ns = self.version_numbers(dataset).await?;
        if ns.is_empty() {
            return Err(CatalogError::UnknownDataset(dataset.into()));
        }
        let fetches = ns.iter().rev().map(|&n| self.version(dataset, n));
        futures::future::try_join_all(fetches).await
    }

    /// The committed versions of `dataset`, newest first. A dataset whose versions were all
    /// deleted is unknown to users, though its numbers stay taken.
    pub async fn committed(&self, dataset: &str) -> Result<Vec<VersionRef>, CatalogError> {
        let live: Vec<VersionRef> = self
            .versions(dataset)
            .await?
            .into_iter()
            .filter(VersionRef::is_committed)
            .collect();
        if live.is_empty() {
            return Err(CatalogError::UnknownDataset(dataset.into()));
        }
        Ok(live)
    }

    /// The newest committed version, or `None` if the dataset has none.
    pub async fn latest(&self, dataset: &str) -> Result<Option<VersionRef>, CatalogError> {
        for n in self.version_numbers(dataset).await?.into_iter().rev() {
            let r = self.version(dataset, n).await?;
            if r.is_committed() {
                return Ok(Some(r));
            }
        }
        Ok(None)
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
        let bytes = self
            .store
            .get_sized(&keys::manifest(&v.manifest), v.manifest_size)
            .await?;
        if Sha256::of(&bytes) != v.manifest {
            return Err(CatalogError::ManifestHashMismatch(
                v.label(),
                v.dataset.clone(),
            ));
        }
        // Decoding a large manifest takes a noticeable fraction of a second: keep it off the
        // async workers.
        let label = v.label();
        tokio::task::spawn_blocking(move || Manifest::decode(&bytes))
            .await
            .expect("manifest decoding does not panic")
            .map_err(|source| CatalogError::BadManifest {
                label,
                dataset: v.dataset.clone(),
                source,
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
            if self
                .store
                .put_if_absent(&key, Bytes::from(r.encode()))
                .await?
            {
                return Ok(r);
            }
            next += 1;
        }
        Err(CatalogError::CommitContention(dataset.into(), ATTEMPTS))
    }

    /// Turns a committed version into a tombstone. Its content stays until `gc`.
    pub async fn delete(&self, dataset: &str, n: u64) -> Result<VersionRef, CatalogError> {
        let mut r = self.version(dataset, n).await?;
        if !r.is_committed() {
            return Err(CatalogError::DeletedVersion(dataset.into(), n));
        }
        r.state = VersionState::Deleted {
            at_unix: unix_now(),
        };
        self.store
            .put(&keys::version_ref(dataset, n), Bytes::from(r.encode()))
            .await?;
        Ok(r)
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests;
