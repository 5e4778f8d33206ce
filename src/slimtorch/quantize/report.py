"""Per-layer quantization report: bits, distinct values, sparsity, SQNR against the float weight."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimtorch.quantize.fake_quant import ActFakeQuant, WeightFakeQuant
from slimtorch.quantize.kmeans import KMeansShare
from slimtorch.quantize.layers import QUANTIZABLE, find_parametrization, pre_weight
from slimtorch.quantize.uniform import sqnr_db


@torch.no_grad()
def layer_report(model: nn.Module) -> list[dict[str, Any]]:
    """One row per Linear / Conv layer.

    Keys: ``layer``, ``kind`` (``uniform`` / ``kmeans`` / ``float``), ``weight_bits``,
    ``act_bits``, ``params``, ``nonzero``, ``distinct_values`` (distinct non-zero
    weight values), ``sqnr_db`` (effective weight vs the float weight the quantizer
    received; ``None`` for float layers, ``inf`` when exact).
    """
    rows = []
    for name, module in model.named_modules():
        if not isinstance(module, QUANTIZABLE):
            continue
        w = module.weight.detach()
        row: dict[str, Any] = {
            "layer": name,
            "kind": "float",
            "weight_bits": 32,
            "act_bits": None,
            "params": w.numel(),
            "nonzero": int((w != 0).sum()),
            "distinct_values": int(torch.unique(w[w != 0]).numel()),
            "sqnr_db": None,
        }
        for kind, cls in (("uniform", WeightFakeQuant), ("kmeans", KMeansShare)):
            p = find_parametrization(module, cls)
            if p is not None:
                row.update(kind=kind, weight_bits=p.bits, sqnr_db=sqnr_db(pre_weight(module, cls), w))
        q = getattr(module, "input_quantizer", None)
        if isinstance(q, ActFakeQuant):
            row["act_bits"] = q.bits
        rows.append(row)
    return rows


def format_report(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of :func:`layer_report` rows."""
    head = f"{'layer':<24}{'kind':<9}{'w bits':>7}{'a bits':>7}{'nonzero':>10}{'distinct':>10}{'SQNR dB':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        sq = "-" if r["sqnr_db"] is None else f"{r['sqnr_db']:.1f}"
        lines.append(
            f"{r['layer']:<24}{r['kind']:<9}{r['weight_bits']:>7}{str(r['act_bits'] or '-'):>7}"
            f"{r['nonzero']:>10}{r['distinct_values']:>10}{sq:>9}"
        )
    return "\n".join(lines)
