"""Turning user data (tensor, Dataset of (x, y), DataLoader) into model-input batches."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.utils.data import DataLoader, Dataset

from slimtorch.core.errors import ConfigError


def input_batches(
    data: torch.Tensor | Dataset | DataLoader | Iterable,
    n_inputs: int = 1,
    batch_size: int = 16,
    max_batches: int | None = None,
    what: str = "calibration data",
) -> list[tuple[torch.Tensor, ...]]:
    """Batches of model inputs: the first ``n_inputs`` fields of each batch (labels dropped).

    Raises:
        ConfigError: ``data`` is None or yields no batch (an empty calibration
            set would silently give all-zero ranges).
    """
    return [b[:n_inputs] for b in field_batches(data, n_inputs, batch_size, max_batches, what)]


def field_batches(
    data: torch.Tensor | Dataset | DataLoader | Iterable,
    n_inputs: int = 1,
    batch_size: int = 16,
    max_batches: int | None = None,
    what: str = "calibration data",
) -> list[tuple[torch.Tensor, ...]]:
    """Every field of each batch (inputs, then labels or whatever the data carries); at least ``n_inputs``.

    Raises:
        ConfigError: as :func:`input_batches`.
    """
    if data is None:
        raise ConfigError(f"{what} is required (a tensor, a Dataset of (x, y) or a DataLoader)", field=what)
    if isinstance(data, torch.Tensor):
        loader: Iterable = torch.split(data, batch_size)
    elif isinstance(data, DataLoader):
        loader = data
    else:
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    out: list[tuple[torch.Tensor, ...]] = []
    for batch in loader:
        fields = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        if len(fields) < n_inputs:
            raise ConfigError(
                f"{what}: a batch has {len(fields)} field(s), the model takes {n_inputs} input(s)", field=what
            )
        out.append(fields)
        if max_batches is not None and len(out) >= max_batches:
            break
    if not out or out[0][0].shape[0] == 0:
        raise ConfigError(f"{what} is empty: give at least one example (a few hundred are typical)", field=what)
    return out
