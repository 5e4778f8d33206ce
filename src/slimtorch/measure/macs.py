"""Multiply-accumulate counts.

Totals come from ``torch.utils.flop_counter.FlopCounterMode`` (maintained with
PyTorch, counts every matmul/conv op the model really runs, including
functional calls in a user's forward). It reports FLOPs = 2 × MACs for GEMMs and
convolutions. Per-layer counts for Linear/Conv modules come from forward hooks,
which also give the *sparse* MACs: dense MACs × the layer's weight density, the
work left if zero weights were skipped.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from slimtorch.io.fold import fold


@torch.no_grad()
def count_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """Dense MACs of one forward pass on ``example_input`` (batch included)."""
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(example_input)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


@torch.no_grad()
def layer_macs(model: nn.Module, example_input: torch.Tensor) -> dict[str, dict[str, int]]:
    """Per Linear/Conv layer: dense MACs and sparse MACs (scaled by weight density)."""
    model = fold(model).eval()
    out: dict[str, dict[str, int]] = {}
    hooks = []

    def hook(name: str):
        def fn(mod: nn.Module, inp, output):
            w = mod.weight
            if isinstance(mod, nn.Linear):
                dense = output.numel() * w.shape[1]
            else:
                dense = output.numel() * (w.shape[1] * int(torch.tensor(w.shape[2:]).prod()))
            density = float((w != 0).float().mean())
            prev = out.get(name, {"macs": 0, "sparse_macs": 0})
            out[name] = {"macs": prev["macs"] + dense, "sparse_macs": prev["sparse_macs"] + round(dense * density)}

        return fn

    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
            hooks.append(mod.register_forward_hook(hook(name)))
    try:
        model(example_input)
    finally:
        for h in hooks:
            h.remove()
    return out
