"""Recipes (validated YAML) and the runner.

The stage registry, the stage context and typed stage results live in
:mod:`slimtorch.core.stages` (techniques register stages without importing the
runner); they are re-exported here for code written against the old location.
"""

from slimtorch.core.stages import STAGES, Context, StageResult, StageSpec, register_stage
from slimtorch.pipeline.recipe import Recipe, apply_overrides, load_recipe, recipe_from_dict

__all__ = [
    "STAGES",
    "Context",
    "Recipe",
    "StageResult",
    "StageSpec",
    "apply_overrides",
    "load_recipe",
    "recipe_from_dict",
    "register_stage",
    "run_recipe",
]


def __getattr__(name: str):
    # The runner imports every stage module (and so torch-heavy packages); load it lazily.
    if name == "run_recipe":
        from slimtorch.pipeline.runner import run_recipe

        return run_recipe
    raise AttributeError(name)
