//! Bad input: each case gets a one-line error naming what is at fault, a non-zero exit, no
//! panic, and leaves nothing behind (no version, no partial download).

mod common;

use common::{tree, Env, Kind};
use std::ffi::{OsStr, OsString};
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn no_versions(env: &Env) {
    assert!(env.objects(&["refs/"]).is_empty(), "a version was created");
}

/// A tree of one large file, read first, and many small files after it.
fn slow_tree(env: &Env) -> std::path::PathBuf {
    use rand::SeedableRng;
    let src = env.dir("src");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    tree::write_random(&src.join("a.bin"), 96 << 20, &mut rng);
    for i in 0..40 {
        std::fs::write(src.join(format!("f{i:03}")), format!("{i}")).unwrap();
    }
    src
}

/// Runs a push and calls `meddle` once the push has `a.bin` open (the scan is then over, and
/// the small files after it are not read until `a.bin` is done).
fn push_while(env: &Env, src: &Path, meddle: impl Fn()) -> common::Output {
    let child = env
        .command([OsStr::new("push"), src.as_os_str(), OsStr::new("ds")])
        .spawn()
        .unwrap();
    let fds = format!("/proc/{}/fd", child.id());
    let big = src.join("a.bin");
    let start = Instant::now();
    'wait: loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "a.bin never opened"
        );
        if let Ok(dir) = std::fs::read_dir(&fds) {
            for fd in dir.flatten() {
                if std::fs::read_link(fd.path()).is_ok_and(|t| t == big) {
                    break 'wait;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    meddle();
    common::wait(child, Duration::from_secs(300)).unwrap()
}

fn assert_failed(out: &common::Output, expect: &str) {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains(expect), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn missing_or_unusable_source_directory() {
    let env = Env::new(Kind::Local);
    let missing = env.scratch.path().join("missing");
    env.fails(
        [OsStr::new("push"), missing.as_os_str(), OsStr::new("ds")],
        "does not exist",
    );
    let file = env.scratch.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    env.fails(
        [OsStr::new("push"), file.as_os_str(), OsStr::new("ds")],
        "not a directory",
    );
    no_versions(&env);
}

/// Root reads everything, so unreadable trees are pushed as the unprivileged `nobody`.
#[test]
fn unreadable_source_directory() {
    let env = Env::new(Kind::Local);
    let root = unsafe { libc::geteuid() } == 0;
    let open = |p: &Path| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777));
    open(env.scratch.path()).unwrap();
    open(&env.dir("store")).unwrap();
    let src = env.dir("src");
    open(&src).unwrap();
    std::fs::write(src.join("ok.txt"), b"ok").unwrap();
    let secret = env.dir("src/secret");
    std::fs::write(secret.join("inside"), b"x").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let locked = env.dir("locked");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();

    let as_user = |dir: &Path| {
        let mut c = env.command([OsStr::new("push"), dir.as_os_str(), OsStr::new("ds")]);
        if root {
            common::as_nobody(&mut c);
        }
        common::wait(c.spawn().expect("start push"), Duration::from_secs(60)).unwrap()
    };
    let out = as_user(&src);
    assert_failed(&out, "cannot read");
    assert!(out.stderr.contains("secret"), "{}", out.stderr);
    assert!(out.stderr.contains("permission denied;"), "{}", out.stderr);
    assert!(!out.stderr.contains("os error"), "{}", out.stderr);
    let out = as_user(&locked);
    assert_failed(&out, "locked");
    no_versions(&env);
}

#[test]
fn a_file_that_changes_while_pushed_fails_the_push() {
    let env = Env::new(Kind::Local);
    let src = slow_tree(&env);
    let big = src.join("a.bin");
    let out = push_while(&env, &src, || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&big).unwrap();
        f.write_all(b"more").unwrap();
    });
    assert_failed(&out, "changed while it was being pushed");
    assert!(out.stderr.contains("a.bin"), "{}", out.stderr);
    no_versions(&env);
}

#[test]
fn a_file_that_vanishes_while_pushed_fails_the_push() {
    let env = Env::new(Kind::Local);
    let src = slow_tree(&env);
    let victim = src.join("f039");
    let out = push_while(&env, &src, || std::fs::remove_file(&victim).unwrap());
    assert_failed(&out, "vanished while it was being pushed");
    assert!(out.stderr.contains("f039"), "{}", out.stderr);
    no_versions(&env);
    // Once the tree holds still, the push goes through.
    assert_eq!(env.push(&src, "ds")["files"], 40);
}

