"""Versioned datasets in object storage, read as local files.

The Python API of the `datastore` command (which it runs, through its `--json` forms)::

    import datastore

    v = datastore.Dataset.push("./imagenet", "imagenet", message="add val")
    root = datastore.get_data_path("imagenet", version=f"v{v.version}", local_root="~/data")
    with datastore.Dataset.get("imagenet@v3").mount() as root:
        ...

See doc/PYTHON.md.
"""

from .dataset import Change, Dataset, File, Mount
from .errors import (
    BadName,
    BadSource,
    BinaryNotFound,
    Busy,
    DatasetNotFound,
    DatastoreError,
    PathNotFound,
    StoreError,
    StoreNotFound,
    UsageError,
    VersionNotFound,
)
from .paths import get_data_path, mounts
from .samples import FileDataset

__all__ = [
    "BadName",
    "BadSource",
    "BinaryNotFound",
    "Busy",
    "Change",
    "Dataset",
    "DatasetNotFound",
    "DatastoreError",
    "File",
    "FileDataset",
    "Mount",
    "PathNotFound",
    "StoreError",
    "StoreNotFound",
    "UsageError",
    "VersionNotFound",
    "get_data_path",
    "mounts",
]
