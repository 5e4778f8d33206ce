"""Uniform sparsity leaves the first conv, the classifier and small layers sparser-pruned unless overridden."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slimtorch.models import create_model
from slimtorch.models.user import import_class
from slimtorch.prune import PruneConfig, prune
from slimtorch.prune.report import sparsity_report

ROOT = Path(__file__).parents[2]


@pytest.fixture
def cnn(monkeypatch):
    monkeypatch.chdir(ROOT)
    torch.manual_seed(0)
    return import_class("examples/my_models.py:MnistCNN")(width=16, hidden=64)


def _sparsity(model) -> dict[str, float]:
    return {k: round(v["sparsity"], 3) for k, v in sparsity_report(model).items()}


def test_readme_style_uniform_prune_caps_the_sensitive_layers(cnn):
    got = _sparsity(prune(cnn, PruneConfig(method="magnitude", sparsity=0.92)))
    assert got["conv1"] == 0.5  # 144 weights, the first conv
    assert got["fc2"] == 0.75  # the classifier
    assert got["conv2"] == 0.92 and got["fc1"] == 0.92  # the big layers get the requested sparsity


def test_per_layer_values_and_protect_false_override_the_rule(cnn):
    import copy

    a = _sparsity(prune(copy.deepcopy(cnn), PruneConfig(sparsity=0.92, per_layer={"conv1": 0.8})))
    assert a["conv1"] == pytest.approx(0.8, abs=0.005) and a["fc2"] == 0.75
    b = _sparsity(prune(copy.deepcopy(cnn), PruneConfig(sparsity=0.92, protect=False)))
    assert all(v == pytest.approx(0.92, abs=0.005) for v in b.values())


def test_rule_leaves_large_first_linear_and_global_scope_alone():
    model = create_model("lenet300_100")  # fc1 is first but a 235k-weight Linear, not a conv
    got = _sparsity(prune(model, PruneConfig(sparsity=0.9)))
    assert got["fc1"] == 0.9 and got["fc2"] == 0.9 and got["fc3"] == 0.75
    g = prune(create_model("lenet300_100"), PruneConfig(sparsity=0.9, scope="global"))
    total = sum(v["numel"] - v["nonzero"] for v in sparsity_report(g).values())
    assert total == round(0.9 * sum(v["numel"] for v in sparsity_report(g).values()))


def test_prune_stage_records_the_protected_layers(cnn, tmp_path):
    from slimtorch.pipeline.context import Context
    from slimtorch.prune.stage import PruneStageConfig, prune_stage

    ctx = Context(
        model=cnn,
        train_data=None,
        test_data=None,
        out_dir=tmp_path,
        example_input=torch.zeros(1, 1, 28, 28),
        stage_index=1,
        stage_name="prune",
    )
    prune_stage(ctx, PruneStageConfig.from_dict({"prune": {"sparsity": 0.9}}))
    assert ctx.info["prune"]["protected"]["conv1"] == {"max_sparsity": 0.5, "reason": "first convolution"}
    assert ctx.info["prune"]["layers"]["conv1"] == 0.5


def test_pruning_a_model_with_an_lstm_says_the_lstm_stays_dense():
    from tests.models.matrix import LSTMNet

    with pytest.warns(UserWarning, match=r"recurrent layers stay dense: lstm \(LSTM\)"):
        prune(LSTMNet(), PruneConfig(sparsity=0.5))


def test_a_costly_one_shot_prune_warns_and_suggests_a_gradual_schedule(tmp_path, capsys):
    from slimtorch.data import get_dataset
    from slimtorch.pipeline.context import Context
    from slimtorch.prune.stage import PruneStageConfig, prune_stage
    from slimtorch.train import TrainConfig, fit

    torch.manual_seed(0)
    train, test = get_dataset("synthetic", n_train=256, n_test=128)
    model = create_model("mlp", hidden=[32], in_features=784)
    fit(model, train, TrainConfig(epochs=3, batch_size=32), verbose=False)
    ctx = Context(
        model=model,
        train_data=train,
        test_data=test,
        out_dir=tmp_path,
        example_input=test[0][0][None],
        stage_index=1,
        stage_name="prune",
        verbose=True,
    )
    prune_stage(ctx, PruneStageConfig.from_dict({"prune": {"sparsity": 0.99, "protect": False}, "warn_drop": 0.05}))
    info = ctx.info["prune"]
    assert info["accuracy_before"] - info["accuracy_pruned"] > 0.05  # the premise: 99 % one-shot hurts
    assert "gradual schedule" in info["warnings"][0]
    assert "one-shot pruning cost" in capsys.readouterr().err
