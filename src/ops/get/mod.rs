//! `get`: copy a version, a directory or a file out of the store, verified.
//!
//! Each file is written to a temporary file beside its destination, checked against its
//! whole-file SHA-256 and only then renamed into place, so no partial file is ever seen. A
//! directory that did not exist is built under a temporary name beside it and renamed into
//! place whole. Into a directory that exists, a get writes only what the version has and the
//! directory lacks: files already present with the right content are kept (so a get killed
//! outright can be run again to finish), anything present with other content, or of another
//! kind, is an error found before anything is written, and directories that exist keep their
//! owner, mode and times. A destination holding things the version does not have is refused
//! unless the caller asks to merge. A get that fails or is interrupted takes away everything
//! it made ([`place`] says how, and how what a killed get left is found again).

mod place;
mod plan;

use super::{open, OpenError};
use crate::catalog::Catalog;
use crate::format::name::Target;
use crate::format::{EntryKind, Manifest};
use crate::io_cause::Cause;
use crate::read::{fetch_chunk, ContentError, Origins};
use futures::StreamExt;
use place::{sweep, system_time, Staging, Undo, Writer};
use plan::{survey, Plan};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
    #[error("{} already holds what {version} does not have, such as {}; get fills a new or empty directory, or finishes an earlier get of the same version there: choose another destination, or add --merge to add the version beside what is there (nothing of it is changed)", dest.display(), first.display())]
    NotEmpty {
        dest: PathBuf,
        version: String,
        first: PathBuf,
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
    /// Entries of the destination the version does not have, left as they were (`merge`).
    pub others: u64,
    /// What gets killed before they finished had left, removed.
    pub removed: Vec<PathBuf>,
}

struct Job {
    entry: usize,
    path: PathBuf,
}

/// How a get writes.
#[derive(Clone, Copy, Debug)]
pub struct GetOptions {
    /// Chunks fetched at once.
    pub concurrency: usize,
    /// Add the version to a destination directory that holds other things.
    pub merge: bool,
}

/// Copies `target` to `dest`. A directory becomes `dest`; a file is written to `dest`, or
/// into it if `dest` is an existing directory.
pub async fn get(
    catalog: &Catalog,
    target: &Target,
    dest: &Path,
    opts: GetOptions,
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
    sweep(directory_of(&base), &mut report.removed)?;
    if is_dir && base.is_dir() {
        let s = survey(m, o.entry, &base)?;
        report.removed.extend(s.removed);
        report.others = s.others;
        if let (Some(first), false) = (s.first_other, opts.merge) {
            return Err(GetError::NotEmpty {
                dest: base,
                version: report.label,
                first,
            });
        }
    }
    let plan = Plan::check(m, o.entry, &base, &report.label)?;
    // A directory that is not there yet is built aside and put in place whole; what is made
    // in one that is there is undone unless the get completes.
    let staging = match is_dir && !plan.base_exists {
        true => Some(Staging::beside(&base)?),
        false => None,
    };
    let mut undo = Undo::recording(staging.is_none());
    let root = staging.as_ref().map_or(base.as_path(), |s| s.dir.path());
    let at = |rel: &[u8]| match rel.is_empty() {
        true => root.to_path_buf(),
        false => root.join(OsStr::from_bytes(rel)),
    };

    let mut jobs = Vec::new();
    // Directories this get made (the staging directory among them), to be given their modes.
    let mut made_dirs = Vec::new();
    for (idx, rel) in &plan.todo {
        let path = at(rel);
        match &m.entries[*idx].kind {
            EntryKind::Dir { .. } => {
                let exists = path.is_dir();
                if !exists {
                    std::fs::create_dir(&path).map_err(io(&path))?;
                    undo.made(&path);
                }
                if !exists || staging.is_some() {
                    made_dirs.push((*idx, path));
                }
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
    Download {
        origins: &origins,
        m,
        jobs: &jobs,
        progress,
        report: &mut report,
        undo: &mut undo,
    }
    .run(opts.concurrency)
    .await?;

    // Links once every file is in, so a failed download leaves none pointing nowhere.
    for (idx, rel) in &plan.todo {
        if let EntryKind::Symlink { target } = &m.entries[*idx].kind {
            let path = at(rel);
            std::os::unix::fs::symlink(OsStr::from_bytes(m.string(*target)), &path)
                .map_err(io(&path))?;
            undo.made(&path);
        }
    }
    // Directory modes last, deepest first: a read-only directory is filled before it is locked.
    for (idx, path) in made_dirs.iter().rev() {
        let e = &m.entries[*idx];
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(e.mode))
            .map_err(io(path))?;
        let f = std::fs::File::open(path).map_err(io(path))?;
        let _ = f.set_modified(system_time(e.mtime.secs, e.mtime.nanos));
    }
    if let Some(s) = staging {
        s.put_in_place(&base)?;
    }
    undo.keep();
    Ok(report)
}

/// The files of a get being fetched and written.
struct Download<'a> {
    origins: &'a Origins,
    m: &'a Manifest,
    jobs: &'a [Job],
    progress: &'a GetProgress,
    report: &'a mut GetReport,
    undo: &'a mut Undo,
}

impl Download<'_> {
    /// Streams every chunk of every job in order, fetching `concurrency` chunks ahead.
    async fn run(&mut self, concurrency: usize) -> Result<(), GetError> {
        let (m, jobs, store) = (self.m, self.jobs, self.origins);
        let label = self.report.label.clone();
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
        while let Some(item) = stream.next().await {
            let (j, data) = item?;
            if current.as_ref().is_none_or(|(o, _)| *o != j) {
                self.finish_upto(&mut current, &mut next, j)?;
                current = Some((j, Writer::new(&jobs[j].path)?));
                next = j + 1;
            }
            let (_, w) = current.as_mut().expect("a writer is open");
            w.write(&data)?;
            self.progress
                .done_bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        self.finish_upto(&mut current, &mut next, jobs.len())
    }

    /// Puts the file being written in place, then the empty files before job `upto`.
    fn finish_upto(
        &mut self,
        current: &mut Option<(usize, Writer)>,
        next: &mut usize,
        upto: usize,
    ) -> Result<(), GetError> {
        let (m, jobs) = (self.m, self.jobs);
        if let Some((j, w)) = current.take() {
            w.finish(m, jobs[j].entry)?;
            self.undo.made(&jobs[j].path);
            self.report.bytes += file_size(m, jobs[j].entry);
        }
        for job in &jobs[(*next).min(upto)..upto] {
            Writer::new(&job.path)?.finish(m, job.entry)?;
            self.undo.made(&job.path);
        }
        *next = (*next).max(upto);
        Ok(())
    }
}

fn file_size(m: &Manifest, entry: usize) -> u64 {
    match &m.entries[entry].kind {
        EntryKind::File { size, .. } => *size,
        _ => 0,
    }
}
