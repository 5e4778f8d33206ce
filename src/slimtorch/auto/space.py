"""The search space and the adaptive search over it.

Size target: per-layer pruning sensitivity (Han et al. 2015, Fig. 5) is measured once;
a tolerance ``t`` turns the curves into per-layer sparsities (the highest sparsity whose
accuracy without retraining stays within ``t`` of the dense model). The distinct
sparsity vectors obtained as ``t`` grows form a *ladder* of ever more aggressive
configurations, so the search is a bisection over rungs (more aggressive after a
success, less after a failure), then tries lower k-means bit widths at the best rung.

Latency target: the same bisection over structured channel ratios, without and with
INT8 deployment, after a single-knob INT8 probe.

A plan is a generator: it yields a :class:`Candidate` and receives whether it met the
accuracy budget. Because it depends only on those answers, replaying the recorded
answers after an interruption reproduces it exactly, so ``--resume`` continues the
same search rather than restarting it.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from slimtorch.auto.config import AutoConfig
from slimtorch.prune.sensitivity import sparsities_for_tolerance

Plan = Generator["Candidate", bool, None]
SCALED_RUNGS = (0.0, 0.5, 0.75)


@dataclass(frozen=True)
class Candidate:
    """One point of the search: what to do to the model (``params``) and how it was chosen (``knobs``)."""

    params: dict[str, Any]
    knobs: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Identity of the transform: equal keys give equal models, so they are evaluated once."""
        return json.dumps(self.params, sort_keys=True)


def tolerance_ladder(
    curves: dict[str, list[tuple[float, float]]], baseline: float
) -> list[tuple[float, dict[str, float]]]:
    """``[(tolerance, per-layer sparsities), ...]``: every distinct config, least aggressive first.

    Negative tolerances mark the rungs below tolerance 0 (see below): ``-0.5`` is half
    the tolerance-0 sparsities, ``-1.0`` no pruning at all (weight sharing only).

    The per-layer choice only changes where the tolerance crosses ``baseline − acc`` of a
    curve point, so those crossings are the only tolerances worth trying.
    """
    ts = sorted({0.0} | {max(0.0, baseline - acc) for c in curves.values() for _, acc in c})
    # Below tolerance 0 (each layer alone costs nothing) pruning all layers together can still
    # hurt, so the ladder starts lower: no pruning, then fractions of the tolerance-0 sparsities
    # (recorded as negative tolerances).
    zero = sparsities_for_tolerance(curves, baseline, 1e-12)
    ladder: list[tuple[float, dict[str, float]]] = []
    for frac in SCALED_RUNGS:
        per_layer = {k: round(frac * s, 4) for k, s in zero.items()}
        if not ladder or per_layer != ladder[-1][1]:
            ladder.append((round(frac - 1.0, 6), per_layer))
    for t in ts:
        per_layer = sparsities_for_tolerance(curves, baseline, t + 1e-12)
        if not ladder or per_layer != ladder[-1][1]:
            ladder.append((round(t, 6), per_layer))
    return ladder


def bisect(make, n: int, known_ok: int = -1) -> Generator[Candidate, bool, int]:
    """Binary search for the highest feasible index in ``range(n)`` (feasibility assumed monotone).

    ``make(i)`` builds the candidate of rung ``i``. Returns the best feasible index (-1: none).
    """
    lo, hi = known_ok, n  # lo feasible (or -1), hi infeasible (or n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ok = yield make(mid)
        lo, hi = (mid, hi) if ok else (lo, mid)
    return lo


def bits_for_layers(sizes: dict[str, int], bits: int, cfg: AutoConfig) -> dict[str, int]:
    """Per-layer k-means bits: ``bits``, but small layers (< ``small_layer_fraction`` of weights) get more."""
    total = sum(sizes.values()) or 1
    return {
        n: max(bits, cfg.small_layer_bits) if s / total < cfg.small_layer_fraction else bits for n, s in sizes.items()
    }


def size_plan(ladder: list[tuple[float, dict[str, float]]], sizes: dict[str, int], cfg: AutoConfig) -> Plan:
    """Bisection over the tolerance ladder at the safest bit width, then lower bit widths at the best rung,
    then (``refine_epochs``) a second bisection over the more aggressive rungs with longer fine-tuning.

    Screening every rung with long fine-tuning would spend the budget on rungs that fail anyway;
    screening cheaply and spending long fine-tuning only above the best cheap rung is where the
    extra epochs pay (a rung that fails after 1 epoch can pass after 4).
    """

    def make(i: int, bits: int, epochs: int | None = None) -> Candidate:
        t, per_layer = ladder[i]
        params = {
            "per_layer": {k: round(v, 4) for k, v in per_layer.items()},
            "bits": bits_for_layers(sizes, bits, cfg),
        }
        knobs = {"rung": i, "tolerance": t, "bits": bits}
        if epochs is not None:
            params["finetune_epochs"] = knobs["finetune_epochs"] = epochs
        return Candidate(params, knobs)

    safe = cfg.bits[0]
    best = yield from bisect(lambda i: make(i, safe), len(ladder))
    bits = safe
    if best >= 0:
        for b in sorted((b for b in cfg.bits if b < safe), reverse=True):
            ok = yield make(best, b)
            if not ok:
                break
            bits = b
    if cfg.refine_epochs > cfg.finetune_epochs:
        yield from bisect(lambda i: make(i, bits, cfg.refine_epochs), len(ladder), known_ok=best)


def latency_plan(cfg: AutoConfig) -> Plan:
    """INT8 alone; channel ratio alone (bisection); then both, up to the best float ratio."""
    ratios = [0.0, *cfg.channel_ratios]

    def make(i: int, int8: bool) -> Candidate:
        return Candidate(
            {"channel_ratio": ratios[i], "int8": int8}, {"rung": i, "channel_ratio": ratios[i], "int8": int8}
        )

    int8_ok = False
    if cfg.int8:
        int8_ok = yield make(0, True)
    best_float = yield from bisect(lambda i: make(i, False), len(ratios), known_ok=0)
    if int8_ok and best_float > 0:
        yield from bisect(lambda i: make(i, True), best_float + 1, known_ok=0)
