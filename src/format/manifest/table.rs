//! The storage of a manifest's tables: a vector when decoded or built, or a stretch of a
//! read-only file mapping when opened from a node's image of it ([`super::image`]).
//!
//! A mapped table costs no memory of its own: its pages are the page cache, shared by every
//! mount of the version on the node and read from disk only where a lookup touches them.
//! Either way a table reads as a slice; changing a mapped table first copies it.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// A read-only, private mapping of a whole file, unmapped when the last table using it goes.
pub(crate) struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only memory that nothing writes for as long as it exists (image
// files are written to a temporary name, renamed into place and never changed; removing them
// keeps the mapping's pages).
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps all of `file`, read-only. An empty file has no mapping to make and is refused.
    pub(crate) fn of(file: &std::fs::File) -> std::io::Result<Mapping> {
        let len = file.metadata()?.len();
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
        // SAFETY: a new private read-only mapping of a file we hold open; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `len` readable bytes from `ptr` for the mapping's life.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps what `of` mapped, once; no slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// One table of a manifest.
pub struct Table<T>(Repr<T>);

enum Repr<T> {
    Owned(Vec<T>),
    /// `len` values of `T` at byte `offset` of `map`; made only by [`Table::mapped`].
    Mapped {
        map: Arc<Mapping>,
        offset: usize,
        len: usize,
    },
}

impl<T> Table<T> {
    /// A table of `len` values at byte `offset` of `map`, if they lie inside it, aligned.
    ///
    /// # Safety
    /// The bytes there must be `len` valid values of `T`, as laid out by this build: written
    /// from values of `T` by [`super::image`], whose header and checksum have been checked.
    pub(crate) unsafe fn mapped(map: Arc<Mapping>, offset: usize, len: usize) -> Option<Self> {
        let end = len
            .checked_mul(std::mem::size_of::<T>())?
            .checked_add(offset)?;
        let aligned = (map.ptr as usize + offset) % std::mem::align_of::<T>() == 0;
        (end <= map.len && aligned).then_some(Table(Repr::Mapped { map, offset, len }))
    }

    /// The values, copied out of the mapping first if the table is mapped.
    pub fn to_mut(&mut self) -> &mut Vec<T>
    where
        T: Clone,
    {
        if let Repr::Mapped { .. } = self.0 {
            self.0 = Repr::Owned(self.deref().to_vec());
        }
        match &mut self.0 {
            Repr::Owned(v) => v,
            Repr::Mapped { .. } => unreachable!("made owned above"),
        }
    }

    /// The values as a vector (copied out of the mapping if the table is mapped).
    pub fn into_vec(mut self) -> Vec<T>
    where
        T: Clone,
    {
        std::mem::take(self.to_mut())
    }

    pub fn push(&mut self, value: T)
    where
        T: Clone,
    {
        self.to_mut().push(value)
    }

    /// Whether the table lives in a file mapping.
    pub fn is_mapped(&self) -> bool {
        matches!(self.0, Repr::Mapped { .. })
    }
}

impl<T> Deref for Table<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.0 {
            Repr::Owned(v) => v,
            // SAFETY: `mapped` checked bounds and alignment, and its caller the contents.
            Repr::Mapped { map, offset, len } => unsafe {
                std::slice::from_raw_parts(map.bytes().as_ptr().add(*offset) as *const T, *len)
            },
        }
    }
}

impl<T: Clone> DerefMut for Table<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.to_mut()
    }
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table(Repr::Owned(Vec::new()))
    }
}

impl<T> From<Vec<T>> for Table<T> {
    fn from(v: Vec<T>) -> Self {
        Table(Repr::Owned(v))
    }
}

impl<T> Clone for Table<T>
where
    T: Clone,
{
    fn clone(&self) -> Self {
        Table(match &self.0 {
            Repr::Owned(v) => Repr::Owned(v.clone()),
            Repr::Mapped { map, offset, len } => Repr::Mapped {
                map: map.clone(),
                offset: *offset,
                len: *len,
            },
        })
    }
}

impl<T: PartialEq> PartialEq for Table<T> {
    fn eq(&self, other: &Self) -> bool {
        self.deref() == other.deref()
    }
}

impl<T: Eq> Eq for Table<T> {}

impl<T: fmt::Debug> fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.deref().fmt(f)
    }
}

impl<'a, T> IntoIterator for &'a Table<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
