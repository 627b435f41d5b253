//! s3s-fs (crates.io; the fast S3 server bench/ reads from) on 127.0.0.1, for the long soak:
//! moto answers a few hundred requests a second, so a soak against it measures moto; against
//! s3s-fs the daemon is what is busy. `reliability/run --long` installs it in bench/.tools.

use super::{free_port, scratch, spawn_server, unique_name, Env, Kind};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// An s3s-fs of one test's own, serving a scratch directory (each subdirectory a bucket);
/// killed by its PID when dropped.
pub struct S3sFs {
    pub port: u16,
    pid: i32,
    data: TempDir,
    log: PathBuf,
}

impl S3sFs {
    pub fn start() -> S3sFs {
        let bin = std::env::var_os("DATASTORE_TEST_S3S_FS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/.tools/bin/s3s-fs")
            });
        assert!(
            bin.exists(),
            "s3s-fs not found at {} (or $DATASTORE_TEST_S3S_FS): run reliability/run --long, which installs it",
            bin.display()
        );
        let data = scratch();
        let port = free_port();
        let log = data.path().with_extension("log");
        let args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            // What the harness's S3 environment says (moto takes any).
            "--access-key",
            "testing",
            "--secret-key",
            "testing",
        ]
        .map(String::from)
        .into_iter()
        .chain([data.path().display().to_string()])
        .collect();
        let pid = spawn_server(&bin, &args, &[], &log).expect("start s3s-fs");
        super::emulators::wait_ready("s3s-fs", &log, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .expect("s3s-fs");
        S3sFs {
            port,
            pid,
            data,
            log,
        }
    }

    /// An environment whose S3 store is a fresh bucket on this server.
    pub fn env(&self) -> Env {
        let bucket = unique_name();
        std::fs::create_dir(self.data.path().join(&bucket)).expect("make a bucket");
        Env {
            kind: Kind::S3,
            url: format!("s3://{bucket}/root"),
            scratch: scratch(),
            vars: super::s3_vars(self.port),
            unset: Vec::new(),
        }
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the server this test started, by its PID.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = std::fs::remove_file(&self.log);
    }
}
