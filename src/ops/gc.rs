//! `gc`: delete content that no committed version references.
//!
//! Safe against a push running at the same time: gc holds a lease, refuses to start while a
//! push holds one, and looks again before every batch of deletes (see `catalog::lease`). On
//! top of that, objects younger than the grace period are never deleted, whoever wrote them.
//! A dry run holds no lease: it only reads, so it runs on a store it may not write.

use crate::catalog::lease::{Lease, Operation};
use crate::catalog::{Catalog, CatalogError};
use crate::format::Location;
use crate::store::{keys, StoreError};
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

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
    /// Damage that leaves gc unable to tell what some version references, so that anything
    /// it deleted might be in use: the first found, and how many more a listing of refs/ found.
    #[error("{first}; gc deletes nothing until then{}", more_damage(*.more))]
    Damaged { first: CatalogError, more: usize },
}

fn more_damage(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => " (`datastore ls` names 1 more damaged object)".into(),
        n => format!(" (`datastore ls` names {n} more damaged objects)"),
    }
}

impl GcError {
    /// Damage as a refusal of gc, any other catalog error as it is.
    fn from_catalog(e: CatalogError) -> GcError {
        if e.is_damage() {
            GcError::Damaged { first: e, more: 0 }
        } else {
            GcError::Catalog(e)
        }
    }
}

#[derive(Debug, Default)]
pub struct GcReport {
    pub live_versions: u64,
    pub live_objects: u64,
    pub deleted_objects: u64,
    pub deleted_bytes: u64,
    /// Unreferenced objects kept because they are younger than the grace period.
    pub young_objects: u64,
    /// Objects outside the store that imported versions read in place: never touched (gc
    /// lists and deletes only the store's own prefixes).
    pub source_objects: u64,
    pub dry_run: bool,
}

const BATCH: usize = 256;

/// Deletes what no committed version references. A dry run only reports, and writes nothing
/// to the store (it works on a store it may only read).
pub async fn gc(catalog: &Catalog, grace: Duration, dry_run: bool) -> Result<GcReport, GcError> {
    if dry_run {
        return run(catalog, None, grace).await;
    }
    let lease = Lease::acquire(catalog.store(), Operation::Gc).await?;
    let result = run(catalog, Some(&lease), grace).await;
    lease.release().await;
    result
}

/// Marks and sweeps under `lease`. Without one (a dry run) nothing is deleted and no push is
/// looked for, and ages are judged by this machine's clock: the store's is known only from
/// the timestamp of an object we write.
async fn run(
    catalog: &Catalog,
    lease: Option<&Lease>,
    grace: Duration,
) -> Result<GcReport, GcError> {
    if let Some(lease) = lease {
        if let Some(h) = lease.others(Operation::Push).await?.first() {
            return Err(GcError::PushRunning(h.to_string()));
        }
    }
    let mut report = GcReport {
        dry_run: lease.is_none(),
        ..Default::default()
    };
    // Mark: every object a committed version references. A ref that cannot be read might
    // reference anything, so any damage under refs/ stops gc before it deletes.
    let listing = catalog.list(None).await?;
    let mut damage = listing.damage.into_iter();
    if let Some(first) = damage.next() {
        return Err(GcError::Damaged {
            first,
            more: damage.len(),
        });
    }
    let mut live: HashSet<String> = HashSet::new();
    let mut sources: HashSet<(String, String)> = HashSet::new();
    for v in listing.versions.iter().filter(|v| v.is_committed()) {
        report.live_versions += 1;
        let m = catalog.manifest(v).await.map_err(GcError::from_catalog)?;
        live.insert(keys::manifest(&v.manifest));
        live.extend(m.packs.iter().map(keys::pack));
        for c in &m.chunks {
            match c.location {
                Location::Blob => {
                    live.insert(keys::blob(&c.hash));
                }
                Location::External { object } => {
                    let o = &m.objects[object as usize];
                    let url = m.text(m.sources[o.source as usize]);
                    sources.insert((url.to_string(), m.text(o.key).to_string()));
                }
                Location::Pack { .. } => {}
            }
        }
    }
    report.live_objects = live.len() as u64;
    report.source_objects = sources.len() as u64;

    // Sweep: unreferenced content older than the grace period.
    let now = match lease {
        Some(lease) => lease.store_now().await?,
        None => SystemTime::now(),
    };
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
        let batch_bytes = batch.iter().map(|o| o.size).sum::<u64>();
        if let Some(lease) = lease {
            if let Some(h) = lease.others(Operation::Push).await?.first() {
                return Err(GcError::Interrupted(report.deleted_objects, h.to_string()));
            }
            let deletes = batch.iter().map(|o| catalog.store().delete(&o.key));
            futures::future::try_join_all(deletes).await?;
        }
        report.deleted_objects += batch.len() as u64;
        report.deleted_bytes += batch_bytes;
    }
    Ok(report)
}
