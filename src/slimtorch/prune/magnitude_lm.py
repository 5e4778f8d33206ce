"""Magnitude pruning of a language model's decoder Linears: the baseline Wanda and SparseGPT must beat.

The scores are |W| (Han et al. 2015), the criterion ``magnitude`` of
:mod:`slimtorch.prune.criteria` uses too; this entry point applies them with
the language-model conventions of the two papers (decoder-block Linears only,
embedding and ``lm_head`` untouched, comparison per output row or per layer,
N:M patterns, plain zeros instead of mask parametrizations), so the three methods
are compared on exactly the same layers and sparsity. No calibration data.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from slimtorch.prune.lm_common import LMPruneConfig, decoder_linears, keep_mask
from slimtorch.quantize.weight_only import coerce, target


class MagnitudeLMConfig(LMPruneConfig):
    """Magnitude pruning settings.

    Attributes:
        scope: ``row``: each output row loses the same fraction (the comparison Wanda
            uses, and the stronger baseline on LLMs); ``layer``: the smallest weights of
            the whole layer go, wherever they are.
    """

    scope: Literal["row", "layer"] = "row"


@torch.no_grad()
def prune_magnitude_lm(
    model: nn.Module, config: MagnitudeLMConfig | dict | None = None, *, inplace: bool = False
) -> nn.Module:
    """Zero the smallest-magnitude weights of the selected decoder Linears; returns the model (a copy by default)."""
    config = coerce(MagnitudeLMConfig, config)
    model = target(model, inplace)
    _, chosen = decoder_linears(model, config)
    for lin in chosen.values():
        w = lin.weight
        w.mul_(keep_mask(w.detach().abs(), config, config.scope))
    return model
