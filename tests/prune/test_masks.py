"""Masks survive fine-tuning with any optimizer; folding is exact; reports count effective zeros."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

from slimtorch.io import fold
from slimtorch.prune import PruneConfig, finalize, prune, remove_masks, sparsity_report, total_sparsity
from slimtorch.prune.mask import get_mask, zero_optimizer_state
from slimtorch.train import OptimizerConfig, ScheduleConfig, TrainConfig, fit
from tests.prune.prune_helpers import TinyConv, image_data, make, vector_data

LINEARS = ["encoder.0", "mix", "head"]


def masks_of(model):
    return {f: get_mask(model.get_submodule(f)).mask.clone() for f in LINEARS}


@pytest.mark.parametrize(
    "opt",
    [
        OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.05, nesterov=True),
        OptimizerConfig(name="adam", lr=0.01),
        OptimizerConfig(name="adamw", lr=0.01, weight_decay=0.1),
    ],
)
def test_pruned_weights_stay_zero_through_training(opt):
    model = prune(make(), PruneConfig(sparsity=0.8, protect=False))
    keep = masks_of(model)
    before = {f: model.get_submodule(f).weight.detach().clone() for f in LINEARS}
    cfg = TrainConfig(epochs=3, batch_size=16, optimizer=opt, schedule=ScheduleConfig(name="constant"))
    fit(model, vector_data(), cfg, verbose=False)
    for f in LINEARS:
        layer = model.get_submodule(f)
        assert torch.all(layer.weight[~keep[f]] == 0)
        assert torch.equal(get_mask(layer).mask, keep[f])
        assert not torch.equal(layer.weight.detach()[keep[f]], before[f][keep[f]])  # survivors did train
    assert total_sparsity(model)["weight_sparsity"] == pytest.approx(0.8, abs=0.002)


def test_manual_loop_with_momentum_and_weight_decay():
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    data = vector_data()
    x, y = data.tensors
    for _ in range(3):  # build up momentum before pruning
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    # in place: the optimizer holds this model's Parameter objects
    model = prune(model, PruneConfig(sparsity=0.7, protect=False), inplace=True)
    keep = masks_of(model)
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for f in LINEARS:
        assert torch.all(model.get_submodule(f).weight[~keep[f]] == 0)
    # stale momentum moves the hidden originals; zero_optimizer_state prevents that
    zero_optimizer_state(opt, model)
    with torch.no_grad():
        for f in LINEARS:
            model.get_submodule(f).parametrizations.weight.original.mul_(keep[f])
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for f in LINEARS:
        orig = model.get_submodule(f).parametrizations.weight.original
        assert torch.all(orig[~keep[f]] == 0)


def test_original_is_zeroed_at_pruned_positions():
    model = prune(make(), PruneConfig(sparsity=0.6))
    for f in LINEARS:
        layer = model.get_submodule(f)
        keep = get_mask(layer).mask
        assert torch.all(layer.parametrizations.weight.original[~keep] == 0)


def test_finalize_folds_exactly_and_removes_parametrizations():
    model = prune(make(TinyConv), PruneConfig(sparsity=0.7))
    x = image_data().tensors[0][:8]
    model.eval()
    expected = model(x)
    rep = sparsity_report(model)
    out = finalize(model)
    assert out is model
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert torch.equal(model(x), expected)
    assert {k: v["nonzero"] for k, v in sparsity_report(model).items()} == {k: v["nonzero"] for k, v in rep.items()}
    assert all(not v["masked"] for v in sparsity_report(model).values())


def test_remove_masks_and_io_fold_agree():
    model = prune(make(), PruneConfig(sparsity=0.5))
    x = torch.randn(4, 16)
    expected = model(x)
    plain = remove_masks(model)
    assert plain is not model and get_mask(model.get_submodule("mix")) is not None  # a copy by default
    assert torch.equal(plain(x), expected)
    assert torch.equal(fold(model)(x), expected)
    assert remove_masks(model, inplace=True) is model
    assert torch.equal(model(x), expected)


def test_sparsity_report_and_totals():
    model = prune(make(), PruneConfig(sparsity=0.5, per_layer={"head": 0.25}))
    rep = sparsity_report(model)
    assert rep["head"]["sparsity"] == pytest.approx(0.25)
    assert rep["mix"] == {"shape": [32, 32], "numel": 1024, "nonzero": 512, "sparsity": 0.5, "masked": True}
    tot = total_sparsity(model)
    assert tot["weights"] == 16 * 32 + 32 * 32 + 32 * 4
    assert tot["weights_nonzero"] == 256 + 512 + 96
    # parameters also count biases and the LayerNorm (never pruned)
    assert tot["params"] == tot["weights"] + 32 + 32 + 4 + 2 * 32
    assert tot["params_nonzero"] == tot["weights_nonzero"] + 32 + 32 + 4 + 2 * 32 - int(
        (model.encoder[2].bias == 0).sum()
    )
