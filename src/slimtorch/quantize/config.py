"""Quantization configs: one frozen, validated object per method.

Bit-width limits: uniform quantizers take 2..8 bits (what integer kernels run),
k-means weight sharing 1..16 bits (a codebook index, entropy-coded later). A
value outside raises :class:`~slimtorch.core.ConfigError` naming the field,
including the entries of ``per_layer``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from slimtorch.core.config import FrozenConfig
from slimtorch.core.errors import ConfigError
from slimtorch.core.layers import SelectsLayers

UNIFORM_BITS = (2, 8)
KMEANS_BITS = (1, 16)

RangeMethod = Literal["minmax", "percentile", "mse"]
ObserverName = Literal["minmax", "moving_average", "histogram", "mse"]


def _check_bits(value: int, field: str, lo_hi: tuple[int, int]) -> int:
    lo, hi = lo_hi
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"invalid value for '{field}': bits must be an integer in {lo}..{hi}, got {value!r}", field)
    return value


class UniformConfig(FrozenConfig):
    """A uniform (affine) quantizer of one tensor.

    Attributes:
        bits: 2..8.
        symmetric: zero point 0 and the signed range ``[-(2^(b-1)-1), 2^(b-1)-1]``;
            otherwise an unsigned ``[0, 2^b-1]`` range with an integer zero point.
        per_channel: one scale per slice along ``axis`` (axis 0 = output channels
            of Linear / Conv weights).
        range_method: ``minmax`` (no clipping), ``percentile`` (clip at the
            ``percentile``-th percentile of |x|) or ``mse`` (the clipping ratio that
            minimises ||x - q(x)||², searched on ``mse_grid`` ratios in (0, 1]).
    """

    bits: int = 8
    symmetric: bool = True
    per_channel: bool = False
    axis: int = 0
    range_method: RangeMethod = "minmax"
    percentile: float = Field(99.99, gt=50, le=100)
    mse_grid: int = Field(100, ge=2, le=10_000)

    @field_validator("bits", mode="before")
    @classmethod
    def _bits(cls, v):
        return _check_bits(v, "bits", UNIFORM_BITS)


class QuantConfig(SelectsLayers):
    """Simulated (fake-quant) quantization of a model's weights and activations.

    Attributes:
        weight_bits: default weight bit width (2..8).
        act_bits: activation bit width (2..8) or None for float activations.
        per_channel: per-output-channel weight scales (axis 0).
        weight_symmetric / act_symmetric: see :class:`UniformConfig`.
        weight_range: ``minmax`` / ``percentile`` / ``mse`` weight clipping.
        weight_percentile: for ``weight_range="percentile"``.
        act_observer: ``minmax``, ``moving_average`` (EMA of batch min/max),
            ``histogram`` (clip at ``act_percentile``) or ``mse`` (histogram +
            error-minimising clip).
        act_percentile: percentile kept by the histogram observer.
        method: ``ste`` (fixed scales, straight-through rounding) or ``lsq``
            (learned step size, Esser et al. 2020) for QAT.
        per_layer: layer name (or fnmatch pattern) → weight bits, overriding
            ``weight_bits`` (mixed precision).
        layers: ``{include: [...], exclude: [...]}``: the layers to quantize (default: every
            Linear / Conv; excluded layers stay float).
        quantize_outputs: also fake-quantize each layer's output (else inputs only).
        calib_batches: batches of calibration data the observers see.
        calib_batch_size: batch size used when ``calib_data`` is a Dataset.
    """

    weight_bits: int = 8
    act_bits: int | None = 8
    per_channel: bool = True
    weight_symmetric: bool = True
    act_symmetric: bool = False
    weight_range: RangeMethod = "minmax"
    weight_percentile: float = Field(99.99, gt=50, le=100)
    act_observer: ObserverName = "histogram"
    act_percentile: float = Field(99.99, gt=50, le=100)
    method: Literal["ste", "lsq"] = "ste"
    per_layer: dict[str, int] = Field(default_factory=dict)
    quantize_outputs: bool = False
    calib_batches: int = Field(16, ge=1)
    calib_batch_size: int = Field(256, ge=1)

    @field_validator("weight_bits", mode="before")
    @classmethod
    def _wbits(cls, v):
        return _check_bits(v, "weight_bits", UNIFORM_BITS)

    @field_validator("act_bits", mode="before")
    @classmethod
    def _abits(cls, v):
        return None if v is None else _check_bits(v, "act_bits", UNIFORM_BITS)

    @field_validator("per_layer", mode="before")
    @classmethod
    def _per_layer(cls, v):
        if v is not None and not isinstance(v, dict):
            raise ConfigError(
                f"invalid value for 'per_layer': expected a mapping layer name -> bits, got {type(v).__name__}",
                "per_layer",
            )
        for name, b in (v or {}).items():
            _check_bits(b, f"per_layer.{name}", UNIFORM_BITS)
        return v

    @model_validator(mode="after")
    def _lsq_symmetric(self):
        if self.method == "lsq" and not self.weight_symmetric:
            raise ConfigError(
                "invalid value for 'weight_symmetric': LSQ learns a symmetric step size", "weight_symmetric"
            )
        return self


class KMeansConfig(SelectsLayers):
    """k-means weight sharing (Han et al. 2016, "Deep Compression", section 3).

    Attributes:
        bits: codebook index width; k = 2^bits non-zero centroids per layer (1..16).
        init: ``linear`` (evenly spaced over [min, max], best in Han's experiments),
            ``density`` (evenly spaced on the CDF) or ``kmeans++``.
        iters: maximum Lloyd iterations (stops early when assignments settle).
        seed: seeds ``kmeans++`` (the other inits are deterministic).
        per_layer: layer name / fnmatch pattern → bits (mixed precision).
        layers: ``{include: [...], exclude: [...]}`` selecting the layers (default: every Linear / Conv).
        reseed_empty: move clusters that end up empty (linear init puts many in the
            hole that pruning leaves around zero) onto the worst-served weights, so all
            2^bits codes are used; ``False`` is the paper's plain Lloyd iteration.
        empty_layers: ``skip`` (leave and report) or ``error`` for layers with no non-zero weight.
        bias_bits: also share each selected layer's bias with its own 2^bias_bits
            codebook (trainable like the weight's), so the ``.slim`` file codes biases
            instead of storing them as float32; a bias with at most 2^bias_bits
            non-zero values is left as it is (sharing it would not make it smaller).
            ``None`` (default) leaves biases float, as Deep Compression did.
    """

    bits: int = 5
    init: Literal["linear", "density", "kmeans++"] = "linear"
    iters: int = Field(50, ge=1, le=10_000)
    seed: int = 0
    per_layer: dict[str, int] = Field(default_factory=dict)
    reseed_empty: bool = True
    empty_layers: Literal["skip", "error"] = "skip"
    bias_bits: int | None = None

    @field_validator("bits", mode="before")
    @classmethod
    def _bits(cls, v):
        return _check_bits(v, "bits", KMEANS_BITS)

    @field_validator("bias_bits", mode="before")
    @classmethod
    def _bias_bits(cls, v):
        return None if v is None else _check_bits(v, "bias_bits", KMEANS_BITS)

    @field_validator("per_layer", mode="before")
    @classmethod
    def _per_layer(cls, v):
        if v is not None and not isinstance(v, dict):
            raise ConfigError(
                f"invalid value for 'per_layer': expected a mapping layer name -> bits, got {type(v).__name__}",
                "per_layer",
            )
        for name, b in (v or {}).items():
            _check_bits(b, f"per_layer.{name}", KMEANS_BITS)
        return v


class ClipConfig(SelectsLayers):
    """Seed 001's weight clipping (权重裁剪, section 3.1): ``w -> t if |w| > T else w``.

    Attributes:
        threshold: T > 0 (absolute).
        value: the replacement t. None (default) keeps the sign, ``t = sign(w)·T``,
            i.e. saturation at the threshold; a number reproduces the seed literally.
        layers: ``{include: [...], exclude: [...]}`` selecting the layers (default: every Linear / Conv).
    """

    threshold: float = Field(gt=0)
    value: float | None = None
