//! Scanning a source directory into manifest entries, in the manifest's breadth-first layout.
//!
//! Symlinks are recorded, never followed. Special files (fifos, sockets, devices) are skipped
//! and reported. An unreadable directory fails the push: a version must not silently lack files.

use super::PushError;
use crate::format::manifest::{check_name, Run, SourceObject, Span, Timestamp, MAX_DEPTH};
use crate::format::{Entry, EntryKind, Manifest, Sha256};
use std::collections::VecDeque;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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

impl FileToRead {
    /// Its path below `root`, the directory the scan was given (every path the scan makes
    /// is `root` joined with the rest).
    pub fn rel(&self, root: &Path) -> &[u8] {
        let path = self.path.as_os_str().as_bytes();
        let below = path.get(root.as_os_str().len()..).unwrap_or(path);
        below.strip_prefix(b"/").unwrap_or(below)
    }
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
    /// A digest of everything the scan saw that a manifest is made from: every entry as it
    /// stands (parent, name, mode, mtime, symlink target), every file's whole stamp and the
    /// special files left out. Scans with the same digest list the same tree with the same
    /// stamps, so one whose files' stamps were settled is the manifest it made (see
    /// `stat_cache`'s seal).
    pub fn digest(&self) -> Sha256 {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        // Fed in pieces of 64 KiB: most of what is put is a few bytes.
        let mut buf = Vec::with_capacity(64 << 10);
        let mut put = |b: &[u8]| {
            buf.extend_from_slice(b);
            if buf.len() >= 60 << 10 {
                hasher.update(&buf);
                buf.clear();
            }
        };
        let config = bincode::config::standard();
        put(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            let mut one = [0u8; 128];
            let n = bincode::encode_into_slice(e, &mut one, config)
                .expect("an entry's encoding fits in 128 bytes");
            put(&one[..n]);
        }
        put(&(self.strings.len() as u64).to_le_bytes());
        put(&self.strings);
        put(&(self.files.len() as u64).to_le_bytes());
        for f in &self.files {
            let s = &f.stamp;
            put(&f.entry.to_le_bytes());
            for n in [s.size, s.ino, s.dev] {
                put(&n.to_le_bytes());
            }
            for (secs, nanos) in [s.mtime, s.ctime] {
                put(&secs.to_le_bytes());
                put(&nanos.to_le_bytes());
            }
        }
        for k in &self.skipped {
            put(k.path.as_os_str().as_bytes());
            put(&[0]);
            put(k.kind.as_bytes());
            put(&[0]);
        }
        hasher.update(&buf);
        Sha256(hasher.finalize().into())
    }

    pub(super) fn intern(&mut self, s: &[u8]) -> Span {
        let span = Span {
            start: self.strings.len() as u32,
            len: s.len() as u32,
        };
        self.strings.extend_from_slice(s);
        span
    }
}

/// Stops a [`scan`] from another thread.
#[derive(Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Stops the scan when dropped.
    pub fn on_drop(&self) -> impl Drop {
        struct Stop(Cancel);
        impl Drop for Stop {
            fn drop(&mut self) {
                self.0 .0.store(true, Ordering::Relaxed);
            }
        }
        Stop(self.clone())
    }
}

/// Directories read at once, in parallel, ahead of placing their entries.
const BATCH: usize = 64;

/// Scans `root`. Blocking: run it off the async workers.
///
/// Directories are read (listed, and every entry stat'ed) by several threads at once, a
/// batch from the front of the breadth-first queue at a time, and placed in queue order: the
/// result is the same as a walk by one thread, and a re-push of an unchanged tree, which is
/// this walk and little else, takes less time than a stat walk by one thread (`find`).
pub fn scan(root: &Path, cancel: &Cancel) -> Result<Scanned, PushError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    scan_on(root, cancel, threads)
}