#[test]
fn special_files_are_skipped_with_a_warning() {
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    std::fs::write(src.join("file"), b"kept").unwrap();
    let fifo = std::ffi::CString::new(src.join("fifo").as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let _socket = std::os::unix::net::UnixListener::bind(src.join("socket")).unwrap();
    let dev = std::ffi::CString::new(src.join("null-device").as_os_str().as_bytes()).unwrap();
    let made = unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 3)) };
    let root = unsafe { libc::geteuid() } == 0;
    assert!(!root || made == 0, "root could not mknod");

    let out = env.run([OsStr::new("push"), src.as_os_str(), OsStr::new("ds")]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("skipped fifo"), "{}", out.stderr);
    assert!(out.stderr.contains("skipped socket"), "{}", out.stderr);
    if made == 0 {
        assert!(
            out.stderr.contains("skipped character device"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(env.ok(["ls", "ds@1"]), "file\n");
}

#[test]
fn bad_names_are_refused() {
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    std::fs::write(src.join("f"), b"x").unwrap();
    for bad in [
        "Upper", "../up", "a/b", ".hidden", "_under", "sp ace", "x\u{e9}", "",
    ] {
        env.fails(
            [OsStr::new("push"), src.as_os_str(), OsStr::new(bad)],
            "invalid dataset name",
        );
    }
    no_versions(&env);
    env.push(&src, "ds");
    env.fails(["ls", "ds/../../etc"], "'..' is not allowed");
    env.fails(["ls", "ds@v1x"], "invalid version");
    env.fails(["ls", "ds@-1"], "invalid version");
    // Arguments that are not UTF-8 are refused by the parser (usage error, exit 2).
    let out = env.run([OsStr::new("ls"), OsStr::from_bytes(b"ds\xff")]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("invalid UTF-8"), "{}", out.stderr);
}

#[test]
fn unknown_datasets_versions_and_paths() {
    for env in Env::both() {
        let src = env.dir("src");
        std::fs::write(src.join("f"), b"x").unwrap();
        env.push(&src, "ds");
        let dest = env.scratch.path().join("dest");
        let d = dest.as_os_str();
        env.fails(["ls", "nope"], "dataset 'nope' not found");
        env.fails(["log", "nope"], "dataset 'nope' not found");
        env.fails(["du", "nope@v1"], "dataset 'nope' not found");
        env.fails(["ls", "ds@v9"], "ds@v9 not found");
        env.fails(["diff", "ds@1", "ds@9"], "ds@v9 not found");
        env.fails(["rm", "ds@v9"], "ds@v9 not found");
        env.fails(["verify", "ds@v2"], "ds@v2 not found");
        env.fails(["ls", "ds/no/such/path"], "no entry");
        env.fails([OsStr::new("get"), OsStr::new("nope"), d], "not found");
        env.fails([OsStr::new("get"), OsStr::new("ds/missing"), d], "no entry");
        assert!(!dest.exists(), "a failed get left {}", dest.display());
        env.ok(["rm", "ds@v1"]);
        env.fails(["ls", "ds@v1"], "was deleted");
        env.fails(["ls", "ds"], "dataset 'ds' not found");
    }
}

#[test]
fn corrupt_or_truncated_manifests_and_refs_are_errors() {
    for env in Env::both() {
        let src = env.dir("src");
        std::fs::write(src.join("f"), b"content").unwrap();
        env.push(&src, "ds");
        env.push(&src, "other");
        let manifest = env.objects(&["manifests/"])[0].0.clone();
        let good = env.get_object(&manifest);
        let dest = env.scratch.path().join("dest");
        for damaged in [good[..good.len() / 2].to_vec(), vec![], b"garbage".to_vec()] {
            env.put_object(&manifest, damaged);
            env.fails(["ls", "ds@1"], "manifest of ds@v1");
            env.fails(
                [OsStr::new("get"), OsStr::new("ds"), dest.as_os_str()],
                "manifest of ds@v1",
            );
            assert!(!dest.exists());
            let out = env.run(["verify", "ds"]);
            assert_eq!(out.status.code(), Some(1), "{out:?}");
            assert!(!out.stderr.contains("panicked"));
        }
        env.put_object(&manifest, good);
        env.ok(["verify", "ds"]);

        let ref_key = "refs/ds/1";
        let good = env.get_object(ref_key);
        for damaged in [good[..good.len() / 2].to_vec(), vec![], vec![0xff; 64]] {
            env.put_object(ref_key, damaged);
            env.fails(["log", "ds"], "refs/ds/1");
            env.fails(["ls", "ds"], "refs/ds/1");
            // Other datasets stay readable.
            env.ok(["ls", "other@1"]);
        }
        env.put_object(ref_key, good);
        env.ok(["log", "ds"]);
    }
}

/// Damaged content is caught by its hash: get writes nothing and verify names the object.
#[test]
fn corrupt_content_is_caught() {
    for env in Env::both() {
        let src = env.dir("src");
        std::fs::write(src.join("small"), b"small file").unwrap();
        use rand::SeedableRng;
        let mut rng = rand::rngs::SmallRng::seed_from_u64(2);
        tree::write_random(&src.join("big"), 3 << 20, &mut rng);
        env.push(&src, "ds");
        for (key, size) in env.objects(&["blobs/", "packs/"]) {
            let good = env.get_object(&key);
            let mut bad = good.clone();
            bad[size as usize / 2] ^= 1;
            env.put_object(&key, bad);
            let dest = env.scratch.path().join("dest");
            env.fails(
                [OsStr::new("get"), OsStr::new("ds"), dest.as_os_str()],
                "SHA-256",
            );
            assert!(!dest.exists(), "a failed get left {}", dest.display());
            let out = env.run(["verify", "ds"]);
            assert_eq!(out.status.code(), Some(1), "{out:?}");
            assert!(
                out.stdout.contains(&key) || out.stderr.contains(&key),
                "{out:?}"
            );
            env.put_object(&key, good);
        }
        env.ok(["verify", "ds"]);
    }
}

#[test]
fn unreachable_stores_fail_within_the_timeout() {
    let env = Env::new(Kind::Local);
    // Connection refused: a port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    // A server that accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = vec![];
        for s in silent.incoming().flatten() {
            held.push(s);
        }
    });
    for port in [closed_port, silent_port] {
        let mut c = env.command(["--store", "s3://bucket/x", "--timeout", "3", "ls"]);
        c.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "k")
            .env("AWS_SECRET_ACCESS_KEY", "s")
            .env("AWS_REGION", "us-east-1");
        let out = common::wait(c.spawn().unwrap(), Duration::from_secs(60)).unwrap();
        assert_failed(&out, "s3://bucket/x");
        assert!(
            out.elapsed < Duration::from_secs(15),
            "took {:?}",
            out.elapsed
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
    env.fails(["--store", "ftp://host/x", "ls"], "unknown scheme");
    env.fails(["--store", "s3://", "ls"], "no bucket");
    env.fails(["--store", "/proc/forbidden/store", "ls"], "no store at");
    let src = env.dir("src");
    std::fs::write(src.join("f"), b"x").unwrap();
    env.fails(
        [
            OsStr::new("--store"),
            OsStr::new("/proc/forbidden/store"),
            OsStr::new("push"),
            src.as_os_str(),
            OsStr::new("ds"),
        ],
        "cannot create",
    );
}

/// A mistyped or absent store is never created by a read and says what was looked at; an
/// empty one says so on stderr and prints nothing on stdout.
#[test]
fn reads_never_create_a_store() {
    let env = Env::new(Kind::Local);
    let cwd = env.dir("cwd");
    let absent = env.dir("nothing").join("absent/store");
    let in_cwd = |args: &[OsString]| {
        let mut c = env.command(args);
        c.current_dir(&cwd);
        common::wait(c.spawn().unwrap(), Duration::from_secs(60)).unwrap()
    };
    for read in [
        &["ls"][..],
        &["log", "ds"],
        &["du", "ds"],
        &["get", "ds", "out"],
        &["mount", "ds", "mnt"],
        &["verify", "ds"],
    ] {
        let store = |url: &str| -> Vec<OsString> {
            let mut a: Vec<OsString> = vec!["--store".into(), url.into()];
            a.extend(read.iter().map(OsString::from));
            a
        };
        let out = in_cwd(&store("s3:/mybucket"));
        assert_failed(&out, "did you mean s3://mybucket?");
        let url = absent.display().to_string();
        let out = in_cwd(&store(&url));
        assert_failed(&out, &format!("no store at {url}"));
        assert!(
            !absent.parent().unwrap().exists(),
            "{read:?} created the store"
        );
        let left: Vec<_> = std::fs::read_dir(&cwd).unwrap().collect();
        assert!(left.is_empty(), "{read:?} left {left:?}");
    }
    let empty = env.dir("empty");
    let out = in_cwd(&["--store".into(), empty.clone().into(), "ls".into()]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .contains(&format!("no datasets in {}", empty.display())),
        "{}",
        out.stderr
    );
}

/// S3 refusals are one line that names the bucket, endpoint or variable at fault and what to
/// do, with the server's error code, never the client library's text or the server's XML: a
/// missing bucket (for a push and for every read), a key the server does not know, no
/// credentials at all, and a plain-http endpoint not allowed.
/// A missing Azure container or GCS bucket is named, with the emulator's endpoint, in one
/// line; a push makes nothing.
#[test]
fn azure_and_gcs_refusals_say_what_to_fix() {
    for kind in [Kind::Azure, Kind::Gcs] {
        let env = Env::new(kind);
        let src = env.dir("src");
        std::fs::write(src.join("f"), b"x").unwrap();
        let (scheme, what, endpoint) = match kind {
            Kind::Azure => ("az", "container", common::emulators::azurite_port()),
            _ => ("gs", "bucket", common::emulators::gcs_port()),
        };
        let missing = format!("{scheme}://no-such-bucket/root");
        let expect =
            format!("{what} 'no-such-bucket' does not exist at http://127.0.0.1:{endpoint}");
        let mut reads = vec![vec!["push", src.to_str().unwrap(), "ds"]];
        // fake-gcs-server answers a listing of a missing bucket with 500, where GCS says 404.
        if kind == Kind::Azure {
            reads.extend([vec!["ls"], vec!["log", "ds"]]);
        }
        for args in reads {
            let line = env.fails(["--store", &missing].iter().chain(&args), &expect);
            for raw in ["<?xml", "Generic", "Error performing"] {
                assert!(!line.contains(raw), "{line}");
            }
        }
    }
}

#[test]
fn s3_refusals_say_what_to_fix() {
    let env = Env::new(Kind::S3);
    let endpoint = format!("http://127.0.0.1:{}", common::moto_port());
    let src = env.dir("src");
    std::fs::write(src.join("f"), b"x").unwrap();
    let run = |args: &[&OsStr], fix: &dyn Fn(&mut Command)| {
        let mut c = env.command(args);
        fix(&mut c);
        common::wait(c.spawn().unwrap(), Duration::from_secs(60)).unwrap()
    };
    let one_clean_line = |out: &common::Output, expect: &str| {
        assert_failed(out, expect);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        for raw in ["<?xml", "RequestId", "Generic S3 error", "Error performing"] {
            assert!(!out.stderr.contains(raw), "{}", out.stderr);
        }
    };
    let missing = OsStr::new("s3://no-such-bucket/root");
    let no_bucket = format!("bucket 'no-such-bucket' does not exist at {endpoint}");
    let out = run(
        &[
            OsStr::new("--store"),
            missing,
            OsStr::new("push"),
            src.as_os_str(),
            OsStr::new("ds"),
        ],
        &|_| {},
    );
    one_clean_line(&out, &no_bucket);
    assert!(out.stderr.contains("(NoSuchBucket)"), "{}", out.stderr);
    let dest = env.dir("dest").join("out").display().to_string();
    for read in [
        &["ls"][..],
        &["ls", "ds"],
        &["log", "ds"],
        &["du", "ds"],
        &["get", "ds", &dest],
        &["verify", "ds"],
    ] {
        let mut args = vec![OsStr::new("--store"), missing];
        args.extend(read.iter().map(OsStr::new));
        one_clean_line(&run(&args, &|_| {}), &no_bucket);
    }

    // No credentials anywhere: the instance-metadata lookup (kept on loopback here) fails.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let metadata = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = run(&[OsStr::new("ls")], &|c| {
        c.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_METADATA_ENDPOINT", &metadata)
            .args(["--timeout", "5"]);
    });
    one_clean_line(
        &out,
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    );

    let out = run(&[OsStr::new("ls")], &|c| {
        c.env_remove("AWS_ALLOW_HTTP");
    });
    one_clean_line(&out, "is plain http");
    assert!(
        out.stderr.contains("set AWS_ALLOW_HTTP=true"),
        "{}",
        out.stderr
    );

    // A server that checks keys, and a key it does not know.
    let strict = common::Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let out = run(&[OsStr::new("ls")], &|c| {
        c.env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", strict.port),
        )
        .env("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY0000000")
        .env("AWS_SECRET_ACCESS_KEY", "wrong");
    });
    one_clean_line(&out, "denied; check AWS_ACCESS_KEY_ID");
    assert!(
        out.stderr.contains("(InvalidAccessKeyId)"),
        "{}",
        out.stderr
    );
}

