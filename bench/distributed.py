"""Wall-clock of DDP fine-tuning with 1 vs 2 CPU processes (gloo) on real MNIST.

Each configuration trains LeNet-300-100 (80 % pruned, masks kept) for the same
epochs with the same global batch; 1 process uses 2 intra-op threads, 2
processes use 1 thread each, so both use the machine's 2 cores. The two final
test accuracies are reported too (they should agree closely: same global batches).
Results: ``bench/results/distributed.json``.

Run: ``.venv/bin/python bench/distributed.py``
"""

from __future__ import annotations

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

WORKER = r'''
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
'''


def main() -> None:
    from slimtorch.core.fileio import atomic_write_json
    from slimtorch.measure.env import environment

    tmp = Path(tempfile.mkdtemp())
    script = tmp / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    runs = {}
    load_start = os.getloadavg()
    for name, cmd_prefix, threads in [
        ("1_process_2_threads", [sys.executable], 2),
        ("2_processes_1_thread", [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"], 1),
    ]:
        out = tmp / f"{name}.json"
        t0 = time.perf_counter()
        subprocess.run([*cmd_prefix, str(script), str(out), str(threads), str(EPOCHS)], env=env, check=True)
        res = json.loads(out.read_text())
        res["wall_seconds_incl_startup"] = time.perf_counter() - t0
        runs[name] = res
        print(name, res)
    one, two = runs["1_process_2_threads"], runs["2_processes_1_thread"]
    atomic_write_json(RESULTS, {
        "task": f"fine-tune 80%-pruned LeNet-300-100 on real MNIST, {EPOCHS} epochs, global batch 128",
        "runs": runs,
        "speedup_2_vs_1": one["train_seconds"] / two["train_seconds"],
        "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
        "environment": environment(),
    })  # fmt: skip


if __name__ == "__main__":
    main()
