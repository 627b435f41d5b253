use super::lease::{Lease, Operation};
use super::*;
use crate::ops::gc::{gc, GcError};
use crate::ops::verify::{verify, VerifyProgress};
use crate::store::StoreOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

fn catalog() -> Catalog {
    Catalog::new(Store::open("memory://", &StoreOptions::default()).unwrap())
}

fn draft(msg: &str) -> NewVersion {
    NewVersion {
        manifest: Sha256::of(msg.as_bytes()),
        manifest_size: 1,
        parent: None,
        files: 1,
        bytes: 2,
        message: msg.into(),
    }
}

#[tokio::test]
async fn commit_resolve_delete() {
    let c = catalog();
    assert!(matches!(
        c.resolve("ds", VersionSel::Latest).await,
        Err(CatalogError::UnknownDataset(_))
    ));
    assert_eq!(c.commit("ds", draft("one")).await.unwrap().version, 1);
    assert_eq!(c.commit("ds", draft("two")).await.unwrap().version, 2);
    assert_eq!(
        c.resolve("ds", VersionSel::Latest).await.unwrap().message,
        "two"
    );
    c.delete("ds", 2).await.unwrap();
    assert_eq!(
        c.resolve("ds", VersionSel::Latest).await.unwrap().version,
        1
    );
    assert!(matches!(
        c.resolve("ds", VersionSel::Number(2)).await,
        Err(CatalogError::DeletedVersion(..))
    ));
    assert!(matches!(
        c.resolve("ds", VersionSel::Number(9)).await,
        Err(CatalogError::UnknownVersion(..))
    ));
    // A deleted number is never reused.
    assert_eq!(c.commit("ds", draft("three")).await.unwrap().version, 3);
    let all = c.list(None).await.unwrap();
    assert!(all.damage.is_empty());
    assert_eq!(labels(all.versions.iter()), ["ds@v3", "ds@v2", "ds@v1"]);
}

#[tokio::test]
async fn concurrent_commits_get_distinct_numbers() {
    let c = catalog();
    let commits = (0..16).map(|i| {
        let c = c.clone();
        tokio::spawn(async move {
            c.commit("ds", draft(&format!("m{i}")))
                .await
                .unwrap()
                .version
        })
    });
    let mut got: Vec<u64> = futures::future::join_all(commits)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (1..=16).collect::<Vec<_>>());
}

#[tokio::test]
async fn gc_and_push_leases_see_each_other() {
    let c = catalog();
    let push = Lease::acquire(c.store(), Operation::Push).await.unwrap();
    let gc = Lease::acquire(c.store(), Operation::Gc).await.unwrap();
    assert_eq!(gc.others(Operation::Push).await.unwrap().len(), 1);
    assert_eq!(push.others(Operation::Gc).await.unwrap().len(), 1);
    assert!(push.others(Operation::Push).await.unwrap().is_empty());
    gc.release().await;
    let left = push
        .wait_for_none(Operation::Gc, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert!(left.is_empty());
    push.release().await;
    assert!(c.store().list("locks/").await.unwrap().is_empty());
}

/// A directory store, as `push` makes one, and its catalog.
fn local() -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        create: true,
        ..Default::default()
    };
    let store = Store::open(dir.path().to_str().unwrap(), &opts).unwrap();
    (dir, Catalog::new(store))
}

/// Commits a version of `dataset` holding `files` (each file's content is its own path), with
/// its manifest and blobs stored, so that it verifies.
async fn push(c: &Catalog, dataset: &str, files: &[&str]) -> VersionRef {
    let bytes = crate::format::manifest::tests::build(files).encode();
    let hash = Sha256::of(&bytes);
    let store = c.store();
    store
        .put(&keys::manifest(&hash), Bytes::from(bytes.clone()))
        .await
        .unwrap();
    for f in files {
        let blob = keys::blob(&Sha256::of(f.as_bytes()));
        store.put(&blob, Bytes::from(f.to_string())).await.unwrap();
    }
    let v = NewVersion {
        manifest: hash,
        manifest_size: bytes.len() as u64,
        ..draft("")
    };
    c.commit(dataset, v).await.unwrap()
}

fn labels<'a>(vs: impl Iterator<Item = &'a VersionRef>) -> Vec<String> {
    vs.map(VersionRef::label).collect()
}

/// Every file and directory under `root`, so that a test sees any write, even of a directory.
fn tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap().flatten() {
        out.push(e.path());
        if e.file_type().unwrap().is_dir() {
            out.extend(tree(&e.path()));
        }
    }
    out.sort();
    out
}

