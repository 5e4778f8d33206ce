"""Activation observers: collect statistics on calibration batches, then give a range.

* ``minmax``: running min / max over every batch seen.
* ``moving_average``: exponential moving average of per-batch min / max (as in
  TF / torch.ao QAT), less sensitive to one outlier batch.
* ``histogram``: a 2048-bin histogram over the running range (re-binned when the
  range grows); the range is clipped at a percentile of |x|.
* ``mse``: the same histogram; the range is the clipping ratio minimising the
  expected squared quantization error of the histogram's bin centres.
"""

from __future__ import annotations

import torch

from slimtorch.core.registry import Registry
from slimtorch.quantize.uniform import dequantize, qparams_from_range, qrange, quantize

OBSERVERS: Registry[type] = Registry("activation observer")


class Observer:
    """Base: ``update(x)`` per batch, ``range()`` -> (lo, hi) including 0."""

    def __init__(self, bits: int, symmetric: bool, **_):
        self.bits, self.symmetric = bits, symmetric
        self.seen = 0

    def update(self, x: torch.Tensor) -> None:
        raise NotImplementedError

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


@OBSERVERS.register("minmax")
class MinMaxObserver(Observer):
    def __init__(self, bits: int, symmetric: bool, **kw):
        super().__init__(bits, symmetric)
        self.lo, self.hi = torch.tensor(0.0), torch.tensor(0.0)

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        self.lo, self.hi = torch.minimum(self.lo, x.min()), torch.maximum(self.hi, x.max())
        self.seen += 1

    def range(self):
        return self.lo, self.hi


@OBSERVERS.register("moving_average")
class MovingAverageMinMaxObserver(Observer):
    def __init__(self, bits: int, symmetric: bool, momentum: float = 0.1, **kw):
        super().__init__(bits, symmetric)
        self.momentum = momentum
        self.lo, self.hi = torch.tensor(0.0), torch.tensor(0.0)

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        lo, hi = x.min().clamp(max=0), x.max().clamp(min=0)
        if self.seen == 0:
            self.lo, self.hi = lo, hi
        else:
            self.lo = self.lo + self.momentum * (lo - self.lo)
            self.hi = self.hi + self.momentum * (hi - self.hi)
        self.seen += 1

    def range(self):
        return self.lo, self.hi


@OBSERVERS.register("histogram")
class HistogramObserver(Observer):
    """Histogram of values; ``range()`` clips at ``percentile`` of |x| (per side for asymmetric)."""

    BINS = 2048

    def __init__(self, bits: int, symmetric: bool, percentile: float = 99.99, **kw):
        super().__init__(bits, symmetric)
        self.percentile = percentile
        self.lo, self.hi = 0.0, 0.0
        self.counts = torch.zeros(self.BINS, dtype=torch.float64)

    def _centres(self) -> torch.Tensor:
        width = (self.hi - self.lo) / self.BINS
        return self.lo + width * (torch.arange(self.BINS, dtype=torch.float64) + 0.5)

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().double().reshape(-1)
        lo, hi = min(self.lo, float(x.min()), 0.0), max(self.hi, float(x.max()), 0.0)
        if (lo, hi) != (self.lo, self.hi) and self.counts.sum() > 0:
            # range grew: move old counts to the new bins their centres fall in
            old = self._centres()
            self.lo, self.hi = lo, hi
            self.counts = self._bin(old, self.counts)
        self.lo, self.hi = lo, hi
        self.counts += self._bin(x, torch.ones_like(x))
        self.seen += 1

    def _bin(self, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        width = max((self.hi - self.lo) / self.BINS, 1e-30)
        idx = ((values - self.lo) / width).floor().long().clamp(0, self.BINS - 1)
        return torch.zeros(self.BINS, dtype=torch.float64).index_add_(0, idx, weights)

    def range(self):
        if self.counts.sum() == 0:
            return torch.tensor(0.0), torch.tensor(0.0)
        c = self._centres()
        # percentile of |x| from the histogram of x
        order = c.abs().argsort()
        cdf = self.counts[order].cumsum(0) / self.counts.sum()
        k = int(
            torch.searchsorted(cdf, torch.tensor(self.percentile / 100.0, dtype=torch.float64)).clamp(max=len(c) - 1)
        )
        amax = float(c.abs()[order][k]) + (self.hi - self.lo) / self.BINS / 2
        lo, hi = max(self.lo, -amax), min(self.hi, amax)
        return torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)


@OBSERVERS.register("mse")
class MSEObserver(HistogramObserver):
    """Histogram + the clipping ratio of [lo, hi] minimising the expected squared error."""

    GRID = 100

    def range(self):
        if self.counts.sum() == 0:
            return torch.tensor(0.0), torch.tensor(0.0)
        c, w = self._centres().float(), self.counts.float()
        qmin, qmax = qrange(self.bits, self.symmetric)
        best, best_err = 1.0, float("inf")
        for r in torch.linspace(1.0 / self.GRID, 1.0, self.GRID).tolist():
            scale, zp = qparams_from_range(
                torch.tensor(self.lo * r), torch.tensor(self.hi * r), self.bits, self.symmetric
            )
            err = float((w * (dequantize(quantize(c, scale, zp, qmin, qmax), scale, zp) - c) ** 2).sum())
            if err < best_err:
                best, best_err = r, err
        return torch.tensor(self.lo * best), torch.tensor(self.hi * best)
