//! The read-only FUSE mount of one version.
//!
//! Mounting fetches and decodes the version's manifest and nothing else: no listing, no
//! per-file requests, so mount time depends only on the manifest's size. The kernel is then
//! served from memory for every metadata operation, and through the read engine
//! ([`crate::read::Reader`]) for file content. This module speaks FUSE and mounting only.

pub mod control;
pub mod daemon;
mod entries;
mod errno;
pub mod fs;
mod kernel;
pub mod mountpoint;
pub mod options;
mod passthrough;
mod renumber;
mod trace;
pub mod versions;

use crate::cache::{CacheError, CacheSize, DiskCache};
use crate::catalog::{Catalog, CatalogError};
use crate::format::name::Target;
use crate::format::name::VersionSel;
use crate::read::{Origins, Reader};
use crate::store::tier::Tier;
use daemon::Notify;
use fs::DatastoreFs;
use fuser::{MountOption, SessionACL};
use mountpoint::MountPointError;
use std::path::PathBuf;
use std::sync::Arc;
use versions::{Mounted, Versions};

/// FUSE request threads by default. Reads are answered asynchronously, so a few threads keep
/// many readers going.
pub const DEFAULT_THREADS: usize = 4;

/// What to mount, where, and how.
pub struct MountRequest {
    pub target: Target,
    pub mountpoint: PathBuf,
    pub allow_other: bool,
    pub allow_root: bool,
    /// Mount over a directory that holds files.
    pub non_empty: bool,
    pub threads: usize,
    /// Bytes of verified chunks kept in memory.
    pub memory: u64,
    /// Bytes all fetches together (reads and read-ahead) may hold in flight.
    pub fetch_budget: u64,
    /// Let the kernel serve files whole in the disk cache by itself (FUSE passthrough), where
    /// it and our privileges allow.
    pub passthrough: bool,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where to record the order files are opened in, if anywhere.
    pub trace: Option<PathBuf>,
    /// The disk cache's directory and size; `None` (or a size of 0) reads without one.
    pub cache: Option<(PathBuf, CacheSize)>,
    /// How often an `@latest` mount looks for a newer version to switch to, if it does.
    pub follow: Option<std::time::Duration>,
}

/// Why a mount could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    MountPoint(#[from] MountPointError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{1}")]
    Metrics(std::net::SocketAddr, String),
    #[error("cannot write the read trace {}: {}", .0.display(), crate::io_cause::Cause(.1))]
    Trace(PathBuf, std::io::Error),
    #[error("mount takes NAME[@VER], not a path inside it ('{0}')")]
    PathGiven(String),
    #[error("follow= moves a mount to each new version: mount {0}@latest (or {0}) with it, not a fixed version")]
    FollowFixed(String),
    #[error("allow_other and allow_root cannot be used together")]
    AclConflict,
    #[error("cannot mount at {0}: {1}")]
    Kernel(PathBuf, String),
    #[error("the mount at {0} ended with an error: {1}")]
    Session(PathBuf, String),
}

