"""Configs of the INT8 deployment conversion (:func:`slimtorch.deploy.to_int8`): one class per backend and mode.

The three backends read different settings: ONNX Runtime's static path calibrates
activation ranges, rounds weights and falls back layer by layer; its dynamic path
smooths activations and stores embedding tables; torchao picks a ``quantize_``
scheme; torch.ao FX reads none of these. One object holding all of them let a
setting of one backend be given to another and silently do nothing, so each
backend / mode has its own frozen config:

=====================  ==================  ====================================
backend                mode                config
=====================  ==================  ====================================
``onnxruntime``        ``static``          :class:`OrtStaticInt8Config`
``onnxruntime``        ``dynamic``         :class:`OrtDynamicInt8Config`
``torchao``            ``dynamic``         :class:`TorchaoInt8Config`
``torch_fx``           static, dynamic     :class:`TorchFxInt8Config`
``auto``               static / dynamic    the ``onnxruntime`` config of the mode
=====================  ==================  ====================================

:class:`Int8Config` holds the fields every backend reads and is the entry point:
``Int8Config(**fields)``, ``Int8Config.from_dict(d)`` and ``to_int8``'s ``config``
argument build the class that ``backend`` and ``mode`` name (through the one
validation path, :func:`slimtorch.core.config.validate_config`). A field of another
backend or mode is a :class:`~slimtorch.core.errors.ConfigError` that names the
field and where it belongs. A dict of the former single ``Int8Config`` (25 fields,
found in results files and run records) goes through :meth:`Int8Config.from_legacy`.

Which layers INT8 quantizes is the ``layers: {include, exclude}`` selection every technique
has (:mod:`slimtorch.core.layers`): ``exclude`` names the layers left in float (the former
``keep_float``), ``include`` narrows what may be quantized. ONNX Runtime also accepts ONNX
node names of the exported graph there (a node without a module of its own has no other
name); the torch backends match module names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from slimtorch.core.config import FrozenConfig, validate_config
from slimtorch.core.errors import ConfigError
from slimtorch.core.layers import SelectsLayers

Mode = Literal["static", "dynamic"]
Calibration = Literal["minmax", "percentile", "entropy", "distribution", "mse"]
AUTO = "auto"


class FidelityTarget(FrozenConfig):
    """What "faithful" means, measured against the float model on the user's data.

    Classifiers use ``min_agreement`` / ``max_kl`` (softmax of the outputs);
    other models (embeddings, regressions) use ``min_cosine`` on the flattened
    outputs. A metric set to ``None`` is not checked.
    """

    min_agreement: float | None = Field(0.95, ge=0.0, le=1.0)
    max_kl: float | None = Field(0.05, ge=0.0)
    min_cosine: float | None = Field(None, ge=-1.0, le=1.0)


# classes that choose a concrete subclass from the data instead of being built themselves
_ENTRY_POINTS: set[type] = set()


def _entry_point(cls: type) -> type:
    _ENTRY_POINTS.add(cls)
    return cls


@_entry_point
class Int8Config(SelectsLayers):
    """What every backend reads; building one gives the config class of ``backend`` and ``mode``.

    Attributes:
        backend: a name in :data:`slimtorch.deploy.BACKENDS` or ``auto`` (the fastest registered
            backend that meets ``target`` on the given data; it takes the ``onnxruntime`` settings of
            its mode, the other candidates run with their defaults).
        mode: ``static`` (activations calibrated ahead of time: CNNs) or ``dynamic`` (activation
            ranges computed per batch at run time: Linear-heavy models such as transformers and
            MLPs). Default: ``static`` where the backend has it (``torchao``: ``dynamic``).
        target: the fidelity the result must reach: ONNX Runtime keeps layers float, most sensitive
            first, until it does; ``auto`` picks among the backends that reach it.
        calib_batches / calib_batch_size: how much calibration data is read.
        threads: intra-op threads the INT8 model runs with (latency is measured at this count).
        layers: which layers are quantized: ``include`` (default: every layer the backend
            quantizes) and ``exclude`` (left in float), fnmatch patterns over module names; ONNX
            Runtime matches ONNX node names of the exported graph too. A pattern matching nothing
            is a :class:`~slimtorch.core.errors.ConfigError` naming it. The accuracy-aware fallback
            (ONNX Runtime) may keep further layers float; the result's ``float_layers`` lists them all.
    """

    backend: str = "onnxruntime"
    mode: Mode = "static"
    target: FidelityTarget = FidelityTarget()
    calib_batches: int = Field(16, ge=1)
    calib_batch_size: int = Field(16, ge=1)
    threads: int = Field(1, ge=1)

    def __new__(cls, **data: Any):
        # Int8Config(mode="dynamic", ...) is an OrtDynamicInt8Config: the entry point builds the concrete class
        return super().__new__(cls.concrete_class(data))

    @classmethod
    def concrete_class(cls, data: dict[str, Any]) -> type[Int8Config]:
        """The class a dict of fields builds: ``cls`` itself unless ``cls`` is an entry point.

        Raises:
            ConfigError: an unknown backend, or a mode the backend does not have.
        """
        if cls not in _ENTRY_POINTS:
            return cls
        backend, mode = data.get("backend", "onnxruntime"), data.get("mode")
        variants = backend_configs(backend)
        if mode is None:
            mode = "static" if "static" in variants else next(iter(variants))
        if mode not in ("static", "dynamic"):
            raise ConfigError(f"invalid value for 'mode': static or dynamic (got {mode!r})", field="mode")
        if mode not in variants:
            raise ConfigError(
                f"invalid value for 'mode': backend '{backend}' has no {mode} mode; it supports {', '.join(variants)}",
                field="mode",
            )
        found = variants[mode]
        if not issubclass(found, cls):
            raise ConfigError(f"backend '{backend}' ({mode}) is not a {cls.__name__}", field="backend")
        return found

    @model_validator(mode="wrap")
    @classmethod
    def _dispatch(cls, data: Any, handler):
        if isinstance(data, dict):
            concrete = cls.concrete_class(data)
            if concrete is not cls:
                return validate_config(concrete, data)
        return handler(data)

    @model_validator(mode="before")
    @classmethod
    def _foreign_fields(cls, data: Any):
        """A field of another backend / mode is named with where it belongs (it would do nothing here)."""
        if not isinstance(data, dict):
            return data
        for key in data:
            if key in cls.model_fields:
                continue
            if key == "torchao_scheme":
                raise ConfigError("'torchao_scheme' is now 'scheme' (backend: torchao)", field=key)
            if key == "keep_float":
                was = data[key]
                was = [was] if isinstance(was, str) else list(was or [])
                raise ConfigError(
                    f"'keep_float' was replaced by layers: {{exclude: [...]}} (here: layers: {{exclude: "
                    f"{was!r}}}; a dict saved from the former single Int8Config: "
                    "Int8Config.from_legacy(d))",
                    field=key,
                )
            owners = [f"{b} {m}" for (b, m), c in _variants().items() if key in c.model_fields]
            if owners:
                here = f"{data.get('backend', 'onnxruntime')} {data.get('mode', cls.model_fields['mode'].default)}"
                raise ConfigError(
                    f"'{key}' is a setting of {' / '.join(owners)}, not of {here} ({cls.__name__}): remove it, or "
                    "change backend / mode (a dict saved from the former single Int8Config: Int8Config.from_legacy(d))",
                    field=key,
                )
        return data

    @classmethod
    def from_legacy(cls, data: dict[str, Any]) -> Int8Config:
        """The config a dict of the former 25-field ``Int8Config`` ran with (results files, run records).

        That class read only the fields of its backend and mode and ignored the rest, so they
        are dropped here; what remains is validated as usual. Its ``keep_float`` (read by ONNX
        Runtime only) becomes ``layers: {exclude: [...]}``.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"from_legacy: expected a dict, got {type(data).__name__}", field="config")
        data = dict(data)
        if "torchao_scheme" in data:
            data["scheme"] = data.pop("torchao_scheme")
        keep_float = data.pop("keep_float", None)
        concrete = cls.concrete_class(data)
        if keep_float and issubclass(concrete, OrtInt8Config):
            data["layers"] = {"exclude": list(keep_float)}
        keep = concrete.model_fields
        return validate_config(cls, {k: v for k, v in data.items() if k in keep})


