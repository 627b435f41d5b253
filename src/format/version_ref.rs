//! A version ref: the small object whose creation makes a version exist.
//!
//! A push uploads all content and the manifest first and creates the ref last, with a
//! create-if-absent write, so a version is visible only once everything it names is stored,
//! and two pushes can never both claim the same number.

use super::envelope::{self, Kind};
use super::hash::Sha256;
use super::FormatError;
use bincode::{Decode, Encode};

const MAX_REF_BODY: u64 = 1 << 20;

/// Whether a version can be read.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum VersionState {
    Committed,
    /// Deleted by `rm`: kept as a tombstone so the number is never reused for other content.
    Deleted {
        at_unix: i64,
    },
}

/// Everything `log` shows about a version, and the hash of its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct VersionRef {
    pub dataset: String,
    pub version: u64,
    pub manifest: Sha256,
    pub manifest_size: u64,
    /// The version this push deduplicated against (the latest when it started), if any.
    pub parent: Option<u64>,
    pub created_unix: i64,
    pub files: u64,
    pub bytes: u64,
    pub message: String,
    pub state: VersionState,
}

impl VersionRef {
    pub fn encode(&self) -> Vec<u8> {
        let body = bincode::encode_to_vec(self, bincode::config::standard()).expect("encode");
        envelope::seal(Kind::VersionRef, &body, false)
    }

    pub fn decode(bytes: &[u8]) -> Result<VersionRef, FormatError> {
        let body = envelope::open(Kind::VersionRef, bytes, MAX_REF_BODY)?;
        let cfg = bincode::config::standard().with_limit::<{ MAX_REF_BODY as usize }>();
        let (r, used): (VersionRef, usize) = bincode::decode_from_slice(&body, cfg)
            .map_err(|e| FormatError::Corrupt("version ref", e.to_string()))?;
        if used != body.len() {
            return Err(FormatError::Corrupt("version ref", "trailing bytes".into()));
        }
        Ok(r)
    }

    pub fn is_committed(&self) -> bool {
        self.state == VersionState::Committed
    }

    /// `name@vN`, the way users write it.
    pub fn label(&self) -> String {
        format!("{}@v{}", self.dataset, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VersionRef {
        VersionRef {
            dataset: "imagenet".into(),
            version: 3,
            manifest: Sha256::of(b"m"),
            manifest_size: 123,
            parent: Some(2),
            created_unix: 1_700_000_000,
            files: 10,
            bytes: 1 << 30,
            message: "résumé".into(),
            state: VersionState::Committed,
        }
    }

    #[test]
    fn round_trip_and_corruption() {
        let r = sample();
        let bytes = r.encode();
        assert_eq!(VersionRef::decode(&bytes).unwrap(), r);
        for cut in 0..bytes.len() {
            assert!(VersionRef::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(VersionRef::decode(&extra).is_err());
    }
}
