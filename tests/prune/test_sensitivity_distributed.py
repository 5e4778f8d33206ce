"""Sensitivity sweeps under torchrun (2 gloo CPU processes) share their points and return the serial result."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slimtorch.train import distributed as D

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("sensitivity_worker.py")


def test_local_only_keeps_init_from_env_from_joining(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as under torchrun, but no rendezvous exists: joining would hang
    with D.local_only():
        assert D.init_from_env("cpu") is False
        assert (D.world_size(), D.rank(), D.is_main(), D.shard(3)) == (1, 0, True, [0, 1, 2])
        assert D.all_gather_objects("x") == ["x"]
        assert D.fan_out(lambda k: k * k, [1, 2, 3]) == [1, 4, 9]


def test_fan_out_raises_the_original_error_when_alone():
    def boom(k):
        raise ValueError(f"bad {k}")

    with pytest.raises(ValueError, match="bad 0"):
        D.fan_out(boom, [0, 1])


def test_two_ranks_share_sensitivity_points_and_agree_with_serial(tmp_path):
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(WORKER),
        str(tmp_path),
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    for i, res in enumerate(ranks):
        assert res["world"] == 2
        assert res["seen_inside"] == [1, 0, True, False, i]  # local_only: a world of one, real rank kept
        assert res["gathered"] == [0, 1]
        assert res["prune"] == res["prune_serial"], f"rank {i}: pruning sensitivity differs from serial"
        assert res["bits"] == res["bits_serial"], f"rank {i}: bit-width sensitivity differs from serial"
        assert list(res["prune"]) == ["encoder.0", "mix", "head"]
        assert all([s for s, _ in curve] == [0.0, 0.3, 0.6, 0.9, 0.99] for curve in res["prune"].values())
    assert ranks[0]["shard"] == [0, 2, 4] and ranks[1]["shard"] == [1, 3]
    assert ranks[0]["prune"] == ranks[1]["prune"] and ranks[0]["bits"] == ranks[1]["bits"]
    # item 1 ran on rank 1: it raises the point's own error, rank 0 hears which rank failed
    assert ranks[1]["failure"] == "ValueError: point one is broken"
    assert ranks[0]["failure"].startswith("RuntimeError: fanned-out work failed on rank 1, item 1")
