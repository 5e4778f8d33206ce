"""Importance criteria: a score per weight, higher = more important.

* ``magnitude``: |w| (Han et al. 2015, "Learning both weights and connections").
* ``han``: the same scores, but each layer keeps the weights above
  ``quality × std`` of its remaining weights (Han et al.'s per-layer threshold).
* ``random``: seeded uniform scores, the baseline every criterion must beat.
* ``taylor``: first-order Taylor estimate of the loss change when a weight is
  removed, |w · dL/dw|, summed over batches (Molchanov et al. 2017/2019).
* ``activation``: |w_ij| × ||x_j||₂, the weight times the L2 norm of the input
  feature it multiplies, gathered with forward hooks (Sun et al. 2023, "Wanda"):
  a large weight on an input that is always ~0 has no effect on the output.

Scores are computed on the *effective* (already masked) weights, so weights an
earlier call pruned score 0 and are pruned first again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from slimtorch.core.errors import ConfigError
from slimtorch.core.registry import Registry
from slimtorch.prune.config import PruneConfig
from slimtorch.prune.mask import original_weight

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
Scores = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Criterion:
    """A scoring function plus what it needs.

    ``score(model, layers, config, data, loss_fn) -> {fqn: scores shaped like the weight}``.
    ``threshold``: masks come from a per-layer score threshold (``han``), not a sparsity.
    """

    name: str
    score: Callable[..., Scores]
    needs_data: bool = False
    threshold: bool = False


CRITERIA: Registry[Criterion] = Registry("pruning criterion")


def register_criterion(name: str, needs_data: bool = False, threshold: bool = False):
    """Decorator adding ``score(model, layers, config, data, loss_fn)`` to :data:`CRITERIA`."""

    def deco(fn: Callable[..., Scores]) -> Callable[..., Scores]:
        CRITERIA.register(name, Criterion(name, fn, needs_data, threshold))
        return fn

    return deco


def iter_batches(data: Any, batch_size: int, limit: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """Up to ``limit`` batches from a Dataset, DataLoader, tensor or iterable of batches (fixed order)."""
    if isinstance(data, torch.Tensor):
        source: Iterable = ((data[i : i + batch_size],) for i in range(0, len(data), batch_size))
    elif isinstance(data, Dataset) and not isinstance(data, DataLoader):
        source = DataLoader(data, batch_size=batch_size, shuffle=False)
    else:
        source = data
    for batch in islice(source, limit):
        yield tuple(batch) if isinstance(batch, list | tuple) else (batch,)


@register_criterion("magnitude")
@register_criterion("han", threshold=True)
@torch.no_grad()
def magnitude_scores(
    model: nn.Module, layers: dict[str, nn.Module], config: PruneConfig, data=None, loss_fn=None
) -> Scores:
    return {fqn: m.weight.detach().abs() for fqn, m in layers.items()}


@register_criterion("random")
@torch.no_grad()
def random_scores(
    model: nn.Module, layers: dict[str, nn.Module], config: PruneConfig, data=None, loss_fn=None
) -> Scores:
    gen = torch.Generator().manual_seed(config.seed)
    out = {}
    for fqn, m in layers.items():
        w = m.weight.detach()
        # Already-pruned weights keep score 0 so repeated calls stay monotone.
        out[fqn] = torch.rand(w.shape, generator=gen).to(w.device) * (w != 0)
    return out


def _default_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y)


@register_criterion("taylor", needs_data=True)
def taylor_scores(
    model: nn.Module, layers: dict[str, nn.Module], config: PruneConfig, data=None, loss_fn=None
) -> Scores:
    """Σ_batches |w ⊙ ∂L_b/∂w| with L_b the mean loss of batch b.

    Gradients are taken with ``torch.autograd.grad`` so the model's ``.grad`` fields
    are untouched. For a masked layer the gradient of the trainable ``original``
    equals the gradient of the effective weight at kept positions, and the
    effective weight is 0 elsewhere, so the product is the same.
    """
    loss_fn = loss_fn or _default_loss
    params = [original_weight(m) for m in layers.values()]
    scores = {fqn: torch.zeros_like(m.weight) for fqn, m in layers.items()}
    was_training = model.training
    model.eval()
    n = 0
    try:
        for batch in iter_batches(data, config.batch_size, config.batches):
            if len(batch) < 2:
                raise ConfigError("the 'taylor' criterion needs labelled batches (inputs, targets)", field="method")
            loss = loss_fn(model, batch[0], batch[1])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for (fqn, m), g in zip(layers.items(), grads, strict=True):
                    scores[fqn] += (m.weight * g).abs()
            n += 1
    finally:
        model.train(was_training)
    if n == 0:
        raise ConfigError("the 'taylor' criterion got no data batches", field="method")
    return {k: v.detach() for k, v in scores.items()}


def _input_features(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as a (rows, in_features) matrix matching ``weight.reshape(out, -1)`` columns."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros" and isinstance(module.padding, tuple):
        # im2col: each column of the convolution-as-matmul is one (channel, ky, kx) input.
        cols = nn.functional.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    # Other convolutions: one norm per input channel, shared by its kernel positions.
    k = module.weight[0, 0].numel()
    per_channel = x.transpose(0, 1).reshape(x.shape[1], -1)
    return per_channel.repeat_interleave(k, dim=0).t()


@register_criterion("activation", needs_data=True)
@torch.no_grad()
def activation_scores(
    model: nn.Module, layers: dict[str, nn.Module], config: PruneConfig, data=None, loss_fn=None
) -> Scores:
    """|W| × ||X_j||₂, with X_j the j-th input feature over every sample (and position)."""
    sq_sums: dict[str, torch.Tensor] = {}

    def hook(fqn: str):
        def fn(module: nn.Module, args: tuple) -> None:
            feats = _input_features(module, args[0].detach()).double()
            s = (feats * feats).sum(0)
            sq_sums[fqn] = sq_sums[fqn] + s if fqn in sq_sums else s

        return fn

    handles = [m.register_forward_pre_hook(hook(fqn)) for fqn, m in layers.items()]
    was_training = model.training
    model.eval()
    n = 0
    try:
        for batch in iter_batches(data, config.batch_size, config.batches):
            model(batch[0])
            n += 1
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if n == 0:
        raise ConfigError("the 'activation' criterion got no data batches", field="method")
    out = {}
    for fqn, m in layers.items():
        if fqn not in sq_sums:
            raise ConfigError(
                f"layer '{fqn}' was never called in the forward pass; leave it out with layers: {{exclude: [...]}}",
                field="layers.exclude",
            )
        w = m.weight.detach()
        cout = w.shape[0]
        norms = sq_sums[fqn].sqrt().to(w.dtype)
        groups = getattr(m, "groups", 1)
        per_group = norms.reshape(groups, -1)  # grouped conv: group g sees its own input slice
        norm_rows = per_group.repeat_interleave(cout // groups, dim=0)  # (out, in_per_group * k)
        out[fqn] = w.abs() * norm_rows.reshape(w.shape)
    return out
