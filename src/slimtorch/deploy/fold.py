"""Exact BatchNorm folding: ``conv(x) → BN`` becomes one conv with rescaled weights and a bias.

For BN in eval mode ``y = γ (z - μ) / sqrt(σ² + ε) + β`` with ``z = W x + b``, so
``W' = W · γ / sqrt(σ² + ε)`` (per output channel) and
``b' = (b - μ) · γ / sqrt(σ² + ε) + β``. Folding is done in float64 and is exact
up to float32 rounding; the BN module becomes ``nn.Identity``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from slimtorch.deploy.graph import conv_bn_pairs, set_module


@torch.no_grad()
def fold_conv_bn(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fold every BatchNorm that reads only a conv's output into that conv.

    Args:
        model: any ``nn.Module`` (traced with ``torch.fx``; ``nn.Sequential``
            adjacency is used when tracing fails).
        inplace: edit ``model`` itself instead of a deep copy.

    Returns:
        The model (a copy unless ``inplace``) in eval mode.
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    for conv_name, bn_name in conv_bn_pairs(model):
        conv: nn.Conv2d = model.get_submodule(conv_name)
        bn: nn.BatchNorm2d = model.get_submodule(bn_name)
        if not bn.track_running_stats or bn.running_mean is None:
            continue  # batch statistics at inference: nothing constant to fold
        w = conv.weight.double()
        b = conv.bias.double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        gamma = bn.weight.double() if bn.affine else torch.ones_like(b)
        beta = bn.bias.double() if bn.affine else torch.zeros_like(b)
        k = gamma / torch.sqrt(bn.running_var.double() + bn.eps)
        conv.weight.copy_((w * k.view(-1, *([1] * (w.ndim - 1)))).float())
        new_b = ((b - bn.running_mean.double()) * k + beta).float()
        if conv.bias is None:
            conv.bias = nn.Parameter(new_b)
        else:
            conv.bias.copy_(new_b)
        set_module(model, bn_name, nn.Identity())
    return model
