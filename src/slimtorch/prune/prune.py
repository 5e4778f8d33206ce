"""``prune(model, config)``: score the weights, keep the best, install masks.

Implements one pruning step of Han et al. 2015 ("Learning both weights and
connections for efficient neural networks"): weights of low importance are
masked out. Masks are parametrizations (see :mod:`slimtorch.prune.mask`), so
fine-tuning afterwards keeps them, and a repeated call tightens them.

Exact fractions: a layer of ``n`` weights pruned to sparsity ``s`` loses exactly
``round(s · n)`` weights (ties broken by position), and a global prune removes
exactly ``round(s · N)`` of the pooled ``N`` weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimtorch.core.config import coerce
from slimtorch.core.errors import ConfigError, UnsupportedModelError
from slimtorch.core.inplace import working_model
from slimtorch.prune.config import PruneConfig
from slimtorch.prune.criteria import CRITERIA, LossFn
from slimtorch.prune.mask import get_mask, set_mask
from slimtorch.prune.protect import sensitive_layers
from slimtorch.prune.select import FilterFn, check_overrides, layer_value, prunable_layers


def _lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool tensor (flat), True at the ``k`` lowest scores (stable: earlier position first on ties)."""
    out = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        order = torch.sort(scores.reshape(-1), stable=True).indices
        out[order[:k]] = True
    return out


