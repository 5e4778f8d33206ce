"""Accuracy-aware fallback: keep the most sensitive layers in float until a fidelity target is met.

Sensitivity is measured, not guessed: the whole model is quantized except one
*unit*, and the gain in fidelity (drop in KL, or in 1 − cosine) is its score
("leave-one-out", cf. the per-layer analysis in Nagel et al. 2021, "A White
Paper on Neural Network Quantization", §4.6). A unit is one layer, or (static
ONNX Runtime) one activation tensor together with the nodes that must stay
float for it to stay float (:mod:`slimtorch.deploy.regions`): on MobileNetV2 the
worst errors sit in activations, which excluding any single layer cannot reach.

Units are then tried greedily, most sensitive first. One is kept only if it
improves the score (or meets the target), and only while the layers kept float
fit the budget; the best try is kept either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimtorch.core.progress import track
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
    regions: dict[str, list[str]] | None = None,
) -> FallbackResult:
    """Quantize with ``keep`` in float; add units to float until ``evaluate`` meets ``target``.

    Args:
        quantize: excluded node names → path of the quantized artifact.
        evaluate: artifact path → fidelity metrics (:func:`slimtorch.deploy.fidelity.fidelity`).
        layers: all quantizable layer names (each one is a unit).
        keep: layers the user keeps in float regardless.
        budget: most layers (names in ``layers``) the fallback may add to ``keep``.
        regions: further units, ``name -> nodes`` (e.g. an activation tensor's float region); their
            nodes may include non-layer ops (Clip, Add …), which do not count against the budget.
    """
    keep = list(keep)
    path = quantize(keep)
    metrics = evaluate(path)
    info: dict[str, Any] = {"fidelity_all_int8": metrics, "fallback_steps": []}
    if meets(metrics, target) or budget == 0:
        info["target_met"] = meets(metrics, target)
        info["fidelity_checked"] = metrics
        return FallbackResult(path, keep, metrics, info)
    layer_set = set(layers)
    units = {n: [n] for n in layers if n not in keep}
    for name, nodes in (regions or {}).items():
        extra = [n for n in nodes if n not in keep]
        if sum(n in layer_set for n in extra) <= budget and len(extra) > 1:
            units[f"tensor {name}"] = extra
    base = score(metrics)
    gains = {}
    # one conversion + evaluation per unit: about 100 units, minutes on MobileNetV2
    for name, nodes in track(list(units.items()), "INT8 fallback: sensitivity of each unit"):
        p = quantize(keep + nodes)
        gains[name] = base - score(evaluate(p))
        p.unlink(missing_ok=True)
    ranking = [n for n in sorted(gains, key=gains.get, reverse=True) if gains[n] > 0]
    info["sensitivity"] = [
        {"unit": n, "layers": [x for x in units[n] if x in layer_set], "gain": gains[n]}
        for n in sorted(gains, key=gains.get, reverse=True)
    ]
    best = (base, path, keep, metrics)
    excl = list(keep)
    for name in track(ranking, "INT8 fallback: trying units in float"):
        new = [n for n in units[name] if n not in excl]
        added = sum(n in layer_set for n in excl + new) - sum(n in layer_set for n in keep)
        if not any(n in layer_set for n in new) or added > budget:
            continue
        if len(info["fallback_steps"]) >= 2 * budget:  # bounded work: each step is a conversion + evaluation
            break
        p = quantize(excl + new)
        m = evaluate(p)
        improved = score(m) < best[0]
        info["fallback_steps"].append({"unit": name, "float_layers": added, "metrics": m, "kept": improved})
        if improved or meets(m, target):
            if best[1] != p and best[1].exists():
                best[1].unlink()
            excl = excl + new
            best = (score(m), p, excl, m)
        else:
            p.unlink(missing_ok=True)
        if meets(m, target):
            break
    info["target_met"] = meets(best[3], target)
    info["fidelity_checked"] = best[3]
    return FallbackResult(best[1], best[2], best[3], info)
