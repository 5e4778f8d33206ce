"""Physically remove channels: rebuild each layer's tensors with only the kept slices.

The layers stay the same type (Conv2d, Linear, BatchNorm2d…) with smaller sizes,
so the pruned model runs on the ordinary dense kernels (and is faster), saves
as plain tensors, and :mod:`slimtorch.io.resize` rebuilds it from the file.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from slimtorch.prune.structured.units import Graph


def _param(old: torch.Tensor, new: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(new.detach().clone().contiguous(), requires_grad=old.requires_grad)


def _keep_idx(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.flatnonzero(mask)).long()


@torch.no_grad()
def remove_channels(g: Graph, removed: set[int]) -> dict[str, dict[str, int]]:
    """Slice every member layer so the units in ``removed`` disappear.

    Returns:
        layer name -> {"out": kept outputs, "in": kept inputs} (where changed).
    """
    plan: dict[str, dict] = {}
    for m in g.members:
        keep = ~np.isin(g.uf.roots(m.ids), np.fromiter(removed, dtype=np.int64, count=len(removed)))
        if keep.all():
            continue
        entry = plan.setdefault(m.name, {"module": m.module})
        dims = {"out": ("out",), "bn": ("out",), "dw": ("out", "in"), "in": ("in",)}[m.role]
        for d in dims:
            entry[d] = keep if d not in entry else (entry[d] & keep)
    summary: dict[str, dict[str, int]] = {}
    for name, e in plan.items():
        mod = e["module"]
        out_k = _keep_idx(e["out"]) if "out" in e else None
        in_k = _keep_idx(e["in"]) if "in" in e else None
        if isinstance(mod, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            w = mod.weight
            depthwise = mod.groups > 1
            if out_k is not None:
                w = w[out_k]
                if mod.bias is not None:
                    mod.bias = _param(mod.bias, mod.bias[out_k])
                mod.out_channels = len(out_k)
            if in_k is not None and not depthwise:
                w = w[:, in_k]
            if in_k is not None:
                mod.in_channels = len(in_k)
            if depthwise:
                mod.groups = mod.out_channels
            mod.weight = _param(mod.weight, w)
        elif isinstance(mod, nn.Linear):
            w = mod.weight
            if out_k is not None:
                w = w[out_k]
                if mod.bias is not None:
                    mod.bias = _param(mod.bias, mod.bias[out_k])
                mod.out_features = len(out_k)
            if in_k is not None:
                w = w[:, in_k]
                mod.in_features = len(in_k)
            mod.weight = _param(mod.weight, w)
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            if mod.affine:
                mod.weight = _param(mod.weight, mod.weight[out_k])
                mod.bias = _param(mod.bias, mod.bias[out_k])
            if mod.track_running_stats:
                mod.running_mean = mod.running_mean[out_k].clone()
                mod.running_var = mod.running_var[out_k].clone()
            mod.num_features = len(out_k)
        elif isinstance(mod, nn.Embedding):
            mod.weight = _param(mod.weight, mod.weight[:, out_k])
            mod.embedding_dim = len(out_k)
        summary[name] = {k: len(v) for k, v in (("out", out_k), ("in", in_k)) if v is not None}
    return summary
