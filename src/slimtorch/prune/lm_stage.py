"""Recipe stages for pruning causal language models: ``wanda``, ``sparsegpt``, ``magnitude_lm``.

Recipe example (SmolLM2, 50 % unstructured)::

    data: {name: text, kwargs: {window: 512, calib_windows: 32, test_windows: 16}}
    stages:
      - type: wanda
        sparsity: 0.5          # or pattern: "2:4"

Each stage takes its method's config fields (:class:`~slimtorch.prune.wanda.WandaConfig`,
:class:`~slimtorch.prune.sparsegpt.SparseGPTConfig` (``grid:`` quantizes the kept
weights too), :class:`~slimtorch.prune.magnitude_lm.MagnitudeLMConfig`) plus
``calib_windows`` and ``save`` (:class:`~slimtorch.quantize.lm_stage_base.LMStageFields`).
The pruned model goes to ``NN_label/model`` (dense float32 safetensors: the zeros
are stored, not skipped; with SparseGPT's ``grid``, packed integer codes). Wanda
and SparseGPT calibrate block by block and resume after the last finished block.
"""

from __future__ import annotations

from slimtorch.core.stages import Context, register_stage
from slimtorch.prune.magnitude_lm import MagnitudeLMConfig, prune_magnitude_lm
from slimtorch.prune.sparsegpt import SparseGPTConfig, prune_sparsegpt
from slimtorch.prune.wanda import WandaConfig, prune_wanda
from slimtorch.quantize.lm_stage_base import LMStageFields, run_lm_stage


class WandaStageConfig(WandaConfig, LMStageFields):
    """:class:`WandaConfig` + ``calib_windows`` / ``save``."""


class SparseGPTStageConfig(SparseGPTConfig, LMStageFields):
    """:class:`SparseGPTConfig` + ``calib_windows`` / ``save``."""


class MagnitudeLMStageConfig(MagnitudeLMConfig, LMStageFields):
    """:class:`MagnitudeLMConfig` + ``save`` (no calibration data)."""


@register_stage("wanda", WandaStageConfig)
def wanda_stage(ctx: Context, cfg: WandaStageConfig) -> None:
    run_lm_stage(ctx, cfg, "wanda", WandaConfig, prune_wanda, calibrated=True, resumable=True)


@register_stage("sparsegpt", SparseGPTStageConfig)
def sparsegpt_stage(ctx: Context, cfg: SparseGPTStageConfig) -> None:
    run_lm_stage(ctx, cfg, "sparsegpt", SparseGPTConfig, prune_sparsegpt, calibrated=True, resumable=True)


@register_stage("magnitude_lm", MagnitudeLMStageConfig)
def magnitude_lm_stage(ctx: Context, cfg: MagnitudeLMStageConfig) -> None:
    run_lm_stage(ctx, cfg, "magnitude", MagnitudeLMConfig, prune_magnitude_lm, calibrated=False, resumable=False)
