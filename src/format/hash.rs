//! The SHA-256 digest that names every blob, pack and manifest in a store.

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256 as Hasher};
use std::fmt;

/// A SHA-256 digest. Content is addressed by it in the store and verified against it on every read.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Encode, Decode)]
#[repr(transparent)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Sha256(Hasher::digest(data).into())
    }

    /// Lower-case hex, the form used in object keys and shown to users.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits; anything else is `None`.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Sha256(out))
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", &self.to_hex()[..12])
    }
}

/// Incremental hashing for content that arrives in pieces (a file read chunk by chunk).
#[derive(Default, Clone)]
pub struct StreamHasher(Hasher);

impl StreamHasher {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub fn finish(self) -> Sha256 {
        Sha256(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_and_hex_round_trip() {
        let h = Sha256::of(b"abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Sha256::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Sha256::from_hex("xyz"), None);
        let mut s = StreamHasher::default();
        s.update(b"a");
        s.update(b"bc");
        assert_eq!(s.finish(), h);
    }
}
