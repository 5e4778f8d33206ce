"""slimtorch.core.layers: one layer selection, one select(), one error when nothing matches."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.core.layers import LayerSelection, select

KINDS = (nn.Linear, nn.Conv2d)


def net() -> nn.Module:
    return nn.Sequential(
        OrderedDict(
            stem=nn.Conv2d(3, 4, 3),
            bn=nn.BatchNorm2d(4),
            body=nn.Sequential(OrderedDict(a=nn.Conv2d(4, 4, 1), b=nn.Conv2d(4, 4, 1))),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            head=nn.Linear(4, 2),
        )
    )


def test_default_selects_every_layer_of_the_kinds_in_model_order():
    assert list(select(net(), None, KINDS)) == ["stem", "body.a", "body.b", "head"]
    assert list(select(net(), {}, KINDS)) == list(select(net(), LayerSelection(), KINDS))


def test_include_then_exclude_then_filter_fn():
    model = net()
    chosen = select(model, {"include": ["body.*", "head"], "exclude": ["body.b"]}, KINDS)
    assert list(chosen) == ["body.a", "head"]
    assert chosen["head"] is model.head
    only_convs = select(model, None, KINDS, filter_fn=lambda m, name: isinstance(m, nn.Conv2d))
    assert list(only_convs) == ["stem", "body.a", "body.b"]


def test_kinds_may_be_a_predicate():
    chosen = select(net(), None, lambda m, name: isinstance(m, nn.Conv2d) and name.startswith("body."))
    assert list(chosen) == ["body.a", "body.b"]


def test_the_model_itself_counts_as_a_layer():
    layer = nn.Linear(2, 2)
    assert select(layer, None, KINDS) == {"": layer}


def test_an_include_pattern_matching_nothing_is_an_error_naming_it_and_real_layers():
    with pytest.raises(ConfigError) as exc:
        select(net(), {"include": ["head", "bodyy.*"]}, KINDS)
    assert exc.value.field == "layers.include"
    msg = str(exc.value)
    assert "'bodyy.*'" in msg and "stem" in msg and "body.a" in msg


def test_an_include_pattern_on_a_layer_of_another_kind_names_its_type():
    with pytest.raises(ConfigError, match=r"'bn' matches only bn \(BatchNorm2d\), not a Linear/Conv2d"):
        select(net(), {"include": ["bn"]}, KINDS)


def test_an_exclude_pattern_matching_nothing_is_an_error():
    """A typo in an exclusion would silently change the very layer it meant to protect."""
    with pytest.raises(ConfigError) as exc:
        select(net(), {"exclude": ["haed"]}, KINDS)
    assert exc.value.field == "layers.exclude" and "'haed'" in str(exc.value)
    # excluding a module that exists but is not of the kinds is no typo
    assert list(select(net(), {"exclude": ["bn"]}, KINDS)) == ["stem", "body.a", "body.b", "head"]


def test_a_technique_default_exclude_may_miss():
    assert list(select(net(), {"exclude": ["lm_head"]}, KINDS, may_miss=["lm_head"])) == [
        "stem",
        "body.a",
        "body.b",
        "head",
    ]


def test_a_selection_that_leaves_nothing_is_an_error():
    with pytest.raises(ConfigError) as exc:
        select(net(), {"exclude": ["*"]}, KINDS)
    assert exc.value.field == "layers" and "selects no" in str(exc.value)
    with pytest.raises(ConfigError, match=r"include=\[\]"):
        select(net(), {"include": []}, KINDS)
    with pytest.raises(ConfigError, match="filter_fn"):
        select(net(), None, KINDS, filter_fn=lambda m, name: False)
    with pytest.raises(ConfigError, match=r"\(none\)"):
        select(nn.Sequential(nn.ReLU()), None, KINDS)


def test_the_old_list_form_is_an_error_showing_the_new_one():
    with pytest.raises(ConfigError, match=r"layers: \{include: \['fc\*'\]\}") as exc:
        select(net(), ["fc*"], KINDS)
    assert exc.value.field == "layers"


def test_a_bare_string_is_not_read_as_one_letter_patterns():
    with pytest.raises(ConfigError, match=r"\['head'\]") as exc:
        LayerSelection(include="head")
    assert exc.value.field == "include"


def test_an_unknown_key_lists_include_and_exclude():
    with pytest.raises(ConfigError, match="allowed fields here: exclude, include"):
        select(net(), {"inclde": ["head"]}, KINDS)


# ---- every config with a selection refuses the old names, with the new form ----------------------------------


def _configs():
    from slimtorch.prune import PruneConfig
    from slimtorch.prune.lm_common import LMPruneConfig
    from slimtorch.prune.structured import StructuredConfig
    from slimtorch.quantize import ClipConfig, KMeansConfig, QuantConfig
    from slimtorch.quantize.mixed_lm import MixedBitsConfig
    from slimtorch.quantize.rtn import RTNConfig

    return [
        (PruneConfig, {}, "include", "layers: {include: [...]}"),
        (PruneConfig, {}, "exclude", "layers: {exclude: [...]}"),
        (QuantConfig, {}, "skip", "layers: {exclude: [...]}"),
        (KMeansConfig, {}, "skip", "layers: {exclude: [...]}"),
        (ClipConfig, {"threshold": 0.1}, "skip", "layers: {exclude: [...]}"),
        (StructuredConfig, {}, "ignored_layers", "layers: {exclude: [...]}"),
        (LMPruneConfig, {}, "exclude", "layers: {exclude: [...]}"),
        (RTNConfig, {}, "exclude", "layers: {exclude: [...]}"),
        (MixedBitsConfig, {}, "exclude", "layers: {exclude: [...]}"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_old_field_names_are_a_config_error_with_the_new_form(case):
    cls, base, old, new = _configs()[case]
    with pytest.raises(ConfigError) as exc:
        cls.from_dict({**base, old: ["x"]})
    assert exc.value.field == old
    assert str(exc.value) == f"'{old}' was replaced by {new}"
    with pytest.raises(ConfigError, match="was replaced by"):
        cls(**base, **{old: ["x"]})
    with pytest.raises(ConfigError, match=r"layers: \{include: \['x'\]\}") as listed:
        cls.from_dict({**base, "layers": ["x"]})
    assert listed.value.field == "layers"


def test_an_old_field_in_a_recipe_names_the_stage():
    from slimtorch.pipeline.recipe import recipe_from_dict

    recipe = {
        "name": "old",
        "model": {"name": "lenet300_100"},
        "data": {"name": "synthetic"},
        "stages": [{"type": "prune", "prune": {"sparsity": 0.5, "include": ["fc*"]}}],
    }
    with pytest.raises(ConfigError) as exc:
        recipe_from_dict(recipe).stage_configs()
    assert exc.value.field == "stages[0].prune.include"
    assert "layers: {include: [...]}" in str(exc.value)
