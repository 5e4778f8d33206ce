"""Hugging Face checkpoints on disk: ``model: {hf: local_directory, task: ...}``.

Loading is offline (``HF_HUB_OFFLINE=1``, ``local_files_only``) and never runs
code from the checkpoint (``trust_remote_code=False``): the directory's
``config.json`` must name an architecture that ``transformers`` itself ships.

Tasks and what the model computes (one tensor in, one out, like every zoo model,
so every transform, the runner and the ONNX exporter treat it the same way):

* ``sequence-classification``: ``input_ids (N, L) -> logits (N, C)``; padding
  (the config's ``pad_token_id``, else 0) is masked out.
* ``sentence-embedding``: ``input_ids (N, L) -> embedding (N, H)``, pooled as the
  directory's sentence-transformers ``1_Pooling/config.json`` says (mean or CLS;
  mean when absent) and L2-normalised when ``modules.json`` lists ``Normalize``.
* ``causal-lm``: the plain ``AutoModelForCausalLM`` model in float32 (for the
  language-model tools, which expect Hugging Face's own interface).

Model files record ``{"hf": directory, "task": task}``; rebuilding from that reads
the directory's config again (no code runs), so the directory must still exist.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from slimtorch.core.config import FrozenConfig
from slimtorch.core.errors import ConfigError, DataNotFoundError

Task = Literal["sequence-classification", "sentence-embedding", "causal-lm"]


class HFModelSource(FrozenConfig):
    """``model: {hf: path/to/checkpoint_dir, task: sequence-classification}``."""

    hf: str = Field(..., min_length=1, description="local directory holding config.json and the weights")
    task: Task = "sequence-classification"


def _pad_id(config) -> int:
    pad = getattr(config, "pad_token_id", None)
    return int(pad) if isinstance(pad, int) else 0


class HFSequenceClassifier(nn.Module):
    """``input_ids (N, L) int64 -> logits (N, C)``; padding tokens are masked out."""

    def __init__(self, model: nn.Module, pad_id: int = 0):
        super().__init__()
        self.model = model
        self.pad_id = pad_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = (input_ids != self.pad_id).to(torch.long)
        return self.model(input_ids=input_ids, attention_mask=mask).logits


class HFSentenceEmbedder(nn.Module):
    """``input_ids (N, L) int64 -> embedding (N, H)``: mean over real tokens or the first token, optional L2 norm."""

    def __init__(self, model: nn.Module, pad_id: int = 0, pooling: str = "mean", normalize: bool = True):
        super().__init__()
        self.model = model
        self.pad_id = pad_id
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = (input_ids != self.pad_id).to(torch.long)
        h = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            e = h[:, 0]
        else:
            m = mask.unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(e, dim=-1) if self.normalize else e


def _sentence_settings(folder: Path) -> tuple[str, bool]:
    pooling, normalize = "mean", False
    modules = folder / "modules.json"
    if modules.is_file():
        kinds = [m.get("type", "") for m in json.loads(modules.read_text())]
        normalize = any(k.endswith("Normalize") for k in kinds)
    pool_cfg = folder / "1_Pooling" / "config.json"
    if pool_cfg.is_file():
        cfg = json.loads(pool_cfg.read_text())
        if cfg.get("pooling_mode_cls_token"):
            pooling = "cls"
        elif not cfg.get("pooling_mode_mean_tokens", True):
            raise ConfigError(f"{pool_cfg}: only mean or CLS pooling is supported ({cfg})", field="model.hf")
    return pooling, normalize


def build_hf_model(src: HFModelSource, load_weights: bool = True) -> nn.Module:
    """Load the checkpoint in ``src.hf`` for ``src.task`` (float32, eval mode, offline).

    Args:
        load_weights: ``False`` builds the architecture from ``config.json`` only (weights
            come from a slimtorch file afterwards).

    Raises:
        DataNotFoundError: the directory or its ``config.json`` is missing.
        ConfigError: ``transformers`` does not know the architecture (no remote code is run).
    """
    folder = Path(src.hf)
    if not (folder / "config.json").is_file():
        raise DataNotFoundError(
            f"model.hf: '{folder}' is not a Hugging Face checkpoint directory (no config.json); "
            "give the local folder that save_pretrained() wrote (nothing is downloaded)"
        )
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
    )

    auto = {
        "sequence-classification": AutoModelForSequenceClassification,
        "sentence-embedding": AutoModel,
        "causal-lm": AutoModelForCausalLM,
    }[src.task]
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        if load_weights:
            inner = auto.from_pretrained(
                folder,
                local_files_only=True,
                trust_remote_code=False,
                torch_dtype=torch.float32,
                attn_implementation="eager",
            )
        else:
            inner = auto.from_config(config, torch_dtype=torch.float32, attn_implementation="eager")
    except (ValueError, OSError, KeyError) as exc:
        raise ConfigError(
            f"model.hf: cannot load '{folder}' as {src.task}: {str(exc).splitlines()[0][:300]}", field="model.hf"
        ) from None
    inner = inner.float().eval()
    if src.task == "causal-lm":
        model = inner
    elif src.task == "sentence-embedding":
        pooling, normalize = _sentence_settings(folder)
        model = HFSentenceEmbedder(inner, _pad_id(config), pooling, normalize).eval()
    else:
        model = HFSequenceClassifier(inner, _pad_id(config)).eval()
    model.example_input_shape = (1, 32)  # token ids
    model.input_dtype = torch.long
    model.slimtorch_spec = {"hf": str(src.hf), "task": src.task}
    return model
