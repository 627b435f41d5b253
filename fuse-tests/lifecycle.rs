//! The life of a dataset: re-pushes, edits, interrupted and concurrent pushes, deletion and gc.
//! Each test runs against the local store and a moto S3 server.

mod common;

use common::{tree, Env, Kind};
use rand::{RngCore, SeedableRng};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

fn rng(seed: u64) -> rand::rngs::SmallRng {
    rand::rngs::SmallRng::seed_from_u64(seed)
}

fn get(env: &Env, target: &str, dest: &Path) {
    env.ok([OsStr::new("get"), OsStr::new(target), dest.as_os_str()]);
}

#[test]
fn re_push_of_an_unchanged_tree_uploads_nothing() {
    for env in Env::both() {
        let src = env.scratch.path().join("src");
        tree::random(&src, 11, 80, 4, true);
        let first = env.push(&src, "ds");
        assert!(first["uploaded_bytes"].as_u64().unwrap() > 0);
        let objects = env.objects(&["blobs/", "packs/", "manifests/"]);

        let again = env.push(&src, "ds");
        assert_eq!(again["unchanged"], true, "{again}");
        assert_eq!(again["uploaded_bytes"], 0, "{again}");
        assert_eq!(again["version"], "ds@v1");
        assert_eq!(env.versions("ds"), 1);
        assert_eq!(env.objects(&["blobs/", "packs/", "manifests/"]), objects);

        // The same content under another name shares every content object.
        let other = env.push(&src, "copy");
        assert_eq!(other["version"], "copy@v1");
        assert_eq!(
            other["uploaded_objects"], 0,
            "the manifest is content-addressed too: {other}"
        );
        assert_eq!(other["dedup_bytes"], other["bytes"]);
    }
}

#[test]
fn a_one_byte_edit_re_uploads_only_the_touched_chunks() {
    const SIZE: usize = 64 << 20;
    for env in Env::both() {
        let src = env.dir("src");
        let mut data = vec![0u8; SIZE];
        rng(3).fill_bytes(&mut data);
        std::fs::write(src.join("big.bin"), &data).unwrap();
        std::fs::write(src.join("small.txt"), b"unchanged").unwrap();
        env.push(&src, "ds");
        let before: BTreeSet<_> = env.objects(&["blobs/", "packs/"]).into_iter().collect();

        data[SIZE / 2] ^= 0xff;
        std::fs::write(src.join("big.bin"), &data).unwrap();
        let r = env.push(&src, "ds");
        assert_eq!(r["version"], "ds@v2");
        let after: BTreeSet<_> = env.objects(&["blobs/", "packs/"]).into_iter().collect();
        let new: Vec<_> = after.difference(&before).collect();
        let new_bytes: u64 = new.iter().map(|(_, size)| size).sum();
        // One chunk holds the byte; a cut point just after it may move, touching a second.
        assert!(
            (1..=2).contains(&new.len()),
            "[{:?}] new objects: {new:?}",
            env.kind
        );
        assert!(new_bytes <= 2 * (16 << 20) && new_bytes < SIZE as u64 / 4);
        let uploaded = r["uploaded_bytes"].as_u64().unwrap();
        assert!(uploaded < new_bytes + (64 << 10), "{r}");
        assert!(r["dedup_bytes"].as_u64().unwrap() > SIZE as u64 / 2, "{r}");

        let dest = env.scratch.path().join("dest");
        get(&env, "ds@v2", &dest);
        tree::assert_same(&src, &dest);
        let out = env.ok(["diff", "ds@1", "ds@2"]);
        assert_eq!(out.lines().next(), Some("M\tbig.bin"), "{out}");
    }
}

