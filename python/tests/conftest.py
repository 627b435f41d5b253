"""Fixtures: the datastore binary under test, a local store and a moto S3 server on 127.0.0.1.

Each test gets its own store and cache directory through the environment the package's
commands inherit. Under CI=true a missing binary or moto_server fails the run; elsewhere too,
since these tests have nothing to prove without them.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _binary() -> str:
    given = os.environ.get("DATASTORE_BIN")
    if given:
        return given
    built = ROOT / "target" / "debug" / "datastore"
    if built.exists():
        return str(built)
    pytest.fail("no datastore binary: build it (cargo build) or set DATASTORE_BIN")


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    """A local store and a cache directory of the test's own; the binary under test."""
    monkeypatch.setenv("DATASTORE_BIN", _binary())
    monkeypatch.setenv("DATASTORE_STORE", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("DATASTORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "store").mkdir()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port: int, method: str, path: str) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path)
        return c.getresponse().status
    finally:
        c.close()


@pytest.fixture(scope="session")
def moto_port():
    """A moto S3 server for the session, stopped by its PID at the end."""
    server = os.environ.get("DATASTORE_TEST_MOTO") or shutil.which("moto_server")
    if not server and (ROOT / ".venv/bin/moto_server").exists():
        server = str(ROOT / ".venv/bin/moto_server")
    if not server:
        pytest.fail("moto_server not found ($DATASTORE_TEST_MOTO, PATH or .venv): run scripts/test")
    port = _free_port()
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _request(port, "GET", "/")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"moto_server did not answer on 127.0.0.1:{port}")
                time.sleep(0.1)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_store(moto_port, monkeypatch) -> str:
    """A fresh bucket on the moto server, as the store of the test."""
    bucket = f"py-{uuid.uuid4().hex[:12]}"
    assert _request(moto_port, "PUT", f"/{bucket}") == 200
    for k, v in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    url = f"s3://{bucket}/root"
    monkeypatch.setenv("DATASTORE_STORE", url)
    return url


@pytest.fixture
def tree(tmp_path) -> Path:
    """A small tree: files of several sizes, a subdirectory, a name with a space."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(12):
        (src / f"s{i:02}.bin").write_bytes(bytes([i]) * (100 + 37 * i))
    (src / "sub" / "large.bin").write_bytes(os.urandom(3 << 20))
    (src / "sub" / "with space.txt").write_text("hello")
    return src


@pytest.fixture
def mount_dir(tmp_path):
    """A mount point, unmounted (lazily, if still mounted) when the test ends."""
    point = tmp_path / "mnt"
    point.mkdir()
    yield point
    if os.path.ismount(point):
        subprocess.run(["umount", "-l", str(point)], check=False)
