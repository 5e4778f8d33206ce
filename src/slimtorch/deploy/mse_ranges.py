"""MSE activation ranges: the clipping range that minimises the expected u8 quantization error.

ONNX Runtime calibrates by min/max, percentile, entropy (KL) or "distribution", but has
no MSE criterion, which TensorRT's and Intel Neural Compressor's calibrators offer and
which often beats a fixed percentile on tensors whose tails differ in weight. Given a
tensor's histogram (ORT's signed histogram, collected as for entropy calibration), the
range ``[lo, hi]`` (always containing 0, as ORT requires) is chosen to minimise

    sum_i c_i * e(x_i),  e(x) = (lo - x)^2 if x < lo,  (x - hi)^2 if x > hi,
                         and   step^2 / 12 inside,   step = (hi - lo) / 255,

i.e. the clipping error of the tails plus the uniform rounding noise of the inside.
The two ends are optimised in turn (coordinate descent over the bin edges: a few
rounds converge, the objective in each end alone being evaluated for every candidate
at once with prefix sums).
"""

from __future__ import annotations

import numpy as np

LEVELS = 255  # u8 activations


def _prefix(counts: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prefix sums of c, c·x and c·x² (index k: bins < k)."""
    z = np.zeros(1)
    return (
        np.concatenate([z, np.cumsum(counts)]),
        np.concatenate([z, np.cumsum(counts * centers)]),
        np.concatenate([z, np.cumsum(counts * centers**2)]),
    )


def expected_mse(counts: np.ndarray, centers: np.ndarray, lo: float, hi: float) -> float:
    """The objective above for one range (per element of the histogram)."""
    step = (hi - lo) / LEVELS
    err = np.where(centers < lo, (lo - centers) ** 2, np.where(centers > hi, (centers - hi) ** 2, step**2 / 12))
    return float((counts * err).sum() / max(counts.sum(), 1))


def mse_range(counts: np.ndarray, edges: np.ndarray, rounds: int = 4) -> tuple[float, float]:
    """``(lo, hi)`` with ``lo <= 0 <= hi`` minimising the expected quantization MSE of the histogram.

    Args:
        counts: bin counts (``n``); edges: bin edges (``n + 1``), increasing.
    """
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    if counts.sum() <= 0:
        return 0.0, 0.0
    centers = (edges[:-1] + edges[1:]) / 2
    nz = np.nonzero(counts)[0]
    lo, hi = min(0.0, edges[nz[0]]), max(0.0, edges[nz[-1] + 1])  # min/max: where the search starts
    s0, s1, s2 = _prefix(counts, centers)
    total = s0[-1]
    # candidate ends: the bin edges on each side of 0 within the data's extent
    hi_c = edges[(edges >= 0) & (edges <= hi)]
    lo_c = edges[(edges <= 0) & (edges >= lo)]
    k_hi = np.searchsorted(centers, hi_c, side="right")  # bins with center <= hi are not clipped above
    k_lo = np.searchsorted(centers, lo_c, side="left")  # bins with center < lo are clipped below
    for _ in range(rounds):
        if hi_c.size:
            # above hi: sum c (x - hi)^2 = S2 - 2 hi S1 + hi^2 S0 over bins >= k_hi
            a0, a1, a2 = total - s0[k_hi], s1[-1] - s1[k_hi], s2[-1] - s2[k_hi]
            k = np.searchsorted(centers, lo, side="left")
            below = s2[k] - 2 * lo * s1[k] + lo**2 * s0[k]
            inside = s0[k_hi] - s0[k]
            obj = a2 - 2 * hi_c * a1 + hi_c**2 * a0 + below + inside * ((hi_c - lo) / LEVELS) ** 2 / 12
            hi = float(hi_c[int(np.argmin(obj))])
        if lo_c.size:
            k = np.searchsorted(centers, hi, side="right")
            above = (s2[-1] - s2[k]) - 2 * hi * (s1[-1] - s1[k]) + hi**2 * (total - s0[k])
            b0, b1, b2 = s0[k_lo], s1[k_lo], s2[k_lo]
            inside = s0[k] - s0[k_lo]
            obj = b2 - 2 * lo_c * b1 + lo_c**2 * b0 + above + inside * ((hi - lo_c) / LEVELS) ** 2 / 12
            lo = float(lo_c[int(np.argmin(obj))])
    return lo, hi


def mse_ranges(histograms: dict) -> dict[str, tuple[float, float]]:
    """Per tensor ``(lo, hi)`` from ORT's ``HistogramCollector.histogram_dict`` (``(hist, edges, ...)`` tuples)."""
    return {name: mse_range(h[0], h[1]) for name, h in histograms.items()}
