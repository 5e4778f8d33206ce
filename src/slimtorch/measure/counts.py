"""Parameter, non-zero and per-layer sparsity counts (on effective, folded weights)."""

from __future__ import annotations

import torch
from torch import nn

from slimtorch.io.fold import fold


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    # Effective weights: a masked (parametrized) weight counts its zeros, not its original.
    return {k: v.detach() for k, v in fold(model).named_parameters()}


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (dense count, masks folded)."""
    return sum(t.numel() for t in _params(model).values())


def count_nonzero(model: nn.Module) -> int:
    """Number of non-zero parameters."""
    return sum(int((t != 0).sum()) for t in _params(model).values())


def layer_sparsity(model: nn.Module) -> dict[str, dict[str, float | int]]:
    """Per weight tensor of >= 2 dimensions: size, non-zeros, sparsity."""
    out = {}
    for name, t in _params(model).items():
        if t.ndim < 2:
            continue
        nz = int((t != 0).sum())
        out[name] = {"numel": t.numel(), "nonzero": nz, "sparsity": 1 - nz / max(t.numel(), 1)}
    return out