#[test]
fn concurrent_pushes_get_distinct_versions() {
    for env in Env::every_backend() {
        let dirs: Vec<_> = (0..4)
            .map(|i| {
                let d = env.dir(&format!("src{i}"));
                tree::random(&d, 100 + i, 30, 3, false);
                std::fs::write(d.join("which"), format!("{i}")).unwrap();
                d
            })
            .collect();
        let children: Vec<_> = dirs
            .iter()
            .map(|d| {
                env.command([
                    OsStr::new("push"),
                    d.as_os_str(),
                    OsStr::new("conc"),
                    OsStr::new("--json"),
                ])
                .spawn()
                .unwrap()
            })
            .collect();
        let mut numbers = BTreeSet::new();
        for c in children {
            let out = common::wait(c, Duration::from_secs(300)).unwrap();
            assert!(out.status.success(), "{}", out.stderr);
            let j: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
            numbers.insert(j["number"].as_u64().unwrap());
        }
        assert_eq!(numbers, BTreeSet::from([1, 2, 3, 4]), "[{:?}]", env.kind);
        // Each version holds exactly one of the trees.
        let mut seen = BTreeSet::new();
        for v in 1..=4 {
            let dest = env.scratch.path().join(format!("dest{v}"));
            get(&env, &format!("conc@v{v}"), &dest);
            let which: usize = std::fs::read_to_string(dest.join("which"))
                .unwrap()
                .parse()
                .unwrap();
            tree::assert_same(&dirs[which], &dest);
            seen.insert(which);
        }
        assert_eq!(seen.len(), 4);
    }
}

#[test]
fn gc_keeps_every_referenced_object_and_deletes_the_rest() {
    for env in Env::every_backend() {
        let (a, b) = (env.dir("a"), env.dir("b"));
        let mut r = rng(9);
        let shared = {
            let mut v = vec![0u8; 3 << 20];
            r.fill_bytes(&mut v);
            v
        };
        for d in [&a, &b] {
            std::fs::write(d.join("shared.bin"), &shared).unwrap();
            std::fs::write(d.join("small.txt"), b"small and shared").unwrap();
        }
        tree::write_random(&a.join("only-a.bin"), 3 << 20, &mut r);
        tree::write_random(&b.join("only-b.bin"), 3 << 20, &mut r);
        env.push(&a, "ds");
        env.push(&b, "ds");
        env.ok(["rm", "ds@v1"]);
        let all = env.objects(&["blobs/", "packs/", "manifests/"]);

        // Within the grace period, and in a dry run, nothing goes.
        let out = env.ok(["gc"]);
        assert!(out.contains("deleted 0 objects"), "{out}");
        let out = env.ok(["gc", "--dry-run", "--grace", "0s"]);
        assert!(out.contains("would delete"), "{out}");
        assert_eq!(env.objects(&["blobs/", "packs/", "manifests/"]), all);

        env.ok(["gc", "--grace", "0s"]);
        let kept = env.objects(&["blobs/", "packs/", "manifests/"]);
        assert!(kept.len() < all.len());

        // What is left is exactly what a store holding only v2 would hold.
        let fresh = Env::new(env.kind);
        fresh.push(&b, "ds");
        assert_eq!(kept, fresh.objects(&["blobs/", "packs/", "manifests/"]));
        env.ok(["verify", "ds", "--all"]);
        let dest = env.scratch.path().join("dest");
        get(&env, "ds", &dest);
        tree::assert_same(&b, &dest);

        // Removing the dataset frees everything.
        env.ok(["rm", "-r", "ds"]);
        env.ok(["gc", "--grace", "0s"]);
        assert_eq!(env.objects(&["blobs/", "packs/", "manifests/"]), vec![]);
        env.fails(["log", "ds"], "not found");
    }
}

#[test]
fn gc_refuses_to_run_during_a_push() {
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    let mut r = rng(21);
    for i in 0..60 {
        tree::write_random(&src.join(format!("f{i:03}.bin")), 3 << 20, &mut r);
    }
    let push = env
        .command([OsStr::new("push"), src.as_os_str(), OsStr::new("ds")])
        .spawn()
        .unwrap();
    let start = Instant::now();
    while env.objects(&["locks/"]).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(60), "no push lease");
        std::thread::sleep(Duration::from_millis(5));
    }
    let gc = env.run(["gc", "--grace", "0s"]);
    let out = common::wait(push, Duration::from_secs(300)).unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(!gc.status.success(), "gc ran during a push: {}", gc.stdout);
    assert!(gc.stderr.contains("a push is running"), "{}", gc.stderr);
    env.ok(["verify", "ds"]);
    // Once the push is done, gc runs and keeps everything the new version needs.
    env.ok(["gc", "--grace", "0s"]);
    env.ok(["verify", "ds"]);
    assert!(env.objects(&["locks/"]).is_empty());
}

