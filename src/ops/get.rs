//! `get`: copy a version, a directory or a file out of the store, verified.
//!
//! Each file is written to a temporary file beside its destination, checked against its
//! whole-file SHA-256 and only then renamed into place, so an interrupted or failed get leaves
//! no partial file. Files already present with the right content are kept, so a get that was
//! interrupted can be run again to finish; a file present with other content is an error,
//! never overwritten.

use super::{open, OpenError};
use crate::catalog::Catalog;
use crate::format::hash::StreamHasher;
use crate::format::name::Target;
use crate::format::{EntryKind, Manifest, Sha256};
use crate::read::{fetch_chunk, ContentError};
use futures::StreamExt;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already exists with other content; remove it or choose another destination")]
    Exists(PathBuf),
    #[error("{0}: the downloaded file does not match its SHA-256; nothing was written; run `datastore verify`")]
    Mismatch(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GetError + '_ {
    move |source| GetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Progress, readable while a get runs.
#[derive(Default, Debug)]
pub struct GetProgress {
    pub total_bytes: AtomicU64,
    pub done_bytes: AtomicU64,
}

#[derive(Debug, Default)]
pub struct GetReport {
    pub label: String,
    pub files: u64,
    pub bytes: u64,
    /// Files that were already in place with the right content.
    pub kept: u64,
}

struct Job {
    entry: usize,
    path: PathBuf,
}

/// Copies `target` to `dest`. A directory becomes `dest`; a file is written to `dest`, or
/// into it if `dest` is an existing directory.
pub async fn get(
    catalog: &Catalog,
    target: &Target,
    dest: &Path,
    concurrency: usize,
    progress: &GetProgress,
) -> Result<GetReport, GetError> {
    let o = open(catalog, target).await?;
    let m = &o.manifest;
    let base = match &m.entries[o.entry].kind {
        EntryKind::Dir { .. } => dest.to_path_buf(),
        _ if dest.is_dir() => dest.join(OsStr::from_bytes(m.name(&m.entries[o.entry]))),
        _ => dest.to_path_buf(),
    };
    let mut report = GetReport {
        label: o.version.label(),
        ..Default::default()
    };
    let walk = m.walk(o.entry);
    let mut jobs = Vec::new();
    let mut dirs = Vec::new();
    for (idx, rel) in &walk {
        let path = if rel.is_empty() {
            base.clone()
        } else {
            base.join(OsStr::from_bytes(rel))
        };
        match &m.entries[*idx].kind {
            EntryKind::Dir { .. } => {
                match std::fs::create_dir(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Err(GetError::Exists(path))
                    }
                    r => r.map_err(io(&path))?,
                }
                dirs.push((*idx, path));
            }
            EntryKind::Symlink { target } => {
                let want = OsStr::from_bytes(m.string(*target));
                match std::fs::read_link(&path) {
                    Ok(have) if have.as_os_str() == want => {}
                    Ok(_) => return Err(GetError::Exists(path)),
                    Err(_) if path.symlink_metadata().is_ok() => {
                        return Err(GetError::Exists(path))
                    }
                    Err(_) => std::os::unix::fs::symlink(want, &path).map_err(io(&path))?,
                }
            }
            EntryKind::File { size, sha256, .. } => {
                report.files += 1;
                if path.symlink_metadata().is_ok() {
                    if !same_file(&path, *size, sha256).map_err(io(&path))? {
                        return Err(GetError::Exists(path));
                    }
                    report.kept += 1;
                } else {
                    progress.total_bytes.fetch_add(*size, Ordering::Relaxed);
                    jobs.push(Job { entry: *idx, path });
                }
            }
        }
    }

    download(catalog, m, &jobs, concurrency, progress, &mut report).await?;

    // Directory modes last, deepest first: a read-only directory is filled before it is locked.
    for (idx, path) in dirs.iter().rev() {
        let e = &m.entries[*idx];
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(e.mode))
            .map_err(io(path))?;
        let f = std::fs::File::open(path).map_err(io(path))?;
        let _ = f.set_modified(system_time(e.mtime.secs, e.mtime.nanos));
    }
    Ok(report)
}

