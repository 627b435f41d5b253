//! Hostile input: manifests that break the tree's rules, symlinks that lead out of the tree,
//! and credentials that must never be shown.

use crate::common::mount::is_mounted;
use crate::common::proxy::Proxy;
use crate::common::{block_on, report, Env, Kind, Moto};
use datastore::catalog::{Catalog, NewVersion};
use datastore::format::manifest::{Run, Span, Timestamp};
use datastore::format::{Entry, EntryKind, Manifest, Sha256};
use std::ffi::OsStr;

/// Children of the root: a name, and a symlink target (a directory where there is none).
type Children = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// One child of the root: a directory called `name`, or a symlink to `target`.
fn one_child(name: &[u8], target: Option<&[u8]>) -> Children {
    vec![(name.to_vec(), target.map(|t| t.to_vec()))]
}

/// A manifest whose root holds `children` (directories, or symlinks where a target is given)
/// in the order given, committed as the next version of `dataset` by hand, bypassing push.
fn commit_raw(env: &Env, dataset: &str, children: &Children) {
    let mut m = Manifest::default();
    let mut span = |s: &[u8]| {
        let sp = Span {
            start: m.strings.len() as u32,
            len: s.len() as u32,
        };
        m.strings.to_mut().extend_from_slice(s);
        sp
    };
    let mut entries = vec![Entry {
        parent: 0,
        name: Span::default(),
        mode: 0o755,
        mtime: Timestamp::default(),
        kind: EntryKind::Dir {
            children: Run {
                start: 1,
                len: children.len() as u32,
            },
        },
    }];
    for (name, target) in children {
        let name = span(name);
        let kind = match target {
            Some(t) => EntryKind::Symlink { target: span(t) },
            None => EntryKind::Dir {
                children: Run::default(),
            },
        };
        entries.push(Entry {
            parent: 0,
            name,
            mode: 0o755,
            mtime: Timestamp::default(),
            kind,
        });
    }
    m.entries = entries.into();
    commit_manifest(env, dataset, &m);
}

/// Commits `m` as the next version of `dataset` by hand, bypassing push and its checks.
fn commit_manifest(env: &Env, dataset: &str, m: &Manifest) {
    let bytes = m.encode();
    let hash = Sha256::of(&bytes);
    env.put_object(&datastore::store::keys::manifest(&hash), bytes.clone());
    block_on(Catalog::new(env.store()).commit(
        dataset,
        NewVersion {
            manifest: hash,
            manifest_size: bytes.len() as u64,
            parent: None,
            files: 0,
            bytes: 0,
            message: String::new(),
        },
    ))
    .unwrap();
}

/// Manifests that pass their hash check but break the tree's rules are refused at mount with
/// the version and the fault named; nothing is mounted.
#[test]
fn hostile_manifests_are_refused_at_mount() {
    let env = Env::new(Kind::Local);
    let long_name = vec![b'n'; 256];
    let long_target = vec![b'a'; 4097];
    let cases: Vec<(&str, Children)> = vec![
        ("'..'", one_child(b"..", None)),
        ("'.'", one_child(b".", None)),
        ("empty name", one_child(b"", None)),
        ("'/' in a name", one_child(b"a/b", None)),
        ("NUL in a name", one_child(b"nul\0name", None)),
        ("256-byte name", one_child(&long_name, None)),
        (
            "duplicate names",
            vec![(b"same".to_vec(), None), (b"same".to_vec(), None)],
        ),
        (
            "unsorted names",
            vec![(b"b".to_vec(), None), (b"a".to_vec(), None)],
        ),
        (
            "4097-byte symlink target",
            one_child(b"l", Some(&long_target)),
        ),
        ("NUL in a symlink target", one_child(b"l", Some(b"a\0b"))),
        ("absolute symlink", one_child(b"l", Some(b"/etc/passwd"))),
        (
            "symlink climbing out",
            one_child(b"l", Some(b"../../etc/passwd")),
        ),
        (
            "symlink climbing out through another",
            // `a/..` reads as the root, but `a` is the root, so `..` climbs out of it.
            vec![
                (b"a".to_vec(), Some(b".".to_vec())),
                (b"l".to_vec(), Some(b"a/..".to_vec())),
            ],
        ),
    ];
    for (n, (what, children)) in cases.iter().enumerate() {
        let name = format!("evil{n}");
        commit_raw(&env, &name, children);
        let point = env.mount_point(&name);
        // Unmounts it should the mount wrongly succeed.
        let _guard = crate::common::mount::Mounted::adopt(&point);
        let line = env.fails(
            [OsStr::new("mount"), OsStr::new(&name), point.as_os_str()],
            "is corrupt",
        );
        assert!(line.contains(&format!("{name}@v1")), "{what}: {line}");
        assert!(!is_mounted(&point), "{what}: mounted");
    }
    report::row(
        "hostile manifest",
        &cases.iter().map(|c| c.0).collect::<Vec<_>>().join(", "),
        cases.len() as u64,
        "each refused at mount with one error naming dataset@version and the fault; nothing mounted",
    );
}

