"""prune(): exact fractions, global vs layer scope, selection, errors, monotone masks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.prune import PruneConfig, prune, sparsity_report, total_sparsity
from slimtorch.prune.mask import get_mask
from tests.prune.prune_helpers import Encoded, TinyConv, make

LINEARS = ["encoder.0", "mix", "head"]


def zeros_frac(t: torch.Tensor) -> float:
    return float((t == 0).float().mean())


@pytest.mark.parametrize("s", [0.1, 0.5, 0.75, 0.9, 0.99])
def test_layer_scope_prunes_exact_fraction_of_every_layer(s):
    model = prune(make(), PruneConfig(sparsity=s, protect=False))
    for fqn in LINEARS:
        w = model.get_submodule(fqn).weight
        assert int((w == 0).sum()) == round(s * w.numel())


def test_layer_scope_on_convolutions_and_groups():
    model = prune(make(TinyConv), PruneConfig(sparsity=0.6, protect=False))
    rep = sparsity_report(model)
    assert set(rep) == {"conv1", "conv2", "fc"}
    for v in rep.values():
        assert v["numel"] - v["nonzero"] == round(0.6 * v["numel"])
    assert get_mask(model.bn1) is None


def test_global_scope_uses_one_threshold_and_layers_differ():
    model = make()
    with torch.no_grad():  # make the layers' magnitudes clearly different
        model.mix.weight.mul_(2)
    pruned = prune(model, PruneConfig(sparsity=0.5, scope="global"))
    ws = {f: pruned.get_submodule(f).weight.detach() for f in LINEARS}
    total = sum(w.numel() for w in ws.values())
    assert sum(int((w == 0).sum()) for w in ws.values()) == round(0.5 * total)
    sparsities = {f: zeros_frac(w) for f, w in ws.items()}
    assert sparsities["mix"] < 0.5 < sparsities["encoder.0"]
    assert len({round(v, 3) for v in sparsities.values()}) == 3


def test_global_scope_refuses_to_empty_a_layer_unless_allowed():
    model = make()
    with torch.no_grad():
        model.mix.weight.mul_(100)
    with pytest.raises(ConfigError, match="every weight of layer"):
        prune(model, PruneConfig(sparsity=0.6, scope="global"))
    model = prune(model, PruneConfig(sparsity=0.6, scope="global", allow_full=True))
    assert torch.all(model.head.weight == 0)


def test_global_threshold_separates_removed_from_kept():
    dense = make()
    with torch.no_grad():
        dense.mix.weight.mul_(2)
    before = {f: dense.get_submodule(f).weight.detach().abs().clone() for f in LINEARS}
    pruned = prune(dense, PruneConfig(sparsity=0.5, scope="global"))
    removed, kept = [], []
    for f in LINEARS:
        keep = get_mask(pruned.get_submodule(f)).mask
        removed.append(before[f][~keep])
        kept.append(before[f][keep])
    assert float(torch.cat(removed).max()) <= float(torch.cat(kept).min())


def test_per_layer_overrides_and_global_pool():
    cfg = PruneConfig(sparsity=0.8, scope="global", per_layer={"head": 0.25})
    model = prune(make(), cfg)
    head = model.head.weight
    assert int((head == 0).sum()) == round(0.25 * head.numel())
    pool = [model.encoder[0].weight, model.mix.weight]
    n = sum(w.numel() for w in pool)
    assert sum(int((w == 0).sum()) for w in pool) == round(0.8 * n)


def test_include_exclude_patterns_and_biases_untouched():
    model = make()
    biases = {f: model.get_submodule(f).bias.detach().clone() for f in LINEARS}
    model = prune(model, PruneConfig(sparsity=0.9, layers={"include": ["encoder.*", "mix"], "exclude": ["mix"]}))
    assert get_mask(model.encoder[0]) is not None
    assert get_mask(model.mix) is None and get_mask(model.head) is None
    assert zeros_frac(model.mix.weight) == 0.0
    for f in LINEARS:
        assert torch.equal(model.get_submodule(f).bias, biases[f])
    assert torch.all(model.encoder[2].weight != 0)  # LayerNorm untouched


def test_zero_sparsity_is_a_no_op():
    model = make()
    x = model.example_inputs()
    before = model(x)
    out = prune(model, PruneConfig(sparsity=0.0))
    assert out is not model  # a copy, like every transform by default
    assert torch.equal(out(x), before)
    assert not any(get_mask(m) for m in out.modules())


def test_full_sparsity_refused_unless_allowed():
    with pytest.raises(ConfigError, match="allow_full") as exc:
        PruneConfig(sparsity=1.0)
    assert exc.value.field == "sparsity"
    with pytest.raises(ConfigError, match="allow_full") as exc:
        PruneConfig.from_dict({"per_layer": {"head": 1.0}})
    assert exc.value.field == "per_layer.head"
    model = prune(make(), PruneConfig(sparsity=1.0, allow_full=True, layers={"include": ["head"]}, protect=False))
    assert torch.all(model.head.weight == 0)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_sparsity_out_of_range_names_the_field(bad):
    with pytest.raises(ConfigError) as exc:
        PruneConfig(sparsity=bad)
    assert exc.value.field == "sparsity" and "sparsity" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        PruneConfig.from_dict({"sparsity": bad}, "stages[2]")
    assert exc.value.field == "stages[2].sparsity"


def test_no_match_lists_available_layers():
    with pytest.raises(ConfigError) as exc:
        prune(make(), PruneConfig(layers={"include": ["conv*"]}))
    for name in LINEARS:
        assert name in str(exc.value)


def test_unsupported_layer_type_is_named():
    with pytest.raises(ConfigError, match=r"encoder\.2 \(LayerNorm\), not a Linear/Conv") as exc:
        prune(make(), PruneConfig(layers={"include": ["encoder.2"]}))
    assert exc.value.field == "layers.include"


def test_per_layer_typo_fails_loudly():
    with pytest.raises(ConfigError, match="fc9"):
        prune(make(), PruneConfig(per_layer={"fc9": 0.5}))


def test_unknown_method_lists_criteria():
    with pytest.raises(ConfigError, match="magnitude"):
        prune(make(), PruneConfig(method="nope"))


def test_data_driven_method_without_data_says_so():
    with pytest.raises(ConfigError, match="data"):
        prune(make(), PruneConfig(method="taylor"))


def test_repeated_prune_is_monotone():
    model = prune(make(), PruneConfig(sparsity=0.5, protect=False))
    first = {f: get_mask(model.get_submodule(f)).mask.clone() for f in LINEARS}
    with torch.no_grad():  # a pruned weight growing back underneath must not revive it
        model.mix.parametrizations.weight.original.add_(5.0)
    model = prune(model, PruneConfig(sparsity=0.7, protect=False))
    for f in LINEARS:
        now = get_mask(model.get_submodule(f)).mask
        assert not torch.any(now & ~first[f])
        assert int((~now).sum()) == round(0.7 * now.numel())
    model = prune(model, PruneConfig(sparsity=0.3, protect=False))  # lower target: nothing is revived
    assert total_sparsity(model)["weight_sparsity"] == pytest.approx(0.7, abs=0.01)


def test_non_monotone_recomputes_masks():
    model = prune(make(), PruneConfig(sparsity=0.7))
    model = prune(model, PruneConfig(sparsity=0.3, monotone=False))
    for f in LINEARS:
        w = model.get_submodule(f).weight
        assert int((get_mask(model.get_submodule(f)).mask == 0).sum()) == round(0.3 * w.numel())


def test_filter_fn_narrows_selection():
    model = prune(make(), PruneConfig(sparsity=0.5), filter_fn=lambda m, fqn: fqn != "head")
    assert get_mask(model.head) is None and get_mask(model.mix) is not None


def test_config_round_trip():
    cfg = PruneConfig(method="activation", sparsity=0.7, scope="global", pattern="4:8", per_layer={"h*": 0.2})
    assert PruneConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError) as exc:
        PruneConfig(pattern="4:2")
    assert exc.value.field == "pattern"


def test_unknown_field_rejected():
    with pytest.raises(ConfigError, match="sparsity"):
        PruneConfig.from_dict({"sparsty": 0.5})


def test_plain_nn_module_subclass_is_supported():
    model = prune(make(Encoded), PruneConfig(sparsity=0.5))
    assert isinstance(model.mix, nn.Linear)
    assert model(model.example_inputs()).shape == (8, 4)
