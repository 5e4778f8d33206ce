"""A recipe run's stage results are typed dataclasses, and results.json keeps the keys it always had."""

import json

import pytest

from slimtorch.pipeline import recipe_from_dict, run_recipe

FT = {"epochs": 1, "batch_size": 32}
RECIPE = {
    "name": "typed",
    "seed": 0,
    "model": {"name": "lenet300_100"},
    "data": {"name": "synthetic", "kwargs": {"n_train": 96, "n_test": 32}},
    "measure": {"latency_batches": [1], "latency_runs": 2},
    "stages": [
        {"type": "train", **FT},
        {"type": "measure", "label": "m", "note": "trained"},
        {"type": "prune", "prune": {"sparsity": 0.5}, "finetune": FT},
        {
            "type": "prune",
            "label": "it",
            "prune": {"sparsity": 0.6},
            "schedule": "iterative",
            "steps": 2,
            "finetune": FT,
        },
        {"type": "kmeans", "bits": 4},
        {"type": "encode"},
        {"type": "save"},
    ],
}

# results.json's stage keys as the code before typed results wrote them (run on that code, this recipe)
KEYS_BEFORE = {
    "train": {"history", "resumed_from"},
    "m": {"note"},
    "prune": {
        "accuracy_after", "accuracy_before", "accuracy_pruned", "compression", "finetune_epochs", "layers",
        "param_sparsity", "params", "params_nonzero", "protected", "schedule", "warnings", "weight_sparsity", "weights",
        "weights_nonzero",
    },
    "it": {
        "accuracy_after", "accuracy_before", "compression", "finetune_epochs", "layers", "param_sparsity", "params",
        "params_nonzero", "protected", "rounds", "schedule", "weight_sparsity", "weights", "weights_nonzero",
    },
    "kmeans": {"accuracy_before", "accuracy_shared", "config", "layers", "skipped_layers"},
    "encode": {"bytes", "file", "layers"},
    "save": set(),
}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_recipe(recipe_from_dict(RECIPE), tmp_path_factory.mktemp("typed") / "run", verbose=False)


def test_run_exposes_one_typed_result_per_stage(run):
    from slimtorch.core.stages import StageResult
    from slimtorch.pipeline.builtin_stages import MeasureResult, TrainResult
    from slimtorch.prune.stage import PruneResult
    from slimtorch.quantize.stage import KMeansResult

    r = run.results
    assert list(r) == ["train", "m", "prune", "it", "kmeans", "encode", "save"]
    assert all(isinstance(v, StageResult) for v in r.values())
    assert isinstance(r["train"], TrainResult) and len(r["train"].history) == 1
    assert isinstance(r["m"], MeasureResult) and r["m"].note == "trained"
    prune, it = r["prune"], r["it"]
    assert isinstance(prune, PruneResult) and prune.schedule == "one_shot" and prune.finetune_epochs == 1
    assert prune.weight_sparsity == pytest.approx(0.5, abs=0.01) and prune.rounds is None
    assert it.schedule == "iterative" and len(it.rounds) == 2 and it.finetune_epochs == 2
    assert isinstance(r["kmeans"], KMeansResult) and r["kmeans"].finetune is None
    assert r["encode"].bytes == (run.out_dir / "model.slim").stat().st_size


def test_results_json_is_the_typed_results_with_the_same_keys_as_before(run):
    stages = json.loads((run.out_dir / "results.json").read_text())["stages"]
    assert {k: set(v) - {"seconds"} for k, v in stages.items()} == KEYS_BEFORE
    for label, result in run.results.items():
        assert stages[label] == {**result.to_dict(), "seconds": stages[label]["seconds"]}
    assert run.info == stages
    assert stages["prune"]["weight_sparsity"] == run.results["prune"].weight_sparsity
