"""Quantize a model in simulation: weight parametrizations + activation quantizers, calibration.

``quantize_model`` returns a float model whose every selected Linear / Conv
layer computes with b-bit weights (and, with ``act_bits``, b-bit inputs). It
trains like any model (``slimtorch.train.fit`` = QAT, straight-through
estimator or LSQ). ``quant_params`` lists every scale / zero point in a
JSON-able dict: that is what the integer exporter reads.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, Dataset

from slimtorch.core.config import coerce
from slimtorch.core.layers import select
from slimtorch.quantize.config import QuantConfig, UniformConfig
from slimtorch.quantize.fake_quant import ActFakeQuant, WeightFakeQuant, input_hook, output_hook
from slimtorch.quantize.layers import (
    QUANTIZABLE,
    FilterFn,
    bits_for,
    check_per_layer,
    find_parametrization,
    pre_weight,
)


def quantize_model(
    model: nn.Module,
    config: QuantConfig | dict | None = None,
    calib_data: Dataset | DataLoader | Iterable | None = None,
    *,
    filter_fn: FilterFn | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Fake-quantize the weights (and activations) of ``model``'s Linear / Conv layers.

    Args:
        model: any module; layers already carrying parametrizations (pruning masks)
            keep them, the quantizer is stacked after them.
        config: bit widths, symmetric / per-channel, range method, observer, STE or LSQ.
        calib_data: inputs for activation calibration (a Dataset of ``(x, y)`` or ``x``,
            a DataLoader, or an iterable of batches). Required before the model is run
            when ``act_bits`` is set; may instead be given later to :func:`calibrate`.
        filter_fn: ``filter_fn(module, fqn) -> bool``, on top of ``config.layers``.
        inplace: modify ``model`` instead of a deep copy.

    Returns:
        The simulated model (callers rebind).
    """
    cfg = coerce(QuantConfig, config)
    out = model if inplace else copy.deepcopy(model)
    check_per_layer(out, cfg.per_layer)
    learn = cfg.method == "lsq"
    touched = 0
    for name, module in select(out, cfg.layers, QUANTIZABLE, filter_fn=filter_fn).items():
        if find_parametrization(module, WeightFakeQuant) is not None:
            raise ValueError(f"layer '{name}' is already quantized; start from the float model")
        ucfg = UniformConfig(
            bits=bits_for(name, cfg.weight_bits, cfg.per_layer),
            symmetric=cfg.weight_symmetric,
            per_channel=cfg.per_channel,
            axis=0,
            range_method=cfg.weight_range,
            percentile=cfg.weight_percentile,
        )
        w = module.weight.detach()
        parametrize.register_parametrization(module, "weight", WeightFakeQuant(ucfg, w, learn_scale=learn))
        if cfg.act_bits is not None:
            kw = dict(
                symmetric=cfg.act_symmetric, observer=cfg.act_observer, percentile=cfg.act_percentile, learn_scale=learn
            )
            module.input_quantizer = ActFakeQuant(cfg.act_bits, name=f"{name}.input", **kw)
            module.register_forward_pre_hook(input_hook)
            if cfg.quantize_outputs:
                module.output_quantizer = ActFakeQuant(cfg.act_bits, name=f"{name}.output", **kw)
                module.register_forward_hook(output_hook)
        touched += 1
    if touched == 0:
        raise ValueError("no Linear/Conv layer matched the quantization config (check 'layers', 'skip', filter_fn)")
    if cfg.act_bits is not None and calib_data is not None:
        calibrate(out, calib_data, cfg.calib_batches, cfg.calib_batch_size)
    return out


