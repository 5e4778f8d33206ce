"""Accuracy-aware fallback: keep the most sensitive layers in float until a fidelity target is met.

Sensitivity of a layer is measured, not guessed: the whole model is quantized
except that one layer, and the gain in fidelity (drop in KL, or in
1 − cosine) is its score ("leave-one-out", cf. the per-layer analysis in
Nagel et al. 2021, "A White Paper on Neural Network Quantization", §4.6).
Layers are then returned to float greedily, most sensitive first, until the
target holds or the budget is spent; the best try is kept either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimtorch.deploy.config import FidelityTarget
from slimtorch.deploy.fidelity import meets, score


@dataclass
class FallbackResult:
    path: Path
    excluded: list[str]
    metrics: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)


def accuracy_aware_fallback(
    quantize: Callable[[list[str]], Path],
    evaluate: Callable[[Path], dict[str, float]],
    layers: list[str],
    keep: list[str],
    target: FidelityTarget,
    budget: int,
) -> FallbackResult:
    """Quantize with ``keep`` in float; add layers back to float until ``evaluate`` meets ``target``.

    Args:
        quantize: excluded layer names → path of the quantized artifact.
        evaluate: artifact path → fidelity metrics (:func:`slimtorch.deploy.fidelity.fidelity`).
        layers: all quantizable layer names.
        keep: layers the user keeps in float regardless.
        budget: most layers the fallback may add to ``keep``.
    """
    keep = list(keep)
    path = quantize(keep)
    metrics = evaluate(path)
    info: dict[str, Any] = {"fidelity_all_int8": metrics, "fallback_steps": []}
    if meets(metrics, target) or budget == 0:
        info["target_met"] = meets(metrics, target)
        info["fidelity_checked"] = metrics
        return FallbackResult(path, keep, metrics, info)
    base = score(metrics)
    gains = {}
    for name in (n for n in layers if n not in keep):
        p = quantize(keep + [name])
        gains[name] = base - score(evaluate(p))
        p.unlink(missing_ok=True)
    ranking = sorted(gains, key=gains.get, reverse=True)
    info["sensitivity"] = [{"layer": n, "gain": gains[n]} for n in ranking]
    best = (base, path, keep, metrics)
    for k in range(1, min(budget, len(ranking)) + 1):
        excl = keep + ranking[:k]
        p = quantize(excl)
        m = evaluate(p)
        info["fallback_steps"].append({"float_layers": len(excl), "metrics": m})
        if score(m) < best[0] or meets(m, target):
            if best[1] != p and best[1].exists():
                best[1].unlink()
            best = (score(m), p, excl, m)
        if meets(m, target):
            break
    info["target_met"] = meets(best[3], target)
    info["fidelity_checked"] = best[3]
    return FallbackResult(best[1], best[2], best[3], info)
