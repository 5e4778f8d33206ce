"""The same recipe and seed give byte-identical artifacts on the same machine."""

from __future__ import annotations

import hashlib

import torch

from slimtorch.pipeline.recipe import load_recipe
from slimtorch.pipeline.runner import run_recipe
from tests.reliability.fuzz_harness import RECIPE

torch.set_num_threads(1)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_recipe_and_seed_give_identical_files(tmp_path):
    (tmp_path / "r.yaml").write_text(RECIPE)  # train 1 epoch -> prune 0.8 -> kmeans 4 bits -> encode -> save
    recipe = load_recipe(tmp_path / "r.yaml")
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        run_recipe(recipe, out, verbose=False)
    for name in ("model.safetensors", "model.slim"):
        a, b = (out / name for out in runs)
        assert a.is_file() and b.is_file(), name
        assert _digest(a) == _digest(b), f"{name} differs between two identical runs"


def test_writers_are_byte_stable_within_a_process():
    """safetensors orders ``__metadata__`` from a Rust HashMap: the writers sort the header."""
    from slimtorch.encode.format import pack_state
    from slimtorch.io.model_file import model_to_bytes
    from tests.reliability.fuzz_harness import tiny_model

    model = tiny_model()
    assert len({model_to_bytes(model, metadata={"a": 1, "b": 2}) for _ in range(8)}) == 1
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    assert len({pack_state(state, {"model": {"name": "mlp"}, "x": [1, 2]}) for _ in range(8)}) == 1