def topk_keep(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask keeping all but the ``round(sparsity · n)`` lowest-scoring entries."""
    k = round(sparsity * scores.numel())
    return ~_lowest(scores, k).reshape(scores.shape)


def nm_keep(scores: torch.Tensor, n: int, m: int, fqn: str = "") -> torch.Tensor:
    """N:M mask: in each group of ``m`` consecutive weights along the input dimension keep the ``n`` best.

    The input dimension of a Linear weight ``(out, in)`` is ``in``; of a convolution
    ``(out, in, *k)`` it is the flattened ``in · k`` (the reduction axis of the
    convolution as a matrix product, as sparse tensor cores see it).
    """
    rows = scores.reshape(scores.shape[0], -1)
    if rows.shape[1] % m:
        raise UnsupportedModelError(
            f"layer '{fqn}': {rows.shape[1]} inputs per output is not a multiple of M={m}, "
            f"so the {n}:{m} pattern does not tile it; add it to layers: {{exclude: [...]}}"
        )
    groups = rows.reshape(rows.shape[0], -1, m)
    # Already-pruned weights score -inf, so they are only "kept" here when a group has
    # fewer than n survivors; the monotone intersection afterwards drops them again.
    idx = groups.topk(n, dim=-1).indices
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, idx, True)
    return keep.reshape(scores.shape)


def _han_keep(weight: torch.Tensor, prev: torch.Tensor | None, quality: float) -> torch.Tensor:
    alive = weight[prev] if prev is not None else weight.reshape(-1)
    if alive.numel() < 2:
        return prev.clone() if prev is not None else torch.ones_like(weight, dtype=torch.bool)
    threshold = quality * float(alive.std())
    return weight.abs() > threshold


@torch.no_grad()
def compute_masks(
    model: nn.Module,
    config: PruneConfig,
    data: Any = None,
    *,
    loss_fn: LossFn | None = None,
    filter_fn: FilterFn | None = None,
) -> dict[str, torch.Tensor]:
    """The keep-masks :func:`prune` would install (fqn → bool tensor), without installing them."""
    layers = prunable_layers(model, config.layers, filter_fn)
    criterion = CRITERIA.get(config.method)
    if criterion.needs_data and data is None:
        raise ConfigError(
            f"method '{config.method}' scores weights from data: call prune(model, config, data=...)",
            field="method",
        )
    check_overrides(layers, config.per_layer, "per_layer")
    check_overrides(layers, config.per_layer_quality, "per_layer_quality")
    with torch.enable_grad():
        scores = criterion.score(model, layers, config, data, loss_fn)

    prev = {fqn: (m.mask.clone() if (m := get_mask(mod)) is not None else None) for fqn, mod in layers.items()}
    if config.monotone:
        for fqn, p in prev.items():
            if p is not None:
                scores[fqn] = scores[fqn].masked_fill(~p, float("-inf"))

    keep: dict[str, torch.Tensor] = {}
    pool: list[str] = []
    caps = protected(model, config)
    for fqn, module in layers.items():
        if config.nm is not None:
            keep[fqn] = nm_keep(scores[fqn], *config.nm, fqn=fqn)
        elif criterion.threshold:
            q = layer_value(fqn, config.per_layer_quality, config.quality)
            keep[fqn] = _han_keep(module.weight.detach(), prev[fqn] if config.monotone else None, q)
        elif config.scope == "layer" or layer_value(fqn, config.per_layer, -1.0) >= 0:
            s = layer_value(fqn, config.per_layer, -1.0)
            if s < 0:  # no per_layer value: the default, capped for a sensitive layer
                s = min(config.sparsity, caps[fqn][0]) if fqn in caps else config.sparsity
            keep[fqn] = topk_keep(scores[fqn], s)
        else:
            pool.append(fqn)
    if pool:
        # Global: one threshold over the pooled scores, so sensitive layers keep more.
        flat = torch.cat([scores[f].reshape(-1) for f in pool])
        pruned = _lowest(flat, round(config.sparsity * flat.numel()))
        for fqn, part in zip(pool, pruned.split([scores[f].numel() for f in pool]), strict=True):
            keep[fqn] = ~part.reshape(scores[fqn].shape)
            if not config.allow_full and not bool(keep[fqn].any()):
                raise ConfigError(
                    f"global pruning to {config.sparsity} would remove every weight of layer '{fqn}'; "
                    "lower 'sparsity', give the layer its own 'per_layer' value, or set allow_full=True",
                    field="sparsity",
                )
    if config.monotone:
        for fqn, p in prev.items():
            if p is not None:
                keep[fqn] &= p
    return keep


def protected(model: nn.Module, config: PruneConfig) -> dict[str, tuple[float, str]]:
    """fqn -> (cap, reason) of the layers whose default sparsity ``config`` caps (see :mod:`slimtorch.prune.protect`).

    Empty unless ``config.protect`` and a uniform (``layer`` scope) magnitude-style
    unstructured prune; layers with a ``per_layer`` value are not listed.
    """
    if not config.protect or config.scope != "layer" or config.nm is not None or CRITERIA.get(config.method).threshold:
        return {}
    return {
        fqn: v
        for fqn, v in sensitive_layers(model, config.small_layer_weights).items()
        if layer_value(fqn, config.per_layer, -1.0) < 0
    }


def prune(
    model: nn.Module,
    config: PruneConfig | dict | None = None,
    data: Any = None,
    *,
    loss_fn: LossFn | None = None,
    filter_fn: FilterFn | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Prune a copy of ``model`` (or ``model`` itself with ``inplace=True``) according to ``config``.

    Args:
        model: any module; its Linear / Conv weights matching the config's patterns
            are masked (with a parametrization that survives training).
        config: a :class:`PruneConfig` (or its dict form).
        data: for ``taylor`` / ``activation``: a Dataset / DataLoader / iterable of
            ``(inputs, targets)`` batches; ``config.batches`` batches are used.
        loss_fn: ``loss_fn(model, x, y) -> scalar`` for ``taylor`` (default cross-entropy).
        filter_fn: ``filter_fn(module, fqn) -> bool`` narrowing the selection further.
        inplace: mask ``model`` itself and return it, instead of a deep copy.

    Returns:
        The pruned model (``model`` itself when ``inplace``). A layer is only parametrized
        when something in it is pruned (or it was already masked), so sparsity 0 leaves
        the model as it was.
    """
    config = coerce(PruneConfig, config)
    model = working_model(model, inplace)
    masks = compute_masks(model, config, data, loss_fn=loss_fn, filter_fn=filter_fn)
    recurrent = [f"{n} ({type(m).__name__})" for n, m in model.named_modules() if isinstance(m, nn.RNNBase)]
    if recurrent and config.layers.include is None:
        import warnings

        warnings.warn(
            f"pruning covers Linear / Conv weights; recurrent layers stay dense: {', '.join(recurrent)} "
            "(INT8 dynamic mode quantizes LSTMs)",
            stacklevel=2,
        )
    for fqn, keep in masks.items():
        module = model.get_submodule(fqn)
        if get_mask(module) is None and bool(keep.all()):
            continue
        set_mask(module, keep)
    return model


def attach_masks(model: nn.Module, config: PruneConfig | None = None, filter_fn: FilterFn | None = None) -> nn.Module:
    """Install all-ones masks on the selected layers (nothing pruned yet).

    Gradual schedules call this before the optimizer is built so the parameter
    structure (and checkpoint keys) stays the same for the whole run.
    """
    config = coerce(PruneConfig, config)
    for module in prunable_layers(model, config.layers, filter_fn).values():
        if get_mask(module) is None:
            set_mask(module, torch.ones_like(module.weight, dtype=torch.bool))
    return model
