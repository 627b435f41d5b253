//! A version's manifest for the read engine: from the node's image of it when a mount on
//! this node has decoded it before, else fetched, verified and decoded, and imaged for the
//! next mount (see [`crate::cache::DiskCache::image`]).

use crate::cache::DiskCache;
use crate::catalog::{Catalog, CatalogError};
use crate::format::{Manifest, VersionRef};
use std::sync::Arc;

/// The manifest of `v`, through the disk cache's images when there is a disk cache.
pub async fn open(
    catalog: &Catalog,
    disk: Option<&Arc<DiskCache>>,
    v: &VersionRef,
) -> Result<Arc<Manifest>, CatalogError> {
    let Some(disk) = disk else {
        return Ok(Arc::new(catalog.manifest(v).await?));
    };
    let started = std::time::Instant::now();
    let (d, h) = (disk.clone(), v.manifest);
    if let Ok(Some(m)) = tokio::task::spawn_blocking(move || d.image(&h)).await {
        tracing::info!(
            "manifest of {} mapped from this node's image of it ({} entries, {:?})",
            v.label(),
            m.entries.len(),
            started.elapsed()
        );
        return Ok(Arc::new(m));
    }
    let m = Arc::new(catalog.manifest(v).await?);
    // Written off the mount's path; a daemon that exits waits for it (the runtime does).
    let (d, image) = (disk.clone(), m.clone());
    tokio::task::spawn_blocking(move || d.put_image(&h, &image));
    Ok(m)
}
