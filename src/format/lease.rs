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
        let rest = &body[used..];
        if rest.is_empty() {
            // Written before leases carried progress.
            return Ok((lease, None));
        }
        let (detail, more) = bincode::decode_from_slice(rest, cfg)
            .map_err(|e| FormatError::Corrupt("lease", e.to_string()))?;
        if more != rest.len() {
            return Err(FormatError::Corrupt("lease", "trailing bytes".into()));
        }
        Ok((lease, Some(detail)))
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

    #[test]
    fn trailing_bytes_or_a_broken_detail_are_refused() {
        let l = Lease {
            operation: "push".into(),
            host: "h".into(),
            pid: 7,
            started_unix: 1,
        };
        let cfg = bincode::config::standard();
        let mut body = bincode::encode_to_vec(&l, cfg).unwrap();
        body.extend(bincode::encode_to_vec(Detail::default(), cfg).unwrap());
        let whole = envelope::seal(Kind::Lease, &body, false);
        assert!(Lease::decode(&whole).unwrap().1.is_some());
        let mut longer = body.clone();
        longer.push(0);
        let sealed = envelope::seal(Kind::Lease, &longer, false);
        let e = Lease::decode(&sealed).unwrap_err().to_string();
        assert!(e.contains("trailing bytes"), "{e}");
        let mut broken = bincode::encode_to_vec(&l, cfg).unwrap();
        broken.push(0xff);
        assert!(Lease::decode(&envelope::seal(Kind::Lease, &broken, false)).is_err());
    }
}
