"""Exceptions: one class for each `kind` the command's `--json` errors carry (doc/JSON.md).

Each carries the command's one-line message, which names what is at fault and what to do::

    try:
        ds = Dataset.get("imagenet@v9")
    except VersionNotFound as e:
        print(e)  # version imagenet@v9 not found; `datastore log imagenet` lists its versions
"""

from __future__ import annotations


class DatastoreError(Exception):
    """A failed datastore command. `kind` is the command's name for the failure."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


class DatasetNotFound(DatastoreError):
    """No dataset of that name in the store."""


class VersionNotFound(DatastoreError):
    """No such version of the dataset, or it was deleted."""


class PathNotFound(DatastoreError):
    """The version has no file or directory at that path."""


class BadName(DatastoreError):
    """A dataset name or target that is not valid."""


class BadSource(DatastoreError):
    """What a push was given: a missing or unreadable directory, a file that changed while it
    was read, a name in the tree that cannot be stored."""


class Busy(DatastoreError):
    """Another push of the same tree, or a gc, is running: try again later."""


class StoreError(DatastoreError):
    """The store refused or failed: credentials, bucket, endpoint, a timeout, damage."""


class StoreNotFound(StoreError):
    """Nothing was ever pushed to that store URL."""


class UsageError(DatastoreError):
    """The command line was not understood (a bug in the caller or a too old binary)."""


class BinaryNotFound(DatastoreError):
    """The `datastore` command is not installed where this package looks for it."""


_BY_KIND = {
    "dataset_not_found": DatasetNotFound,
    "version_not_found": VersionNotFound,
    "path_not_found": PathNotFound,
    "bad_name": BadName,
    "bad_source": BadSource,
    "busy": Busy,
    "no_store": StoreNotFound,
    "bad_store_url": StoreError,
    "store": StoreError,
    "damaged_store": StoreError,
    "newer_format": StoreError,
}


def from_kind(kind: str, message: str) -> DatastoreError:
    """The exception for a `--json` error of `kind`."""
    return _BY_KIND.get(kind, DatastoreError)(message, kind)
