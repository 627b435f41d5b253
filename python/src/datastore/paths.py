"""`get_data_path`: where a training script finds a version, on a laptop or on the cluster."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator, Optional, Tuple

from . import errors
from .dataset import Dataset, PathLike

log = logging.getLogger("datastore")

#: The extended attribute a datastore mount gives every entry: the version it serves.
VERSION_XATTR = "user.datastore.version"


def get_data_path(
    name: str,
    version: str = "latest",
    local_root: Optional[PathLike] = None,
    mount: bool = True,
    store: Optional[str] = None,
) -> Path:
    """The root of version `version` of dataset `name` on this node, found in this order:

    1. a mount on this node that serves that version: its path;
    2. else, if `mount` and this process may mount (root, with /dev/fuse), a new mount at
       /datastores/NAME, left in place for later runs;
    3. else a verified copy under `local_root` (default ~/.cache/datastore/copies), reused
       and completed if already there.

    A log line (logger "datastore") says which it chose. The same script then runs on a
    laptop and on a GPU node unchanged::

        root = get_data_path("imagenet", version="v3", local_root="~/data")
    """
    ds = Dataset.get(f"{name}@{version}", store)
    for point, serving in mounts():
        if serving == ds.label:
            log.info("datastore: %s is mounted at %s", ds.label, point)
            return point
    if mount and may_mount():
        try:
            m = ds.mount()
        except errors.DatastoreError as e:
            log.warning("datastore: cannot mount %s (%s); making a local copy", ds.label, e)
        else:
            log.info("datastore: mounted %s at %s", ds.label, m.path)
            return m.path
    dest = None
    if local_root is not None:
        dest = Path(local_root).expanduser() / ds.name / f"v{ds.version}"
    copy = ds.get_local_copy(dest)
    log.info("datastore: %s is a local copy at %s", ds.label, copy)
    return copy


def mounts() -> Iterator[Tuple[Path, str]]:
    """The datastore mounts of this node, each with the label of the version it serves now
    (read from the mount, so a mount switched to another version says the new one)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in lines:
        fields = line.split()
        if len(fields) < 3 or fields[2] != "fuse.datastore":
            continue
        point = Path(_unescape(fields[1]))
        try:
            serving = os.getxattr(point, VERSION_XATTR).decode()
        except OSError:
            continue
        yield point, serving


def may_mount() -> bool:
    """Whether this process can mount: root, with the FUSE device."""
    return os.geteuid() == 0 and os.access("/dev/fuse", os.R_OK | os.W_OK)


def _unescape(field: str) -> str:
    """A path of /proc/self/mounts, with its octal escapes (`\\040` for a space) undone."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)
