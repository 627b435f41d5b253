//! Import: versions made from objects already in object storage (moto S3, Azurite,
//! fake-gcs-server), read in place through a real mount, or copied.

mod common;

use common::{block_on, Env, Kind};
use datastore::store::{Store, StoreOptions};
use std::collections::BTreeMap;

/// Objects of mixed sizes and names under `prefix` of the test's bucket, as a team's bucket
/// holds them; returns them by key.
fn fill(source: &Store) -> BTreeMap<String, Vec<u8>> {
    let big: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let objects: BTreeMap<String, Vec<u8>> = [
        ("empty", Vec::new()),
        ("small.txt", b"a small file".to_vec()),
        (
            "dir with space/ünï cödé.txt",
            "non-ASCII ✓".as_bytes().to_vec(),
        ),
        ("a/b/c/deep.txt", b"deep".to_vec()),
        ("big/multi.bin", big),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    block_on(async {
        for (k, v) in &objects {
            source
                .put(k, v.clone().into())
                .await
                .expect("put source object");
        }
    });
    objects
}

/// The test's bucket, under another prefix than the store's root: a source.
fn source_url(env: &Env, prefix: &str) -> String {
    let (scheme, rest) = env.url.split_once("://").unwrap();
    let (bucket, root) = rest.split_once('/').unwrap();
    format!("{scheme}://{bucket}/src-{root}-{prefix}")
}

fn open_source(env: &Env, url: &str) -> Store {
    let _ = env.store(); // sets the store's environment in this process
    Store::open(url, &StoreOptions::default()).expect("open source")
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// On S3, Azure and GCS.
#[test]
fn an_in_place_import_mounts_and_fails_only_the_files_whose_objects_changed() {
    for kind in [Kind::S3, Kind::Azure, Kind::Gcs] {
        in_place_import(Env::new(kind));
    }
}

fn in_place_import(env: Env) {
    let url = source_url(&env, "raw");
    let source = open_source(&env, &url);
    let objects = fill(&source);

    let r = json(&env.ok(["push", &url, "ds", "--json"]));
    assert_eq!(r["version"], "ds@v1");
    assert_eq!(r["files"], 5);
    assert_eq!(r["uploaded_objects"], 1, "only the manifest is stored: {r}");
    assert!(env.content_keys().is_empty(), "no content is copied");
    let again = json(&env.ok(["push", &url, "ds", "--json"]));
    assert_eq!(again["unchanged"], true, "{again}");
    assert_eq!(again["hashed_bytes"], 0, "no object read again: {again}");

    {
        let m = env.mount("ds", &[]);
        for (k, v) in &objects {
            let got = std::fs::read(m.point.join(k)).unwrap_or_else(|e| panic!("{k}: {e}"));
            assert!(got == *v, "{k} differs");
        }
    }

    // One object rewritten, one deleted: those two files fail, the others read right.
    block_on(source.put("small.txt", b"rewritten".to_vec().into())).unwrap();
    block_on(source.delete("big/multi.bin")).unwrap();
    env.ok(["cache", "clear"]);
    {
        let m = env.mount("ds", &[]);
        for (k, v) in &objects {
            let got = std::fs::read(m.point.join(k));
            match k.as_str() {
                "small.txt" | "big/multi.bin" => {
                    let e = got.expect_err(k);
                    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{k}: {e}");
                }
                _ => assert!(got.unwrap() == *v, "{k} differs"),
            }
        }
        let log = m.log();
        for (path, how) in [
            ("small.txt", "has changed"),
            ("big/multi.bin", "was deleted"),
        ] {
            let line = log
                .lines()
                .find(|l| l.contains(&format!("ds@v1/{path}")))
                .unwrap_or_else(|| panic!("no log line for {path}: {log}"));
            assert!(line.contains(&format!("{url}/{path} {how}")), "{line}");
        }
    }
    let out = env.run(["verify", "ds"]);
    assert!(!out.status.success(), "{out:?}");
    for name in ["small.txt", "big/multi.bin"] {
        assert!(
            out.stdout.contains(name) || out.stderr.contains(name),
            "{name}: {out:?}"
        );
    }
    assert!(!out.stdout.contains("deep.txt") && !out.stderr.contains("deep.txt"));

    // gc leaves the sources alone, and says so.
    let gc = env.ok(["gc", "--grace", "1s"]);
    assert!(gc.contains("left alone: 4 source objects"), "{gc}");
    let left = block_on(source.list("")).unwrap();
    assert_eq!(left.len(), 4);

    // The re-import reads what changed only, and the new version reads right.
    let r = json(&env.ok(["push", &url, "ds", "--json"]));
    assert_eq!(
        (r["version"].as_str(), r["files"].as_u64()),
        (Some("ds@v2"), Some(4))
    );
    assert_eq!(r["hashed_bytes"], 9, "{r}");
    let rm = env.ok(["rm", "ds@v1"]);
    assert!(
        rm.contains("source objects it read in place are left"),
        "{rm}"
    );
}

/// On S3, Azure and GCS.
#[test]
fn a_copied_import_outlives_its_source() {
    for env in [Kind::S3, Kind::Azure, Kind::Gcs].map(Env::new) {
        copied_import(env);
    }
}

fn copied_import(env: Env) {
    let url = source_url(&env, "to-copy");
    let source = open_source(&env, &url);
    let objects = fill(&source);
    let r = json(&env.ok(["push", &url, "ds", "--copy", "--json"]));
    assert!(r["uploaded_bytes"].as_u64().unwrap() >= 20 << 20, "{r}");
    block_on(async {
        for k in objects.keys() {
            source.delete(k).await.unwrap();
        }
    });
    env.ok(["verify", "ds"]);
    let m = env.mount("ds", &[]);
    for (k, v) in &objects {
        assert!(std::fs::read(m.point.join(k)).unwrap() == *v, "{k} differs");
    }
}

#[test]
fn imports_that_cannot_be_done_say_why() {
    let env = Env::new(Kind::S3);
    let empty = source_url(&env, "nothing-here");
    let e = env.fails(["push", &empty, "ds"], "nothing to import at");
    assert!(e.contains("nothing-here"), "{e}");
    let own = format!("{}/blobs", env.url);
    env.fails(["push", &own, "ds"], "inside the store's own objects");
    let secret = format!("{empty}?secret_access_key=x");
    env.fails(["push", &secret, "ds"], "is a credential");
    let dir = env.dir("plain");
    env.fails(
        ["push", dir.to_str().unwrap(), "ds", "--copy"],
        "--copy is for imports",
    );
    assert_eq!(env.versions("ds"), 0, "nothing was made");
}

/// An import in progress is listed by `status` from another process, with its source URL
/// and totals, as a push is; killed, it is abandoned and makes no version.
#[test]
fn status_shows_an_import_in_progress_and_abandoned() {
    let env = Env::new(Kind::S3);
    let url = source_url(&env, "held");
    let source = open_source(&env, &url);
    fill(&source);
    let large: Vec<u8> = (0..64u32 << 20).map(|i| (i >> 7) as u8).collect();
    block_on(source.put("large.bin", large.into())).expect("put source object");
    let mut import = env.command(["push", &url, "ds"]).spawn().unwrap();
    let pid = import.id() as i32;
    let running = || {
        let out = env.run(["status", "--json"]);
        serde_json::from_str::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|j| j.as_array().cloned())
            .is_some_and(|rows| rows.iter().any(|r| r["state"] == "pushing"))
    };
    common::mount::wait_for(
        "the import to take its lease",
        std::time::Duration::from_secs(60),
        running,
    );
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let shown = env.ok(["status", "ds"]);
    let row = shown.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with("ds ") && row.contains(" pushing "),
        "{shown}"
    );
    assert!(row.contains(&format!(" {pid} ")), "{shown}");
    assert!(
        row.contains("of 6 files") && row.contains("of 84.0 MiB"),
        "{shown}"
    );
    let json = json(&env.ok(["status", "--json"]));
    assert_eq!(json[0]["source"], url.as_str(), "{json}");
    assert_eq!(json[0]["files_total"], 6, "{json}");

    unsafe { libc::kill(pid, libc::SIGKILL) };
    import.wait().unwrap();
    let shown = env.ok(["status"]);
    assert!(shown.contains(" abandoned "), "{shown}");
    assert_eq!(env.versions("ds"), 0);
}
