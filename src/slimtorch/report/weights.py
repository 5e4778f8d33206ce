"""Per-layer weight summaries recorded after every stage: histograms and distinct values.

Histograms of the non-zero weights show what pruning (a gap around zero) and
quantization (spikes at the shared values) did; they are small enough to keep in
``results.json`` so a report can be re-rendered without the models.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from slimtorch.io.fold import fold

BINS = 60


@torch.no_grad()
def weight_summary(model: nn.Module, max_layers: int = 64) -> dict[str, dict[str, Any]]:
    """``{weight name: {"hist", "range", "distinct", "nonzero", "numel"}}`` for >= 2-D weights."""
    out: dict[str, dict[str, Any]] = {}
    for name, p in fold(model).named_parameters():
        if p.ndim < 2:
            continue
        w = p.detach().reshape(-1)
        nz = w[w != 0].numpy()
        lo, hi = (float(nz.min()), float(nz.max())) if nz.size else (0.0, 0.0)
        hist = np.histogram(nz, bins=BINS, range=(lo, hi if hi > lo else lo + 1e-8))[0] if nz.size else np.zeros(BINS)
        out[name] = {
            "numel": int(w.numel()),
            "nonzero": int(nz.size),
            "distinct": int(np.unique(nz).size),
            "range": [lo, hi],
            "hist": [int(c) for c in hist],
        }
        if len(out) >= max_layers:
            break
    return out


def bits_estimate(distinct: int) -> float | None:
    """Bits an index into ``distinct`` shared values needs (None for effectively unshared weights)."""
    if distinct <= 0 or distinct > 65536:
        return None
    return float(max(1, int(np.ceil(np.log2(distinct)))))
