//! How big a cache may grow: bytes, or a share of its filesystem.

use std::path::Path;

/// How big the cache may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheSize {
    Bytes(u64),
    /// A share of the cache directory's filesystem.
    Percent(u8),
}

impl CacheSize {
    /// `200G`, `512M`, `1000000` or `80%`.
    pub fn parse(s: &str) -> Option<CacheSize> {
        match s.trim().strip_suffix('%') {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 100)
                .map(CacheSize::Percent),
            None => crate::size::parse_size(s).map(CacheSize::Bytes),
        }
    }

    /// The bytes this is for a cache in `dir`, which must exist.
    pub fn bytes_in(self, dir: &Path) -> std::io::Result<u64> {
        match self {
            CacheSize::Bytes(b) => Ok(b),
            CacheSize::Percent(p) => Ok(filesystem_size(dir)? / 100 * p as u64),
        }
    }
}

impl std::str::FromStr for CacheSize {
    type Err = String;

    fn from_str(s: &str) -> Result<CacheSize, String> {
        CacheSize::parse(s).ok_or_else(|| format!("'{s}' is not a size such as 200G or 80%"))
    }
}

/// The default: a quarter of the cache's filesystem.
pub const DEFAULT_SIZE: CacheSize = CacheSize::Percent(25);

/// Total size of the filesystem holding `dir`.
fn filesystem_size(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: c is a valid path; st is a plain struct the call fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_blocks as u64 * st.f_frsize as u64)
}