#[test]
fn what_a_key_under_refs_names() {
    assert_eq!(parse_ref("refs/ds/12"), Ok(("ds", 12)));
    for (key, stray) in [
        ("refs/ds/012", "refs/ds/012"),
        ("refs/ds/x", "refs/ds/x"),
        ("refs/ds", "refs/ds"),
        ("refs/ds/1/x/y", "refs/ds/1/"),
        ("refs/Upper/1", "refs/Upper/"),
    ] {
        assert_eq!(parse_ref(key), Err(stray.to_string()), "{key}");
    }
}

/// A manifest that is missing, damaged or undecodable is named with its version and key, and
/// with a way out other than `verify`, which only reports the same fault again.
#[tokio::test]
async fn manifest_faults_name_the_version_the_key_and_a_way_out() {
    let (_dir, c) = local();
    let v = push(&c, "ds", &["a"]).await;
    let key = keys::manifest(&v.manifest);
    let good = c.store().get(&key).await.unwrap();
    let line = |e: CatalogError| {
        let line = e.to_string();
        assert!(line.starts_with("manifest of ds@v1 ("), "{line}");
        assert!(line.contains(&key), "{line}");
        assert!(!line.contains("verify"), "{line}");
        line
    };
    let damaged = "; the store is damaged: restore that object from a backup, or drop the \
                   version with `datastore rm ds@v1`";
    c.store().delete(&key).await.unwrap();
    let e = c.manifest(&v).await.unwrap_err();
    assert_eq!(
        line(e),
        format!("manifest of ds@v1 ({key}) is missing{damaged}")
    );
    let r = verify(&c, &v, 1, &VerifyProgress::default()).await.unwrap();
    assert_eq!(r.problems.len(), 1);
    assert_eq!(r.problems[0].what, format!("manifest {key} is missing"));

    c.store()
        .put(&key, Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    let e = c.manifest(&v).await.unwrap_err();
    assert_eq!(
        line(e),
        format!("manifest of ds@v1 ({key}) does not match its hash{damaged}")
    );
    let r = verify(&c, &v, 1, &VerifyProgress::default()).await.unwrap();
    assert_eq!(
        r.problems[0].what,
        format!("manifest {key} does not match its hash")
    );
    c.store().put(&key, good).await.unwrap();
    c.manifest(&v).await.unwrap();

    // Bytes that match their hash but do not decode were pushed so: no backup holds better.
    let junk = Bytes::from_static(b"not a manifest");
    let hash = Sha256::of(&junk);
    c.store()
        .put(&keys::manifest(&hash), junk.clone())
        .await
        .unwrap();
    let pushed = NewVersion {
        manifest: hash,
        manifest_size: junk.len() as u64,
        ..draft("")
    };
    let v2 = c.commit("ds", pushed).await.unwrap();
    let e = c.manifest(&v2).await.unwrap_err().to_string();
    assert!(e.starts_with("manifest of ds@v2 (manifests/"), "{e}");
    assert!(
        e.ends_with("; it was pushed that way: drop the version with `datastore rm ds@v2`"),
        "{e}"
    );
}

/// A damaged ref is named for what it is (garbage is not "truncated"); every other version
/// is still listed; gc refuses to run; and `rm` of its version repairs it.
#[tokio::test]
async fn damaged_refs_are_named_and_the_rest_listed() {
    let (_dir, c) = local();
    push(&c, "ds", &["a"]).await;
    push(&c, "ds", &["b"]).await;
    push(&c, "other", &["c"]).await;
    let key = keys::version_ref("ds", 1);
    let good = c.store().get(&key).await.unwrap();
    let cases = [
        (good[..good.len() / 2].to_vec(), "is truncated"),
        (
            b"garbage".to_vec(),
            "holds something other than a version ref",
        ),
        (vec![0xff; 64], "holds something other than a version ref"),
        (Vec::new(), "is empty"),
    ];
    for (bytes, fault) in cases {
        c.store().put(&key, Bytes::from(bytes)).await.unwrap();
        let all = c.list(None).await.unwrap();
        assert_eq!(labels(all.versions.iter()), ["ds@v2", "other@v1"]);
        let lines: Vec<String> = all.damage.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [format!(
                "ref of ds@v1 (refs/ds/1) {fault}; the store is damaged: restore that object \
                 from a backup, or drop the version with `datastore rm ds@v1`"
            )]
        );
        let ds = c.list_dataset("ds").await.unwrap();
        assert_eq!(labels(ds.versions.iter()), ["ds@v2"]);
        assert_eq!(ds.damage.len(), 1);
        for dry_run in [true, false] {
            let e = gc(&c, Duration::ZERO, dry_run).await.unwrap_err();
            assert!(matches!(e, GcError::Damaged { more: 0, .. }), "{e}");
            let e = e.to_string();
            assert!(e.contains("(refs/ds/1)"), "{e}");
            assert!(e.ends_with("; gc deletes nothing until then"), "{e}");
        }
    }

    // A ref of a newer datastore is left to it.
    let mut newer = good.to_vec();
    newer[4] = 9;
    c.store().put(&key, Bytes::from(newer)).await.unwrap();
    let e = c.version("ds", 1).await.unwrap_err().to_string();
    assert_eq!(
        e,
        "ref of ds@v1 (refs/ds/1) uses format version 9, newer than this datastore \
         understands; upgrade datastore"
    );
    assert!(c.delete("ds", 1).await.is_err());

    // A ref copied to the wrong key.
    let stray = c.store().get(&keys::version_ref("other", 1)).await.unwrap();
    c.store().put(&key, stray).await.unwrap();
    let e = c.version("ds", 1).await.unwrap_err().to_string();
    assert!(
        e.starts_with("ref of ds@v1 (refs/ds/1) names other@v1 instead;"),
        "{e}"
    );

    // Deleting the version repairs the store, and its number stays taken.
    assert_eq!(c.delete("ds", 1).await.unwrap().label(), "ds@v1");
    let all = c.list(None).await.unwrap();
    assert!(all.damage.is_empty());
    assert_eq!(labels(all.committed()), ["ds@v2", "other@v1"]);
    assert!(!c.version("ds", 1).await.unwrap().is_committed());
    assert_eq!(push(&c, "ds", &["d"]).await.version, 3);
    gc(&c, Duration::ZERO, true).await.unwrap();
}

