//! Asking a running mount to do something: an ioctl on its root directory.
//!
//! The request travels in the kernel's own FUSE connection to the daemon that serves the mount,
//! so there is no socket to find, secure or clean up, and it works wherever the mount is
//! visible (a container sees its mounts, not the host's sockets). The kernel copies a fixed
//! buffer each way (`_IOWR`): the request is `NAME@VER`, NUL-padded; the answer is a status
//! (the ioctl's return value: 0 done, 1 refused) and one line of text.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Bytes the kernel copies each way.
pub const BUFFER: usize = 4096;
/// `_IOWR('D', 1, [u8; BUFFER])`: move the mount to another version.
pub const SWITCH: u32 = (3 << 30) | ((BUFFER as u32) << 16) | ((b'D' as u32) << 8) | 1;

/// The ioctl's return value when the daemon refused.
pub const REFUSED: i32 = 1;

/// The text of a request or answer buffer: up to its first NUL.
pub fn text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// An answer: its text, cut to fit the buffer with its NUL.
pub fn answer(line: &str) -> Vec<u8> {
    let mut out = line.as_bytes()[..line.len().min(BUFFER - 1)].to_vec();
    out.push(0);
    out
}

/// Why a request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot open {}: {}", .0.display(), crate::io_cause::Cause(.1))]
    Open(std::path::PathBuf, std::io::Error),
    #[error("{} is not a datastore mount (or its daemon is older than `switch`)", .0.display())]
    NotOurs(std::path::PathBuf),
    #[error("{0}")]
    Refused(String),
    #[error("{}: {}", .0.display(), crate::io_cause::Cause(.1))]
    Failed(std::path::PathBuf, std::io::Error),
}

/// Asks the mount at `point` to switch to `target` (`NAME@VER`); returns the daemon's line.
pub fn switch(point: &Path, target: &str) -> Result<String, ControlError> {
    let c = std::ffi::CString::new(point.as_os_str().as_bytes())
        .map_err(|_| ControlError::NotOurs(point.into()))?;
    // SAFETY: c is a valid path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(ControlError::Open(
            point.into(),
            std::io::Error::last_os_error(),
        ));
    }
    let mut buf = vec![0u8; BUFFER];
    let n = target.len().min(BUFFER - 1);
    buf[..n].copy_from_slice(&target.as_bytes()[..n]);
    // SAFETY: buf is BUFFER bytes, the size SWITCH encodes; fd is ours and closed below.
    let r = unsafe { libc::ioctl(fd, SWITCH as _, buf.as_mut_ptr()) };
    let e = std::io::Error::last_os_error();
    // SAFETY: fd was opened above.
    unsafe { libc::close(fd) };
    match r {
        0 => Ok(text(&buf)),
        REFUSED => Err(ControlError::Refused(text(&buf))),
        _ => Err(match e.raw_os_error() {
            Some(libc::ENOTTY | libc::EINVAL | libc::ENOSYS) => ControlError::NotOurs(point.into()),
            _ => ControlError::Failed(point.into(), e),
        }),
    }
}
