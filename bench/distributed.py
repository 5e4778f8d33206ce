"""Wall-clock of work spread over 1 vs 2 CPU processes (gloo) on real MNIST.

Two sections, each re-runnable alone (``--section ddp`` / ``--section sensitivity``);
a run keeps the other section's figures in the results file.

* ``ddp``: DDP fine-tuning. LeNet-300-100 (80 % pruned, masks kept) trains for
  the same epochs with the same global batch; 1 process uses 2 intra-op threads,
  2 processes use 1 thread each, so both use the machine's 2 cores. The two
  final test accuracies are reported too (they should agree closely: same
  global batches). Figures at the top level of the results file.
* ``sensitivity``: a per-layer pruning sensitivity sweep (no retraining) of a
  LeNet-5 trained for one epoch, its (layer, sparsity) points fanned out over
  the processes (``slimtorch.prune.sensitivity`` under torchrun). Run by 1
  process with 1 thread, 1 process with 2 threads and 2 processes with 1 thread
  each; the 2-process curves must equal the 1-process-1-thread ones exactly
  (same points, same float operations). Figures under ``sensitivity_sweep``.

Results: ``bench/results/distributed.json``.

Run: ``.venv/bin/python bench/distributed.py [--section ddp|sensitivity]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "distributed.json"
EPOCHS = 3
TORCHRUN_2 = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]

DDP_WORKER = r"""
import json, sys, time, torch
from slimtorch.data import load_mnist
from slimtorch.models import create_model
from slimtorch.prune import PruneConfig, prune
from slimtorch.train import OptimizerConfig, TrainConfig, evaluate, fit
from slimtorch.train import distributed as D
out, threads, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
D.init_from_env("cpu")
train, test = load_mnist()
torch.manual_seed(0)
model = prune(create_model("lenet300_100"), PruneConfig(sparsity=0.8))
cfg = TrainConfig(epochs=epochs, batch_size=128, optimizer=OptimizerConfig(lr=0.05))
D.barrier()
t0 = time.perf_counter()
fit(model, train, cfg, verbose=False)
seconds = time.perf_counter() - t0
if D.is_main():
    json.dump({"train_seconds": seconds, "accuracy": evaluate(model, test).accuracy}, open(out, "w"))
D.shutdown()
"""

# Sensitivity setup: LeNet-5 trained for one epoch on the first TRAIN_N digits, then every
# layer alone pruned to each sparsity and evaluated on the 10,000 test digits.
TRAIN_N = 20_000
SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95)

SENS_WORKER = r"""
import sys, time, torch
from safetensors.torch import load_file
from slimtorch.core.fileio import atomic_write_json
from slimtorch.data import load_mnist
from slimtorch.models import create_model
from slimtorch.prune import sensitivity
from slimtorch.train import distributed as D
out, threads, weights = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sparsities = [float(s) for s in sys.argv[4].split(",")]
torch.set_num_threads(threads)
D.init_from_env("cpu")
_, test = load_mnist()
model = create_model("lenet5")
model.load_state_dict(load_file(weights))
model.eval()
D.barrier()
t0 = time.perf_counter()
curves = sensitivity(model, test, sparsities)
seconds = time.perf_counter() - t0  # on rank 0 this includes waiting for the gather: the sweep's whole time
if D.is_main():
    atomic_write_json(out, {"sweep_seconds": seconds, "curves": {k: [list(p) for p in v] for k, v in curves.items()}})
