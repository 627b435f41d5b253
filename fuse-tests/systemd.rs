//! The systemd units: they pass `systemd-analyze verify`, and the template's own ExecStart
//! and ExecStop lines, run as systemd would run them, mount, report readiness only once the
//! mount is live, and unmount.

mod common;

use common::mount::{daemon_pids, is_mounted, wait_for, HelperInstalled, Mounted};
use common::{Env, Kind};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn unit(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name)
}

/// The value of `key=` in a unit file, split into words as systemd does (double quotes
/// group), with `%i` and the unit's `${VARIABLES}` expanded, each into one word.
fn exec_line(unit_text: &str, key: &str, instance: &str, env: &[(&str, &str)]) -> Vec<String> {
    let line = unit_text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= line"));
    let line = line.trim_start_matches('-');
    let mut words = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let (word, after) = match rest.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').expect("a closing quote"),
            None => rest.split_once(char::is_whitespace).unwrap_or((rest, "")),
        };
        let mut w = word.replace("%i", instance);
        for (k, v) in env {
            w = w.replace(&format!("${{{k}}}"), v);
        }
        words.push(w);
        rest = after.trim_start();
    }
    words
}

/// `systemd-analyze verify` on unit files, each copied as `name` (an instance of a template).
fn verify_units(units: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    for (file, name) in units {
        std::fs::copy(unit(file), dir.path().join(name)).unwrap();
    }
    for (_, name) in units {
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.path().join(name))
            .current_dir(dir.path())
            .output()
            .expect("systemd-analyze (Debian package systemd)");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn units_verify_and_the_template_mounts_with_readiness_and_follows() {
    let _helper = HelperInstalled::new();

    // systemd-analyze verify, on the template (as an instance) and on the example mount.
    verify_units(&[
        ("datastore@.service", "datastore@imagenet.service"),
        ("datastores-imagenet.mount", "datastores-imagenet.mount"),
    ]);

    // The template's ExecStart, with a notification socket like systemd's.
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    std::fs::write(src.join("f"), b"served").unwrap();
    let name = format!("unit-test-{}", std::process::id());
    env.push(&src, &name);
    let point = Path::new("/datastores").join(&name);
    let _guard = Mounted::adopt(&point);
    let text = std::fs::read_to_string(unit("datastore@.service")).unwrap();
    let options = format!(
        "store={},cache_dir={},follow=1s",
        env.url,
        env.cache_dir().display()
    );
    let vars = [("VERSION", "latest"), ("OPTIONS", options.as_str())];
    let start = exec_line(&text, "ExecStart", &name, &vars);
    let stop = exec_line(&text, "ExecStop", &name, &vars);

    let sock_path = env.scratch.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut daemon = env.command(&start[1..]);
    daemon
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = daemon.spawn().unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("READY=1 from the daemon");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    // Readiness is told only once the mount is live.
    assert!(is_mounted(&point), "READY before the mount was live");
    assert!(msg.contains("READY=1"), "{msg}");
    assert_eq!(std::fs::read(point.join("f")).unwrap(), b"served");
    // follow= from the unit's OPTIONS: a push shows on the mount by itself.
    std::fs::write(src.join("g"), b"pushed later").unwrap();
    env.push(&src, &name);
    wait_for(
        "the mount to follow the push",
        Duration::from_secs(20),
        || point.join("g").exists(),
    );
    assert_eq!(std::fs::read(point.join("g")).unwrap(), b"pushed later");

    let out = env.run(&stop[1..]);
    assert!(out.status.success(), "{}", out.stderr);
    wait_for("the daemon to exit", Duration::from_secs(10), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(child.wait().unwrap().success());
    assert!(!is_mounted(&point));
    assert!(daemon_pids(&point).is_empty());
    let _ = std::fs::remove_dir(&point);
}

/// The push timer's units verify, and its service's ExecStart, run as systemd runs it on each
/// tick: a run after a change makes one version, a run without one makes none, and a run
/// before INTERVAL has passed does nothing at all; a failure is the exit code and one line.
#[test]
fn the_push_timer_pushes_changes_once_per_interval() {
    verify_units(&[
        ("datastore-push@.service", "datastore-push@imagenet.service"),
        ("datastore-push@.timer", "datastore-push@imagenet.timer"),
    ]);
    let text = std::fs::read_to_string(unit("datastore-push@.service")).unwrap();
    assert!(
        text.contains("Type=oneshot"),
        "a failed push must fail the unit"
    );
    let env = Env::new(Kind::Local);
    let src = env.dir("src dir");
    std::fs::write(src.join("a"), b"first").unwrap();
    let state = env.scratch.path().join("state");
    let tick = |interval: &str| {
        let vars = [
            ("SOURCE", src.to_str().unwrap()),
            ("DATASET", "timed"),
            ("INTERVAL", interval),
        ];
        let start = exec_line(&text, "ExecStart", "timed", &vars);
        let mut c = env.command(&start[1..]);
        c.env("DATASTORE_STATE_DIR", &state);
        common::wait(c.spawn().unwrap(), Duration::from_secs(60)).unwrap()
    };
    let out = tick("0s");
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(env.versions("timed"), 1);
    std::fs::write(src.join("a"), b"second").unwrap();
    assert!(tick("0s").status.success());
    assert_eq!(env.versions("timed"), 2, "a change makes a version");
    let out = tick("0s");
    assert!(
        out.status.success() && out.stdout.contains("unchanged"),
        "{out:?}"
    );
    assert_eq!(env.versions("timed"), 2, "no change, no version");
    std::fs::write(src.join("a"), b"third").unwrap();
    let out = tick("1h");
    assert!(out.stdout.contains("nothing to do"), "{out:?}");
    assert_eq!(env.versions("timed"), 2, "not due yet");

    std::fs::remove_dir_all(&src).unwrap();
    let out = tick("0s");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
}
