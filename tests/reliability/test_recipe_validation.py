"""Every bad recipe value gets one ConfigError whose ``.field`` names it (``stages[i].<field>``).

Property tests over every registered stage's config fields: a wrong-typed value, an
out-of-range number and an unknown key, each at a random position in the stage list.
"""

from __future__ import annotations

import annotated_types as at
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import slimtorch.pipeline.stages  # noqa: F401  (registers every stage)
from slimtorch.core.errors import ConfigError
from slimtorch.pipeline.recipe import recipe_from_dict
from slimtorch.pipeline.registry import STAGES

STAGE_NAMES = STAGES.names()
WRONG = [[["x"]], {"__bogus__": 1}, "not-a-number", 3.7, True, None, -5, [1, "a"], 10**40]


def _base_entry(kind: str) -> dict:
    """The smallest valid entry of a stage (some stages need a field, e.g. ``student.name``)."""
    for extra in ({}, {"name": "mlp"}):
        entry = {"type": kind, **extra}
        try:
            recipe_from_dict(_recipe([entry]))
            return entry
        except ConfigError:
            continue
    return {}


def _recipe(stages: list[dict]) -> dict:
    return {"name": "t", "model": {"name": "mlp"}, "stages": stages}


BASE = {k: e for k in STAGE_NAMES if (e := _base_entry(k))}


def _stages(i: int, entry: dict) -> list[dict]:
    return [{"type": "measure"}] * i + [entry] + [{"type": "measure"}]


def _fields(kind: str) -> list[str]:
    return sorted(STAGES.get(kind).config_cls.model_fields)


def _names_field(field: str | None, where: str) -> bool:
    return field is not None and (field == where or field.startswith(where + ".") or field.startswith(where + "["))


def test_every_stage_has_a_valid_minimal_entry():
    assert set(BASE) == set(STAGE_NAMES)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.sampled_from(sorted(BASE)), st.data(), st.sampled_from(WRONG), st.integers(0, 2))
def test_wrong_type_names_the_field(kind, data, value, i):
    field = data.draw(st.sampled_from(_fields(kind)))
    entry = {**BASE[kind], field: value}
    try:
        recipe_from_dict(_recipe(_stages(i, entry)))
    except ConfigError as exc:
        where = f"stages[{i}].{field}"
        assert _names_field(exc.field, where), (exc.field, str(exc))
        assert field in str(exc)
    else:
        assume(False)  # the value happens to be valid for this field (e.g. None for an optional)


def _out_of_range(kind: str) -> list[tuple[str, object]]:
    cases = []
    for name, info in STAGES.get(kind).config_cls.model_fields.items():
        for m in info.metadata:
            if isinstance(m, at.Ge):
                cases.append((name, m.ge - 1))
            elif isinstance(m, at.Gt):
                cases.append((name, m.gt))
            elif isinstance(m, at.Le):
                cases.append((name, m.le + 1))
            elif isinstance(m, at.Lt):
                cases.append((name, m.lt))
    return cases


OUT_OF_RANGE = [(k, f, v) for k in sorted(BASE) for f, v in _out_of_range(k)]


@pytest.mark.parametrize("kind, field, value", OUT_OF_RANGE, ids=[f"{k}.{f}={v}" for k, f, v in OUT_OF_RANGE])
def test_out_of_range_names_the_field(kind, field, value):
    with pytest.raises(ConfigError) as info:
        recipe_from_dict(_recipe(_stages(1, {**BASE[kind], field: value})))
    assert info.value.field == f"stages[1].{field}"


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(BASE)), st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.integers(0, 2))
def test_unknown_key_names_the_field(kind, key, i):
    assume(key not in _fields(kind) and key not in ("type", "label"))
    with pytest.raises(ConfigError, match="unknown field") as info:
        recipe_from_dict(_recipe(_stages(i, {**BASE[kind], key: 1})))
    assert info.value.field == f"stages[{i}].{key}"


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"seed": "x"}, "seed"),
        ({"threads": 0}, "threads"),
        ({"name": ["x"]}, "name"),
        ({"bogus": 1}, "bogus"),
        ({"model": {"name": "mlp", "path": "a"}}, "model"),
        ({"measure": {"latency_runs": 0}}, "measure.latency_runs"),
        ({"stages": [{"epochs": 1}]}, "stages[0]"),
        ({"stages": [{"type": "nope"}]}, "stages[0].type"),
    ],
)
def test_top_level_errors_name_the_field(patch, field):
    with pytest.raises(ConfigError) as info:
        recipe_from_dict({**_recipe([]), **patch})
    assert info.value.field == field


@pytest.mark.parametrize(
    "prune, field, words",
    [
        ({"sparsity": 1.5}, "stages[0].prune.sparsity", "less than or equal to 1"),
        ({"sparsity": 0.5, "per_layer": {"fc1": 1.0}}, "stages[0].prune.per_layer.fc1", "allow_full"),
    ],
)
def test_nested_config_errors_name_the_leaf_field(prune, field, words):
    with pytest.raises(ConfigError) as info:
        recipe_from_dict(_recipe([{"type": "prune", "prune": prune}]))
    assert info.value.field == field
    assert f"'{field}'" in str(info.value) and words in str(info.value)  # the message names the same leaf
