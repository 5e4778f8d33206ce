"""Round-to-nearest weight-only quantization (the baseline every LLM quantizer is measured against).

Each selected ``nn.Linear`` becomes a :class:`~slimtorch.quantize.qlinear.QuantLinear`
on the grid of ``config.grid`` (per-group range, optionally shrunk by an MSE
search). No data is needed.
"""

from __future__ import annotations

import torch
from torch import nn

from slimtorch.quantize.weight_only import WeightOnlyConfig, coerce, quantize_each
from slimtorch.quantize.wgrid import rtn_weight


class RTNConfig(WeightOnlyConfig):
    """Round-to-nearest; see :class:`WeightOnlyConfig` for the fields."""


@torch.no_grad()
def quantize_rtn(model: nn.Module, config: RTNConfig | dict | None = None, *, inplace: bool = False) -> nn.Module:
    """Quantize every selected Linear of ``model`` to ``config.grid`` by rounding to nearest."""
    config = coerce(RTNConfig, config)
    return quantize_each(model, config, inplace, lambda w: rtn_weight(w, config.grid), "RTN")
