"""Backends behind one interface: ``convert(model, calib, config, out_dir, check) -> Int8Model``.

Each backend registers the config class of each mode it has (:mod:`slimtorch.deploy.config`);
``Int8Config(backend=..., mode=...)`` builds that class.

* ``onnxruntime``: static QDQ or dynamic INT8 (:mod:`slimtorch.deploy.ort`).
* ``torchao``: ``quantize_`` with ``Int8WeightOnlyConfig`` or
  ``Int8DynamicActivationInt8WeightConfig`` (dynamic mode; PyTorch eager).
* ``torch_fx``: the deprecated ``torch.ao.quantization`` FX static flow with the
  x86 (fbgemm) qconfig; its deprecation warnings stay off the user's screen.

Every backend's result is measured by :func:`slimtorch.deploy.to_int8` the
same way, so ``backend="auto"`` can pick the fastest faithful one.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slimtorch.core.errors import UnsupportedModelError
from slimtorch.core.quiet import quantized_engine, quiet
from slimtorch.core.registry import Registry
from slimtorch.deploy.artifact import Int8Model, reference_outputs
from slimtorch.deploy.config import (
    Int8Config,
    OrtDynamicInt8Config,
    OrtStaticInt8Config,
    TorchaoInt8Config,
    TorchFxInt8Config,
)
from slimtorch.deploy.fidelity import fidelity
from slimtorch.deploy.fold import fold_conv_bn
from slimtorch.deploy.ort import convert_onnxruntime
from slimtorch.deploy.selection import torch_unselected

Batches = list[tuple[torch.Tensor, ...]]
# the layers the FX static flow quantizes with weights (what a ``layers`` selection chooses among)
_FX_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class Backend:
    """A registered backend: its conversion and, per mode it has, the config class it reads."""

    name: str
    configs: dict[str, type[Int8Config]]
    convert: Callable[[nn.Module, Batches, Int8Config, Path, Batches | None], Int8Model]

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self.configs)


BACKENDS: Registry[Backend] = Registry("int8 backend")


def register_backend(name: str, configs: dict[str, type[Int8Config]]):
    """Register ``convert`` under ``name``; ``configs``: ``mode -> Int8Config subclass`` (its ``backend`` field
    a ``Literal`` of ``name``), what ``Int8Config(backend=name, mode=...)`` builds."""

    def deco(fn):
        BACKENDS.register(name, Backend(name, dict(configs), fn))
        return fn

    return deco


def _state_bytes(model: nn.Module) -> int:
    if any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules()):
        # packed int8 weights (dynamic Linear / LSTM / GRU) hide from state_dict's tensors: count the saved bytes
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        return buf.getbuffer().nbytes
    seen, total = set(), 0
    for t in list(model.state_dict().values()):
        if isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def _torch_runner(model: nn.Module, threads: int, engine: str | None = None):
    """``inputs -> float output`` at ``threads`` intra-op threads (like an ONNX Runtime session); with ``engine``,
    torch's quantized engine is that one. Both are set during each call only and given back after it."""

    @torch.inference_mode()
    def run(inputs):
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with quantized_engine(engine) if engine else contextlib.nullcontext():
                out = model(*inputs)
        finally:
            torch.set_num_threads(old)
        return (out[0] if isinstance(out, (tuple, list)) else out).float()

    return run


@register_backend("onnxruntime", {"static": OrtStaticInt8Config, "dynamic": OrtDynamicInt8Config})
def _ort(model, calib, cfg, out_dir, check=None):
    return convert_onnxruntime(model, calib, cfg, out_dir, check)


@register_backend("torchao", {"dynamic": TorchaoInt8Config})
def _torchao(model, calib, cfg, out_dir, check=None):
    with quiet():
        from torchao.quantization import (
            Int8DynamicActivationInt8WeightConfig,
            Int8WeightOnlyConfig,
            quantize_,
        )

        qcfg = Int8WeightOnlyConfig() if cfg.scheme == "int8_weight_only" else Int8DynamicActivationInt8WeightConfig()
        m = copy.deepcopy(model).eval()
        # torchao quantizes nn.Linear (its default filter); the selection's float layers are filtered out
        float_layers = torch_unselected(model, cfg.layers, nn.Linear, "Linear")
        skip = set(float_layers)
        quantize_(
            m, qcfg, filter_fn=(lambda mod, fqn: isinstance(mod, nn.Linear) and fqn not in skip) if skip else None
        )
    run = _torch_runner(m, cfg.threads)
    check = check or calib
    metrics = fidelity(reference_outputs(model, check), torch.cat([run(b) for b in check]))
    return Int8Model(
        "torchao",
        "dynamic",
        run,
        None,
        float_layers,
        {"fidelity_checked": metrics, "scheme": cfg.scheme},
        _state_bytes(m),
    )


@register_backend("torch_fx", {"static": TorchFxInt8Config, "dynamic": TorchFxInt8Config})
def _torch_fx(model, calib, cfg, out_dir, check=None):
    # the x86 (fbgemm) kernels pack the weights; the engine is set for the conversion and each run, then restored
    with quiet(), quantized_engine("x86"):
        from torch.ao.quantization import get_default_qconfig_mapping, quantize_dynamic
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        if cfg.mode == "dynamic":
            from torch.ao.quantization import (
                default_dynamic_qconfig,
                float_qparams_weight_only_qconfig,
            )

            # recurrent layers too (fbgemm's dynamic LSTM / GRU kernels; one weight scale per tensor) and
            # embedding tables (int8 rows, one scale / offset per row)
            spec: dict = {
                nn.Linear: default_dynamic_qconfig,
                nn.LSTM: default_dynamic_qconfig,
                nn.GRU: default_dynamic_qconfig,
                nn.Embedding: float_qparams_weight_only_qconfig,
            }
            # a module name's entry overrides its type's: None leaves that layer float
            kinds = (nn.Linear, nn.LSTM, nn.GRU, nn.Embedding)
            float_layers = torch_unselected(model, cfg.layers, kinds, "Linear/LSTM/GRU/Embedding")
            spec.update(dict.fromkeys(float_layers))
            m = quantize_dynamic(copy.deepcopy(model).eval(), spec, dtype=torch.qint8)
        else:
            mapping = get_default_qconfig_mapping("x86")
            float_layers = torch_unselected(model, cfg.layers, _FX_LAYERS, "Conv/Linear")
            for name in float_layers:
                mapping.set_module_name(name, None)  # the selection's float layers: no observers, no int8
            try:
                m = prepare_fx(fold_conv_bn(model), mapping, calib[0])
            except Exception as exc:
                raise UnsupportedModelError(f"torch_fx backend cannot trace the model: {exc}") from exc
            with torch.inference_mode():
                for b in calib:
                    m(*b)
            m = convert_fx(m)
    run = _torch_runner(m, cfg.threads, engine="x86")
    check = check or calib
    with quiet():
        metrics = fidelity(reference_outputs(model, check), torch.cat([run(b) for b in check]))
    return Int8Model("torch_fx", cfg.mode, run, None, float_layers, {"fidelity_checked": metrics}, _state_bytes(m))