/// Streams every chunk of every job in order, fetching `concurrency` chunks ahead.
async fn download(
    catalog: &Catalog,
    m: &Manifest,
    jobs: &[Job],
    concurrency: usize,
    progress: &GetProgress,
    report: &mut GetReport,
) -> Result<(), GetError> {
    let store = catalog.store();
    let chunk_list = |j: usize| match &m.entries[jobs[j].entry].kind {
        EntryKind::File { chunks, .. } => chunks.range(),
        _ => 0..0,
    };
    let fetches = (0..jobs.len()).flat_map(|j| chunk_list(j).map(move |c| (j, c)));
    let mut stream = futures::stream::iter(fetches)
        .map(|(j, c)| async move { fetch_chunk(store, m, &m.chunks[c]).await.map(|d| (j, d)) })
        .buffered(concurrency.max(1));
    // Files without chunks (empty ones) are not in the stream: they are written when the
    // stream passes them.
    let mut current: Option<(usize, Writer)> = None;
    let mut next = 0;
    let mut finish_upto = |current: &mut Option<(usize, Writer)>, next: &mut usize, upto: usize| {
        if let Some((j, w)) = current.take() {
            w.finish(m, &jobs[j])?;
            report.bytes += file_size(m, jobs[j].entry);
        }
        for job in &jobs[(*next).min(upto)..upto] {
            Writer::new(&job.path)?.finish(m, job)?;
        }
        *next = (*next).max(upto);
        Ok::<(), GetError>(())
    };
    while let Some(item) = stream.next().await {
        let (j, data) = item?;
        if current.as_ref().is_none_or(|(o, _)| *o != j) {
            finish_upto(&mut current, &mut next, j)?;
            current = Some((j, Writer::new(&jobs[j].path)?));
            next = j + 1;
        }
        let (_, w) = current.as_mut().expect("a writer is open");
        w.write(&data)?;
        progress
            .done_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
    }
    finish_upto(&mut current, &mut next, jobs.len())
}

fn file_size(m: &Manifest, entry: usize) -> u64 {
    match &m.entries[entry].kind {
        EntryKind::File { size, .. } => *size,
        _ => 0,
    }
}

/// A file being written under a temporary name beside its destination.
struct Writer {
    tmp: tempfile::NamedTempFile,
    hasher: StreamHasher,
    path: PathBuf,
}

impl Writer {
    fn new(path: &Path) -> Result<Writer, GetError> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".datastore-get-")
            .tempfile_in(dir)
            .map_err(io(path))?;
        Ok(Writer {
            tmp,
            hasher: StreamHasher::default(),
            path: path.to_path_buf(),
        })
    }

    fn write(&mut self, data: &[u8]) -> Result<(), GetError> {
        self.hasher.update(data);
        self.tmp.write_all(data).map_err(io(&self.path))
    }

    fn finish(self, m: &Manifest, job: &Job) -> Result<(), GetError> {
        let e = &m.entries[job.entry];
        let EntryKind::File { sha256, .. } = &e.kind else {
            unreachable!("jobs are files")
        };
        if self.hasher.finish() != *sha256 {
            return Err(GetError::Mismatch(self.path));
        }
        let f = self.tmp.as_file();
        f.set_permissions(std::fs::Permissions::from_mode(e.mode))
            .map_err(io(&self.path))?;
        f.set_modified(system_time(e.mtime.secs, e.mtime.nanos))
            .map_err(io(&self.path))?;
        self.tmp
            .persist_noclobber(&self.path)
            .map_err(|e| match e.error.kind() {
                std::io::ErrorKind::AlreadyExists => GetError::Exists(self.path.clone()),
                _ => GetError::Io {
                    path: self.path.clone(),
                    source: e.error,
                },
            })?;
        Ok(())
    }
}

/// Whether the regular file at `path` has exactly this size and digest.
fn same_file(path: &Path, size: u64, sha: &Sha256) -> std::io::Result<bool> {
    let meta = path.symlink_metadata()?;
    if !meta.is_file() || meta.len() != size {
        return Ok(false);
    }
    let mut f = std::fs::File::open(path)?;
    let mut h = StreamHasher::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish() == *sha)
}

fn system_time(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos as u64)
    }
}