/// The quick start, run as a new user runs it (with the binary built already): every command
/// it shows can be pasted as it is printed, it says what it left behind, and it leaves no
/// mount and no empty mount point.
#[test]
fn the_demo_shows_pasteable_commands_and_cleans_up_its_mount() {
    let env = Env::new(Kind::Local);
    let point = Path::new("/datastores/demo");
    let was_there = point.exists();
    let _guard = common::mount::Mounted::adopt(point);
    let demo = env.scratch.path().join("demo dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo");
    // The harness's clean environment (HOME, XDG directories, cache) for the script.
    let base = env.command::<[&str; 0], &str>([]);
    let child = std::process::Command::new("bash")
        .arg(&script)
        .env_clear()
        .envs(
            base.get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
        )
        .env_remove("DATASTORE_STORE")
        .env("DATASTORE_DEMO_BIN", common::BIN)
        .env("DATASTORE_DEMO_DIR", &demo)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = common::wait(child, Duration::from_secs(240)).unwrap();
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    // Each `$ datastore …` line, pasted into a shell, is that command with those arguments.
    let shown: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("$ {} ", common::BIN)))
        .collect();
    assert!(shown.len() >= 12, "{}", out.stdout);
    let push = shown.iter().find(|l| l.starts_with("push ")).unwrap();
    let words = std::process::Command::new("bash")
        .args(["-c", &format!("printf '%s\\n' {push}")])
        .output()
        .unwrap();
    let words = String::from_utf8(words.stdout).unwrap();
    let words: Vec<&str> = words.lines().collect();
    let sample = demo.join("sample");
    assert_eq!(
        words,
        [
            "push",
            sample.to_str().unwrap(),
            "demo",
            "-m",
            "sample dataset"
        ],
        "{push}"
    );
    let store = env.scratch.path().join("data/datastore/store");
    assert!(
        out.stdout.contains("==> done. What the demo left:"),
        "{}",
        out.stdout
    );
    assert!(out
        .stdout
        .contains(&format!("  {}   the local store", store.display())));
    assert!(out.stdout.contains(&env.cache_dir().display().to_string()));
    assert!(!common::mount::is_mounted(point), "the demo left its mount");
    assert_eq!(
        point.exists(),
        was_there,
        "the demo left {}",
        point.display()
    );
}

/// Waits until process `pid` has `file` open.
fn wait_until_open(pid: u32, file: &Path) {
    common::mount::wait_for("the push to open its file", Duration::from_secs(60), || {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|d| {
            d.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == file))
        })
    });
}

