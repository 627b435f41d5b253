//! The header every stored metadata object starts with: magic, format version, codec and length.
//!
//! It lets a reader refuse an object of the wrong kind, one written by a newer datastore, and
//! a decompression bomb, before it decodes a single field.

use super::FormatError;
use std::io::Read;

/// Which metadata object a header announces; each kind has its own magic number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Manifest,
    VersionRef,
    Lease,
}

impl Kind {
    fn magic(self) -> &'static [u8; 4] {
        match self {
            Kind::Manifest => b"DSMF",
            Kind::VersionRef => b"DSRF",
            Kind::Lease => b"DSLS",
        }
    }

    /// The newest format version of this kind that this build reads. Manifests that reference
    /// objects outside the store are version 2; everything else is still written as version 1,
    /// so that older datastores keep reading what they can.
    pub fn newest(self) -> u16 {
        match self {
            Kind::Manifest => 2,
            Kind::VersionRef | Kind::Lease => FORMAT_VERSION,
        }
    }

    /// Human name used in errors.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Manifest => "manifest",
            Kind::VersionRef => "version ref",
            Kind::Lease => "lease",
        }
    }
}

/// The format version written unless a kind needs a newer one (see [`Kind::newest`]).
pub const FORMAT_VERSION: u16 = 1;
const HEADER_LEN: usize = 4 + 2 + 1 + 8;
const CODEC_NONE: u8 = 0;
const CODEC_ZSTD: u8 = 1;

/// How much larger than its compressed bytes a body may be. Manifests hold a SHA-256 per chunk,
/// which does not compress, so real ones shrink a few times at most; a body claiming far more
/// is a decompression bomb, which a few kilobytes in the store would otherwise turn into
/// gigabytes in every daemon that opens it (decoded entries and chunks take several times
/// their encoded size again).
const MAX_EXPANSION: u64 = 256;
/// Bodies up to this size are accepted at any ratio: small enough to hold whatever they claim.
const ANY_RATIO_BELOW: u64 = 4 << 20;

/// Wraps an encoded body in a header; `compress` zstd-compresses it.
pub fn seal(kind: Kind, body: &[u8], compress: bool) -> Vec<u8> {
    seal_as(kind, FORMAT_VERSION, body, compress)
}

/// [`seal`], announcing format `version` (at most `kind.newest()`).
pub fn seal_as(kind: Kind, version: u16, body: &[u8], compress: bool) -> Vec<u8> {
    debug_assert!((1..=kind.newest()).contains(&version));
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() / 2);
    out.extend_from_slice(kind.magic());
    out.extend_from_slice(&version.to_le_bytes());
    out.push(if compress { CODEC_ZSTD } else { CODEC_NONE });
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    if compress {
        // Level 3 is zstd's default: fast to write, and decoding speed does not depend on it.
        let compressed = zstd::bulk::compress(body, 3).expect("zstd compression of memory");
        out.extend_from_slice(&compressed);
    } else {
        out.extend_from_slice(body);
    }
    out
}

/// Checks the header and returns the body, decompressed, refusing bodies over `max_len`.
pub fn open(kind: Kind, bytes: &[u8], max_len: u64) -> Result<Vec<u8>, FormatError> {
    open_versioned(kind, bytes, max_len).map(|(_, body)| body)
}

