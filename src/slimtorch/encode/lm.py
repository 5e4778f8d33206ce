"""Deep Compression for causal language models: a pruned, quantized decoder as one ``.slim`` file.

Han, Mao & Dally (ICLR 2016) chain pruning, quantization and entropy coding. For a
language model the first two are SparseGPT's joint sparse + 4-bit mode (or Wanda
then GPTQ) on the decoder Linears and round-to-nearest on the (tied) embedding
(:mod:`slimtorch.quantize.qembedding`); this module is the third: every
:class:`~slimtorch.quantize.qlinear.QuantLinear` and
:class:`~slimtorch.quantize.qembedding.QuantEmbedding` becomes a
:class:`~slimtorch.encode.quant_tensor.QuantTensor` entry (entropy-coded sparse
positions, codes, zeros and scales), the rest (norms, biases) raw, in the
checksummed ``.slim`` container of :mod:`slimtorch.encode.format`.

The file's ``arch`` holds the Hugging Face config, which modules are quantized and
which parameters are tied, so :func:`load_slim_lm` needs nothing else. Loading
streams: the model is built on the ``meta`` device (no memory), then each tensor is
read, checksummed, decoded and put in place in file order (embedding, block 0,
block 1, ...), so only one tensor's payload is in memory at a time.

Bit-exactness: codes, zeros and scales decode to exactly what was saved. Scales are
stored as float16 when every one is a float16 (half the bytes); a model whose scales
are float32 is stored losslessly as float32 unless :func:`half_scales` rounded them
first (then the model evaluated is the one in the file).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimtorch.core.errors import FormatError, UnsupportedModelError
from slimtorch.core.fileio import atomic_write_bytes
from slimtorch.encode.format import SlimReader, pack_state
from slimtorch.encode.quant_tensor import QuantTensor
from slimtorch.quantize.qembedding import QuantEmbedding
from slimtorch.quantize.qlinear import QuantLinear
from slimtorch.quantize.wgrid import QuantizedWeight

ARCH_FORMAT = "slimtorch.lm/1"
TOKENIZER_PREFIX = "tokenizer/"


def _to_quant_tensor(qw: QuantizedWeight) -> QuantTensor:
    return QuantTensor(qw.codes.numpy(), qw.scales.numpy(), qw.zeros.numpy(), qw.bits, qw.group_size)


def _to_quantized(t: QuantTensor) -> QuantizedWeight:
    return QuantizedWeight(
        torch.from_numpy(t.codes.copy()),
        torch.from_numpy(t.scales.copy()),
        torch.from_numpy(t.zeros.copy()),
        t.bits,
        t.group_size,
    )


@torch.no_grad()
def half_scales(model: nn.Module) -> nn.Module:
    """Round every quantized layer's scales to float16 (in place), so a ``.slim`` file can store them in 16 bits.

    A float16 scale is within 2^-11 (0.05 %) of the float32 one, far below the 4-bit
    grid's own step; rounding once *before* evaluation keeps the file bit-exact to
    the evaluated model. Returns the model.
    """
    for m in model.modules():
        if isinstance(m, (QuantLinear, QuantEmbedding)):
            m.scales.copy_(m.scales.half().float())
            if isinstance(m, QuantLinear):
                m.release_cache()
            else:  # the tied lm_head shares this Parameter, so updating it in place keeps the tie
                m.weight.data.copy_(m.quantized().dequantize())
    return model


def slim_state(model: nn.Module) -> tuple[dict[str, Any], dict]:
    """``(state for pack_state, arch)``: quantized modules as :class:`QuantTensor`, other tensors raw, ties noted.

    Entries follow module order (embedding, block 0, ..., final norm), the order the
    loader fills the model in.

    Raises:
        FormatError: a :class:`QuantEmbedding` whose float table no longer matches its codes.
    """
    state: dict[str, Any] = {}
    modules: dict[str, str] = {}
    tied: dict[str, str] = {}
    seen: dict[int, str] = {}
    for name, m in model.named_modules():
        if isinstance(m, QuantLinear):
            state[name] = _to_quant_tensor(m.quantized())
            modules[name] = "linear"
            if m.bias is not None:
                state[f"{name}.bias"] = m.bias.detach()
            continue
        if isinstance(m, QuantEmbedding):
            if not torch.equal(m.weight, m.quantized().dequantize()):
                raise FormatError(f"{name}: the embedding table was changed after quantization; its codes are stale")
            state[name] = _to_quant_tensor(m.quantized())
            modules[name] = "embedding"
            seen[id(m.weight)] = f"{name}.weight"
            continue
        if any(name.startswith(q + ".") for q in modules):
            continue
        own = list(m.named_parameters(recurse=False)) + [
            (k, b) for k, b in m.named_buffers(recurse=False) if k not in m._non_persistent_buffers_set
        ]
        for k, t in own:
            full = f"{name}.{k}" if name else k
            if id(t) in seen:  # tied weights (lm_head = embedding) are stored once
                tied[full] = seen[id(t)]
                continue
            seen[id(t)] = full
            state[full] = t.detach()
    config = json.loads(model.config.to_json_string(use_diff=False))
    arch = {
        "format": ARCH_FORMAT,
        "config": config,
        "modules": modules,
        "tied": tied,
        # not part of the config's JSON, but sdpa and eager attention differ in the last bits of the logits
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
    }
    return state, arch


def _tokenizer_files(tokenizer) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {
            f"{TOKENIZER_PREFIX}{p.name}": np.frombuffer(p.read_bytes(), dtype=np.uint8).copy()
            for p in sorted(Path(tmp).iterdir())
            if p.is_file()
        }


def save_slim_lm(
    model: nn.Module, path: str | os.PathLike, tokenizer=None, *, method: str = "ans", index: str = "auto"
) -> Path:
    """Write a (pruned, quantized) Hugging Face causal LM as one ``.slim`` file, atomically.

    Args:
        tokenizer: stored in the file too when given (its files as raw bytes).
        method: entropy coder (``"ans"``, ``"huffman"`` or ``"auto"``: the smaller per stream).
        index: sparse position coding of quantized tensors (``"auto"``: the smallest of
            ``dense``, ``gap-raw`` and ``bitmask``, measured per tensor).

    Raises:
        FileExistsError: ``path`` exists (a finished file is never overwritten).
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; choose a new file name (a finished model is never overwritten)")
    if not hasattr(model, "config") or not hasattr(model.config, "to_json_string"):
        raise UnsupportedModelError(f"{type(model).__name__} has no Hugging Face config; save_slim_lm needs one")
    state, arch = slim_state(model)
    if tokenizer is not None:
        files = _tokenizer_files(tokenizer)
        state.update(files)
        arch["tokenizer"] = sorted(files)
    return atomic_write_bytes(path, pack_state(state, arch, method, index=index))