/// What datastore never writes under refs/ (a directory where a ref belongs, an object where
/// a dataset's prefix belongs, a name it refuses) is damage: listed, and refused by gc,
/// which would otherwise delete the content of the versions it hides.
#[tokio::test]
async fn entries_datastore_never_writes_under_refs_are_damage() {
    let (dir, c) = local();
    push(&c, "ds", &["a"]).await;
    push(&c, "ds", &["b"]).await;
    push(&c, "other", &["c"]).await;
    push(&c, "third", &["d"]).await;
    let refs = dir.path().join("refs");
    std::fs::remove_file(refs.join("ds/2")).unwrap();
    std::fs::create_dir(refs.join("ds/2")).unwrap();
    std::fs::remove_dir_all(refs.join("other")).unwrap();
    std::fs::write(refs.join("other"), b"x").unwrap();
    for key in ["refs/third/5/x", "refs/third/07", "refs/Upper/1"] {
        c.store().put(key, Bytes::from_static(b"x")).await.unwrap();
    }
    let strays = |l: &Listing| -> Vec<String> {
        l.damage
            .iter()
            .map(|e| match e {
                CatalogError::Unexpected(key) => key.clone(),
                other => panic!("{other}"),
            })
            .collect()
    };
    let all = c.list(None).await.unwrap();
    assert_eq!(labels(all.versions.iter()), ["ds@v1", "third@v1"]);
    assert_eq!(
        strays(&all),
        [
            "refs/Upper/",
            "refs/ds/2/",
            "refs/other",
            "refs/third/07",
            "refs/third/5/"
        ]
    );
    assert_eq!(
        all.damage[1].to_string(),
        "refs/ds/2/ is under refs/ but is not a version ref (refs/NAME/N); the store is \
         damaged: move it out of refs/, and restore from a backup any ref it replaced"
    );
    assert_eq!(strays(&c.list_dataset("ds").await.unwrap()), ["refs/ds/2/"]);
    // The directory hides what may be the latest version: it is not passed over for v1.
    assert!(matches!(
        c.resolve("ds", VersionSel::Latest).await,
        Err(CatalogError::Unexpected(key)) if key == "refs/ds/2/"
    ));
    let other = c.list_dataset("other").await.unwrap();
    assert!(other.versions.is_empty());
    assert_eq!(strays(&other), ["refs/other"]);
    // A push into it is refused before it uploads, like any read of its latest version.
    assert!(matches!(
        c.latest("other").await,
        Err(CatalogError::Unexpected(key)) if key == "refs/other"
    ));

    let content = tree(dir.path());
    for dry_run in [true, false] {
        let e = gc(&c, Duration::ZERO, dry_run)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("refs/Upper/ is under refs/"), "{e}");
        assert!(
            e.ends_with(
                "; gc deletes nothing until then (`datastore ls` names 4 more damaged objects)"
            ),
            "{e}"
        );
    }
    let after: Vec<PathBuf> = tree(dir.path())
        .into_iter()
        .filter(|p| !p.starts_with(dir.path().join("locks")))
        .collect();
    assert_eq!(after, content, "gc deleted something");
}

