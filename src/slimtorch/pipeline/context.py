"""Moved: the stage context is :class:`slimtorch.core.stages.Context` (re-exported here for old imports)."""

from slimtorch.core.stages import Context

__all__ = ["Context"]
