"""Recipes: YAML files validated into typed, frozen configs.

A recipe names a model source, a dataset, measurement settings and a list of
stages. Each stage is a mapping with a ``type`` (a registered stage name) and
that stage's config fields; it is validated by the stage's own config class, so
an error names the exact field (``stages[2].sparsity``) and the allowed values.
``key=value`` overrides use dotted paths (``stages.1.epochs=2``) with values
parsed as YAML scalars.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from slimtorch.core.config import FrozenConfig, validate_config
from slimtorch.core.errors import ConfigError
from slimtorch.core.stages import STAGES, StageSpec
from slimtorch.models.hf import HFModelSource
from slimtorch.models.user import UserModelSource


class ModelSource(FrozenConfig):
    """Where the model comes from: a zoo name (+ kwargs) or a slimtorch model file.

    The recipe's ``model:`` may instead be a :class:`~slimtorch.models.user.UserModelSource`
    (``{class: ..., kwargs: ..., weights: ...}``: imports and runs the user's code) or a
    :class:`~slimtorch.models.hf.HFModelSource` (``{hf: directory, task: ...}``).
    """

    name: str | None = None
    kwargs: dict[str, Any] = {}
    path: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if (self.name is None) == (self.path is None):
            raise ValueError("give exactly one of 'name' (a zoo model) or 'path' (a model file)")
        return self


class DataSource(FrozenConfig):
    """Dataset by registry name; ``*_subset`` take the first N examples (quick runs, tests).

    ``validation_size`` holds N examples out of the training data (a random draw fixed
    by ``validation_seed``, the same for every recipe seed): stages train on the rest,
    monitor the validation split, and every record reports ``val_accuracy`` beside the
    test accuracy, so settings are compared on validation and the test set is read once.
    """

    name: str = "mnist"
    kwargs: dict[str, Any] = {}
    train_subset: int | None = Field(None, ge=1)
    test_subset: int | None = Field(None, ge=1)
    calib_size: int = Field(1024, ge=1)
    validation_size: int | None = Field(None, ge=1)
    validation_seed: int = 0

    @model_validator(mode="after")
    def _text_kwargs(self) -> DataSource:
        """``text`` (language models) has typed kwargs: check them now, not after loading the model."""
        if self.name == "text":
            from slimtorch.data.lm_text import TextDataConfig

            TextDataConfig.from_dict(self.kwargs, "kwargs")
        return self


class MeasureSettings(FrozenConfig):
    latency_batches: list[int] = [1, 32]
    latency_runs: int = Field(30, ge=1)
    threads: int | None = Field(None, ge=1)


class SweepConfig(FrozenConfig):
    """Run the recipe once per value of one parameter (a dotted override path)."""

    param: str = Field(..., min_length=1, description="e.g. stages.1.prune.sparsity")
    values: list[Any] = Field(..., min_length=1)


class Recipe(FrozenConfig):
    name: str
    description: str = ""
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    device: Literal["cpu", "cuda"] = "cpu"
    model: ModelSource | UserModelSource | HFModelSource
    data: DataSource | None = DataSource()
    measure: MeasureSettings = MeasureSettings()
    stages: list[dict[str, Any]] = Field(default_factory=list)
    sweep: SweepConfig | None = None

    @field_validator("model", mode="before")
    @classmethod
    def _model_form(cls, v: Any) -> Any:
        """Pick the model form by its key (``class``, ``hf``, else zoo name / file), so errors name one form."""
        if isinstance(v, dict):
            if "class" in v:
                return UserModelSource.from_dict(v, "model")
            if "hf" in v:
                return HFModelSource.from_dict(v, "model")
            return ModelSource.from_dict(v, "model")
        return v

    def stage_configs(self) -> list[tuple[str, StageSpec, FrozenConfig]]:
        """Validated ``(label, spec, config)`` for every stage."""
        return stage_list(self.stages)


def stage_list(entries: list[dict[str, Any]]) -> list[tuple[str, StageSpec, FrozenConfig]]:
    """Validated ``(label, spec, config)`` for stage entries as a recipe writes them (``{type: ..., ...}``).

    What :func:`~slimtorch.pipeline.runner.run_stages` runs; ``slimtorch auto`` builds its
    candidates' stages this way too.
    """
    return [_validate_stage(i, s) for i, s in enumerate(entries)]


def _validate_stage(i: int, entry: dict[str, Any]) -> tuple[str, StageSpec, FrozenConfig]:
    import slimtorch.pipeline.stages  # noqa: F401  (registers every stage type)

    where = f"stages[{i}]"
    if not isinstance(entry, dict) or "type" not in entry:
        raise ConfigError(f"{where}: each stage needs a 'type' ({', '.join(STAGES.names())})", field=where)
    fields = dict(entry)
    kind = fields.pop("type")
    label = str(fields.pop("label", kind))
    if not isinstance(kind, str) or kind not in STAGES:
        raise ConfigError(
            f"{where}.type: unknown stage type '{kind}'; available: {', '.join(STAGES.names())}",
            field=f"{where}.type",
        )
    spec = STAGES.get(kind)
    try:
        # validate_config names the leaf under `where` (stages[i].prune.sparsity), also for the ConfigErrors
        # a stage config's own validators raise
        return label, spec, validate_config(spec.config_cls, fields, where)
    except (TypeError, KeyError, AttributeError, IndexError, OverflowError) as exc:
        # a stage config's own validator tripped over a value of a type it did not expect
        raise ConfigError(
            f"{where}: invalid stage config ({type(exc).__name__}: {str(exc)[:200]})", field=where
        ) from None


def set_path(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data[a][b][0][c] = value`` for ``key = "a.b.0.c"`` (creates missing mappings)."""
    parts = key.split(".")
    node: Any = data
    for part in parts[:-1]:
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override '{key}': '{part}' is not a valid index", field=key)
            node = node[int(part)]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"override '{key}': '{part}' is not a mapping", field=key)
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"override '{key}': '{last}' is not a valid index", field=key)
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"override '{key}': cannot set a field inside a {type(node).__name__}", field=key)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.0.c=value`` overrides (values parsed as YAML) to a raw recipe dict (returns a copy)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value (e.g. stages.0.epochs=2)", field=item)
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override '{key}': value is not valid YAML ({exc})", field=key) from None
        set_path(data, key, value)
    return data