/// Mounts a version and serves it until it is unmounted or a signal arrives. `notify` learns
/// when the mount is live.
pub async fn serve(
    catalog: &Catalog,
    req: MountRequest,
    notify: &mut Notify,
) -> Result<(), MountError> {
    if !req.target.path.is_empty() {
        return Err(MountError::PathGiven(req.target.path_display()));
    }
    if req.allow_other && req.allow_root {
        return Err(MountError::AclConflict);
    }
    if req.follow.is_some() && req.target.version != VersionSel::Latest {
        return Err(MountError::FollowFixed(req.target.dataset.clone()));
    }
    let started = std::time::Instant::now();
    let version = catalog
        .resolve(&req.target.dataset, req.target.version)
        .await?;
    let disk = match &req.cache {
        Some((_, CacheSize::Bytes(0))) | None => None,
        Some((dir, size)) => Some(DiskCache::open(dir, *size)?),
    };
    let manifest = crate::read::manifests::open(catalog, disk.as_ref(), &version).await?;
    // Held until the mount is gone, after the session below.
    let _created = mountpoint::prepare(&req.mountpoint, req.non_empty, &req.target.dataset)?;
    let label = version.label();
    let tier = catalog.tier().cloned();
    if let Some(t) = &tier {
        say_tier(catalog, t).await;
    }
    let reader = Arc::new(Reader::new(
        manifest.clone(),
        Origins::from(catalog.store().clone()).with_tier(tier),
        disk.clone(),
        req.memory,
        req.fetch_budget,
    ));
    if let Some(addr) = req.metrics_addr {
        crate::metrics::serve(addr).map_err(|e| MountError::Metrics(addr, e))?;
        let (r, d) = (reader.clone(), disk.clone());
        tokio::spawn(async move {
            loop {
                metrics::gauge!(crate::metrics::FETCH_IN_USE).set(r.budget().in_use() as f64);
                if let Some(d) = &d {
                    metrics::gauge!(crate::metrics::CACHE_BYTES).set(d.bytes() as f64);
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
    }
    let passthrough = match (&disk, req.passthrough) {
        (_, false) => Err("-o passthrough=off"),
        (None, true) => Err("no disk cache"),
        (Some(d), true) => Ok(passthrough::stack_depth(d.dir())),
    };
    versions::live_version(&version);
    let versions = Arc::new(Versions::new(
        Mounted::first(version, reader.clone()),
        catalog.clone(),
    ));
    let mut fs = DatastoreFs::new(
        versions.clone(),
        passthrough,
        tokio::runtime::Handle::current(),
    );
    if let Some(path) = &req.trace {
        std::fs::File::create(path)
            .and_then(|f| fs.record_trace(f))
            .map_err(|e| MountError::Trace(path.clone(), e))?;
    }
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::DefaultPermissions,
        MountOption::FSName(label.clone()),
        MountOption::Subtype("datastore".into()),
    ];
    config.acl = if req.allow_other {
        SessionACL::All
    } else if req.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(req.threads.max(1));
    config.clone_fd = true;
    let point = req.mountpoint.clone();
    let allow_other = req.allow_other;
    let source = label.clone();
    // Listening before the mount exists: a SIGTERM that arrives as soon as the mount is
    // live must unmount, not kill the daemon with the mount left behind.
    let listeners = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        )
    };
    let (session, ours) =
        tokio::task::spawn_blocking(move || match kernel::mount(&point, &source, allow_other)? {
            Some(fd) => {
                let acl = config.acl;
                fuser::Session::from_fd(fs, fd, acl, config).map(|s| (s, true))
            }
            None => fuser::Session::new(fs, &point, &config).map(|s| (s, false)),
        })
        .await
        .map_err(|e| MountError::Kernel(req.mountpoint.clone(), e.to_string()))?
        .map_err(|e| MountError::Kernel(req.mountpoint.clone(), e.to_string()))?;
    let mut session = session;
    versions.set_notifier(session.notifier());
    let mut unmounter = session.unmount_callable();
    tracing::info!(
        "mounted {label} ({}) at {} in {:?}",
        crate::count::count(manifest.entries.len() as u64, "entry"),
        req.mountpoint.display(),
        started.elapsed()
    );
    notify.ready(
        &label,
        &format!("serving {label} at {}", req.mountpoint.display()),
    );

    let point = req.mountpoint.clone();
    let signals = tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = listeners else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup.recv() => {}
        }
        tracing::info!("signal received; unmounting {}", point.display());
        Notify::stopping();
        // Detach: the kernel ends the session once the mount is gone. A mount made through
        // fusermount3 is taken down by fuser the same way.
        let result = if ours {
            mountpoint::unmount(&point, true).map_err(|e| e.to_string())
        } else {
            unmounter.unmount().map_err(|e| e.to_string())
        };
        if let Err(e) = result {
            tracing::error!("unmounting {}: {e}", point.display());
        }
    });
    let follower = req
        .follow
        .map(|every| tokio::spawn(follow(versions.clone(), every)));
    let saver = disk.clone().map(|d| {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                let d = d.clone();
                let _ = tokio::task::spawn_blocking(move || d.stats.save(d.dir())).await;
            }
        })
    });
    let point = req.mountpoint.clone();
    tokio::task::spawn_blocking(move || match kernel::widen_read_ahead(&point) {
        Ok(kib) => tracing::debug!("kernel read-ahead {kib} KiB"),
        Err(e) => tracing::debug!("kernel read-ahead stays at its default: {e}"),
    });
    let ended = tokio::task::spawn_blocking(move || session.run()).await;
    // What was read stays cached: the writes still under way finish first.
    reader.settle().await;
    signals.abort();
    if let Some(f) = follower {
        f.abort();
    }
    if let Some(s) = saver {
        s.abort();
    }
    if let Some(d) = &disk {
        d.stats.save(d.dir());
    }
    match ended {
        Ok(Ok(())) => {
            tracing::info!("{} unmounted", req.mountpoint.display());
            Ok(())
        }
        Ok(Err(e)) => Err(MountError::Session(req.mountpoint, e.to_string())),
        Err(e) => Err(MountError::Session(req.mountpoint, e.to_string())),
    }
}

/// Looks for a newer version every `every` and switches to it (`-o follow`). A look that
/// fails is logged once until one succeeds again; the mount serves on meanwhile.
async fn follow(versions: Arc<Versions>, every: std::time::Duration) {
    let mut failing = false;
    loop {
        tokio::time::sleep(every).await;
        match versions.switch(VersionSel::Latest).await {
            Ok(_) => failing = false,
            Err(e) if !failing => {
                failing = true;
                let live = versions.live().label.clone();
                tracing::warn!(
                    "follow: cannot move to the latest version, still serving {live}: {e}"
                );
            }
            Err(_) => {}
        }
    }
}

/// Says at mount whether the tier will be used: the store must be able to presign the
/// requests it passes on (S3), or reads never go through it.
async fn say_tier(catalog: &Catalog, tier: &Tier) {
    let store = catalog.store();
    let url = tier.url();
    if store
        .signed_get("probe", std::time::Duration::from_secs(60))
        .await
        .is_none()
    {
        tracing::warn!(
            "cache_url={url} not used: only an S3 store can presign the requests the tier \
             passes on; reads go to {}",
            store.url()
        );
    } else {
        tracing::info!(
            "reading content through the cache tier {url} (failing over to the store after {:?})",
            tier.timeout()
        );
    }
}
