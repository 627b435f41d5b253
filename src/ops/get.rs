//! `get`: copy a version, a directory or a file out of the store, verified.
//!
//! Each file is written to a temporary file beside its destination, checked against its
//! whole-file SHA-256 and only then renamed into place, so an interrupted or failed get leaves
//! no partial file. A directory that did not exist is built under a temporary name beside it
//! and renamed into place whole, so a failed get leaves nothing at all there. Files already
//! present with the right content are kept, so a get into an existing directory that was
//! interrupted can be run again to finish; anything present with other content, or of
//! another kind, is an error found before anything is written, never overwritten.

use super::{open, OpenError};
use crate::catalog::Catalog;
use crate::format::hash::StreamHasher;
use crate::format::name::Target;
use crate::format::{EntryKind, Manifest, Sha256};
use crate::io_cause::Cause;
use crate::read::{fetch_chunk, ContentError, Origins};
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
    #[error("cannot get {file}: {source}")]
    Content { file: String, source: ContentError },
    /// (`error` is not a `source`: its text is in the message, in words.)
    #[error("cannot write {}: {}", path.display(), why_not_written(path, error))]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0} already exists with other content; remove it or choose another destination")]
    Exists(PathBuf),
    #[error("{} is {found} where {version} has {want}; remove it or choose another destination", path.display())]
    WrongKind {
        path: PathBuf,
        found: &'static str,
        want: &'static str,
        version: String,
    },
    #[error("'-' would be a file named '-': get writes files, not standard output; give a path (./- if that name is meant)")]
    Dash,
    #[error("{0}: the downloaded file does not match its SHA-256; nothing was written; run `datastore verify`")]
    Mismatch(PathBuf),
    #[error("{version} holds a path {depth} levels deep that would be longer than the system takes at the destination (4,096 bytes); nothing was written; get a directory inside it to a short destination")]
    TooLong { version: String, depth: usize },
}

/// Why `path` could not be written, and what to do where that is clear.
fn why_not_written(path: &Path, e: &std::io::Error) -> String {
    let parent = directory_of(path);
    match e.kind() {
        std::io::ErrorKind::NotFound if !parent.exists() => format!(
            "its directory {} does not exist; create it first (get creates only its destination)",
            parent.display()
        ),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied; choose a destination you may write to".to_string()
        }
        _ => Cause(e).to_string(),
    }
}

/// The directory `path` is in (`.` for a bare name), where its temporary files go.
fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GetError + '_ {
    move |error| GetError::Io {
        path: path.to_path_buf(),
        error,
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
    if dest.as_os_str() == "-" {
        return Err(GetError::Dash);
    }
    let o = open(catalog, target).await?;
    let m = &o.manifest;
    let is_dir = matches!(m.entries[o.entry].kind, EntryKind::Dir { .. });
    let base = if !is_dir && dest.is_dir() {
        dest.join(OsStr::from_bytes(m.name(&m.entries[o.entry])))
    } else {
        dest.to_path_buf()
    };
    let mut report = GetReport {
        label: o.version.label(),
        ..Default::default()
    };
    let plan = Plan::check(m, o.entry, &base, &report.label)?;
    // A directory that is not there yet is built aside and put in place whole.
    let staging = match is_dir && !plan.base_exists {
        true => Some(Staging::beside(&base)?),
        false => None,
    };
    let root = staging.as_ref().map_or(base.as_path(), |s| s.dir.path());
    let at = |rel: &[u8]| match rel.is_empty() {
        true => root.to_path_buf(),
        false => root.join(OsStr::from_bytes(rel)),
    };

    let mut jobs = Vec::new();
    let mut dirs = Vec::new();
    for (idx, rel) in &plan.todo {
        let path = at(rel);
        match &m.entries[*idx].kind {
            EntryKind::Dir { .. } => {
                if !path.is_dir() {
                    std::fs::create_dir(&path).map_err(io(&path))?;
                }
                dirs.push((*idx, path));
            }
            EntryKind::File { size, .. } => {
                report.files += 1;
                progress.total_bytes.fetch_add(*size, Ordering::Relaxed);
                jobs.push(Job { entry: *idx, path });
            }
            EntryKind::Symlink { .. } => {}
        }
    }
    report.files += plan.kept;
    report.kept = plan.kept;

    let origins = Origins::from(catalog.store().clone()).with_tier(catalog.tier().cloned());
    download(&origins, m, &jobs, concurrency, progress, &mut report).await?;

    // Links once every file is in, so a failed download leaves none pointing nowhere.
    for (idx, rel) in &plan.todo {
        if let EntryKind::Symlink { target } = &m.entries[*idx].kind {
            let path = at(rel);
            std::os::unix::fs::symlink(OsStr::from_bytes(m.string(*target)), &path)
                .map_err(io(&path))?;
        }
    }
    // Directory modes last, deepest first: a read-only directory is filled before it is locked.
    for (idx, path) in dirs.iter().rev() {
        let e = &m.entries[*idx];
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(e.mode))
            .map_err(io(path))?;
        let f = std::fs::File::open(path).map_err(io(path))?;
        let _ = f.set_modified(system_time(e.mtime.secs, e.mtime.nanos));
    }
    if let Some(s) = staging {
        s.put_in_place(&base)?;
    }
    Ok(report)
}

