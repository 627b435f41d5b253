//! The operations behind the inspection and maintenance commands: each takes a catalog and
//! returns a report; the CLI prints it.

pub mod diff;
pub mod du;
pub mod gc;
pub mod get;
pub mod prefetch;
pub mod verify;

use crate::catalog::{Catalog, CatalogError};
use crate::format::name::Target;
use crate::format::{Manifest, VersionRef};

/// A resolved `NAME@VER/PATH`: the version, its manifest, and the entry the path names.
pub struct Opened {
    pub version: VersionRef,
    pub manifest: Manifest,
    pub entry: usize,
}

/// Why a path could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{0} has no entry {1}; `datastore ls {0}` lists its files")]
    NoSuchPath(String, String),
}

/// Resolves a target to a committed version and an entry of it.
pub async fn open(catalog: &Catalog, t: &Target) -> Result<Opened, OpenError> {
    let version = catalog.resolve(&t.dataset, t.version).await?;
    let manifest = catalog.manifest(&version).await?;
    let entry = manifest
        .lookup(&t.path)
        .ok_or_else(|| OpenError::NoSuchPath(version.label(), t.path_display()))?;
    Ok(Opened {
        version,
        manifest,
        entry,
    })
}
