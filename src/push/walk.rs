//! Scanning a source directory into manifest entries, in the manifest's breadth-first layout.
//!
//! Symlinks are recorded, never followed. Special files (fifos, sockets, devices) are skipped
//! and reported. An unreadable directory fails the push: a version must not silently lack files.

use super::PushError;
use crate::format::manifest::{check_name, Run, SourceObject, Span, Timestamp, MAX_DEPTH};
use crate::format::{Entry, EntryKind, Manifest, Sha256};
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What a file looked like when scanned; reading it must find it the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub ino: u64,
    pub dev: u64,
}

impl Stamp {
    pub fn of(m: &Metadata) -> Stamp {
        Stamp {
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
        }
    }
}

/// A regular file to read, by its entry index.
#[derive(Clone, Debug)]
pub struct FileToRead {
    pub entry: u32,
    pub path: PathBuf,
    pub stamp: Stamp,
}

/// A special file that was left out of the version.
#[derive(Clone, Debug)]
pub struct Skipped {
    pub path: PathBuf,
    pub kind: &'static str,
    /// Why it was left out.
    pub note: &'static str,
}

/// The scanned tree: entries in final order (files without chunks yet) and the files to read.
#[derive(Default)]
pub struct Scanned {
    pub entries: Vec<Entry>,
    pub strings: Vec<u8>,
    pub files: Vec<FileToRead>,
    pub skipped: Vec<Skipped>,
    pub total_bytes: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// The source tables of an import (see `import`); empty for a directory.
    pub sources: Vec<Span>,
    pub objects: Vec<SourceObject>,
}

impl Scanned {
    pub(super) fn intern(&mut self, s: &[u8]) -> Span {
        let span = Span {
            start: self.strings.len() as u32,
            len: s.len() as u32,
        };
        self.strings.extend_from_slice(s);
        span
    }
}

/// Scans `root`. Blocking: run it off the async workers.
pub fn scan(root: &Path) -> Result<Scanned, PushError> {
    let meta = std::fs::metadata(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PushError::SourceMissing(root.to_path_buf()),
        _ => PushError::read(root, e),
    })?;
    if !meta.is_dir() {
        return Err(PushError::SourceNotDir(root.to_path_buf()));
    }
    let mut out = Scanned::default();
    out.entries.push(Entry {
        parent: 0,
        name: Span::default(),
        mode: meta.mode() & 0o7777,
        mtime: mtime(&meta),
        kind: EntryKind::Dir {
            children: Run::default(),
        },
    });
    // Directories to read, breadth first, with their depth below the root.
    let mut queue = VecDeque::from([(0u32, root.to_path_buf(), 0usize)]);
    while let Some((dir_idx, dir_path, depth)) = queue.pop_front() {
        let mut children = Vec::new();
        let rd = std::fs::read_dir(&dir_path).map_err(|e| PushError::read(&dir_path, e))?;
        for item in rd {
            let item = item.map_err(|e| PushError::read(&dir_path, e))?;
            let path = item.path();
            // Relative to the open directory (fstatat), as find does: a path walked from the
            // root for every entry costs a third of a re-push of an unchanged tree.
            let meta = item.metadata().map_err(|e| PushError::read(&path, e))?;
            children.push((item.file_name(), path, meta));
        }
        children.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        if depth == MAX_DEPTH && !children.is_empty() {
            let deep = children.swap_remove(0).1;
            let below = deep.strip_prefix(root).unwrap_or(&deep).to_string_lossy();
            return Err(PushError::TooDeep {
                path: below.chars().take(40).collect(),
                root: root.to_path_buf(),
            });
        }
        let start = out.entries.len();
        for (name, path, meta) in children {
            if let Some(entry) = scan_one(&mut out, dir_idx, &name, &path, &meta)? {
                out.entries.push(entry);
                if meta.is_dir() {
                    queue.push_back(((out.entries.len() - 1) as u32, path, depth + 1));
                }
            }
        }
        if out.entries.len() > u32::MAX as usize - 1 {
            return Err(PushError::TooManyEntries(root.to_path_buf()));
        }
        let run = Run {
            start: start as u32,
            len: (out.entries.len() - start) as u32,
        };
        out.entries[dir_idx as usize].kind = EntryKind::Dir { children: run };
    }
    refuse_links_out(root, &mut out)?;
    Ok(out)
}

/// Refuses a tree with a symlink that leads outside it (see `format::manifest::links`): once
/// mounted, the kernel would follow it to whatever the reading node has there.
fn refuse_links_out(root: &Path, out: &mut Scanned) -> Result<(), PushError> {
    if out.symlinks == 0 {
        return Ok(());
    }
    // The check walks a manifest; lend it the scanned tree (no chunks are needed).
    let view = Manifest {
        entries: std::mem::take(&mut out.entries).into(),
        strings: std::mem::take(&mut out.strings).into(),
        ..Manifest::default()
    };
    let bad = view.escaping_link().map(|(i, fault)| {
        let EntryKind::Symlink { target } = view.entries[i].kind else {
            unreachable!("escaping_link names symlinks only")
        };
        PushError::LinkOutside {
            path: root.join(view.link_path(i)),
            target: String::from_utf8_lossy(view.string(target)).into_owned(),
            why: fault.why(),
        }
    });
    out.entries = view.entries.into_vec();
    out.strings = view.strings.into_vec();
    bad.map_or(Ok(()), Err)
}

fn scan_one(
    out: &mut Scanned,
    parent: u32,
    name: &OsStr,
    path: &Path,
    meta: &Metadata,
) -> Result<Option<Entry>, PushError> {
    check_name(name.as_bytes()).map_err(|why| PushError::BadName(path.to_path_buf(), why))?;
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        out.dirs += 1;
        EntryKind::Dir {
            children: Run::default(),
        }
    } else if ft.is_file() {
        out.files.push(FileToRead {
            entry: out.entries.len() as u32,
            path: path.to_path_buf(),
            stamp: Stamp::of(meta),
        });
        out.total_bytes += meta.len();
        EntryKind::File {
            size: meta.len(),
            sha256: Sha256::default(),
            chunks: Run::default(),
        }
    } else if ft.is_symlink() {
        let target = std::fs::read_link(path).map_err(|e| PushError::read(path, e))?;
        out.symlinks += 1;
        EntryKind::Symlink {
            target: out.intern(target.as_os_str().as_bytes()),
        }
    } else {
        let kind = if ft.is_fifo() {
            "fifo"
        } else if ft.is_socket() {
            "socket"
        } else if ft.is_block_device() {
            "block device"
        } else {
            "character device"
        };
        out.skipped.push(Skipped {
            path: path.to_path_buf(),
            kind,
            note: "only files, directories and symlinks are stored",
        });
        return Ok(None);
    };
    Ok(Some(Entry {
        parent,
        name: out.intern(name.as_bytes()),
        mode: meta.mode() & 0o7777,
        mtime: mtime(meta),
        kind,
    }))
}

fn mtime(m: &Metadata) -> Timestamp {
    Timestamp {
        secs: m.mtime(),
        nanos: m.mtime_nsec().clamp(0, 999_999_999) as u32,
    }
}
