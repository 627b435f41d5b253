//! A lease: the object a push or a gc writes while it runs, so that the other can see it, and
//! so that `datastore status` can show what runs and how far it got.
//!
//! The body is the [`Lease`] followed by a [`Detail`]: readers that know only the first part
//! (older datastores) decode it and ignore the rest, so the two can share a store.

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

/// What a push lease also says: which push, how far it got, and for a push that failed, why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Detail {
    pub dataset: String,
    pub source: String,
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// When this was written (the heartbeat that wrote it).
    pub updated_unix: i64,
    /// Set on the record a failed push leaves: its one-line error.
    pub failure: Option<String>,
}

const LIMIT: usize = 64 << 10;

impl Lease {
    pub fn encode(&self, detail: &Detail) -> Vec<u8> {
        let cfg = bincode::config::standard();
        let mut body = bincode::encode_to_vec(self, cfg).expect("encode");
        body.extend(bincode::encode_to_vec(detail, cfg).expect("encode"));
        envelope::seal(Kind::Lease, &body, false)
    }

    /// The lease, and its detail when it has one (a lease of an older datastore has none).
    pub fn decode(bytes: &[u8]) -> Result<(Lease, Option<Detail>), FormatError> {
        let body = envelope::open(Kind::Lease, bytes, LIMIT as u64)?;
        let cfg = bincode::config::standard().with_limit::<LIMIT>();
        let (lease, used) = bincode::decode_from_slice(&body, cfg)
            .map_err(|e| FormatError::Corrupt("lease", e.to_string()))?;
        let detail = bincode::decode_from_slice(&body[used..], cfg)
            .ok()
            .map(|(d, _)| d);
        Ok((lease, detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_without_detail_still_decodes() {
        let l = Lease {
            operation: "push".into(),
            host: "h".into(),
            pid: 7,
            started_unix: 1,
        };
        let old = envelope::seal(
            Kind::Lease,
            &bincode::encode_to_vec(&l, bincode::config::standard()).unwrap(),
            false,
        );
        assert_eq!(Lease::decode(&old).unwrap(), (l.clone(), None));
        let d = Detail {
            dataset: "ds".into(),
            files_done: 3,
            failure: Some("it broke".into()),
            ..Detail::default()
        };
        assert_eq!(Lease::decode(&l.encode(&d)).unwrap(), (l, Some(d)));
    }
}
