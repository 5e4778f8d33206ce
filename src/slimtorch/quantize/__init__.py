"""Quantization in simulation: uniform b-bit weights / activations, clipping, QAT (STE, LSQ),
k-means weight sharing with centroid fine-tuning, mixed precision.

Every transform is ``fn(model, config) -> model`` and works through
``torch.nn.utils.parametrize`` (weights) and forward hooks (activations), so it
composes with pruning masks and is folded by ``slimtorch.io.fold``. The recipe
stages live in :mod:`slimtorch.quantize.stage` (imported by the pipeline).
"""

from slimtorch.quantize.clip import clip_tensor, clip_weights
from slimtorch.quantize.config import ClipConfig, KMeansConfig, QuantConfig, UniformConfig
from slimtorch.quantize.fake_quant import ActFakeQuant, WeightFakeQuant, lsq_quantize
from slimtorch.quantize.kmeans import (
    KMeansShare,
    SharedLayer,
    kmeans_1d,
    kmeans_share,
    kmeans_skipped,
    shared_state,
    shared_tensors,
    to_shared_tensor,
)
from slimtorch.quantize.mixed import MixedPrecisionResult, select_bits, sensitivity
from slimtorch.quantize.model import (
    activation_quantizers,
    attach_activation_quant,
    calibrate,
    load_quantized,
    quant_params,
    quantize_model,
    save_quantized,
    strip_activation_quant,
)
from slimtorch.quantize.observers import OBSERVERS
from slimtorch.quantize.report import format_report, layer_report
from slimtorch.quantize.uniform import (
    compute_qparams,
    dequantize,
    fake_quantize,
    mse_clip_ratio,
    qparams_from_range,
    qrange,
    quantize,
    quantize_tensor,
    sqnr_db,
)

__all__ = [
    "OBSERVERS",
    "ActFakeQuant",
    "ClipConfig",
    "KMeansConfig",
    "KMeansShare",
    "MixedPrecisionResult",
    "QuantConfig",
    "SharedLayer",
    "UniformConfig",
    "WeightFakeQuant",
    "activation_quantizers",
    "attach_activation_quant",
    "calibrate",
    "clip_tensor",
    "clip_weights",
    "compute_qparams",
    "dequantize",
    "fake_quantize",
    "format_report",
    "kmeans_1d",
    "kmeans_share",
    "kmeans_skipped",
    "layer_report",
    "load_quantized",
    "lsq_quantize",
    "mse_clip_ratio",
    "qparams_from_range",
    "qrange",
    "quant_params",
    "quantize",
    "quantize_model",
    "quantize_tensor",
    "save_quantized",
    "select_bits",
    "sensitivity",
    "shared_state",
    "shared_tensors",
    "sqnr_db",
    "strip_activation_quant",
    "to_shared_tensor",
]
