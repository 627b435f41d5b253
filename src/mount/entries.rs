//! What the kernel is told about an entry: its attributes, listing and extended attributes,
//! from the version that answers for it.

use super::errno;
use super::versions::Mounted;
use crate::format::EntryKind;
use fuser::{Errno, FileAttr, FileType, INodeNo, ReplyXattr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the kernel may cache names, attributes and negative lookups of the live version:
/// a version never changes, and a switch tells the kernel what to forget.
pub const TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// The I/O size reported to programs (`st_blksize`): large reads suit an object store.
const BLOCK_SIZE: u32 = 1 << 20;

/// A file's SHA-256 (hex), and the version (`NAME@vN`) an entry is answered from.
pub const XATTR_SHA256: &str = "user.datastore.sha256";
pub const XATTR_VERSION: &str = "user.datastore.version";

/// What the kernel is told of entry `i` of `v`, owned by `uid` and `gid`.
pub fn attr(v: &Mounted, i: usize, uid: u32, gid: u32) -> FileAttr {
    let e = &v.manifest.entries[i];
    let (kind, size, nlink) = match e.kind {
        EntryKind::Dir { .. } => (FileType::Directory, 4096, 2),
        EntryKind::File { size, .. } => (FileType::RegularFile, size, 1),
        EntryKind::Symlink { target } => (FileType::Symlink, target.len as u64, 1),
    };
    let t = time(e.mtime.secs, e.mtime.nanos);
    FileAttr {
        ino: INodeNo(v.ino(i)),
        size,
        blocks: size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind,
        perm: (e.mode & 0o7777) as u16,
        nlink,
        uid,
        gid,
        rdev: 0,
        flags: 0,
        blksize: BLOCK_SIZE,
    }
}

pub fn kind(v: &Mounted, i: usize) -> FileType {
    match v.manifest.entries[i].kind {
        EntryKind::Dir { .. } => FileType::Directory,
        EntryKind::File { .. } => FileType::RegularFile,
        EntryKind::Symlink { .. } => FileType::Symlink,
    }
}

/// `.`, `..` and the children of directory `i`, in the order readdir offsets count them.
pub fn listing(v: &Mounted, i: usize) -> Result<Vec<(usize, &[u8])>, Errno> {
    let m = &v.manifest;
    let e = &m.entries[i];
    if !matches!(e.kind, EntryKind::Dir { .. }) {
        return Err(errno::NOT_A_DIRECTORY);
    }
    let mut out = vec![(i, &b"."[..]), (e.parent as usize, &b".."[..])];
    out.extend(m.children(i).map(|c| (c, m.name(&m.entries[c]))));
    Ok(out)
}

pub fn xattr(v: &Mounted, i: usize, name: &[u8]) -> Option<Vec<u8>> {
    match name {
        n if n == XATTR_VERSION.as_bytes() => Some(v.label.clone().into_bytes()),
        n if n == XATTR_SHA256.as_bytes() => match &v.manifest.entries[i].kind {
            EntryKind::File { sha256, .. } => Some(sha256.to_hex().into_bytes()),
            _ => None,
        },
        _ => None,
    }
}

pub fn xattr_names(v: &Mounted, i: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for name in [XATTR_SHA256, XATTR_VERSION] {
        if xattr(v, i, name.as_bytes()).is_some() {
            out.extend_from_slice(name.as_bytes());
            out.push(0);
        }
    }
    out
}

fn time(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos as u64)
    }
}

/// Answers an xattr request: the size when asked for it, ERANGE when the buffer is too small.
pub fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if (size as usize) < value.len() {
        reply.error(errno::TOO_SMALL);
    } else {
        reply.data(value);
    }
}
