//! The versions a mount serves: the live one, which every lookup, listing and open sees, and
//! older ones that files and directories opened before a switch go on reading until they are
//! closed, when their manifest is freed.
//!
//! A switch fetches and checks the new manifest first, so a version that cannot be opened
//! leaves the mount as it was. It then numbers the new version's inodes against the live one
//! ([`super::renumber`]), makes it live, and tells the kernel what to forget. Every request
//! holds the live version, read-locked, until its reply is written; the switch takes the lock
//! to replace it, and only then invalidates. A reply made from the old version has reached
//! the kernel by then, and the kernel installs a name under the directory's lock, which an
//! invalidation of that directory's names waits for: no stale name survives a switch.

use super::renumber::{renumber, Inodes, Invalidation};
use crate::catalog::{Catalog, CatalogError};
use crate::format::name::VersionSel;
use crate::format::{EntryKind, Manifest, VersionRef};
use crate::read::Reader;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, Weak};

/// One version as the mount serves it.
pub struct Mounted {
    pub version: VersionRef,
    /// `NAME@vN`, for the version xattr and logs.
    pub label: String,
    pub manifest: Arc<Manifest>,
    pub reader: Arc<Reader>,
    inodes: Inodes,
    pub total_bytes: u64,
}

impl Mounted {
    /// The first version of a mount: inode numbers are entry indices plus one.
    pub fn first(version: VersionRef, reader: Arc<Reader>) -> Mounted {
        let manifest = reader.manifest().clone();
        Mounted {
            label: version.label(),
            version,
            inodes: Inodes::Identity {
                entries: manifest.entries.len(),
            },
            total_bytes: total_bytes(&manifest),
            manifest,
            reader,
        }
    }

    /// The entry of inode `ino`, if this version has it.
    pub fn entry(&self, ino: u64) -> Option<usize> {
        self.inodes.entry(ino)
    }

    pub fn ino(&self, entry: usize) -> u64 {
        self.inodes.ino(entry)
    }
}

fn total_bytes(m: &Manifest) -> u64 {
    m.entries
        .iter()
        .map(|e| match e.kind {
            EntryKind::File { size, .. } => size,
            _ => 0,
        })
        .sum()
}

/// A version answering a request: the live one (read-locked until the reply is written) or
/// an older one still open.
pub enum Serving<'a> {
    Live(RwLockReadGuard<'a, Arc<Mounted>>),
    Old(Arc<Mounted>),
}

impl std::ops::Deref for Serving<'_> {
    type Target = Mounted;
    fn deref(&self) -> &Mounted {
        match self {
            Serving::Live(g) => g,
            Serving::Old(m) => m,
        }
    }
}

impl Serving<'_> {
    /// How long the kernel may keep what this version answers: for the life of the mount if
    /// it is live, not at all if a switch has replaced it.
    pub fn ttl(&self) -> std::time::Duration {
        match self {
            Serving::Live(_) => super::entries::TTL,
            Serving::Old(_) => std::time::Duration::ZERO,
        }
    }

    pub fn arc(&self) -> Arc<Mounted> {
        match self {
            Serving::Live(g) => Arc::clone(g),
            Serving::Old(m) => m.clone(),
        }
    }
}

/// Why a mount stays on its version.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("this mount serves {live}; it can move to another version of {dataset} only (mount {wanted} elsewhere)")]
    OtherDataset {
        live: String,
        dataset: String,
        wanted: String,
    },
}

/// The live version and those still open, and switching between them.
pub struct Versions {
    live: RwLock<Arc<Mounted>>,
    /// Versions replaced by a switch, alive while a handle holds them.
    retired: Mutex<Vec<Weak<Mounted>>>,
    /// One switch at a time; the next inode number never given out.
    switching: tokio::sync::Mutex<u64>,
    catalog: Catalog,
    /// Set once the session exists (the kernel is told what to forget through it).
    notifier: OnceLock<fuser::Notifier>,
}

impl Versions {
    pub fn new(first: Mounted, catalog: Catalog) -> Versions {
        Versions {
            switching: tokio::sync::Mutex::new(first.inodes.next_free()),
            live: RwLock::new(Arc::new(first)),
            retired: Mutex::default(),
            catalog,
            notifier: OnceLock::new(),
        }
    }

