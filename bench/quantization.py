"""Quantization in simulation on real MNIST.

Part A, Deep Compression's second stage (Han et al. 2016) on LeNet-300-100:
train → prune to >= 92 % (iterative magnitude pruning) → k-means weight sharing
at 6 / 4 / 3 / 2 bits, with and without centroid fine-tuning, side by side; the
three initialisations at 3 bits; a mixed-precision choice from a sensitivity sweep.

Part B, uniform quantization on LeNet-5: post-training W8A8 (per-channel vs
per-tensor), W4 post-training with min-max / percentile / MSE clipping, W4A8 QAT
(straight-through estimator), W2A8 with LSQ; seed 001's formula and clipping as peers.

Writes bench/results/quantization.json (+ .png). Trained float / pruned models are
cached under --cache (default /tmp/slimtorch_quant_bench) so a rerun skips training.

    .venv/bin/python bench/quantization.py [--threads 2] [--fresh]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import Subset

from slimtorch.core.fileio import atomic_write_json
from slimtorch.core.seed import seed_everything, set_threads
from slimtorch.data import load_mnist
from slimtorch.io import fold, load_model, save_model
from slimtorch.measure.env import environment
from slimtorch.models import create_model
from slimtorch.prune import PruneConfig, prune_iterative, total_sparsity
from slimtorch.quantize import (
    ClipConfig,
    KMeansConfig,
    QuantConfig,
    clip_weights,
    kmeans_share,
    layer_report,
    quant_params,
    quantize_model,
    select_bits,
)
from slimtorch.train import OptimizerConfig, ScheduleConfig, TrainConfig, evaluate, fit

ROOT = Path(__file__).resolve().parent
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def err_pct(model, data) -> float:
    return round(100.0 * (1.0 - evaluate(model, data).accuracy), 3)


def train_cfg(epochs: int, lr: float, batch: int = 256, seed: int = 0, opt: str = "sgd") -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=batch, seed=seed, eval_every=0,
                       optimizer=OptimizerConfig(name=opt, lr=lr, momentum=0.9),
                       schedule=ScheduleConfig(name="cosine"))


def cached(path: Path, name: str, build, fresh: bool):
    if path.exists() and not fresh:
        log(f"loading cached {path}")
        return load_model(path, model=create_model(name))
    model = build()
    save_model(fold(model), path)
    return model


def compact_report(model) -> list[dict]:
    keys = ("layer", "kind", "weight_bits", "act_bits", "nonzero", "distinct_values", "sqnr_db")
    return [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if k in keys}
            for r in layer_report(model)]


# --------------------------------------------------------------------------- part A
def part_a(train, test, val, args) -> dict:
    cache = Path(args.cache)

    def build_float():
        seed_everything(0)
        m = create_model("lenet300_100")
        fit(m, train, train_cfg(args.mlp_epochs, 0.05), verbose=False)
        return m

    t = time.perf_counter()
    dense = cached(cache / "lenet300_100.safetensors", "lenet300_100", build_float, args.fresh)
    out: dict = {"float_error_pct": err_pct(dense, test), "float_train_s": round(time.perf_counter() - t, 1)}
    log(f"LeNet-300-100 float error {out['float_error_pct']}%")

    def build_pruned():
        m = copy.deepcopy(dense)
        rounds: list = []
        prune_iterative(m, PruneConfig(sparsity=args.sparsity, scope="global"), train,
                        train_cfg(args.prune_epochs, 0.01), steps=3, eval_data=None, verbose=False, log=rounds)
        return m

    pruned = cached(cache / f"lenet300_100_pruned{args.sparsity}.safetensors", "lenet300_100", build_pruned,
                    args.fresh)
    sp = total_sparsity(pruned)
    out["pruned"] = {"weight_sparsity": round(sp["weight_sparsity"], 4), "error_pct": err_pct(pruned, test),
                     "method": f"iterative global magnitude pruning, 3 rounds x {args.prune_epochs} epochs"}
    log(f"pruned sparsity {sp['weight_sparsity']:.4f} error {out['pruned']['error_pct']}%")

    rows = []
    # a centroid's gradient is the *sum* over its (hundreds of) member weights, so SGD at the
    # weights' lr overshoots; Adam's per-parameter normalisation makes one lr fit all clusters
    ft = train_cfg(args.kmeans_ft_epochs, 1e-4, opt="adam")
    for bits in (6, 5, 4, 3, 2):
        shared = kmeans_share(pruned, KMeansConfig(bits=bits, init="linear"))
        row = {"bits": bits, "error_pct": err_pct(shared, test)}
        if bits <= 4:
            t = time.perf_counter()
            fit(shared, train, ft, verbose=False)
            row["finetuned_error_pct"] = err_pct(shared, test)
            row["finetune_s"] = round(time.perf_counter() - t, 1)
        row["layers"] = compact_report(shared)
        rows.append(row)
        log(f"k-means {bits} bits: {row}")
    out["kmeans"] = rows
    out["kmeans_finetune"] = ft.to_dict()
    out["kmeans_init_3bit_no_ft"] = {
        init: err_pct(kmeans_share(pruned, KMeansConfig(bits=3, init=init, seed=0)), test)
        for init in ("linear", "density", "kmeans++")
    }
    log(f"inits: {out['kmeans_init_3bit_no_ft']}")
    mp = select_bits(pruned, KMeansConfig(bits=6), val, tolerance=0.001, bits_options=(6, 5, 4, 3, 2))
    chosen = kmeans_share(pruned, KMeansConfig(bits=6, per_layer=mp.per_layer))
    out["mixed_precision"] = {"tolerance_pp_on_validation": 0.1, "per_layer": mp.per_layer,
                              "val_error_pct": round(100 * (1 - mp.accuracy), 3),
                              "val_error_pruned_pct": round(100 * (1 - mp.baseline), 3),
                              "test_error_pct": err_pct(chosen, test),
                              "sensitivity_val_error_pct": {n: {b: round(100 * (1 - a), 3) for b, a in d.items()}
                                                            for n, d in mp.sensitivity.items()}}
    log(f"mixed precision: {out['mixed_precision']['per_layer']} test {out['mixed_precision']['test_error_pct']}%")
    return out


# --------------------------------------------------------------------------- part B
def part_b(train, test, calib, args) -> dict:
    cache = Path(args.cache)

    def build_float():
        seed_everything(0)
        m = create_model("lenet5")
        fit(m, train, train_cfg(args.lenet5_epochs, 0.05), verbose=False)
        return m

    t = time.perf_counter()
    base = cached(cache / "lenet5.safetensors", "lenet5", build_float, args.fresh)
    f_err = err_pct(base, test)
    out: dict = {"float_error_pct": f_err, "float_train_s": round(time.perf_counter() - t, 1), "ptq": {}}
    log(f"LeNet-5 float error {f_err}%")

    ptq = {
        "W8A8_per_channel_histogram": QuantConfig(weight_bits=8, act_bits=8, per_channel=True),
        "W8A8_per_tensor_minmax": QuantConfig(weight_bits=8, act_bits=8, per_channel=False, act_observer="minmax"),
        "W8A8_per_channel_moving_average": QuantConfig(weight_bits=8, act_bits=8, act_observer="moving_average"),
        "W8A8_per_channel_mse": QuantConfig(weight_bits=8, act_bits=8, act_observer="mse"),
        "W4_per_channel_minmax": QuantConfig(weight_bits=4, act_bits=None),
        "W4_per_channel_percentile": QuantConfig(weight_bits=4, act_bits=None, weight_range="percentile",
                                                 weight_percentile=99.9),
        "W4_per_channel_mse": QuantConfig(weight_bits=4, act_bits=None, weight_range="mse"),
        "W4_per_tensor_minmax": QuantConfig(weight_bits=4, act_bits=None, per_channel=False),
        "W4A8_per_channel_mse": QuantConfig(weight_bits=4, act_bits=8, weight_range="mse"),
        "W2A8_per_channel_mse": QuantConfig(weight_bits=2, act_bits=8, weight_range="mse"),
    }
    models = {}
    for name, cfg in ptq.items():
        models[name] = quantize_model(base, cfg, calib)
        e = err_pct(models[name], test)
        out["ptq"][name] = {"error_pct": e, "drop_pp": round(e - f_err, 3), "config": cfg.to_dict()}
        log(f"PTQ {name}: {e}%")
    out["ptq_W8A8_layers"] = compact_report(models["W8A8_per_channel_histogram"])
    out["ptq_W8A8_quant_params_conv1"] = {k: v for k, v in quant_params(models["W8A8_per_channel_histogram"])
                                          ["conv1"].items() if not isinstance(v, list)}

    qat = {}
    for name, start, epochs, lr in (
        ("W4A8_QAT_ste", "W4A8_per_channel_mse", args.qat_epochs, 0.01),
        ("W2A8_LSQ", None, args.lsq_epochs, 0.01),
    ):
        if start is not None:
            m = models[start]
        else:
            m = quantize_model(base, QuantConfig(weight_bits=2, act_bits=8, method="lsq", weight_range="mse"), calib)
            qat["W2A8_LSQ_before_training_error_pct"] = err_pct(m, test)
        t = time.perf_counter()
        cfg = train_cfg(epochs, lr)
        fit(m, train, cfg, verbose=False)
        e = err_pct(m, test)
        qat[name] = {"error_pct": e, "drop_pp": round(e - f_err, 3), "epochs": epochs, "lr": lr,
                     "train_s": round(time.perf_counter() - t, 1), "layers": compact_report(m)}
        log(f"QAT {name}: {e}%")
    out["qat"] = qat

    # peers from seed 001: its "quantization" formula and its clipping transform
    b = 8
    seed_q = copy.deepcopy(base)
    with torch.no_grad():
        zeroed, total = 0, 0
        for mod in seed_q.modules():
            if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
                mod.weight.copy_(torch.round(mod.weight / 2 ** (b - 1)) * 2 ** (b - 1))
                zeroed += int((mod.weight == 0).sum())
                total += mod.weight.numel()
    out["seed001_formula_8bit"] = {"formula": "round(w / 2^(b-1)) * 2^(b-1)", "error_pct": err_pct(seed_q, test),
                                   "weights_zeroed_fraction": round(zeroed / total, 4)}
    all_w = torch.cat([m.weight.detach().abs().flatten() for m in base.modules()
                       if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))])
    thr = float(all_w.kthvalue(int(0.99 * all_w.numel())).values)
    out["seed001_clipping_T_p99"] = {
        "threshold": round(thr, 5),
        "saturate_sign_T_error_pct": err_pct(clip_weights(base, ClipConfig(threshold=thr)), test),
        "literal_t_0_error_pct": err_pct(clip_weights(base, ClipConfig(threshold=thr, value=0.0)), test),
    }
    log(f"seed peers: {out['seed001_formula_8bit']} {out['seed001_clipping_T_p99']}")
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    A = res["lenet300_100"]
    bits = [r["bits"] for r in A["kmeans"]]
    a.plot(bits, [r["error_pct"] for r in A["kmeans"]], "o-", label="k-means, no fine-tuning")
    ft = [(r["bits"], r["finetuned_error_pct"]) for r in A["kmeans"] if "finetuned_error_pct" in r]
    a.plot([x for x, _ in ft], [y for _, y in ft], "s-", label="k-means + centroid fine-tuning")
    a.axhline(A["pruned"]["error_pct"], color="gray", ls="--", label=f"pruned {100 * A['pruned']['weight_sparsity']:.1f}% (float)")
    a.set_xlabel("bits per weight (codebook index)")
    a.set_ylabel("test error %")
    a.set_title("LeNet-300-100: prune + k-means sharing")
    a.legend()
    B = res["lenet5"]
    names = ["float"] + list(B["ptq"]) + list(k for k in B["qat"] if isinstance(B["qat"][k], dict))
    vals = [B["float_error_pct"]] + [v["error_pct"] for v in B["ptq"].values()] + [
        B["qat"][k]["error_pct"] for k in names[1 + len(B["ptq"]):]]
    b.barh(range(len(names)), vals, color=["gray"] + ["C0"] * len(B["ptq"]) + ["C1"] * (len(names) - 1 - len(B["ptq"])))
    b.set_yticks(range(len(names)), names, fontsize=7)
    b.set_xlabel("test error %")
    b.set_title("LeNet-5: PTQ (blue) and QAT/LSQ (orange)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", default="/tmp/slimtorch_quant_bench")
    p.add_argument("--fresh", action="store_true", help="retrain instead of using cached float / pruned models")
    p.add_argument("--sparsity", type=float, default=0.92)
    p.add_argument("--mlp-epochs", type=int, default=8)
    p.add_argument("--prune-epochs", type=int, default=2)
    p.add_argument("--kmeans-ft-epochs", type=int, default=1)
    p.add_argument("--lenet5-epochs", type=int, default=4)
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--lsq-epochs", type=int, default=2)
    p.add_argument("--lenet5-train", type=int, default=60_000 - 5_000,
                   help="training examples for LeNet-5 (float training, QAT, LSQ); fewer on a loaded machine")
    p.add_argument("--part", choices=["a", "b", "all"], default="all",
                   help="run one part and keep its result in --cache (parts can run in parallel); "
                        "'all' runs the parts not cached yet and writes the results file")
    p.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch everywhere: checks the script runs")
    p.add_argument("--out", default=str(ROOT / "results" / "quantization.json"))
    args = p.parse_args()
    set_threads(args.threads)
    train_full, test = load_mnist()
    # selection (mixed precision) uses a validation split that the models never train on
    train = Subset(train_full, range(55_000))
    val = Subset(train_full, range(55_000, 60_000))
    calib = Subset(train_full, range(2048))
    if args.smoke:
        args.lenet5_train = 2000
        train, val, test = Subset(train_full, range(2000)), Subset(train_full, range(55_000, 55_500)), Subset(test, range(500))
        for k in ("mlp_epochs", "prune_epochs", "kmeans_ft_epochs", "lenet5_epochs", "qat_epochs", "lsq_epochs"):
            setattr(args, k, 1)
    res = {"benchmark": "quantization", "command": " ".join(sys.argv), "args": vars(args),
           "data": {"train": len(train), "validation": len(val), "test": len(test), "calibration": len(calib)}}
    train5 = Subset(train_full, range(min(args.lenet5_train, len(train))))
    res["data"]["lenet5_train"] = len(train5)
    parts = {"a": ("lenet300_100", lambda: part_a(train, test, val, args)),
             "b": ("lenet5", lambda: part_b(train5, test, calib, args))}
    for key, (name, run) in parts.items():
        partial = Path(args.cache) / f"part_{key}{'_smoke' if args.smoke else ''}.json"
        if args.part in (key, "all"):
            if partial.exists() and args.part == "all" and not args.fresh:
                log(f"using cached part {key}: {partial}")
                res[name] = json.loads(partial.read_text())
            else:
                t = time.perf_counter()
                res[name] = run()
                res[name]["part_seconds"] = round(time.perf_counter() - t, 1)
                atomic_write_json(partial, res[name])
    if args.part != "all":
        log(f"part {args.part} done")
        return
    A, B = res["lenet300_100"], res["lenet5"]
    k6 = next(r for r in A["kmeans"] if r["bits"] == 6)
    res["checks"] = {
        "pruned_sparsity_ge_92pct": A["pruned"]["weight_sparsity"] >= 0.92,
        "kmeans6_error_le_pruned_plus_0.1pp": k6["error_pct"] <= A["pruned"]["error_pct"] + 0.1,
        "lenet5_W8A8_ptq_drop_le_0.1pp": B["ptq"]["W8A8_per_channel_histogram"]["drop_pp"] <= 0.1,
        "lenet5_W4A8_qat_drop_le_0.3pp": B["qat"]["W4A8_QAT_ste"]["drop_pp"] <= 0.3,
    }
    res["environment"] = environment()
    res["total_seconds"] = round(sum(res[n].get("part_seconds", 0) for n in ("lenet300_100", "lenet5")), 1)
    res["note"] = ("parts a and b may run as separate processes (--part); total_seconds sums their run times "
                   "(environment.loadavg says how busy the machine was)")
    out = Path(args.out)
    atomic_write_json(out, res)
    plot(res, out.with_suffix(".png"))
    log(f"wrote {out} checks={res['checks']}")
    print(json.dumps(res["checks"]))


if __name__ == "__main__":
    main()
