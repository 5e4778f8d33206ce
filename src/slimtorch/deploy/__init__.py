"""Deployment INT8: real integer kernels (ONNX Runtime, torchao, torch.ao FX), measured.

* :func:`to_int8` — static PTQ (CNNs) or dynamic INT8 (Linear-heavy models) on a
  backend from :data:`BACKENDS` (``auto`` picks the fastest faithful one); one config
  class per backend and mode (:class:`OrtStaticInt8Config`, :class:`OrtDynamicInt8Config`,
  :class:`TorchaoInt8Config`, :class:`TorchFxInt8Config`), built by :class:`Int8Config`
  from ``backend`` and ``mode``.
* :func:`evaluate_int8` — a converted model's fidelity to the float one and its accuracy.
* Float-model preparation: :func:`fold_conv_bn` (exact), :func:`cross_layer_equalize`
  and :func:`bias_correct` (Nagel et al. 2019, "Data-Free Quantization"), and
  :func:`adaround` (Nagel et al. 2020: weights rounded onto ORT's grid, up or down).
* Accuracy-aware fallback keeps the most sensitive layers, or activation tensors
  (:func:`float_region`), float until :class:`FidelityTarget` is met; the result
  lists the float layers in ``float_layers``.

The recipe stage ``int8`` lives in :mod:`slimtorch.deploy.stage`.
"""

from slimtorch.deploy.adaround import adaround
from slimtorch.deploy.artifact import Int8Model
from slimtorch.deploy.backends import BACKENDS, Backend, register_backend
from slimtorch.deploy.bias_correction import bias_correct
from slimtorch.deploy.cle import cross_layer_equalize, equalized_pairs
from slimtorch.deploy.config import (
    FidelityTarget,
    Int8Config,
    OrtDynamicInt8Config,
    OrtInt8Config,
    OrtStaticInt8Config,
    TorchaoInt8Config,
    TorchFxInt8Config,
)
from slimtorch.deploy.convert import time_variants, to_int8
from slimtorch.deploy.fallback import accuracy_aware_fallback
from slimtorch.deploy.fidelity import Int8Evaluation, evaluate_int8, fidelity, meets
from slimtorch.deploy.fold import fold_conv_bn
from slimtorch.deploy.ort import exact_float, prepare_float
from slimtorch.deploy.regions import activation_regions, float_region

__all__ = [
    "BACKENDS",
    "Backend",
    "FidelityTarget",
    "Int8Config",
    "Int8Evaluation",
    "Int8Model",
    "OrtDynamicInt8Config",
    "OrtInt8Config",
    "OrtStaticInt8Config",
    "TorchFxInt8Config",
    "TorchaoInt8Config",
    "accuracy_aware_fallback",
    "activation_regions",
    "adaround",
    "bias_correct",
    "cross_layer_equalize",
    "equalized_pairs",
    "evaluate_int8",
    "exact_float",
    "fidelity",
    "float_region",
    "fold_conv_bn",
    "meets",
    "prepare_float",
    "register_backend",
    "time_variants",
    "to_int8",
]