/// `status`, from another process, lists a push in progress with its dataset, host and
/// progress; the same push killed with kill -9 as abandoned; a push that failed, with its
/// error. None of them is a version.
#[test]
fn status_shows_pushes_running_abandoned_and_failed() {
    use std::io::Write;
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    tree::write_random(&src.join("a.bin"), 64 << 20, &mut rng(21));
    for i in 0..20 {
        std::fs::write(src.join(format!("f{i:03}")), format!("{i}")).unwrap();
    }
    env.fails(["status"], "no store at");
    let other = env.dir("other");
    std::fs::write(other.join("x"), b"x").unwrap();
    env.push(&other, "other");
    let out = env.run(["status"]);
    assert!(
        out.status.success() && out.stderr.contains("no pushes"),
        "{out:?}"
    );
    // Held still once it reads the large file: its lease is written, nothing committed.
    let mut push = env
        .command([OsStr::new("push"), src.as_os_str(), OsStr::new("big")])
        .spawn()
        .unwrap();
    let pid = push.id() as i32;
    wait_until_open(pid as u32, &src.join("a.bin"));
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let shown = env.ok(["status", "big"]);
    let row = shown.lines().nth(1).unwrap_or_default();
    assert!(shown.starts_with("DATASET"), "{shown}");
    assert!(
        row.starts_with("big ") && row.contains(" pushing "),
        "{shown}"
    );
    assert!(row.contains(&format!(" {pid} ")), "{shown}");
    assert!(
        row.contains("of 21 files") && row.contains("of 64.0 MiB"),
        "{shown}"
    );
    let json: serde_json::Value = serde_json::from_str(&env.ok(["status", "--json"])).unwrap();
    assert_eq!(json[0]["files_total"], 21);
    assert_eq!(json[0]["source"], src.to_str().unwrap());

    unsafe { libc::kill(pid, libc::SIGKILL) };
    push.wait().unwrap();
    let shown = env.ok(["status"]);
    assert!(shown.contains(" abandoned "), "{shown}");
    assert!(shown.contains("push again to finish"), "{shown}");
    assert_eq!(env.versions("big"), 0);

    // A file that changes while it is read fails the push, and says so in status.
    let mut push = env
        .command([OsStr::new("push"), src.as_os_str(), OsStr::new("big")])
        .spawn()
        .unwrap();
    let pid = push.id();
    wait_until_open(pid, &src.join("a.bin"));
    std::fs::write(src.join("f000"), b"changed").unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(src.join("a.bin"))
        .unwrap()
        .write_all(b"more")
        .unwrap();
    assert!(!push.wait().unwrap().success());
    let json: serde_json::Value = serde_json::from_str(&env.ok(["status", "--json"])).unwrap();
    let failed: Vec<_> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{json}");
    let why = failed[0]["failure"].as_str().unwrap();
    assert!(why.contains("changed while it was being pushed"), "{why}");
    assert_eq!(env.versions("big"), 0);
}

/// Runs a command with `--json` that must succeed, and parses its output.
fn json(env: &Env, args: &[&str]) -> serde_json::Value {
    let out = env.ok(args.iter().copied().chain(["--json"]));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} --json: {e}: {out}"))
}

/// Runs a command with `--json` that must fail, and returns the error's kind and message
/// from the one JSON line on stderr.
fn json_error(env: &Env, args: &[&str]) -> (String, String) {
    let out = env.run(args.iter().copied().chain(["--json"]));
    assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: one line expected: {}",
        out.stderr
    );
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let e = &v["error"];
    (
        e["kind"].as_str().unwrap().into(),
        e["message"].as_str().unwrap().into(),
    )
}

