//! One count of a cache directory's use for every process on the node that fills it (daemons,
//! `prefetch`, `get`), so that together they keep its quota, not each its own.
//!
//! The count lives in `DIR/ledger`, a small file every process maps shared, in two parts: the
//! bytes entries take on disk, and the room claimed by entries being written. A writer claims
//! room before it writes; an entry put in place turns its claim into its size; an eviction
//! takes an entry off when it unlinks it, so whoever removes an entry counts it, once. The
//! entries' part is a measurement: any process that lists the directory (at start, and when it
//! must make room and knows of no entry) sets it to what it found. Claims cannot be measured:
//! a process killed while writing leaves its claim counted until a process opens the cache
//! with no other using it (each holds a shared lock on the ledger while it does), which starts
//! the claims afresh.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

pub const LEDGER: &str = "ledger";
/// The mapped length: one page.
const LEN: usize = 4096;
/// Written at the start of a ledger of this layout; anything else is reset.
const MAGIC: u64 = u64::from_le_bytes(*b"DSLEDGR1");

pub struct Ledger {
    /// Kept open for its lock, which lasts as long as the descriptor.
    _file: File,
    map: *mut u8,
    /// Whether no other process held the ledger when it was opened, until the first
    /// measurement, which then starts the claims afresh.
    alone: std::sync::Mutex<bool>,
}

// SAFETY: the mapping is only reached through atomics, which may be shared between threads
// (and processes); it lives as long as the Ledger.
unsafe impl Send for Ledger {}
unsafe impl Sync for Ledger {}

impl Ledger {
    /// Opens (creating) the ledger of the cache in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Ledger> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(LEDGER))?;
        // SAFETY: flock on a descriptor we own.
        let alone = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if file.metadata()?.len() < LEN as u64 {
            file.set_len(LEN as u64)?;
        }
        // SAFETY: a shared read-write mapping of a file of LEN bytes we just sized; unmapped
        // in Drop.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ledger = Ledger {
            _file: file,
            map: map as *mut u8,
            alone: std::sync::Mutex::new(alone),
        };
        if ledger.word(0).load(Ordering::Acquire) != MAGIC {
            ledger.entries().store(0, Ordering::Release);
            ledger.claims().store(0, Ordering::Release);
            ledger.word(0).store(MAGIC, Ordering::Release);
        }
        // From here on every user holds it shared: the next process alone is the next to see
        // an exclusive lock granted.
        // SAFETY: flock on a descriptor we own.
        unsafe { libc::flock(ledger._file.as_raw_fd(), libc::LOCK_SH) };
        Ok(ledger)
    }

    /// The `n`th u64 of the mapping.
    fn word(&self, n: usize) -> &AtomicU64 {
        assert!(n < LEN / 8);
        // SAFETY: inside a page-aligned mapping of LEN bytes that lives as long as self, and
        // aligned for a u64; only ever accessed atomically.
        unsafe { &*(self.map.add(n * 8) as *const AtomicU64) }
    }

    fn entries(&self) -> &AtomicU64 {
        self.word(1)
    }

    fn claims(&self) -> &AtomicU64 {
        self.word(2)
    }

    /// Bytes of every entry ever put in place, never taken off: what was put while a listing
    /// ran is told by two readings of it.
    fn put_ever(&self) -> &AtomicU64 {
        self.word(3)
    }

    /// A reading of the bytes ever put in place, to give [`measured`](Self::measured).
    pub fn puts(&self) -> u64 {
        self.put_ever().load(Ordering::Acquire)
    }

    /// Bytes of entries and claims of every process on the node.
    pub fn used(&self) -> u64 {
        self.entries().load(Ordering::Acquire) + self.claims().load(Ordering::Acquire)
    }

    /// Claims room; returns what is used with it.
    pub fn claim(&self, bytes: u64) -> u64 {
        self.claims().fetch_add(bytes, Ordering::AcqRel);
        self.used()
    }

    pub fn release(&self, bytes: u64) {
        sub(self.claims(), bytes);
    }

    /// An entry of `bytes` was put in place.
    pub fn put(&self, bytes: u64) {
        self.put_ever().fetch_add(bytes, Ordering::AcqRel);
        self.entries().fetch_add(bytes, Ordering::AcqRel);
    }

    /// An entry of `bytes` was unlinked.
    pub fn removed(&self, bytes: u64) {
        sub(self.entries(), bytes);
    }

    /// What a listing of the directory found its entries take, begun when
    /// [`puts`](Self::puts) read `puts_before`. Entries put in place while it ran may or may not
    /// have been listed: they are counted again, so the count errs high, never low (an entry
    /// removed meanwhile may likewise stay counted) until the next listing. `claimed` is this
    /// process's claims, which are the node's if no other process had the cache when this one
    /// opened it.
    pub fn measured(&self, entries: u64, puts_before: u64, claimed: u64) {
        let during = self.puts().saturating_sub(puts_before);
        self.entries().store(entries + during, Ordering::Release);
        if std::mem::take(&mut *self.alone.lock().unwrap_or_else(|e| e.into_inner())) {
            self.claims().store(claimed, Ordering::Release);
        }
    }
}

fn sub(counter: &AtomicU64, bytes: u64) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
        Some(u.saturating_sub(bytes))
    });
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // SAFETY: the mapping made in open, no longer referenced.
        unsafe { libc::munmap(self.map as *mut libc::c_void, LEN) };
    }
}
