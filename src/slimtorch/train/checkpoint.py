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
import pickle
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


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as exc:
        raise FormatError(
            f"checkpoint '{path}' cannot be read safely ({type(exc).__name__}: {str(exc)[:200]}); "
            "it is corrupt or contains objects other than tensors. Start again without --resume."
        ) from None
    if not isinstance(state, dict) or state.get("kind") != _KIND:
        raise FormatError(f"'{path}' is not a slimtorch training checkpoint")
    return state
