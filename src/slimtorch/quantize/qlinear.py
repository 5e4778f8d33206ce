"""``QuantLinear``: a Linear layer that holds b-bit codes and group scales/zeros, not float weights.

This is what RTN, GPTQ, AWQ and HQQ return, so the quantized model is really
made of integers: :func:`save_quantized_lm` writes the codes bit-packed
(two 4-bit codes per byte; 3-bit codes in 3 bytes per 8) and reloads them
exactly. The float weight is dequantized once on first use and cached (not
saved), so evaluation runs at float speed; real integer kernels are the
deployment path's job (ONNX Runtime ``MatMulNBits``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from slimtorch.core.errors import FormatError, UnsupportedModelError
from slimtorch.core.fileio import atomic_dir, atomic_write_bytes
from slimtorch.quantize.wgrid import QuantizedWeight, group_bounds

FORMAT = "slimtorch-weight-only/1"


class QuantLinear(nn.Module):
    """``y = x @ dequant(codes, scales, zeros).T + bias``."""

    def __init__(self, qw: QuantizedWeight, bias: torch.Tensor | None = None):
        super().__init__()
        self.in_features, self.out_features = qw.codes.shape[1], qw.codes.shape[0]
        self.bits, self.group_size = qw.bits, qw.group_size
        self.register_buffer("codes", qw.codes.to(torch.uint8))
        self.register_buffer("scales", qw.scales.float())
        self.register_buffer("zeros", qw.zeros.float())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self._weight: torch.Tensor | None = None

    def quantized(self) -> QuantizedWeight:
        return QuantizedWeight(self.codes, self.scales, self.zeros, self.bits, self.group_size)

    @property
    def weight(self) -> torch.Tensor:
        if self._weight is None:
            self._weight = self.quantized().dequantize()
        return self._weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight.to(x.dtype), self.bias)

    def release_cache(self) -> None:
        """Forget the dequantized float weight (it is rebuilt from the codes on the next forward)."""
        self._weight = None

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bits={self.bits}, group_size={self.group_size}"


def replace_linear(model: nn.Module, name: str, qw: QuantizedWeight) -> QuantLinear:
    """Swap the ``nn.Linear`` at ``name`` for a :class:`QuantLinear` of ``qw``; returns it."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    if not isinstance(old, nn.Linear):
        raise UnsupportedModelError(
            f"{name} is a {type(old).__name__}, not an nn.Linear; it cannot be weight-quantized"
        )
    new = QuantLinear(qw, old.bias)
    setattr(parent, child, new)
    return new


