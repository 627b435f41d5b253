//! `push`: turn a directory into a new version.
//!
//! Order of work, which is what makes a push safe to interrupt at any point:
//! 0. scan the tree; if its digest is the one the last push sealed (see [`stat_cache`]) and
//!    that version is still the latest, stop: the tree is unchanged, and nothing was written;
//! 1. take a push lease, so gc cannot delete blobs this push is about to reuse, and read the
//!    parent version, while the tree is scanned (a tree that cannot be pushed leaves only the
//!    record of the failed push that `datastore status` shows);
//! 2. read, chunk, pack and upload content, skipping every key the store already holds;
//! 3. upload the manifest;
//! 4. create the version ref with an atomic create-if-absent: only now is the version visible.
//!
//! A push killed before step 4 leaves only unreferenced content, which the next push of the
//! same tree finds and skips (packs are content-defined, so they come out byte-identical), and
//! which gc removes after its grace period if nobody pushes again.

mod assembly;
mod error;
pub mod import;
pub mod ingest;
pub mod packer;
mod report;
pub mod stat_cache;
pub mod upload;
pub mod walk;

use assembly::{read_file, Assembly, Content};
pub use error::PushError;
use report::{unchanged, Tally};
pub use report::{PushProgress, PushReport};

use crate::catalog::lease::{Lease, Operation, Refresh};
use crate::catalog::{Catalog, CatalogError, NewVersion};
use crate::format::name::check_dataset_name;
use crate::format::{Manifest, Sha256, VersionRef};
use crate::store::keys;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use stat_cache::{Seal, StatCache};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use upload::Uploader;
use walk::Scanned;

/// How a push runs.
#[derive(Clone, Debug)]
pub struct PushOptions {
    pub message: String,
    /// Files read at once.
    pub concurrency: usize,
    /// Bytes of content held by uploads in flight, at most.
    pub memory_budget: u64,
    /// How long to wait for a running gc to yield before giving up.
    pub gc_wait: Duration,
    /// Where push remembers the files it hashed ([`stat_cache`]); `None` reads every file.
    pub stat_dir: Option<PathBuf>,
    /// Reads every file even where the stat cache knows it (what it learns is still kept).
    pub rehash: bool,
    /// Push a tree that holds no files: without it, such a push is refused, since it would
    /// make the dataset's latest version empty (most often a mistyped or unmounted path).
    pub allow_empty: bool,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            message: String::new(),
            concurrency: 16,
            memory_budget: 256 << 20,
            gc_wait: Duration::from_secs(120),
            stat_dir: None,
            rehash: false,
            allow_empty: false,
        }
    }
}

/// Checks what a push is given before anything is opened or created for it: a mistyped name
/// or source must not leave an empty store behind.
pub fn check_args(source: &Path, dataset: &str) -> Result<(), PushError> {
    check_dataset_name(dataset)?;
    match std::fs::metadata(source) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(PushError::SourceNotDir(source.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(PushError::SourceMissing(source.to_path_buf()))
        }
        Err(e) => Err(PushError::read(source, e)),
    }
}

