"""Whole models in and out of ``.slim`` files (Deep Compression's third stage).

``pack_model`` turns every weight whose values are shared (k-means
parametrizations from :mod:`slimtorch.quantize`, or any folded weight tensor with
at most ``max_codebook`` distinct non-zero values) into a
:class:`~slimtorch.encode.tensor.SharedTensor`, which the format entropy-codes
with sparse relative indices; everything else is stored raw. ``load_packed``
rebuilds a runnable module from the file alone: it is bitwise identical to the
quantized model it came from, because codebooks are stored as float32 and
indices losslessly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimtorch.core.errors import FormatError
from slimtorch.core.fileio import atomic_write_bytes
from slimtorch.encode.format import pack_state, unpack_state
from slimtorch.encode.tensor import SharedTensor
from slimtorch.io.model_file import build_from_state, check_spec

SLIM_MAGIC = b'"slimtorch.slim"'


def compressed_state(model: nn.Module, max_codebook: int = 256) -> dict[str, Any]:
    """The model's state with every shareable weight as a :class:`SharedTensor`.

    Args:
        max_codebook: a >= 2-D float weight with at most this many distinct non-zero
            values is stored as codebook + indices (256 = 8-bit indices); others raw.
    """
    from slimtorch.quantize.kmeans import shared_state

    state: dict[str, Any] = shared_state(model)
    for name, value in list(state.items()):
        if isinstance(value, SharedTensor) or not torch.is_tensor(value):
            continue
        if value.is_floating_point() and value.ndim >= 2:
            distinct = torch.unique(value[value != 0])
            if len(distinct) <= max_codebook:
                state[name] = SharedTensor.from_dense(value.float())
    return state


def pack_model(
    model: nn.Module,
    path: str | os.PathLike | None = None,
    *,
    method: str = "auto",
    index: str = "auto",
    max_codebook: int = 256,
    spec: dict[str, Any] | None = None,
) -> bytes:
    """Encode ``model`` as ``.slim`` bytes (written atomically to ``path`` when given).

    Args:
        method: entropy coder: ``"huffman"`` (the paper), ``"ans"``, or ``"auto"`` (smaller per tensor).
        index: sparse index coding: ``"gap"`` (paper), ``"gap-raw"``, ``"bitmask"`` or ``"auto"``.
        spec: architecture description; defaults to ``model.slimtorch_spec``.
    """
    spec = spec if spec is not None else getattr(model, "slimtorch_spec", None)
    data = pack_state(compressed_state(model, max_codebook), {"model": spec}, method, index=index)
    if path is not None:
        atomic_write_bytes(path, data)
    return data


def is_slim(data: bytes) -> bool:
    """Whether ``data`` starts like a ``.slim`` file (a safetensors header naming our format)."""
    if len(data) < 8:
        return False
    n = int.from_bytes(data[:8], "little")
    return 0 < n <= len(data) - 8 and SLIM_MAGIC in data[8 : 8 + min(n, 1 << 20)]


def load_packed(source: str | os.PathLike | bytes, model: nn.Module | str | None = None) -> nn.Module:
    """Decode a ``.slim`` file into a runnable model (eval mode).

    Args:
        source: a path or the file's bytes.
        model: module to load into when the file has no zoo spec (a user's own class).
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    arrays, arch = unpack_state(data)
    state = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()}
    spec = arch.get("model") if isinstance(arch, dict) else None
    if arch and not isinstance(arch, dict):
        raise FormatError(f"{name}: corrupt architecture description (not a JSON object)")
    check_spec(spec, name)
    return build_from_state(state, spec, model, name)
