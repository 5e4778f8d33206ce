"""Uniform (affine) quantization of tensors: ranges, scales, zero points, fake-quant.

``q = clamp(round(x / scale) + zero_point, qmin, qmax)``, ``x̂ = (q - zero_point) · scale``
(Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference"). The zero point is an integer, so 0.0 is
exactly representable: pruned weights and ReLU zeros stay exactly zero.

Clipping ("weight clipping done right", Banner et al. 2019; Nagel et al. 2021
white paper, section 3.5): the range may be shrunk to ``ratio · [min, max]``
with the ratio that minimises ``||x - q(x)||²`` — outliers are saturated, the
many small values get a finer grid.
"""

from __future__ import annotations

import torch

from slimtorch.quantize.config import UniformConfig

_EPS = 1e-12


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """Integer range: signed restricted ``[-(2^(b-1)-1), 2^(b-1)-1]`` or unsigned ``[0, 2^b-1]``.

    The signed range drops -2^(b-1) so that it is symmetric around 0 (int8 → ±127).
    """
    if symmetric:
        m = 2 ** (bits - 1) - 1
        return -m, m
    return 0, 2**bits - 1


def _reduce_dims(x: torch.Tensor, axis: int | None) -> list[int]:
    return [d for d in range(x.ndim) if axis is None or d != axis % x.ndim]


def _per_axis(t: torch.Tensor, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """Reshape a per-channel vector so it broadcasts against ``x`` along ``axis``."""
    if axis is None or t.ndim == 0:
        return t
    shape = [1] * x.ndim
    shape[axis % x.ndim] = -1
    return t.reshape(shape)


def tensor_range(x: torch.Tensor, axis: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) of ``x``, per slice along ``axis`` (None: whole tensor); always includes 0."""
    x = x.detach()
    if x.numel() == 0:
        return torch.zeros(()), torch.zeros(())
    if axis is None:
        lo, hi = x.min(), x.max()
    else:
        flat = x.movedim(axis, 0).reshape(x.shape[axis], -1)
        lo, hi = flat.min(1).values, flat.max(1).values
    return lo.clamp(max=0.0), hi.clamp(min=0.0)


def qparams_from_range(
    lo: torch.Tensor, hi: torch.Tensor, bits: int, symmetric: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale (float) and integer zero point (stored as float tensor of integers) for a range."""
    qmin, qmax = qrange(bits, symmetric)
    lo, hi = lo.clamp(max=0.0).float(), hi.clamp(min=0.0).float()
    if symmetric:
        amax = torch.maximum(-lo, hi)
        scale = amax / qmax
        zp = torch.zeros_like(scale)
    else:
        scale = (hi - lo) / (qmax - qmin)
        zp = (qmin - lo / scale.clamp(min=_EPS)).round().clamp(qmin, qmax)
    # an all-zero tensor: any scale represents it exactly; 1.0 avoids dividing by 0
    scale = torch.where(scale > _EPS, scale, torch.ones_like(scale))
    return scale, zp


def quantize(x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, qmin: int, qmax: int, axis: int | None = None):
    """Integer codes (as float tensor) of ``x``."""
    s, z = _per_axis(scale, x, axis), _per_axis(zp, x, axis)
    return (torch.round(x / s) + z).clamp(qmin, qmax)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, axis: int | None = None) -> torch.Tensor:
    return (q - _per_axis(zp, q, axis)) * _per_axis(scale, q, axis)


class _FakeQuantSTE(torch.autograd.Function):
    """Round-trip quantization; backward is the clipped straight-through estimator (Bengio et al. 2013)."""

    @staticmethod
    def forward(ctx, x, scale, zp, qmin, qmax, axis):
        s, z = _per_axis(scale, x, axis), _per_axis(zp, x, axis)
        v = torch.round(x / s) + z
        ctx.save_for_backward((v >= qmin) & (v <= qmax))
        return (v.clamp(qmin, qmax) - z) * s

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        # identity inside the representable range, zero where the value was clamped
        return grad * inside, None, None, None, None, None


