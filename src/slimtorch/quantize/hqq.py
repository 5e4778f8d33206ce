"""HQQ (Badri & Shaji 2023): calibration-free weight-only quantization by half-quadratic optimisation.

Round-to-nearest fixes the zero point from the group's range. HQQ instead
minimises ``‖W − Q⁻¹(Q(W))‖_p^p`` with ``p < 1`` (a sparsity-promoting norm:
a few large rounding errors are tolerated, many small ones are not) over the
zero point, by alternating a generalised soft-threshold ("shrinkage") of the
error with a closed-form zero update, with ``β`` growing by ``κ`` each step;
the loop stops when the mean error stops falling. Written from the paper and the
reference algorithm (``optimize_weights_proximal_legacy``), on this project's
grid so the result is a :class:`QuantLinear` like every other method's. HQQ's
zeros are fractional; ``round_zero`` rounds them to integer codes (what int4
runtimes with uint4 zero points need).
"""

from __future__ import annotations

import pydantic
import torch
from torch import nn

from slimtorch.quantize.weight_only import WeightOnlyConfig, coerce, quantize_each
from slimtorch.quantize.wgrid import (
    GridConfig,
    QuantizedWeight,
    fit_params,
    group_bounds,
)


class HQQConfig(WeightOnlyConfig):
    """HQQ settings (defaults from the reference: p = 0.7, β = 10, κ = 1.01, 20 iterations).

    ``grid.symmetric`` must be False (HQQ optimises the zero point); ``grid.mse_search`` is not used.
    """

    lp_norm: float = pydantic.Field(0.7, gt=0, le=1)
    beta: float = pydantic.Field(10.0, gt=0)
    kappa: float = pydantic.Field(1.01, ge=1)
    iters: int = pydantic.Field(20, ge=1)
    round_zero: bool = False

    @pydantic.field_validator("grid")
    @classmethod
    def _asymmetric(cls, grid: GridConfig) -> GridConfig:
        if grid.symmetric:
            raise ValueError("HQQ optimises the zero point; use an asymmetric grid (symmetric: false)")
        return grid


def _shrink(x: torch.Tensor, beta: float, p: float) -> torch.Tensor:
    return torch.sign(x) * torch.relu(x.abs() - (1.0 / beta) * x.abs().pow(p - 1))


def hqq_group(w: torch.Tensor, grid: GridConfig, config: HQQConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes, scale, zero) of a group ``w (rows, cols)`` after HQQ's zero-point optimisation."""
    scale, zero = fit_params(w, grid.replace(mse_search=False))
    zero = zero.clone()
    maxq, beta = grid.maxq, config.beta
    best_err, best_zero = None, zero.clone()
    for _ in range(config.iters):
        q = torch.clamp(torch.round(w / scale[:, None] + zero[:, None]), 0, maxq)
        r = (q - zero[:, None]) * scale[:, None]
        we = _shrink(w - r, beta, config.lp_norm)
        zero = torch.mean(q - (w - we) / scale[:, None], dim=1)
        beta *= config.kappa
        err = (w - r).abs().mean(dim=1)
        if best_err is None:
            best_err = err
        improved = err < best_err
        best_err = torch.where(improved, err, best_err)
        best_zero = torch.where(improved, zero, best_zero)
        if not improved.any() and _ > 0:
            break
    # Fractional zeros are stored as float16: round them now so the file reloads the model evaluated here.
    zero = best_zero.round().clamp(0, maxq) if config.round_zero else best_zero.half().float()
    codes = torch.clamp(torch.round(w / scale[:, None] + zero[:, None]), 0, maxq)
    return codes, scale, zero


def hqq_weight(w: torch.Tensor, config: HQQConfig) -> QuantizedWeight:
    w = w.detach().float()
    grid = config.grid
    bounds = group_bounds(w.shape[1], grid.group_size)
    codes = torch.empty(w.shape, dtype=torch.uint8)
    scales = torch.empty(w.shape[0], len(bounds))
    zeros = torch.empty(w.shape[0], len(bounds))
    for k, (s, e) in enumerate(bounds):
        c, sc, z = hqq_group(w[:, s:e], grid, config)
        codes[:, s:e] = c.to(torch.uint8)
        scales[:, k], zeros[:, k] = sc, z
    return QuantizedWeight(codes, scales, zeros, grid.bits, grid.group_size)


@torch.no_grad()
def quantize_hqq(model: nn.Module, config: HQQConfig | dict | None = None, *, inplace: bool = False) -> nn.Module:
    """HQQ-quantize every selected Linear of ``model`` (no calibration data)."""
    config = coerce(HQQConfig, config)
    return quantize_each(model, config, inplace, lambda w: hqq_weight(w, config), "HQQ")