D.shutdown()
"""


def _run(cmd: list[str], out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    res = json.loads(out.read_text())
    res["wall_seconds_incl_startup"] = time.perf_counter() - t0
    return res


def ddp_section(tmp: Path) -> dict:
    from slimtorch.measure.env import environment

    script = tmp / "ddp_worker.py"
    script.write_text(DDP_WORKER)
    runs = {}
    load_start = os.getloadavg()
    for name, prefix, threads in [
        ("1_process_2_threads", [sys.executable], 2),
        ("2_processes_1_thread", TORCHRUN_2, 1),
    ]:
        out = tmp / f"{name}.json"
        runs[name] = _run([*prefix, str(script), str(out), str(threads), str(EPOCHS)], out)
        print(name, runs[name])
    one, two = runs["1_process_2_threads"], runs["2_processes_1_thread"]
    return {
        "task": f"fine-tune 80%-pruned LeNet-300-100 on real MNIST, {EPOCHS} epochs, global batch 128",
        "runs": runs,
        "speedup_2_vs_1": one["train_seconds"] / two["train_seconds"],
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "environment": environment(),
    }


def _train_lenet5(path: Path) -> float:
    """One epoch on the first TRAIN_N digits (untimed setup); returns the test accuracy."""
    import torch
    from safetensors.torch import save_file
    from torch.utils.data import Subset

    from slimtorch.data import load_mnist
    from slimtorch.models import create_model
    from slimtorch.train import OptimizerConfig, TrainConfig, evaluate, fit

    torch.manual_seed(0)
    train, test = load_mnist()
    model = create_model("lenet5")
    fit(
        model,
        Subset(train, range(TRAIN_N)),
        TrainConfig(epochs=1, batch_size=64, optimizer=OptimizerConfig(lr=0.05)),
        verbose=False,
    )
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return evaluate(model, test).accuracy


def sensitivity_section(tmp: Path) -> dict:
    from slimtorch.measure.env import environment

    script, weights = tmp / "sens_worker.py", tmp / "lenet5.safetensors"
    script.write_text(SENS_WORKER)
    dense_acc = _train_lenet5(weights)
    args = [str(weights), ",".join(str(s) for s in SPARSITIES)]
    runs = {}
    load_start = os.getloadavg()
    configs = [
        ("1_process_1_thread", [sys.executable], 1),
        ("1_process_2_threads", [sys.executable], 2),
        ("2_processes_1_thread", TORCHRUN_2, 1),
    ]
    for name, prefix, threads in configs:
        out = tmp / f"sens_{name}.json"
        runs[name] = _run([*prefix, str(script), str(out), str(threads), *args], out)
        print(name, runs[name]["sweep_seconds"], runs[name]["wall_seconds_incl_startup"])
    layers = list(runs["1_process_1_thread"]["curves"])
    two = runs["2_processes_1_thread"]
    return {
        "task": (
            f"pruning sensitivity of LeNet-5 (1 epoch on {TRAIN_N} MNIST digits, test accuracy {dense_acc:.4f}): "
            f"{len(layers)} layers x {len(SPARSITIES) - 1} sparsities + the dense point, each evaluated on the "
            "10,000 test digits"
        ),
        "points": len(layers) * (len(SPARSITIES) - 1) + 1,
        "sparsities": list(SPARSITIES),
        "runs": {name: {k: v for k, v in r.items() if k != "curves"} for name, r in runs.items()},
        "curves": two["curves"],
        "curves_2_processes_equal_1_process_1_thread": two["curves"] == runs["1_process_1_thread"]["curves"],
        "speedup_2_vs_1_thread": runs["1_process_1_thread"]["sweep_seconds"] / two["sweep_seconds"],
        "speedup_2_vs_2_threads": runs["1_process_2_threads"]["sweep_seconds"] / two["sweep_seconds"],
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "environment": environment(),
    }


def main(argv: list[str] | None = None) -> None:
    from slimtorch.core.fileio import atomic_write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--section",
        choices=["ddp", "sensitivity"],
        action="append",
        help="run only this section (repeatable); default: both",
    )
    sections = p.parse_args(argv).section or ["ddp", "sensitivity"]
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    tmp = Path(tempfile.mkdtemp())
    if "ddp" in sections:
        results.update(ddp_section(tmp))  # DDP figures live at the top level, as they always have
    if "sensitivity" in sections:
        results["sensitivity_sweep"] = sensitivity_section(tmp)
    atomic_write_json(RESULTS, results)


if __name__ == "__main__":
    main()
