//! Small files fetched together: a run of neighbouring chunks of one pack in one ranged GET.
//!
//! Push packs the small files of a directory next to each other, in the order a listing gives
//! them, and DataLoaders read them in about that order. So one GET of a pack region serves many
//! files: `datastore prefetch` plans its fetches with [`plan`], and the mount fetches the
//! neighbours that follow a small file it missed. Either way each member is verified on its
//! own against its SHA-256; a member that does not match is fetched again alone (which retries
//! once, then reports the damage), so one bad file never poisons its neighbours.

use super::fetch::{self, ContentError, Located, Origins, Source};
use crate::format::{ChunkRef, EntryKind, Location, Manifest, Sha256};
use bytes::Bytes;
use std::ops::Range;

/// The most bytes of neighbouring small files fetched with one request.
pub const REGION_MAX: u64 = 8 << 20;

/// One GET: a whole object, or a region of a pack holding one or more chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub key: String,
    /// The byte range inside the object, or `None` for the whole object.
    pub range: Option<Range<u64>>,
    pub members: Vec<Member>,
    /// A source object of an imported version, not the store (see [`Located::source`]).
    pub source: Option<Source>,
}

/// A chunk inside a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub hash: Sha256,
    /// Where it starts inside the region's bytes.
    pub offset: u64,
    pub len: u32,
    /// See [`Located::whole_file`].
    pub whole_file: bool,
}

impl Region {
    /// Bytes the region's members hold.
    pub fn bytes(&self) -> u64 {
        self.members.iter().map(|m| m.len as u64).sum()
    }

    /// Member `m` as a chunk of its own.
    fn located(&self, m: &Member) -> Located {
        Located {
            key: self.key.clone(),
            range: self
                .range
                .as_ref()
                .map(|r| r.start + m.offset..r.start + m.offset + m.len as u64),
            hash: m.hash,
            len: m.len,
            whole_file: m.whole_file,
            source: self.source.clone(),
        }
    }
}

/// Where small file `file` of `m` lies, if it is one chunk in a pack: the pack's index, the
/// offset in it and the chunk. The files of one directory sit next to each other in a pack.
pub fn packed(m: &Manifest, file: usize) -> Option<(u32, u64, &ChunkRef)> {
    match m.entries.get(file)?.kind {
        EntryKind::File { chunks, .. } if chunks.len == 1 => {
            let c = m.chunks.get(chunks.start as usize)?;
            match c.location {
                Location::Pack { pack, offset } => Some((pack, offset, c)),
                Location::Blob | Location::External { .. } => None,
            }
        }
        _ => None,
    }
}

/// Adds chunk `at` to a list of regions: to the last one when it continues it in the same
/// pack and the region stays within [`REGION_MAX`], else as a region of its own.
pub fn plan(regions: &mut Vec<Region>, at: Located) {
    if let (Some(last), Some(new)) = (regions.last_mut(), &at.range) {
        if let Some(r) = &mut last.range {
            if last.key == at.key
                && last.source == at.source
                && r.end == new.start
                && new.end - r.start <= REGION_MAX
            {
                last.members.push(Member {
                    hash: at.hash,
                    offset: new.start - r.start,
                    len: at.len,
                    whole_file: at.whole_file,
                });
                r.end = new.end;
                return;
            }
        }
    }
    regions.push(Region {
        key: at.key,
        range: at.range,
        members: vec![Member {
            hash: at.hash,
            offset: 0,
            len: at.len,
            whole_file: at.whole_file,
        }],
        source: at.source,
    });
}

/// Fetches a region and returns each member's verified bytes, in order.
pub async fn fetch(
    origins: &Origins,
    region: &Region,
) -> Result<Vec<(Member, Bytes)>, ContentError> {
    if let [only] = region.members.as_slice() {
        // One chunk: the verified fetch, with its refetch on a mismatch.
        let data = fetch::fetch(origins, &region.located(only)).await?;
        return Ok(vec![(*only, data)]);
    }
    let source = region.source.as_ref();
    let data = origins
        .get(&region.key, region.range.clone(), region.bytes(), source)
        .await?;
    let mut out = Vec::with_capacity(region.members.len());
    for m in &region.members {
        let span = m.offset as usize..(m.offset + m.len as u64) as usize;
        let piece = match data.get(span.clone()) {
            Some(p) if Sha256::of(p) == m.hash => data.slice(span),
            // Short or damaged: this member alone, which retries and reports.
            _ => fetch::fetch(origins, &region.located(m)).await?,
        };
        out.push((*m, piece));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{keys, Store};

    fn at(key: &str, range: Option<Range<u64>>, data: &[u8]) -> Located {
        Located {
            key: key.into(),
            whole_file: range.is_some(),
            range,
            hash: Sha256::of(data),
            len: data.len() as u32,
            source: None,
        }
    }

    #[test]
    fn neighbours_in_one_pack_share_a_region_up_to_its_bound() {
        let mut r = Vec::new();
        plan(&mut r, at("p", Some(0..10), &[0; 10]));
        plan(&mut r, at("p", Some(10..30), &[1; 20]));
        // A gap, another pack, a blob: new regions.
        plan(&mut r, at("p", Some(40..50), &[2; 10]));
        plan(&mut r, at("q", Some(50..60), &[3; 10]));
        plan(&mut r, at("b", None, &[4; 10]));
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].range, Some(0..30));
        assert_eq!(r[0].members[1].offset, 10);
        assert_eq!(r[0].bytes(), 30);
        let mut r = Vec::new();
        plan(&mut r, at("p", Some(0..REGION_MAX), &[0; 4]));
        plan(&mut r, at("p", Some(REGION_MAX..REGION_MAX + 1), &[1; 1]));
        assert_eq!(r.len(), 2, "past the bound");
    }

    #[tokio::test]
    async fn a_damaged_member_is_fetched_alone_and_reported() {
        let store = Store::open("memory://", &Default::default()).unwrap();
        let (a, b) = (vec![7u8; 100], vec![9u8; 50]);
        let key = keys::pack(&Sha256::of(b"pack"));
        let mut pack = a.clone();
        pack.extend_from_slice(&b);
        store.put(&key, Bytes::from(pack)).await.unwrap();
        let mut r = Vec::new();
        plan(&mut r, at(&key, Some(0..100), &a));
        plan(&mut r, at(&key, Some(100..150), &b));
        let got = fetch(&store.clone().into(), &r[0]).await.unwrap();
        assert_eq!(
            (got[0].0.hash, &got[0].1),
            (Sha256::of(&a), &Bytes::from(a.clone()))
        );
        assert_eq!(
            (got[1].0.hash, &got[1].1),
            (Sha256::of(&b), &Bytes::from(b.clone()))
        );
        assert!(got[0].0.whole_file);
        // The second member damaged in the store: the error names it, no wrong bytes.
        let mut bad = a.clone();
        bad.extend_from_slice(&[0u8; 50]);
        store.put(&key, Bytes::from(bad)).await.unwrap();
        let e = fetch(&store.clone().into(), &r[0]).await.unwrap_err();
        assert!(matches!(e, ContentError::Corrupt { start: 100, .. }), "{e}");
    }
}
