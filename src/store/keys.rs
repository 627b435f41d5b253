//! Where each kind of object lives under a store's root. Nothing else builds keys.
//!
//! ```text
//! blobs/ab/ab12…      a chunk or a whole file, named by its SHA-256
//! packs/ab/ab12…      small files packed together, named by the SHA-256 of the pack
//! manifests/ab/ab12…  a version's manifest, named by the SHA-256 of its stored bytes
//! refs/NAME/N         version N of dataset NAME
//! locks/push-UUID     a running push; locks/gc-UUID, a running gc
//! ```

use crate::format::Sha256;

pub const BLOBS: &str = "blobs/";
pub const PACKS: &str = "packs/";
pub const MANIFESTS: &str = "manifests/";
pub const REFS: &str = "refs/";
pub const LOCKS: &str = "locks/";

fn fanned(prefix: &str, h: &Sha256) -> String {
    let hex = h.to_hex();
    format!("{prefix}{}/{hex}", &hex[..2])
}

pub fn blob(h: &Sha256) -> String {
    fanned(BLOBS, h)
}

pub fn pack(h: &Sha256) -> String {
    fanned(PACKS, h)
}

pub fn manifest(h: &Sha256) -> String {
    fanned(MANIFESTS, h)
}

pub fn version_ref(dataset: &str, version: u64) -> String {
    format!("{REFS}{dataset}/{version}")
}

pub fn dataset_refs(dataset: &str) -> String {
    format!("{REFS}{dataset}/")
}

/// The hash a content key names, if `key` is a well-formed key under `prefix`.
pub fn parse_content_key(prefix: &str, key: &str) -> Option<Sha256> {
    let rest = key.strip_prefix(prefix)?;
    let (fan, hex) = rest.split_once('/')?;
    let h = Sha256::from_hex(hex)?;
    (fan == &hex[..2]).then_some(h)
}

/// The version number a ref key names, if `key` is `refs/<dataset>/<N>`.
pub fn parse_ref_key(dataset: &str, key: &str) -> Option<u64> {
    let n = key.strip_prefix(&dataset_refs(dataset))?;
    if n.starts_with('0') || n.starts_with('+') {
        return None;
    }
    n.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let h = Sha256::of(b"x");
        assert_eq!(parse_content_key(BLOBS, &blob(&h)), Some(h));
        assert_eq!(parse_content_key(PACKS, &blob(&h)), None);
        assert_eq!(parse_content_key(BLOBS, "blobs/zz/00"), None);
        assert_eq!(parse_ref_key("a", &version_ref("a", 12)), Some(12));
        assert_eq!(parse_ref_key("a", "refs/a/012"), None);
        assert_eq!(parse_ref_key("a", "refs/ab/1"), None);
    }
}
