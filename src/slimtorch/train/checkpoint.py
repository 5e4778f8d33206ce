"""Training checkpoints: written atomically every epoch, read without pickle code execution.

A checkpoint holds the model and optimizer state dicts, the scheduler step and
the epoch reached. ``torch.save`` is used as the container because optimizer
state is nested dicts of tensors and numbers; it is read back only with
``torch.load(weights_only=True)``, which refuses anything but tensors and
plain containers, so a tampered checkpoint cannot run code.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from slimtorch.core.errors import FormatError
from slimtorch.core.fileio import atomic_write_bytes

CHECKPOINT_NAME = "checkpoint.pt"
_KIND = "slimtorch.checkpoint.v1"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    buf = io.BytesIO()
    torch.save({"kind": _KIND, **state}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch colours its messages
    return (text.splitlines() or [""])[0][:200]


def _check_zip(data: bytes, path: Path) -> None:
    """A checkpoint is an uncompressed torch zip whose entries fit in the file.

    ``torch.save`` never compresses; refusing compressed entries and declared sizes past
    the file's length means a small tampered file cannot make the reader inflate gigabytes.
    The legacy (pre-1.6, non-zip) format is refused: its header declares storage sizes
    that are allocated before they are read.
    """
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        ValueError,
        OSError,
        EOFError,
        struct.error,
        NotImplementedError,
    ) as exc:  # NotImplementedError: an unsupported zip version field
        raise FormatError(
            f"checkpoint '{path}' is not a torch zip archive ({exc}); it is corrupt, truncated, or in a "
            "legacy/pickle format slimtorch does not read. Start again without --resume."
        ) from None
    if any(i.compress_type != zipfile.ZIP_STORED or i.file_size > len(data) for i in infos):
        raise FormatError(f"checkpoint '{path}' has compressed or oversized entries; slimtorch never writes those")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain containers only).

    Raises:
        FileNotFoundError: no file at ``path``.
        FormatError: the file is not a slimtorch checkpoint, is corrupt, or holds anything
            ``torch.load(weights_only=True)`` refuses (code, custom classes).
    """
    path = Path(path)
    data = path.read_bytes()
    _check_zip(data, path)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises a dozen types on corrupt input
        raise FormatError(
            f"checkpoint '{path}' cannot be read safely ({type(exc).__name__}: {_first_line(exc)}); "
            "it is corrupt or contains objects other than tensors. Start again without --resume."
        ) from None
    if not isinstance(state, dict) or state.get("kind") != _KIND:
        raise FormatError(f"'{path}' is not a slimtorch training checkpoint")
    return state
