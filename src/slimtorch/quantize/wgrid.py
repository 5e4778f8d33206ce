"""The weight-only grid that RTN, GPTQ, AWQ and HQQ share: b-bit codes, per-group scales and zeros.

A weight ``W (out, in)`` is cut along ``in`` into groups of ``group_size``
columns (``group_size=None``: one group per output row, i.e. per channel). The
last group may be partial: SmolLM2's width 576 is 4.5 groups of 128, and every
reader (``QuantLinear``, the ``.slim`` and safetensors writers, ONNX
``MatMulNBits`` with its zero-padded last block) agrees that a group's
parameters apply to the columns that exist. Codes are unsigned, ``0 .. 2^b-1``:

    w ≈ (code - zero) * scale

``zero`` is an integer code for RTN/GPTQ/AWQ (asymmetric: from the group's
range; symmetric: the mid code ``2^(b-1)``, as ONNX Runtime's default) and may
be fractional for HQQ, whose optimiser moves it off the integer grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import pydantic
import torch

from slimtorch.core.config import FrozenConfig


class GridConfig(FrozenConfig):
    """Bits, group size and symmetry of a weight-only grid.

    Attributes:
        bits: 2..8.
        group_size: columns per group; ``None`` = one group per output channel.
        symmetric: zero fixed at the mid code (range ``±max|w|``) instead of fitted to ``[min, max]``.
        mse_search: shrink each group's range where that lowers the rounding error
            (a grid search over clipping ratios, as GPTQ's ``mse`` option and AWQ's clip search).
    """

    bits: int = pydantic.Field(4, ge=2, le=8)
    group_size: int | None = pydantic.Field(128, ge=8)
    symmetric: bool = False
    mse_search: bool = True

    @property
    def maxq(self) -> int:
        return 2**self.bits - 1


def group_bounds(in_features: int, group_size: int | None) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` column ranges of the groups; the last may be shorter."""
    g = in_features if group_size is None else group_size
    return [(s, min(s + g, in_features)) for s in range(0, in_features, g)]


def fit_params(
    w: torch.Tensor, grid: GridConfig, shrink: torch.Tensor | float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``(scale, zero)`` of a group ``w (rows, cols)`` with its range multiplied by ``shrink``."""
    maxq = grid.maxq
    xmin = w.min(dim=-1).values.clamp(max=0) * shrink
    xmax = w.max(dim=-1).values.clamp(min=0) * shrink
    if grid.symmetric:
        xmax = torch.maximum(xmin.abs(), xmax)
        scale = 2 * xmax / maxq
        zero = torch.full_like(scale, (maxq + 1) / 2)
    else:
        scale = (xmax - xmin) / maxq
        zero = None
    tiny = scale <= 1e-12
    scale = torch.where(tiny, torch.ones_like(scale), scale)
    if zero is None:
        zero = torch.round(-xmin / scale).clamp(0, maxq)
    return scale, zero


def quantize_codes(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, maxq: int) -> torch.Tensor:
    """Integer codes (as float) of ``w (rows, cols)`` with per-row ``scale`` and ``zero``."""
    return torch.clamp(torch.round(w / scale[:, None]) + zero[:, None], 0, maxq)


def dequantize_codes(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    return (q - zero[:, None]) * scale[:, None]


def fake_quant_group(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, maxq: int) -> torch.Tensor:
    return dequantize_codes(quantize_codes(w, scale, zero, maxq), scale, zero)


def search_params(
    w: torch.Tensor,
    grid: GridConfig,
    weight: torch.Tensor | None = None,
    steps: int = 20,
    norm: float = 2.4,
    min_shrink: float = 0.6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``(scale, zero)`` minimising ``sum |Q(w) - w|^norm`` (times ``weight`` per column) over range shrinks.

    The shrinks ``1, 1 - (1-min_shrink)/steps, …, min_shrink`` are tried all at once
    (one batched tensor). ``norm`` 2.4 is GPTQ's choice; ``weight`` lets a caller weigh
    columns by their activation energy (the diagonal of the Hessian), which is what
    the layer's output error sees.
    """
    if not grid.mse_search:
        return fit_params(w, grid)
    shrinks = torch.linspace(1.0, min_shrink, steps + 1)
    scale, zero = fit_params(w, grid, shrinks[:, None])  # (S, rows)
    rows = w.shape[0]
    best = torch.empty(rows, dtype=torch.long)
    # A few rows at a time, in place: the (S, rows, cols) errors of a whole group are ~10 MB, and
    # streaming them through memory once per elementwise op cost 3x more than this cache-sized
    # loop (GPTQ spent ~10 % of its calibration here). Same values: every element and every
    # row's sum are computed by the same operations in the same order.
    chunk = max(1, 8192 // max(1, w.shape[1]))
    for r in range(0, rows, chunk):
        wr = w[None, r : r + chunk]
        sc, zr = scale[:, r : r + chunk, None], zero[:, r : r + chunk, None]
        e = torch.div(wr, sc).round_().add_(zr).clamp_(0, grid.maxq)
        e.sub_(zr).mul_(sc).sub_(wr).abs_().pow_(norm)
        if weight is not None:
            e.mul_(weight)
        best[r : r + chunk] = e.sum(dim=2).argmin(dim=0)
    index = torch.arange(rows)
    return scale[best, index], zero[best, index]


@dataclass
class QuantizedWeight:
    """Codes and group parameters of one weight matrix: what every writer stores."""

    codes: torch.Tensor  # (out, in) uint8, values 0 .. 2^bits - 1
    scales: torch.Tensor  # (out, n_groups) float32
    zeros: torch.Tensor  # (out, n_groups) float32 (integral except for HQQ)
    bits: int
    group_size: int | None

    def dequantize(self) -> torch.Tensor:
        out, cols = self.codes.shape
        w = torch.empty(out, cols, dtype=torch.float32)
        for k, (s, e) in enumerate(group_bounds(cols, self.group_size)):
            w[:, s:e] = dequantize_codes(self.codes[:, s:e].float(), self.scales[:, k], self.zeros[:, k])
        return w

    @property
    def integral_zeros(self) -> bool:
        return bool(torch.equal(self.zeros, self.zeros.round()))


def rtn_weight(w: torch.Tensor, grid: GridConfig, col_weight: torch.Tensor | None = None) -> QuantizedWeight:
    """Round-to-nearest of ``w (out, in)`` on ``grid`` (range search per group if ``grid.mse_search``)."""
    w = w.detach().float()
    bounds = group_bounds(w.shape[1], grid.group_size)
    codes = torch.empty(w.shape, dtype=torch.uint8)
    scales = torch.empty(w.shape[0], len(bounds))
    zeros = torch.empty(w.shape[0], len(bounds))
    for k, (s, e) in enumerate(bounds):
        cw = None if col_weight is None else col_weight[s:e]
        scale, zero = search_params(w[:, s:e], grid, cw)
        codes[:, s:e] = quantize_codes(w[:, s:e], scale, zero, grid.maxq).to(torch.uint8)
        scales[:, k], zeros[:, k] = scale, zero
    return QuantizedWeight(codes, scales, zeros, grid.bits, grid.group_size)
