"""Recipe stage ``encode``: pack the model into a ``.slim`` file, decode it, continue with the decoded model.

Continuing with the *decoded* model means every later measurement (accuracy,
latency) is of what a user gets from the file, not of the in-memory model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field

from slimtorch.core.config import FrozenConfig
from slimtorch.core.errors import FormatError
from slimtorch.core.stages import Context, StageResult, optional, register_stage
from slimtorch.encode.model import load_packed, pack_model
from slimtorch.encode.report import compression_report, render_report
from slimtorch.io.fold import fold


class EncodeStageConfig(FrozenConfig):
    method: Literal["auto", "huffman", "ans"] = "auto"
    index: Literal["auto", "gap", "gap-raw", "bitmask"] = "auto"
    max_codebook: int = Field(256, ge=1, le=65536)
    filename: str = Field("model.slim", pattern=r"^[\w.\-]+$")
    verify: bool = True


@dataclass(frozen=True, kw_only=True)
class EncodeResult(StageResult):
    """The ``.slim`` file, its size in bytes and the per-layer compression rows."""

    file: str
    bytes: int
    layers: list[dict[str, Any]]
    warnings: list[str] | None = optional()


@register_stage("encode", EncodeStageConfig)
def encode_stage(ctx: Context, cfg: EncodeStageConfig) -> None:
    path = ctx.out_dir / cfg.filename
    data = pack_model(ctx.model, path, method=cfg.method, index=cfg.index, max_codebook=cfg.max_codebook)
    # a model without a zoo spec (the user's own class) decodes into a copy of the uncompressed one
    spec = getattr(ctx.model, "slimtorch_spec", None)
    decoded = load_packed(path, copy.deepcopy(ctx.reference) if spec is None and ctx.reference is not None else None)
    if cfg.verify:
        # The decoded model must compute exactly what the quantized one did.
        with torch.no_grad():
            a = fold(ctx.model).eval()(ctx.example_input)
            b = decoded(ctx.example_input)
        if not torch.equal(a, b):
            raise FormatError(f"decoded {path} differs from the encoded model (max diff {float((a - b).abs().max())})")
    rows = compression_report(data)
    from slimtorch.deploy.regression import regressions, warn
    from slimtorch.io.fold import effective_state_dict

    dense = sum(t.numel() * t.element_size() for t in effective_state_dict(ctx.model).values())
    warnings = regressions(".slim file", {}, "", (), len(data), dense, "the dense fp32 tensors")
    if warnings and ctx.verbose:  # e.g. an unpruned, unshared model: entropy coding cannot beat 32-bit floats
        warn(warnings, ctx.stage_name)
    if ctx.verbose:
        print(render_report(rows))
    ctx.artifacts[ctx.stage_name] = path
    decoded.slimtorch_spec = getattr(ctx.model, "slimtorch_spec", None)
    ctx.model = decoded
    ctx.record(EncodeResult(file=str(path), bytes=len(data), layers=rows, warnings=warnings or None))
