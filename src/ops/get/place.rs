//! Putting a get's files in place, and taking them away again when it does not finish.
//!
//! Everything a get writes is first written under a name starting with `.datastore-get-`
//! (a file beside its destination; a new destination directory beside where it goes), locked
//! with `flock` for as long as the get runs. A get that ends in any way a process can see
//! (an error, SIGINT, SIGTERM, SIGHUP) removes them, and undoes what it had put in place; one
//! that is killed outright leaves them unlocked, and the next get into that place removes
//! them: an unlocked `.datastore-get-` entry belongs to no running get.

use super::{directory_of, io, GetError};
use crate::format::hash::StreamHasher;
use crate::format::{EntryKind, Manifest};
use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How the names of a get's unfinished files and directories begin.
const PREFIX: &str = ".datastore-get-";

/// Whether `name` is one a get gives what it has not finished.
pub(super) fn is_leftover(name: &OsStr) -> bool {
    name.as_bytes().starts_with(PREFIX.as_bytes())
}

/// Takes the get's lock on an open file or directory; false if another process holds it.
fn try_lock(f: &std::fs::File) -> std::io::Result<bool> {
    // SAFETY: flock on a descriptor this File owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(e),
    }
}

/// Removes the unfinished file or directory of a get at `path` if no get holds it; whether
/// it was removed. Anything else with such a name (a link, a device) is left alone.
pub(super) fn remove_if_abandoned(path: &Path) -> std::io::Result<bool> {
    let meta = match path.symlink_metadata() {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() && !meta.is_file() {
        return Ok(false);
    }
    let f = std::fs::File::open(path)?;
    if !try_lock(&f)? {
        return Ok(false);
    }
    match meta.is_dir() {
        true => std::fs::remove_dir_all(path)?,
        false => std::fs::remove_file(path)?,
    }
    Ok(true)
}

/// Removes what killed gets left in the directory `dir` itself (not below it).
pub(super) fn sweep(dir: &Path, removed: &mut Vec<PathBuf>) -> Result<(), GetError> {
    let items = match std::fs::read_dir(dir) {
        Ok(items) => items,
        // A missing parent is said when the get writes there.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dir)(e)),
    };
    for item in items {
        let item = item.map_err(io(dir))?;
        if is_leftover(&item.file_name()) {
            let at = item.path();
            if remove_if_abandoned(&at).map_err(io(&at))? {
                removed.push(at);
            }
        }
    }
    Ok(())
}

/// A directory built under a temporary name beside its destination, locked while the get
/// runs; removed, with all it holds, unless put in place.
pub(super) struct Staging {
    pub dir: tempfile::TempDir,
    _lock: std::fs::File,
}

impl Staging {
    pub fn beside(dest: &Path) -> Result<Staging, GetError> {
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(directory_of(dest))
            .map_err(io(dest))?;
        let lock = std::fs::File::open(dir.path()).map_err(io(dest))?;
        try_lock(&lock).map_err(io(dest))?;
        Ok(Staging { dir, _lock: lock })
    }

    /// Renames the directory to `dest`, which must still not exist.
    pub fn put_in_place(self, dest: &Path) -> Result<(), GetError> {
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

/// What a get put into a destination that already existed (files, links, directories, in the
/// order made), taken away again unless the get completes: a get that fails or is
/// interrupted leaves such a destination as it found it.
pub(super) struct Undo {
    made: Vec<PathBuf>,
    /// Whether anything is recorded: what is made in a staging directory goes with it.
    recording: bool,
    done: bool,
}

impl Undo {
    pub fn recording(recording: bool) -> Undo {
        Undo {
            made: Vec::new(),
            recording,
            done: false,
        }
    }

    pub fn made(&mut self, path: &Path) {
        if self.recording {
            self.made.push(path.to_path_buf());
        }
    }

    /// The get completed: what it made stays.
    pub fn keep(mut self) {
        self.done = true;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        for path in self.made.iter().rev() {
            if std::fs::remove_file(path).is_err() {
                let _ = std::fs::remove_dir(path);
            }
        }
    }
}

/// A file being written under a temporary name beside its destination, checked against its
/// SHA-256 before it takes its name.
pub(super) struct Writer {
    tmp: tempfile::NamedTempFile,
    hasher: StreamHasher,
    path: PathBuf,
}

impl Writer {
    pub fn new(path: &Path) -> Result<Writer, GetError> {
        let tmp = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempfile_in(directory_of(path))
            .map_err(io(path))?;
        try_lock(tmp.as_file()).map_err(io(path))?;
        Ok(Writer {
            tmp,
            hasher: StreamHasher::default(),
            path: path.to_path_buf(),
        })
    }

    pub fn write(&mut self, data: &[u8]) -> Result<(), GetError> {
        self.hasher.update(data);
        self.tmp.write_all(data).map_err(io(&self.path))
    }

    /// Gives the file entry `entry`'s mode and mtime and its name, if its content is right.
    pub fn finish(self, m: &Manifest, entry: usize) -> Result<(), GetError> {
        let e = &m.entries[entry];
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

pub(super) fn system_time(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos as u64)
    }
}
