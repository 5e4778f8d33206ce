"""Recipe stages: a stage type name → (config class, function).

A stage function is ``fn(ctx: Context, cfg: Config) -> None``; it calls the same
public transform a Python user calls and rebinds ``ctx.model``. Registering a
stage is one line next to the transform it exposes; recipes can only name
registered stages (a recipe is data, never an import path).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from slimtorch.core.config import FrozenConfig
from slimtorch.core.registry import Registry
from slimtorch.pipeline.context import Context


@dataclass(frozen=True)
class StageSpec:
    name: str
    config_cls: type[FrozenConfig]
    fn: Callable[[Context, FrozenConfig], None]
    trains: bool = False  # whether it runs training (and so supports resume)


STAGES: Registry[StageSpec] = Registry("stage type")


def register_stage(name: str, config_cls: type[FrozenConfig], trains: bool = False):
    """Decorator registering ``fn(ctx, cfg)`` as recipe stage ``name`` with config ``config_cls``."""

    def deco(fn: Callable[[Context, FrozenConfig], None]):
        STAGES.register(name, StageSpec(name, config_cls, fn, trains))
        return fn

    return deco
