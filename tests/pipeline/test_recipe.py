import json
from pathlib import Path

import pytest
import yaml

from slimtorch.core import ConfigError
from slimtorch.pipeline import apply_overrides, load_recipe, recipe_from_dict, run_recipe

RECIPES = sorted(Path(__file__).parents[2].joinpath("recipes").glob("*.yaml"))

TINY = {
    "name": "tiny",
    "seed": 0,
    "model": {"name": "lenet300_100"},
    "data": {"name": "synthetic", "kwargs": {"n_train": 128, "n_test": 64}},
    "measure": {"latency_batches": [1], "latency_runs": 2},
    "stages": [
        {"type": "train", "epochs": 2, "batch_size": 32},
        {"type": "measure", "label": "checkpoint"},
        {"type": "save", "filename": "copy.safetensors"},
    ],
}


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.stage_configs()


@pytest.mark.parametrize(
    "override, field",
    [
        ("stages.0.epochs=-1", "stages[0].epochs"),
        ("stages.0.optimizer.name=rmsprop", "stages[0].optimizer.name"),
        ("stages.0.bogus=1", "stages[0].bogus"),
        ("stages.1.type=nope", "stages[1].type"),
        ("seed=abc", "seed"),
        ("measure.latency_runs=0", "measure.latency_runs"),
    ],
)
def test_validation_errors_name_the_field(override, field):
    with pytest.raises(ConfigError) as exc:
        recipe_from_dict(apply_overrides(TINY, [override]))
    assert exc.value.field == field
    assert field in str(exc.value)


def test_unknown_stage_type_lists_available_types():
    with pytest.raises(ConfigError, match="available: .*train"):
        recipe_from_dict(apply_overrides(TINY, ["stages.1.type=nope"]))


def test_override_parses_yaml_scalars():
    data = apply_overrides(TINY, ["stages.0.epochs=3", "stages.0.optimizer.lr=0.5", "description=hi there"])
    assert data["stages"][0]["epochs"] == 3 and data["stages"][0]["optimizer"]["lr"] == 0.5
    assert TINY["stages"][0]["epochs"] == 2  # the input is not mutated


def test_run_records_every_stage_and_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    res = run_recipe(recipe_from_dict(TINY), out, verbose=False, argv=["slimtorch", "run", "x"])
    assert [r["name"] for r in res.records] == ["train", "checkpoint", "save"]
    for name in (
        "recipe.yaml",
        "command.json",
        "environment.json",
        "results.json",
        "report.md",
        "model.safetensors",
        "copy.safetensors",
    ):
        assert (out / name).exists(), name
    results = json.loads((out / "results.json").read_text())
    assert results["records"][0]["accuracy"] == res.records[0]["accuracy"]
    assert yaml.safe_load((out / "recipe.yaml").read_text())["name"] == "tiny"
    assert results["records"][-1]["artifact"].endswith("copy.safetensors")
    # refuses to overwrite without force
    with pytest.raises(ConfigError, match="--force"):
        run_recipe(recipe_from_dict(TINY), out, verbose=False)


def test_cuda_without_a_gpu_is_a_clear_error_before_anything_is_written(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU") as err:
        run_recipe(recipe_from_dict({**TINY, "device": "cuda"}), tmp_path / "run", verbose=False)
    assert err.value.field == "device"
    assert not (tmp_path / "run").exists()


def test_resume_of_a_finished_run_reproduces_it(tmp_path):
    out = tmp_path / "run"
    first = run_recipe(recipe_from_dict(TINY), out, verbose=False)
    again = run_recipe(recipe_from_dict(TINY), out, resume=True, verbose=False)
    assert again.info["train"]["resumed_from"] == 2
    assert first.records[0]["accuracy"] == again.records[0]["accuracy"]


def test_sweep_produces_one_point_per_value_and_a_tradeoff_report(tmp_path):
    from slimtorch.pipeline.sweep import run_sweep

    data = {
        **TINY,
        "stages": [
            {"type": "train", "epochs": 1, "batch_size": 32},
            {"type": "prune", "prune": {"sparsity": 0.5}},
        ],
        "sweep": {"param": "stages.1.prune.sparsity", "values": [0.3, 0.6, 0.9]},
    }
    res = run_sweep(recipe_from_dict(data), tmp_path / "sweep", verbose=False)
    assert [r["name"] for r in res.records] == ["sparsity=0.3", "sparsity=0.6", "sparsity=0.9"]
    nonzero = [r["nonzero"] for r in res.records]
    assert nonzero[0] > nonzero[1] > nonzero[2]
    assert (tmp_path / "sweep" / "point_02" / "results.json").exists()
    html = (tmp_path / "sweep" / "report.html").read_text()
    assert "sparsity=0.9" in html and "data:image/png;base64," in html


def test_bad_sweep_value_is_named():
    data = {**TINY, "sweep": {"param": "stages.0.epochs", "values": [1, -2]}}
    with pytest.raises(ConfigError, match="sweep value -2"):
        recipe_from_dict(data)


def test_int8_stage_record_shows_the_deployed_artifact(tmp_path):
    recipe = {
        **TINY,
        "model": {"name": "lenet5"},
        "stages": [
            {"type": "train", "epochs": 1, "batch_size": 32},
            {"type": "int8", "max_float_layers": 0, "timing_rounds": 2, "calib_examples": 64},
        ],
    }
    res = run_recipe(recipe_from_dict(recipe), tmp_path / "run", verbose=False)
    rec, info = res.records[-1], res.info["int8"]
    assert rec["runtime"] == "onnxruntime int8"
    assert rec["latency"]["b1"]["median_ms"] == info["latency_ms_batch1"]["int8"]
    assert rec["accuracy"] == info["accuracy_int8"]
    assert rec["artifact"].endswith(".onnx")
    # the train stage's row is still the float model's own measurement
    assert "runtime" not in res.records[0]


def test_validation_split_is_held_out_of_training_and_recorded(tmp_path, monkeypatch):
    import slimtorch.pipeline.builtin_stages as bs
    from slimtorch.pipeline import runner

    seen = {}
    original = bs.fit

    def spy(model, data, cfg, eval_data=None, **kw):
        seen["train"], seen["monitor"] = len(data), eval_data
        return original(model, data, cfg, eval_data=eval_data, **kw)

    monkeypatch.setattr(bs, "fit", spy)
    recipe = {**TINY, "data": {**TINY["data"], "validation_size": 32}}
    res = run_recipe(recipe_from_dict(recipe), tmp_path / "run", verbose=False)
    assert seen["train"] == 128 - 32 and len(seen["monitor"]) == 32  # trained on the rest, monitored on validation
    assert all(0.0 <= r["val_accuracy"] <= 1.0 for r in res.records)
    held_out = set(seen["monitor"].indices)
    rest, validation = runner._validation_split(list(range(128)), 32, 0)
    assert set(validation.indices) == held_out and not set(rest.indices) & held_out  # fixed and disjoint
    assert set(runner._validation_split(list(range(128)), 32, 1)[1].indices) != held_out  # the seed moves it


def test_validation_split_that_leaves_no_training_data_is_refused(tmp_path):
    from slimtorch.core.errors import ConfigError

    recipe = {**TINY, "data": {**TINY["data"], "validation_size": 128}}
    with pytest.raises(ConfigError, match="validation_size 128 leaves no training data"):
        run_recipe(recipe_from_dict(recipe), tmp_path / "run", verbose=False)
