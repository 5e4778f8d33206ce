"""Recipe stages for weight-only quantization of causal language models: ``gptq``, ``awq``, ``hqq``, ``rtn_weight_only``.

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
(:class:`~slimtorch.pipeline.lm.LMStageFields`). The quantized model (integer
codes, scales, zeros) is written to ``NN_label/model``; its ``model.safetensors``
is the size reported. GPTQ and AWQ calibrate block by block and resume after the
last finished block (``slimtorch run --resume``).
"""

from __future__ import annotations

from slimtorch.pipeline.context import Context
from slimtorch.pipeline.lm import LMStageFields, run_lm_stage
from slimtorch.pipeline.registry import register_stage
from slimtorch.quantize.awq import AWQConfig, quantize_awq
from slimtorch.quantize.gptq import GPTQConfig, quantize_gptq
from slimtorch.quantize.hqq import HQQConfig, quantize_hqq
from slimtorch.quantize.rtn import RTNConfig, quantize_rtn


class GPTQStageConfig(GPTQConfig, LMStageFields):
    """:class:`GPTQConfig` + ``calib_windows`` / ``save``."""


class AWQStageConfig(AWQConfig, LMStageFields):
    """:class:`AWQConfig` + ``calib_windows`` / ``save``."""


class HQQStageConfig(HQQConfig, LMStageFields):
    """:class:`HQQConfig` + ``save`` (HQQ needs no calibration data)."""


class RTNStageConfig(RTNConfig, LMStageFields):
    """:class:`RTNConfig` + ``save`` (no calibration data)."""


@register_stage("gptq", GPTQStageConfig)
def gptq_stage(ctx: Context, cfg: GPTQStageConfig) -> None:
    run_lm_stage(ctx, cfg, "gptq", GPTQConfig, quantize_gptq, calibrated=True, resumable=True)


@register_stage("awq", AWQStageConfig)
def awq_stage(ctx: Context, cfg: AWQStageConfig) -> None:
    run_lm_stage(ctx, cfg, "awq", AWQConfig, quantize_awq, calibrated=True, resumable=True)


@register_stage("hqq", HQQStageConfig)
def hqq_stage(ctx: Context, cfg: HQQStageConfig) -> None:
    run_lm_stage(ctx, cfg, "hqq", HQQConfig, quantize_hqq, calibrated=False, resumable=False)


@register_stage("rtn_weight_only", RTNStageConfig)
def rtn_stage(ctx: Context, cfg: RTNStageConfig) -> None:
    run_lm_stage(ctx, cfg, "rtn", RTNConfig, quantize_rtn, calibrated=False, resumable=False)
