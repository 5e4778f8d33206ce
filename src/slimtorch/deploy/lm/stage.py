"""Recipe stage ``onnx_lm``: export the language model to ONNX Runtime and measure the deployed file.

Recipe example (GPTQ 4-bit, then the int4 ONNX file)::

    stages:
      - type: gptq
        grid: {bits: 4, group_size: 128}
      - type: onnx_lm
        embedding_bits: 8          # the tied embedding / lm_head table (null: float32)
        accuracy_level: 4          # int8-activation MatMulNBits kernels

The stage writes ``NN_onnx_lm/onnx`` (:func:`~slimtorch.deploy.lm.export_onnx`) and
records, for that file: perplexity on the recipe's test text (computed by ONNX
Runtime, not PyTorch), its size, and greedy decode tokens/s and prefill latency at
batch 1 (median of ``speed_rounds``). The runner reports those in the stage's row,
so a recipe's table shows perplexity, size and tokens/s of what is deployed. The
model in memory is unchanged, so later stages (and ``out/model``) still see it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import pydantic

from slimtorch.core.stages import Context, DeployedLM, StageResult, base_config, register_stage
from slimtorch.deploy.lm.config import LMExportConfig
from slimtorch.quantize.lm_stage_base import require_lm


class OnnxLMStageConfig(LMExportConfig):
    """:class:`LMExportConfig` + how the deployed file is measured.

    Attributes:
        threads: ONNX Runtime intra-op threads for the measurements.
        speed_rounds: decode / prefill repetitions (the median is reported; 0 skips speed).
        new_tokens: greedy tokens generated per round after a ``prompt_tokens`` prompt from the test text.
        prefill_tokens: length of the timed prompt forward.
    """

    threads: int = pydantic.Field(2, ge=1)
    speed_rounds: int = pydantic.Field(3, ge=0)
    new_tokens: int = pydantic.Field(64, ge=2)
    prompt_tokens: int = pydantic.Field(32, ge=1)
    prefill_tokens: int = pydantic.Field(512, ge=1)


@dataclass(frozen=True, kw_only=True)
class OnnxLMResult(StageResult):
    """The exported file and what ONNX Runtime measured on it (the runner reports it in the stage's row)."""

    deployed_lm: DeployedLM


def measure_speed(lm, tokens, cfg: OnnxLMStageConfig) -> dict:
    """Median greedy decode tokens/s and prefill ms of ``lm`` (batch 1) on prompts cut from ``tokens``."""
    from slimtorch.deploy.lm.generate import speed_once

    prompt = tokens[: cfg.prompt_tokens].tolist()
    prefill = tokens[: min(cfg.prefill_tokens, lm.max_positions)].tolist()
    runs = [speed_once(lm, prompt, prefill, cfg.new_tokens) for _ in range(cfg.speed_rounds)]
    decode, pre = [r["decode_tokens_per_s"] for r in runs], [r["prefill_ms"] for r in runs]
    return {
        "decode_tokens_per_s": statistics.median(decode),
        "prefill_ms": statistics.median(pre),
        "prefill_tokens": len(prefill),
        "prompt_tokens": len(prompt),
        "new_tokens": cfg.new_tokens,
        "rounds": cfg.speed_rounds,
        "threads": cfg.threads,
        "batch": 1,
    }


@register_stage("onnx_lm", OnnxLMStageConfig)
def onnx_lm_stage(ctx: Context, cfg: OnnxLMStageConfig) -> None:
    import shutil

    from slimtorch.deploy.lm.graph import export_onnx, onnx_size_bytes
    from slimtorch.deploy.lm.runtime import OnnxCausalLM
    from slimtorch.measure.perplexity import perplexity

    require_lm(ctx)
    folder = ctx.stage_dir() / "onnx"
    if folder.exists():  # a resumed run exports again (cheap next to calibration)
        shutil.rmtree(folder)
    export_cfg = base_config(cfg, LMExportConfig)
    t0 = time.perf_counter()
    export_onnx(ctx.model, folder, export_cfg, getattr(ctx.model, "slimtorch_tokenizer", None))
    info = {
        "export_seconds": round(time.perf_counter() - t0, 2),
        "config": export_cfg.to_dict(),
        "runtime": "onnxruntime (MatMulNBits, GroupQueryAttention)",
        "size_bytes": onnx_size_bytes(folder),
        "artifact": str(folder),
    }
    lm = OnnxCausalLM(folder, threads=cfg.threads)
    if ctx.text is not None:
        p = perplexity(lm.as_module(), ctx.text.test, ctx.text.window, ctx.text.stride, progress=False)
        info.update(
            perplexity=p.perplexity,
            nll=p.nll,
            perplexity_eval={
                "window": p.window,
                "stride": p.stride,
                "windows": p.windows,
                "tokens_scored": p.tokens_scored,
                "seconds": round(p.seconds, 2),
            },
        )
        if cfg.speed_rounds:
            info["speed"] = measure_speed(lm, ctx.text.test.reshape(-1), cfg)
    ctx.record(OnnxLMResult(deployed_lm=DeployedLM(**info)))
    ctx.artifacts[ctx.stage_name] = folder
    if ctx.verbose:
        speed = info.get("speed", {})
        tps = f", {speed['decode_tokens_per_s']:.1f} tokens/s" if speed else ""
        print(f"[{ctx.stage_name}] {folder}: {info['size_bytes'] / 1e6:.1f} MB{tps}", flush=True)
