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

    /// Human name used in errors.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Manifest => "manifest",
            Kind::VersionRef => "version ref",
            Kind::Lease => "lease",
        }
    }
}

/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u16 = 1;
const HEADER_LEN: usize = 4 + 2 + 1 + 8;
const CODEC_NONE: u8 = 0;
const CODEC_ZSTD: u8 = 1;

/// Wraps an encoded body in a header; `compress` zstd-compresses it.
pub fn seal(kind: Kind, body: &[u8], compress: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() / 2);
    out.extend_from_slice(kind.magic());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
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
    if bytes.len() < HEADER_LEN {
        return Err(FormatError::Truncated(kind.name()));
    }
    if &bytes[..4] != kind.magic() {
        return Err(FormatError::BadMagic(kind.name()));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version == 0 || version > FORMAT_VERSION {
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
    let body = match codec {
        CODEC_NONE => payload.to_vec(),
        CODEC_ZSTD => {
            // Stream-decode and stop one byte past the declared length: memory grows only with
            // real output, never with what a hostile header claims.
            let decoder = zstd::stream::read::Decoder::new(payload)
                .map_err(|_| FormatError::Corrupt(kind.name(), "bad zstd stream".into()))?;
            let mut out = Vec::with_capacity(len.min(64 << 20) as usize);
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
    Ok(body)
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
}
