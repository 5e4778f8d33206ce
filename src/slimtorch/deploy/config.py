"""Config of the INT8 deployment conversion (:func:`slimtorch.deploy.to_int8`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from slimtorch.core.config import FrozenConfig

Mode = Literal["static", "dynamic"]
Calibration = Literal["minmax", "percentile", "entropy", "distribution", "mse"]


class FidelityTarget(FrozenConfig):
    """What "faithful" means, measured against the float model on the user's data.

    Classifiers use ``min_agreement`` / ``max_kl`` (softmax of the outputs);
    other models (embeddings, regressions) use ``min_cosine`` on the flattened
    outputs. A metric set to ``None`` is not checked.
    """

    min_agreement: float | None = Field(0.95, ge=0.0, le=1.0)
    max_kl: float | None = Field(0.05, ge=0.0)
    min_cosine: float | None = Field(None, ge=-1.0, le=1.0)


class Int8Config(FrozenConfig):
    """How to convert a float model into an INT8 runtime artifact.

    Attributes:
        mode: ``static`` (activations calibrated ahead of time: CNNs) or
            ``dynamic`` (activation ranges computed per batch at run time:
            Linear-heavy models such as transformers and MLPs).
        backend: a name in :data:`slimtorch.deploy.BACKENDS` or ``auto`` (the
            fastest registered backend that meets ``target`` on the given data).
        quant_format: ONNX Runtime graph format: ``qdq`` (QuantizeLinear /
            DequantizeLinear pairs the runtime fuses) or ``qoperator`` (QLinearConv…).
        per_channel: one weight scale per output channel (needed by depthwise convs).
        reduce_range: 7-bit weights. On AVX2 CPUs without VNNI the u8·s8 kernel
            (``vpmaddubsw``) adds pairs of products into int16 and saturates with
            full 8-bit weights; 7-bit weights cannot saturate but lose precision.
        calibration: how activation ranges are chosen from the calibration data:
            ``minmax``, ``percentile`` (of the histogram of |x|), ``entropy`` (KL between
            the float and quantized histograms, TensorRT's), ``distribution`` (ORT's) or
            ``mse`` (the range minimising the expected clipping + rounding error,
            :mod:`slimtorch.deploy.mse_ranges`).
        percentile: the percentile of |x| kept when ``calibration == "percentile"``.
        fold_bn: fold BatchNorm into the preceding conv before anything else (exact).
        cle: cross-layer equalization (Nagel et al. 2019) before quantizing.
        cle_relu6: ``replace`` turns ReLU6 between equalized layers into ReLU (the
            paper's choice; changes the float model slightly), ``skip`` leaves such
            pairs unequalized so the float model is untouched.
        bias_correction: empirical bias correction of the weight-quantization error.
        adaround: static mode on ONNX Runtime: choose each weight's rounding (down or up)
            by AdaRound (Nagel et al. 2020, :mod:`slimtorch.deploy.adaround`) on the
            calibration data instead of ORT's round-to-nearest; the weights are set
            exactly on ORT's grid, so ORT keeps the chosen integers. Runs after CLE; bias
            correction then skips the rounded layers (their rounding is already chosen
            against the layer outputs).
        adaround_iters: AdaRound optimisation steps per layer.
        keep_float: fnmatch patterns of layer names (PyTorch module names, or ONNX
            node names) that always stay float.
        target: the fidelity the result must reach; layers are kept in float,
            most sensitive first, until it does (``max_float_layers`` at most).
        max_float_layers: fallback budget (0 disables the fallback).
        fallback_regions: static mode on ONNX Runtime: besides single layers, the fallback also
            tries keeping one activation tensor float (its producer, its consumers and the
            Clip / Relu … between them: :mod:`slimtorch.deploy.regions`). Excluding one layer
            leaves its input quantized by the layer before; on MobileNetV2 the inputs of the first
            depthwise convs are where most of the INT8 error is. Doubles the sensitivity pass.
        calib_batches / calib_batch_size: how much calibration data is read.
        threads: intra-op threads of the runtime session (latency is measured at this count).
        opset: ONNX opset of the exported graph.
        torchao_scheme: which torchao ``quantize_`` config the ``torchao`` backend applies.
        smooth_alpha: dynamic mode on ONNX Runtime: SmoothQuant migration strength
            (:mod:`slimtorch.deploy.smooth`; exact in float, one per-channel ``Mul`` per
            Linear); None disables it.
        quantize_embeddings: dynamic mode on ONNX Runtime: store embedding tables (``Gather``
            of a constant) as int8 as well (a size win; they never stay float for fidelity).
        float_weights_int8: dynamic mode on ONNX Runtime: layers that compute in float (kept by
            the fallback, or GRU / RNN without an INT8 kernel) still store their weights as int8
            (per row, dequantized once when the session loads) wherever the target still holds
            (:mod:`slimtorch.deploy.weight_only`).
    """

    mode: Mode = "static"
    backend: str = "onnxruntime"
    quant_format: Literal["qdq", "qoperator"] = "qdq"
    per_channel: bool = True
    reduce_range: bool = False
    calibration: Calibration = "percentile"
    # 99.99 rather than ORT's 99.999: the lowest mean KL of MobileNetV2 on the selection photos, held out
    # from calibration and test (bench/results/int8.json, mobilenet_sweep)
    percentile: float = Field(99.99, gt=50.0, le=100.0)
    fold_bn: bool = True
    cle: bool = True
    cle_relu6: Literal["replace", "skip"] = "skip"
    bias_correction: bool = True
    # off by default: on MobileNetV2 it cuts the int8-weights-only KL 0.075 -> 0.0015 but the ORT model's only
    # 0.167 -> 0.161 all-INT8 and 0.039 -> 0.034 with the fallback (activations dominate);
    # bench/int8.py mobilenet_adaround
    adaround: bool = False
    # 500 full-batch steps per layer: MobileNetV2 in about 3.5 min on one (shared) CPU thread
    adaround_iters: int = Field(500, ge=1)
    keep_float: tuple[str, ...] = ()
    target: FidelityTarget = FidelityTarget()
    max_float_layers: int = Field(8, ge=0)
    fallback_regions: bool = True
    calib_batches: int = Field(16, ge=1)
    calib_batch_size: int = Field(16, ge=1)
    threads: int = Field(1, ge=1)
    opset: int = Field(18, ge=13)
    torchao_scheme: Literal["int8_weight_only", "int8_dynamic"] = "int8_weight_only"
    quantize_embeddings: bool = True
    float_weights_int8: bool = True
    smooth_alpha: float | None = Field(None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self):
        from slimtorch.core.errors import ConfigError

        if self.backend == "":
            raise ConfigError("invalid value for 'backend': empty name", field="backend")
        if self.adaround and self.mode != "static":
            raise ConfigError(
                "adaround applies to static mode (weights rounded ahead of time); set mode: static or adaround: false",
                field="adaround",
            )
        return self
