//! Test harness: runs the real `datastore` binary against a local directory store or a
//! moto S3 server on 127.0.0.1 that this harness starts, and tears everything down.
//!
//! The S3 server is started once per test binary from a thread that lives as long as the
//! process, with PR_SET_PDEATHSIG, so it dies with the tests even when they fail or abort.
//! A missing moto_server is a test failure, never a skip.

#![allow(dead_code)]

pub mod emulators;
pub mod mount;
pub mod nginx;
pub mod proxy;
pub mod report;
pub mod s3s;
pub mod tree;

use datastore::store::{Store, StoreOptions};
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_datastore");

/// The longest any one command of a test may run before the test fails.
const COMMAND_DEADLINE: Duration = Duration::from_secs(300);

/// Which store a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Local,
    S3,
    /// Azurite.
    Azure,
    /// fake-gcs-server.
    Gcs,
}

/// One store for one test: its URL, the environment that reaches it, and a scratch directory
/// (also used as HOME, so no user or system configuration leaks in).
pub struct Env {
    pub kind: Kind,
    pub url: String,
    pub scratch: TempDir,
    vars: Vec<(String, String)>,
    /// Variables the harness sets that this test's commands must not have.
    unset: Vec<String>,
}

/// What a finished command left behind.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Env {
    pub fn new(kind: Kind) -> Env {
        let scratch = scratch();
        let mut vars = vec![];
        let url = match kind {
            Kind::Local => scratch.path().join("store").display().to_string(),
            Kind::S3 => {
                let port = moto_port();
                let bucket = new_bucket(port);
                vars = s3_vars(port);
                format!("s3://{bucket}/root")
            }
            Kind::Azure => {
                let port = emulators::azurite_port();
                vars = emulators::azure_vars(port);
                format!("az://{}/{}", emulators::BUCKET, unique_name())
            }
            Kind::Gcs => {
                let port = emulators::gcs_port();
                vars = emulators::gcs_vars(port);
                format!("gs://{}/{}", emulators::BUCKET, unique_name())
            }
        };
        Env {
            kind,
            url,
            scratch,
            vars,
            unset: Vec::new(),
        }
    }

    /// Both backends, for tests that must hold on each.
    pub fn both() -> [Env; 2] {
        [Env::new(Kind::Local), Env::new(Kind::S3)]
    }

    /// Every backend: a local directory, S3 (moto), Azure (Azurite) and GCS (fake-gcs-server).
    pub fn every_backend() -> [Env; 4] {
        [Kind::Local, Kind::S3, Kind::Azure, Kind::Gcs].map(Env::new)
    }

    /// The same S3 store reached through another port of 127.0.0.1 (a fault-injecting proxy),
    /// with a scratch directory (and so a cache) of its own.
    pub fn via(&self, port: u16) -> Env {
        assert_eq!(
            self.kind,
            Kind::S3,
            "only an S3 store is reached over the network"
        );
        Env {
            kind: Kind::S3,
            url: self.url.clone(),
            scratch: scratch(),
            vars: s3_vars(port),
            unset: Vec::new(),
        }
    }

    /// Sets (or replaces) an environment variable of every command this test runs.
    pub fn set_var(&mut self, key: &str, value: &str) {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.into(), value.into()));
    }

    /// Leaves a variable the harness sets (`DATASTORE_CACHE_DIR`, say) out of every command
    /// this test runs, so the command's default applies.
    pub fn unset_var(&mut self, key: &str) {
        self.vars.retain(|(k, _)| k != key);
        self.unset.push(key.into());
    }

    /// This test's own disk cache, so tests never share cached content.
    pub fn cache_dir(&self) -> PathBuf {
        self.scratch.path().join("cache")
    }

    /// A fresh directory inside the scratch area.
    pub fn dir(&self, name: &str) -> PathBuf {
        let p = self.scratch.path().join(name);
        std::fs::create_dir_all(&p).expect("create test directory");
        p
    }

    /// The command line, with the store and a clean environment, not yet started.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.scratch.path())
            .env("XDG_CONFIG_HOME", self.scratch.path().join("config"))
            .env("XDG_DATA_HOME", self.scratch.path().join("data"))
            .env("RUST_BACKTRACE", "1")
            .env("DATASTORE_STORE", &self.url)
            .env("DATASTORE_CACHE_DIR", self.cache_dir())
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for k in &self.unset {
            c.env_remove(k);
        }
        c
    }

    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(args);
        let desc = format!("{c:?}");
        let child = c.spawn().expect("start datastore");
        wait(child, COMMAND_DEADLINE).unwrap_or_else(|e| panic!("{desc}: {e}"))
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().into()).collect();
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "[{:?}] datastore {:?} failed ({}):\n{}",
            self.kind,
            args,
            out.status,
            out.stderr
        );
        out.stdout
    }

    /// Runs a command that must fail cleanly: exit code 1, a one-line `datastore: …` error that
    /// contains `expect`, and no panic. Returns that line.
    pub fn fails<I, S>(&self, args: I, expect: &str) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().into()).collect();
        let out = self.run(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "[{:?}] datastore {:?} should fail with 1: {out:?}",
            self.kind,
            args
        );
        assert!(!out.stderr.contains("panicked"), "panic: {}", out.stderr);
        let errors: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("datastore: "))
            .collect();
        assert_eq!(errors.len(), 1, "one error line expected: {}", out.stderr);
        assert!(
            errors[0].contains(expect),
            "[{:?}] error of {:?} should mention {expect:?}: {}",
            self.kind,
            args,
            errors[0]
        );
        errors[0].to_string()
    }

    /// Pushes and returns the JSON report.
    pub fn push(&self, dir: &Path, name: &str) -> serde_json::Value {
        let out = self.ok([
            OsStr::new("push"),
            dir.as_os_str(),
            OsStr::new(name),
            OsStr::new("--json"),
        ]);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("push --json: {e}: {out}"))
    }

    /// How many versions `dataset` has (0 when it does not exist).
    pub fn versions(&self, dataset: &str) -> usize {
        let out = self.run(["log", dataset]);
        if !out.status.success() {
            assert!(
                out.stderr.contains("not found"),
                "log {dataset}: {}",
                out.stderr
            );
            return 0;
        }
        out.stdout.lines().count() - 1
    }

    /// A handle on the same store through the library, for inspecting and damaging objects.
    pub fn store(&self) -> Store {
        for (k, v) in &self.vars {
            // Every S3 test uses the same server and credentials, so this is idempotent.
            std::env::set_var(k, v);
        }
        // Tests write through this handle too (hostile manifests into a fresh store).
        let create = StoreOptions {
            create: true,
            ..Default::default()
        };
        Store::open(&self.url, &create).expect("open store")
    }

    /// Every object key under the given prefixes, with its size.
    pub fn objects(&self, prefixes: &[&str]) -> Vec<(String, u64)> {
        // A local store is made by the first push: before it, there is nothing to list (and
        // opening it is an error, as for any read).
        if self.kind == Kind::Local && !Path::new(&self.url).exists() {
            return Vec::new();
        }
        let store = self.store();
        block_on(async {
            let mut all = vec![];
            for p in prefixes {
                for o in store.list(p).await.expect("list store") {
                    all.push((o.key, o.size));
                }
            }
            all.sort();
            all
        })
    }

    /// Content objects: blobs and packs.
    pub fn content_keys(&self) -> Vec<String> {
        self.objects(&["blobs/", "packs/"])
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    pub fn put_object(&self, key: &str, data: Vec<u8>) {
        let store = self.store();
        block_on(store.put(key, data.into())).expect("put object");
    }

    pub fn get_object(&self, key: &str) -> Vec<u8> {
        let store = self.store();
        block_on(store.get(key)).expect("get object").to_vec()
    }
}