/// A chain of `depth` directories below the root, each named `name` but the last, named
/// `last`: the deepest tree for its size.
fn chain(depth: usize, name: &[u8], last: &[u8]) -> Manifest {
    let mut m = Manifest::default();
    let strings = m.strings.to_mut();
    strings.extend_from_slice(name);
    strings.extend_from_slice(last);
    let span = |i: usize| match i == depth {
        false => Span {
            start: 0,
            len: name.len() as u32,
        },
        true => Span {
            start: name.len() as u32,
            len: last.len() as u32,
        },
    };
    let entries: Vec<Entry> = (0..=depth)
        .map(|i| Entry {
            parent: i.saturating_sub(1) as u32,
            name: if i == 0 { Span::default() } else { span(i) },
            mode: 0o755,
            mtime: Timestamp::default(),
            kind: EntryKind::Dir {
                children: Run {
                    start: (i + 1) as u32,
                    len: u32::from(i < depth),
                },
            },
        })
        .collect();
    m.entries = entries.into();
    m
}

/// Runs a command of `env` with its output dropped; returns whether it succeeded and its peak
/// resident memory in MiB. A small Python forks it and reads the peak with wait4: the peak the
/// kernel keeps for a process includes the memory of the one it was forked from, and this
/// test process may be large.
fn peak_mib(env: &Env, args: &[&str]) -> (bool, u64) {
    let script = "import os, sys\n\
        pid = os.fork()\n\
        if pid == 0:\n\
        \x20   fd = os.open(os.devnull, os.O_WRONLY)\n\
        \x20   os.dup2(fd, 1); os.dup2(fd, 2)\n\
        \x20   os.execv(sys.argv[1], sys.argv[1:])\n\
        _, status, usage = os.wait4(pid, 0)\n\
        print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)\n";
    let c = env.command(args);
    let program = c.get_program().to_owned();
    let mut py = std::process::Command::new("python3");
    py.arg("-c").arg(script).arg(program).args(c.get_args());
    py.env_clear();
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            py.env(k, v);
        }
    }
    let out = py.output().expect("python3");
    let said = String::from_utf8_lossy(&out.stdout);
    let mut words = said.split_whitespace().map(|w| w.parse::<u64>().ok());
    match (words.next().flatten(), words.next().flatten()) {
        (Some(code), Some(kib)) => (code == 0, kib / 1024),
        _ => panic!("measuring {args:?}: {out:?}"),
    }
}

