"""Two CPU processes (gloo) train like one process on the same global batch; masks stay zero on every rank."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from slimtorch.train.distributed import StridedEpochSampler

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")


def _env():
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", OMP_NUM_THREADS="1")
    return env


def test_strided_sampler_splits_one_permutation_between_ranks():
    whole = list(StridedEpochSampler(10, seed=3))
    r0, r1 = list(StridedEpochSampler(10, 3, 0, 2)), list(StridedEpochSampler(10, 3, 1, 2))
    assert sorted(r0 + r1) == sorted(whole) == list(range(10))
    assert r0 == whole[0::2] and r1 == whole[1::2]


def test_two_gloo_processes_match_one_process(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir()
    ddp.mkdir()
    r = subprocess.run(
        [sys.executable, str(WORKER), str(single)], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    # the single process uses batch 64; each of the 2 ranks uses 32 (same global batch)
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER), str(ddp)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    one = load_file(single / "rank0.safetensors")
    ranks = [load_file(ddp / f"rank{i}.safetensors") for i in range(2)]
    for k, v in one.items():
        assert torch.equal(ranks[0][k], ranks[1][k]), f"ranks disagree on {k}"
        assert torch.allclose(v, ranks[0][k], atol=1e-5, rtol=1e-4), f"{k}: DDP differs from single process"
    for rank_state in ranks:
        for k, v in rank_state.items():
            if k.startswith("effective.") and "fc" in k:
                mask_key = next(m for m in rank_state if m.startswith(k.removeprefix("effective.")) and "mask" in m)
                assert (v[~rank_state[mask_key].bool()] == 0).all(), f"pruned weights revived in {k}"