/// Drops the kernel's cached pages of a file, so the next read reaches the daemon.
pub fn drop_page_cache(path: &Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: a valid descriptor; advice only.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// Every entry file of the disk cache in `cache_dir`: chunk entries, then file entries.
pub fn cache_entries(cache_dir: &Path) -> Vec<PathBuf> {
    let mut out = chunk_entries(cache_dir);
    out.extend(entries_in(&cache_dir.join(datastore::cache::FILES)));
    out
}

/// The chunk entries (block checksums, then data) of the disk cache in `cache_dir`.
pub fn chunk_entries(cache_dir: &Path) -> Vec<PathBuf> {
    entries_in(&cache_dir.join(datastore::cache::ENTRIES))
}

/// The manifest images of the disk cache in `cache_dir`.
pub fn image_entries(cache_dir: &Path) -> Vec<PathBuf> {
    entries_in(&cache_dir.join(datastore::cache::MANIFESTS))
}

/// Whether a cache entry is a file entry (the file's bytes alone).
pub fn is_file_entry(path: &Path) -> bool {
    path.parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .is_some_and(|n| n == datastore::cache::FILES)
}

fn entries_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for fan in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for e in std::fs::read_dir(fan.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(e.path());
        }
    }
    out
}

/// The user tests read as when they need someone other than root.
pub const NOBODY: u32 = 65534;

