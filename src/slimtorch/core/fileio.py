"""Atomic writes and output folders that are never silently overwritten.

A run killed half-way must never leave a half-written file under the final
name: every write goes to a temporary file in the same folder, is fsynced,
then renamed over the target (rename is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from slimtorch.core.errors import ConfigError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it is renamed to ``path``, on error removed.

    ``path`` must not exist yet (a finished folder is never replaced).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def prepare_output_dir(path: str | os.PathLike, force: bool = False, resume: bool = False) -> Path:
    """Create an output folder, refusing to clobber an existing non-empty one.

    Args:
        force: delete an existing folder's contents first.
        resume: reuse an existing folder as it is (to continue an interrupted run).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output path '{path}' exists and is not a folder", field="output")
    if path.exists() and any(path.iterdir()) and not resume:
        if not force:
            raise ConfigError(
                f"output folder '{path}' already exists and is not empty; "
                "pass --force to overwrite it or --resume to continue the run in it",
                field="output",
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path
