"""Top-level conveniences: ``slimtorch.load`` and ``slimtorch.save`` for any slimtorch file."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn


def load(path: str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """Load a slimtorch model file (``.safetensors``) or compressed file (``.slim``) as a runnable model.

    The format is recognised from the file's content, not its name.
    """
    from slimtorch.encode.model import is_slim, load_packed
    from slimtorch.io.model_file import build_from_state, read_model_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file '{path}' does not exist")
    data = path.read_bytes()
    if is_slim(data):
        return load_packed(data, model)
    state, header = read_model_file(data, str(path))
    out = build_from_state(state, header["arch"], model, str(path))
    out.slimtorch_file_metadata = header["metadata"]
    return out


def save(model: nn.Module, path: str | os.PathLike, **kwargs) -> Path:
    """Save ``model``: ``.slim`` suffix → entropy-coded file, otherwise a safetensors model file."""
    path = Path(path)
    if path.suffix == ".slim":
        from slimtorch.encode.model import pack_model

        pack_model(model, path, **kwargs)
        return path
    from slimtorch.io.model_file import save_model

    return save_model(model, path, **kwargs)


def load_or_create(ref: str) -> nn.Module:
    """A model from a file path (``.safetensors`` / ``.slim``) or, if ``ref`` is a bare name, the zoo."""
    from slimtorch.models import create_model

    path = Path(ref)
    if path.exists():
        return load(path)
    if path.suffix or "/" in ref:
        raise FileNotFoundError(f"model file '{ref}' does not exist")
    return create_model(ref)