def _set_tensor(model: nn.Module, name: str, value: torch.Tensor) -> None:
    owner, _, attr = name.rpartition(".")
    mod = model.get_submodule(owner) if owner else model
    if attr in mod._parameters or (isinstance(mod, QuantLinear) and attr == "bias"):  # (built without one)
        setattr(mod, attr, nn.Parameter(value, requires_grad=False))
    elif attr in mod._buffers:
        mod._buffers[attr] = value
    else:
        raise FormatError(f"the file holds tensor {name!r}, which the model built from its config does not have")


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    owner, _, attr = name.rpartition(".")
    parent = model.get_submodule(owner) if owner else model
    if not hasattr(parent, attr):
        raise FormatError(f"the file holds module {name!r}, which the model built from its config does not have")
    setattr(parent, attr, new)


def _rebuild_meta_buffers(model: nn.Module, source: str) -> None:
    """Non-persistent buffers (rotary frequencies) are computed, not stored: rebuild their modules on the CPU."""
    for name, m in list(model.named_modules()):
        if any(b.is_meta for b in m.buffers(recurse=False)):
            try:
                fresh = type(m)(config=model.config)
            except TypeError:
                raise UnsupportedModelError(
                    f"{source}: cannot rebuild {name} ({type(m).__name__}) from the config"
                ) from None
            _set_module(model, name, fresh)


