//! Asking a running mount to do something: an ioctl on its root directory.
//!
//! The request travels in the kernel's own FUSE connection to the daemon that serves the mount,
//! so there is no socket to find, secure or clean up, and it works wherever the mount is
//! visible (a container sees its mounts, not the host's sockets). The kernel copies a fixed
//! buffer each way (`_IOWR`); the answer is a status (the ioctl's return value: 0 done,
//! 1 refused) and one line of text.
//! - [`SWITCH`]: the request is `NAME@VER`, NUL-padded.
//! - [`ORDER`]: a read order (see `read::order`), as the text of a list of paths in pieces of
//!   whole lines: one flag byte ([`FIRST`], [`LAST`]), then the text, NUL-padded. Pieces of
//!   one order come from one process, one after another; the last one hands it over.

use crate::format::Manifest;
use crate::read::order::Listed;
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Bytes the kernel copies each way.
pub const BUFFER: usize = 4096;
/// `_IOWR('D', 1, [u8; BUFFER])`: move the mount to another version.
pub const SWITCH: u32 = (3 << 30) | ((BUFFER as u32) << 16) | ((b'D' as u32) << 8) | 1;

/// Bytes the kernel copies each way for [`ORDER`].
pub const PIECE: usize = 8192;
/// `_IOWR('D', 2, [u8; PIECE])`: a piece of a read order.
pub const ORDER: u32 = (3 << 30) | ((PIECE as u32) << 16) | ((b'D' as u32) << 8) | 2;
/// Flags of an order's piece: the first starts a new order, the last hands it over.
pub const FIRST: u8 = 1;
pub const LAST: u8 = 2;

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
    #[error(transparent)]
    NotOurs(#[from] super::mountpoint::MountPointError),
    #[error("the daemon serving {} is older than this command; unmount it and mount it again to use it", .0.display())]
    Older(std::path::PathBuf),
    #[error("{0}")]
    Refused(String),
    #[error("{}: {}", .0.display(), crate::io_cause::Cause(.1))]
    Failed(std::path::PathBuf, std::io::Error),
}

/// Asks the mount at `point` to switch to `target` (`NAME@VER`); returns the daemon's line.
pub fn switch(point: &Path, target: &str) -> Result<String, ControlError> {
    let root = Root::open(point)?;
    let mut buf = vec![0u8; BUFFER];
    let n = target.len().min(BUFFER - 1);
    buf[..n].copy_from_slice(&target.as_bytes()[..n]);
    root.ask(SWITCH, &mut buf)
}

/// Hands the mount at `point` the read order `list` (paths relative to its root, one per
/// line); returns the daemon's line. A line too long for a piece, longer than any path can
/// be, is left out.
pub fn order(point: &Path, list: &[u8]) -> Result<String, ControlError> {
    let root = Root::open(point)?;
    let pieces = split(list);
    let mut said = String::new();
    for (i, text) in pieces.iter().enumerate() {
        said = root.ask(ORDER, &mut request(flags(i, pieces.len()), text))?;
    }
    Ok(said)
}

/// The buffer of one piece: its flags, then its text, NUL-padded.
fn request(flags: u8, text: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; PIECE];
    buf[0] = flags;
    buf[1..1 + text.len()].copy_from_slice(text);
    buf
}

/// The text of a list in pieces of whole lines, each of which fits a request after its flag.
fn split(list: &[u8]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut piece = Vec::with_capacity(PIECE);
    for line in list.split(|&b| b == b'\n') {
        if line.len() + 2 > PIECE {
            continue;
        }
        if piece.len() + line.len() + 1 > PIECE - 1 {
            pieces.push(std::mem::take(&mut piece));
        }
        piece.extend_from_slice(line);
        piece.push(b'\n');
    }
    pieces.push(piece);
    pieces
}

/// The flags of piece `i` of `n`.
fn flags(i: usize, n: usize) -> u8 {
    (if i == 0 { FIRST } else { 0 }) | (if i + 1 == n { LAST } else { 0 })
}

/// The root directory of a mount, open for control requests.
struct Root {
    point: std::path::PathBuf,
    fd: std::os::fd::OwnedFd,
}