/// Pushes `source` as the next version of `dataset`.
pub async fn push(
    catalog: &Catalog,
    source: &Path,
    dataset: &str,
    opts: &PushOptions,
    progress: Arc<PushProgress>,
) -> Result<PushReport, PushError> {
    check_args(source, dataset)?;
    // The walk runs while what the last push learnt is read, the lease taken and the parent
    // version fetched: a re-push of an unchanged tree takes little more than the walk.
    let cancel = walk::Cancel::default();
    let scan = {
        let (src, cancel) = (source.to_path_buf(), cancel.clone());
        tokio::task::spawn_blocking(move || {
            walk::scan(&src, &cancel).map(|s| {
                let tree = s.digest();
                (s, tree)
            })
        })
    };
    // A push that fails before its walk ends stops the walk: it need not finish for the
    // process to end.
    let _stop = cancel.on_drop();
    // Before the lease: a second push of the same tree waits for nothing and writes nothing.
    // The dataset's latest version is looked up meanwhile, for the seal.
    let load = async {
        match &opts.stat_dir {
            Some(dir) => {
                let (dir, url, name, src) = (
                    dir.clone(),
                    catalog.store().url().to_string(),
                    dataset.to_string(),
                    source.to_path_buf(),
                );
                tokio::task::spawn_blocking(move || StatCache::load(&dir, &url, &name, &src))
                    .await
                    .expect("loading the stat cache does not panic")
                    .map_err(|pid| PushError::AlreadyPushing {
                        dir: source.to_path_buf(),
                        dataset: dataset.into(),
                        pid,
                    })
            }
            None => Ok(StatCache::none()),
        }
    };
    let sealed = async {
        let dir = opts.stat_dir.as_ref().filter(|_| !opts.rehash)?;
        let seal = Seal::read(dir, catalog.store().url(), dataset, source)?;
        let latest = catalog
            .latest_if(dataset, seal.version, &seal.manifest)
            .await?;
        Some((seal, latest))
    };
    let (stats, sealed) = tokio::join!(load, sealed);
    let mut stats = stats?;
    if opts.rehash {
        stats.forget_known();
    }
    let mut walk = Walk::Running(scan);
    // The seal unbroken: the tree is the latest version's again, known without a lease, a
    // manifest or a plan. (A failure to look the version up is met again below, and reported.)
    if let Some((seal, latest)) = sealed {
        let (scanned, tree) = walk.finish().await?;
        if tree == seal.tree {
            stats.confirm();
            return Ok(unchanged(latest, scanned, &progress));
        }
        walk = Walk::Done(scanned, tree);
    }
    let shown = std::path::absolute(source)
        .unwrap_or_else(|_| source.to_path_buf())
        .display()
        .to_string();
    let shared = progress.clone();
    let work = |lease: Refresh| async move {
        let parent = Parent::fetch(catalog, dataset, &stats).await?;
        let (scanned, tree) = walk.finish().await?;
        if scanned.files.is_empty() && !opts.allow_empty {
            return Err(PushError::Empty {
                dir: source.to_path_buf(),
                dataset: dataset.to_string(),
            });
        }
        progress
            .total_bytes
            .store(scanned.total_bytes, Ordering::Relaxed);
        progress
            .total_files
            .store(scanned.files.len() as u64, Ordering::Relaxed);
        let fetched = parent.fetched.clone();
        let (report, made) = upload_and_commit(
            catalog, parent, scanned, source, dataset, opts, &progress, &mut stats, &lease,
        )
        .await?;
        if let Some(manifest) = made.or(fetched) {
            stats.keep_manifest(manifest);
        }
        stats.seal_as(tree, report.version.version, report.version.manifest);
        stats.save();
        Ok(report)
    };
    under_lease(catalog, dataset, shown, opts, &shared, work).await
}

/// The walk of a push: still running, or waited for early.
enum Walk {
    Running(tokio::task::JoinHandle<Result<(Scanned, Sha256), PushError>>),
    Done(Scanned, Sha256),
}

impl Walk {
    /// The scanned tree and its digest.
    async fn finish(self) -> Result<(Scanned, Sha256), PushError> {
        match self {
            Walk::Running(scan) => scan.await.expect("scan does not panic"),
            Walk::Done(scanned, tree) => Ok((scanned, tree)),
        }
    }
}

/// The latest version of a dataset, which a push builds on, and the assembly of the new
/// version's tables from its manifest. Read under the push's lease, once no gc runs: what it
/// references stays in the store until the push ends.
struct Parent {
    version: Option<VersionRef>,
    state: Assembly,
    /// The manifest's bytes, when they came from the store (not from the copy the stat cache
    /// keeps).
    fetched: Option<Bytes>,
}

