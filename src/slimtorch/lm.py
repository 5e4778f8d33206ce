"""Language-model conveniences behind ``slimtorch eval`` and ``slimtorch generate``.

* :func:`lm_folder` / :func:`load_lm_folder`: a compressed model folder
  (``save_quantized_lm``: ``slimtorch_quant.json`` + packed codes), a run folder of
  a language-model recipe (its ``model/``), or a plain Hugging Face causal-LM
  directory, loaded with its tokenizer.
* :func:`evaluate_lm`: perplexity on the held-out split of the offline text.
* :func:`generate`: text from a prompt with Hugging Face ``generate`` (KV cache,
  eager PyTorch) and the decode speed in tokens/s.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimtorch.core.errors import ConfigError


def lm_folder(path: str | os.PathLike) -> Path | None:
    """The language-model folder ``path`` names (itself, or a run folder's ``model/``), or ``None``."""
    p = Path(path)
    if not p.is_dir():
        return None
    if (p / "slimtorch_quant.json").is_file():
        return p
    if (p / "model" / "slimtorch_quant.json").is_file():
        return p / "model"
    config = p / "config.json"
    if config.is_file() and not (p / "results.json").is_file():
        try:
            archs = json.loads(config.read_text()).get("architectures") or []
        except (json.JSONDecodeError, AttributeError):
            return None
        if any(str(a).endswith("ForCausalLM") for a in archs):
            return p
    return None


def load_lm_folder(path: str | os.PathLike) -> nn.Module:
    """Load :func:`lm_folder`'s model (float32, eval) with its tokenizer as ``model.slimtorch_tokenizer`` if present.

    Raises:
        FileNotFoundError: ``path`` is not a language-model folder.
    """
    folder = lm_folder(path)
    if folder is None:
        raise FileNotFoundError(
            f"'{path}' is not a language-model folder (no slimtorch_quant.json, model/ or causal-LM config.json)"
        )
    if (folder / "slimtorch_quant.json").is_file():
        from slimtorch.quantize.qlinear import load_quantized_lm

        model = load_quantized_lm(folder)
    else:
        from slimtorch.models.hf import HFModelSource, build_hf_model

        model = build_hf_model(HFModelSource(hf=str(folder), task="causal-lm"))
    model.slimtorch_spec = {"hf": str(folder), "task": "causal-lm"}
    if (folder / "tokenizer_config.json").is_file() or (folder / "tokenizer.json").is_file():
        from slimtorch.data.lm_text import tokenizer_of

        tokenizer_of(model, folder)
    return model


def evaluate_lm(
    model: nn.Module,
    *,
    window: int = 512,
    stride: int | None = None,
    windows: int | None = 16,
    sources: list[str] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Perplexity of ``model`` on the first ``windows`` windows of the offline text's test split.

    The split is the one recipes use (same sources and seed → same tokens).
    """
    from slimtorch.data.lm_text import lm_text, tokenizer_of
    from slimtorch.measure.perplexity import perplexity

    kwargs: dict[str, Any] = {
        "window": window,
        "stride": stride,
        "test_windows": windows,
        "seed": seed,
        "calib_windows": 1,
    }
    if sources:
        kwargs["sources"] = list(sources)
    text = lm_text(tokenizer_of(model), kwargs)
    p = perplexity(model, text.test, text.window, text.stride, progress=progress)
    info = {k: v for k, v in text.info.items() if not k.startswith("calib")}
    return {**p.to_dict(), "text": info}


@dataclass
class Generation:
    text: str  # the new text only
    prompt_tokens: int
    new_tokens: int
    seconds: float
    tokens_per_s: float
    sampling: dict

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prompt_ids(tok, prompt: str, chat: bool = False) -> list[int]:
    """Token ids of ``prompt`` (wrapped in the tokenizer's chat template with ``chat``).

    Raises:
        ConfigError: an empty prompt, one that tokenizes to nothing, or ``chat`` without a template.
    """
    if not prompt:
        raise ConfigError("the prompt is empty; give some text with --prompt", field="prompt")
    if chat:
        if not getattr(tok, "chat_template", None):
            raise ConfigError("this tokenizer has no chat template; drop --chat", field="chat")
        ids = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_dict=True
        )["input_ids"]
    else:
        ids = tok(prompt)["input_ids"]
    if not len(ids):
        raise ConfigError("the prompt tokenizes to nothing; give some text with --prompt", field="prompt")
    return list(ids)


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt: str,
    *,
    max_new_tokens: int = 64,
    greedy: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    chat: bool = False,
) -> Generation:
    """Continue ``prompt`` with ``model.generate`` (KV cache); tokens/s counts new tokens over the whole call.

    Args:
        chat: wrap the prompt in the tokenizer's chat template (instruction-tuned models).

    Raises:
        ConfigError: no tokenizer, an empty prompt, or ``chat`` without a template.
    """
    from slimtorch.data.lm_text import tokenizer_of

    tok = tokenizer_of(model)
    ids = torch.tensor([prompt_ids(tok, prompt, chat)])
    sampling: dict[str, Any] = {"do_sample": not greedy}
    if not greedy:
        sampling.update(temperature=temperature, top_p=top_p)
    eos = tok.eos_token_id
    model.eval()
    with torch.random.fork_rng(devices=[]):  # sampling is seeded; the caller's RNG state is left as it was
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            use_cache=True,
            pad_token_id=eos,
            **sampling,
        )
        seconds = time.perf_counter() - t0
    new = out[0, ids.shape[1] :]
    return Generation(
        tok.decode(new, skip_special_tokens=True),
        int(ids.shape[1]),
        int(new.numel()),
        seconds,
        new.numel() / seconds if seconds > 0 else float("inf"),
        sampling,
    )