/// Trees may be 1,024 levels deep: one at the limit pushes, mounts, gets, lists and diffs; one
/// level more is refused at push (nothing stored) and, made by hand, at mount and by every
/// reader; walks of the deepest tree with the longest names (paths of a quarter of a megabyte,
/// whose sum would be 134 MB) keep their memory small.
#[test]
fn trees_deeper_than_the_limit_are_refused_and_walks_of_the_deepest_stay_small() {
    use datastore::format::manifest::MAX_DEPTH;
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    let mut deep = src.clone();
    for _ in 0..MAX_DEPTH - 1 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("f"), b"at the limit").unwrap();
    env.push(&src, "deep");
    let bottom = ["d"; MAX_DEPTH - 1].join("/") + "/f";
    let mnt = env.mount("deep", &[]);
    assert_eq!(
        std::fs::read(mnt.point.join(&bottom)).unwrap(),
        b"at the limit"
    );
    drop(mnt);
    let dest = env.dir("dest").join("got");
    env.ok([OsStr::new("get"), OsStr::new("deep"), dest.as_os_str()]);
    assert_eq!(std::fs::read(dest.join(&bottom)).unwrap(), b"at the limit");
    assert_eq!(env.ok(["ls", "-R", "deep@1"]).lines().count(), MAX_DEPTH);
    assert!(env.ok(["du", "deep@1"]).contains("1 file"));
    std::fs::write(deep.join("f"), b"changed").unwrap();
    env.push(&src, "deep");
    let out = env.run(["diff", "deep@1", "deep@2"]);
    assert_eq!(out.stdout, format!("M\t{bottom}\n"), "{out:?}");

    // One level more: refused at push, in one line, with nothing stored.
    std::fs::create_dir(deep.join("one-more")).unwrap();
    std::fs::write(deep.join("one-more/f"), b"x").unwrap();
    let line = env.fails(
        [OsStr::new("push"), src.as_os_str(), OsStr::new("deep")],
        "holds a path deeper than 1024 levels",
    );
    assert!(line.len() < 400, "{line}");
    assert_eq!(env.versions("deep"), 2);

    // Made by hand: refused by a mount and by every reader.
    commit_manifest(&env, "hand", &chain(MAX_DEPTH + 1, b"d", b"d"));
    let point = env.mount_point("hand");
    let _guard = crate::common::mount::Mounted::adopt(&point);
    let line = env.fails(
        [OsStr::new("mount"), OsStr::new("hand"), point.as_os_str()],
        "is corrupt",
    );
    assert!(line.contains("deeper than 1024 levels"), "{line}");
    env.fails(["ls", "-R", "hand@1"], "deeper than 1024 levels");

    // The deepest tree with the longest names: every walk in a few MiB.
    let long = vec![b'n'; 255];
    commit_manifest(&env, "long", &chain(MAX_DEPTH, &long, &long));
    commit_manifest(&env, "long", &chain(MAX_DEPTH, &long, b"last"));
    let mut peaks = Vec::new();
    for args in [
        &["ls", "-R", "long@1"][..],
        &["ls", "-lR", "long@1"],
        &["du", "long@1"],
        &["diff", "long@1", "long@2"],
    ] {
        let (ok, mib) = peak_mib(&env, args);
        assert!(ok, "{args:?} failed");
        assert!(mib < 64, "{args:?} peaked at {mib} MiB");
        peaks.push(mib);
    }
    report::row(
        "depth",
        "a tree 1,024 levels deep pushed, mounted, got, listed, diffed; 1,025 levels at push and made by hand; walks of 1,024 levels of 255-byte names",
        7,
        &format!("the limit works, past it refused in one line; ls -R, ls -lR, du, diff peaked at {peaks:?} MiB"),
    );
}

