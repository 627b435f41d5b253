//! The run's fixtures: processes it owns, the S3 servers (s3s-fs and moto), and the datasets as local files,
//! as a generated million-entry version and on tmpfs.

use datastore::catalog::{Catalog, NewVersion};
use datastore::format::manifest::{Run, Span, Timestamp};
use datastore::format::{ChunkRef, Entry, EntryKind, Location, Manifest, Sha256};
use datastore::store::{keys, Store, StoreOptions};
use rand::{Rng, RngCore, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process this run started; killed by its PID when dropped, so a failing run leaves none.
pub struct Owned(pub Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where the release binary is, after building it.
pub fn release_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ok = Command::new("cargo")
        .args(["build", "--release", "--quiet"])
        .current_dir(root)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cargo build --release failed");
    root.join("target/release/datastore")
}

/// An S3 server this run started on a free loopback port.
pub struct Server {
    _process: Owned,
    pub endpoint: String,
}

impl Server {
    /// The store at `url` ("s3://bucket/prefix") on this server. The endpoint is this
    /// process's environment, which every child inherits unless told otherwise: it is left
    /// pointing at the server opened last.
    pub fn store(&self, url: &str) -> Store {
        std::env::set_var("AWS_ENDPOINT_URL", &self.endpoint);
        Store::open(url, &StoreOptions::default()).expect("open a store on the bench server")
    }
}

/// Credentials and region for both servers (s3s-fs checks them, moto takes any), in this
/// process's environment for every child.
fn set_credentials() {
    for (k, v) in [
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "benchbench"),
        ("AWS_REGION", "us-east-1"),
    ] {
        std::env::set_var(k, v);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Waits for `process` to accept connections on `port`.
fn serving(process: Owned, port: u16, what: &str) -> Server {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    set_credentials();
    Server {
        _process: process,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

/// s3s-fs serving `dir`, each subdirectory a bucket: the fast server, for the large file.
pub fn start_s3s(dir: &Path) -> Server {
    let s3s = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/.tools/bin/s3s-fs");
    assert!(
        s3s.exists(),
        "s3s-fs missing: run bench/run, which installs it"
    );
    let port = free_port();
    let process = Owned(
        Command::new(&s3s)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "bench", "--secret-key", "benchbench"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs"),
    );
    serving(process, port, "s3s-fs")
}

/// moto_server with `buckets`: the faithful server, for the small files. s3fs looks up every
/// directory with a HEAD of its key, which s3s-fs answers with 500 (S3 says 404); on s3s-fs
/// s3fs stalls, on moto it is measured.
pub fn start_moto(buckets: &[&str]) -> Server {
    let moto = std::env::var_os("DATASTORE_TEST_MOTO")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"));
    assert!(
        moto.exists(),
        "{} missing: run bench/run, which installs it",
        moto.display()
    );
    let port = free_port();
    let process = Owned(
        Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server"),
    );
    let server = serving(process, port, "moto_server");
    for b in buckets {
        let status = http_put(port, &format!("/{b}")).expect("create a bucket on moto");
        assert!(status.contains(" 200 "), "create bucket {b}: {status}");
    }
    server
}

/// One bare HTTP PUT with no body; the status line.
fn http_put(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp.lines().next().unwrap_or_default().to_string())
}

/// Empties the page cache, so the next read comes from the disk or the daemon.
pub fn drop_caches() {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop caches (run as root)");
}

/// A file of random bytes.
pub fn random_file(path: &Path, size: usize, seed: u64) {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut data = vec![0u8; size];
    rng.fill_bytes(&mut data);
    std::fs::create_dir_all(path.parent().expect("a file in a directory")).unwrap();
    std::fs::write(path, data).unwrap();
}

/// `n` files of 50–150 KB (~100 KiB on average) in 100 directories; their paths relative
/// to `root`.
pub fn small_tree(root: &Path, n: usize, seed: u64) -> Vec<PathBuf> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let rel = PathBuf::from(format!("d{:03}/f{i:05}.jpg", i % 100));
            std::fs::create_dir_all(root.join(rel.parent().unwrap())).unwrap();
            let mut d = vec![0u8; rng.gen_range(50_000..150_000)];
            rng.fill_bytes(&mut d);
            std::fs::write(root.join(&rel), d).unwrap();
            rel
        })
        .collect()
}