    pub fn set_notifier(&self, n: fuser::Notifier) {
        let _ = self.notifier.set(n);
    }

    /// The live version, read-locked: hold it until the reply is written.
    pub fn live(&self) -> RwLockReadGuard<'_, Arc<Mounted>> {
        self.live.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_live(&self, v: &Arc<Mounted>) -> bool {
        Arc::ptr_eq(v, &self.live())
    }

    /// The version that answers for inode `ino`, and its entry there: the live one if it has
    /// it, else the newest older version still open that does.
    pub fn of(&self, ino: u64) -> Option<(Serving<'_>, usize)> {
        let live = self.live();
        if let Some(i) = live.entry(ino) {
            return Some((Serving::Live(live), i));
        }
        drop(live);
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.retain(|w| w.strong_count() > 0);
        retired.iter().rev().find_map(|w| {
            let m = w.upgrade()?;
            let i = m.entry(ino)?;
            Some((Serving::Old(m), i))
        })
    }

    /// Moves the mount to version `to` of its dataset; returns the labels it moved from and
    /// to (the same twice if it was there already).
    pub async fn switch(&self, to: VersionSel) -> Result<(String, String), SwitchError> {
        let mut next = self.switching.lock().await;
        let current = self.live().clone();
        let dataset = &current.version.dataset;
        let version = self.catalog.resolve(dataset, to).await?;
        if version.version == current.version.version {
            return Ok((current.label.clone(), current.label.clone()));
        }
        let manifest =
            crate::read::manifests::open(&self.catalog, current.reader.disk(), &version).await?;
        let started = std::time::Instant::now();
        let (inodes, forget) = renumber(&current.manifest, &current.inodes, &manifest, &mut next);
        let reader = Arc::new(current.reader.for_version(manifest.clone()));
        let mounted = Arc::new(Mounted {
            label: version.label(),
            version,
            inodes,
            total_bytes: total_bytes(&manifest),
            manifest,
            reader,
        });
        let from = current.label.clone();
        let to = mounted.label.clone();
        {
            let mut live = self.live.write().unwrap_or_else(|e| e.into_inner());
            let old = std::mem::replace(&mut *live, mounted);
            let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            retired.retain(|w| w.strong_count() > 0);
            retired.push(Arc::downgrade(&old));
        }
        drop(current);
        let n = forget.len();
        if let Some(notifier) = self.notifier.get() {
            // Each notification is a write the kernel may hold while a lookup in that
            // directory finishes: the runtime moves its other tasks off this thread meanwhile.
            tokio::task::block_in_place(|| invalidate(notifier, &forget));
        }
        live_version(&self.live().version);
        metrics::counter!(crate::metrics::SWITCHES).increment(1);
        tracing::info!(
            "switched from {from} to {to}: {n} names and inodes invalidated in {:?}",
            started.elapsed()
        );
        Ok((from, to))
    }

    /// Refuses a switch to another dataset than the live one's.
    pub fn check_dataset(&self, dataset: &str) -> Result<(), SwitchError> {
        let live = self.live();
        if live.version.dataset == dataset {
            return Ok(());
        }
        Err(SwitchError::OtherDataset {
            live: live.label.clone(),
            dataset: live.version.dataset.clone(),
            wanted: dataset.to_string(),
        })
    }
}

/// Tells the kernel what to forget. A name or inode it does not hold is no error.
fn invalidate(notifier: &fuser::Notifier, forget: &[Invalidation]) {
    let mut failures = 0;
    for f in forget {
        let result = match f {
            Invalidation::Entry { parent, name } => {
                notifier.inval_entry(fuser::INodeNo(*parent), OsStr::from_bytes(name))
            }
            Invalidation::Inode { ino, pages } => {
                notifier.inval_inode(fuser::INodeNo(*ino), if *pages { 0 } else { -1 }, 0)
            }
        };
        match result {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!("the kernel refused an invalidation after a switch: {e}");
                }
            }
            _ => {}
        }
    }
}

/// Records which version is live, for `/metrics`.
pub fn live_version(v: &VersionRef) {
    metrics::gauge!(crate::metrics::LIVE_VERSION, "dataset" => v.dataset.clone())
        .set(v.version as f64);
}
