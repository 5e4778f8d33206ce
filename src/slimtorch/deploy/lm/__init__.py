"""Language models on ONNX Runtime: int4 / int8 ``MatMulNBits`` graphs with a KV cache, and generation.

* :func:`export_onnx` — a Llama-family decoder (float, or with part 1's ``QuantLinear``
  layers) to one ONNX graph; quantized layers keep their exact integers.
* :class:`OnnxCausalLM` — the exported folder in ONNX Runtime (KV cache in ``OrtValue``s).
* :func:`generate_onnx` — greedy or sampled decoding, stop tokens, small batches; prefill
  and decode timed separately.
"""

from slimtorch.deploy.lm.config import LMExportConfig
from slimtorch.deploy.lm.graph import export_onnx, onnx_size_bytes
from slimtorch.deploy.lm.runtime import OnnxCausalLM

__all__ = ["LMExportConfig", "OnnxCausalLM", "export_onnx", "onnx_size_bytes"]