/// The `--json` forms of ls, log, du, diff, verify and cache stats say what the text forms
/// say, and an error under `--json` is one JSON line with a kind to branch on.
#[test]
fn every_listing_has_a_json_form_and_errors_have_kinds() {
    use sha2::Digest;
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    std::fs::create_dir(src.join("d")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    std::fs::write(src.join("d/b.bin"), vec![7u8; 3000]).unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    env.push(&src, "ds");
    std::fs::write(src.join("a.txt"), b"alpha, edited").unwrap();
    std::fs::write(src.join("d/c.txt"), b"new").unwrap();
    let pushed = env.push(&src, "ds");

    let datasets = json(&env, &["ls"]);
    assert_eq!(datasets[0]["dataset"], "ds", "{datasets}");
    assert_eq!(datasets[0]["latest"], 2);
    assert_eq!(datasets[0]["versions"], 2);
    let log = json(&env, &["log", "ds"]);
    assert_eq!(log, json(&env, &["ls", "ds"]));
    assert_eq!(log.as_array().unwrap().len(), 2);
    assert_eq!(log[0]["version"], 2);
    assert_eq!(log[0]["label"], "ds@v2");
    assert_eq!(log[0]["parent"], 1);
    assert_eq!(log[0]["files"], 3);
    assert_eq!(log[1]["parent"], serde_json::Value::Null);
    assert_eq!(log[0]["label"], pushed["version"], "{pushed}");

    let files = json(&env, &["ls", "ds@v2", "-R"]);
    let paths: Vec<&str> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["a.txt", "d", "d/b.bin", "d/c.txt", "link"]);
    let b = &files[2];
    assert_eq!(b["type"], "file");
    assert_eq!(b["size"], 3000);
    let sha = format!("{:x}", sha2::Sha256::digest(vec![7u8; 3000]));
    assert_eq!(b["sha256"], sha);
    assert_eq!(files[1]["type"], "dir");
    assert_eq!(files[4]["type"], "symlink");
    assert_eq!(files[4]["target"], "a.txt");
    let d = json(&env, &["ls", "ds@v2/d"]);
    assert_eq!(d[0]["path"], "b.bin");

    let du = json(&env, &["du", "ds@v2"]);
    assert_eq!(du["files"], 3);
    assert_eq!(du["bytes"], 3000 + 13 + 3);
    assert_eq!(du["symlinks"], 1);

    let diff = json(&env, &["diff", "ds@v1", "ds@v2"]);
    assert_eq!(diff["from"], "ds@v1");
    assert_eq!(diff["added"], 1);
    assert_eq!(diff["changed"], 1);
    assert_eq!(diff["removed"], 0);
    let changes: Vec<(&str, &str)> = diff["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["change"].as_str().unwrap(), c["path"].as_str().unwrap()))
        .collect();
    assert_eq!(changes, [("changed", "a.txt"), ("added", "d/c.txt")]);

    let verified = json(&env, &["verify", "ds", "--all"]);
    assert_eq!(verified.as_array().unwrap().len(), 2);
    assert_eq!(verified[0]["ok"], true);
    let cache = env.dir("cache");
    let stats = json(
        &env,
        &["cache", "stats", "--cache-dir", cache.to_str().unwrap()],
    );
    assert_eq!(stats["exists"], false);

    // Every command that takes a NAME, with each kind of mistake it can meet.
    let dest = env.scratch.path().join("dest").display().to_string();
    let mnt = env.dir("mnt").display().to_string();
    let mut cases: Vec<(Vec<&str>, &str, &str)> = Vec::new();
    let by_target: &[&[&str]] = &[
        &["ls"],
        &["du"],
        &["get", "T", &dest],
        &["verify"],
        &["prefetch"],
        &["mount", "T", &mnt],
        &["rm"],
        &["diff", "ds@v1"],
    ];
    for cmd in by_target {
        let with = |t: &'static str| -> Vec<&str> {
            match cmd.iter().position(|a| *a == "T") {
                Some(i) => {
                    let mut v = cmd.to_vec();
                    v[i] = t;
                    v
                }
                None => cmd.iter().copied().chain([t]).collect(),
            }
        };
        cases.push((
            with("nope@v1"),
            "dataset_not_found",
            "dataset 'nope' not found",
        ));
        cases.push((with("ds@v9"), "version_not_found", "ds@v9 not found"));
        cases.push((with("Bad@v1"), "bad_name", "Bad"));
        if !matches!(cmd[0], "mount" | "rm" | "verify" | "diff") {
            cases.push((with("ds@v2/missing"), "path_not_found", "has no entry"));
        }
    }
    for name_only in [&["log"][..], &["status"], &["rm", "-r"]] {
        let with = |t: &'static str| name_only.iter().copied().chain([t]).collect::<Vec<_>>();
        cases.push((
            with("nope"),
            "dataset_not_found",
            "dataset 'nope' not found",
        ));
        cases.push((with("Bad"), "bad_name", "Bad"));
    }
    cases.push((
        vec!["push", "/nonexistent/dir", "ds"],
        "bad_source",
        "does not exist",
    ));
    cases.push((vec!["push", "/nonexistent/dir", "Bad"], "bad_name", "Bad"));
    for (args, kind, says) in &cases {
        let (k, message) = json_error(&env, args);
        assert_eq!(k, *kind, "{args:?}: {message}");
        assert!(message.contains(says), "{args:?}: {message}");
    }
    assert!(
        !Path::new(&dest).exists(),
        "a failed get made its destination"
    );
    let empty = env.dir("empty");
    let store = format!("--store=file://{}", empty.join("none").display());
    let (k, message) = json_error(&env, &[&store, "ls"]);
    assert_eq!(k, "no_store", "{message}");
}