def _batches(data: Any, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        data = [data]
    elif isinstance(data, Dataset) and not isinstance(data, DataLoader):
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    for batch in data:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def activation_quantizers(model: nn.Module) -> dict[str, ActFakeQuant]:
    return {n: m for n, m in model.named_modules() if isinstance(m, ActFakeQuant)}


@torch.no_grad()
def calibrate(model: nn.Module, data: Any, num_batches: int | None = None, batch_size: int = 256) -> nn.Module:
    """Run ``num_batches`` batches of ``data`` through ``model`` and set activation scales.

    Raises:
        ValueError: ``data`` is empty, or the model has no activation quantizer.
    """
    quantizers = activation_quantizers(model)
    if not quantizers:
        raise ValueError("model has no activation quantizers; quantize_model(..., QuantConfig(act_bits=8)) first")
    if data is None or (hasattr(data, "__len__") and len(data) == 0):
        raise ValueError("calibration data is empty; pass a few hundred representative inputs (e.g. a train subset)")
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    was_training = model.training
    model.eval()
    for q in quantizers.values():
        q.start_observing()
    seen = 0
    try:
        for x in _batches(data, batch_size):
            if num_batches is not None and seen >= num_batches:
                break
            model(x)
            seen += 1
        if seen == 0:
            raise ValueError("calibration data is empty; pass a few hundred representative inputs")
        for q in quantizers.values():
            q.finish_observing()
    finally:
        for q in quantizers.values():
            q.observing = False
        model.train(was_training)
    return model


def _tolist(t: torch.Tensor) -> float | list[float]:
    t = t.detach().float()
    return t.item() if t.ndim == 0 else t.tolist()


@torch.no_grad()
def quant_params(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Every quantized layer's parameters, JSON-able, for exporters and reports.

    Per layer (fqn): ``kind`` (``uniform`` / ``kmeans``), ``weight_bits``,
    ``weight_scale`` / ``weight_zero_point`` (per output channel when
    ``weight_axis`` is 0, else scalars), ``weight_symmetric``, ``weight_qmin/qmax``;
    with activation quantization ``act_bits``, ``act_scale``, ``act_zero_point``,
    ``act_symmetric``, ``act_qmin/qmax`` (layer input) and ``out_*`` the same for
    the output; k-means layers give ``codebook`` instead of scales.
    """
    from slimtorch.quantize.kmeans import KMeansShare

    out: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        entry: dict[str, Any] = {}
        wq = find_parametrization(module, WeightFakeQuant)
        if wq is not None:
            scale, zp = wq.qparams(pre_weight(module, WeightFakeQuant).detach())
            entry.update(
                kind="uniform",
                weight_bits=wq.bits,
                weight_symmetric=wq.symmetric,
                weight_axis=wq.axis,
                weight_qmin=wq.qmin,
                weight_qmax=wq.qmax,
                weight_scale=_tolist(scale),
                weight_zero_point=_tolist(zp.round()),
                method="lsq" if wq.learn_scale else "ste",
            )
        km = find_parametrization(module, KMeansShare)
        if km is not None:
            entry.update(kind="kmeans", weight_bits=km.bits, codebook=_tolist(km.codebook))
        for attr, prefix in (("input_quantizer", "act"), ("output_quantizer", "out")):
            q = getattr(module, attr, None)
            if isinstance(q, ActFakeQuant):
                s, z = q.current_qparams()
                entry.update(
                    {
                        f"{prefix}_bits": q.bits,
                        f"{prefix}_scale": s,
                        f"{prefix}_zero_point": z,
                        f"{prefix}_symmetric": q.symmetric,
                        f"{prefix}_qmin": q.qmin,
                        f"{prefix}_qmax": q.qmax,
                        f"{prefix}_calibrated": bool(q.calibrated),
                    }
                )
        if entry:
            out[name] = entry
    return out


def strip_activation_quant(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Remove activation quantizers and their hooks (weights untouched)."""
    out = model if inplace else copy.deepcopy(model)
    for module in out.modules():
        for attr in ("input_quantizer", "output_quantizer"):
            if isinstance(getattr(module, attr, None), ActFakeQuant):
                delattr(module, attr)
        for hooks, fn in ((module._forward_pre_hooks, input_hook), (module._forward_hooks, output_hook)):
            for key in [k for k, h in hooks.items() if h is fn]:
                del hooks[key]
    return out


def _act_qparams(name: str, prefix: str, p: dict[str, Any]) -> tuple[int, bool, torch.Tensor, torch.Tensor]:
    """Validated (bits, symmetric, scale, zero_point) of one quantizer; the values come from a file."""
    from slimtorch.core.errors import FormatError

    where = f"quantization parameters of '{name}' ({prefix})"
    bits, symmetric = p.get(f"{prefix}_bits"), p.get(f"{prefix}_symmetric")
    scale, zero = p.get(f"{prefix}_scale"), p.get(f"{prefix}_zero_point")
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 16:
        raise FormatError(f"{where}: bits must be an integer in 2..16, got {bits!r}")
    if not isinstance(symmetric, bool):
        raise FormatError(f"{where}: symmetric must be true/false, got {symmetric!r}")
    try:
        scale_t = torch.tensor(scale, dtype=torch.float32)
        zero_t = torch.tensor(float(zero))
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise FormatError(f"{where}: scale / zero point must be numbers, got {scale!r} / {zero!r}") from None
    # activation quantizers are per-tensor: exactly one positive finite scale
    if scale_t.numel() != 1 or not bool(torch.isfinite(scale_t).all()) or bool((scale_t <= 0).any()):
        raise FormatError(f"{where}: scale must be one positive finite number, got {str(scale)[:80]}")
    scale_t = scale_t.reshape(())
    if not bool(torch.isfinite(zero_t)):
        raise FormatError(f"{where}: zero point must be finite, got {zero!r}")
    return bits, symmetric, scale_t, zero_t


def attach_activation_quant(model: nn.Module, params: dict[str, dict[str, Any]]) -> nn.Module:
    """Re-create calibrated activation quantizers from :func:`quant_params` output (in place).

    ``params`` usually comes from a file's metadata, so every value is validated:
    anything malformed raises :class:`~slimtorch.core.errors.FormatError`.
    """
    from slimtorch.core.errors import FormatError

    if not isinstance(params, dict):
        raise FormatError(f"quantization parameters must be a mapping, got {type(params).__name__}")
    modules = dict(model.named_modules())
    for name, p in params.items():
        module = modules.get(name) if isinstance(name, str) else None
        if module is None:
            raise FormatError(f"quantization parameters name layer {name!r}, which the model does not have")
        if not isinstance(p, dict):
            raise FormatError(f"quantization parameters of '{name}' must be a mapping, got {type(p).__name__}")
        for attr, prefix, hook in (("input_quantizer", "act", input_hook), ("output_quantizer", "out", output_hook)):
            if f"{prefix}_bits" not in p:
                continue
            bits, symmetric, scale, zero = _act_qparams(name, prefix, p)
            q = ActFakeQuant(bits, symmetric, name=f"{name}.{prefix}")
            q.set_qparams(scale, zero)
            setattr(module, attr, q)
            if prefix == "act":
                module.register_forward_pre_hook(hook)
            else:
                module.register_forward_hook(hook)
    return model


def save_quantized(
    model: nn.Module, path: str | os.PathLike, spec: dict | None = None, metadata: dict | None = None
) -> Path:
    """Save a simulated model: folded (quantized) weights + ``quant_params`` in the file's metadata."""
    from slimtorch.io import fold, save_model

    params = quant_params(model)
    plain = strip_activation_quant(fold(model), inplace=True)
    spec = spec if spec is not None else getattr(model, "slimtorch_spec", None)
    return save_model(plain, path, spec=spec, metadata={**(metadata or {}), "quantization": params})


def load_quantized(path: str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """Load a file from :func:`save_quantized`; activation quantizers are re-attached, calibrated."""
    from slimtorch.io import load_model

    loaded = load_model(path, model=model)
    params = getattr(loaded, "slimtorch_file_metadata", {}).get("quantization", {})
    return attach_activation_quant(loaded, params).eval()
