"""ONNX Runtime's s8 weight grid, simulated in PyTorch (shared by bias correction and AdaRound).

ORT quantizes weights symmetrically, ``scale = max|w| / qmax`` per output channel (or per
tensor), ``qmax`` 127, or 64 with ``reduce_range``
(``onnxruntime.quantization.quant_utils.ONNX_INT_TYPE_REDUCED_RANGE`` is [-64, 64]).
"""

from __future__ import annotations

import torch


def ort_qmax(reduce_range: bool) -> int:
    """Largest |q| of ONNX Runtime's symmetric s8 weight range ([-127, 127]; [-64, 64] reduced)."""
    return 64 if reduce_range else 127


def grid_scale(w: torch.Tensor, per_channel: bool, qmax: int) -> torch.Tensor:
    """Scale of each output channel (shape ``[out]``) as ORT computes it from ``w``: max|w| / qmax."""
    amax = (
        w.detach().abs().reshape(w.shape[0], -1).amax(1) if per_channel else w.detach().abs().max().expand(w.shape[0])
    )
    return (amax / qmax).clamp(min=1e-12)


def round_to_grid(w: torch.Tensor, per_channel: bool, qmax: int) -> torch.Tensor:
    """``w`` rounded to nearest on ORT's grid and dequantized (what ORT's int8 weights stand for)."""
    scale = grid_scale(w, per_channel, qmax).view(-1, *([1] * (w.ndim - 1)))
    return (w / scale).round().clamp(-qmax, qmax) * scale