/// The modification time of `path`.
fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Entries a get leaves unfinished (`.datastore-get-*`), anywhere under `dir`.
fn unfinished(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(items) = std::fs::read_dir(&d) else {
            continue;
        };
        for item in items.flatten() {
            if item
                .file_name()
                .to_string_lossy()
                .starts_with(".datastore-get-")
            {
                found.push(item.path());
            }
            if item.file_type().unwrap().is_dir() {
                stack.push(item.path());
            }
        }
    }
    found
}

/// A get into a directory that exists changes nothing that was there: the directory and
/// its subdirectories keep their modes and times, and one holding anything the version does
/// not have is refused without --merge, left as it was, and with --merge kept beside it.
#[test]
fn get_changes_nothing_it_did_not_create() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    std::fs::create_dir(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"a").unwrap();
    std::fs::write(src.join("sub/b.txt"), b"b").unwrap();
    let long_ago = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for d in [src.join("sub"), src.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::File::open(&d)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }
    env.push(&src, "ds");

    // An empty private directory, with a private subdirectory the version also has.
    let home = env.dir("home");
    std::fs::create_dir(home.join("sub")).unwrap();
    for d in [home.join("sub"), home.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    get(&env, "ds", &home);
    assert_eq!(mode(&home), 0o700, "the destination's mode was changed");
    assert_eq!(mode(&home.join("sub")), 0o700);
    assert_ne!(
        mtime(&home),
        long_ago,
        "the destination took the version's time"
    );
    assert_eq!(std::fs::read(home.join("sub/b.txt")).unwrap(), b"b");
    // Run again over the finished copy: nothing is written, nothing is touched.
    let before = mtime(&home);
    let again: serde_json::Value = serde_json::from_str(&env.ok([
        OsStr::new("get"),
        OsStr::new("ds"),
        home.as_os_str(),
        OsStr::new("--json"),
    ]))
    .unwrap();
    assert_eq!(
        (again["kept"].as_u64(), again["bytes"].as_u64()),
        (Some(2), Some(0)),
        "{again}"
    );
    assert_eq!(mtime(&home), before);

    // A directory holding the user's own file: refused, untouched; with --merge, beside it.
    let mixed = env.dir("mixed");
    std::fs::write(mixed.join("mine.txt"), b"mine").unwrap();
    let line = env.fails(
        [OsStr::new("get"), OsStr::new("ds"), mixed.as_os_str()],
        "add --merge",
    );
    assert!(
        line.contains(&mixed.join("mine.txt").display().to_string()),
        "{line}"
    );
    let names = || {
        let mut n: Vec<_> = std::fs::read_dir(&mixed)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(), ["mine.txt"], "a refused get wrote there");
    let merged: serde_json::Value = serde_json::from_str(&env.ok([
        OsStr::new("get"),
        OsStr::new("ds"),
        mixed.as_os_str(),
        OsStr::new("--merge"),
        OsStr::new("--json"),
    ]))
    .unwrap();
    assert_eq!(merged["others"], 1, "{merged}");
    assert_eq!(names(), ["a.txt", "mine.txt", "sub"]);
    assert_eq!(std::fs::read(mixed.join("mine.txt")).unwrap(), b"mine");
}

/// Files of 96 MiB in all, each of several chunks, pushed to S3, for gets that are stopped
/// half-way.
fn big_dataset(env: &Env) -> std::path::PathBuf {
    let src = env.dir("big");
    tree::random_files(&src, 31, 4, 24 << 20);
    env.push(&src, "big");
    src
}

/// How a running get is stopped.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Signal(i32),
    Kill,
}

