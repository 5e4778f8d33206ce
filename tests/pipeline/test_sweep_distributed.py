"""A sweep under torchrun (2 gloo CPU processes) fans its points out and ends as the serial sweep does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from slimtorch.pipeline import recipe_from_dict
from slimtorch.pipeline.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[2]

# One thread in every process, so the serial and the fanned-out runs do the same float operations.
RECIPE = {
    "name": "tiny_sweep",
    "seed": 0,
    "threads": 1,
    "model": {"name": "lenet300_100"},
    "data": {"name": "synthetic", "kwargs": {"n_train": 128, "n_test": 64}},
    "measure": {"latency_batches": [1], "latency_runs": 1},
    "stages": [
        {"type": "train", "epochs": 1, "batch_size": 32},
        {"type": "prune", "prune": {"sparsity": 0.5}},
    ],
    "sweep": {"param": "stages.1.prune.sparsity", "values": [0.3, 0.9]},
}


def _comparable(record: dict) -> dict:
    """Everything but timings, which differ from run to run."""
    return {k: v for k, v in record.items() if k != "latency"}


def _serial(out: Path) -> list[dict]:
    threads = torch.get_num_threads()
    try:
        return run_sweep(recipe_from_dict(RECIPE), out, verbose=False).records
    finally:
        torch.set_num_threads(threads)  # the recipe's threads: 1 must not leak into other tests


def _two_ranks(recipe_path: Path, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "slimtorch", "run", str(recipe_path), "-o", str(out), "--quiet", "--nproc", "2"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_two_ranks_sweep_matches_serial_sweep(tmp_path):
    recipe_path = tmp_path / "sweep.yaml"
    recipe_path.write_text(yaml.safe_dump(RECIPE, sort_keys=False))
    r = _two_ranks(recipe_path, tmp_path / "ddp")
    assert r.returncode == 0, r.stderr[-3000:]
    serial = _serial(tmp_path / "serial")

    fanned = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert [rec["name"] for rec in fanned["records"]] == ["sparsity=0.3", "sparsity=0.9"]
    assert [_comparable(rec) for rec in fanned["records"]] == [_comparable(rec) for rec in serial]
    # every point ran exactly once, as an ordinary single-process run with its own folder
    assert sorted(p.name for p in (tmp_path / "ddp").glob("point_*")) == ["point_00", "point_01"]
    for k, rec in enumerate(serial):
        point = json.loads((tmp_path / "ddp" / f"point_{k:02d}" / "results.json").read_text())
        assert _comparable(point["records"][-1]) == _comparable({**rec, "name": point["records"][-1]["name"]})
        assert (tmp_path / "ddp" / f"point_{k:02d}" / "model.safetensors").exists()
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(
        p.name for p in (tmp_path / "serial").iterdir()
    )