/// A dry run reads only: no lease, not even the `locks/` directory a lease would leave, on
/// an empty store or on one with garbage to report; it counts what a real gc then deletes.
#[tokio::test]
async fn a_dry_run_of_gc_writes_nothing() {
    let (dir, c) = local();
    let r = gc(&c, Duration::ZERO, true).await.unwrap();
    assert_eq!((r.live_versions, r.deleted_objects), (0, 0));
    assert_eq!(tree(dir.path()), Vec::<PathBuf>::new());

    push(&c, "ds", &["a"]).await;
    let stray = keys::blob(&Sha256::of(b"stray"));
    c.store()
        .put(&stray, Bytes::from_static(b"stray"))
        .await
        .unwrap();
    let before = tree(dir.path());
    let r = gc(&c, Duration::ZERO, true).await.unwrap();
    assert!(r.dry_run);
    assert_eq!((r.live_versions, r.deleted_objects), (1, 1));
    assert_eq!(tree(dir.path()), before);

    let r = gc(&c, Duration::ZERO, false).await.unwrap();
    assert_eq!((r.live_versions, r.deleted_objects), (1, 1));
    assert!(!c.store().exists(&stray).await.unwrap());
}

/// A dataset whose every version was deleted is unknown, like one never pushed, to the
/// commands that show or delete versions; its numbers stay taken.
#[tokio::test]
async fn a_dataset_of_tombstones_is_unknown() {
    let c = catalog();
    c.commit("ds", draft("one")).await.unwrap();
    c.delete("ds", 1).await.unwrap();
    assert!(matches!(
        c.list_dataset("ds").await,
        Err(CatalogError::UnknownDataset(_))
    ));
    assert!(matches!(
        c.list_dataset("never").await,
        Err(CatalogError::UnknownDataset(_))
    ));
    assert_eq!(c.list(Some("ds")).await.unwrap().versions.len(), 1);
    assert_eq!(c.commit("ds", draft("two")).await.unwrap().version, 2);
}

/// A push lease tells how far its push got at every heartbeat; a failed push leaves its
/// reason; a lease of a process of this host that is gone is abandoned at once.
#[tokio::test(start_paused = true)]
async fn push_leases_carry_progress_and_failures() {
    use crate::catalog::lease::{activity, DetailSource, State};
    use std::sync::atomic::{AtomicU64, Ordering};
    let c = catalog();
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let detail: DetailSource = Arc::new(move || crate::format::lease::Detail {
        dataset: "ds".into(),
        files_done: d.load(Ordering::Relaxed),
        files_total: 10,
        ..Default::default()
    });
    let lease = Lease::acquire_with(c.store(), Operation::Push, Some(detail))
        .await
        .unwrap();
    let now = activity(c.store()).await.unwrap();
    assert_eq!(now.len(), 1);
    assert_eq!(
        (now[0].state, now[0].detail.files_done),
        (State::Running, 0)
    );
    done.store(7, Ordering::Relaxed);
    tokio::time::sleep(std::time::Duration::from_secs(16)).await;
    let later = activity(c.store()).await.unwrap();
    assert_eq!(
        later[0].detail.files_done, 7,
        "the heartbeat tells progress"
    );

    lease.fail("it broke".into()).await;
    let failed = activity(c.store()).await.unwrap();
    assert_eq!(failed.len(), 1, "the lease went, its record stays");
    assert_eq!(failed[0].state, State::Failed);
    assert_eq!(failed[0].detail.failure.as_deref(), Some("it broke"));

    // A lease whose process is gone from this host.
    let dead = crate::format::lease::Lease {
        operation: "push".into(),
        host: crate::host::name(),
        pid: u32::MAX,
        started_unix: 0,
    };
    let body = dead.encode(&Default::default());
    c.store()
        .put("locks/push-dead", bytes::Bytes::from(body))
        .await
        .unwrap();
    let all = activity(c.store()).await.unwrap();
    assert!(all.iter().any(|a| a.state == State::Abandoned), "{all:?}");
}
