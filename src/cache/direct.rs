//! Writing new chunk entries around the page cache (O_DIRECT), where the filesystem allows it.
//!
//! A cold read writes every byte it fetches to the disk cache, as chunk entries. Written the ordinary way, each
//! byte is first copied into a page-cache page the kernel allocates for it: profiled on a cold
//! 1 GiB read, that copy took half of the daemon's CPU, more than hashing and fetching
//! together, and a machine that is also serving the reader has no CPU to spare. O_DIRECT hands
//! the device our buffer instead (1 GiB took a sixth of the system time here, and a cold read
//! from a local store went from 123 to 251 MB/s). The bytes are then not in the page cache,
//! which costs little: what reads a chunk entry soon after (the assembly of a file entry)
//! would find its pages evicted under a large cold read anyway. File entries are written the
//! ordinary way (see `file_entry::Writer`).
//!
//! O_DIRECT needs the buffer, offsets and lengths aligned to the device's blocks: the bytes
//! are staged in an aligned buffer reused by each writing thread, and the last block is
//! written padded and the file cut back to its length. A filesystem that refuses O_DIRECT (or
//! an unaligned device) gets ordinary writes, with no error.

use std::cell::RefCell;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// Alignment of buffer, offsets and lengths: the largest logical block size of common devices.
const ALIGN: usize = 4096;
/// Bytes staged before each write: each blocking thread that writes keeps this much while it
/// lives, and a mount may have dozens, so it is small (a daemon serving 64 readers came within
/// 14 MiB of its memory bound with 1 MiB here).
const STAGE: usize = 256 << 10;

