//! Where mounts go, whether something is mounted there, and taking mounts down.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Mounts without an absolute mount point go under this directory.
pub const ROOT: &str = "/datastores";
/// The filesystem type the kernel shows for our mounts.
pub const FSTYPE: &str = "fuse.datastore";

/// The mount point for `given`: absolute as is, relative under [`ROOT`], absent `ROOT/NAME`.
pub fn resolve(given: Option<&Path>, dataset: &str) -> PathBuf {
    match given {
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) => Path::new(ROOT).join(p),
        None => Path::new(ROOT).join(dataset),
    }
}

/// Why a mount point cannot be used or cleared.
#[derive(Debug, thiserror::Error)]
pub enum MountPointError {
    #[error("{0} does not exist; create it first (only mount points under /datastores are created for you)")]
    Missing(PathBuf),
    #[error("cannot create mount point {}: {}", .0.display(), crate::io_cause::Cause(.1))]
    Create(PathBuf, std::io::Error),
    #[error("{0} is not a directory")]
    NotDir(PathBuf),
    #[error("{0} is not empty: a mount there would hide its files; mount on an empty directory, or add -o nonempty to mount over them")]
    NotEmpty(PathBuf),
    #[error("{0} is already mounted ({1}); unmount it first with `datastore umount {0}`")]
    Busy(PathBuf, String),
    #[error("{0} already serves {1}; move it to another version with `datastore switch {0} {2}@VER`, or unmount it first")]
    Serving(PathBuf, String, String),
    #[error("{0} holds a mount whose daemon has died; clear it with `datastore umount {0}`")]
    Stale(PathBuf),
    #[error("{0} is not a datastore mount; `grep fuse.datastore /proc/self/mounts` lists the mounts here")]
    NotOurs(PathBuf),
    #[error("{0} is mounted at {1}; say which to unmount")]
    Several(String, String),
    #[error("{0} is busy: a process has a file or directory open there (see `fuser -vm {0}`); stop it, or use `datastore umount --lazy`")]
    InUse(PathBuf),
    #[error("cannot unmount {0}: {1}")]
    Unmount(PathBuf, String),
}

/// One line of /proc/self/mountinfo that matters to us.
#[derive(Debug, PartialEq, Eq)]
pub struct Mounted {
    pub point: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// The mounts of this process's namespace.
pub fn mounts() -> Vec<Mounted> {
    let text = std::fs::read("/proc/self/mountinfo").unwrap_or_default();
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = std::str::from_utf8(line).ok()?;
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let fstype = r.next()?.to_string();
            let source = r.next().unwrap_or_default().to_string();
            Some(Mounted {
                point: PathBuf::from(OsString::from_vec(unescape(point))),
                fstype,
                source: String::from_utf8_lossy(&unescape(&source)).into_owned(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The newest mount at `point`, if any.
pub fn mounted_at(point: &Path) -> Option<Mounted> {
    mounts().into_iter().rev().find(|m| m.point == point)
}

/// A mount point this mount created, removed again (if still empty) when the mount ends:
/// `/datastores/NAME` is there while NAME is mounted.
pub struct Created(Option<PathBuf>);

impl Drop for Created {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_dir(p);
        }
    }
}

/// Checks (and under [`ROOT`], creates) a mount point before mounting. A directory that
/// holds files is refused unless `non_empty` allows it: a mount there would hide them, as
/// fusermount and rclone refuse by default too. A live mount of `dataset` there is for
/// `datastore switch`.
pub fn prepare(point: &Path, non_empty: bool, dataset: &str) -> Result<Created, MountPointError> {
    if let Some(m) = mounted_at(point) {
        return Err(match std::fs::metadata(point) {
            // A FUSE connection whose daemon is gone: ENOTCONN, or ECONNABORTED on newer
            // kernels.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) => {
                MountPointError::Stale(point.into())
            }
            _ if m.fstype == FSTYPE && m.source.split('@').next() == Some(dataset) => {
                MountPointError::Serving(point.into(), m.source, dataset.into())
            }
            _ => MountPointError::Busy(point.into(), format!("{} {}", m.fstype, m.source)),
        });
    }
    match std::fs::metadata(point) {
        Ok(m) if m.is_dir() => {
            let has_files = std::fs::read_dir(point).is_ok_and(|mut d| d.next().is_some());
            if has_files && !non_empty {
                return Err(MountPointError::NotEmpty(point.into()));
            }
            Ok(Created(None))
        }
        Ok(_) => Err(MountPointError::NotDir(point.into())),
        Err(_) if point.starts_with(ROOT) => {
            std::fs::create_dir_all(point).map_err(|e| MountPointError::Create(point.into(), e))?;
            Ok(Created(Some(point.into())))
        }
        Err(_) => Err(MountPointError::Missing(point.into())),
    }
}

/// The datastore mount `given` names: a mount point (relative under [`ROOT`]) or, where
/// nothing is mounted there, a dataset name served by exactly one mount here.
pub fn find(given: &Path) -> Result<PathBuf, MountPointError> {
    let point = resolve(Some(given), "");
    let name = given.to_str().filter(|n| !n.is_empty() && !n.contains('/'));
    let (Some(name), None) = (name, mounted_at(&point)) else {
        return Ok(point);
    };
    let serving: Vec<PathBuf> = mounts()
        .into_iter()
        .filter(|m| m.fstype == FSTYPE && m.source.split('@').next() == Some(name))
        .map(|m| m.point)
        .collect();
    match serving.as_slice() {
        [one] => Ok(one.clone()),
        [] => Ok(point),
        many => Err(MountPointError::Several(
            name.to_string(),
            many.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" and "),
        )),
    }
}

/// Unmounts a datastore mount, live or left behind by a daemon that died. `lazy` detaches it
/// now and lets it go once the last open file is closed.
pub fn unmount(point: &Path, lazy: bool) -> Result<(), MountPointError> {
    match mounted_at(point) {
        Some(m) if m.fstype == FSTYPE => {}
        _ => return Err(MountPointError::NotOurs(point.into())),
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        // Users unmount through the setuid helper, as for any FUSE mount.
        let mut cmd = std::process::Command::new("fusermount3");
        cmd.arg("-u");
        if lazy {
            cmd.arg("-z");
        }
        let out = cmd
            .arg(point)
            .output()
            .map_err(|e| MountPointError::Unmount(point.into(), format!("fusermount3: {e}")))?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(if why.contains("busy") {
                MountPointError::InUse(point.into())
            } else {
                MountPointError::Unmount(point.into(), why)
            });
        }
        return Ok(());
    }
    let c = std::ffi::CString::new(point.as_os_str().as_bytes())
        .map_err(|_| MountPointError::NotOurs(point.into()))?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::EBUSY) => MountPointError::InUse(point.into()),
        _ => MountPointError::Unmount(point.into(), e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points() {
        assert_eq!(resolve(None, "imagenet"), Path::new("/datastores/imagenet"));
        assert_eq!(
            resolve(Some(Path::new("x/y")), "n"),
            Path::new("/datastores/x/y")
        );
        assert_eq!(resolve(Some(Path::new("/mnt/d")), "n"), Path::new("/mnt/d"));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/a\040b\134c"), b"/a b\\c");
        assert_eq!(unescape(r"/plain\04"), b"/plain\\04");
        assert!(mounts().iter().any(|m| m.point == Path::new("/")));
    }
}
