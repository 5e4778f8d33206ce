"""Every recipe in recipes/ runs end to end on a tiny budget (few examples, one epoch per training)."""

from pathlib import Path

import pytest
import yaml

from slimtorch.pipeline import recipe_from_dict, run_recipe
from slimtorch.pipeline.recipe import sweep_points

RECIPES = sorted(Path(__file__).parents[2].joinpath("recipes").glob("*.yaml"))


def shrink(node):
    """Recursively cut every training to 1 epoch (and gradual-pruning schedules to fit in it)."""
    if isinstance(node, dict):
        return {
            k: (1 if k in ("epochs", "end_epoch") else 0 if k == "begin_epoch" else shrink(v)) for k, v in node.items()
        }
    if isinstance(node, list):
        return [shrink(v) for v in node]
    return node


def tiny(path: Path, lm_dir: Path | None = None) -> dict:
    data = shrink(yaml.safe_load(path.read_text()))
    if (data.get("data") or {}).get("name") == "text":
        # Language-model recipes: the same stages on a tiny Llama (with a byte tokenizer) and a few short
        # windows of text; SmolLM2 itself is exercised by bench/llm.py, not by the test suite.
        from tests.llm_dirs import TINY_TEXT, tiny_llama_dir

        assert lm_dir is not None
        data["model"] = {"hf": str(tiny_llama_dir(lm_dir)), "task": "causal-lm"}
        data["data"] = {"name": "text", "kwargs": dict(TINY_TEXT)}
        return data
    if data.get("data"):
        data["data"].update(train_subset=96, test_subset=48, calib_size=32)
        if data["data"].get("validation_size"):
            data["data"]["validation_size"] = 16  # (held out of the 96)
    data["measure"] = {"latency_batches": [1], "latency_runs": 1}
    for stage in data.get("stages", []):
        if stage.get("type") == "int8":  # the fallback search and timing are what take minutes
            stage.update(max_float_layers=0, calib_examples=16, test_examples=16, timing_rounds=1)
    if data.get("sweep"):
        data["sweep"]["values"] = data["sweep"]["values"][-1:]
    return data


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_runs_on_a_tiny_budget(path, tmp_path):
    recipe = recipe_from_dict(tiny(path, tmp_path / "tiny_llama"))
    runs = sweep_points(recipe) or [recipe]
    for point in runs:
        res = run_recipe(point, tmp_path / "run", force=True, verbose=False)
        assert [r["name"] for r in res.records][-1] == point.stage_configs()[-1][0]
        final = "model/model.safetensors" if recipe.data and recipe.data.name == "text" else "model.safetensors"
        assert (res.out_dir / "report.html").exists() and (res.out_dir / final).exists()