/// Symlinks that lead outside the pushed tree are refused at push, before anything is
/// uploaded; links inside it, loops included, are pushed and behave as on a local disk.
#[test]
fn symlinks_out_of_the_tree_are_refused_at_push() {
    let env = Env::new(Kind::Local);
    let outside: [(&str, &str); 4] = [
        ("abs", "/etc/passwd"),
        ("up", "../secret"),
        ("d/up2", "../../secret"),
        ("d/via", "hop/../.."),
    ];
    for (i, (link, target)) in outside.iter().enumerate() {
        let src = env.dir(&format!("src{i}"));
        std::fs::create_dir_all(src.join("d")).unwrap();
        std::fs::write(src.join("d/file"), b"data").unwrap();
        std::os::unix::fs::symlink("..", src.join("d/hop")).unwrap();
        std::os::unix::fs::symlink(target, src.join(link)).unwrap();
        let line = env.fails(
            [OsStr::new("push"), src.as_os_str(), OsStr::new("ds")],
            "leads outside",
        );
        assert!(line.contains(link) && line.contains(target), "{line}");
        assert!(env.content_keys().is_empty(), "{link}: content uploaded");
    }
    env.fails(["log", "ds"], "not found");

    // Inside: a loop, a link to a directory that links back up, a dangling link.
    let src = env.dir("inside");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/file"), b"data").unwrap();
    std::os::unix::fs::symlink("b", src.join("a")).unwrap();
    std::os::unix::fs::symlink("a", src.join("b")).unwrap();
    std::os::unix::fs::symlink("..", src.join("d/up")).unwrap();
    std::os::unix::fs::symlink("missing/../..", src.join("dangling")).unwrap();
    env.push(&src, "ds");
    let mnt = env.mount("ds", &[]);
    let e = std::fs::read(mnt.point.join("a")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
    assert_eq!(
        std::fs::read(mnt.point.join("d/up/d/up/d/file")).unwrap(),
        b"data"
    );
    let e = std::fs::read(mnt.point.join("dangling")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
    report::row(
        "symlinks out of the tree",
        "absolute, `..` past the root, `..` past the root through another link; loops and dangling links inside",
        outside.len() as u64 + 3,
        "outside: push refused naming the link and target, nothing uploaded; inside: pushed, ELOOP / ENOENT / followed within the mount",
    );
}

const KEY_ID: &str = "AKIADATASTOREFAKEKEY";
const SECRET: &str = "dsFakeSecret+NeverShown/0123456789abcdef";

/// Recognisable fake credentials never show in logs (at debug level), errors, the daemon's
/// log or its metrics, whether the store works or not.
#[test]
fn credentials_never_show() {
    let moto = Moto::start();
    let direct = moto.env();
    let proxy = Proxy::start(moto.port, 9);
    let mut env = direct.via(proxy.port);
    env.set_var("AWS_ACCESS_KEY_ID", KEY_ID);
    env.set_var("AWS_SECRET_ACCESS_KEY", SECRET);
    env.set_var("RUST_LOG", "trace");
    let src = env.dir("src");
    std::fs::write(src.join("f"), vec![7u8; 300_000]).unwrap();
    // Big enough to be a blob of its own, so reading `f` does not fetch it along.
    std::fs::create_dir(src.join("other")).unwrap();
    std::fs::write(src.join("other/g"), vec![8u8; 3 << 20]).unwrap();
    let mut seen = String::new();
    let mut run = |args: &[&str]| {
        let out = env.run(args);
        seen.push_str(&out.stdout);
        seen.push_str(&out.stderr);
        out
    };
    assert!(run(&["push", src.to_str().unwrap(), "ds"]).status.success());
    run(&["ls", "ds"]);
    run(&["verify", "ds"]);
    proxy.down();
    assert!(
        !run(&["push", src.to_str().unwrap(), "ds2", "--timeout", "2"])
            .status
            .success()
    );
    assert!(!run(&["ls", "ds", "--timeout", "2"]).status.success());
    proxy.up();
    let port = crate::common::free_port();
    let addr = format!("127.0.0.1:{port}");
    {
        let mnt = env.mount_with("ds", &["timeout=2"], &["--metrics-addr", &addr]);
        assert_eq!(std::fs::read(mnt.point.join("f")).unwrap().len(), 300_000);
        proxy.down();
        assert!(std::fs::read(mnt.point.join("other/g")).is_err());
        proxy.up();
        seen.push_str(&crate::common::http_get(port, "/metrics"));
        seen.push_str(&mnt.log());
    }
    assert!(seen.contains("datastore_"), "no metrics scraped");
    assert!(
        seen.len() > 10_000,
        "too little output to mean anything: {}",
        seen.len()
    );
    for secret in [KEY_ID, SECRET] {
        assert!(
            !seen.contains(secret),
            "{secret} shown:\n{}",
            context(&seen, secret)
        );
    }
    report::row(
        "credentials in output",
        "fake key id and secret; push, ls, verify, mount, reads, metrics scrape, with the store up and down; RUST_LOG=trace",
        7,
        &format!("{} KiB of output and metrics searched; neither the key id nor the secret appears", seen.len() >> 10),
    );
}

fn context(hay: &str, needle: &str) -> String {
    hay.lines()
        .filter(|l| l.contains(needle))
        .take(5)
        .collect::<Vec<_>>()
        .join("\n")
}