/// Starts a get of `big` to `dest` through `proxy`, one chunk at a time, waits until it has
/// put a whole file in place somewhere under `watch` and is writing the next, holds the link
/// still so the get is stuck half-way, and stops it. Returns what it printed.
fn stop_a_get(
    env: &Env,
    proxy: &common::proxy::Proxy,
    dest: &Path,
    watch: &Path,
    stop: Stop,
) -> common::Output {
    use common::proxy::Faults;
    proxy.set(Faults {
        latency: Duration::from_millis(20),
        ..Default::default()
    });
    let child = env
        .command([
            OsStr::new("get"),
            OsStr::new("big"),
            dest.as_os_str(),
            OsStr::new("--jobs"),
            OsStr::new("2"),
        ])
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let whole_file = || {
        let mut stack = vec![watch.to_path_buf()];
        while let Some(d) = stack.pop() {
            for item in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let t = item.file_type().unwrap();
                if t.is_dir() {
                    stack.push(item.path());
                } else if t.is_file()
                    && !item
                        .file_name()
                        .to_string_lossy()
                        .starts_with(".datastore-get-")
                {
                    return true;
                }
            }
        }
        false
    };
    let start = Instant::now();
    while !whole_file() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no file was written"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    proxy.set(Faults {
        hang: true,
        ..Default::default()
    });
    // A moment for the fetches after that file to begin and stall.
    std::thread::sleep(Duration::from_millis(300));
    let sig = match stop {
        Stop::Signal(s) => s,
        Stop::Kill => libc::SIGKILL,
    };
    // SAFETY: the PID of the child this test started and has not yet waited for.
    unsafe { libc::kill(pid, sig) };
    let out = common::wait(child, Duration::from_secs(20)).expect("the get ends when stopped");
    proxy.set(Faults::default());
    out
}

/// A get stopped by SIGINT, SIGTERM or SIGHUP takes away everything it wrote, into a new
/// destination and into an existing one; one killed outright leaves its unfinished files,
/// which the next get finds and removes, keeping what was finished.
#[test]
fn an_interrupted_get_leaves_nothing_and_a_rerun_cleans_up() {
    let direct = Env::new(Kind::S3);
    let src = big_dataset(&direct);
    let proxy = common::proxy::Proxy::start(common::moto_port(), 31);
    let env = direct.via(proxy.port);
    let out_dir = env.dir("out");

    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // Into a new destination: neither it nor the directory it was built in remains.
        let fresh = out_dir.join("fresh");
        let out = stop_a_get(&env, &proxy, &fresh, &out_dir, Stop::Signal(sig));
        assert_eq!(out.status.code(), Some(128 + sig), "{out:?}");
        assert!(
            out.stderr
                .contains("interrupted the get; nothing it wrote is left"),
            "{}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
        assert!(left.is_empty(), "signal {sig} left {left:?}");
    }
    // Into an existing (empty) destination: it is empty again.
    let existing = env.dir("existing");
    let out = stop_a_get(
        &env,
        &proxy,
        &existing,
        &existing,
        Stop::Signal(libc::SIGINT),
    );
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let left: Vec<_> = std::fs::read_dir(&existing).unwrap().collect();
    assert!(left.is_empty(), "SIGINT left {left:?}");

    // Killed outright into a new destination: the directory it was building is left, and the
    // next get removes it and finishes.
    let fresh = out_dir.join("fresh");
    stop_a_get(&env, &proxy, &fresh, &out_dir, Stop::Kill);
    assert!(
        !unfinished(&out_dir).is_empty(),
        "a killed get left nothing to find"
    );
    let out = env.run([OsStr::new("get"), OsStr::new("big"), fresh.as_os_str()]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr
            .contains("left by an earlier get that was killed"),
        "{}",
        out.stderr
    );
    assert_eq!(unfinished(&out_dir), Vec::<std::path::PathBuf>::new());
    tree::assert_same(&src, &fresh);

    // Killed outright into an existing destination: its finished files are kept, the file it
    // was writing is removed.
    stop_a_get(&env, &proxy, &existing, &existing, Stop::Kill);
    assert!(
        !unfinished(&existing).is_empty(),
        "a killed get left no unfinished file"
    );
    let out = env.run([
        OsStr::new("get"),
        OsStr::new("big"),
        existing.as_os_str(),
        OsStr::new("--json"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(r["kept"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["removed_leftovers"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(unfinished(&existing), Vec::<std::path::PathBuf>::new());
    tree::assert_same(&src, &existing);
}
