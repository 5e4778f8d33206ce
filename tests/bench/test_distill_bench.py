"""bench/distill.py's Hinton part: the validation split, config merging, and the recipes it backs."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from bench import distill as kd_bench
from slimtorch.distill import DistillConfig
from slimtorch.pipeline import load_recipe
from slimtorch.train import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def test_validation_split_is_seeded_disjoint_and_complete():
    data = TensorDataset(torch.arange(50.0).view(50, 1), torch.arange(50))
    fit_a, val_a, info = kd_bench.validation_split(data, 10, seed=3)
    _, val_b, _ = kd_bench.validation_split(data, 10, seed=3)
    _, val_c, _ = kd_bench.validation_split(data, 10, seed=4)
    ids_fit, ids_val = set(fit_a.tensors[1].tolist()), set(val_a.tensors[1].tolist())
    assert len(ids_val) == 10 and len(ids_fit) == 40 and not ids_fit & ids_val
    assert ids_fit | ids_val == set(range(50))
    assert torch.equal(val_a.tensors[1], val_b.tensors[1])  # the seed decides the split...
    assert not torch.equal(val_a.tensors[1], val_c.tensors[1])  # ...and another seed gives another one
    assert info["size"] == 10 and info["seed"] == 3


def test_merged_changes_nested_fields_only():
    base = TrainConfig(optimizer={"lr": 0.1, "momentum": 0.95}).to_dict()
    out = kd_bench.merged(base, {"optimizer": {"lr": 0.3}, "max_norm": 3.5})
    assert out["optimizer"]["lr"] == 0.3 and out["optimizer"]["momentum"] == 0.95 and out["max_norm"] == 3.5
    assert base["optimizer"]["lr"] == 0.1  # the base is not modified


def _without(cfg: dict, *keys: str) -> dict:
    return {k: v for k, v in cfg.items() if k not in keys}


def test_the_hinton_recipes_hold_the_configs_the_benchmark_chose_and_measured():
    h = json.loads((ROOT / "bench/results/distill.json").read_text())["hinton2015_mnist"]["config"]
    # the benchmark evaluates its validation split every few epochs; the recipes (no such split) do not
    ignore = ("eval_every",)
    stages = {label: cfg for label, _, cfg in load_recipe(ROOT / "recipes/hinton_distill_mnist.yaml").stage_configs()}
    assert _without(stages["teacher"].to_dict(), *ignore) == _without(h["teacher"], *ignore)
    kd = stages["distill"].to_dict()
    expected = DistillConfig.from_dict(h["distill"]).to_dict()
    assert {k: kd[k] for k in expected if k != "train"} == {k: v for k, v in expected.items() if k != "train"}
    assert _without(kd["train"], *ignore) == _without(expected["train"], *ignore)
    (scratch,) = [cfg for _, _, cfg in load_recipe(ROOT / "recipes/hinton_scratch_mnist.yaml").stage_configs()]
    assert _without(scratch.to_dict(), *ignore) == _without(h["students"], *ignore)
    assert _without(scratch.to_dict(), *ignore) == _without(kd["train"], *ignore)  # the same recipe for both students
