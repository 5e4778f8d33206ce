"""Sensitivity analysis, saving pruned models, and the recipe stage."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from slimtorch.io import load_model, save_model
from slimtorch.prune import PruneConfig, finalize, prune, sensitivity, sparsities_for_tolerance
from slimtorch.prune.sensitivity import save_sensitivity
from slimtorch.train import TrainConfig, evaluate, fit
from tests.prune.prune_helpers import make, vector_data


@pytest.fixture(scope="module")
def trained():
    model = make()
    fit(model, vector_data(256), TrainConfig(epochs=4, batch_size=32), verbose=False)
    return model


def test_sensitivity_curves_and_outputs(trained, tmp_path):
    data = vector_data(128, seed=1)
    res = sensitivity(trained, data, sparsities=[0.0, 0.5, 0.99], layers={"include": ["encoder.*", "head"]})
    assert list(res) == ["encoder.0", "head"]
    dense_acc = evaluate(trained, data).accuracy
    for curve in res.values():
        assert [s for s, _ in curve] == [0.0, 0.5, 0.99]
        assert curve[0][1] == dense_acc
    assert not any(hasattr(m, "parametrizations") for m in trained.modules())  # model untouched
    paths = save_sensitivity(res, tmp_path / "s.json", tmp_path / "s.png")
    assert json.loads(paths["json"].read_text())["head"][1][0] == 0.5
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sparsities_for_tolerance_stops_at_first_drop():
    res = {"a": [(0.0, 0.9), (0.5, 0.899), (0.8, 0.85), (0.9, 0.9)], "b": [(0.0, 0.9), (0.5, 0.7)]}
    assert sparsities_for_tolerance(res, 0.9, 0.005) == {"a": 0.5, "b": 0.0}


def test_pruned_zoo_model_saves_smaller_and_loads_identically(tmp_path):
    from slimtorch.models import create_model

    torch.manual_seed(0)
    dense = create_model("lenet300_100")
    save_model(dense, tmp_path / "dense.safetensors")
    model = prune(dense, PruneConfig(sparsity=0.9, per_layer={"fc3": 0.5}))
    x = torch.rand(4, 1, 28, 28)
    model.eval()
    expected = model(x)
    finalize(model)
    save_model(model, tmp_path / "pruned.safetensors")
    loaded = load_model(tmp_path / "pruned.safetensors")
    assert torch.equal(loaded(x), expected)
    assert (tmp_path / "pruned.safetensors").stat().st_size < 0.3 * (tmp_path / "dense.safetensors").stat().st_size


def test_prune_stage_one_shot_records_info(tmp_path):
    from slimtorch.pipeline.context import Context
    from slimtorch.pipeline.registry import STAGES
    from slimtorch.prune import stage  # noqa: F401  (registers the stage)

    spec = STAGES.get("prune")
    cfg = spec.config_cls.from_dict(
        {
            "prune": {"sparsity": 0.75, "layers": {"include": ["mix", "head"]}, "protect": False},
            "finetune": {"epochs": 1, "batch_size": 32},
        }
    )
    data = vector_data()
    ctx = Context(
        model=make(),
        train_data=data,
        test_data=data,
        out_dir=tmp_path,
        example_input=torch.randn(1, 16),
        stage_name="prune",
        verbose=False,
    )
    spec.fn(ctx, cfg)
    info = ctx.info["prune"]
    assert info["layers"]["mix"] == 0.75 and info["layers"]["encoder.0"] == 0.0
    assert info["finetune_epochs"] == 1 and 0.0 <= info["accuracy_after"] <= 1.0
    assert isinstance(ctx.model, nn.Module)


def test_prune_stage_config_errors():
    from slimtorch.core.errors import ConfigError
    from slimtorch.prune.stage import PruneStageConfig

    with pytest.raises(ConfigError, match="finetune"):
        PruneStageConfig.from_dict({"schedule": "agp"})
    with pytest.raises(ConfigError, match="sparsity"):
        PruneStageConfig.from_dict({"prune": {"sparsity": 2}})
