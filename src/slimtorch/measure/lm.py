"""Measuring a causal language model: perplexity on held-out text and the size of its weights.

The generic :func:`slimtorch.measure.record.measure` (top-1 accuracy, MACs by
tracing, eager latency at batch 1 and 32, a serialized copy for the file size)
does not fit a decoder: it has no labels, a 49k-vocabulary forward at batch 32 is
slow, and copying a 135M-parameter model to count its bytes doubles memory. For
causal LMs the runner records instead:

* ``perplexity`` on the recipe's test text (window / stride / tokens recorded);
* ``size_bytes``: the saved ``model.safetensors`` when a stage wrote one (bit-packed
  codes, scales, zeros and the float parts), else the same payload computed from
  the tensors (float32 for float layers);
* parameters, non-zeros and the sparsity of the decoder blocks' Linears (``decoder_sparsity``);
* no MACs and no latency (``macs`` is ``None``); the perplexity pass's time per
  window is recorded as ``eval_ms_per_window`` (eager PyTorch, not a deployment
  latency).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimtorch.core.errors import UnsupportedModelError

LM_NOTE = (
    "Language model: perplexity on the recipe's held-out text (lower is better); size = the saved "
    "model.safetensors (bit-packed integer codes + scales/zeros for quantized layers, float32 otherwise); "
    "MACs and latency are not measured for language models (the eval ms per window is the eager "
    "perplexity pass, not a deployment latency); calib s = the stage's calibration time."
)


def is_causal_lm(model: nn.Module) -> bool:
    """Whether ``model`` is a Hugging Face causal LM (``…ForCausalLM`` with ``generate``)."""
    if not hasattr(model, "generate") or getattr(model, "config", None) is None:
        return False
    return type(model).__name__.endswith("ForCausalLM") or bool(getattr(model.config, "is_decoder", False))


def _unique_tensors(model: nn.Module):
    seen: set[int] = set()
    for name, t in model.state_dict().items():
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        yield name, t


def payload_bytes(model: nn.Module) -> int:
    """Bytes of the tensors :func:`~slimtorch.quantize.qlinear.save_quantized_lm` writes (without headers).

    Quantized layers: packed codes, float32 scales, packed (or float16) zeros, bias;
    every other tensor as stored (tied weights once).
    """
    from slimtorch.quantize.qlinear import QuantLinear

    total = 0
    qnames = set()
    for name, m in model.named_modules():
        if isinstance(m, QuantLinear):
            qnames.add(name)
            n = m.codes.numel()
            total += math.ceil(n * m.bits / 8) + m.scales.numel() * 4
            zeros = m.zeros.numel()
            total += math.ceil(zeros * m.bits / 8) if m.quantized().integral_zeros else zeros * 2
            total += 0 if m.bias is None else m.bias.numel() * 4
    for name, t in _unique_tensors(model):
        if name.rpartition(".")[0] not in qnames:
            total += t.numel() * t.element_size()
    return total


def dir_weight_bytes(path: str | os.PathLike) -> int:
    """Bytes of the ``*.safetensors`` files of a model folder (the weights, not config or tokenizer)."""
    p = Path(path)
    files = [p] if p.is_file() else list(p.glob("*.safetensors"))
    return sum(f.stat().st_size for f in files)


@torch.no_grad()
def linear_stats(model: nn.Module) -> dict[str, Any]:
    """Parameters, non-zeros, the zero fraction of the decoder blocks' Linears, and the quantized layers' bits.

    ``decoder_sparsity`` counts exact zeros of the effective weights, so a quantized layer
    whose codes hit the zero point shows some zeros too.
    """
    from slimtorch.quantize.qlinear import QuantLinear

    qnames = {n for n, m in model.named_modules() if isinstance(m, QuantLinear)}
    params = nonzero = 0
    for name, t in _unique_tensors(model):
        if t.is_floating_point() and name.rpartition(".")[0] not in qnames:  # not scales / zeros / bias
            params += t.numel()
            nonzero += int(torch.count_nonzero(t))
    lin_total = lin_zero = quantized = 0
    bits: dict[str, int] = {}
    try:
        from slimtorch.models.llm import decoder_blocks

        prefix = decoder_blocks(model)[0] + "."
    except UnsupportedModelError:
        prefix = ""
    for name, m in model.named_modules():
        if not name.startswith(prefix):  # sparsity of the decoder blocks' Linears (not lm_head)
            if isinstance(m, QuantLinear):
                quantized += 1
                bits[str(m.bits)] = bits.get(str(m.bits), 0) + 1
                params += m.weight.numel() + (0 if m.bias is None else m.bias.numel())
                nonzero += int(torch.count_nonzero(m.weight))
            continue
        if isinstance(m, QuantLinear):
            w = m.weight
            quantized += 1
            bits[str(m.bits)] = bits.get(str(m.bits), 0) + 1
            params += w.numel() + (0 if m.bias is None else m.bias.numel())  # the weights the codes stand for
            nz = int(torch.count_nonzero(w))
            nonzero += nz
            lin_total, lin_zero = lin_total + w.numel(), lin_zero + w.numel() - nz
        elif isinstance(m, nn.Linear):
            nz = int(torch.count_nonzero(m.weight))
            lin_total, lin_zero = lin_total + m.weight.numel(), lin_zero + m.weight.numel() - nz
    return {
        "params": params,
        "nonzero": nonzero,
        "decoder_sparsity": round(lin_zero / max(lin_total, 1), 4),
        "quantized_linears": quantized,
        "bits": bits,
    }


def measure_lm(
    model: nn.Module,
    text,
    *,
    name: str,
    artifact: str | os.PathLike | None = None,
    calib_seconds: float | None = None,
    dense_bytes: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """One record (the keys the report tables read) of a causal LM.

    Args:
        text: a :class:`~slimtorch.data.lm_text.LMText` (``None``: no perplexity).
        artifact: the saved model folder (or file) of this stage.
        calib_seconds: the stage's calibration time (copied into the record).
        dense_bytes: the first record's float32 size (the ratio's base).
    """
    from slimtorch.measure.perplexity import perplexity

    stats = linear_stats(model)
    payload = payload_bytes(model)
    rec: dict[str, Any] = {
        "name": name,
        "kind": "causal-lm",
        "params": stats["params"],
        "nonzero": stats["nonzero"],
        "macs": None,
        "sparse_macs": None,
        "dense_bytes": dense_bytes if dense_bytes is not None else payload,
        "file_bytes": payload,
        "artifact_bytes": None,
        "artifact": None,
        "accuracy": None,
        "loss": None,
        "agreement": None,
        "latency": {},
        "layers": {},
        "decoder_sparsity": stats["decoder_sparsity"],
        "quantized_linears": stats["quantized_linears"],
        "bits": stats["bits"],
        "calib_seconds": calib_seconds,
    }
    if artifact is not None:
        rec["artifact"] = str(artifact)
        rec["artifact_bytes"] = dir_weight_bytes(artifact)
    rec["size_bytes"] = rec["artifact_bytes"] if rec["artifact_bytes"] is not None else payload
    rec["perplexity"] = None
    if text is not None:
        p = perplexity(model, text.test, text.window, text.stride, progress=progress)
        rec["perplexity"] = p.perplexity
        rec["loss"] = p.nll
        rec["perplexity_eval"] = {
            "window": p.window,
            "stride": p.stride,
            "windows": p.windows,
            "tokens_scored": p.tokens_scored,
            "seconds": round(p.seconds, 2),
        }
        rec["eval_ms_per_window"] = 1000 * p.seconds / max(p.windows, 1)
    return rec
