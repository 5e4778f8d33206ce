"""Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization", §4.2).

Quantizing weights shifts each layer's expected output by ``(W_q - W) E[x]``;
the shift is biased on depthwise convs with few weights per channel and
accumulates through MobileNet-style nets. We measure ``E[x]`` per input
channel on calibration data (the paper's data-free variant derives it from BN
statistics; real data is at hand here) and subtract the shift from the bias.
``W_q`` is simulated on the grid the runtime uses: symmetric, per output
channel, ±127 (±64 with ``reduce_range``: ORT's reduced int8 range is [-64, 64]).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from slimtorch.core.layers import LayerSelection, select
from slimtorch.deploy.grid import ort_qmax, round_to_grid

CORRECTED_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@torch.no_grad()
def bias_correct(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, ...]],
    per_channel: bool = True,
    reduce_range: bool = False,
    *,
    layers: LayerSelection | dict | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Correct the bias of every Conv / Linear for the expected weight-quantization error.

    Args:
        model: the (BN-folded, equalized) float model.
        batches: calibration input batches (from :func:`slimtorch.deploy.data.input_batches`).
        layers: ``{include: [...], exclude: [...]}`` (:class:`~slimtorch.core.layers.LayerSelection`):
            the layers to correct (default: every Conv / Linear). Exclude, e.g., those AdaRound
            already rounded: their weights are on the grid, and their rounding was chosen
            against the outputs.
        inplace: correct ``model`` itself instead of a deep copy.

    Returns:
        The corrected model (float; its weights are unchanged).
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    layers = select(model, layers, CORRECTED_TYPES)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name):
        def fn(mod, inp, _out):
            x = inp[0].detach().float()
            c = x.ndim - 1 if isinstance(mod, nn.Linear) else 1  # the input-channel dimension
            sums[name] = sums.get(name, 0) + x.sum([d for d in range(x.ndim) if d != c])
            counts[name] = counts.get(name, 0) + x.numel() // x.shape[c]

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    try:
        for b in batches:
            model(*b)
    finally:
        for h in handles:
            h.remove()
    qmax = ort_qmax(reduce_range)
    for name, mod in layers.items():
        if name not in sums:
            continue
        mean_x = sums[name] / counts[name]
        dw = round_to_grid(mod.weight, per_channel, qmax) - mod.weight
        if isinstance(mod, nn.Linear):
            shift = dw @ mean_x
        elif mod.groups == 1:
            shift = (dw.reshape(dw.shape[0], dw.shape[1], -1).sum(2) * mean_x).sum(1)
        else:  # grouped / depthwise: output channel o reads input channels of its group
            g_in = mod.in_channels // mod.groups
            per_out = mod.out_channels // mod.groups
            xs = mean_x.view(mod.groups, 1, g_in).expand(mod.groups, per_out, g_in).reshape(mod.out_channels, g_in)
            shift = (dw.reshape(dw.shape[0], g_in, -1).sum(2) * xs).sum(1)
        if mod.bias is None:
            mod.bias = nn.Parameter(-shift)
        else:
            mod.bias.sub_(shift)
    return model
