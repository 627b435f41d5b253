//! The on-store formats: manifests, version refs and leases, each behind a versioned header.
//!
//! Everything here is pure: bytes in, validated values out. Nothing decoded from a store is
//! trusted, so every decoder bounds its allocations and refuses malformed input with an error.

pub mod envelope;
pub mod hash;
pub mod lease;
pub mod manifest;
pub mod name;
pub mod version_ref;

pub use hash::Sha256;
pub use manifest::{ChunkRef, Entry, EntryKind, Location, Manifest};
pub use version_ref::{VersionRef, VersionState};

/// Why stored bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{0} is truncated")]
    Truncated(&'static str),
    #[error("{0} has the wrong magic number (not a datastore {0}, or damaged)")]
    BadMagic(&'static str),
    #[error("{kind} uses format version {found}, newer than this datastore understands; upgrade datastore")]
    UnsupportedVersion { kind: &'static str, found: u16 },
    #[error("{kind} declares {len} bytes, more than the limit of {max}")]
    TooLarge {
        kind: &'static str,
        len: u64,
        max: u64,
    },
    #[error("{0} is corrupt: {1}")]
    Corrupt(&'static str, String),
}
