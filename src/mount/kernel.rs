//! Asking the kernel for the mount itself, so that it carries our filesystem type.
//!
//! fuser's own direct mount always uses type `fuse`; we mount `fuse.datastore` (as libfuse's
//! helpers do), so `findmnt -t fuse.datastore`, `umount -t` and systemd see what it is, and
//! `datastore umount` can refuse to touch anything else. Only root may call mount(2); other
//! users get `None` and mount through fusermount3 instead.

use super::mountpoint::FSTYPE;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Mounts `/dev/fuse` at `point` read-only, nosuid and nodev, and returns the session's fd.
pub fn mount(point: &Path, source: &str, allow_other: bool) -> std::io::Result<Option<OwnedFd>> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let path = c"/dev/fuse";
    // SAFETY: a valid NUL-terminated path; the returned fd is owned below.
    let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(
            e.kind(),
            format!("cannot open /dev/fuse: {e} (is the fuse module loaded? `modprobe fuse`)"),
        ));
    }
    // SAFETY: open just returned this descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut data = format!(
        "fd={},rootmode=40000,user_id={uid},group_id={gid},default_permissions",
        fd.as_raw_fd()
    );
    if allow_other {
        data.push_str(",allow_other");
    }
    let bad = |_| std::io::Error::other("a path or name contains a NUL byte");
    let c_source = CString::new(source.replace(',', "_")).map_err(bad)?;
    let c_point = CString::new(point.as_os_str().as_bytes()).map_err(bad)?;
    let c_type = CString::new(FSTYPE).map_err(bad)?;
    let c_data = CString::new(data).map_err(bad)?;
    let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c_source.as_ptr(),
            c_point.as_ptr(),
            c_type.as_ptr(),
            flags,
            c_data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EPERM) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(fd))
}
