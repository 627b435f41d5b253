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

/// The value of `key=` in a unit file, with `%i` and the unit's environment expanded.
fn exec_line(unit_text: &str, key: &str, instance: &str, env: &[(&str, &str)]) -> Vec<String> {
    let line = unit_text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= line"));
    let line = line.trim_start_matches('-');
    line.split_whitespace()
        .map(|w| {
            let mut w = w.replace("%i", instance);
            for (k, v) in env {
                w = w.replace(&format!("${{{k}}}"), v);
            }
            w
        })
        .collect()
}

#[test]
fn units_verify_and_the_template_mounts_with_readiness() {
    let _helper = HelperInstalled::new();

    // systemd-analyze verify, on the template (as an instance) and on the example mount.
    let dir = tempfile::tempdir().unwrap();
    let instance = dir.path().join("datastore@imagenet.service");
    std::fs::copy(unit("datastore@.service"), &instance).unwrap();
    let mount_unit = dir.path().join("datastores-imagenet.mount");
    std::fs::copy(unit("datastores-imagenet.mount"), &mount_unit).unwrap();
    for u in [&instance, &mount_unit] {
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(u)
            .current_dir(dir.path())
            .output()
            .expect("systemd-analyze (Debian package systemd)");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}: {}",
            u.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The template's ExecStart, with a notification socket like systemd's.
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    std::fs::write(src.join("f"), b"served").unwrap();
    let name = format!("unit-test-{}", std::process::id());
    env.push(&src, &name);
    let point = Path::new("/datastores").join(&name);
    let _guard = Mounted::adopt(&point);
    let text = std::fs::read_to_string(unit("datastore@.service")).unwrap();
    let options = format!("store={},cache_dir={}", env.url, env.cache_dir().display());
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
