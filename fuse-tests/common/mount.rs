//! Mounting in tests: every mount a test makes is unmounted, and its daemon ended, when the
//! guard drops, whether the test passed or not.

use super::{Env, BIN};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `point` is a live datastore mount, by /proc/self/mountinfo.
pub fn is_mounted(point: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = point.to_string_lossy().replace(' ', "\\040");
    info.lines().any(|l| {
        let mut f = l.split(' ');
        f.nth(4) == Some(want.as_str()) && l.contains(" - fuse.datastore ")
    })
}

/// PIDs of mount daemons serving `point` (ours: started by this test, found by the unique
/// scratch path on their command line).
pub fn daemon_pids(point: &Path) -> Vec<i32> {
    let want = point.to_string_lossy().to_string();
    let mut pids = vec![];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "mount") && args.iter().any(|a| a == &want) {
            pids.push(pid);
        }
    }
    pids
}

/// Waits until `cond` holds, failing the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Unmounts `point` if it is mounted, then ends any daemon still serving it, by PID.
pub fn clean_up(point: &Path) {
    if is_mounted(point) {
        let _ = Command::new(BIN)
            .args(["umount", "--lazy"])
            .arg(point)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let start = Instant::now();
    while !daemon_pids(point).is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in daemon_pids(point) {
        // SAFETY: kill(2) of a daemon this test started for this unique mount point.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// A mount made by a test, cleaned up on drop.
pub struct Mounted {
    pub point: PathBuf,
    /// The daemon, when the test started it in the foreground itself.
    child: Option<Child>,
    log: PathBuf,
}

impl Mounted {
    /// Guards a mount made some other way (background `datastore mount`, mount(8)…).
    pub fn adopt(point: &Path) -> Mounted {
        Mounted {
            point: point.to_path_buf(),
            child: None,
            log: PathBuf::new(),
        }
    }

    /// The daemon's PID, when the test started it in the foreground.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// What the daemon logged, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        clean_up(&self.point);
        if let Some(mut c) = self.child.take() {
            let start = Instant::now();
            while c.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A mount serving Prometheus metrics, and one of their values.
pub struct Metered {
    pub mnt: Mounted,
    port: u16,
}

impl Metered {
    pub fn mount(env: &Env, options: &[&str]) -> Metered {
        let port = super::free_port();
        let addr = format!("127.0.0.1:{port}");
        let mnt = env.mount_with("ds", options, &["--metrics-addr", &addr]);
        Metered { mnt, port }
    }

    pub fn value(&self, name: &str) -> u64 {
        // Counters are published on the next scrape; give the exporter a moment.
        std::thread::sleep(Duration::from_millis(300));
        super::http_get(self.port, "/metrics")
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// FUSE READ requests the daemon has answered.
    pub fn reads(&self) -> u64 {
        self.value("datastore_reads_total")
    }

    pub fn passthrough_opens(&self) -> u64 {
        self.value("datastore_passthrough_opens_total")
    }

    pub fn fallbacks(&self) -> u64 {
        self.value("datastore_passthrough_fallbacks_total")
    }
}

impl Env {
    /// A fresh mount point in the scratch directory.
    pub fn mount_point(&self, name: &str) -> PathBuf {
        self.dir(name)
    }

    /// Mounts `target` at a fresh point with a foreground daemon of our own, once live.
    pub fn mount(&self, target: &str, options: &[&str]) -> Mounted {
        self.mount_with(target, options, &[])
    }

    /// Like [`mount`](Self::mount), with extra command-line arguments.
    pub fn mount_with(&self, target: &str, options: &[&str], extra: &[&str]) -> Mounted {
        self.mount_as(target, options, extra, None)
    }

    /// Like [`mount_with`](Self::mount_with), with the daemon running as user and group
    /// `uid` when given (it then mounts through fusermount3, as any user would).
    pub fn mount_as(
        &self,
        target: &str,
        options: &[&str],
        extra: &[&str],
        uid: Option<u32>,
    ) -> Mounted {
        let point = self.mount_point(&format!("mnt-{}", target.replace(['@', '/'], "-")));
        let log = self.scratch.path().join(format!(
            "{}.log",
            point.file_name().unwrap().to_string_lossy()
        ));
        let mut args: Vec<String> = vec![
            "mount".into(),
            target.into(),
            point.display().to_string(),
            "--foreground".into(),
        ];
        for o in options {
            args.push("-o".into());
            args.push(o.to_string());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut cmd = self.command(&args);
        if let Some(uid) = uid {
            use std::os::unix::process::CommandExt;
            std::os::unix::fs::chown(&point, Some(uid), Some(uid)).expect("chown mount point");
            cmd.uid(uid).gid(uid);
        }
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let mut child = cmd.spawn().expect("start datastore mount");
        let start = Instant::now();
        while !is_mounted(&point) {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "mount of {target} exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "mount of {target} not live after 60s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Mounted {
            point,
            child: Some(child),
            log,
        }
    }
}

/// Makes `datastore` reachable by mount(8), which runs helpers with a fixed PATH: a symlink
/// in /usr/local/bin to the binary under test, removed on drop if this guard created it.
pub struct HelperInstalled {
    created: bool,
}

pub const HELPER: &str = "/usr/local/bin/datastore";

impl HelperInstalled {
    pub fn new() -> HelperInstalled {
        let link = Path::new(HELPER);
        match std::fs::symlink_metadata(link) {
            Ok(m) if m.file_type().is_symlink() => {
                if std::fs::read_link(link).ok().as_deref() == Some(Path::new(BIN)) {
                    return HelperInstalled { created: false };
                }
                panic!("{HELPER} is a symlink to another datastore; remove it to run this test");
            }
            Ok(_) => panic!("{HELPER} is an installed datastore; remove it to run this test"),
            Err(_) => {
                std::os::unix::fs::symlink(BIN, link).expect("symlink the helper");
                HelperInstalled { created: true }
            }
        }
    }
}

impl Drop for HelperInstalled {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(HELPER);
        }
    }
}