# A recipe is a few hundred values; YAML aliases can make a tiny file expand to billions
# (the "billion laughs"), which validation and error messages would then walk.
MAX_RECIPE_NODES = 100_000


def _check_size(data: Any) -> None:
    count, todo = 0, [data]
    while todo:
        node = todo.pop()
        count += 1
        if count > MAX_RECIPE_NODES:
            raise ConfigError(
                f"recipe has more than {MAX_RECIPE_NODES} values (YAML aliases expanding?); refusing it", field="<root>"
            )
        if isinstance(node, dict):
            todo.extend(node.keys())
            todo.extend(node.values())
        elif isinstance(node, list | tuple):
            todo.extend(node)


MAX_FLOW_DEPTH = 64


def _check_depth(text: str, source: str) -> None:
    """Refuse absurdly nested ``[[[[...`` before PyYAML's recursive parser spends seconds on it."""
    depth = top = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            top = max(top, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    if top > MAX_FLOW_DEPTH:
        raise ConfigError(
            f"recipe '{source}' nests lists/mappings {top} deep (at most {MAX_FLOW_DEPTH})", field="<root>"
        )


def recipe_from_dict(data: Any) -> Recipe:
    _check_size(data)
    recipe = validate_config(Recipe, data)
    recipe.stage_configs()  # validate every stage now, not halfway through a run
    sweep_points(recipe)  # and every sweep point
    return recipe


def sweep_points(recipe: Recipe) -> list[Recipe]:
    """One recipe per sweep value (none when the recipe has no sweep)."""
    if recipe.sweep is None:
        return []
    base = {k: v for k, v in recipe.to_dict().items() if k != "sweep"}
    out = []
    for value in recipe.sweep.values:
        point = copy.deepcopy(base)
        set_path(point, recipe.sweep.param, value)
        point["name"] = f"{recipe.name}[{recipe.sweep.param}={value}]"
        try:
            point_recipe = validate_config(Recipe, point)
            point_recipe.stage_configs()
            out.append(point_recipe)
        except ConfigError as exc:
            raise ConfigError(
                f"sweep value {value!r} for '{recipe.sweep.param}': {exc}", field="sweep.values"
            ) from None
    return out


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe '{path}' does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
        _check_depth(text, str(path))
        data = yaml.safe_load(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"recipe '{path}' is not UTF-8 text ({exc})", field="<root>") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe '{path}' is not valid YAML: {exc}", field="<root>") from None
    except RecursionError:
        raise ConfigError(f"recipe '{path}' is nested too deeply to be a recipe", field="<root>") from None
    _check_size(data)
    return recipe_from_dict(apply_overrides(data or {}, overrides or []))
