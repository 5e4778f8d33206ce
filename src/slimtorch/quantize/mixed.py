"""Mixed precision: per-layer bit widths chosen from a sensitivity sweep.

Greedy search in the spirit of HAWQ-style sensitivity ordering (Dong et al.
2019), with measured accuracy instead of Hessian traces: each layer alone is
quantized at every candidate bit width; every layer gets the lowest width whose
accuracy drop stays within ``tolerance``; then the joint model is checked and,
while it misses the tolerance, the layer that hurts most at its current width
is raised one step.
"""

from __future__ import annotations

import glob
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from slimtorch.core.layers import select
from slimtorch.quantize.config import KMeansConfig, QuantConfig
from slimtorch.quantize.kmeans import kmeans_share
from slimtorch.quantize.layers import QUANTIZABLE
from slimtorch.quantize.model import quantize_model
from slimtorch.train import distributed as D


def _apply(model: nn.Module, cfg: QuantConfig | KMeansConfig, calib_data) -> nn.Module:
    if isinstance(cfg, KMeansConfig):
        return kmeans_share(model, cfg)
    return quantize_model(model, cfg, calib_data)


def _accuracy(model: nn.Module, data: Dataset) -> float:
    from slimtorch.train import evaluate

    return evaluate(model, data).accuracy


def sensitivity(
    model: nn.Module,
    config: QuantConfig | KMeansConfig,
    eval_data: Dataset,
    bits_options: tuple[int, ...] = (8, 6, 4, 3, 2),
    calib_data=None,
    *,
    distributed: bool = True,
) -> dict[str, dict[int, float]]:
    """Accuracy with one layer at a time quantized to each width ``{layer: {bits: accuracy}}``.

    Under torchrun (and ``distributed=True``) the (layer, bits) points are shared among the
    processes and every rank returns the whole result.
    """
    names = list(select(model, config.layers, QUANTIZABLE))
    points = [(name, b) for name in names for b in bits_options]

    def accuracy(point: tuple[str, int]) -> float:
        name, b = point
        cfg = config.replace(layers={"include": [glob.escape(name)]}, per_layer={name: b})
        return _accuracy(_apply(model, cfg, calib_data), eval_data)

    accs = D.fan_out(accuracy, points) if distributed else [accuracy(p) for p in points]
    out: dict[str, dict[int, float]] = {name: {} for name in names}
    for (name, b), acc in zip(points, accs, strict=True):
        out[name][b] = acc
    return out


@dataclass
class MixedPrecisionResult:
    per_layer: dict[str, int]
    accuracy: float
    baseline: float
    sensitivity: dict[str, dict[int, float]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_bits(
    model: nn.Module,
    config: QuantConfig | KMeansConfig,
    eval_data: Dataset,
    tolerance: float = 0.005,
    bits_options: tuple[int, ...] = (8, 6, 4, 3, 2),
    calib_data=None,
) -> MixedPrecisionResult:
    """Lowest bits per layer keeping accuracy within ``tolerance`` (absolute, e.g. 0.005 = 0.5 pp).

    Returns:
        The chosen ``per_layer`` widths (put them in ``config.replace(per_layer=...)``), the
        joint accuracy, the float baseline and the sweep.
    """
    options = sorted(set(bits_options), reverse=True)
    baseline = _accuracy(model, eval_data)
    sens = sensitivity(model, config, eval_data, tuple(options), calib_data)
    choice = {}
    for name, accs in sens.items():
        ok = [b for b in options if accs[b] >= baseline - tolerance]
        choice[name] = min(ok) if ok else options[0]
    while True:
        cfg = config.replace(per_layer=dict(choice))
        acc = _accuracy(_apply(model, cfg, calib_data), eval_data)
        if acc >= baseline - tolerance:
            break
        raisable = [n for n in choice if choice[n] < options[0]]
        if not raisable:
            break
        worst = min(raisable, key=lambda n: sens[n][choice[n]])
        choice[worst] = min(b for b in options if b > choice[worst])
    return MixedPrecisionResult(choice, acc, baseline, sens, cfg.to_dict())
