"""``prune_channels``: remove whole filters, channels, neurons and heads so the model gets faster.

Masked zeros do not speed up dense kernels; a layer with fewer channels does.
The dependency graph (:mod:`.graph`) finds the channels that must go together,
an importance criterion (:mod:`.importance`) ranks those units, and
:mod:`.apply` rebuilds the layers at the new sizes.
"""

from __future__ import annotations

import glob
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from slimtorch.core.config import validate_config
from slimtorch.core.errors import ConfigError, UnsupportedModelError
from slimtorch.core.inplace import working_model
from slimtorch.core.layers import select
from slimtorch.prune.structured import importance as imp
from slimtorch.prune.structured.apply import remove_channels
from slimtorch.prune.structured.compensate import activation_scores, compensate, input_stats
from slimtorch.prune.structured.config import StructuredConfig
from slimtorch.prune.structured.graph import PRODUCERS, Graph, build_graph, classifier_name, matches
from slimtorch.prune.structured.transformer import encoder_layers, prune_encoder

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y)


def _round_keep(n: int, keep: int, round_to: int) -> int:
    return max(1, min(n, math.ceil(keep / round_to) * round_to))


def _group_ratio(cfg: StructuredConfig, producers: list[str]) -> float:
    for pattern, r in cfg.per_layer.items():
        if any(matches(n, (pattern,)) for n in producers):
            return r
    return cfg.ratio


def select_units(g: Graph, scores: dict[int, float], cfg: StructuredConfig) -> set[int]:
    """Units (union-find roots) to remove, honouring ratios, fixed units and ``round_to``.

    Ratios and ``round_to`` apply to each *segment*: the units one set of producer
    layers owns (after a concatenation, every concatenated producer is its own
    segment), so every layer keeps a multiple of ``round_to`` and at least one channel.
    """
    segments: dict[tuple[int, tuple[str, ...]], list[int]] = {}
    for gi, units in enumerate(g.groups):
        for u in units:
            segments.setdefault((gi, g.unit_producers.get(u, ())), []).append(u)
    plans = []  # (group index, segment size, prunable units sorted by score, producers)
    for (gi, producers), units in segments.items():
        free = sorted((u for u in units if g.prunable(u)), key=lambda u: scores.get(u, 0.0))
        plans.append((gi, len(units), free, list(producers)))
    removed: set[int] = set()
    if cfg.scope == "uniform":
        for _, n, free, producers in plans:
            keep = _round_keep(n, n - int(_group_ratio(cfg, producers) * n), cfg.round_to)
            removed.update(free[: max(0, min(len(free), n - keep))])
        return removed
    # global: one ranking of scores normalised by their group's mean (Torch-Pruning's global pruning)
    means: dict[int, float] = {}
    for gi, units in enumerate(g.groups):
        vals = [scores.get(u, 0.0) for u in units if g.prunable(u)]
        means[gi] = float(np.mean(vals)) if vals else 1.0
    ranked = sorted(
        (scores.get(u, 0.0) / (means[gi] or 1.0), si, u) for si, (gi, _, free, _) in enumerate(plans) for u in free
    )
    budget = int(cfg.ratio * sum(n for _, n, _, _ in plans))
    count = [0] * len(plans)
    for _, si, _u in ranked:
        if budget <= 0:
            break
        if count[si] + 1 <= int(cfg.max_group_ratio * plans[si][1]):
            count[si] += 1
            budget -= 1
    for si, (_, n, free, _) in enumerate(plans):
        keep = _round_keep(n, n - count[si], cfg.round_to)
        removed.update(free[: max(0, min(len(free), n - keep))])
    return removed


def _scores(g: Graph, model, cfg: StructuredConfig, data, loss_fn, batch_size, stats) -> dict[int, float]:
    if cfg.importance in ("l1", "l2"):
        return imp.norm_scores(g, 1 if cfg.importance == "l1" else 2)
    if cfg.importance == "bn":
        return imp.bn_scores(g)
    if cfg.importance == "random":
        return imp.random_scores(g, cfg.seed)
    if cfg.importance == "activation":
        return activation_scores(g, stats)
    if data is None:
        raise ConfigError("importance 'taylor' needs data=(a dataset of (input, label) pairs)", field="importance")
    return imp.taylor_scores(g, model, _batches(data, cfg, batch_size), loss_fn or _ce)


def _batches(data, cfg: StructuredConfig, batch_size: int) -> list:
    if data is None:
        raise ConfigError(f"importance '{cfg.importance}' / compensate need data=(a dataset of inputs)", field="data")
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size, shuffle=False)
    return [b for _, b in zip(range(cfg.calib_batches), loader, strict=False)]


def _outputs(model: nn.Module, example_input) -> list[torch.Tensor]:
    from slimtorch.prune.structured.graph import _tensors

    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _tensors(model(*inputs))
    finally:
        model.train(was)