/// The shape of the metadata workload: `dirs` directories of `per_dir` small files.
#[derive(Clone, Copy)]
pub struct Wide {
    pub dirs: u32,
    pub per_dir: u32,
}

impl Wide {
    pub fn entries(&self) -> u64 {
        1 + self.dirs as u64 * (1 + self.per_dir as u64)
    }

    fn dir_name(d: u32) -> String {
        format!("d{d:04}")
    }

    fn file_name(f: u32) -> String {
        format!("f{f:06}.jpg")
    }

    fn content(d: u32, f: u32) -> Vec<u8> {
        format!("file {d}/{f}\n").into_bytes()
    }

    /// The version as a manifest and its one pack, built directly: pushing a million files
    /// would time the local disk, not the mount.
    fn manifest(&self) -> (Manifest, Vec<u8>) {
        let mut m = Manifest::default();
        let name = |m: &mut Manifest, s: String| {
            let span = Span {
                start: m.strings.len() as u32,
                len: s.len() as u32,
            };
            m.strings.to_mut().extend_from_slice(s.as_bytes());
            span
        };
        let t = Timestamp {
            secs: 1_700_000_000,
            nanos: 0,
        };
        let dir = |parent, name, children| Entry {
            parent,
            name,
            mode: 0o755,
            mtime: t,
            kind: EntryKind::Dir { children },
        };
        m.entries.push(dir(
            0,
            Span::default(),
            Run {
                start: 1,
                len: self.dirs,
            },
        ));
        for d in 0..self.dirs {
            let span = name(&mut m, Self::dir_name(d));
            let children = Run {
                start: 1 + self.dirs + d * self.per_dir,
                len: self.per_dir,
            };
            m.entries.push(dir(0, span, children));
        }
        let mut pack = Vec::new();
        for d in 0..self.dirs {
            for f in 0..self.per_dir {
                let content = Self::content(d, f);
                let hash = Sha256::of(&content);
                let span = name(&mut m, Self::file_name(f));
                m.chunks.push(ChunkRef {
                    hash,
                    file_offset: 0,
                    len: content.len() as u32,
                    location: Location::Pack {
                        pack: 0,
                        offset: pack.len() as u64,
                    },
                });
                m.entries.push(Entry {
                    parent: 1 + d,
                    name: span,
                    mode: 0o644,
                    mtime: t,
                    kind: EntryKind::File {
                        size: content.len() as u64,
                        sha256: hash,
                        chunks: Run {
                            start: m.chunks.len() as u32 - 1,
                            len: 1,
                        },
                    },
                });
                pack.extend_from_slice(&content);
            }
        }
        m.packs.push(Sha256::of(&pack));
        m.validate().expect("a valid manifest");
        (m, pack)
    }

    /// Stores the version as dataset `name` in `store`.
    pub fn commit(&self, store: &Store, name: &str) {
        let (m, pack) = self.manifest();
        let bytes = m.encode();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            store
                .put(&keys::pack(&m.packs[0]), pack.into())
                .await
                .unwrap();
            let hash = Sha256::of(&bytes);
            store
                .put(&keys::manifest(&hash), bytes.clone().into())
                .await
                .unwrap();
            Catalog::new(store.clone())
                .commit(
                    name,
                    NewVersion {
                        manifest: hash,
                        manifest_size: bytes.len() as u64,
                        parent: None,
                        files: self.dirs as u64 * self.per_dir as u64,
                        bytes: 0,
                        message: "bench".into(),
                    },
                )
                .await
                .unwrap();
        });
    }

    /// The same tree as files under `root` (a tmpfs, for the baseline).
    pub fn write(&self, root: &Path) {
        for d in 0..self.dirs {
            let dir = root.join(Self::dir_name(d));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..self.per_dir {
                std::fs::write(dir.join(Self::file_name(f)), Self::content(d, f)).unwrap();
            }
        }
    }
}

/// A tmpfs this run mounted; unmounted when dropped.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(point: &Path) -> Tmpfs {
        std::fs::create_dir_all(point).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4G,nr_inodes=0", "bench-tmpfs"])
            .arg(point)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount a tmpfs at {} (run as root)", point.display());
        Tmpfs(point.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