impl Parent {
    async fn fetch(
        catalog: &Catalog,
        dataset: &str,
        stats: &StatCache,
    ) -> Result<Parent, PushError> {
        let version = catalog.latest(dataset).await?;
        let Some(v) = version.clone() else {
            return Ok(Parent {
                version,
                state: Assembly::default(),
                fetched: None,
            });
        };
        let (bytes, fetched) = match stats.manifest_copy(&v.manifest) {
            Some(copy) => (copy, false),
            None => (catalog.manifest_bytes(&v).await?, true),
        };
        let (state, bytes) = tokio::task::spawn_blocking(move || {
            let m = Catalog::decode_manifest(&v, &bytes)?;
            Ok::<_, CatalogError>((Assembly::of_parent(m), bytes))
        })
        .await
        .expect("manifest decoding does not panic")?;
        Ok(Parent {
            version,
            state,
            fetched: fetched.then_some(bytes),
        })
    }
}

/// Runs `work` holding a push lease, once no gc runs: the lease keeps gc from deleting what
/// the push is about to reuse, and tells `datastore status` elsewhere which push this is
/// (dataset, `source`) and how far it got. A failure is left on record with its reason.
async fn under_lease<T, F>(
    catalog: &Catalog,
    dataset: &str,
    source: String,
    opts: &PushOptions,
    progress: &Arc<PushProgress>,
    work: impl FnOnce(Refresh) -> F,
) -> Result<T, PushError>
where
    F: std::future::Future<Output = Result<T, PushError>>,
{
    let detail = {
        let (p, dataset) = (progress.clone(), dataset.to_string());
        Arc::new(move || crate::format::lease::Detail {
            dataset: dataset.clone(),
            source: source.clone(),
            files_done: p.done_files.load(Ordering::Relaxed),
            files_total: p.total_files.load(Ordering::Relaxed),
            bytes_done: p.read_bytes.load(Ordering::Relaxed),
            bytes_total: p.total_bytes.load(Ordering::Relaxed),
            updated_unix: crate::catalog::unix_now(),
            failure: None,
        }) as crate::catalog::lease::DetailSource
    };
    let lease = Lease::acquire_with(catalog.store(), Operation::Push, Some(detail)).await?;
    let result = async {
        let gc = lease.wait_for_none(Operation::Gc, opts.gc_wait).await?;
        if let Some(holder) = gc.first() {
            return Err(PushError::GcRunning(holder.to_string()));
        }
        work(lease.refresher()).await
    }
    .await;
    match &result {
        Ok(_) => lease.release().await,
        Err(e) => lease.fail(crate::store::one_line(e)).await,
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn upload_and_commit(
    catalog: &Catalog,
    parent: Parent,
    mut scanned: Scanned,
    source: &Path,
    dataset: &str,
    opts: &PushOptions,
    progress: &Arc<PushProgress>,
    stats: &mut StatCache,
    lease: &Refresh,
) -> Result<(PushReport, Option<Bytes>), PushError> {
    let store = catalog.store().clone();
    let uploader = Arc::new(Uploader::new(
        store.clone(),
        opts.memory_budget,
        progress.upload.clone(),
    ));
    let mut state = parent.state;
    state.parent_present(&uploader);
    let parent = parent.version;

    let files = std::mem::take(&mut scanned.files);
    let file_count = files.len() as u64;
    // Files the stat cache knows, with a file of that content in the parent, are not read.
    let planned: Vec<_> = files
        .into_iter()
        .map(|f| {
            let remembered = stats.hash_of(f.rel(source), &f.stamp);
            let known = remembered.and_then(|r| state.reuse(&r.hash, f.stamp.size));
            (f, remembered, known)
        })
        .collect();
    // Before the first byte is read, `datastore status` elsewhere learns the totals (the
    // lease was written before the walk ended); a push that reads nothing needs no news.
    if planned.iter().any(|(_, _, known)| known.is_none()) {
        lease.now().await;
    }
    let (mut hashed_bytes, mut reused_files) = (0, 0);
    let mut results = futures::stream::iter(planned)
        .map(|(f, remembered, known)| {
            match known {
                Some(content) => {
                    progress
                        .read_bytes
                        .fetch_add(f.stamp.size, Ordering::Relaxed);
                    futures::future::ready(Ok((f, content))).left_future()
                }
                None => read_file(f, uploader.clone(), progress.clone()).right_future(),
            }
            .map(move |done| done.map(|(f, content)| (f, remembered, content)))
        })
        .buffered(opts.concurrency.max(1));
    while let Some(done) = results.next().await {
        let (f, remembered, content) = done?;
        match content {
            Content::Reused { .. } => reused_files += 1,
            _ => hashed_bytes += f.stamp.size,
        }
        let sha = state
            .place(&mut scanned, f.entry, content, &uploader)
            .await?;
        stats.learn(f.rel(source), &f.stamp, sha, remembered);
        progress.done_files.fetch_add(1, Ordering::Relaxed);
    }
    drop(results);
    let tally = Tally {
        files: file_count,
        hashed_bytes,
        reused_files,
    };
    let report = conclude(
        catalog, dataset, opts, state, scanned, &uploader, parent, tally,
    );
    report.await
}

/// Ends a push or an import once every file is placed: seals the last pack, waits for every
/// upload, and stores the manifest as the next version of `dataset`, unless it is the
/// parent's tree again (then no version is made and the report names the parent).
#[allow(clippy::too_many_arguments)]
async fn conclude(
    catalog: &Catalog,
    dataset: &str,
    opts: &PushOptions,
    mut state: Assembly,
    mut scanned: Scanned,
    uploader: &Uploader,
    parent: Option<VersionRef>,
    tally: Tally,
) -> Result<(PushReport, Option<Bytes>), PushError> {
    if let Some(pack) = state.packer.seal(&mut state.packs) {
        uploader
            .upload(keys::pack(&pack.hash), pack.data.into())
            .await?;
    }
    uploader.finish().await?;
    let manifest = Manifest {
        entries: std::mem::take(&mut scanned.entries).into(),
        chunks: state.chunks.into(),
        packs: state.packs.hashes.into(),
        strings: std::mem::take(&mut scanned.strings).into(),
        sources: std::mem::take(&mut scanned.sources).into(),
        objects: std::mem::take(&mut scanned.objects).into(),
    };
    debug_assert!(manifest.validate().is_ok());
    // The same tree as the parent's is no new version; compared decoded, it costs no
    // compression (a tenth of a re-push of an unchanged tree).
    let (version, made) = match parent {
        Some(p) if manifest == state.parent => (p, None),
        parent => {
            let encoded = Bytes::from(manifest.encode());
            let hash = Sha256::of(&encoded);
            let manifest_size = encoded.len() as u64;
            uploader
                .upload(keys::manifest(&hash), encoded.clone())
                .await?;
            uploader.finish().await?;
            let draft = NewVersion {
                manifest: hash,
                manifest_size,
                parent: parent.map(|p| p.version),
                files: tally.files,
                bytes: scanned.total_bytes,
                message: opts.message.clone(),
            };
            (catalog.commit(dataset, draft).await?, Some(encoded))
        }
    };
    let report = PushReport {
        version,
        unchanged: made.is_none(),
        files: tally.files,
        dirs: scanned.dirs,
        symlinks: scanned.symlinks,
        bytes: scanned.total_bytes,
        uploaded_bytes: uploader.stats.uploaded_bytes.load(Ordering::Relaxed),
        uploaded_objects: uploader.stats.uploaded_objects.load(Ordering::Relaxed),
        hashed_bytes: tally.hashed_bytes,
        reused_files: tally.reused_files,
        skipped: scanned.skipped,
    };
    Ok((report, made))
}

#[cfg(test)]
mod tests;