/// What a get has to write, checked against what the destination holds before anything is
/// written: entries (by index, with their path under the destination) that are missing, and
/// the files already there with the right content.
struct Plan {
    todo: Vec<(usize, Vec<u8>)>,
    kept: u64,
    base_exists: bool,
}

impl Plan {
    fn check(m: &Manifest, entry: usize, base: &Path, version: &str) -> Result<Plan, GetError> {
        let mut plan = Plan {
            todo: Vec::new(),
            kept: 0,
            base_exists: base.exists(),
        };
        let mut walk = m.walk(entry);
        while let Some((idx, rel)) = walk.next_entry() {
            let rel = rel.to_vec();
            let path = match rel.is_empty() {
                true => base.to_path_buf(),
                false => base.join(OsStr::from_bytes(&rel)),
            };
            // Paths are what a get writes by: one the system cannot take is said here, once,
            // before anything is written (the path itself could be a quarter of a megabyte).
            if path.as_os_str().len() >= libc::PATH_MAX as usize {
                return Err(GetError::TooLong {
                    version: version.to_string(),
                    depth: rel.split(|&b| b == b'/').count(),
                });
            }
            // The destination itself may be a link to a directory; what is under it may not.
            let found = match rel.is_empty() {
                true => std::fs::metadata(&path),
                false => std::fs::symlink_metadata(&path),
            };
            let found = match found {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    plan.todo.push((idx, rel));
                    continue;
                }
                Err(e) => return Err(io(&path)(e)),
            };
            let wrong = |want| GetError::WrongKind {
                path: path.clone(),
                found: kind_of(&found),
                want,
                version: version.to_string(),
            };
            match &m.entries[idx].kind {
                EntryKind::Dir { .. } if found.is_dir() => plan.todo.push((idx, rel)),
                EntryKind::Dir { .. } => return Err(wrong("a directory")),
                EntryKind::Symlink { target } => {
                    if !found.is_symlink() {
                        return Err(wrong("a symlink"));
                    }
                    let have = std::fs::read_link(&path).map_err(io(&path))?;
                    if have.as_os_str().as_bytes() != m.string(*target) {
                        return Err(GetError::Exists(path));
                    }
                }
                EntryKind::File { size, sha256, .. } => {
                    if !found.is_file() {
                        return Err(wrong("a file"));
                    }
                    if !same_file(&path, *size, sha256).map_err(io(&path))? {
                        return Err(GetError::Exists(path));
                    }
                    plan.kept += 1;
                }
            }
        }
        Ok(plan)
    }
}

fn kind_of(m: &std::fs::Metadata) -> &'static str {
    if m.is_dir() {
        "a directory"
    } else if m.is_symlink() {
        "a symlink"
    } else if m.is_file() {
        "a file"
    } else {
        "a special file"
    }
}

/// A directory built under a temporary name beside its destination; removed, with all it
/// holds, unless put in place.
struct Staging {
    dir: tempfile::TempDir,
}

impl Staging {
    fn beside(dest: &Path) -> Result<Staging, GetError> {
        let dir = tempfile::Builder::new()
            .prefix(".datastore-get-")
            .tempdir_in(directory_of(dest))
            .map_err(io(dest))?;
        Ok(Staging { dir })
    }

    /// Renames the directory to `dest`, which must still not exist.
    fn put_in_place(self, dest: &Path) -> Result<(), GetError> {
        use std::os::unix::ffi::OsStrExt as _;
        let c = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|e| io(dest)(e.into()))
        };
        let (from, to) = (c(self.dir.path())?, c(dest)?);
        // SAFETY: both are valid NUL-terminated paths, relative to the working directory.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.kind() {
                std::io::ErrorKind::AlreadyExists => GetError::Exists(dest.to_path_buf()),
                _ => io(dest)(e),
            });
        }
        // In place: nothing is left to remove.
        let _ = self.dir.keep();
        Ok(())
    }
}

/// Streams every chunk of every job in order, fetching `concurrency` chunks ahead.
async fn download(
    origins: &Origins,
    m: &Manifest,
    jobs: &[Job],
    concurrency: usize,
    progress: &GetProgress,
    report: &mut GetReport,
) -> Result<(), GetError> {
    let store = origins;
    let label = report.label.clone();
    let label = &label;
    let chunk_list = |j: usize| match &m.entries[jobs[j].entry].kind {
        EntryKind::File { chunks, .. } => chunks.range(),
        _ => 0..0,
    };
    let fetches = (0..jobs.len()).flat_map(|j| chunk_list(j).map(move |c| (j, c)));
    let mut stream = futures::stream::iter(fetches)
        .map(|(j, c)| async move {
            fetch_chunk(store, m, &m.chunks[c])
                .await
                .map(|d| (j, d))
                .map_err(|source| GetError::Content {
                    file: format!(
                        "{label}/{}",
                        String::from_utf8_lossy(&m.path_of(jobs[j].entry))
                    ),
                    source,
                })
        })
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
        let tmp = tempfile::Builder::new()
            .prefix(".datastore-get-")
            .tempfile_in(directory_of(path))
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
                    error: e.error,
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