/// Makes `c` run as [`NOBODY`], with no supplementary groups (when the test runs as root).
pub fn as_nobody(c: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    c.uid(NOBODY).gid(NOBODY)
}

/// `cat PATH` run as [`NOBODY`].
pub fn cat_as_nobody(path: &Path) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(path)
        .output()
        .expect("run setpriv")
}

/// A loopback port nothing listens on (bound, then released), for a server a test starts.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The whole response (status line, headers, body) to a plain HTTP GET on 127.0.0.1.
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect for an HTTP GET");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the HTTP response");
    out
}

fn scratch() -> TempDir {
    tempfile::Builder::new()
        .prefix("datastore-test-")
        .tempdir()
        .expect("create a scratch directory")
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Waits for a child, killing it (by its PID, which we started) if it outlives `deadline`.
pub fn wait(mut child: Child, deadline: Duration) -> Result<Output, String> {
    let start = Instant::now();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    // Drain pipes on threads so a chatty child never blocks on a full pipe.
    let out_t = std::thread::spawn(move || read_all(stdout.as_mut()));
    let err_t = std::thread::spawn(move || read_all(stderr.as_mut()));
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {deadline:?}; killed"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    })
}

/// Waits for a child whose output is not captured, killing it after `deadline`.
pub fn wait_child(child: &mut Child, deadline: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("still running after {deadline:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_all<R: Read>(r: Option<&mut R>) -> String {
    let mut v = vec![];
    if let Some(r) = r {
        let _ = r.read_to_end(&mut v);
    }
    String::from_utf8_lossy(&v).into_owned()
}

fn s3_vars(port: u16) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Where moto_server is: $DATASTORE_TEST_MOTO, the project's .venv, or PATH.
fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("DATASTORE_TEST_MOTO") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("moto_server");
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "moto_server not found (in .venv/bin, PATH or $DATASTORE_TEST_MOTO): \
         run ./scripts/test, which installs it"
    );
}

/// The port of this process's moto server, started on first use.
pub fn moto_port() -> u16 {
    static PORT: OnceLock<Result<u16, String>> = OnceLock::new();
    // Its log is only needed if it fails to start.
    PORT.get_or_init(|| {
        start_moto(&[]).map(|(port, _pid, log)| {
            let _ = std::fs::remove_file(log);
            port
        })
    })
    .clone()
    .expect("moto_server")
}

