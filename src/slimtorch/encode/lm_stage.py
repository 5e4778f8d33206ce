"""Recipe stages for Deep Compression of language models: ``quantize_embedding`` and ``slim_lm``.

Recipe example (SmolLM2: SparseGPT 50 % + 4-bit, quantized embedding, one ``.slim`` file)::

    data: {name: text, kwargs: {window: 512, calib_windows: 32, test_windows: 16}}
    stages:
      - type: sparsegpt
        sparsity: 0.5
        grid: {bits: 4, group_size: 128}
        save: false                    # the .slim file is the artifact
      - type: quantize_embedding       # the tied table: the largest tensor left in float
        grid: {bits: 4, group_size: 64, float_zero: true}
      - type: slim_lm

``slim_lm`` rounds the scales to float16 (``half_scales``), writes
``NN_slim_lm/model.slim`` (:func:`slimtorch.encode.lm.save_slim_lm`), streams it back
(:func:`~slimtorch.encode.lm.load_slim_lm`) and continues with the *decoded* model,
so the perplexity recorded after it is that of the file; with ``verify`` it first
checks that the decoded model's logits equal the encoded one's bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pydantic
import torch

from slimtorch.core.config import FrozenConfig
from slimtorch.core.errors import FormatError
from slimtorch.core.stages import Context, StageResult, register_stage
from slimtorch.quantize.lm_stage_base import require_lm
from slimtorch.quantize.qembedding import EmbeddingGrid

_KEEP_ATTRS = ("slimtorch_tokenizer", "slimtorch_spec", "example_input_shape", "input_dtype")


class QuantizeEmbeddingStageConfig(FrozenConfig):
    """The input embedding (and a tied ``lm_head``) on a weight-only grid.

    Round to nearest (see :class:`EmbeddingGrid`).
    """

    grid: EmbeddingGrid = EmbeddingGrid(bits=4, group_size=64, float_zero=True)


class SlimLMStageConfig(FrozenConfig):
    """Attributes:
    method: entropy coder (``ans``, ``huffman``, ``auto``: the smaller per stream).
    index: sparse position coding (``auto``: the smallest of dense / gap-raw / bitmask per tensor).
    half_scales: round scales to float16 first (half their bytes; the file stays exact).
    filename: the file in the stage folder.
    verify: check the decoded model's logits against the encoded one's (bit for bit).
    """

    method: Literal["ans", "huffman", "auto"] = "ans"
    index: Literal["auto", "dense", "gap-raw", "bitmask", "gap"] = "auto"
    half_scales: bool = True
    filename: str = pydantic.Field("model.slim", pattern=r"^[\w.\-]+\.slim$")
    verify: bool = True


@dataclass(frozen=True, kw_only=True)
class QuantizeEmbeddingResult(StageResult):
    grid: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class SlimLMResult(StageResult):
    """The ``.slim`` file, its size, its byte breakdown (:func:`~slimtorch.encode.lm.slim_breakdown`), bits/weight."""

    file: str
    bytes: int
    breakdown: dict[str, Any]
    bits_per_weight: float


@register_stage("quantize_embedding", QuantizeEmbeddingStageConfig)
def quantize_embedding_stage(ctx: Context, cfg: QuantizeEmbeddingStageConfig) -> None:
    from slimtorch.quantize.qembedding import quantize_embedding

    require_lm(ctx)
    ctx.model = quantize_embedding(ctx.model, cfg.grid, inplace=True)
    ctx.record(QuantizeEmbeddingResult(grid=cfg.grid.to_dict()))


@register_stage("slim_lm", SlimLMStageConfig)
def slim_lm_stage(ctx: Context, cfg: SlimLMStageConfig) -> None:
    from slimtorch.encode.lm import (
        half_scales,
        load_slim_lm,
        save_slim_lm,
        slim_breakdown,
    )

    require_lm(ctx)
    if cfg.half_scales:
        half_scales(ctx.model)
    path = ctx.stage_dir() / cfg.filename
    if path.exists():  # only a resumed run gets here: the stage is replayed from the same model
        path.unlink()
    save_slim_lm(ctx.model, path, method=cfg.method, index=cfg.index)
    decoded = load_slim_lm(path)
    if cfg.verify:
        with torch.no_grad():
            a, b = ctx.model(ctx.example_input).logits, decoded(ctx.example_input).logits
        if not torch.equal(a, b):
            raise FormatError(f"decoded {path} differs from the encoded model (max diff {float((a - b).abs().max())})")
    for attr in _KEEP_ATTRS:
        if hasattr(ctx.model, attr):
            setattr(decoded, attr, getattr(ctx.model, attr))
    breakdown = slim_breakdown(path)
    ctx.record(
        SlimLMResult(
            file=str(path),
            bytes=breakdown["file"],
            breakdown=breakdown,
            bits_per_weight=8 * breakdown["file"] / max(breakdown["weights"], 1),
        )
    )
    ctx.artifacts[ctx.stage_name] = path
    ctx.model = decoded
