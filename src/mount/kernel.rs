//! Asking the kernel for the mount itself, so that it carries our filesystem type.
//!
//! fuser's own direct mount always uses type `fuse`; we mount `fuse.datastore` (as libfuse's
//! helpers do), so `findmnt -t fuse.datastore`, `umount -t` and systemd see what it is, and
//! `datastore umount` can refuse to touch anything else. Only root may call mount(2); other
//! users get `None` and mount through fusermount3 instead.
//!
//! Also the mount's read-ahead, which only sysfs can raise (see [`widen_read_ahead`]).

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

/// statfs's f_type of a FUSE mount.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// The kernel's read-ahead on a mount: the largest request it sends (256 pages, the
/// `max_pages_limit` of the kernels we run on), so a sequential reader's pages come in
/// requests of that size.
pub const READ_AHEAD: u32 = 1 << 20;

/// Raises the read-ahead of the mount at `point` to [`READ_AHEAD`]; waits until the mount
/// answers, so it must not run on the session's own thread. Returns the read-ahead now set, in
/// KiB.
///
/// The kernel offers a FUSE daemon at INIT the read-ahead its new mount has (128 KiB, the
/// default of every backing device) and takes the smaller of that and the answer, so no
/// answer can raise it; a sequential reader then arrives in 128 KiB READs, eight round trips
/// per MiB where one would do. Root can raise it afterwards through the mount's backing device
/// in sysfs, as udev rules do for disks. Others (and read-only /sys) keep the default.
pub fn widen_read_ahead(point: &Path) -> std::io::Result<u32> {
    let c_point = CString::new(point.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // A statfs of the mount is always a request, and requests wait for INIT to be answered:
    // a value written before would be cut back by the answer.
    // SAFETY: a valid NUL-terminated path; the structs are plain ones the calls fill in.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_point.as_ptr(), &mut fs) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The mount's device, without asking the daemon for the root's attributes: a GETATTR now
    // would leave them cached, and a stat of a mount whose daemon died would then succeed
    // instead of saying so.
    // SAFETY: as above.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let flags = libc::AT_STATX_DONT_SYNC | libc::AT_NO_AUTOMOUNT;
    if unsafe { libc::statx(libc::AT_FDCWD, c_point.as_ptr(), flags, 0, &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Gone already (or never there): the path is some other filesystem's now, whose device
    // is not ours to tune. FUSE mounts have anonymous devices, major 0.
    if fs.f_type as i64 != FUSE_SUPER_MAGIC || st.stx_dev_major != 0 {
        return Err(std::io::Error::other("not a FUSE mount any more"));
    }
    let knob = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        st.stx_dev_major, st.stx_dev_minor
    );
    let want = READ_AHEAD >> 10;
    let now: u32 = std::fs::read_to_string(&knob)?.trim().parse().unwrap_or(0);
    if now < want {
        std::fs::write(&knob, want.to_string())?;
    }
    Ok(now.max(want))
}
