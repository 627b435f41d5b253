use super::*;

#[tokio::test]
async fn local_store_operations() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
    exercise(&store).await;
}

#[tokio::test]
async fn memory_store_operations() {
    let store = Store::open("memory://", &StoreOptions::default()).unwrap();
    exercise(&store).await;
}

async fn exercise(store: &Store) {
    assert!(!store.exists("a/b").await.unwrap());
    assert!(store.get("a/b").await.unwrap_err().is_not_found());
    store
        .put("a/b", Bytes::from_static(b"hello"))
        .await
        .unwrap();
    assert!(store.exists("a/b").await.unwrap());
    assert_eq!(store.get_range("a/b", 1..4).await.unwrap(), "ell");
    // Into reused buffers: a local directory is read straight into one, others streamed.
    let pool = crate::buffers::Buffers::new(1 << 20);
    // Each with the SHA-256 of what it holds.
    let got = |range, most| store.get_into("a/b", range, most, &pool);
    let (data, sha256) = got(Some(1..4), 3).await.unwrap();
    assert_eq!((data, sha256), (Bytes::from("ell"), Sha256::of(b"ell")));
    let (data, sha256) = got(None, 5).await.unwrap();
    assert_eq!((data, sha256), (Bytes::from("hello"), Sha256::of(b"hello")));
    // A body longer than asked for is cut one byte past it, for the caller to see.
    let (data, sha256) = got(None, 2).await.unwrap();
    assert_eq!((data, sha256), (Bytes::from("hel"), Sha256::of(b"hel")));
    assert!(store
        .get_into("x/y", None, 2, &pool)
        .await
        .unwrap_err()
        .is_not_found());
    assert!(store
        .put_if_absent("r/1", Bytes::from_static(b"x"))
        .await
        .unwrap());
    assert!(!store
        .put_if_absent("r/1", Bytes::from_static(b"y"))
        .await
        .unwrap());
    assert_eq!(store.get("r/1").await.unwrap(), "x");
    store.put("r/2/x", Bytes::new()).await.unwrap();
    let mut keys: Vec<String> = store
        .list("r/")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["r/1", "r/2/x"]);
    assert_eq!(store.list_dirs("r/").await.unwrap(), ["2"]);
    assert!(store.list("nothing/").await.unwrap().is_empty());
    store.delete("a/b").await.unwrap();
    store.delete("a/b").await.unwrap();
    assert!(!store.exists("a/b").await.unwrap());
}