def load_slim_lm(path: str | os.PathLike) -> nn.Module:
    """Rebuild a model written by :func:`save_slim_lm`, tensor by tensor (eval mode, float32).

    The tokenizer, if the file holds one, is attached as ``model.slimtorch_tokenizer``.

    Raises:
        FormatError: a corrupt or truncated file, or one that does not describe a complete model
            (the message names the problem).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    reader = SlimReader(path)
    arch, source = reader.arch, str(path)
    if not isinstance(arch, dict) or arch.get("format") != ARCH_FORMAT:
        raise FormatError(
            f"{source}: not a language-model .slim file (arch format "
            f"{arch.get('format') if isinstance(arch, dict) else arch!r}, expected {ARCH_FORMAT!r})"
        )
    config = dict(arch.get("config") or {})
    modules, tied = arch.get("modules") or {}, arch.get("tied") or {}
    try:
        cfg = AutoConfig.for_model(config.pop("model_type"), **config)
    except (KeyError, ValueError, TypeError) as exc:
        raise FormatError(f"{source}: the stored model config is unusable ({exc})") from None
    attn = arch.get("attn_implementation")
    kw = {"attn_implementation": attn} if isinstance(attn, str) else {}
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, **kw)
    tokenizer_files = {}
    for name in reader.names:
        value = reader.read(name)
        if name.startswith(TOKENIZER_PREFIX):
            tokenizer_files[name[len(TOKENIZER_PREFIX) :]] = value
        elif name in modules:
            if not isinstance(value, QuantTensor):
                raise FormatError(f"{source}: {name} is listed as quantized but stored as {type(value).__name__}")
            qw = _to_quantized(value)
            if modules[name] == "embedding":
                old = model.get_submodule(name)
                _set_module(model, name, QuantEmbedding(qw, getattr(old, "padding_idx", None)))
            elif modules[name] == "linear":
                _set_module(model, name, QuantLinear(qw, None))
            else:
                raise FormatError(f"{source}: unknown quantized module kind {modules[name]!r} for {name}")
        elif isinstance(value, np.ndarray):
            _set_tensor(model, name, torch.from_numpy(value))
        else:
            raise FormatError(f"{source}: tensor {name} of kind {type(value).__name__} is not part of a language model")
    for name, src in tied.items():
        owner, _, attr = name.rpartition(".")
        src_owner, _, src_attr = src.rpartition(".")
        try:
            setattr(model.get_submodule(owner), attr, getattr(model.get_submodule(src_owner), src_attr))
        except AttributeError:
            raise FormatError(f"{source}: tied tensor {name} -> {src} does not exist in the model") from None
    _rebuild_meta_buffers(model, source)
    missing = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if missing:
        raise FormatError(f"{source}: the file lacks tensors {missing[:5]} (truncated manifest or another model)")
    if tokenizer_files:
        model.slimtorch_tokenizer = _load_tokenizer(tokenizer_files)
    return model.eval()


def _load_tokenizer(files: dict[str, np.ndarray]):
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        for fname, data in files.items():
            if "/" in fname or fname.startswith("."):
                raise FormatError(f"tokenizer file name {fname!r} is not a plain file name")
            (Path(tmp) / fname).write_bytes(np.asarray(data, dtype=np.uint8).tobytes())
        return AutoTokenizer.from_pretrained(tmp)


def slim_breakdown(path: str | os.PathLike) -> dict[str, Any]:
    """Bytes of a language-model ``.slim`` file by part (from its manifest, measured payload bytes).

    Returns:
        ``{"file", "embedding", "decoder_codes", "decoder_indices", "decoder_scales",
        "decoder_zeros", "other", "weights", "nonzero_weights"}``: ``embedding`` is
        the embedding's whole payload; ``decoder_*`` sum the quantized Linears' code,
        index (sparse position), scale and zero sections; ``other`` is every other
        payload plus the container (header, manifest); ``weights`` counts the
        elements of quantized Linears and the embedding (the bits-per-weight base).
    """
    reader = SlimReader(path)
    modules = reader.arch.get("modules", {})
    out = dict.fromkeys(("embedding", "decoder_codes", "decoder_indices", "decoder_scales", "decoder_zeros"), 0)
    weights = nonzero = payload = 0
    for e in reader.entries:
        nbytes = sum(np.dtype(dt).itemsize * n for _, dt, n in e["layout"])
        payload += nbytes
        if e["name"] not in modules:
            continue
        weights += int(np.prod(e["shape"]))
        nonzero += e["nnz"]
        if modules[e["name"]] == "embedding":
            out["embedding"] += nbytes
        else:
            out["decoder_codes"] += e["code_bytes"]
            out["decoder_indices"] += e["index_bytes"]
            out["decoder_scales"] += e["scale_bytes"]
            out["decoder_zeros"] += e["zero_bytes"]
    size = Path(path).stat().st_size
    out["other"] = size - sum(out.values())
    return {"file": size, **out, "weights": weights, "nonzero_weights": nonzero}
