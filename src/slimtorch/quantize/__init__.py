"""Quantization in simulation: uniform b-bit weights / activations, clipping, QAT (STE, LSQ),
k-means weight sharing with centroid fine-tuning, mixed precision.

Every transform is ``fn(model, config) -> model`` and works through
``torch.nn.utils.parametrize`` (weights) and forward hooks (activations), so it
composes with pruning masks and is folded by ``slimtorch.io.fold``. The recipe
stages live in :mod:`slimtorch.quantize.stage` (imported by the pipeline).
"""

from slimtorch.quantize.awq import AWQConfig, quantize_awq, quantize_awq_streamed
from slimtorch.quantize.clip import clip_weights
from slimtorch.quantize.config import ClipConfig, KMeansConfig, QuantConfig, UniformConfig
from slimtorch.quantize.gptq import GPTQConfig, quantize_gptq, quantize_gptq_streamed
from slimtorch.quantize.hqq import HQQConfig, quantize_hqq
from slimtorch.quantize.kmeans import kmeans_share, shared_state
from slimtorch.quantize.mixed import MixedPrecisionResult, select_bits, sensitivity
from slimtorch.quantize.mixed_lm import MixedBitsConfig
from slimtorch.quantize.model import (
    load_quantized,
    quant_params,
    quantize_model,
    save_quantized,
    strip_activation_quant,
)
from slimtorch.quantize.qembedding import EmbeddingGrid, quantize_embedding
from slimtorch.quantize.qlinear import load_quantized_lm, save_quantized_lm
from slimtorch.quantize.report import format_report, layer_report
from slimtorch.quantize.rtn import RTNConfig, quantize_rtn
from slimtorch.quantize.w8a8 import W8A8Config, quantize_w8a8

__all__ = [
    "AWQConfig",
    "ClipConfig",
    "EmbeddingGrid",
    "GPTQConfig",
    "HQQConfig",
    "KMeansConfig",
    "MixedBitsConfig",
    "MixedPrecisionResult",
    "QuantConfig",
    "RTNConfig",
    "UniformConfig",
    "W8A8Config",
    "clip_weights",
    "format_report",
    "kmeans_share",
    "layer_report",
    "load_quantized",
    "load_quantized_lm",
    "quant_params",
    "quantize_awq",
    "quantize_awq_streamed",
    "quantize_embedding",
    "quantize_gptq",
    "quantize_gptq_streamed",
    "quantize_hqq",
    "quantize_model",
    "quantize_rtn",
    "quantize_w8a8",
    "save_quantized",
    "save_quantized_lm",
    "select_bits",
    "sensitivity",
    "shared_state",
    "strip_activation_quant",
]
