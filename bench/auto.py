"""Accuracy-aware auto-compression (``slimtorch.auto``) on real data.

* ``lenet5``: LeNet-5 trained here on real MNIST, ``target=size``, max drop 0.2 pp: the
  size of the chosen ``.slim`` file vs the Deep Compression recipe's
  (``bench/results/deep_compression.json`` → networks.lenet5.slim_bytes when that bench
  has run, else the paper's 44 KB), found without hand-set per-layer values.
* ``mobilenetv2``: ImageNet MobileNetV2, ``target=latency``, agreement with the original
  on photo crops from ``skimage.data`` (bench/fidelity_set.py): the chosen model's
  latency and agreement vs the best single-knob candidates (INT8 alone, channels alone)
  of the same search.

Writes ``bench/results/auto.json`` (merged per network, with the environment).
Run: ``.venv/bin/python bench/auto.py [lenet5|mobilenetv2] [--budget 15m]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from slimtorch.core.fileio import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "auto.json"
WORK = ROOT / "runs" / "bench_auto"
PAPER_LENET5_BYTES = 44 * 1024


def _summary(res, baseline_key: str) -> dict:
    keep = ("name", "config", "knobs", "size_bytes", "accuracy", "latency", "seconds", "sparsity", "params", "int8")
    return {
        "met": res.met,
        "message": res.message,
        "stopped": res.stopped,
        "baseline_" + baseline_key: res.baseline,
        "n_candidates": len(res.candidates),
        "chosen": {k: res.best.get(k) for k in keep} if res.best else None,
        "candidates": [{k: c.get(k) for k in keep} for c in res.candidates],
        "pareto_front": [res.candidates[i]["name"] for i in res.pareto],
    }


QUICK = "--quick" in sys.argv  # smoke run (bench/run_all.py --quick): 1 training epoch, 2 candidates; not a result


def run_lenet5(budget: float) -> dict:
    from slimtorch.auto import AutoConfig, auto_compress, selection_split
    from slimtorch.data import get_dataset
    from slimtorch.io import load_model, save_model
    from slimtorch.models import create_model
    from slimtorch.train import OptimizerConfig, ScheduleConfig, TrainConfig, evaluate, fit

    train, test = get_dataset("mnist")
    # screening: 1 epoch on 30 k images; refinement: Han et al.'s retraining (6 rounds of iterative pruning on all
    # the fine-tuning images, lr 0.005, weight decay 5e-4), both with KD from the original (distill_alpha, the
    # default). The search checks the budget on its selection split, the last 6,000 MNIST training images, which
    # the original is not trained on either (so its figures there are unbiased); the 10 k test images give the
    # chosen model's reported accuracy, once.
    cfg = AutoConfig(
        target="size",
        max_drop=0.2,
        budget_s=budget,
        bits=(6, 5, 4),
        finetune_epochs=1,
        kmeans_epochs=1,
        refine_epochs=6,
        finetune_samples=30000,
        refine_samples=None,
        finetune_lr=0.01,
        refine_lr=0.005,
        weight_decay=5e-4,
        distill_alpha=0.7,
        kmeans_lr=0.001,
        threads=1,
        latency_runs=20,
        grad_clip=None,
        selection_samples=6000,
    )  # LeNet-5 has no BatchNorm to amplify gradients
    if QUICK:
        cfg = cfg.replace(
            budget_s=min(budget, 120.0),
            max_candidates=2,
            refine_epochs=0,
            finetune_samples=5000,
            sensitivity_samples=500,
        )
    fit_part, selection = selection_split(train, cfg)
    trained = WORK / f"lenet5_trained_first{len(fit_part)}{'_quick' if QUICK else ''}.safetensors"
    t0 = time.perf_counter()
    if trained.is_file():  # reuse the model an earlier run trained (same recipe, same seed, same images)
        model = load_model(trained)
    else:
        torch.manual_seed(0)
        model = create_model("lenet5")
        fit(
            model,
            fit_part,
            TrainConfig(
                epochs=1 if QUICK else 8,
                batch_size=128,
                seed=0,
                eval_every=0,
                optimizer=OptimizerConfig(lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True),
                schedule=ScheduleConfig(name="cosine", warmup_epochs=0.5),
            ),
            verbose=True,
        )
        save_model(model, trained)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = auto_compress(model, train, test, cfg, WORK / "lenet5", force=True)
    wall = time.perf_counter() - t0
    dc_file = ROOT / "bench" / "results" / "deep_compression.json"
    ref = None
    if dc_file.is_file():
        ref = json.loads(dc_file.read_text()).get("networks", {}).get("lenet5", {}).get("slim_bytes")
    reference = (
        {"source": "bench/results/deep_compression.json networks.lenet5.slim_bytes", "bytes": ref}
        if ref
        else {
            "source": "paper (Han et al. 2016, Table 1: 44 KB); bench/deep_compression.py had not run",
            "bytes": PAPER_LENET5_BYTES,
        }
    )
    out = _summary(res, "accuracy")
    out["baseline_accuracy_on"] = "selection split"
    chosen = res.best["size_bytes"] if res.best else None
    out.update(
        network="lenet5",
        target="size",
        max_drop_pp=0.2,
        budget_s=budget,
        data=(
            f"mnist: original and fine-tuning on the first {len(fit_part)} training images, choices on the last "
            f"{len(selection)} (selection split), reported accuracy on the 10k test images"
        ),
        selection_split={
            "source": "mnist train",
            "indices": [len(fit_part), len(train)],
            "n": len(selection),
            "fine_tune_n": len(fit_part),
            "test_n": len(test),
            "original_trained_on_it": False,
            "disjoint_from_test": True,
        },
        test_accuracy=res.test_accuracy,
        test_baseline_accuracy=res.test_baseline,
        test_drop_pp=None if res.test_accuracy is None else 100 * (res.test_baseline - res.test_accuracy),
        budget_met_on_test=None
        if res.test_accuracy is None
        else 100 * (res.test_baseline - res.test_accuracy) <= 0.2 + 1e-9,
        train_seconds=train_s,
        search_seconds=wall,
        dense_bytes=res.best and json.loads((WORK / "lenet5" / "state.json").read_text())["original"]["dense_bytes"],
        config=cfg.to_dict(),
        reference=reference,
        at_least_as_small_as_reference=bool(chosen is not None and res.met and chosen <= reference["bytes"]),
        hand_set_per_layer_values=False,
        decoded_accuracy_check=evaluate(__import__("slimtorch").load(WORK / "lenet5" / "best.slim"), test).accuracy,
    )
    return out


def run_mobilenetv2(budget: float) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    from torch.utils.data import TensorDataset

    from slimtorch.auto import AutoConfig, auto_compress
    from slimtorch.data.photos import photo_splits
    from slimtorch.models import create_model

    model = create_model("mobilenet_v2", pretrained=True).eval()
    calib, sel_pool, pool, split = photo_splits(24, 24, 44)
    # Most crops are textures or text that an ImageNet classifier is unsure about; their top-1 flips
    # under any perturbation (bench/int8.py's noise floor: rounding the crops themselves to 8 bits
    # changes it on about 1 in 10). The budget is checked, and the result reported, on the crops the
    # float model is confident about (top-1 probability >= 0.5), where a flip means damage: of the
    # selection photos for every choice (the last examples of the training data are the search's
    # selection split), of the test photos for the reported figure.
    with torch.no_grad():

        def confident(x):
            return torch.cat([model(x[i : i + 48]).softmax(1).amax(1) for i in range(0, len(x), 48)]) >= 0.5

        sel, test_x = sel_pool[confident(sel_pool)], pool[confident(pool)]
    train = TensorDataset(torch.cat([calib, sel]))
    test = TensorDataset(test_x)
    cfg = AutoConfig(
        target="latency",
        max_drop=5.0,
        budget_s=budget,
        channel_ratios=(0.1, 0.2, 0.3, 0.5),
        round_to=8,
        int8=True,
        finetune_epochs=3,
        finetune_lr=0.001,
        batch_size=16,
        threads=1,
        latency_runs=15,
        metric="agreement",
        selection_samples=len(sel),
    )
    t0 = time.perf_counter()
    res = auto_compress(model, train, test, cfg, WORK / "mobilenetv2", force=True)
    out = _summary(res, "agreement")

    def lat(c):
        return c["latency"]["b1"]["median_ms"]

    ok = [c for c in res.candidates if 100 * (1 - c["accuracy"]) <= cfg.max_drop]
    singles = {
        "int8_only": [c for c in ok if c["config"]["int8"] and c["config"]["channel_ratio"] == 0],
        "channels_only": [c for c in ok if not c["config"]["int8"]],
    }
    state = json.loads((WORK / "mobilenetv2" / "state.json").read_text())
    # the fastest fp32 runtime, for a fair speed-up (the search's own baseline is eager PyTorch)
    from slimtorch.export.onnx import export_onnx, ort_session
    from slimtorch.measure import measure_latency

    fp32_onnx = WORK / "mobilenetv2_fp32.onnx"
    export_onnx(model, pool[:2], fp32_onnx)
    sess = ort_session(fp32_onnx, 1)
    name = sess.get_inputs()[0].name
    ort_ms = measure_latency(
        lambda x: sess.run(None, {name: x.numpy()}), pool[:1], 1, threads=1, runs=cfg.latency_runs
    ).median_ms
    out.update(
        network="mobilenet_v2 (ImageNet weights)",
        data=(
            f"skimage.data photo crops, whole photos apart: {len(calib)} fine-tune/calibration crops, "
            f"{len(sel)} selection crops (of {len(sel_pool)}: those fp32 is confident about), {len(test)} test "
            f"crops (of {len(pool)}, the same filter)"
        ),
        selection_split={
            "source": "crops of the selection photos, appended to the training data",
            "n": len(sel),
            "photos": split["photos"],
            "fine_tune_n": len(calib),
            "test_n": len(test),
            "disjoint_from_test": split["disjoint"],
        },
        test_agreement=res.test_accuracy,
        test_drop_pp=None if res.test_accuracy is None else 100 * (res.test_baseline - res.test_accuracy),
        budget_met_on_test=None if res.test_accuracy is None else 100 * (res.test_baseline - res.test_accuracy) <= 5.0,
        original_latency_ms_ort_fp32=ort_ms,
        metric="top-1 agreement with the original",
        target="latency",
        max_drop_pp=cfg.max_drop,
        budget_s=budget,
        search_seconds=time.perf_counter() - t0,
        config=cfg.to_dict(),
        original_latency_ms=state["original"]["latency"]["b1"]["median_ms"],
        best_single_knob={
            k: (
                {
                    "name": min(v, key=lat)["name"],
                    "latency_ms": lat(min(v, key=lat)),
                    "agreement": min(v, key=lat)["accuracy"],
                }
                if v
                else None
            )
            for k, v in singles.items()
        },
    )
    return out


def main() -> None:
    from slimtorch.auto import parse_budget
    from slimtorch.measure import environment

    ap = argparse.ArgumentParser()
    ap.add_argument("networks", nargs="*", default=["lenet5"])
    ap.add_argument("--budget", default="15m")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 training epoch, 2 candidates (not a result)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one thread: two stall on a shared 2-core machine
    runners = {"lenet5": run_lenet5, "mobilenetv2": run_mobilenetv2}
    for name in args.networks:
        out = runners[name](parse_budget(args.budget))
        out["environment"] = environment()  # this network's own (the top level's is the last writer's)
        # read just before writing: one network per process may run at the same time as another
        old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        results = {"networks": {**old.get("networks", {}), name: out}, "environment": environment()}
        atomic_write_json(RESULTS, json.loads(json.dumps(results, default=str)))
        print(json.dumps({k: v for k, v in out.items() if k != "candidates"}, indent=1, default=str))


if __name__ == "__main__":
    main()