def prune_channels(
    model: nn.Module,
    config: StructuredConfig | dict | None,
    example_input: torch.Tensor | tuple,
    data: Dataset | DataLoader | None = None,
    *,
    loss_fn: LossFn | None = None,
    batch_size: int = 64,
    inplace: bool = False,
) -> nn.Module:
    """Remove the least important channels (and everything coupled to them) from a copy of ``model``.

    Args:
        model: any ``nn.Module`` (left as it is unless ``inplace``). BERT-style encoders
            (Hugging Face ``BertLayer`` layout) get their attention heads and FFN neurons pruned.
        config: :class:`StructuredConfig` or its dict.
        example_input: a tensor (or tuple of positional inputs) the model is traced with,
            e.g. ``torch.randn(2, 3, 224, 224)``.
        data: ``(input, label)`` dataset or loader, needed for ``importance="taylor"``.
        loss_fn: ``loss_fn(model, x, y)`` for Taylor scores; default cross-entropy.
        batch_size: batch size for Taylor scores when ``data`` is a dataset.
        inplace: resize the layers of ``model`` itself instead of a deep copy's.

    Returns:
        The model with smaller layers (``model`` itself when ``inplace``);
        ``.slimtorch_structured`` holds the new sizes.

    Raises:
        ConfigError: a bad config field.
        UnsupportedModelError: a layer or op whose channels cannot be rewritten safely (named).
    """
    cfg = validate_config(StructuredConfig, config)
    for pattern, r in cfg.per_layer.items():
        if not 0.0 <= r < 1.0:
            raise ConfigError(f"per_layer['{pattern}'] must be in [0, 1), got {r}", field=f"per_layer.{pattern}")
    model = working_model(model, inplace)
    if encoder_layers(model):
        if cfg.layers.include is not None or cfg.layers.exclude:
            raise ConfigError(
                "structured pruning of a BERT-style encoder prunes every layer's heads and FFN neurons; "
                "it takes no layer selection yet: leave 'layers' out",
                field="layers",
            )
        summary = prune_encoder(model, cfg, calib=data if data is not None else example_input)
        model.slimtorch_structured = summary
        return model
    ignored = _ignored(model, cfg)
    tied = tuple(_tied_layers(model))
    head = classifier_name(model) if cfg.ignore_classifier else None
    if head is not None:
        ignored += (head,)
    before = [tuple(t.shape) for t in _outputs(model, example_input)]
    g = build_graph(model, example_input, ignored, frozen=tied)
    stats = None
    if cfg.importance == "activation" or cfg.compensate:
        stats = input_stats(g, model, _batches(data, cfg, batch_size))
    scores = _scores(g, model, cfg, data, loss_fn, batch_size, stats)
    removed = select_units(g, scores, cfg)
    if not removed and (cfg.ratio > 0 or any(cfg.per_layer.values())):
        raise UnsupportedModelError(_nothing_removed(g, model, ignored + tied))
    if cfg.compensate:
        compensate(g, removed, stats)
    summary = remove_channels(g, removed)
    try:
        after = [tuple(t.shape) for t in _outputs(model, example_input)]
    except RuntimeError as exc:  # a channel-indexed constant the graph could not see
        raise UnsupportedModelError(
            f"the pruned model no longer runs ({exc}); a tensor outside the layers (a buffer or constant) "
            "depends on the channel count. Add the layers feeding it to layers: {exclude: [...]}."
        ) from exc
    if after != before:
        raise UnsupportedModelError(f"pruning changed the output shapes {before} -> {after}; this is a bug")
    model.slimtorch_structured = summary
    return model


def _ignored(model: nn.Module, cfg: StructuredConfig) -> tuple[str, ...]:
    """Patterns of the modules whose outputs keep their size: the excluded ones and the producers not included.

    Raises:
        ConfigError: a pattern of ``cfg.layers`` matches nothing (:func:`slimtorch.core.layers.select`).
    """
    chosen = select(model, cfg.layers, PRODUCERS, what="Conv/Linear/Embedding")
    left_out = [glob.escape(n) for n, m in model.named_modules() if isinstance(m, PRODUCERS) and n not in chosen]
    return (*cfg.layers.exclude, *left_out)


def _tied_layers(model: nn.Module) -> list[str]:
    """Modules sharing a parameter object with another module (tied embedding / output layers).

    Slicing one of them would give it a new, untied parameter: the model would grow and
    the tie silently break. Their channels are kept instead.
    """
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        for p in module.parameters(recurse=False):
            owners.setdefault(id(p), []).append(name)
    return sorted({n for names in owners.values() if len(names) > 1 for n in names})


def _nothing_removed(g, model: nn.Module, ignored: tuple[str, ...]) -> str:
    """Why a structured prune would remove no channel: the layers of the groups that cannot shrink."""
    pinned: set[str] = set()
    for units in g.groups:
        if not any(g.prunable(u) for u in units):
            s = set(units)
            pinned |= {m.name for m in g.members if s & set(g.uf.roots(m.ids).tolist())}
    why = (
        f"none of its {len(g.groups)} channel group(s) can shrink (held by: {', '.join(sorted(pinned)[:8])})"
        if g.groups
        else "every layer's channels are coupled to a layer that keeps its size"
    )
    return (
        f"structured pruning would remove nothing from {type(model).__name__}: {why}; ignored: "
        f"{', '.join(dict.fromkeys(ignored)) or 'none'}. Recurrent layers, tied weights, "
        "grouped convolutions in a residual "
        "and the ignored classifier fix their channels; use unstructured pruning or INT8 for this model"
    )


def channel_groups(model: nn.Module, example_input, ignored: tuple[str, ...] = ()) -> list[dict]:
    """The coupled groups as readable dicts: producers, member layers and prunable unit counts."""
    g = build_graph(model, example_input, ignored)
    out = []
    for units, producers in zip(g.groups, g.group_producers, strict=True):
        s = set(units)
        layers = sorted({f"{m.name}:{m.role}" for m in g.members if s & set(g.uf.roots(m.ids).tolist())})
        out.append(
            {
                "producers": producers,
                "layers": layers,
                "units": len(units),
                "prunable": sum(g.prunable(u) for u in units),
            }
        )
    return out


__all__ = ["UnsupportedModelError", "channel_groups", "prune_channels", "select_units"]
