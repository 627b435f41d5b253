//! `verify`: every object a version references exists and hashes right.
//!
//! The manifest is checked against the hash in the ref; each blob is fetched and hashed; each
//! pack is fetched once and every file region in it hashed; a multi-chunk file's chunks are
//! also hashed together against its whole-file SHA-256. The source objects of an imported
//! version are read as a mount reads them, so one changed or deleted since is reported.

use crate::catalog::{Catalog, CatalogError};
use crate::format::hash::StreamHasher;
use crate::format::{EntryKind, Location, Manifest, Sha256, VersionRef};
use crate::read::{fetch_chunk, ContentError, Origins};
use crate::store::keys;
use futures::StreamExt;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// One thing found wrong, with the path that depends on it.
#[derive(Debug, Clone)]
pub struct Problem {
    pub path: Vec<u8>,
    pub what: String,
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub label: String,
    pub objects: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
}

/// Progress, readable while a verify runs.
#[derive(Default, Debug)]
pub struct VerifyProgress {
    pub total_bytes: AtomicU64,
    pub done_bytes: AtomicU64,
}

pub async fn verify(
    catalog: &Catalog,
    v: &VersionRef,
    concurrency: usize,
    progress: &VerifyProgress,
) -> Result<VerifyReport, CatalogError> {
    let m = match catalog.manifest(v).await {
        Ok(m) => m,
        // A manifest that cannot be read is a problem of this version to report, like any
        // other object: `verify --all` goes on with the other versions.
        Err(CatalogError::BadManifest { key, fault, .. }) => {
            return Ok(VerifyReport {
                label: v.label(),
                objects: 1,
                bytes: 0,
                problems: vec![Problem {
                    path: Vec::new(),
                    what: format!("manifest {key} {fault}"),
                }],
            })
        }
        Err(e) => return Err(e),
    };
    let origins = Origins::from(catalog.store().clone());
    let store = &origins;
    let mut report = VerifyReport {
        label: v.label(),
        objects: 1,
        bytes: v.manifest_size,
        problems: Vec::new(),
    };
    // Packs: fetched whole, once each, with every region checked.
    let mut packs: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    let mut files = Vec::new();
    let mut seen_blobs = HashSet::new();
    for (idx, e) in m.entries.iter().enumerate() {
        if let EntryKind::File { chunks, size, .. } = &e.kind {
            progress.total_bytes.fetch_add(*size, Ordering::Relaxed);
            for c in chunks.range() {
                if let Location::Pack { pack, .. } = m.chunks[c].location {
                    packs.entry(pack).or_default().push(idx);
                }
            }
            // Blobs, and objects an imported version reads in place: fetched (pinned to the
            // content they had at import) and hashed, so a changed source is named.
            let blobs = m.chunks[chunks.range()]
                .iter()
                .filter(|c| !matches!(c.location, Location::Pack { .. }));
            // A file whose blobs were all checked already adds nothing but a re-download.
            if blobs.clone().count() > 0
                && blobs.fold(false, |new, c| seen_blobs.insert(c.hash) | new)
            {
                files.push(idx);
            }
        }
    }
    let m = &m;
    let pack_checks = packs
        .into_iter()
        .map(|(pack, users)| async move { check_pack(catalog, m, pack, &users).await });
    let mut results = futures::stream::iter(pack_checks).buffer_unordered(concurrency.clamp(1, 4));
    while let Some(r) = results.next().await {
        let (bytes, problems) = r;
        report.objects += 1;
        report.bytes += bytes;
        progress.done_bytes.fetch_add(bytes, Ordering::Relaxed);
        report.problems.extend(problems);
    }
    let file_checks = files.into_iter().map(|idx| async move {
        let EntryKind::File { chunks, sha256, .. } = &m.entries[idx].kind else {
            unreachable!("only files are queued")
        };
        let mut whole = StreamHasher::default();
        let mut bytes = 0;
        for c in &m.chunks[chunks.range()] {
            match fetch_chunk(store, m, c).await {
                Ok(d) => {
                    whole.update(&d);
                    bytes += d.len() as u64;
                }
                Err(e) => return (chunks.len as u64, bytes, Some(problem(m, idx, &e))),
            }
        }
        let bad = (whole.finish() != *sha256).then(|| Problem {
            path: m.path_of(idx),
            what: format!("chunks do not add up to the file's SHA-256 {sha256}"),
        });
        (chunks.len as u64, bytes, bad)
    });
    let mut results = futures::stream::iter(file_checks).buffer_unordered(concurrency.max(1));
    while let Some((objects, bytes, problem)) = results.next().await {
        report.objects += objects;
        report.bytes += bytes;
        progress.done_bytes.fetch_add(bytes, Ordering::Relaxed);
        report.problems.extend(problem);
    }
    Ok(report)
}

fn problem(m: &Manifest, idx: usize, e: &ContentError) -> Problem {
    let what = match e {
        ContentError::Missing { key } => format!("missing object: {key}"),
        ContentError::SourceChanged { object, how } => format!("source object {object} {how}"),
        other => other.to_string(),
    };
    Problem {
        path: m.path_of(idx),
        what,
    }
}

async fn check_pack(
    catalog: &Catalog,
    m: &Manifest,
    pack: u32,
    users: &[usize],
) -> (u64, Vec<Problem>) {
    let hash: Sha256 = m.packs[pack as usize];
    let key = keys::pack(&hash);
    let data = match catalog.store().get(&key).await {
        Ok(d) => d,
        Err(e) => {
            let what = if e.is_not_found() {
                format!("missing pack {key}")
            } else {
                e.to_string()
            };
            return (
                0,
                users
                    .iter()
                    .map(|&i| Problem {
                        path: m.path_of(i),
                        what: what.clone(),
                    })
                    .collect(),
            );
        }
    };
    let mut problems = Vec::new();
    if Sha256::of(&data) != hash {
        problems.push(Problem {
            path: Vec::new(),
            what: format!("pack {key} does not match its SHA-256"),
        });
    }
    for &i in users {
        let EntryKind::File { chunks, .. } = &m.entries[i].kind else {
            continue;
        };
        for c in &m.chunks[chunks.range()] {
            if let Location::Pack { offset, .. } = c.location {
                let region = data.get(offset as usize..offset as usize + c.len as usize);
                if region.is_none_or(|r| Sha256::of(r) != c.hash) {
                    problems.push(Problem {
                        path: m.path_of(i),
                        what: format!(
                            "bytes {offset}..{} of pack {key} are damaged",
                            offset + c.len as u64
                        ),
                    });
                }
            }
        }
    }
    (data.len() as u64, problems)
}
