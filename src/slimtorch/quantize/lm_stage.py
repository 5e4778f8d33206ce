"""Recipe stages for weight-only quantization of causal language models.

The stages: ``gptq``, ``awq``, ``hqq``, ``rtn_weight_only``.

Recipe example (SmolLM2, 4-bit, group 128)::

    data: {name: text, kwargs: {window: 512, calib_windows: 32, test_windows: 16}}
    stages:
      - type: gptq
        grid: {bits: 4, group_size: 128, symmetric: false, mse_search: true}
        damp: 0.01
        act_order: true

Each stage takes its method's config fields (:class:`~slimtorch.quantize.gptq.GPTQConfig`,
:class:`~slimtorch.quantize.awq.AWQConfig`, :class:`~slimtorch.quantize.hqq.HQQConfig`,
:class:`~slimtorch.quantize.rtn.RTNConfig`) plus ``calib_windows`` and ``save``
(:class:`~slimtorch.quantize.lm_stage_base.LMStageFields`). The quantized model (integer
codes, scales, zeros) is written to ``NN_label/model``; its ``model.safetensors``
is the size reported. GPTQ and AWQ calibrate block by block and resume after the
last finished block (``slimtorch run --resume``). ``gptq`` with ``stream: true`` reads
the blocks from the model's safetensors folder one at a time instead of calibrating
the loaded model (same result, calibration memory one block plus activations).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from slimtorch.core.stages import Context, register_stage
from slimtorch.quantize.awq import AWQConfig, quantize_awq
from slimtorch.quantize.gptq import GPTQConfig, quantize_gptq, quantize_gptq_streamed
from slimtorch.quantize.hqq import HQQConfig, quantize_hqq
from slimtorch.quantize.lm_stage_base import LMStageFields, run_lm_stage
from slimtorch.quantize.rtn import RTNConfig, quantize_rtn


class GPTQStageConfig(GPTQConfig, LMStageFields):
    """:class:`GPTQConfig` + ``calib_windows`` / ``save`` / ``stream``.

    Attributes:
        stream: calibrate from the model's own safetensors folder, one block in memory at a
            time (:func:`~slimtorch.quantize.gptq.quantize_gptq_streamed`), instead of on the
            loaded model; the result is the same. Only as the recipe's first stage (it reads the
            weights as they are on disk) and for a model loaded from a local folder.
    """

    stream: bool = False


class AWQStageConfig(AWQConfig, LMStageFields):
    """:class:`AWQConfig` + ``calib_windows`` / ``save``."""


class HQQStageConfig(HQQConfig, LMStageFields):
    """:class:`HQQConfig` + ``save`` (HQQ needs no calibration data)."""


class RTNStageConfig(RTNConfig, LMStageFields):
    """:class:`RTNConfig` + ``save`` (no calibration data)."""


@register_stage("gptq", GPTQStageConfig)
def gptq_stage(ctx: Context, cfg: GPTQStageConfig) -> None:
    fn = _streamed_gptq(ctx) if cfg.stream else quantize_gptq
    run_lm_stage(ctx, cfg, "gptq", GPTQConfig, fn, calibrated=True, resumable=True)


def _streamed_gptq(ctx: Context):
    """``quantize_gptq``'s signature over :func:`quantize_gptq_streamed` on the folder ``ctx.model`` came from."""
    from slimtorch.core.errors import ConfigError

    if ctx.stage_index != 1:
        raise ConfigError(
            f"stage '{ctx.stage_name}': stream: true reads the weights from the model's folder, "
            "so it must be the recipe's first stage (earlier stages' changes would be lost)",
            field="stream",
        )
    source = Path(getattr(ctx.model, "name_or_path", "") or "")
    if not (source / "config.json").is_file() or not any(source.glob("*.safetensors")):
        raise ConfigError(
            f"stage '{ctx.stage_name}': stream: true needs a model loaded from a local Hugging Face "
            f"folder with safetensors (zoo smollm2_135m or model: {{hf: DIR}}); this one came from "
            f"{str(source) or 'no folder'!r}",
            field="stream",
        )

    def fn(model, config, ids, *, inplace=True, checkpoint_dir=None):
        from slimtorch.quantize.lm_stage_base import reload_into

        out = ctx.stage_dir() / "streamed"
        shutil.rmtree(out, ignore_errors=True)
        quantize_gptq_streamed(
            source,
            out,
            config,
            ids,
            checkpoint_dir=checkpoint_dir,  # same kernel, same result
            attn_implementation=getattr(model.config, "_attn_implementation", None),
        )
        new = reload_into(model, out)
        shutil.rmtree(out)  # the stage saves the reloaded model into its own folder
        return new

    return fn


@register_stage("awq", AWQStageConfig)
def awq_stage(ctx: Context, cfg: AWQStageConfig) -> None:
    run_lm_stage(ctx, cfg, "awq", AWQConfig, quantize_awq, calibrated=True, resumable=True)


@register_stage("hqq", HQQStageConfig)
def hqq_stage(ctx: Context, cfg: HQQStageConfig) -> None:
    run_lm_stage(ctx, cfg, "hqq", HQQConfig, quantize_hqq, calibrated=False, resumable=False)


@register_stage("rtn_weight_only", RTNStageConfig)
def rtn_stage(ctx: Context, cfg: RTNStageConfig) -> None:
    run_lm_stage(ctx, cfg, "rtn", RTNConfig, quantize_rtn, calibrated=False, resumable=False)
