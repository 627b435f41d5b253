//! The ways of reading the data under test, mounted and unmounted the same way: datastore (a
//! pushed version), and Mountpoint-S3, s3fs and rclone mount (the same files as plain objects).

use crate::setup::Owned;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Datastore,
    S3fs,
    Rclone,
    Mountpoint,
}

impl System {
    pub const ALL: [System; 4] = [
        System::Datastore,
        System::S3fs,
        System::Rclone,
        System::Mountpoint,
    ];

    pub fn name(self) -> &'static str {
        match self {
            System::Datastore => "datastore",
            System::S3fs => "s3fs",
            System::Rclone => "rclone",
            System::Mountpoint => "mountpoint-s3",
        }
    }
}

/// What every mount of the run needs to know.
pub struct Setup {
    pub bin: PathBuf,
    /// datastore's store URL.
    pub store: String,
    /// The S3 server's endpoint (every system is pointed at it explicitly), and the bucket of
    /// plain objects that s3fs and rclone mount.
    pub endpoint: String,
    pub bucket: String,
    pub work: PathBuf,
    /// The link's cap over all connections (bytes/s), where one is set: what a user tells a
    /// client of the node's NIC.
    pub nic: Option<u64>,
}

impl Setup {
    /// The same servers reached through a proxy listening on `port`.
    pub fn through(&self, port: u16) -> Setup {
        Setup {
            bin: self.bin.clone(),
            store: self.store.clone(),
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: self.bucket.clone(),
            work: self.work.clone(),
            nic: self.nic,
        }
    }
}

/// A live mount of one system; unmounted, and its daemon ended, when dropped.
pub struct Mount {
    pub system: System,
    pub point: PathBuf,
    bin: PathBuf,
    child: Option<Owned>,
}