class OrtInt8Config(Int8Config):
    """The ONNX Runtime settings both modes read (:mod:`slimtorch.deploy.ort`).

    Attributes:
        per_channel: one weight scale per output channel (needed by depthwise convs).
        reduce_range: 7-bit weights. On AVX2 CPUs without VNNI the u8·s8 kernel
            (``vpmaddubsw``) adds pairs of products into int16 and saturates with
            full 8-bit weights; 7-bit weights cannot saturate but lose precision.
        fold_bn: fold BatchNorm into the preceding conv before anything else (exact).
        cle: cross-layer equalization (Nagel et al. 2019) before quantizing.
        cle_relu6: ``replace`` turns ReLU6 between equalized layers into ReLU (the
            paper's choice; changes the float model slightly), ``skip`` leaves such
            pairs unequalized so the float model is untouched.
        max_float_layers: fallback budget: layers kept in float, most sensitive first, until
            ``target`` is met (0 disables the fallback).
        opset: ONNX opset of the exported graph.
    """

    backend: Literal["onnxruntime", "auto"] = "onnxruntime"
    per_channel: bool = True
    reduce_range: bool = False
    fold_bn: bool = True
    cle: bool = True
    cle_relu6: Literal["replace", "skip"] = "skip"
    max_float_layers: int = Field(8, ge=0)
    opset: int = Field(18, ge=13)


_entry_point(OrtInt8Config)  # OrtInt8Config(mode="dynamic") is an OrtDynamicInt8Config too