# ---- bit packing --------------------------------------------------------------------------------------------


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack unsigned ``bits``-bit codes (any shape) little-endian into a flat uint8 tensor."""
    flat = codes.reshape(-1).to(torch.int64)
    if bits == 8:
        return flat.to(torch.uint8)
    if 8 % bits == 0:  # 1, 2, 4 bits: whole codes per byte, packed with shifts (no per-bit loop)
        per = 8 // bits
        padded = torch.zeros(-(-flat.numel() // per) * per, dtype=torch.int64)
        padded[: flat.numel()] = flat
        shifts = torch.arange(per, dtype=torch.int64) * bits
        return (padded.view(-1, per) << shifts).sum(dim=1).to(torch.uint8)
    nbits = flat.numel() * bits
    out = torch.zeros((nbits + 7) // 8, dtype=torch.int64)
    pos = torch.arange(flat.numel(), dtype=torch.int64) * bits
    for b in range(bits):
        bit = (flat >> b) & 1
        p = pos + b
        out.index_add_(0, p // 8, bit << (p % 8))
    return out.to(torch.uint8)


def unpack_codes(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: ``count`` codes as uint8."""
    if bits == 8:
        return packed[:count].clone()
    if 8 % bits == 0:  # 1, 2, 4 bits: whole codes per byte, unpacked with shifts (no per-bit loop)
        per = 8 // bits
        shifts = torch.arange(per, dtype=torch.uint8) * bits
        out = (packed[: -(-count // per)].unsqueeze(1) >> shifts) & ((1 << bits) - 1)
        return out.reshape(-1)[:count].contiguous()
    data = packed.to(torch.int64)
    pos = torch.arange(count, dtype=torch.int64) * bits
    out = torch.zeros(count, dtype=torch.int64)
    for b in range(bits):
        p = pos + b
        out |= ((data[p // 8] >> (p % 8)) & 1) << b
    return out.to(torch.uint8)


# ---- files --------------------------------------------------------------------------------------------------


def quantized_tensors(
    name: str, qw: QuantizedWeight, bias: torch.Tensor | None = None
) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, layer info) of one quantized Linear as :func:`quantized_state` stores it."""
    int_zero = qw.integral_zeros
    tensors = {
        f"{name}.qcodes": pack_codes(qw.codes, qw.bits),
        f"{name}.scales": qw.scales.float().contiguous(),
        f"{name}.zeros": pack_codes(qw.zeros.to(torch.uint8), qw.bits) if int_zero else qw.zeros.half(),
    }
    if bias is not None:
        tensors[f"{name}.bias"] = bias.detach().contiguous()
    info = {"bits": qw.bits, "group_size": qw.group_size, "shape": list(qw.codes.shape), "integral_zeros": int_zero}
    return tensors, info


def quantized_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, layer metadata) of a model whose Linears may be :class:`QuantLinear`.

    Codes are bit-packed; integral zeros are stored as packed codes too, fractional
    (HQQ) zeros as float16.
    """
    tensors: dict[str, torch.Tensor] = {}
    layers: dict[str, dict] = {}
    qnames = {n for n, m in model.named_modules() if isinstance(m, QuantLinear)}
    for name, m in model.named_modules():
        if name in qnames:
            t, layers[name] = quantized_tensors(name, m.quantized(), m.bias)
            tensors.update(t)
    seen: dict[int, str] = {}
    for name, t in model.state_dict(keep_vars=False).items():
        owner = name.rpartition(".")[0]
        if owner in qnames:
            continue
        key = t.data_ptr()
        if key in seen:  # tied weights (embedding / lm_head) are stored once
            layers.setdefault("_tied", {})[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.contiguous()
    return tensors, layers


def save_quantized_lm(model: nn.Module, directory: str | os.PathLike, tokenizer=None) -> Path:
    """Write a quantized Hugging Face causal LM: ``config.json``, ``model.safetensors`` (packed codes), tokenizer.

    The folder is written atomically (complete or absent). Returns the folder.
    """
    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(f"{directory} exists; choose a new folder (a finished model is never overwritten)")
    tensors, layers = quantized_state(model)
    with atomic_dir(directory) as tmp:
        model.config.save_pretrained(tmp)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": FORMAT})
        atomic_write_bytes(tmp / "slimtorch_quant.json", json.dumps({"format": FORMAT, "layers": layers}).encode())
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return directory


def load_quantized_lm(directory: str | os.PathLike) -> nn.Module:
    """Rebuild a model written by :func:`save_quantized_lm` (codes exact; float parts as saved).

    Raises:
        FormatError: missing or inconsistent files (names the problem).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    directory = Path(directory)
    meta_path = directory / "slimtorch_quant.json"
    if not meta_path.is_file():
        raise FormatError(f"{directory} has no slimtorch_quant.json: not a slimtorch quantized model folder")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise FormatError(f"{meta_path} is not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT:
        raise FormatError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    config = AutoConfig.from_pretrained(directory)
    model = AutoModelForCausalLM.from_config(config).float().eval()
    tensors = load_file(str(directory / "model.safetensors"))
    restore_quantized(model, tensors, meta["layers"], str(directory))
    # a quantized lm_head has its own codes: tying would try to put the embedding's float weight on it
    if getattr(config, "tie_word_embeddings", False) and not isinstance(model.get_output_embeddings(), QuantLinear):
        model.tie_weights()
    return model


def restore_quantized(model: nn.Module, tensors: dict[str, torch.Tensor], layers: dict, source: str) -> None:
    """Load :func:`quantized_state` output into ``model`` (float Linears become :class:`QuantLinear`)."""
    tensors = dict(tensors)
    layers = dict(layers)
    tied = layers.pop("_tied", {})
    for name, info in layers.items():
        out, cols = info["shape"]
        ngroups = len(group_bounds(cols, info["group_size"]))
        try:
            codes = unpack_codes(tensors.pop(f"{name}.qcodes"), info["bits"], out * cols).view(out, cols)
            zeros = tensors.pop(f"{name}.zeros")
            zeros = (
                unpack_codes(zeros, info["bits"], out * ngroups).view(out, ngroups).float()
                if info["integral_zeros"]
                else zeros.float()
            )
            qw = QuantizedWeight(codes, tensors.pop(f"{name}.scales").float(), zeros, info["bits"], info["group_size"])
        except KeyError as exc:
            raise FormatError(f"{source}: tensor {exc} of quantized layer {name} is missing") from None
        replace_linear(model, name, qw).bias = (
            nn.Parameter(tensors.pop(f"{name}.bias"), requires_grad=False) if f"{name}.bias" in tensors else None
        )
    for name, src in tied.items():
        tensors[name] = tensors[src]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if k.rpartition(".")[0] not in layers]
    if missing or unexpected:
        raise FormatError(f"{source}: missing tensors {missing[:5]}, unexpected {unexpected[:5]}")
