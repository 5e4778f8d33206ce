"""Structured pruning: exactness on zero channels, coupling, save/load, unsupported patterns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from slimtorch.core.errors import ConfigError, UnsupportedModelError
from slimtorch.io import load_model, save_model
from slimtorch.models import create_model
from slimtorch.prune.structured import StructuredConfig, build_graph, channel_groups, prune_channels
from slimtorch.prune.structured.graph import classifier_name
from tests.prune_structured.structured_models import InplaceNet, ResCatNet, ScaleNet, ShuffleNet, example

torch.set_num_threads(1)

ZOO = [
    ("lenet5", {}, (2, 1, 28, 28)),
    ("lenet300_100", {}, (2, 1, 28, 28)),
    ("mobilenet_v2", {"width_mult": 0.35}, (2, 3, 32, 32)),
    ("resnet20", {}, (2, 3, 32, 32)),
]


def _randomize_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@torch.no_grad()
def _zero_units(model: nn.Module, x: torch.Tensor, ratio: float) -> int:
    """Zero every weight slice of the first ``int(ratio * n)`` units of each group; returns how many."""
    g = build_graph(model, x, (classifier_name(model),))
    zeroed, segments = set(), {}
    for units in g.groups:  # per segment (the units one set of producer layers owns)
        for u in units:
            segments.setdefault(g.unit_producers.get(u), []).append(u)
    for units in segments.values():
        free = [u for u in units if g.prunable(u)]
        zeroed.update(free[: int(ratio * len(units))])
    for m in g.members:
        pos = torch.from_numpy(np.flatnonzero(np.isin(g.uf.roots(m.ids), list(zeroed))))
        mod = m.module
        if m.role == "in":
            mod.weight[:, pos] = 0
        elif m.role in ("out", "dw", "bn"):
            mod.weight[pos] = 0
            if getattr(mod, "bias", None) is not None:
                mod.bias[pos] = 0
    return len(zeroed)


def _zoo_or_user(name, kwargs, shape):
    torch.manual_seed(0)
    if name == "user":
        return ResCatNet().eval(), example(shape)
    return create_model(name, **kwargs).eval(), example(shape)


CASES = [*ZOO, ("user", {}, (2, 3, 16, 16))]


@pytest.mark.parametrize(("name", "kwargs", "shape"), CASES, ids=[c[0] for c in CASES])
def test_removing_zero_channels_keeps_outputs(name, kwargs, shape):
    model, x = _zoo_or_user(name, kwargs, shape)
    _randomize_bn(model)
    n = _zero_units(model, x, 0.25)
    assert n > 0
    before_params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        ref = model(x)
    pruned = prune_channels(model, StructuredConfig(ratio=0.25, importance="l2"), x)
    with torch.no_grad():
        out = pruned(x)
    assert sum(p.numel() for p in pruned.parameters()) < before_params
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_residual_and_concat_shapes_stay_consistent():
    torch.manual_seed(0)
    m = prune_channels(ResCatNet(), StructuredConfig(ratio=0.5, importance="random"), example())
    assert m.stem.out_channels == m.a.out_channels == m.bn.num_features == m.bn_a.num_features == 8
    cat = m.b.out_channels + m.c.out_channels + m.stem.out_channels
    assert m.dw.in_channels == m.dw.out_channels == m.dw.groups == cat == 4 + 4 + 8
    assert m.fc1.in_features == cat * 16 and m.fc1.out_features == 12
    assert m(example()).shape == (2, 10)


def test_groups_couple_residual_producers():
    groups = channel_groups(ResCatNet(), example(), ignored=("fc2",))
    producers = [sorted(g["producers"]) for g in groups]
    residual = next(g for g in groups if "stem" in g["producers"])
    assert "a" in residual["producers"] and "fc1" not in residual["producers"]
    assert {"bn:bn", "bn_a:bn", "b:in", "c:in", "dw:dw", "fc1:in"} <= set(residual["layers"])
    assert ["fc1"] in producers


@pytest.mark.parametrize("model", ["resnet20", "mobilenet_v2"])
def test_round_to_is_respected(model):
    kwargs = {"width_mult": 0.5} if model == "mobilenet_v2" else {}
    m = create_model(model, **kwargs).eval()
    before = {n: c.out_channels for n, c in m.named_modules() if isinstance(c, nn.Conv2d)}
    m = prune_channels(m, StructuredConfig(ratio=0.3, round_to=8), example((2, 3, 32, 32)))
    for n, c in m.named_modules():
        if isinstance(c, nn.Conv2d) and c.out_channels != before[n]:
            assert c.out_channels % 8 == 0, (n, c.out_channels)
    assert any(c.out_channels != before[n] for n, c in m.named_modules() if isinstance(c, nn.Conv2d))


def test_classifier_output_untouched_and_ignored_layers_kept():
    m = create_model("lenet5").eval()
    w_rows = m.fc2.weight.shape[0]
    m = prune_channels(m, StructuredConfig(ratio=0.5, layers={"exclude": ["conv2"]}), example((2, 1, 28, 28)))
    assert m.fc2.out_features == w_rows == 10
    assert m.conv2.out_channels == 50 and m.conv1.out_channels == 10 and m.fc1.out_features == 250


def test_global_scope_and_criteria_give_working_models():
    x = example((2, 3, 32, 32))
    data = torch.utils.data.TensorDataset(torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,)))
    for crit in ("l1", "bn", "taylor", "random", "activation"):
        m = create_model("resnet20").eval()
        m = prune_channels(
            m,
            StructuredConfig(
                ratio=0.4, scope="global", importance=crit, calib_batches=1, compensate=crit == "activation"
            ),
            x,
            data=data,
        )
        assert m(x).shape == (2, 10)
        assert sum(p.numel() for p in m.parameters()) < 272_000


@pytest.mark.parametrize("name", ["lenet5", "resnet20", "mobilenet_v2"])
def test_pruned_zoo_model_reloads_from_file_alone(name, tmp_path):
    kwargs = {"width_mult": 0.35} if name == "mobilenet_v2" else {}
    m = create_model(name, **kwargs).eval()
    x = example((2, 1, 28, 28) if name == "lenet5" else (2, 3, 32, 32))
    m = prune_channels(m, StructuredConfig(ratio=0.5, round_to=4), x)
    save_model(m, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m(x))


def test_pruned_user_model_reloads_into_fresh_instance(tmp_path):
    m = prune_channels(ResCatNet().eval(), StructuredConfig(ratio=0.5), example())
    save_model(m, tmp_path / "u.safetensors")
    loaded = load_model(tmp_path / "u.safetensors", model=ResCatNet())
    with torch.no_grad():
        torch.testing.assert_close(loaded(example()), m(example()))


@pytest.mark.parametrize(
    ("model", "layer"),
    [(ShuffleNet, "<root>"), (ScaleNet, "scale"), (InplaceNet, "<root>")],
    ids=["channel-shuffle", "unknown-param-layer", "inplace-shared"],
)
def test_unsupported_patterns_raise_naming_the_layer(model, layer):
    with pytest.raises(UnsupportedModelError, match=f"layer '{layer}'"):
        prune_channels(model().eval(), StructuredConfig(ratio=0.5), example())


def test_ignoring_unknown_layer_keeps_its_channels():
    m = prune_channels(ScaleNet().eval(), StructuredConfig(ratio=0.5, layers={"exclude": ["scale"]}), example())
    assert m.conv1.out_channels == 8 and m.conv2.out_channels == 4
    assert m(example()).shape == (2, 2)


def test_bad_config_raises_config_error():
    with pytest.raises(ConfigError, match="ratio"):
        StructuredConfig.from_dict({"ratio": 1.0})
    with pytest.raises(ConfigError, match="taylor"):
        prune_channels(create_model("lenet5"), {"importance": "taylor"}, example((2, 1, 28, 28)))
    with pytest.raises(ConfigError, match="per_layer"):
        prune_channels(create_model("lenet5"), {"per_layer": {"conv1": 1.5}}, example((2, 1, 28, 28)))


def test_config_round_trips_through_dict():
    cfg = StructuredConfig(ratio=0.3, round_to=8, layers={"exclude": ["fc*"]}, per_layer={"conv1": 0.1})
    assert StructuredConfig.from_dict(cfg.to_dict()) == cfg
