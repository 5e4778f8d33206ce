"""Seed 001's weight clipping (权重裁剪, section 3.1), as its own transform.

The seed defines ``w̃ = t if |w| > T else w``: weights beyond a threshold T are
replaced by a fixed value t. Taken literally (one t for both signs) it flips the
sign of large negative weights; the default here is ``t = sign(w)·T``
(saturation), which is the meaningful reading. The principled way to pick T for
quantization is the clipping ratio that minimises the quantization error —
``UniformConfig(range_method="mse")`` / ``QuantConfig(weight_range="mse")``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize

from slimtorch.core.config import coerce
from slimtorch.core.layers import select
from slimtorch.quantize.config import ClipConfig
from slimtorch.quantize.layers import QUANTIZABLE, FilterFn


def clip_tensor(w: torch.Tensor, threshold: float, value: float | None = None) -> torch.Tensor:
    """``t if |w| > T else w`` with ``t = value`` or, when ``value`` is None, ``sign(w)·T``."""
    big = w.abs() > threshold
    repl = torch.sign(w) * threshold if value is None else torch.full_like(w, value)
    return torch.where(big, repl, w)


@torch.no_grad()
def clip_weights(
    model: nn.Module, config: ClipConfig | dict, *, filter_fn: FilterFn | None = None, inplace: bool = False
) -> nn.Module:
    """Clip the weights of the selected Linear / Conv layers (a one-shot edit of the stored weights).

    A layer under a parametrization (e.g. a pruning mask) has its underlying
    ``original`` tensor clipped, so the mask keeps applying on top. ``config``: a
    :class:`ClipConfig` or its dict form (``threshold`` is required).
    """
    config = coerce(ClipConfig, config)
    out = model if inplace else copy.deepcopy(model)
    n = 0
    for module in select(out, config.layers, QUANTIZABLE, filter_fn=filter_fn).values():
        target = (
            module.parametrizations.weight.original if parametrize.is_parametrized(module, "weight") else module.weight
        )
        target.copy_(clip_tensor(target, config.threshold, config.value))
        n += 1
    if n == 0:
        raise ValueError("no Linear/Conv layer matched the clipping config (check 'layers', 'skip', filter_fn)")
    return out
