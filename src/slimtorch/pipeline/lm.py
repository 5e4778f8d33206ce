"""Moved: what the language-model stages share is :mod:`slimtorch.quantize.lm_stage_base` (re-exported here)."""

from slimtorch.quantize.lm_stage_base import (
    LMStageFields,
    method_config,
    reload_into,
    require_lm,
    run_lm_stage,
    save_stage_model,
)

__all__ = ["LMStageFields", "method_config", "reload_into", "require_lm", "run_lm_stage", "save_stage_model"]
