//! What a get has to write, found before anything is written: the entries missing at the
//! destination, the files already there with the right content, and what else the
//! destination holds.

use super::place::{is_leftover, remove_if_abandoned};
use super::{io, GetError};
use crate::format::hash::StreamHasher;
use crate::format::{EntryKind, Manifest, Sha256};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Entries (by index, with their path under the destination) that are missing, and the files
/// already there with the right content.
pub(super) struct Plan {
    pub todo: Vec<(usize, Vec<u8>)>,
    pub kept: u64,
    pub base_exists: bool,
}

impl Plan {
    pub fn check(m: &Manifest, entry: usize, base: &Path, version: &str) -> Result<Plan, GetError> {
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

/// What an existing destination directory holds besides the version.
#[derive(Default)]
pub(super) struct Survey {
    /// What interrupted gets left (and no get still holds), now removed.
    pub removed: Vec<PathBuf>,
    /// Entries the version does not have at their path, and the first of them.
    pub others: u64,
    pub first_other: Option<PathBuf>,
}

/// Walks the directory `base`, which holds directory `entry` of `m`: removes what an
/// interrupted get left there and counts what the version does not have. Only directories
/// the version also has are entered; anything of another kind is for [`Plan::check`] to name.
pub(super) fn survey(m: &Manifest, entry: usize, base: &Path) -> Result<Survey, GetError> {
    let mut s = Survey::default();
    let mut stack = vec![(entry, base.to_path_buf())];
    while let Some((dir, path)) = stack.pop() {
        for item in std::fs::read_dir(&path).map_err(io(&path))? {
            let item = item.map_err(io(&path))?;
            let name = item.file_name();
            let at = item.path();
            if is_leftover(&name) {
                if remove_if_abandoned(&at).map_err(io(&at))? {
                    s.removed.push(at);
                }
                continue;
            }
            match m.child(dir, name.as_bytes()) {
                None => {
                    s.others += 1;
                    s.first_other.get_or_insert(at);
                }
                Some(c) => {
                    let is_dir = item.file_type().map_err(io(&at))?.is_dir();
                    if is_dir && matches!(m.entries[c].kind, EntryKind::Dir { .. }) {
                        stack.push((c, at));
                    }
                }
            }
        }
    }
    Ok(s)
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
