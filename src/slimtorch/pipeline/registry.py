"""Moved: the stage registry is in :mod:`slimtorch.core.stages` (re-exported here for old imports)."""

from slimtorch.core.stages import STAGES, StageSpec, register_stage

__all__ = ["STAGES", "StageSpec", "register_stage"]
