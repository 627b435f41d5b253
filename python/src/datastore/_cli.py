"""Running the `datastore` command and reading its `--json` output (doc/JSON.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any, Optional, Sequence

from . import errors


def binary() -> str:
    """The `datastore` command: `$DATASTORE_BIN`, else the one on `PATH`."""
    given = os.environ.get("DATASTORE_BIN")
    if given:
        return given
    found = shutil.which("datastore")
    if found is None:
        raise errors.BinaryNotFound(
            "the datastore command is not on PATH; install it, or set DATASTORE_BIN to its path",
            "binary_not_found",
        )
    return found


def run(args: Sequence[str], store: Optional[str] = None) -> Any:
    """Runs `datastore ARGS --json` and returns its parsed result, or raises the exception of
    its error's kind (see `errors`)."""
    cmd = [binary()]
    if store is not None:
        cmd.append(f"--store={store}")
    cmd += [*args, "--json"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    except OSError as e:
        raise errors.BinaryNotFound(f"cannot run {cmd[0]}: {e}", "binary_not_found") from None
    if done.returncode == 0:
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise errors.DatastoreError(
                f"datastore {' '.join(args)} printed no JSON; is {cmd[0]} a datastore binary "
                "new enough for this package?"
            ) from None
    raise _error(done)


def _error(done: subprocess.CompletedProcess) -> errors.DatastoreError:
    if done.returncode == 2:
        first = next((l for l in done.stderr.splitlines() if l.strip()), "usage error")
        return errors.UsageError(first.removeprefix("error: "), "usage")
    for line in reversed(done.stderr.splitlines()):
        try:
            e = json.loads(line)["error"]
            return errors.from_kind(e["kind"], e["message"])
        except (ValueError, KeyError, TypeError):
            continue
    said = done.stderr.strip().splitlines()
    return errors.DatastoreError(
        said[-1] if said else f"datastore exited with status {done.returncode}"
    )