impl Root {
    fn open(point: &Path) -> Result<Root, ControlError> {
        use super::mountpoint::{mounted_at, MountPointError, FSTYPE};
        use std::os::fd::FromRawFd;
        let not_ours = || ControlError::NotOurs(MountPointError::NotOurs(point.into()));
        // The mount table has absolute paths without links; `point` may be relative.
        let real = std::fs::canonicalize(point).unwrap_or_else(|_| point.to_path_buf());
        if mounted_at(&real).is_none_or(|m| m.fstype != FSTYPE) {
            return Err(not_ours());
        }
        let c = std::ffi::CString::new(point.as_os_str().as_bytes()).map_err(|_| not_ours())?;
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
        Ok(Root {
            point: point.into(),
            // SAFETY: fd was just opened, and is owned by nothing else.
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Sends request `cmd` with `buf` (the size `cmd` encodes), which the answer replaces.
    fn ask(&self, cmd: u32, buf: &mut [u8]) -> Result<String, ControlError> {
        use std::os::fd::AsRawFd;
        // SAFETY: buf is as large as cmd says; the descriptor is open while self lives.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), cmd as _, buf.as_mut_ptr()) };
        let e = std::io::Error::last_os_error();
        match r {
            0 => Ok(text(buf)),
            REFUSED => Err(ControlError::Refused(text(buf))),
            _ => Err(match e.raw_os_error() {
                Some(libc::ENOTTY | libc::EINVAL | libc::ENOSYS) => {
                    ControlError::Older(self.point.clone())
                }
                _ => ControlError::Failed(self.point.clone(), e),
            }),
        }
    }
}

/// Orders being received, by the process sending them.
#[derive(Default)]
pub struct Orders {
    pending: Mutex<HashMap<u32, (Arc<Manifest>, Listed)>>,
}

/// Orders being received at once, at most: one left behind by a sender that died is dropped
/// when more than this many senders have begun one since.
const PENDING: usize = 8;

impl Orders {
    /// Takes a piece of an order from process `pid` for the version of manifest `m`:
    /// `Ok(None)` until the last, then the files of the whole order and the line to answer.
    pub fn piece(
        &self,
        pid: u32,
        m: &Arc<Manifest>,
        piece: &[u8],
    ) -> Result<Option<(Vec<usize>, String)>, String> {
        let (&flags, text) = piece.split_first().ok_or("an empty order request")?;
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        let text = &text[..end];
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if flags & FIRST != 0 {
            if pending.len() >= PENDING {
                pending.clear();
            }
            pending.insert(pid, (m.clone(), Listed::default()));
        }
        let Some((manifest, listed)) = pending.get_mut(&pid) else {
            return Err("an order's piece came without its first; send the order again".into());
        };
        if !Arc::ptr_eq(manifest, m) {
            pending.remove(&pid);
            return Err(
                "the mount switched versions while the order was sent; send it again".into(),
            );
        }
        listed
            .add(m, text)
            .map_err(|e| format!("cannot read the order: {e}"))?;
        if flags & LAST == 0 {
            return Ok(None);
        }
        let (_, listed) = pending.remove(&pid).expect("found above");
        let mut said = format!(
            "following an order of {}",
            crate::count::count(listed.files.len() as u64, "file")
        );
        if let Some(skipped) = listed.skipped_line() {
            let n = listed.skipped;
            let lines = if n == 1 { "line" } else { "lines" };
            said += &format!("; {n} {lines} naming no file skipped: {skipped}");
        }
        Ok(Some((listed.files, said)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::tests::build;

    fn piece(flags: u8, text: &str) -> Vec<u8> {
        request(flags, text.as_bytes())
    }

    /// An order comes in pieces of whole lines, from one process; the last piece hands over
    /// every file, in order, and says which lines named none.
    #[test]
    fn an_order_is_put_together_from_its_pieces() {
        let m = Arc::new(build(&["a/x", "a/y", "b/z", "d/"]));
        let file = |p: &str| {
            let parts: Vec<&[u8]> = p.split('/').map(str::as_bytes).collect();
            m.lookup(&parts).unwrap()
        };
        let orders = Orders::default();
        assert_eq!(orders.piece(7, &m, &piece(FIRST, "b/z\n/a//y\n")), Ok(None));
        // Another process's order, begun meanwhile, is its own.
        assert_eq!(orders.piece(8, &m, &piece(FIRST, "a/x\n")), Ok(None));
        let (files, said) = orders
            .piece(7, &m, &piece(LAST, "# a comment\n\nnope\nd\na/x\n"))
            .unwrap()
            .unwrap();
        assert_eq!(files, [file("b/z"), file("a/y"), file("a/x")]);
        assert_eq!(
            said,
            "following an order of 3 files; 2 lines naming no file skipped: \
             line 5 'nope' (not there), line 6 'd' (a directory)"
        );
        // A piece without its first, and an order whose version changed, are refused.
        assert!(orders.piece(7, &m, &piece(LAST, "a/x\n")).is_err());
        let other = Arc::new(build(&["a/x"]));
        assert!(orders.piece(8, &other, &piece(LAST, "a/x\n")).is_err());
    }

    /// The sender cuts a list into pieces at line ends, each within the buffer.
    #[test]
    fn pieces_hold_whole_lines() {
        let lines: Vec<String> = (0..3000)
            .map(|i| format!("dir{}/file{i:05}.jpg", i % 7))
            .collect();
        let list = lines.join("\n");
        let files: Vec<&str> = lines.iter().map(String::as_str).collect();
        let m = Arc::new(build(&files));
        let orders = Orders::default();
        let mut said = None;
        let pieces = split(list.as_bytes());
        assert!(pieces.len() > 1);
        for (i, text) in pieces.iter().enumerate() {
            assert!(text.len() < PIECE);
            said = orders
                .piece(1, &m, &request(flags(i, pieces.len()), text))
                .unwrap();
        }
        let (files, said) = said.unwrap();
        assert_eq!(files.len(), 3000, "{said}");
        assert_eq!(said, "following an order of 3000 files");
    }
}
