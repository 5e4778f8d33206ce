"""Report figures (matplotlib, Agg backend) returned as PNG bytes.

Each function takes the plain dicts of ``results.json`` so a report can be
re-rendered from a finished run without any model.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated when minimising x and maximising y, sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def tradeoff(records: Sequence[dict[str, Any]], x: str, xlabel: str, logx: bool = True) -> bytes | None:
    """Accuracy (or agreement) against ``x`` (``size_bytes`` or a latency key) with the Pareto front."""
    pts, names = [], []
    for r in records:
        acc = r.get("accuracy") if r.get("accuracy") is not None else r.get("agreement")
        xv = r.get("size_bytes") if x == "size" else r.get("latency", {}).get(x, {}).get("median_ms")
        if acc is None or xv is None:
            continue
        pts.append((float(xv) / (1024 if x == "size" else 1), 100 * float(acc)))
        names.append(r["name"])
    if len(pts) < 1:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="#4477aa", zorder=3)
    for (px, py), n in zip(pts, names, strict=True):
        ax.annotate(n, (px, py), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = pareto_front(pts)
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], color="#cc6677", lw=1.5, label="Pareto front")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _png(fig)


def layer_bars(records: Sequence[dict[str, Any]]) -> bytes | None:
    """Per-layer sparsity (bars) and index bits (dots) of the final record."""
    if not records or not records[-1].get("weights"):
        return None
    w = records[-1]["weights"]
    names = list(w)
    sparsity = [100 * (1 - v["nonzero"] / max(v["numel"], 1)) for v in w.values()]
    from slimtorch.report.weights import bits_estimate

    bits = [bits_estimate(v["distinct"]) for v in w.values()]
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(names) + 2), 3.6))
    ax.bar(range(len(names)), sparsity, color="#88ccee")
    ax.set_ylabel("sparsity (%)")
    ax.set_ylim(0, 100)
    ax.set_xticks(range(len(names)), [n.removesuffix(".weight") for n in names], rotation=60, ha="right", fontsize=7)
    ax2 = ax.twinx()
    ax2.plot(range(len(names)), [b if b is not None else float("nan") for b in bits], "o", color="#aa3377")
    ax2.set_ylabel("index bits (shared weights)")
    ax2.set_ylim(0, 17)
    ax.set_title(f"per layer after '{records[-1]['name']}'")
    return _png(fig)


def histograms(records: Sequence[dict[str, Any]], max_layers: int = 4) -> bytes | None:
    """Non-zero weight histograms of the first layers, first vs last stage (before / after)."""
    with_w = [r for r in records if r.get("weights")]
    if len(with_w) < 1:
        return None
    first, last = with_w[0], with_w[-1]
    layers = list(last["weights"])[:max_layers]
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 2.8), squeeze=False)
    for ax, name in zip(axes[0], layers, strict=True):
        for rec, color in ((first, "#4477aa"), (last, "#ee6677")):
            h = rec["weights"].get(name)
            if not h or not h["nonzero"]:
                continue
            lo, hi = h["range"]
            step = (hi - lo) / len(h["hist"]) if hi > lo else 1.0
            xs = [lo + (i + 0.5) * step for i in range(len(h["hist"]))]
            ax.plot(xs, h["hist"], color=color, lw=1.2, label=f"{rec['name']} ({h['distinct']} values)")
        ax.set_title(name.removesuffix(".weight"), fontsize=9)
        ax.set_yscale("symlog")
        ax.legend(fontsize=6)
    return _png(fig)


def sensitivity(curves: dict[str, Sequence[Sequence[float]]], xlabel: str = "sparsity") -> bytes | None:
    """Accuracy vs a per-layer knob, one curve per layer (``{layer: [(x, acc), ...]}``)."""
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in curves.items():
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)
