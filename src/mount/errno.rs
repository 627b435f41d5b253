//! The one place where errors become errno values for the kernel.

use crate::read::ContentError;
use fuser::Errno;

/// Every failure to produce content is EIO: the store is unreachable, slow beyond the
/// timeout, or holds damaged bytes. The cause is logged by the caller; the reader of the file
/// only learns that this read failed, and may retry it.
pub fn of_content(_e: &ContentError) -> Errno {
    Errno::EIO
}

/// A file whose local copy, handed to the kernel for passthrough, was changed on disk while
/// open: new opens fail as a failed read would.
pub fn of_content_damaged() -> Errno {
    Errno::EIO
}

/// Writes of any kind: the mount is a read-only view of an immutable version.
pub const READ_ONLY: Errno = Errno::EROFS;
/// An extended attribute the entry does not have.
pub const NO_ATTRIBUTE: Errno = Errno::ENODATA;
/// The caller's buffer is too small for the attribute value or list.
pub const TOO_SMALL: Errno = Errno::ERANGE;
pub const NOT_A_DIRECTORY: Errno = Errno::ENOTDIR;
pub const IS_A_DIRECTORY: Errno = Errno::EISDIR;
pub const INVALID: Errno = Errno::EINVAL;
/// A read on a file handle this mount never gave out (or gave for another file).
pub const BAD_HANDLE: Errno = Errno::EBADF;
/// An ioctl: files here are plain files, which answer none.
pub const NOT_A_TERMINAL: Errno = Errno::ENOTTY;
/// An operation a read-only view never needs (FLUSH): the kernel stops asking for it.
pub const NOT_NEEDED: Errno = Errno::ENOSYS;
/// A request only the mount's owner (or root) may make.
pub const NOT_PERMITTED: Errno = Errno::EPERM;
/// An inode no version served now has: one a switch replaced, which the kernel still held
/// when it was asked for. The kernel then walks the path again, revalidating each name, and
/// finds what the live version has there.
pub const STALE: Errno = Errno::ESTALE;