impl Mount {
    /// Mounts `dataset` (datastore) or the plain bucket (the others) with its disk cache in
    /// `cache`, which survives the mount.
    pub fn new(s: &Setup, system: System, dataset: &str, cache: &Path) -> Result<Mount, String> {
        let point = s.work.join(format!("mnt-{}-{dataset}", system.name()));
        std::fs::create_dir_all(&point).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(cache).map_err(|e| e.to_string())?;
        if system == System::Datastore {
            return Mount::datastore(s, dataset, &point, cache, &[], &[]);
        }
        let mut m = Mount {
            system,
            point: point.clone(),
            bin: s.bin.clone(),
            child: None,
        };
        match system {
            System::Datastore => unreachable!("mounted above"),
            System::S3fs => {
                let passwd = s.work.join("s3fs.passwd");
                std::fs::write(&passwd, "bench:benchbench\n").map_err(|e| e.to_string())?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| e.to_string())?;
                // retries=1: s3s-fs answers a HEAD of a key that is a directory on its disk
                // with 500 (S3 says 404), which s3fs would otherwise retry for minutes (the
                // small files, in directories, are on moto for that reason).
                let opts = format!(
                    "ro,url={},use_path_request_style,passwd_file={},use_cache={},retries=1",
                    s.endpoint,
                    passwd.display(),
                    cache.display()
                );
                let ok = Command::new("s3fs")
                    .arg(&s.bucket)
                    .arg(&point)
                    .args(["-o", &opts])
                    .status()
                    .is_ok_and(|st| st.success());
                if !ok {
                    return Err("s3fs failed to mount".into());
                }
            }
            System::Rclone => {
                let child = Command::new("rclone")
                    .env_remove("AWS_CA_BUNDLE")
                    .env("RCLONE_CONFIG_S3_TYPE", "s3")
                    .env("RCLONE_CONFIG_S3_PROVIDER", "Other")
                    .env("RCLONE_CONFIG_S3_ENDPOINT", &s.endpoint)
                    .env("RCLONE_CONFIG_S3_ACCESS_KEY_ID", "bench")
                    .env("RCLONE_CONFIG_S3_SECRET_ACCESS_KEY", "benchbench")
                    .arg("mount")
                    .arg(format!("s3:{}", s.bucket))
                    .arg(&point)
                    .args(["--read-only", "--vfs-cache-mode", "full", "--cache-dir"])
                    .arg(cache)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| e.to_string())?;
                m.child = Some(Owned(child));
            }
            System::Mountpoint => m.child = Some(mountpoint(s, &point, cache)?),
        }
        wait_mounted_by(&point, m.child.as_mut())?;
        Ok(m)
    }

    /// Mounts `dataset` at `point` with datastore, with its disk cache in `cache`, more
    /// arguments and environment.
    pub fn datastore(
        s: &Setup,
        dataset: &str,
        point: &Path,
        cache: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Mount, String> {
        std::fs::create_dir_all(point).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(cache).map_err(|e| e.to_string())?;
        let out = Command::new(&s.bin)
            .env("AWS_ENDPOINT_URL", &s.endpoint)
            .envs(env.iter().copied())
            .args(["--store", &s.store, "mount", dataset])
            .arg(point)
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        wait_mounted(point)?;
        Ok(Mount {
            system: System::Datastore,
            point: point.to_path_buf(),
            bin: s.bin.clone(),
            child: None,
        })
    }

    /// The folder of a dataset whose plain objects sit under `prefix/` in the bucket: a
    /// datastore version's root is the dataset itself.
    pub fn dataset_root(&self, prefix: &str) -> PathBuf {
        match self.system {
            System::Datastore => self.point.clone(),
            _ => self.point.join(prefix),
        }
    }

    /// The process serving the mount: the one whose arguments name the mount point.
    pub fn pid(&self) -> Option<u32> {
        let want = self.point.to_string_lossy();
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            cmd.split(|&b| b == 0)
                .any(|a| String::from_utf8_lossy(a) == want)
                .then_some(pid)
        })
    }

    /// Starts a new peak-memory measurement.
    pub fn reset_peak(&self) {
        if let Some(pid) = self.pid() {
            let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
    }

    /// The daemon's peak resident memory since [`reset_peak`](Self::reset_peak), in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        self.status_kib("VmHWM:").map(|k| k * 1024)
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let serving = self.pid();
        let ok = match self.system {
            System::Datastore => Command::new(&self.bin)
                .arg("umount")
                .arg(&self.point)
                .output(),
            _ => Command::new("umount").arg(&self.point).output(),
        }
        .is_ok_and(|o| o.status.success());
        if !ok && is_mounted(&self.point) {
            let _ = Command::new("umount").arg("-l").arg(&self.point).status();
        }
        // rclone exits once unmounted; Owned ends it by PID otherwise.
        if let Some(mut c) = self.child.take() {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if c.0.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // A daemon finishes its cache writes after the unmount (datastore assembles the files
        // it has whole); the next workload starts once it is gone, so none of them runs
        // beside another's cache writes or reads pages that were written during it.
        if let Some(pid) = serving {
            let start = Instant::now();
            while alive(pid) && start.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Mountpoint-S3 with its defaults for a read-only mount, its disk cache in `cache` (as every
/// system here gets one) and, over a shaped link, its throughput target set to the link's cap
/// (as a user on such a node would: its default is the EC2 instance's NIC, 10 Gb/s elsewhere).
fn mountpoint(s: &Setup, point: &Path, cache: &Path) -> Result<Owned, String> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/.tools/bin/mount-s3");
    let mut c = Command::new(&bin);
    c.env_remove("AWS_CA_BUNDLE")
        .arg(&s.bucket)
        .arg(point)
        .args(["--read-only", "--foreground", "--force-path-style"])
        .args(["--region", "us-east-1", "--endpoint-url", &s.endpoint])
        .arg("--cache")
        .arg(cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(nic) = s.nic {
        c.arg("--maximum-throughput-gbps")
            .arg(mountpoint_gbps(nic).to_string());
    }
    let child = c.spawn().map_err(|e| format!("{}: {e}", bin.display()))?;
    Ok(Owned(child))
}

/// Mountpoint-S3's throughput target for a cap of `bytes_per_sec`.
fn mountpoint_gbps(bytes_per_sec: u64) -> u64 {
    (bytes_per_sec * 8).div_ceil(1_000_000_000).max(1)
}

/// Whether process `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    })
}

pub fn is_mounted(p: &Path) -> bool {
    let want = p.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

fn wait_mounted(point: &Path) -> Result<(), String> {
    wait_mounted_by(point, None)
}

/// Waits for `point` to be mounted by `child` (a client that mounts in the foreground), and
/// says so at once if it exits instead.
fn wait_mounted_by(point: &Path, mut child: Option<&mut Owned>) -> Result<(), String> {
    let start = Instant::now();
    while !is_mounted(point) {
        if let Some(c) = child.as_mut() {
            if let Ok(Some(status)) = c.0.try_wait() {
                return Err(format!("it exited ({status}) without mounting"));
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!("{} never mounted", point.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