/// The key of a version's manifest, read through the library.
fn manifest_key(env: &Env, dataset: &str, n: u64) -> String {
    let catalog = datastore::catalog::Catalog::new(env.store());
    let v = common::block_on(catalog.version(dataset, n)).expect("read ref");
    datastore::store::keys::manifest(&v.manifest)
}

/// The `datastore: …` lines of a command's stderr.
fn error_lines(out: &common::Output) -> Vec<&str> {
    out.stderr
        .lines()
        .filter(|l| l.starts_with("datastore: "))
        .collect()
}

/// A local store holding ds@v1, ds@v2 and other@v1, each of its own content.
fn three_versions() -> Env {
    let env = Env::new(Kind::Local);
    for (dir, name, content) in [("a", "ds", "one"), ("b", "ds", "two"), ("c", "other", "3")] {
        let src = env.dir(dir);
        std::fs::write(src.join("f"), content).unwrap();
        env.push(&src, name);
    }
    env
}

/// A lost manifest is named with its version and key by every command that reads it, with a
/// way out that is not `verify`; verify reports it as a problem of that version, and with
/// --all goes on with the other versions.
#[test]
fn a_missing_manifest_is_named_with_a_way_out() {
    let env = three_versions();
    let key = manifest_key(&env, "ds", 1);
    let good = env.get_object(&key);
    std::fs::remove_file(Path::new(&env.url).join(&key)).unwrap();
    let dest = env.scratch.path().join("dest");
    let d = dest.to_str().unwrap();
    let expect = format!(
        "manifest of ds@v1 ({key}) is missing; the store is damaged: restore that object from \
         a backup, or drop the version with `datastore rm ds@v1`"
    );
    for args in [
        &["ls", "ds@v1"][..],
        &["du", "ds@v1"],
        &["diff", "ds@1", "ds@2"],
        &["get", "ds@1", d],
        &["prefetch", "ds@v1"],
        &["gc", "-n"],
    ] {
        let line = env.fails(args, &expect);
        assert!(!line.contains("verify"), "{line}");
    }
    assert!(!dest.exists());
    let out = env.run(["verify", "ds@v1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        out.stderr,
        format!("ds@v1/: manifest {key} is missing\n"),
        "{out:?}"
    );
    assert!(out.stdout.starts_with("ds@v1: 1 problem"), "{out:?}");
    let out = env.run(["verify", "ds", "--all"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.contains("ds@v2: ok"), "{out:?}");
    assert!(out.stdout.contains("ds@v1: 1 problem"), "{out:?}");
    env.put_object(&key, good);
    env.ok(["verify", "ds", "--all"]);
}

/// A damaged ref is named (as truncated only when it is) by every listing, which still shows
/// every other version and exits 1; gc refuses; and `rm` of its version repairs the store.
#[test]
fn a_damaged_ref_is_named_and_the_rest_still_listed() {
    let env = three_versions();
    let good = env.get_object("refs/ds/1");
    let cases = [
        (good[..good.len() / 2].to_vec(), "is truncated"),
        (
            b"garbage".to_vec(),
            "holds something other than a version ref",
        ),
    ];
    for (damaged, fault) in cases {
        env.put_object("refs/ds/1", damaged);
        let named = format!(
            "datastore: ref of ds@v1 (refs/ds/1) {fault}; the store is damaged: restore that \
             object from a backup, or drop the version with `datastore rm ds@v1`"
        );
        let out = env.run(["ls"]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let names: Vec<&str> = out.stdout.lines().skip(1).map(|l| &l[..5]).collect();
        assert_eq!(names, ["ds   ", "other"], "{out:?}");
        assert_eq!(error_lines(&out), [named.as_str()], "{out:?}");
        let out = env.run(["log", "ds"]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let versions: Vec<&str> = out.stdout.lines().skip(1).map(|l| &l[..3]).collect();
        assert_eq!(versions, ["v2 "], "{out:?}");
        assert_eq!(error_lines(&out), [named.as_str()], "{out:?}");
        let out = env.run(["ls", "ds"]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(out.stdout.starts_with("ds@v2 ") && !out.stdout.contains("ds@v1"));
        for gc in [&["gc", "-n"][..], &["gc"]] {
            let line = env.fails(gc, &named["datastore: ".len()..]);
            assert!(line.ends_with("; gc deletes nothing until then"), "{line}");
        }
        env.ok(["ls", "ds@2"]);
    }
    assert_eq!(env.ok(["rm", "ds@v1"]), "deleted ds@v1\n");
    env.ok(["ls"]);
    assert_eq!(env.versions("ds"), 1);
    env.fails(["ls", "ds@v1"], "ds@v1 was deleted");
    env.ok(["gc", "-n"]);
}

/// What datastore never writes under refs/ (a directory in place of a ref, an object in place
/// of a dataset's prefix) is named by the listings, and gc refuses to run rather than delete
/// the content of the versions it hides.
#[test]
fn entries_datastore_never_writes_under_refs_stop_gc() {
    let env = three_versions();
    let refs = Path::new(&env.url).join("refs");
    let (ref2, other1) = (env.get_object("refs/ds/2"), env.get_object("refs/other/1"));
    std::fs::remove_file(refs.join("ds/2")).unwrap();
    std::fs::create_dir(refs.join("ds/2")).unwrap();
    std::fs::remove_dir_all(refs.join("other")).unwrap();
    std::fs::write(refs.join("other"), b"x").unwrap();
    let content = env.objects(&["blobs/", "packs/", "manifests/"]);
    let stray = |key: &str| {
        format!(
            "datastore: {key} is under refs/ but is not a version ref (refs/NAME/N); the store \
             is damaged: move it out of refs/, and restore from a backup any ref it replaced"
        )
    };
    let out = env.run(["ls"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 2, "{out:?}");
    let row: Vec<&str> = out
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[..3], ["ds", "v1", "1"], "{out:?}");
    assert_eq!(
        error_lines(&out),
        [stray("refs/ds/2/"), stray("refs/other")],
        "{out:?}"
    );
    let out = env.run(["log", "ds"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(error_lines(&out), [stray("refs/ds/2/")], "{out:?}");
    env.fails(["ls", "other"], &stray("refs/other")["datastore: ".len()..]);
    env.fails(["get", "ds", "out"], "refs/ds/2/ is under refs/");
    for gc in [&["gc", "-n", "--grace", "0s"][..], &["gc", "--grace", "0s"]] {
        let line = env.fails(gc, &stray("refs/ds/2/")["datastore: ".len()..]);
        assert!(
            line.ends_with(
                "; gc deletes nothing until then (`datastore ls` names 1 more damaged object)"
            ),
            "{line}"
        );
    }
    assert_eq!(env.objects(&["blobs/", "packs/", "manifests/"]), content);

    std::fs::remove_dir(refs.join("ds/2")).unwrap();
    std::fs::remove_file(refs.join("other")).unwrap();
    env.put_object("refs/ds/2", ref2);
    env.put_object("refs/other/1", other1);
    env.ok(["ls"]);
    env.ok(["gc", "-n", "--grace", "0s"]);
}

/// A dry run of gc only reads: it runs on a store it may not write (as `nobody`, when the
/// tests run as root), and leaves no lease and no `locks/` behind, empty store included.
#[test]
fn a_dry_run_of_gc_writes_nothing() {
    let env = Env::new(Kind::Local);
    std::fs::create_dir_all(&env.url).unwrap();
    let out = env.ok(["gc", "-n"]);
    assert!(out.contains("would delete 0 objects"), "{out}");
    assert_eq!(std::fs::read_dir(&env.url).unwrap().count(), 0);

    let src = env.dir("src");
    std::fs::write(src.join("f"), b"gone soon").unwrap();
    env.push(&src, "ds");
    env.ok(["rm", "ds@v1"]);
    let before = store_tree(Path::new(&env.url));
    let mut c = env.command(["gc", "-n", "--grace", "0s"]);
    if unsafe { libc::geteuid() } == 0 {
        let open = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(env.scratch.path(), open).unwrap();
        common::as_nobody(&mut c);
    }
    let out = common::wait(c.spawn().expect("start gc"), Duration::from_secs(60)).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("would delete 2 objects"), "{out:?}");
    assert_eq!(store_tree(Path::new(&env.url)), before);
}

/// Every file and directory under `dir`, with its modification time: any write shows.
fn store_tree(dir: &Path) -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        out.push((e.path(), e.metadata().unwrap().modified().unwrap()));
        if e.file_type().unwrap().is_dir() {
            out.extend(store_tree(&e.path()));
        }
    }
    out.sort();
    out
}

/// Arguments a command does not take are refused in one line that says what it does take,
/// and a dataset already removed is not found, by `rm -r` as by `ls`.
#[test]
fn arguments_out_of_place_say_what_the_command_takes() {
    let env = three_versions();
    for arg in ["ds@v2", "ds/f"] {
        env.fails(
            ["log", arg],
            "log shows every version of a dataset: datastore log ds",
        );
    }
    env.fails(
        ["verify", "ds@v1", "--all"],
        "verify --all takes a dataset name without a version: verify ds --all",
    );
    for grace in ["abc", "10XB"] {
        let out = env.run(["gc", "--grace", grace]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let want = format!("'{grace}' is not a duration such as 30m, 1h or 2days");
        assert!(out.stderr.contains(&want), "{}", out.stderr);
        assert!(!out.stderr.contains("expected number"), "{}", out.stderr);
        assert!(!out.stderr.contains("supported units"), "{}", out.stderr);
    }
    assert_eq!(
        env.ok(["rm", "-r", "other"]),
        "deleted 1 version of other\n"
    );
    env.fails(["rm", "-r", "other"], "dataset 'other' not found");
    env.fails(["ls", "other"], "dataset 'other' not found");
}

/// Endpoint mistakes, each against a real listener of its kind on 127.0.0.1: one line that
/// names the variable (or URL setting) and the fix, never the client library's text, a
/// server's page, an internal key or a panic.
#[test]
fn endpoint_mistakes_are_named() {
    let env = Env::new(Kind::S3);
    let moto = common::moto_port();
    let src = env.dir("src");
    std::fs::write(src.join("f"), b"x").unwrap();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // A web server that is not S3: nginx, as the cache tier, refusing unsigned requests.
    let web = common::nginx::Nginx::start(moto, "secret");
    let clean = |out: &common::Output, expect: &str| {
        assert_failed(out, expect);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        for raw in [
            "Generic",
            "<html",
            "<?xml",
            "locks/",
            "os error",
            "InvalidContentType",
        ] {
            assert!(!out.stderr.contains(raw), "{}", out.stderr);
        }
    };
    let run = |args: &[&OsStr], vars: &[(&str, String)]| {
        let mut c = env.command(args);
        c.args(["--timeout", "5"]);
        for (k, v) in vars {
            c.env(k, v);
        }
        common::wait(c.spawn().unwrap(), Duration::from_secs(60)).unwrap()
    };
    let ls = [OsStr::new("ls")];
    let push = [OsStr::new("push"), src.as_os_str(), OsStr::new("ds")];
    let endpoint = |url: String| vec![("AWS_ENDPOINT_URL", url)];
    for args in [&ls[..], &push[..]] {
        // No scheme: object_store panicked on it.
        let out = run(args, &endpoint(format!("127.0.0.1:{moto}")));
        clean(&out, &format!("AWS_ENDPOINT_URL '127.0.0.1:{moto}' has no scheme: write https://127.0.0.1:{moto}, or http://127.0.0.1:{moto}"));
        // Nothing listening.
        let out = run(args, &endpoint(format!("http://127.0.0.1:{closed}")));
        clean(&out, &format!("nothing is listening at http://127.0.0.1:{closed} (connection refused); check AWS_ENDPOINT_URL"));
        // https:// to a plain-http server.
        let out = run(args, &endpoint(format!("https://127.0.0.1:{moto}")));
        clean(&out, &format!("https://127.0.0.1:{moto} does not answer https (the TLS handshake failed): if the server is plain http, write http:// in AWS_ENDPOINT_URL and set AWS_ALLOW_HTTP=true"));
        // A web server of another kind.
        let out = run(args, &endpoint(web.url()));
        clean(&out, &format!("{} answered HTTP 403 with a web page, not as an S3 server does; check that AWS_ENDPOINT_URL", web.url()));
        // The bucket written into the endpoint.
        let bucket = env
            .url
            .trim_start_matches("s3://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let out = run(args, &endpoint(format!("http://127.0.0.1:{moto}/{bucket}")));
        clean(&out, &format!("ends in the bucket '{bucket}': give the server alone (http://127.0.0.1:{moto}), and the bucket in the store URL"));
        // AWS_ALLOW_HTTP set, but empty.
        let out = run(args, &[("AWS_ALLOW_HTTP", String::new())]);
        clean(
            &out,
            "AWS_ALLOW_HTTP '' is not true or false; fix or unset it",
        );
    }
    no_versions(&env);
    // The same in a store URL's settings.
    let store = format!("{}?endpoint=127.0.0.1:{moto}", env.url);
    let out = run(
        &[OsStr::new("--store"), OsStr::new(&store), OsStr::new("ls")],
        &[],
    );
    clean(&out, "endpoint= in the store URL '127.0.0.1:");

    // Their GCS and Azure counterparts.
    for kind in [Kind::Gcs, Kind::Azure] {
        let env = Env::new(kind);
        let var = match kind {
            Kind::Gcs => "GOOGLE_BASE_URL",
            _ => "AZURITE_BLOB_STORAGE_URL",
        };
        let run = |value: String| {
            let mut c = env.command(["ls", "--timeout", "5"]);
            c.env(var, value);
            common::wait(c.spawn().unwrap(), Duration::from_secs(60)).unwrap()
        };
        let out = run(format!("127.0.0.1:{closed}"));
        clean(&out, &format!("{var} '127.0.0.1:{closed}' has no scheme"));
        let out = run(format!("http://127.0.0.1:{closed}"));
        clean(&out, &format!("nothing is listening at http://127.0.0.1:{closed} (connection refused); check {var}"));
        let out = run(web.url());
        clean(
            &out,
            &format!("{} answered HTTP 403 with a web page", web.url()),
        );
    }
}

/// A push of a tree that holds no files would empty the dataset for every reader of its
/// latest version: refused, naming the directory and --allow-empty, which makes it.
#[test]
fn an_empty_push_is_refused_unless_asked_for() {
    for env in Env::both() {
        let src = env.dir("src");
        std::fs::write(src.join("f"), b"data").unwrap();
        env.push(&src, "ds");
        let empty = env.dir("empty");
        std::fs::create_dir(empty.join("only-a-directory")).unwrap();
        let line = env.fails(
            [OsStr::new("push"), empty.as_os_str(), OsStr::new("ds")],
            "holds no files: pushing it would make the latest version of 'ds' empty",
        );
        assert!(line.contains("--allow-empty"), "{line}");
        assert_eq!(env.versions("ds"), 1, "[{:?}] a version was made", env.kind);
        let r = env.ok([
            OsStr::new("push"),
            empty.as_os_str(),
            OsStr::new("ds"),
            OsStr::new("--allow-empty"),
        ]);
        assert!(r.contains("ds@v2"), "{r}");
        assert_eq!(env.ok(["ls", "ds@latest"]), "only-a-directory/\n");
    }
}

/// The smaller mistakes of a first hour: each gets a line that says what to do.
#[test]
fn small_mistakes_say_what_to_do() {
    let env = three_versions();
    env.fails(["ls", "ds", "-l"], "`ls ds` lists the versions of ds; -l is for the files of a version: `datastore ls ds@latest -l`");
    env.fails(["ls", "-l", "-R"], "-l -R are for the files of a version");
    env.fails(["status", "nope"], "dataset 'nope' not found");
    let plain = env.dir("plain");
    for args in [
        vec![OsStr::new("switch"), plain.as_os_str(), OsStr::new("ds@v1")],
        vec![OsStr::new("umount"), plain.as_os_str()],
    ] {
        env.fails(&args, "is not a datastore mount; `grep fuse.datastore /proc/self/mounts` lists the mounts here");
    }
    let list = env.scratch.path().join("list");
    std::fs::write(&list, "f\n").unwrap();
    let line = env.fails(
        [
            OsStr::new("prefetch"),
            OsStr::new("--mount"),
            plain.as_os_str(),
            OsStr::new("--from-list"),
            list.as_os_str(),
        ],
        "is not a datastore mount;",
    );
    assert!(!line.contains("older"), "{line}");
    // --timeout and DATASTORE_TIMEOUT are each named for what they are.
    let out = env.run(["--timeout", "-1", "ls"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("'-1' is not a number of seconds of at least 1"),
        "{}",
        out.stderr
    );
    let mut c = env.command(["ls"]);
    c.env("DATASTORE_TIMEOUT", "soon");
    let out = common::wait(c.spawn().unwrap(), Duration::from_secs(60)).unwrap();
    assert_failed(
        &out,
        "DATASTORE_TIMEOUT: 'soon' is not a number of seconds of at least 1",
    );
    assert!(!out.stderr.contains("--timeout"), "{}", out.stderr);
    // With the store in the environment, no usage line asks for --store.
    let out = env.run(["get"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!out.stderr.contains("--store"), "{}", out.stderr);
    // Examples are printed as written.
    let help = env.ok(["push", "--help"]);
    assert!(
        help.contains("Examples:\n  datastore push ./imagenet imagenet"),
        "{help}"
    );
    // Counts agree with their nouns.
    let one = env.dir("one");
    std::fs::write(one.join("f"), b"1").unwrap();
    let said = env.ok([OsStr::new("push"), one.as_os_str(), OsStr::new("solo")]);
    assert!(said.contains("1 file,"), "{said}");
}

/// Settings and arguments the object-store client panicked on (while making a request, or
/// reading the environment): each is now one line that names what to fix, exit 1 (2 for a
/// command line clap refuses), and never a panic.
#[test]
fn no_setting_or_argument_panics() {
    use std::os::unix::ffi::OsStringExt;
    let env = Env::new(Kind::Local);
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let s3 = [
        ("AWS_ENDPOINT_URL", closed.clone()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "k".into()),
        ("AWS_SECRET_ACCESS_KEY", "s".into()),
        ("AWS_REGION", "us-east-1".into()),
    ];
    let azure = [
        ("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1".to_string()),
        ("AZURE_STORAGE_ENDPOINT", closed.clone()),
        ("AZURE_ALLOW_HTTP", "true".into()),
        ("AZURE_CLIENT_ID", "c".into()),
        ("AZURE_CLIENT_SECRET", "s".into()),
        ("AZURE_AUTHORITY_HOST", closed.clone()),
    ];
    let long = format!("s3://b/{}", "x".repeat(100_000));
    // Store, variables, what the line says; each with `ls`.
    type Case<'a> = (&'a str, Vec<(&'a str, OsString)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "s3://b/x",
            vec![("FOO", OsString::from_vec(vec![0xff]))],
            "nothing is listening",
        ),
        (
            "s3://b/x",
            vec![("AWS_ENDPOINT_URL", format!(" {closed}").into())],
            "AWS_ENDPOINT_URL ' http://127.0.0.1:",
        ),
        (
            "s3://b/x",
            vec![("AWS_ENDPOINT_URL", "http://%41:80".into())],
            "names no host",
        ),
        (
            "s3://b/x",
            vec![("AWS_REGION", "eu-west-1\n".into())],
            "AWS_REGION holds a control character",
        ),
        (
            "s3://b/x",
            vec![("AWS_ACCESS_KEY_ID", "AKIA\u{1}".into())],
            "AWS_ACCESS_KEY_ID holds a control character",
        ),
        (
            "s3://b/x",
            vec![("AWS_ALLOW_HTTP", OsString::from_vec(vec![b't', 0xff]))],
            "AWS_ALLOW_HTTP is not UTF-8",
        ),
        (
            "s3://b/x",
            vec![("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ":99999".into())],
            "is not a path",
        ),
        (
            "gs://b/x",
            vec![
                ("GOOGLE_BASE_URL", closed.clone().into()),
                ("GCE_METADATA_HOST", "127.0.0.1:99999".into()),
            ],
            "GCE_METADATA_HOST '127.0.0.1:99999' is not a HOST or HOST:PORT",
        ),
        (
            "az://c/x",
            vec![("AZURE_TENANT_ID", "a b".into())],
            "no request can be made to the store with these settings",
        ),
        ("s3://b c/x", vec![], "'b c' is not a bucket name"),
        (&long, vec![], "longer than a store URL can be"),
    ];
    for (store, vars, says) in &cases {
        let mut c = env.command(["--store", store, "--timeout", "3", "ls"]);
        let family: &[(&str, String)] = if store.starts_with("az") { &azure } else { &s3 };
        c.envs(family.iter().map(|(k, v)| (k, v)));
        c.envs(vars.iter().map(|(k, v)| (k, v)));
        let out = common::wait(c.spawn().unwrap(), Duration::from_secs(60)).unwrap();
        let shown: String = store.chars().take(40).collect();
        assert_failed(&out, says);
        assert_eq!(
            out.stderr.lines().count(),
            1,
            "{shown} {vars:?}: {}",
            out.stderr
        );
    }
    // The launcher's own flag, given by hand.
    let mnt = env.dir("mnt");
    for fd in ["-1", "1", "999"] {
        let out = env.run([
            OsStr::new("mount"),
            OsStr::new("ds"),
            mnt.as_os_str(),
            OsStr::new("--foreground"),
            OsStr::new("--ready-fd"),
            OsStr::new(fd),
        ]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(
            out.stderr.contains("is not an open descriptor past stderr"),
            "{}",
            out.stderr
        );
    }
}