thread_local! {
    /// Each blocking thread's staging buffer: allocated once, so its pages are in place (a
    /// fresh buffer per entry would be faulted in page by page).
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Appends bytes to a new, empty file, around the page cache where the filesystem allows it.
/// Every call is given the same file.
pub struct Appender {
    direct: bool,
    /// Bytes on disk so far (a multiple of [`ALIGN`] while `direct`).
    written: u64,
    /// Bytes staged and not yet written.
    staged: usize,
}

impl Appender {
    /// Starts appending to `file`, which must be empty and open for writing.
    pub fn new(file: &File) -> Appender {
        Appender {
            direct: set_direct(file, true),
            written: 0,
            staged: 0,
        }
    }

    /// Appends `data`. Blocking.
    pub fn write(&mut self, file: &File, mut data: &[u8]) -> std::io::Result<()> {
        if !self.direct {
            file.write_all_at(data, self.written)?;
            self.written += data.len() as u64;
            return Ok(());
        }
        if data.as_ptr().align_offset(ALIGN) == 0 && self.staged % ALIGN == 0 {
            // Aligned already (a buffer of `crate::buffers`): its whole blocks go to the
            // device from where they are, with no copy.
            let whole = data.len() / ALIGN * ALIGN;
            if whole > 0 {
                if self.staged > 0 {
                    self.flush(file, self.staged)?;
                }
                if self.direct {
                    self.write_direct(file, &data[..whole])?;
                    data = &data[whole..];
                }
            }
        }
        while !data.is_empty() && self.direct {
            let n = data.len().min(STAGE - self.staged);
            let at = self.staged;
            STAGING.with_borrow_mut(|buf| stage(buf)[at..at + n].copy_from_slice(&data[..n]));
            self.staged += n;
            data = &data[n..];
            if self.staged == STAGE {
                self.flush(file, STAGE)?;
            }
        }
        if !data.is_empty() {
            // O_DIRECT was refused on the way: the rest the ordinary way.
            return self.write(file, data);
        }
        Ok(())
    }

    /// Writes what is staged, padded to a whole block, and cuts the file back to the length
    /// appended. Blocking.
    pub fn finish(mut self, file: &File) -> std::io::Result<()> {
        if self.direct && self.staged > 0 {
            let len = self.written + self.staged as u64;
            let (from, padded) = (self.staged, self.staged.div_ceil(ALIGN) * ALIGN);
            STAGING.with_borrow_mut(|buf| stage(buf)[from..padded].fill(0));
            self.flush(file, padded)?;
            file.set_len(len)?;
        }
        Ok(())
    }

    /// Writes `data`, whole blocks in an aligned buffer, at the end of the file, with nothing
    /// staged; the ordinary way from then on if the device refuses O_DIRECT.
    fn write_direct(&mut self, file: &File, data: &[u8]) -> std::io::Result<()> {
        self.direct = write_or_fall_back(file, data, data, self.written)?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Writes the staged bytes, `len` of them with padding (a multiple of [`ALIGN`]), at the
    /// end of the file; ordinary writes from then on if the device refuses these.
    fn flush(&mut self, file: &File, len: usize) -> std::io::Result<()> {
        let staged = self.staged;
        let at = self.written;
        let direct = STAGING.with_borrow_mut(|buf| {
            let stage = stage(buf);
            write_or_fall_back(file, &stage[..len], &stage[..staged], at)
        })?;
        self.direct = direct;
        self.written += staged as u64;
        self.staged = 0;
        Ok(())
    }
}

/// Writes `aligned` at `at` with O_DIRECT; if the device refuses it, turns O_DIRECT off and
/// writes `plain` (the same bytes without padding) instead. Whether O_DIRECT is still on.
fn write_or_fall_back(file: &File, aligned: &[u8], plain: &[u8], at: u64) -> std::io::Result<bool> {
    match file.write_all_at(aligned, at) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && set_direct(file, false) => {
            file.write_all_at(plain, at).map(|()| false)
        }
        Err(e) => Err(e),
    }
}

/// The aligned staging area within a thread's buffer, allocated on first use.
fn stage(buf: &mut Vec<u8>) -> &mut [u8] {
    if buf.is_empty() {
        *buf = vec![0u8; STAGE + ALIGN];
    }
    let at = buf.as_ptr().align_offset(ALIGN);
    &mut buf[at..at + STAGE]
}

/// Turns O_DIRECT on or off for `file`; whether that worked.
fn set_direct(file: &File, on: bool) -> bool {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL and F_SETFL on a descriptor this process owns, for the life of `file`.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return false;
        }
        let flags = if on {
            flags | libc::O_DIRECT
        } else {
            flags & !libc::O_DIRECT
        };
        libc::fcntl(fd, libc::F_SETFL, flags) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory on the disk the project is on: /tmp may be a tmpfs, which takes O_DIRECT
    /// without its alignment rules.
    fn on_disk() -> tempfile::TempDir {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&base).unwrap();
        tempfile::tempdir_in(base).unwrap()
    }

    fn is_direct(file: &File) -> bool {
        // SAFETY: F_GETFL on a descriptor open for the call.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) & libc::O_DIRECT != 0 }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    fn append(file: &File, mut a: Appender, d: &[u8], piece: usize) {
        for p in d.chunks(piece) {
            a.write(file, p).unwrap();
        }
        a.finish(file).unwrap();
    }

    #[test]
    fn appended_bytes_are_the_file_exactly_in_any_pieces() {
        let dir = on_disk();
        for (len, piece) in [
            (0, 1),
            (1, 1),
            (4095, 1000),
            (4096, 4096),
            (STAGE, 77_777),
            (3 * STAGE + 12_345, STAGE + 1),
            (STAGE + 1, STAGE),
        ] {
            let d = data(len);
            let path = dir.path().join(format!("f{len}-{piece}"));
            let file = File::create(&path).unwrap();
            let a = Appender::new(&file);
            assert!(a.direct && is_direct(&file));
            append(&file, a, &d, piece);
            assert_eq!(file.metadata().unwrap().len(), len as u64);
            assert!(
                std::fs::read(&path).unwrap() == d,
                "{len} bytes in {piece}s"
            );
        }
    }

    /// Bytes in a page-aligned buffer, as fetched chunks arrive.
    fn aligned(d: &[u8]) -> bytes::Bytes {
        let mut f = crate::buffers::Buffers::new(0).filling(d.len());
        f.extend(d);
        let b = f.freeze();
        assert_eq!(b.as_ptr().align_offset(ALIGN), 0);
        b
    }

    #[test]
    fn aligned_data_is_written_from_where_it_is_after_what_was_staged() {
        let dir = on_disk();
        for (head, len) in [
            (4096, 3 * STAGE + 12_345),
            (0, 8192),
            (4096, 100),
            (100, 9000),
        ] {
            let (h, d) = (data(head), data(len));
            let path = dir.path().join(format!("a{head}-{len}"));
            let file = File::create(&path).unwrap();
            let mut a = Appender::new(&file);
            a.write(&file, &h).unwrap();
            a.write(&file, &aligned(&d)).unwrap();
            a.finish(&file).unwrap();
            let got = std::fs::read(&path).unwrap();
            assert_eq!(got.len(), head + len);
            assert!(
                got[..head] == h[..] && got[head..] == d[..],
                "{head} then {len}"
            );
        }
        // Refused (an unaligned offset, as an unaligned device would): written the ordinary way.
        let path = dir.path().join("refused");
        let file = File::create(&path).unwrap();
        let a = Appender {
            direct: set_direct(&file, true),
            written: 1,
            staged: 0,
        };
        let d = data(2 * STAGE + 5000);
        append(&file, a, &aligned(&d), usize::MAX);
        assert!(!is_direct(&file));
        assert!(std::fs::read(&path).unwrap()[1..] == d[..]);
    }

    #[test]
    fn a_refused_direct_write_becomes_an_ordinary_one() {
        let dir = on_disk();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let d = data(2 * STAGE + 5000);
        // An unaligned offset: O_DIRECT refuses it with EINVAL, as an unaligned device would.
        let a = Appender {
            direct: set_direct(&file, true),
            written: 1,
            staged: 0,
        };
        assert!(a.direct, "the test's filesystem takes O_DIRECT");
        append(&file, a, &d, 100_000);
        assert!(!is_direct(&file), "the refused write turned O_DIRECT off");
        assert!(std::fs::read(&path).unwrap()[1..] == d[..]);
    }
}