/// A moto server of one test's own, which the test may pause (SIGSTOP) to simulate an outage.
/// Killed, by its PID, when dropped.
pub struct Moto {
    pub port: u16,
    pub pid: i32,
    log: PathBuf,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// With extra environment for the server: `INITIAL_NO_AUTH_ACTION_COUNT=0` makes it check
    /// every request's credentials, as S3 does (by default moto takes any).
    pub fn start_with(env: &[(&str, &str)]) -> Moto {
        let (port, pid, log) = start_moto(env).expect("moto_server");
        Moto { port, pid, log }
    }

    /// The server's log lines that mention `needle`.
    pub fn log_lines(&self, needle: &str) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How many GET requests the server has answered for keys containing `needle`.
    pub fn gets(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            // Werkzeug colours some status lines, so the method is not always after the quote.
            .filter(|l| l.contains("GET /") && l.contains(needle))
            .count()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: a plain kill(2) of the server this test started.
        assert_eq!(unsafe { libc::kill(self.pid, sig) }, 0);
    }

    /// An environment whose S3 store is on this server.
    pub fn env(&self) -> Env {
        let scratch = scratch();
        let bucket = new_bucket(self.port);
        Env {
            kind: Kind::S3,
            url: format!("s3://{bucket}/root"),
            scratch,
            vars: s3_vars(self.port),
            unset: Vec::new(),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the server this test started; SIGCONT first in case it is paused.
        unsafe {
            libc::kill(self.pid, libc::SIGCONT);
            libc::kill(self.pid, libc::SIGKILL);
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Starts a moto server on a free loopback port; returns its port, PID and request log.
fn start_moto(env: &[(&str, &str)]) -> Result<(u16, i32, PathBuf), String> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let bin = moto_binary();
    let port = free_port();
    let log =
        std::env::temp_dir().join(format!("datastore-moto-{}-{port}.log", std::process::id()));
    let args = [
        "-H".to_string(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ];
    let pid = spawn_server(&bin, &args, &env, &log)?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if http(port, "GET", "/").is_ok() {
            return Ok((port, pid, log));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "moto_server did not answer on 127.0.0.1:{port} within 60s; see {}",
        log.display()
    ))
}

/// Starts a server that lives as long as this test process (PR_SET_PDEATHSIG, from a thread
/// that waits for it), its output in `log`; returns its PID.
pub fn spawn_server(
    bin: &Path,
    args: &[String],
    env: &[(String, String)],
    log: &Path,
) -> Result<i32, String> {
    let (tx, rx) = mpsc::channel();
    let (bin, args, env, log) = (bin.to_owned(), args.to_vec(), env.to_vec(), log.to_owned());
    std::thread::spawn(move || {
        let logf = match std::fs::File::create(&log) {
            Ok(f) => f,
            Err(e) => return tx.send(Err(e.to_string())).unwrap_or(()),
        };
        let mut c = Command::new(&bin);
        c.args(&args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup log"))
            .stderr(logf);
        // SAFETY: prctl is async-signal-safe; the server dies when this thread's process does.
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        match c.spawn() {
            Ok(mut child) => {
                tx.send(Ok(child.id() as i32)).unwrap_or(());
                // This thread must outlive the server (PDEATHSIG fires when it exits).
                let _ = child.wait();
            }
            Err(e) => tx
                .send(Err(format!("{}: {e}", bin.display())))
                .unwrap_or(()),
        }
    });
    rx.recv().map_err(|e| e.to_string())?
}

/// A name no other store of this test run has.
fn unique_name() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh bucket on the moto server.
fn new_bucket(port: u16) -> String {
    let name = unique_name();
    let status = http(port, "PUT", &format!("/{name}")).expect("create bucket");
    assert!(status.contains(" 200 "), "create bucket: {status}");
    name
}

/// One bare HTTP request; returns the status line.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<String> {
    http_with_body(port, method, path, "")
}

/// The status line of a plain HTTP request with a JSON body (or none) to 127.0.0.1.
fn http_with_body(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let kind = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{kind}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp.lines().next().unwrap_or_default().to_string())
}
