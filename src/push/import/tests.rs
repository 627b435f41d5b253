use super::*;
use crate::format::name::VersionSel;
use crate::read::{fetch_chunk, ContentError, Origins};
use crate::store::StoreOptions;

fn listed(key: &str, size: u64) -> Listed {
    Listed {
        key: key.into(),
        size,
        modified: std::time::UNIX_EPOCH,
        etag: Some(format!("\"{key}\"")),
        version: None,
    }
}

#[test]
fn keys_become_a_tree_and_what_is_no_path_is_skipped() {
    let (scanned, objects) = tree(vec![
        listed("a/b.txt", 1),
        listed("a/c/", 0),
        listed("a", 2),
        listed("d//e", 3),
        listed("f/../g", 3),
        listed("z", 4),
    ]);
    let m = Manifest {
        entries: scanned.entries.clone().into(),
        strings: scanned.strings.clone().into(),
        ..Manifest::default()
    };
    let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["z", "a/b.txt"]);
    assert!(m.lookup(&["a", "c"]).is_some(), "a directory marker");
    assert_eq!(m.lookup(&["a", "b.txt"]), Some(objects[1].entry as usize));
    let skipped: Vec<(String, &str)> = scanned
        .skipped
        .iter()
        .map(|s| (s.path.display().to_string(), s.note))
        .collect();
    assert_eq!(
        skipped,
        [
            ("a".to_string(), "a directory has the same name"),
            ("d//e".to_string(), "its key is not a path"),
            ("f/../g".to_string(), "its key is not a path"),
        ]
    );
    assert_eq!((scanned.dirs, scanned.total_bytes), (2, 5));
}

struct Setup {
    _dirs: [tempfile::TempDir; 2],
    source: std::path::PathBuf,
    url: String,
    catalog: Catalog,
}

fn setup() -> Setup {
    let (store, source) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = StoreOptions {
        create: true,
        ..Default::default()
    };
    let catalog = Catalog::new(Store::open(store.path().to_str().unwrap(), &opts).unwrap());
    let url = format!("file://{}", source.path().display());
    let files: [(&str, Vec<u8>); 4] = [
        ("empty", vec![]),
        ("dir with space/ünï.txt", b"hello".to_vec()),
        ("dir with space/other.txt", b"world".to_vec()),
        (
            "big.bin",
            (0..12u32 << 20).map(|i| (i * 7 % 251) as u8).collect(),
        ),
    ];
    for (name, data) in files {
        let p = source.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    Setup {
        source: source.path().to_path_buf(),
        _dirs: [store, source],
        url,
        catalog,
    }
}

async fn run(s: &Setup, copy: bool) -> PushReport {
    let opts = PushOptions::default();
    import(&s.catalog, &s.url, "ds", &opts, copy, Default::default())
        .await
        .unwrap()
}

/// Every file of the latest version, read as a mount reads it: its bytes, or the error.
async fn read_all(c: &Catalog) -> Vec<(String, Result<Vec<u8>, ContentError>)> {
    let v = c.resolve("ds", VersionSel::Latest).await.unwrap();
    let m = c.manifest(&v).await.unwrap();
    let origins = Origins::from(c.store().clone());
    let mut out = Vec::new();
    for (i, e) in m.entries.iter().enumerate() {
        let EntryKind::File { chunks, .. } = e.kind else {
            continue;
        };
        let mut data = Ok(Vec::new());
        for c in &m.chunks[chunks.range()] {
            match fetch_chunk(&origins, &m, c).await {
                Ok(d) => data.as_mut().map(|v| v.extend_from_slice(&d)).unwrap_or(()),
                Err(e) => data = Err(e),
            }
        }
        out.push((String::from_utf8(m.path_of(i)).unwrap(), data));
    }
    out
}

#[tokio::test]
async fn in_place_import_reads_the_sources_and_fails_only_changed_files() {
    let s = setup();
    let first = run(&s, false).await;
    assert_eq!((first.version.version, first.files), (1, 4));
    assert_eq!(first.uploaded_objects, 1, "only the manifest is stored");
    for (path, data) in read_all(&s.catalog).await {
        assert_eq!(
            data.unwrap(),
            std::fs::read(s.source.join(&path)).unwrap(),
            "{path}"
        );
    }

    let again = run(&s, false).await;
    assert!(again.unchanged);
    assert_eq!((again.hashed_bytes, again.reused_files), (0, 4));

    std::fs::write(s.source.join("dir with space/ünï.txt"), b"HELLO").unwrap();
    std::fs::remove_file(s.source.join("big.bin")).unwrap();
    for (path, data) in read_all(&s.catalog).await {
        match path.as_str() {
            "big.bin" | "dir with space/ünï.txt" => {
                let e = data.unwrap_err().to_string();
                assert!(
                    e.contains(&path) && e.contains("since this version was imported"),
                    "{e}"
                );
            }
            _ => assert!(data.is_ok(), "{path}"),
        }
    }
    // A re-import sees the change and reads only the changed object.
    let next = run(&s, false).await;
    assert_eq!(
        (next.version.version, next.files, next.hashed_bytes),
        (2, 3, 5)
    );
}

#[tokio::test]
async fn a_copied_import_outlives_its_source() {
    let s = setup();
    let first = run(&s, true).await;
    assert!(first.uploaded_bytes >= 12 << 20);
    let again = run(&s, true).await;
    assert!(again.unchanged && again.hashed_bytes == 0);
    std::fs::remove_dir_all(&s.source).unwrap();
    std::fs::create_dir(&s.source).unwrap();
    for (path, data) in read_all(&s.catalog).await {
        assert!(data.is_ok(), "{path}");
    }
}

#[tokio::test]
async fn sources_that_cannot_be_imported_are_refused() {
    let s = setup();
    let opts = PushOptions::default();
    let empty = tempfile::tempdir().unwrap();
    let url = format!("file://{}", empty.path().display());
    let e = import(&s.catalog, &url, "ds", &opts, false, Default::default())
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("nothing to import at"), "{e}");
    let missing = format!("{url}/nothing-here");
    let e = import(&s.catalog, &missing, "ds", &opts, false, Default::default())
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("nothing to import at"), "{e}");
    run(&s, false).await;
    let root = s.catalog.store().url().to_string();
    for own in [root.clone(), format!("file://{root}/manifests")] {
        let e = import(&s.catalog, &own, "ds", &opts, false, Default::default())
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("inside the store's own objects"),
            "{own}: {e}"
        );
    }
}