class OrtStaticInt8Config(OrtInt8Config):
    """ONNX Runtime static INT8 (QDQ): activation ranges calibrated ahead of time (CNNs).

    Attributes:
        quant_format: ``qdq`` (QuantizeLinear / DequantizeLinear pairs the runtime fuses) or
            ``qoperator`` (QLinearConv…).
        calibration: how activation ranges are chosen from the calibration data:
            ``minmax``, ``percentile`` (of the histogram of |x|), ``entropy`` (KL between
            the float and quantized histograms, TensorRT's), ``distribution`` (ORT's) or
            ``mse`` (the range minimising the expected clipping + rounding error,
            :mod:`slimtorch.deploy.mse_ranges`).
        percentile: the percentile of |x| kept when ``calibration == "percentile"``.
        bias_correction: empirical bias correction of the weight-quantization error.
        adaround: choose each weight's rounding (down or up) by AdaRound (Nagel et al. 2020,
            :mod:`slimtorch.deploy.adaround`) on the calibration data instead of ORT's
            round-to-nearest; the weights are set exactly on ORT's grid, so ORT keeps the chosen
            integers. Runs after CLE; bias correction then skips the rounded layers (their
            rounding is already chosen against the layer outputs).
        adaround_iters: AdaRound optimisation steps per layer.
        fallback_regions: besides single layers, the fallback also tries keeping one activation
            tensor float (its producer, its consumers and the Clip / Relu … between them:
            :mod:`slimtorch.deploy.regions`). Excluding one layer leaves its input quantized by the
            layer before; on MobileNetV2 the inputs of the first depthwise convs are where most of
            the INT8 error is. Doubles the sensitivity pass.
    """

    mode: Literal["static"] = "static"
    quant_format: Literal["qdq", "qoperator"] = "qdq"
    calibration: Calibration = "percentile"
    # 99.99 rather than ORT's 99.999: the lowest mean KL of MobileNetV2 on the selection photos, held out
    # from calibration and test (bench/results/int8.json, mobilenet_sweep)
    percentile: float = Field(99.99, gt=50.0, le=100.0)
    bias_correction: bool = True
    # off by default: on MobileNetV2 it cuts the int8-weights-only KL 0.075 -> 0.0015 but the ORT model's only
    # 0.167 -> 0.161 all-INT8 and 0.039 -> 0.034 with the fallback (activations dominate);
    # bench/int8.py mobilenet_adaround
    adaround: bool = False
    # 500 full-batch steps per layer: MobileNetV2 in about 3.5 min on one (shared) CPU thread
    adaround_iters: int = Field(500, ge=1)
    fallback_regions: bool = True


class OrtDynamicInt8Config(OrtInt8Config):
    """ONNX Runtime dynamic INT8: int8 weights, activations quantized per batch (transformers, MLPs, LSTMs).

    Attributes:
        smooth_alpha: SmoothQuant migration strength (:mod:`slimtorch.deploy.smooth`; exact in
            float, one per-channel ``Mul`` per Linear); None disables it.
        quantize_embeddings: store embedding tables (``Gather`` of a constant) as int8 as well (a
            size win; they never stay float for fidelity).
        float_weights_int8: layers that compute in float (excluded by ``layers``, kept by the
            fallback, or GRU / RNN without an INT8 kernel) still store their weights as int8 (per row, dequantized once
            when the session loads) wherever the target still holds
            (:mod:`slimtorch.deploy.weight_only`).
    """

    mode: Literal["dynamic"] = "dynamic"
    smooth_alpha: float | None = Field(None, ge=0.0, le=1.0)
    quantize_embeddings: bool = True
    float_weights_int8: bool = True


class TorchaoInt8Config(Int8Config):
    """torchao ``quantize_`` (PyTorch eager, dynamic mode only).

    Attributes:
        scheme: ``int8_weight_only`` (``Int8WeightOnlyConfig``) or ``int8_dynamic``
            (``Int8DynamicActivationInt8WeightConfig``).
    """

    backend: Literal["torchao"] = "torchao"
    mode: Literal["dynamic"] = "dynamic"
    scheme: Literal["int8_weight_only", "int8_dynamic"] = "int8_weight_only"


class TorchFxInt8Config(Int8Config):
    """The deprecated ``torch.ao.quantization`` flows with the x86 (fbgemm) kernels: FX static, eager dynamic.

    Nothing to set beyond the shared fields: static uses torch's default x86 qconfig (BatchNorm
    folded first); dynamic quantizes Linear, LSTM, GRU and Embedding.
    """

    backend: Literal["torch_fx"] = "torch_fx"


def backend_configs(backend: str) -> dict[str, type[Int8Config]]:
    """``mode -> config class`` of a backend name (``auto``: the ONNX Runtime ones).

    Raises:
        ConfigError: the name is not a registered backend nor ``auto``.
    """
    from slimtorch.deploy.backends import BACKENDS  # the backends register their configs

    if backend == AUTO:
        backend = "onnxruntime"
    if not isinstance(backend, str) or backend == "":
        raise ConfigError(f"invalid value for 'backend': a backend name (got {backend!r})", field="backend")
    try:
        return BACKENDS.get(backend).configs
    except ConfigError as exc:
        raise ConfigError(f"invalid value for 'backend': {exc} (or auto)", field="backend") from None


def _variants() -> dict[tuple[str, str], type[Int8Config]]:
    from slimtorch.deploy.backends import BACKENDS

    return {(b, m): c for b in BACKENDS.names() for m, c in BACKENDS.get(b).configs.items()}
