"""Data-driven importance and bias compensation for removed channels.

* ``activation`` importance: a unit matters as much as what it feeds forward,
  E|a_c| x ||W[:, c]|| summed over every layer that reads channel ``c``
  (the output-reconstruction view of He et al., 2017, "Channel pruning for
  accelerating very deep neural networks", without the regression).
* Compensation: a removed channel's *mean* input ``E[a_c]`` times the
  consumer's weights is a constant per output, folded into the consumer's bias
  (created if absent), so pruning loses only the channel's variation (the bias
  correction of Nagel et al., 2019, applied to removed channels). For a KxK conv
  with zero padding this is exact away from the borders.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.prune.structured.units import Graph


@torch.no_grad()
def input_stats(g: Graph, model: nn.Module, batches: Iterable) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per consuming layer: (mean |input|, mean input) per input channel/feature."""
    acc: dict[str, list] = {}
    hooks = []

    def hook(name):
        def fn(mod, args):
            a = args[0]
            dims = [d for d in range(a.ndim) if d != (1 if isinstance(mod, nn.modules.conv._ConvNd) else a.ndim - 1)]
            s = acc.setdefault(name, [0.0, 0.0, 0])
            s[0] = s[0] + a.abs().mean(dims)
            s[1] = s[1] + a.mean(dims)
            s[2] += 1

        return fn

    for m in g.members:
        if m.role == "in":
            hooks.append(m.module.register_forward_pre_hook(hook(m.name)))
    was = model.training
    model.eval()
    n = 0
    try:
        for batch in batches:
            x = batch[0] if isinstance(batch, list | tuple) else batch
            model(x)
            n += 1
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    if n == 0:
        raise ConfigError("importance 'activation' and compensate need data (a dataset of inputs)", field="data")
    return {k: (v[0] / v[2], v[1] / v[2]) for k, v in acc.items()}


@torch.no_grad()
def activation_scores(g: Graph, stats) -> dict[int, float]:
    scores: dict[int, float] = {}
    for m in g.members:
        if m.role != "in" or m.name not in stats:
            continue
        w = m.module.weight
        col = w.transpose(0, 1).reshape(w.shape[1], -1).norm(dim=1)
        s = (stats[m.name][0] * col).double().numpy()
        for r, v in zip(g.uf.roots(m.ids).tolist(), s.tolist(), strict=True):
            scores[r] = scores.get(r, 0.0) + v
    return scores


@torch.no_grad()
def compensate(g: Graph, removed: set[int], stats) -> None:
    """Add the removed inputs' mean contribution to each consumer's bias (before slicing)."""
    gone_roots = np.fromiter(removed, dtype=np.int64, count=len(removed))
    for m in g.members:
        if m.role != "in" or m.name not in stats:
            continue
        gone = torch.from_numpy(np.isin(g.uf.roots(m.ids), gone_roots))
        if not gone.any():
            continue
        mod, mean = m.module, stats[m.name][1]
        w = mod.weight[:, gone]
        delta = (w.reshape(w.shape[0], w.shape[1], -1).sum(2) * mean[gone]).sum(1)
        if mod.bias is None:
            mod.bias = nn.Parameter(
                torch.zeros(mod.weight.shape[0], dtype=mod.weight.dtype), requires_grad=mod.weight.requires_grad
            )
        mod.bias += delta
