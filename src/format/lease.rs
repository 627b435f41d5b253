//! A lease: the object a push or a gc writes while it runs, so that the other can see it.

use super::envelope::{self, Kind};
use super::FormatError;
use bincode::{Decode, Encode};

/// Who holds a lease; shown to the user when a push and a gc meet.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Lease {
    pub operation: String,
    pub host: String,
    pub pid: u32,
    pub started_unix: i64,
}

impl Lease {
    pub fn encode(&self) -> Vec<u8> {
        let body = bincode::encode_to_vec(self, bincode::config::standard()).expect("encode");
        envelope::seal(Kind::Lease, &body, false)
    }

    pub fn decode(bytes: &[u8]) -> Result<Lease, FormatError> {
        let body = envelope::open(Kind::Lease, bytes, 64 << 10)?;
        let cfg = bincode::config::standard().with_limit::<{ 64 << 10 }>();
        bincode::decode_from_slice(&body, cfg)
            .map(|(l, _)| l)
            .map_err(|e| FormatError::Corrupt("lease", e.to_string()))
    }
}
