"""Fake-quant modules: a weight parametrization and an activation quantizer.

Weights: :class:`WeightFakeQuant` is a ``torch.nn.utils.parametrize``
parametrization, so it stacks on a pruning ``Mask`` (the mask runs first; the
quantizer maps 0 to exactly 0 because the zero point is an integer) and
``slimtorch.io.fold`` bakes it into the weight. Its scale is recomputed from the
current weight every call (``scale = clip_ratio · range(w) / levels``), so train
and eval mode agree and QAT tracks the weights; the clipping ratio chosen by the
range method (min-max / percentile / MSE) is fixed when the quantizer is created.

With ``learn_scale`` the step size is a parameter trained with LSQ (Esser et al.
2020, "Learned Step Size Quantization"): the gradient of the step is scaled by
``g = 1 / sqrt(N · Qp)`` (N weights, Qp the largest code) to keep its update
size in proportion with the weights'.

Activations: :class:`ActFakeQuant` observes calibration batches, then
fake-quantizes with fixed (or LSQ-learned) scale and integer zero point. It is
attached as a child module ``input_quantizer`` / ``output_quantizer`` of the
layer and called from forward hooks, so a user's own ``forward`` needs no edit.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from slimtorch.quantize.config import UniformConfig
from slimtorch.quantize.observers import OBSERVERS
from slimtorch.quantize.uniform import clip_ratio, fake_quantize, qparams_from_range, qrange, tensor_range


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return (x.round() - x).detach() + x


def _grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """Value ``x``, gradient ``g · dL/dx`` (LSQ's step-size gradient scaling)."""
    return (x - x * g).detach() + x * g


def lsq_quantize(x: torch.Tensor, step: torch.Tensor, zp: torch.Tensor, qmin: int, qmax: int, g: float) -> torch.Tensor:
    """LSQ fake-quant: ``(round(clamp(x/s + z)) - z) · s`` with STE rounding and scaled step gradient.

    Args:
        step: positive step size, broadcastable to ``x``.
        zp: integer zero point (not learned), broadcastable to ``x``.
        g: gradient scale ``1/sqrt(N·Qp)``.
    """
    s = _grad_scale(step.abs().clamp(min=1e-8), g)
    return (_round_ste(torch.clamp(x / s + zp, qmin, qmax)) - zp) * s


def _shape_for(t: torch.Tensor, ndim: int, axis: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[axis] = -1
    return t.reshape(shape)


class WeightFakeQuant(nn.Module):
    """Parametrization ``w -> dequant(quant(w))`` for a Linear / Conv weight.

    Args:
        cfg: the tensor quantizer (bits, symmetric, per-channel axis, range method).
        weight: the weight it will see (to choose the clipping ratio / initial step).
        learn_scale: learn the step with LSQ (symmetric only).
    """

    def __init__(self, cfg: UniformConfig, weight: torch.Tensor, learn_scale: bool = False):
        super().__init__()
        self.bits, self.symmetric = cfg.bits, cfg.symmetric
        self.axis = cfg.axis % weight.ndim if cfg.per_channel else None
        self.qmin, self.qmax = qrange(cfg.bits, cfg.symmetric)
        self.learn_scale = learn_scale
        self.register_buffer("clip_ratio", clip_ratio(weight.detach().float(), cfg))
        if learn_scale:
            scale, _ = self._minmax_qparams(weight.detach())
            self.step = nn.Parameter(scale.clone())
            self.grad_scale = 1.0 / math.sqrt(weight.numel() * self.qmax)

    def _minmax_qparams(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = tensor_range(w, self.axis)
        return qparams_from_range(lo * self.clip_ratio, hi * self.clip_ratio, self.bits, self.symmetric)

    def qparams(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero_point) this quantizer applies to input weight ``w`` (per channel or scalar)."""
        if self.learn_scale:
            step = self.step.detach().abs().clamp(min=1e-8)
            return step, torch.zeros_like(step)
        return self._minmax_qparams(w)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.learn_scale:
            step = self.step if self.axis is None else _shape_for(self.step, w.ndim, self.axis)
            return lsq_quantize(w, step, torch.zeros(()), self.qmin, self.qmax, self.grad_scale)
        scale, zp = self._minmax_qparams(w)
        return fake_quantize(w, scale, zp, self.qmin, self.qmax, self.axis)

    def extra_repr(self) -> str:
        kind = "per-channel" if self.axis is not None else "per-tensor"
        return f"bits={self.bits}, symmetric={self.symmetric}, {kind}, lsq={self.learn_scale}"


class ActFakeQuant(nn.Module):
    """Per-tensor activation fake-quant with an observer for calibration.

    States: ``observing`` (records statistics, passes ``x`` through unchanged),
    then quantizing with the buffers ``scale`` / ``zero_point``.
    """

    def __init__(
        self,
        bits: int,
        symmetric: bool = False,
        observer: str = "histogram",
        percentile: float = 99.99,
        learn_scale: bool = False,
        name: str = "",
    ):
        super().__init__()
        self.bits, self.symmetric, self.observer_name, self.percentile = bits, symmetric, observer, percentile
        self.qmin, self.qmax = qrange(bits, symmetric)
        self.learn_scale, self.name = learn_scale, name
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0.0))
        self.register_buffer("calibrated", torch.tensor(False))
        if learn_scale:
            self.step = nn.Parameter(torch.tensor(1.0))
        self.observing = False
        self._observer = None

    def start_observing(self) -> None:
        self.observing = True
        self._observer = OBSERVERS.get(self.observer_name)(self.bits, self.symmetric, percentile=self.percentile)

    def finish_observing(self) -> None:
        """Turn the observed statistics into scale / zero point."""
        self.observing = False
        if self._observer is None or self._observer.seen == 0:
            from slimtorch.core.errors import UnsupportedModelError

            raise UnsupportedModelError(
                f"activation quantizer '{self.name}' saw no data during calibration; the layer was never "
                "called as a module (e.g. nn.MultiheadAttention uses out_proj's weight directly) — check the "
                "model's forward and the calibration data, or leave the layer out with QuantConfig's "
                "layers: {exclude: [...]}"
            )
        self.set_qparams(*qparams_from_range(*self._observer.range(), self.bits, self.symmetric))
        self._observer = None

    def set_qparams(self, scale: torch.Tensor, zero_point: torch.Tensor) -> None:
        self.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        self.zero_point.copy_(torch.as_tensor(zero_point, dtype=torch.float32))
        self.calibrated.fill_(True)
        if self.learn_scale:
            with torch.no_grad():
                self.step.copy_(self.scale)

    def current_qparams(self) -> tuple[float, int]:
        s = self.step.detach().abs().clamp(min=1e-8) if self.learn_scale else self.scale
        return float(s), int(self.zero_point)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self._observer.update(x)
            return x
        if not bool(self.calibrated):
            raise RuntimeError(
                f"activation quantizer '{self.name}' is not calibrated; "
                "call slimtorch.quantize.model.calibrate(model, data) or pass calib_data= to quantize_model"
            )
        if self.learn_scale:
            g = 1.0 / math.sqrt(max(x[0].numel(), 1) * self.qmax)
            return lsq_quantize(x, self.step, self.zero_point, self.qmin, self.qmax, g)
        return fake_quantize(x, self.scale, self.zero_point, self.qmin, self.qmax)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, symmetric={self.symmetric}, observer={self.observer_name}, lsq={self.learn_scale}"


def input_hook(module: nn.Module, args: tuple) -> tuple:
    return (module.input_quantizer(args[0]), *args[1:])


def output_hook(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
    return module.output_quantizer(out)