#[test]
fn bad_urls_are_named() {
    let err = Store::open("ftp://x", &StoreOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ftp://x") && err.contains("unknown scheme"),
        "{err}"
    );
    let err = Store::open("s3://", &StoreOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no bucket"), "{err}");
    for typo in ["s3:/mybucket", "s3:mybucket"] {
        let err = Store::open(typo, &StoreOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean s3://mybucket?"), "{err}");
    }
    // What the HTTP client would panic on is refused first, and shown escaped and short.
    let long = format!("s3://b/{}", "x".repeat(100_000));
    for (url, says) in [
        ("s3://b c/x", "'b c' is not a bucket name"),
        ("gs://b/\u{1}x", "holds a control character"),
        (
            long.as_str(),
            "100007 bytes is longer than a store URL can be",
        ),
    ] {
        let err = Store::open(url, &StoreOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{err}");
        assert!(err.len() < 300 && !err.contains('\u{1}'), "{err}");
    }
}

#[test]
fn mistyped_urls_get_the_right_advice() {
    let err = |url: &str| {
        Store::open(url, &StoreOptions::default())
            .unwrap_err()
            .to_string()
    };
    let e = err("file:/data/store");
    assert!(e.contains("did you mean file:///data/store?"), "{e}");
    let e = err("file://host/data/store");
    assert!(e.contains("file:///DIR (three slashes)"), "{e}");
    let e = err("gs://");
    assert!(e.contains("no bucket; use gs://BUCKET/PREFIX"), "{e}");
    let e = err("az://");
    assert!(e.contains("no container"), "{e}");
    let file = tempfile::NamedTempFile::new().unwrap();
    let e = err(file.path().to_str().unwrap());
    assert!(e.contains("it is a file, not a directory"), "{e}");
    let create = StoreOptions {
        create: true,
        ..Default::default()
    };
    let under = file.path().join("store");
    let e = Store::open(under.to_str().unwrap(), &create)
        .unwrap_err()
        .to_string();
    assert!(
        e == format!(
            "cannot use {} as a store: a part of the path is a file, not a directory",
            under.display()
        ),
        "{e}"
    );
    assert!(!e.contains("os error"), "{e}");
}

/// A key under an object that is a plain file (a damaged store) is not there.
#[tokio::test]
async fn a_key_under_a_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
    store
        .put("refs/other", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert!(store.get("refs/other/1").await.unwrap_err().is_not_found());
    assert!(!store.exists("refs/other/1").await.unwrap());
}

/// A local store the user may not write says so, not object_store's text.
#[tokio::test]
async fn local_permission_errors_name_the_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
    store
        .put("locks/a", Bytes::from_static(b"x"))
        .await
        .unwrap();
    std::fs::set_permissions(
        dir.path().join("locks"),
        std::fs::Permissions::from_mode(0o500),
    )
    .unwrap();
    // Root may write anyway: then there is no refusal to explain.
    let refused = store.put("locks/b", Bytes::from_static(b"x")).await;
    if let Err(e) = refused {
        let e = e.to_string();
        assert!(
            e.contains("no permission to write to the store directory"),
            "{e}"
        );
        assert!(
            !e.contains("LocalFileSystem") && !e.contains("os error"),
            "{e}"
        );
    }
    let place = explain::Place {
        scheme: "file",
        bucket: "/srv/store".into(),
        ..Default::default()
    };
    let denied = object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(std::io::Error::from_raw_os_error(libc::EACCES)),
    };
    assert_eq!(
        explain::local(&place, "GET", &denied).unwrap(),
        "no permission to read the store directory /srv/store; check its owner and mode, or \
         run as a user who may"
    );
    let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
    assert!(explain::local(&place, "PUT", &full)
        .unwrap()
        .contains("is full"));
}

#[test]
fn reads_never_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not/there");
    let url = path.to_str().unwrap();
    let err = Store::open(url, &StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Absent(_)), "{err}");
    assert!(err.to_string().contains(url), "{err}");
    assert!(!path.exists() && !dir.path().join("not").exists());
    let create = StoreOptions {
        create: true,
        ..Default::default()
    };
    Store::open(url, &create).unwrap();
    assert!(path.is_dir());
}

#[test]
fn credentials_are_redacted() {
    assert_eq!(open::redact("s3://key:secret@bucket/x"), "s3://bucket/x");
    assert_eq!(open::redact("s3://bucket/x"), "s3://bucket/x");
}

#[tokio::test]
async fn a_large_object_of_known_size_comes_whole_in_ranges() {
    let store = Store::open("memory://", &StoreOptions::default()).unwrap();
    let data: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 251) as u8).collect();
    store.put("big", Bytes::from(data.clone())).await.unwrap();
    assert_eq!(
        &store.get_sized("big", data.len() as u64).await.unwrap()[..],
        &data[..]
    );
    store
        .put("small", Bytes::from_static(b"abc"))
        .await
        .unwrap();
    assert_eq!(&store.get_sized("small", 3).await.unwrap()[..], b"abc");
    // A size that is wrong (it comes from the store too) gives other bytes or an error,
    // which the caller's hash check catches; never a panic.
    let short = store.get_sized("big", 9 << 20).await.unwrap();
    assert_eq!(&short[..], &data[..9 << 20]);
    assert!(store.get_sized("big", 30 << 20).await.is_err());
    // An absurd size is one plain GET, not billions of ranged ones.
    assert_eq!(
        store.get_sized("big", u64::MAX).await.unwrap().len(),
        data.len()
    );
}

/// A length a server claims makes no room of its own: a body of a few bytes that declared
/// the largest size there is lands whole and is hashed, with no attempt to map that much.
#[test]
fn a_declared_length_is_not_taken_on_trust() {
    let pool = crate::buffers::Buffers::new(1 << 20);
    let mut landing = Landing::new(&pool, usize::MAX, usize::MAX);
    assert!(landing.take(b"man"));
    assert!(landing.take(b"ifest"));
    let (data, sha256) = landing.done();
    assert_eq!(
        (data, sha256),
        (Bytes::from("manifest"), Sha256::of(b"manifest"))
    );
    // Cut one byte past `most`, for the caller to see.
    let mut landing = Landing::new(&pool, 4, usize::MAX);
    assert!(!landing.take(b"manifest"));
    assert_eq!(landing.done().0, "manif");
}
