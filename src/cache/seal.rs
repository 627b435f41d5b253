//! A seal in each entry's modification time, so that an entry changed after it was cached is
//! caught by the fstat every open does anyway.
//!
//! A file entry served by passthrough is read by the kernel, not by us, so its bytes cannot be
//! checked as they are served, and hashing a large file at every open would cost more than the
//! read. Instead, every time we set an entry's mtime (when it is written, and when its recency
//! is refreshed), its nanoseconds are derived from the entry's hash and the seconds. Anything
//! else that writes the file (an editor, `dd`, a truncate, a copy over it) sets the mtime to
//! the moment it wrote, whose nanoseconds match the seal with odds of one in a billion. What a
//! seal cannot see, bits rotting on the medium with the mtime untouched, is what
//! `datastore cache verify` is for.
//!
//! A filesystem that does not keep nanoseconds cannot carry seals; [`supported`] finds out once
//! per cache, and entries there are checked by size alone.

use crate::format::Sha256;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The sealed form of time `t` for the entry named by `h`: the same second, with nanoseconds
/// that only this hash gives in this second.
pub fn at(h: &Sha256, t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    UNIX_EPOCH + Duration::new(secs, nanos(h, secs))
}

/// Whether `mtime` is a seal we set for `h`.
pub fn holds(h: &Sha256, mtime: SystemTime) -> bool {
    mtime
        .duration_since(UNIX_EPOCH)
        .is_ok_and(|d| d.subsec_nanos() == nanos(h, d.as_secs()))
}

fn nanos(h: &Sha256, secs: u64) -> u32 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.0[..8]);
    let x = (u64::from_le_bytes(first) ^ secs.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_mul(0xD6E8_FEB8_6659_FD93);
    ((x >> 32) % 1_000_000_000) as u32
}

/// Whether files in `dir` keep the nanoseconds of a modification time set on them.
pub fn supported(dir: &Path) -> bool {
    let probe = || -> std::io::Result<bool> {
        let f = tempfile::tempfile_in(dir)?;
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        f.set_modified(t)?;
        Ok(f.metadata()?.modified()? == t)
    };
    probe().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_holds_for_its_hash_only_and_a_plain_write_breaks_it() {
        let (a, b) = (Sha256::of(b"a"), Sha256::of(b"b"));
        let now = SystemTime::now();
        let s = at(&a, now);
        assert!(holds(&a, s));
        assert!(!holds(&b, s));
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs(s), secs(now), "the same second");

        let dir = tempfile::tempdir().unwrap();
        assert!(
            supported(dir.path()),
            "the test machine's filesystem keeps nanoseconds"
        );
        let path = dir.path().join("entry");
        std::fs::write(&path, b"cached").unwrap();
        let f = std::fs::File::options().append(true).open(&path).unwrap();
        f.set_modified(at(&a, SystemTime::now())).unwrap();
        assert!(holds(
            &a,
            std::fs::metadata(&path).unwrap().modified().unwrap()
        ));
        // Someone writes over the entry: the seal is gone.
        std::fs::write(&path, b"other!").unwrap();
        assert!(!holds(
            &a,
            std::fs::metadata(&path).unwrap().modified().unwrap()
        ));
    }
}
