"""Fidelity of a converted model to its float reference, where no labels exist.

Classifier outputs: top-1 agreement and mean KL(ref || int8) of the softmaxes, and
the agreement on the examples the reference is confident about (top-1 probability
>= :data:`CONFIDENT`). On inputs far from the training distribution (random crops
of textures or text for an ImageNet model) many reference predictions are near
ties, and any perturbation, even 8-bit rounding of the weights alone, flips some of
them; the confident agreement separates those flips from real damage.
Any output: mean / min cosine similarity of the flattened per-example outputs.

:func:`evaluate_int8` is the one evaluation of a converted model on a data set (fidelity to
the float model, accuracy against labels) that the recipe stage, ``auto`` and the benchmarks call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class Int8Evaluation:
    """How a converted model does on one data set: against the float model's outputs and the labels.

    Attributes:
        n: examples evaluated.
        fidelity: :func:`fidelity` of its outputs to the reference's (None without a reference).
        accuracy: top-1 accuracy against the data's labels (None when the data has none).
        accuracy_float: the reference's accuracy on the same examples (None without both).
    """

    n: int
    fidelity: dict[str, float] | None = None
    accuracy: float | None = None
    accuracy_float: float | None = None


def evaluate_int8(
    int8: Callable[..., Any],
    data: Any,
    reference: torch.nn.Module | None = None,
    *,
    batch_size: int = 64,
    n_inputs: int = 1,
) -> Int8Evaluation:
    """A converted model's fidelity to ``reference`` and its accuracy, on ``data``: the one INT8 evaluation.

    The ``int8`` recipe stage, ``auto`` and ``bench/int8.py`` all call this, so a figure means the
    same thing wherever it is reported.

    Args:
        int8: called like the float model, ``int8(*inputs) -> outputs``: an :class:`Int8Model`, a
            wrapped ONNX Runtime session, or a float model itself.
        data: a tensor, a Dataset of ``(inputs..., label)`` or a DataLoader. The field after the
            ``n_inputs`` inputs counts as labels when it is 1-D with no negative value (unlabelled
            photos carry -1 and are evaluated for fidelity only).
        reference: the float model whose outputs are the fidelity reference (its accuracy is
            reported beside the INT8 one); None: accuracy only.

    Raises:
        ConfigError: ``data`` is None or empty.
    """
    from slimtorch.deploy.artifact import reference_outputs
    from slimtorch.deploy.data import field_batches

    batches = field_batches(data, n_inputs, batch_size, what="evaluation data")
    inputs = [b[:n_inputs] for b in batches]
    with torch.inference_mode():
        out = torch.cat([_first(int8(*x)) for x in inputs]).float()
    ref = reference_outputs(reference, inputs) if reference is not None else None
    labels = _labels([b[n_inputs] if len(b) > n_inputs else None for b in batches])
    acc = acc_float = None
    if labels is not None and out.ndim == 2:
        acc = float((out.argmax(1) == labels).float().mean())
        if ref is not None:
            acc_float = float((ref.argmax(1) == labels).float().mean())
    return Int8Evaluation(out.shape[0], fidelity(ref, out) if ref is not None else None, acc, acc_float)


def _first(out: Any) -> torch.Tensor:
    return torch.as_tensor(out[0] if isinstance(out, (tuple, list)) else out)


def _labels(fields: list[Any]) -> torch.Tensor | None:
    if any(not isinstance(f, torch.Tensor) or f.ndim != 1 for f in fields):
        return None
    y = torch.cat(fields)
    return y if bool((y >= 0).all()) else None
