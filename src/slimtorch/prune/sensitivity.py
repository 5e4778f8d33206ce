"""Per-layer sensitivity analysis (Han et al. 2015, Fig. 5).

Prune one layer at a time to increasing sparsities *without* retraining and
measure accuracy: layers whose accuracy collapses early are sensitive and get a
lower sparsity. :func:`sparsities_for_tolerance` turns the curves into a
``per_layer`` dict for :class:`~slimtorch.prune.PruneConfig`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from slimtorch.core.fileio import atomic_write_json
from slimtorch.core.layers import LayerSelection
from slimtorch.prune.config import PruneConfig
from slimtorch.prune.prune import prune
from slimtorch.prune.select import prunable_layers
from slimtorch.train import distributed as D
from slimtorch.train import evaluate

DEFAULT_SPARSITIES = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)


def sensitivity(
    model: nn.Module,
    eval_data: Dataset,
    sparsities: Sequence[float] = DEFAULT_SPARSITIES,
    layers: LayerSelection | dict | None = None,
    method: str = "magnitude",
    data: Any = None,
    *,
    distributed: bool = True,
) -> dict[str, list[tuple[float, float]]]:
    """Accuracy of ``model`` with each layer alone pruned to each sparsity.

    Args:
        model: the trained model (left untouched: every point prunes a copy).
        eval_data: labelled data for the accuracy.
        sparsities: values in [0, 1).
        layers: ``{include: [...], exclude: [...]}`` (:class:`~slimtorch.core.layers.LayerSelection`):
            the layers to analyse (default every prunable one).
        method: criterion (``magnitude``, ``activation``…); ``data`` for data-driven ones.
        distributed: under torchrun, share the (layer, sparsity) points among the
            processes; every rank returns the whole result. ``False`` runs them all here.

    Returns:
        layer fqn → ``[(sparsity, accuracy), ...]`` in the order of ``sparsities``.
    """
    names = list(prunable_layers(model, layers))
    # Sparsity 0 is the dense model whatever the layer: one evaluation serves every curve.
    points: list[tuple[str | None, float]] = [(None, 0.0)] if names and 0.0 in sparsities else []
    points += [(fqn, float(s)) for fqn in names for s in sparsities if s != 0.0]

    def accuracy(point: tuple[str | None, float]) -> float:
        fqn, s = point
        if fqn is None:
            return evaluate(model, eval_data).accuracy
        pruned = prune(
            model, PruneConfig(method=method, sparsity=s, layers={"include": [glob.escape(fqn)]}, protect=False), data
        )  # a copy
        return evaluate(pruned, eval_data).accuracy

    run = D.fan_out if distributed else lambda fn, items: [fn(x) for x in items]
    accs = dict(zip(points, run(accuracy, points), strict=True))
    return {fqn: [(float(s), accs[(None, 0.0) if s == 0.0 else (fqn, float(s))]) for s in sparsities] for fqn in names}


def sparsities_for_tolerance(
    result: dict[str, list[tuple[float, float]]], baseline: float, tolerance: float = 0.005
) -> dict[str, float]:
    """Per layer, the highest measured sparsity whose accuracy is >= ``baseline − tolerance``.

    The curve is read left to right and stops at the first point below the bound,
    so a noisy recovery at a higher sparsity is not trusted.
    """
    chosen: dict[str, float] = {}
    for fqn, curve in result.items():
        best = 0.0
        for s, acc in sorted(curve):
            if acc < baseline - tolerance:
                break
            best = s
        chosen[fqn] = best
    return chosen


def save_sensitivity(
    result: dict[str, list[tuple[float, float]]],
    json_path: str | os.PathLike,
    png_path: str | os.PathLike | None = None,
    title: str = "Pruning sensitivity",
) -> dict[str, Path]:
    """Write the curves as JSON (``{layer: [[sparsity, accuracy], ...]}``) and optionally a PNG plot."""
    paths = {"json": atomic_write_json(json_path, {k: [list(p) for p in v] for k, v in result.items()})}
    if png_path is not None:
        paths["png"] = plot_sensitivity(result, png_path, title)
    return paths


def plot_sensitivity(
    result: dict[str, list[tuple[float, float]]], path: str | os.PathLike, title: str = "Pruning sensitivity"
) -> Path:
    """Accuracy vs. sparsity, one line per layer, as a PNG (no display needed)."""
    import io

    # A bare Figure renders through Agg without pyplot, so no global backend is switched.
    from matplotlib.figure import Figure

    from slimtorch.core.fileio import atomic_write_bytes

    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.add_subplot()
    for fqn, curve in result.items():
        xs, ys = zip(*sorted(curve), strict=True)
        ax.plot([100 * x for x in xs], [100 * y for y in ys], marker="o", label=fqn)
    ax.set_xlabel("weights pruned in this layer only (%)")
    ax.set_ylabel("top-1 accuracy, no retraining (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())
