"""Recipes (validated YAML), the stage registry and the runner."""

from slimtorch.pipeline.context import Context
from slimtorch.pipeline.recipe import Recipe, apply_overrides, load_recipe, recipe_from_dict
from slimtorch.pipeline.registry import STAGES, StageSpec, register_stage

__all__ = [
    "STAGES",
    "Context",
    "Recipe",
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
