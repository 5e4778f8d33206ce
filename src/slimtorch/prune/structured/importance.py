"""Channel importance, scored per coupled unit (summed over every layer slice it owns).

* ``l1`` / ``l2``: norm of the weights a unit removes — filters, input columns,
  depthwise kernels and BN scales — summed over the group (Li et al., 2017,
  "Pruning filters for efficient ConvNets"; grouped as in Fang et al., 2023).
* ``bn``: |gamma| of the BatchNorm layers in the unit (Liu et al., 2017, "Learning
  efficient convolutional networks through network slimming").
* ``taylor``: (sum over the unit of weight x gradient)^2, averaged over batches
  (Molchanov et al., 2019, "Importance estimation for neural network pruning").
* ``random``: a baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.prune.structured.units import Graph, Member


def _slices(m: Member, grads: bool) -> list[torch.Tensor]:
    """Per-position weight slices of a member as ``(positions, -1)`` matrices."""
    mod = m.module
    get = (lambda p: p.grad if p.grad is not None else torch.zeros_like(p)) if grads else (lambda p: p.detach())
    w = get(mod.weight)
    if m.role in ("out", "dw"):
        if isinstance(mod, nn.Embedding):
            return [w.t().reshape(w.shape[1], -1)]
        out = [w.reshape(w.shape[0], -1)]
        if getattr(mod, "bias", None) is not None:
            out.append(get(mod.bias).reshape(-1, 1))
        return out
    if m.role == "in":
        return [w.transpose(0, 1).reshape(w.shape[1], -1)]
    if m.role == "bn" and mod.affine:
        return [w.reshape(-1, 1)]
    return []


def _accumulate(g: Graph, per_position: Callable[[Member], np.ndarray | None]) -> dict[int, float]:
    scores: dict[int, float] = {}
    for m in g.members:
        s = per_position(m)
        if s is None:
            continue
        for r, v in zip(g.uf.roots(m.ids).tolist(), s.tolist(), strict=True):
            scores[r] = scores.get(r, 0.0) + v
    return scores


@torch.no_grad()
def norm_scores(g: Graph, p: int) -> dict[int, float]:
    def fn(m: Member):
        sl = _slices(m, grads=False)
        if not sl:
            return None
        return sum((s.abs().sum(1) if p == 1 else s.pow(2).sum(1)) for s in sl).double().numpy()

    scores = _accumulate(g, fn)
    return {r: (v if p == 1 else v**0.5) for r, v in scores.items()}


@torch.no_grad()
def bn_scores(g: Graph) -> dict[int, float]:
    if not any(m.role == "bn" for m in g.members):
        raise ConfigError("importance 'bn' needs BatchNorm layers; this model has none to score", field="importance")
    scores = _accumulate(g, lambda m: m.module.weight.detach().abs().double().numpy() if m.role == "bn" else None)
    return scores


def taylor_scores(
    g: Graph,
    model: nn.Module,
    batches: Iterable,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
) -> dict[int, float]:
    total: dict[int, float] = {}
    n = 0
    was_training = model.training
    model.eval()  # BN statistics stay as trained
    try:
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss_fn(model, x, y).backward()
            with torch.no_grad():
                wg = _accumulate(g, lambda m: _wg(m))
            for r, v in wg.items():
                total[r] = total.get(r, 0.0) + v * v
            n += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if n == 0:
        raise ConfigError("importance 'taylor' needs data (a dataset of (input, label) pairs)", field="importance")
    return {r: v / n for r, v in total.items()}


def _wg(m: Member) -> np.ndarray | None:
    w, gr = _slices(m, grads=False), _slices(m, grads=True)
    if not w:
        return None
    return sum((a * b).sum(1) for a, b in zip(w, gr, strict=True)).double().numpy()


def random_scores(g: Graph, seed: int) -> dict[int, float]:
    rng = np.random.default_rng(seed)
    return {r: float(rng.random()) for grp in g.groups for r in grp}