def fake_quantize(
    x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor, qmin: int, qmax: int, axis: int | None = None
) -> torch.Tensor:
    """``dequantize(quantize(x))`` with a straight-through gradient (zero outside the range)."""
    return _FakeQuantSTE.apply(x, scale.detach(), zp.detach(), qmin, qmax, axis)


def _sq_error(x, lo, hi, bits, symmetric, axis) -> torch.Tensor:
    qmin, qmax = qrange(bits, symmetric)
    scale, zp = qparams_from_range(lo, hi, bits, symmetric)
    err = (dequantize(quantize(x, scale, zp, qmin, qmax, axis), scale, zp, axis) - x) ** 2
    return err.sum(dim=_reduce_dims(x, axis)) if axis is not None else err.sum()


def mse_clip_ratio(
    x: torch.Tensor, bits: int, symmetric: bool, axis: int | None = None, grid: int = 100
) -> torch.Tensor:
    """Clipping ratio in (0, 1] (per channel when ``axis`` is set) minimising ``||x - q(x)||²``.

    Searches ``grid`` evenly spaced ratios; ratio 1 (plain min-max) is always a
    candidate, so the result is never worse than min-max.
    """
    x = x.detach().float()
    lo, hi = tensor_range(x, axis)
    best_err = _sq_error(x, lo, hi, bits, symmetric, axis)
    best = torch.ones_like(best_err)
    for r in torch.linspace(1.0 / grid, 1.0, grid)[:-1].tolist():
        err = _sq_error(x, lo * r, hi * r, bits, symmetric, axis)
        better = err < best_err
        best = torch.where(better, torch.full_like(best, r), best)
        best_err = torch.where(better, err, best_err)
    return best


def _kth(x: torch.Tensor, q: float, axis: int | None) -> torch.Tensor:
    """Quantile by sorting (torch.quantile refuses tensors above 16M elements)."""
    flat = x.reshape(1, -1) if axis is None else x.movedim(axis, 0).reshape(x.shape[axis], -1)
    srt = flat.sort(dim=1).values
    idx = min(max(int(round(q * (srt.shape[1] - 1))), 0), srt.shape[1] - 1)
    out = srt[:, idx]
    return out[0] if axis is None else out


def clip_ratio(x: torch.Tensor, cfg: UniformConfig) -> torch.Tensor:
    """Ratio of the clipped range to the min-max range chosen by ``cfg.range_method``."""
    axis = cfg.axis if cfg.per_channel else None
    lo, hi = tensor_range(x, axis)
    if cfg.range_method == "minmax" or x.numel() == 0:
        return torch.ones_like(hi)
    if cfg.range_method == "mse":
        return mse_clip_ratio(x, cfg.bits, cfg.symmetric, axis, cfg.mse_grid)
    # percentile: ratio of the percentile of |x| to max |x|
    amax = torch.maximum(-lo, hi)
    p = _kth(x.detach().abs().float(), cfg.percentile / 100.0, axis)
    return torch.where(amax > 0, (p / amax.clamp(min=_EPS)).clamp(max=1.0), torch.ones_like(amax))


def compute_qparams(x: torch.Tensor, cfg: UniformConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point of ``x`` under ``cfg`` (per channel along ``cfg.axis`` if set)."""
    axis = cfg.axis if cfg.per_channel else None
    lo, hi = tensor_range(x, axis)
    r = clip_ratio(x, cfg)
    return qparams_from_range(lo * r, hi * r, cfg.bits, cfg.symmetric)


def quantize_tensor(x: torch.Tensor, cfg: UniformConfig) -> torch.Tensor:
    """Fake-quantized copy of ``x`` (float values on the integer grid) under ``cfg``."""
    qmin, qmax = qrange(cfg.bits, cfg.symmetric)
    scale, zp = compute_qparams(x, cfg)
    return fake_quantize(x, scale, zp, qmin, qmax, cfg.axis if cfg.per_channel else None)


def sqnr_db(x: torch.Tensor, xq: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio ``10·log10(||x||² / ||x - xq||²)`` in dB (inf if exact)."""
    noise = float(((x.detach() - xq.detach()) ** 2).sum())
    signal = float((x.detach() ** 2).sum())
    if noise == 0.0:
        return float("inf")
    return 10.0 * torch.log10(torch.tensor(max(signal, _EPS) / noise)).item()