/// [`open`], with the format version the header announced.
pub fn open_versioned(
    kind: Kind,
    bytes: &[u8],
    max_len: u64,
) -> Result<(u16, Vec<u8>), FormatError> {
    if bytes.len() < HEADER_LEN {
        return Err(FormatError::Truncated(kind.name()));
    }
    if &bytes[..4] != kind.magic() {
        return Err(FormatError::BadMagic(kind.name()));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version == 0 || version > kind.newest() {
        return Err(FormatError::UnsupportedVersion {
            kind: kind.name(),
            found: version,
        });
    }
    let codec = bytes[6];
    let len = u64::from_le_bytes(bytes[7..15].try_into().expect("8 bytes"));
    if len > max_len {
        return Err(FormatError::TooLarge {
            kind: kind.name(),
            len,
            max: max_len,
        });
    }
    let payload = &bytes[HEADER_LEN..];
    if codec == CODEC_ZSTD {
        let most = (payload.len() as u64)
            .saturating_mul(MAX_EXPANSION)
            .max(ANY_RATIO_BELOW);
        if len > most {
            return Err(FormatError::Corrupt(
                kind.name(),
                format!(
                    "a body of {len} bytes from {} compressed bytes is past any real \
                     compression ratio",
                    payload.len()
                ),
            ));
        }
    }
    let body = match codec {
        CODEC_NONE => payload.to_vec(),
        CODEC_ZSTD => {
            // Stream-decode and stop one byte past the declared length: memory grows only with
            // real output, never with what a hostile header claims.
            let decoder = zstd::stream::read::Decoder::new(payload)
                .map_err(|_| FormatError::Corrupt(kind.name(), "bad zstd stream".into()))?;
            let mut out = Vec::with_capacity(zstd_capacity(len, payload.len()));
            decoder
                .take(len + 1)
                .read_to_end(&mut out)
                .map_err(|e| FormatError::Corrupt(kind.name(), format!("zstd: {e}")))?;
            out
        }
        other => {
            return Err(FormatError::Corrupt(
                kind.name(),
                format!("unknown codec {other}"),
            ))
        }
    };
    if body.len() as u64 != len {
        return Err(FormatError::Truncated(kind.name()));
    }
    Ok((version, body))
}

/// The buffer to start a zstd body in. The declared length is only an upper bound, so it is
/// also capped at four times the payload: a body that really expands further grows the buffer
/// as it arrives, and a short object that declares gigabytes fails on its real, short output.
fn zstd_capacity(declared: u64, payload: usize) -> usize {
    declared
        .min((payload as u64).saturating_mul(4))
        .min(64 << 20) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_both_codecs() {
        for compress in [false, true] {
            let sealed = seal(Kind::Manifest, b"hello world", compress);
            assert_eq!(open(Kind::Manifest, &sealed, 100).unwrap(), b"hello world");
        }
    }

    #[test]
    fn refuses_wrong_kind_newer_version_truncation_and_bombs() {
        let sealed = seal(Kind::Manifest, &[7u8; 1000], true);
        assert!(matches!(
            open(Kind::VersionRef, &sealed, 10_000),
            Err(FormatError::BadMagic(_))
        ));
        let mut newer = sealed.clone();
        newer[4] = 9;
        assert!(matches!(
            open(Kind::Manifest, &newer, 10_000),
            Err(FormatError::UnsupportedVersion { found: 9, .. })
        ));
        assert!(open(Kind::Manifest, &sealed[..sealed.len() - 3], 10_000).is_err());
        assert!(open(Kind::Manifest, &sealed[..5], 10_000).is_err());
        assert!(matches!(
            open(Kind::Manifest, &sealed, 999),
            Err(FormatError::TooLarge { .. })
        ));
        // A header that under-declares the body is refused, not silently cut.
        let mut lying = sealed.clone();
        lying[7..15].copy_from_slice(&10u64.to_le_bytes());
        assert!(open(Kind::Manifest, &lying, 10_000).is_err());
    }

    /// Version 2 exists for manifests only: a ref or lease announcing it is from a newer build.
    #[test]
    fn newest_version_is_per_kind() {
        let m = seal_as(Kind::Manifest, 2, b"x", false);
        assert_eq!(
            open_versioned(Kind::Manifest, &m, 10).unwrap(),
            (2, b"x".to_vec())
        );
        let mut r = seal(Kind::VersionRef, b"x", false);
        assert_eq!(open_versioned(Kind::VersionRef, &r, 10).unwrap().0, 1);
        r[4] = 2;
        assert!(matches!(
            open(Kind::VersionRef, &r, 10),
            Err(FormatError::UnsupportedVersion { found: 2, .. })
        ));
    }

    /// A few KiB of zstd that expand to 64 MiB: refused before decompressing, while a body of
    /// the same size that does not compress, and a small one that compresses very well, open.
    #[test]
    fn decompression_bombs_are_refused() {
        let zeros = vec![0u8; 64 << 20];
        let bomb = seal(Kind::Manifest, &zeros, true);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let e = open(Kind::Manifest, &bomb, 4 << 30)
            .unwrap_err()
            .to_string();
        assert!(e.contains("compression ratio"), "{e}");
        let small = vec![0u8; 4 << 20];
        assert_eq!(
            open(Kind::Manifest, &seal(Kind::Manifest, &small, true), 4 << 30).unwrap(),
            small
        );
        let noise: Vec<u8> = (0..8u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let sealed = seal(Kind::Manifest, &noise, true);
        assert_eq!(open(Kind::Manifest, &sealed, 4 << 30).unwrap(), noise);
    }

    #[test]
    fn hostile_declared_length_allocates_by_input() {
        // A 20-byte object declaring a 4 GiB zstd body: the start of a zstd frame, then nothing.
        let mut hostile = Vec::new();
        hostile.extend_from_slice(b"DSMF");
        hostile.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        hostile.push(CODEC_ZSTD);
        hostile.extend_from_slice(&(4u64 << 30).to_le_bytes());
        hostile.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 0x00]);
        assert_eq!(hostile.len(), 20);
        let t = std::time::Instant::now();
        assert!(open(Kind::Manifest, &hostile, 4 << 30).is_err());
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        // The buffer is sized by the 5 payload bytes, not by the 4 GiB the header claims.
        assert_eq!(zstd_capacity(4 << 30, 5), 20);
        assert_eq!(zstd_capacity(100, 1 << 20), 100);
        assert_eq!(zstd_capacity(u64::MAX, usize::MAX >> 2), 64 << 20);
    }
}
