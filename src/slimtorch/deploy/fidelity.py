"""Fidelity of a converted model to its float reference, where no labels exist.

Classifier outputs: top-1 agreement and mean KL(ref || int8) of the softmaxes, and
the agreement on the examples the reference is confident about (top-1 probability
>= :data:`CONFIDENT`). On inputs far from the training distribution (random crops
of textures or text for an ImageNet model) many reference predictions are near
ties, and any perturbation, even 8-bit rounding of the weights alone, flips some of
them; the confident agreement separates those flips from real damage.
Any output: mean / min cosine similarity of the flattened per-example outputs.
"""

from __future__ import annotations

import numpy as np
import torch

from slimtorch.deploy.config import FidelityTarget

CONFIDENT = 0.5


def fidelity(ref: torch.Tensor | np.ndarray, out: torch.Tensor | np.ndarray) -> dict[str, float]:
    ref, out = torch.as_tensor(np.asarray(ref)).float(), torch.as_tensor(np.asarray(out)).float()
    a, b = ref.reshape(ref.shape[0], -1), out.reshape(out.shape[0], -1)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    res = {
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "n": int(ref.shape[0]),
        "max_abs_diff": float((a - b).abs().max()),
    }
    if ref.ndim == 2 and ref.shape[1] > 1:
        lr, lo = ref.log_softmax(1), out.log_softmax(1)
        res["top1_agreement"] = float((ref.argmax(1) == out.argmax(1)).float().mean())
        res["mean_kl"] = float((lr.exp() * (lr - lo)).sum(1).mean())
        sure = lr.exp().amax(1) >= CONFIDENT
        res["confident_n"] = int(sure.sum())
        if res["confident_n"]:
            res["confident_agreement"] = float((ref.argmax(1) == out.argmax(1))[sure].float().mean())
    return res


def meets(metrics: dict[str, float], target: FidelityTarget) -> bool:
    """Whether every metric the target sets is reached (missing metrics are not checked)."""
    checks = [
        ("top1_agreement", target.min_agreement, 1),
        ("mean_kl", target.max_kl, -1),
        ("cosine_mean", target.min_cosine, 1),
    ]
    for key, bound, sign in checks:
        if bound is not None and key in metrics and sign * (metrics[key] - bound) < 0:
            return False
    return True


def score(metrics: dict[str, float]) -> float:
    """One number to rank layers by sensitivity (higher is worse): KL for classifiers, 1 - cosine otherwise."""
    return metrics["mean_kl"] if "mean_kl" in metrics else 1.0 - metrics["cosine_mean"]
