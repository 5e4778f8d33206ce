"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization Through
Weight Equalization and Bias Correction", §4.1).

For two layers joined by a positive-homogeneous activation (ReLU, identity),
``f(W2 · act(W1 x + b1))`` is unchanged when output channel ``i`` of layer 1 is
divided by ``s_i`` and input channel ``i`` of layer 2 multiplied by it. Choosing
``s_i = sqrt(r1_i / r2_i)`` (``r`` = per-channel max |w|) gives both channels the
same range, which is what per-tensor and 8-bit per-channel grids need on
MobileNet-style nets whose depthwise filters have wildly different ranges.
Iterated over chains (expand → depthwise → project) until the scales settle.

ReLU6 is not positive-homogeneous (its clip at 6 moves with the scale). The
paper replaces it with ReLU; ``relu6="replace"`` does that (the float model
changes slightly: measure it), ``relu6="skip"`` leaves those pairs alone.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.deploy.graph import equalizable_pairs, set_module


def _out_range(layer: nn.Module) -> torch.Tensor:
    w = layer.weight.detach()
    return w.abs().reshape(w.shape[0], -1).amax(1)


def _is_depthwise(layer: nn.Module) -> bool:
    return (
        isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Conv3d) and layer.groups == layer.in_channels == layer.out_channels
    )


def _in_range(layer: nn.Module) -> torch.Tensor | None:
    w = layer.weight.detach()
    if _is_depthwise(layer):
        return w.abs().reshape(w.shape[0], -1).amax(1)
    if getattr(layer, "groups", 1) != 1:
        return None  # grouped conv: input channel i is not one weight slice
    return w.abs().transpose(0, 1).reshape(w.shape[1], -1).amax(1)


@torch.no_grad()
def _scale_pair(l1: nn.Module, l2: nn.Module, eps: float = 1e-8) -> float:
    r1, r2 = _out_range(l1), _in_range(l2)
    if r2 is None or r1.numel() != r2.numel():
        return 0.0
    s = torch.sqrt(r1.clamp(min=eps) / r2.clamp(min=eps))
    # dead channels (all-zero weights on one side) keep scale 1
    s = torch.where((r1 > eps) & (r2 > eps), s, torch.ones_like(s))
    shape1 = (-1,) + (1,) * (l1.weight.ndim - 1)
    l1.weight.div_(s.view(shape1))
    if l1.bias is not None:
        l1.bias.div_(s)
    if _is_depthwise(l2):
        l2.weight.mul_(s.view((-1,) + (1,) * (l2.weight.ndim - 1)))
    else:
        l2.weight.mul_(s.view((1, -1) + (1,) * (l2.weight.ndim - 2)))
    return float((s - 1).abs().max())


def cross_layer_equalize(
    model: nn.Module, iterations: int = 20, relu6: str = "skip", tol: float = 1e-6, *, inplace: bool = False
) -> nn.Module:
    """Equalize the weight ranges of every conv/Linear pair joined by ReLU / identity.

    Fold BatchNorm first (:func:`slimtorch.deploy.fold_conv_bn`): a BN between
    the two layers is not positive-homogeneous per channel in general.

    Args:
        model: any ``nn.Module``.
        iterations: sweeps over all pairs (chains need several to converge).
        relu6: ``skip`` (exact) or ``replace`` (ReLU6 → ReLU, as in the paper).
        inplace: edit ``model`` instead of a copy.

    Returns:
        The equalized model; with ``relu6="skip"`` its float outputs are unchanged.
    """
    if relu6 not in ("skip", "replace"):
        raise ConfigError(f"invalid value for 'relu6': {relu6!r}; use 'skip' or 'replace'", field="relu6")
    model = model if inplace else copy.deepcopy(model)
    pairs = []
    for n1, act, kind, n2 in equalizable_pairs(model):
        if kind == "relu6":
            if relu6 == "skip" or act is None:
                continue
            set_module(model, act, nn.ReLU())
        pairs.append((model.get_submodule(n1), model.get_submodule(n2)))
    for _ in range(iterations):
        change = max((_scale_pair(a, b) for a, b in pairs), default=0.0)
        if change < tol:
            break
    return model


def equalized_pairs(model: nn.Module, relu6: str = "skip") -> list[tuple[str, str]]:
    """The (layer1, layer2) names :func:`cross_layer_equalize` would equalize."""
    return [(a, b) for a, _, kind, b in equalizable_pairs(model) if kind != "relu6" or relu6 == "replace"]
