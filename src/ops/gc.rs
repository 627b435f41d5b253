//! `gc`: delete content that no committed version references.
//!
//! Safe against a push running at the same time: gc holds a lease, refuses to start while a
//! push holds one, and looks again before every batch of deletes (see `catalog::lease`). On
//! top of that, objects younger than the grace period are never deleted, whoever wrote them.

use crate::catalog::lease::{Lease, Operation};
use crate::catalog::{Catalog, CatalogError};
use crate::format::Location;
use crate::store::{keys, StoreError};
use std::collections::HashSet;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a push is running on this store ({0}); run gc again when it has finished")]
    PushRunning(String),
    #[error(
        "gc stopped after deleting {0} objects because a push started ({1}); run gc again later"
    )]
    Interrupted(u64, String),
}

#[derive(Debug, Default)]
pub struct GcReport {
    pub live_versions: u64,
    pub live_objects: u64,
    pub deleted_objects: u64,
    pub deleted_bytes: u64,
    /// Unreferenced objects kept because they are younger than the grace period.
    pub young_objects: u64,
    pub dry_run: bool,
}

const BATCH: usize = 256;

pub async fn gc(catalog: &Catalog, grace: Duration, dry_run: bool) -> Result<GcReport, GcError> {
    let lease = Lease::acquire(catalog.store(), Operation::Gc).await?;
    let result = run(catalog, &lease, grace, dry_run).await;
    lease.release().await;
    result
}

async fn run(
    catalog: &Catalog,
    lease: &Lease,
    grace: Duration,
    dry_run: bool,
) -> Result<GcReport, GcError> {
    if let Some(h) = lease.others(Operation::Push).await?.first() {
        return Err(GcError::PushRunning(h.to_string()));
    }
    let mut report = GcReport {
        dry_run,
        ..Default::default()
    };
    // Mark: every object a committed version references.
    let mut live: HashSet<String> = HashSet::new();
    for name in catalog.dataset_names().await? {
        for v in catalog.versions(&name).await? {
            if !v.is_committed() {
                continue;
            }
            report.live_versions += 1;
            let m = catalog.manifest(&v).await?;
            live.insert(keys::manifest(&v.manifest));
            live.extend(m.packs.iter().map(keys::pack));
            for c in &m.chunks {
                if c.location == Location::Blob {
                    live.insert(keys::blob(&c.hash));
                }
            }
        }
    }
    report.live_objects = live.len() as u64;

    // Sweep: unreferenced content older than the grace period.
    let now = lease.store_now().await?;
    let mut doomed = Vec::new();
    for prefix in [keys::BLOBS, keys::PACKS, keys::MANIFESTS] {
        for obj in catalog.store().list(prefix).await? {
            if live.contains(&obj.key) || keys::parse_content_key(prefix, &obj.key).is_none() {
                continue;
            }
            let age = now.duration_since(obj.modified).unwrap_or_default();
            if age < grace {
                report.young_objects += 1;
            } else {
                doomed.push(obj);
            }
        }
    }
    for batch in doomed.chunks(BATCH) {
        if dry_run {
            report.deleted_objects += batch.len() as u64;
            report.deleted_bytes += batch.iter().map(|o| o.size).sum::<u64>();
            continue;
        }
        if let Some(h) = lease.others(Operation::Push).await?.first() {
            return Err(GcError::Interrupted(report.deleted_objects, h.to_string()));
        }
        let deletes = batch.iter().map(|o| catalog.store().delete(&o.key));
        futures::future::try_join_all(deletes).await?;
        report.deleted_objects += batch.len() as u64;
        report.deleted_bytes += batch.iter().map(|o| o.size).sum::<u64>();
    }
    Ok(report)
}
