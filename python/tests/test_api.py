"""The package against the real binary, a real FUSE mount, the local store and moto S3."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import random
import subprocess
import uuid
from pathlib import Path

import pytest

import datastore
from datastore import _cli


def source_files(src: Path) -> dict:
    return {
        p.relative_to(src).as_posix(): p.read_bytes() for p in sorted(src.rglob("*")) if p.is_file()
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_push_lists_files_and_diffs_versions(tree):
    v1 = datastore.Dataset.push(tree, "ds", message="first")
    assert (v1.name, v1.version, v1.label, v1.parent) == ("ds", 1, "ds@v1", None)
    assert v1.message == "first"
    want = source_files(tree)
    assert {f.path: f.size for f in v1.files} == {p: len(d) for p, d in want.items()}
    for f in v1.files:
        assert f.sha256 == hashlib.sha256(want[f.path]).hexdigest()
    assert datastore.Dataset.push(tree, "ds") == v1, "an unchanged tree is the same version"

    (tree / "s00.bin").write_bytes(b"changed")
    (tree / "new.txt").write_text("new")
    v2 = datastore.Dataset.push(tree, "ds")
    assert (v2.version, v2.parent) == (2, 1)
    assert datastore.Dataset.get("ds") == v2 == datastore.Dataset.get("ds@latest")
    assert datastore.Dataset.get("ds@1") == v1 == datastore.Dataset.get("ds@v1")
    assert [v.version for v in datastore.Dataset.versions("ds")] == [2, 1]
    changes = [(c.change, c.path) for c in v1.diff(v2)]
    assert changes == [("added", "new.txt"), ("changed", "s00.bin")]


def test_a_local_copy_from_s3_is_verified_and_reused(tree, s3_store, tmp_path):
    ds = datastore.Dataset.push(tree, "s3ds")
    assert ds.store is None  # the environment's store, moto here
    copy = ds.get_local_copy()
    assert copy == tmp_path / "xdg" / "datastore" / "copies" / "s3ds" / "v1"
    assert source_files(copy) == source_files(tree)
    again = _cli.run(["get", ds.label, str(copy)])
    assert again["kept"] == len(ds.files) and again["bytes"] == 0
    dest = ds.get_local_copy(tmp_path / "elsewhere")
    assert source_files(dest) == source_files(tree)


def test_a_mount_as_a_context_manager_is_unmounted_even_when_the_body_raises(tree, mount_dir):
    ds = datastore.Dataset.push(tree, "mnt")
    with pytest.raises(RuntimeError, match="the body failed"):
        with ds.mount(mount_dir) as root:
            assert root == mount_dir
            assert os.path.ismount(root)
            assert source_files(root) == source_files(tree)
            assert (root / "sub" / "with space.txt").read_text() == "hello"
            raise RuntimeError("the body failed")
    assert not os.path.ismount(mount_dir)
    m = ds.mount(mount_dir)
    assert [p for p, label in datastore.mounts() if label == ds.label] == [mount_dir]
    m.unmount()
    assert not os.path.ismount(mount_dir)


def test_get_data_path_finds_a_mount_mounts_or_copies(tree, mount_dir, tmp_path, caplog):
    name = unique("gdp")
    ds = datastore.Dataset.push(tree, name)
    caplog.set_level(logging.INFO, logger="datastore")

    # 1. Mounted on this node: that mount.
    with ds.mount(mount_dir):
        assert datastore.get_data_path(name, "v1") == mount_dir
        assert f"{ds.label} is mounted at {mount_dir}" in caplog.text

    # 2. Not mounted, and this process may mount: a new mount, left in place.
    assert datastore.paths.may_mount(), "the tests run as root with /dev/fuse"
    point = datastore.get_data_path(name, "latest")
    try:
        assert point == Path("/datastores") / name
        assert os.path.ismount(point)
        assert source_files(point) == source_files(tree)
        assert f"mounted {ds.label} at {point}" in caplog.text
    finally:
        subprocess.run([os.environ["DATASTORE_BIN"], "umount", str(point)], check=True)

    # 3. Mounting not wanted (or not allowed): a verified copy under local_root.
    local = datastore.get_data_path(name, "v1", local_root=tmp_path / "data", mount=False)
    assert local == tmp_path / "data" / name / "v1"
    assert source_files(local) == source_files(tree)
    assert f"{ds.label} is a local copy at {local}" in caplog.text


def _read_all(args):
    data, order = args
    return [(i, hashlib.sha256(data[i]).hexdigest()) for i in order]


def test_the_file_dataset_serves_four_workers_in_shuffled_order(tree, mount_dir):
    ds = datastore.Dataset.push(tree, "samples")
    want = source_files(tree)
    with ds.mount(mount_dir) as root:
        data = datastore.FileDataset(ds, root)
        assert len(data) == len(want)
        order = list(range(len(data)))
        random.Random(7).shuffle(order)
        # The epoch's order, handed to the mount before the first read.
        handed = ds.prefetch(data.paths(order))
        assert handed["message"] == f"following an order of {len(data)} files", handed
        parts = [order[w::4] for w in range(4)]
        with multiprocessing.get_context("fork").Pool(4) as pool:
            got = [x for part in pool.map(_read_all, [(data, p) for p in parts]) for x in part]
        assert sorted(i for i, _ in got) == list(range(len(data)))
        for i, digest in got:
            assert digest == hashlib.sha256(want[data.files[i].path]).hexdigest()
        assert data.paths([2, 0]) == [data.files[2].path, data.files[0].path]

        sized = datastore.FileDataset(ds, root, prefix="sub/", transform=lambda b, p: (p, len(b)))
        assert sorted(sized[i] for i in range(len(sized))) == [
            ("sub/large.bin", 3 << 20),
            ("sub/with space.txt", 5),
        ]
        shards = [datastore.FileDataset(ds, root, rank=r, world_size=3) for r in range(3)]
        seen = [f.path for s in shards for f in s.files]
        assert sorted(seen) == sorted(want) and len(seen) == len(set(seen))
        with pytest.raises(ValueError):
            datastore.FileDataset(ds, root, rank=3, world_size=3)


def test_prefetch_fills_the_cache_in_the_order_given(tree):
    ds = datastore.Dataset.push(tree, "pre")
    first = ds.prefetch(["sub/large.bin", "s03.bin"])
    assert first["files"] == 2 and first["fetched_bytes"] > 0
    again = ds.prefetch()
    assert again["files"] == len(ds.files)
    assert again["cached_bytes"] >= (3 << 20)


def test_every_error_is_an_exception_of_its_kind(tree, s3_store, tmp_path, monkeypatch):
    datastore.Dataset.push(tree, "errs")
    cases = [
        (datastore.DatasetNotFound, lambda: datastore.Dataset.get("nope"), "'nope' not found"),
        (datastore.VersionNotFound, lambda: datastore.Dataset.get("errs@v9"), "errs@v9 not found"),
        (datastore.PathNotFound, lambda: _cli.run(["ls", "errs@v1/missing"]), "has no entry"),
        (datastore.BadName, lambda: datastore.Dataset.get("Bad Name"), "Bad Name"),
        (datastore.BadName, lambda: datastore.Dataset.get("errs@v1/a.txt"), "path inside a version"),
        (
            datastore.BadSource,
            lambda: datastore.Dataset.push(tmp_path / "absent", "errs"),
            "does not exist",
        ),
        (
            datastore.StoreNotFound,
            lambda: datastore.Dataset.get("errs", store=f"file://{tmp_path}/none"),
            "no store at",
        ),
        (
            datastore.StoreError,
            lambda: datastore.Dataset.get("errs", store="s3://no-such-bucket-here/root"),
            "no-such-bucket-here",
        ),
        (datastore.UsageError, lambda: _cli.run(["ls", "--no-such-flag"]), "--no-such-flag"),
    ]
    for cls, call, says in cases:
        with pytest.raises(cls) as e:
            call()
        assert says in str(e.value), f"{cls.__name__}: {e.value}"
        assert isinstance(e.value, datastore.DatastoreError)
        assert "\n" not in str(e.value) and "Traceback" not in str(e.value)
    monkeypatch.setenv("DATASTORE_BIN", str(tmp_path / "no-binary"))
    with pytest.raises(datastore.BinaryNotFound, match="cannot run"):
        datastore.Dataset.get("errs")


def test_an_empty_directory_is_pushed_only_when_asked(tree, tmp_path):
    datastore.Dataset.push(tree, "ds")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(datastore.BadSource, match="holds no files"):
        datastore.Dataset.push(empty, "ds")
    assert [v.version for v in datastore.Dataset.versions("ds")] == [1]
    made = datastore.Dataset.push(empty, "ds", allow_empty=True)
    assert made.version == 2 and made.files == []
