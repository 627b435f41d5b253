//! What the benchmarks share: the release binary, an s3s-fs server on 127.0.0.1, dropping the
//! page cache, and timing a sequential read.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process the benchmark started; killed by its PID when dropped.
pub struct Owned(pub Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds and returns the release binary.
pub fn release_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(Command::new("cargo")
        .args(["build", "--release", "--quiet"])
        .status()
        .unwrap()
        .success());
    root.join("target/release/datastore")
}

/// Starts s3s-fs serving `dir` (each subdirectory a bucket) on a free loopback port and points
/// the AWS environment of this process (and its children) at it. Returns the server and its
/// endpoint URL.
pub fn start_s3s(dir: &Path) -> (Owned, String) {
    let s3s = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/.tools/bin/s3s-fs");
    assert!(
        s3s.exists(),
        "s3s-fs missing: run bench/run, which installs it"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Owned(
        Command::new(&s3s)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "bench", "--secret-key", "benchbench"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let endpoint = format!("http://127.0.0.1:{port}");
    for (k, v) in [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "benchbench"),
        ("AWS_REGION", "us-east-1"),
    ] {
        std::env::set_var(k, v);
    }
    (server, endpoint)
}

pub fn drop_caches() {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop caches (run as root)");
}

/// Reads a file front to back in 1 MiB reads: the bytes read and MB/s.
pub fn seq_rate(path: &Path) -> (u64, f64) {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    (total, total as f64 / 1e6 / start.elapsed().as_secs_f64())
}
