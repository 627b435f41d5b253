"""Datasets and their versions."""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Union

from . import _cli, errors

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class File:
    """A file of a version: its path below the version's root, size and SHA-256 (hex)."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Change:
    """A path that differs between two versions: `change` is added, removed or changed."""

    change: str
    path: str


class Dataset:
    """One version of a dataset.

    Example::

        ds = Dataset.get("imagenet@v3")
        print(ds.label, ds.files[0].path)
        with ds.mount() as root:
            first = (root / ds.files[0].path).read_bytes()
    """

    def __init__(self, info: dict, store: Optional[str] = None) -> None:
        self.name: str = info["dataset"]
        self.version: int = info["version"]
        self.label: str = info["label"]
        self.created = _dt.datetime.fromtimestamp(info["created_unix"], _dt.timezone.utc)
        self.parent: Optional[int] = info["parent"]
        self.message: str = info["message"]
        self.file_count: int = info["files"]
        self.bytes: int = info["bytes"]
        self.store = store
        self._files: Optional[List[File]] = None

    def __repr__(self) -> str:
        return f"Dataset({self.label!r}, files={self.file_count}, bytes={self.bytes})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dataset) and other.label == self.label

    def __hash__(self) -> int:
        return hash(self.label)

    @classmethod
    def get(cls, target: str, store: Optional[str] = None) -> "Dataset":
        """The version `target` names: `NAME` (the latest), `NAME@vN`, `NAME@N` or
        `NAME@latest`. Raises `DatasetNotFound` or `VersionNotFound`."""
        name, _, version = target.partition("@")
        if "/" in version:
            raise errors.BadName(
                f"'{target}' names a path inside a version; get the version "
                f"(Dataset.get('{name}@{version.split('/')[0]}')) and use its files",
                "bad_name",
            )
        versions = _cli.run(["log", name], store)
        if not versions:
            raise errors.DatasetNotFound(
                f"dataset '{name}' has no versions; `datastore log {name}` lists them",
                "dataset_not_found",
            )
        if version in ("", "latest"):
            return cls(versions[0], store)
        number = version[1:] if version.startswith("v") else version
        for v in versions:
            if str(v["version"]) == number:
                return cls(v, store)
        raise errors.VersionNotFound(
            f"version {name}@v{number} not found; `datastore log {name}` lists its versions",
            "version_not_found",
        )

    @classmethod
    def versions(cls, name: str, store: Optional[str] = None) -> List["Dataset"]:
        """Every version of dataset `name`, newest first."""
        return [cls(v, store) for v in _cli.run(["log", name], store)]

    @classmethod
    def push(
        cls,
        directory: PathLike,
        name: str,
        message: Optional[str] = None,
        store: Optional[str] = None,
        allow_empty: bool = False,
    ) -> "Dataset":
        """Pushes `directory` as the next version of `name`, and returns it; a tree that did
        not change since the latest version returns that version (nothing is uploaded). A
        directory holding no files is refused (BadSource) unless `allow_empty` is true."""
        args = ["push", os.fspath(directory), name]
        if message is not None:
            args += ["-m", message]
        if allow_empty:
            args.append("--allow-empty")
        pushed = _cli.run(args, store)
        return cls.get(pushed["version"], store)

    @property
    def files(self) -> List[File]:
        """Every file of the version, depth first in name order (listed once, then kept)."""
        if self._files is None:
            entries = _cli.run(["ls", self.label, "-R"], self.store)
            self._files = [
                File(e["path"], e["size"], e["sha256"]) for e in entries if e["type"] == "file"
            ]
        return self._files

    def diff(self, other: "Dataset") -> List[Change]:
        """What changed from this version to `other`, in tree order."""
        d = _cli.run(["diff", self.label, other.label], self.store)
        return [Change(c["change"], c["path"]) for c in d["changes"]]

    def get_local_copy(self, dest: Optional[PathLike] = None) -> Path:
        """A verified copy of the version on local disk, at `dest` (default: a directory of
        this version under ~/.cache/datastore/copies). Files already there with the right
        content are kept, so a second call downloads nothing."""
        if dest is None:
            base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
            dest = base / "datastore" / "copies" / self.name / f"v{self.version}"
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _cli.run(["get", self.label, os.fspath(dest)], self.store)
        return dest

    def mount(self, path: Optional[PathLike] = None, options: Iterable[str] = ()) -> "Mount":
        """Mounts the version read-only at `path` (default /datastores/NAME) and returns the
        mount; as a context manager it unmounts when the block ends, even on an exception::

            with Dataset.get("imagenet@v3").mount("/mnt/imagenet") as root:
                train(root / "train")
        """
        args = ["mount", self.label]
        if path is not None:
            args.append(os.fspath(Path(path).absolute()))
        for o in options:
            args += ["-o", o]
        done = _cli.run(args, self.store)
        return Mount(Path(done["mountpoint"]), done["version"])

    def prefetch(self, paths: Optional[Iterable[str]] = None) -> dict:
        """Fetches the files `paths` names (all of the version if `None`), in that order.

        When `paths` is given and this version is mounted on this node, the order goes to
        that mount and this returns at once (``{"mount", "message"}``): the mount fetches
        ahead of its readers in that order, within its fetch budget, as they move through
        it. Hand it a shuffled epoch before the first read::

            order = sampler_indices()                # the epoch's order, drawn up front
            ds.prefetch(data.paths(order))
            for i in order: sample = data[i]

        Otherwise the files are fetched into this node's disk cache now, in that order, and
        this returns what `datastore prefetch` reported once they are."""
        if paths is None:
            return _cli.run(["prefetch", self.label], self.store)[0]
        from .paths import mounts

        point = next((p for p, serving in mounts() if serving == self.label), None)
        with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as f:
            for p in paths:
                f.write(p.lstrip("/") + "\n")
            listed = f.name
        try:
            if point is not None:
                args = ["prefetch", "--mount", os.fspath(point), "--from-list", listed]
                return _cli.run(args, self.store)
            return _cli.run(["prefetch", self.label, "--from-list", listed], self.store)[0]
        finally:
            os.unlink(listed)


class Mount:
    """A mounted version: `path` is its root. Unmounted by `unmount()` or at the end of a
    `with` block."""

    def __init__(self, path: Path, label: str) -> None:
        self.path = path
        self.label = label
        self.mounted = True

    def __repr__(self) -> str:
        return f"Mount({self.label!r} at {str(self.path)!r})"

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        self.unmount()

    def unmount(self) -> None:
        """Unmounts it (lazily if a file is still open, so that this never fails on a busy
        mount: the mount goes once the last file is closed)."""
        if not self.mounted:
            return
        done = subprocess.run(
            [_cli.binary(), "umount", os.fspath(self.path)], capture_output=True, text=True
        )
        if done.returncode != 0:
            done = subprocess.run(
                [_cli.binary(), "umount", "--lazy", os.fspath(self.path)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise errors.DatastoreError(done.stderr.strip().removeprefix("datastore: "))
        self.mounted = False