/// [`scan`] on `threads` threads.
fn scan_on(root: &Path, cancel: &Cancel, threads: usize) -> Result<Scanned, PushError> {
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
    while !queue.is_empty() {
        if cancel.is_set() {
            return Err(PushError::Stopped(root.to_path_buf()));
        }
        let batch: Vec<_> = queue.drain(..queue.len().min(BATCH)).collect();
        let listed = read_dirs(&batch, threads);
        for ((dir_idx, _, depth), children) in batch.into_iter().zip(listed) {
            let mut children = children?;
            if depth == MAX_DEPTH && !children.is_empty() {
                let deep = children.swap_remove(0).path;
                let below = deep.strip_prefix(root).unwrap_or(&deep).to_string_lossy();
                return Err(PushError::TooDeep {
                    path: below.chars().take(40).collect(),
                    root: root.to_path_buf(),
                });
            }
            let start = out.entries.len();
            for child in children {
                let is_dir = child.meta.is_dir();
                if let Some(entry) = scan_one(&mut out, dir_idx, &child)? {
                    out.entries.push(entry);
                    if is_dir {
                        queue.push_back(((out.entries.len() - 1) as u32, child.path, depth + 1));
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
    }
    refuse_links_out(root, &mut out)?;
    Ok(out)
}

/// One entry of a directory, as read.
struct Child {
    name: std::ffi::OsString,
    path: PathBuf,
    meta: Metadata,
    /// Where a symlink points.
    target: Option<PathBuf>,
}

/// Reads the directories of `batch`, each sorted by name, in the batch's order: on up to
/// `threads` threads, each taking the next unread directory.
fn read_dirs(
    batch: &[(u32, PathBuf, usize)],
    threads: usize,
) -> Vec<Result<Vec<Child>, PushError>> {
    let threads = threads.min(batch.len());
    if threads <= 1 {
        return batch.iter().map(|(_, dir, _)| read_dir(dir)).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<Vec<Child>, PushError>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((_, dir, _)) = batch.get(i) else {
                            return mine;
                        };
                        mine.push((i, read_dir(dir)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("reading a directory does not panic"))
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// The entries of `dir`, sorted by name, each stat'ed relative to the open directory
/// (fstatat), as find does: a path walked from the root for every entry costs a third of a
/// re-push of an unchanged tree.
fn read_dir(dir: &Path) -> Result<Vec<Child>, PushError> {
    let mut children = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| PushError::read(dir, e))?;
    for item in rd {
        let item = item.map_err(|e| PushError::read(dir, e))?;
        let path = item.path();
        let meta = item.metadata().map_err(|e| PushError::read(&path, e))?;
        let target = match meta.file_type().is_symlink() {
            true => Some(std::fs::read_link(&path).map_err(|e| PushError::read(&path, e))?),
            false => None,
        };
        children.push(Child {
            name: item.file_name(),
            path,
            meta,
            target,
        });
    }
    children.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(children)
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

fn scan_one(out: &mut Scanned, parent: u32, child: &Child) -> Result<Option<Entry>, PushError> {
    let (name, path, meta) = (&child.name, &child.path, &child.meta);
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
    } else if let Some(target) = &child.target {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Read by several threads, a tree comes out as read by one: the same entries in the
    /// same order, the same strings, the same files to read.
    #[test]
    fn threads_change_nothing_but_the_time() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // More directories than a batch, on several levels, with links and empty ones.
        for d in 0..150 {
            let sub = root.join(format!("d{d:03}/e{}", d % 7));
            std::fs::create_dir_all(&sub).unwrap();
            for f in 0..(d % 5) {
                std::fs::write(sub.join(format!("f{f}")), format!("{d}/{f}")).unwrap();
            }
            std::os::unix::fs::symlink("..", root.join(format!("d{d:03}/up"))).unwrap();
        }
        let one = scan_on(root, &Cancel::default(), 1).unwrap();
        let many = scan_on(root, &Cancel::default(), 4).unwrap();
        assert_eq!(one.entries, many.entries);
        assert_eq!(one.strings, many.strings);
        let files = |s: &Scanned| -> Vec<_> {
            s.files
                .iter()
                .map(|f| (f.entry, f.path.clone(), f.stamp))
                .collect()
        };
        assert_eq!(files(&one), files(&many));
        assert_eq!(one.digest(), many.digest());
        assert_eq!((one.dirs, one.symlinks), (many.dirs, many.symlinks));
        assert_eq!(
            one.entries.len(),
            1 + 150 * 3 + (0..150).map(|d| d % 5).sum::<usize>()
        );
        let f = &many.files[0];
        assert_eq!(
            f.rel(root),
            f.path.strip_prefix(root).unwrap().as_os_str().as_bytes()
        );
    }

    /// The digest of a scan changes with anything a manifest is made of, or a stamp, and
    /// with nothing else.
    #[test]
    fn the_digest_sees_every_change_to_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/f"), b"one").unwrap();
        std::fs::write(root.join("g"), b"two").unwrap();
        std::os::unix::fs::symlink("a/f", root.join("link")).unwrap();
        let digest = || scan(root, &Cancel::default()).unwrap().digest();
        let first = digest();
        assert_eq!(digest(), first, "the same tree, the same digest");
        let mut seen = vec![first];
        let mut changed = |what: &str| {
            let d = digest();
            assert!(!seen.contains(&d), "{what} did not change the digest");
            seen.push(d);
        };
        // Kept back each time where the change would show in a directory's mtime too, so
        // that only the change itself is seen.
        let keep_mtime = |path: &Path, change: &dyn Fn()| {
            let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
            change();
            let d = std::fs::File::open(path).unwrap();
            d.set_modified(mtime).unwrap();
        };
        std::fs::set_permissions(root.join("g"), std::fs::Permissions::from_mode(0o600)).unwrap();
        changed("a mode");
        let g = std::fs::File::options()
            .write(true)
            .open(root.join("g"))
            .unwrap();
        g.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        changed("an mtime");
        // The same mode again: only the ctime moves (a tick later, for filesystems whose
        // clock is coarse).
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::set_permissions(root.join("g"), std::fs::Permissions::from_mode(0o600)).unwrap();
        changed("a ctime alone");
        keep_mtime(root, &|| {
            std::fs::rename(root.join("g"), root.join("h")).unwrap()
        });
        changed("a name");
        keep_mtime(root, &|| {
            std::fs::remove_file(root.join("link")).unwrap();
            std::os::unix::fs::symlink("h", root.join("link")).unwrap();
        });
        changed("a symlink's target");
        keep_mtime(&root.join("a/b"), &|| {
            std::fs::create_dir(root.join("a/b/c")).unwrap()
        });
        changed("an empty directory");
    }

    #[test]
    fn a_stopped_scan_ends_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = Cancel::default();
        drop(cancel.on_drop());
        assert!(matches!(
            scan(dir.path(), &cancel),
            Err(PushError::Stopped(_))
        ));
    }
}
