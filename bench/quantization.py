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
    return TrainConfig(
        epochs=epochs,
        batch_size=batch,
        seed=seed,
        eval_every=0,
        optimizer=OptimizerConfig(name=opt, lr=lr, momentum=0.9),
        schedule=ScheduleConfig(name="cosine"),
    )


def cached(path: Path, name: str, build, fresh: bool):
    if path.exists() and not fresh:
        log(f"loading cached {path}")
        return load_model(path, model=create_model(name))
    model = build()
    save_model(fold(model), path)
    return model


def compact_report(model) -> list[dict]:
    keys = ("layer", "kind", "weight_bits", "act_bits", "nonzero", "distinct_values", "sqnr_db")
    return [
        {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if k in keys}
        for r in layer_report(model)
    ]


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
        rounds: list = []
        return prune_iterative(
            dense,
            PruneConfig(sparsity=args.sparsity, scope="global"),
            train,
            train_cfg(args.prune_epochs, 0.01),
            steps=3,
            eval_data=None,
            verbose=False,
            log=rounds,
        )

    pruned = cached(cache / f"lenet300_100_pruned{args.sparsity}.safetensors", "lenet300_100", build_pruned, args.fresh)
    sp = total_sparsity(pruned)
    out["pruned"] = {
        "weight_sparsity": round(sp["weight_sparsity"], 4),
        "error_pct": err_pct(pruned, test),
        "method": f"iterative global magnitude pruning, 3 rounds x {args.prune_epochs} epochs",
    }
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
    out["mixed_precision"] = {
        "tolerance_pp_on_validation": 0.1,
        "per_layer": mp.per_layer,
        "val_error_pct": round(100 * (1 - mp.accuracy), 3),
        "val_error_pruned_pct": round(100 * (1 - mp.baseline), 3),
        "test_error_pct": err_pct(chosen, test),
        "sensitivity_val_error_pct": {
            n: {b: round(100 * (1 - a), 3) for b, a in d.items()} for n, d in mp.sensitivity.items()
        },
    }
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
        "W4_per_channel_percentile": QuantConfig(
            weight_bits=4, act_bits=None, weight_range="percentile", weight_percentile=99.9
        ),
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
    out["ptq_W8A8_quant_params_conv1"] = {
        k: v for k, v in quant_params(models["W8A8_per_channel_histogram"])["conv1"].items() if not isinstance(v, list)
    }

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
        qat[name] = {
            "error_pct": e,
            "drop_pp": round(e - f_err, 3),
            "epochs": epochs,
            "lr": lr,
            "train_s": round(time.perf_counter() - t, 1),
            "layers": compact_report(m),
        }
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
    out["seed001_formula_8bit"] = {
        "formula": "round(w / 2^(b-1)) * 2^(b-1)",
        "error_pct": err_pct(seed_q, test),
        "weights_zeroed_fraction": round(zeroed / total, 4),
    }
    all_w = torch.cat(
        [m.weight.detach().abs().flatten() for m in base.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    )
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
    a.axhline(
        A["pruned"]["error_pct"],
        color="gray",
        ls="--",
        label=f"pruned {100 * A['pruned']['weight_sparsity']:.1f}% (float)",
    )
    a.set_xlabel("bits per weight (codebook index)")
    a.set_ylabel("test error %")
    a.set_title("LeNet-300-100: prune + k-means sharing")
    a.legend()
    B = res["lenet5"]
    names = ["float"] + list(B["ptq"]) + list(k for k in B["qat"] if isinstance(B["qat"][k], dict))
    vals = (
        [B["float_error_pct"]]
        + [v["error_pct"] for v in B["ptq"].values()]
        + [B["qat"][k]["error_pct"] for k in names[1 + len(B["ptq"]) :]]
    )
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
    p.add_argument(
        "--lenet5-train",
        type=int,
        default=60_000 - 5_000,
        help="training examples for LeNet-5 (float training, QAT, LSQ); fewer on a loaded machine",
    )
    p.add_argument(
        "--part",
        choices=["a", "b", "all"],
        default="all",
        help="run one part and keep its result in --cache (parts can run in parallel); "
        "'all' runs the parts not cached yet and writes the results file",
    )
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
        train, val, test = (
            Subset(train_full, range(2000)),
            Subset(train_full, range(55_000, 55_500)),
            Subset(test, range(500)),
        )
        for k in ("mlp_epochs", "prune_epochs", "kmeans_ft_epochs", "lenet5_epochs", "qat_epochs", "lsq_epochs"):
            setattr(args, k, 1)
    res = {
        "benchmark": "quantization",
        "command": " ".join(sys.argv),
        "args": vars(args),
        "data": {"train": len(train), "validation": len(val), "test": len(test), "calibration": len(calib)},
    }
    train5 = Subset(train_full, range(min(args.lenet5_train, len(train))))
    res["data"]["lenet5_train"] = len(train5)
    parts = {
        "a": ("lenet300_100", lambda: part_a(train, test, val, args)),
        "b": ("lenet5", lambda: part_b(train5, test, calib, args)),
    }
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
    res["note"] = (
        "parts a and b may run as separate processes (--part); total_seconds sums their run times "
        "(environment.loadavg says how busy the machine was)"
    )
    out = Path(args.out)
    atomic_write_json(out, res)
    plot(res, out.with_suffix(".png"))
    log(f"wrote {out} checks={res['checks']}")
    print(json.dumps(res["checks"]))


PTQ_LABELS = {
    "W8A8_per_channel_histogram": "W8A8 per-channel, histogram observer (PTQ)",
    "W8A8_per_tensor_minmax": "W8A8 per-tensor, min-max observer (PTQ)",
    "W8A8_per_channel_moving_average": "W8A8 per-channel, moving-average observer (PTQ)",
    "W8A8_per_channel_mse": "W8A8 per-channel, MSE observer (PTQ)",
    "W4_per_channel_minmax": "W4 per-channel min-max (PTQ, float activations)",
    "W4_per_channel_percentile": "W4 per-channel percentile 99.9",
    "W4_per_channel_mse": "W4 per-channel MSE clipping",
    "W4_per_tensor_minmax": "W4 per-tensor min-max",
    "W4A8_per_channel_mse": "W4A8 per-channel MSE (PTQ)",
    "W2A8_per_channel_mse": "W2A8 per-channel MSE (PTQ)",
}


def render_markdown(res: dict) -> str:
    """The results section of docs/quantization.md, generated from quantization.json (no typed numbers)."""
    A, B, env, data = res["lenet300_100"], res["lenet5"], res["environment"], res["data"]
    out = [
        f"Figures from `bench/results/quantization.json` (plot: `bench/results/quantization.png`), generated "
        f"{env.get('generated_at', '?')} from {str(env.get('commit'))[:10]} by `python bench/quantization.py "
        f"{' '.join(res['command'].split()[1:])}`; {env['cpu']}, {res['args']['threads']} torch thread(s), torch "
        f"{env['versions']['torch']}. Data: {data['train']:,} training / {data['validation']:,} validation / "
        f"{data['test']:,} test MNIST images ({data['lenet5_train']:,} for LeNet-5); every choice (mixed precision) "
        "is made on validation.",
        "",
    ]
    k = {r["bits"]: r for r in A["kmeans"]}
    ft = A["kmeans_finetune"]
    out += [
        f"**LeNet-300-100, pruned to {100 * A['pruned']['weight_sparsity']:.1f} % ({A['pruned']['method']}) → "
        f"k-means sharing** (test error %, float {A['float_error_pct']:.2f} %, pruned float model "
        f"{A['pruned']['error_pct']:.2f} %; fine-tuning = {ft['epochs']} epoch of the centroids with "
        f"{ft['optimizer']['name']}, lr {ft['optimizer']['lr']:g}):",
        "",
        "| bits | k-means | + centroid fine-tuning |",
        "|---|---|---|",
    ]
    for b in sorted(k, reverse=True):
        f = k[b].get("finetuned_error_pct")
        out.append(f"| {b} | {k[b]['error_pct']:.2f} | {f'{f:.2f}' if f is not None else '–'} |")
    init = A["kmeans_init_3bit_no_ft"]
    best = min(init, key=init.get)
    mp = A["mixed_precision"]
    cost6 = k[6]["error_pct"] - A["pruned"]["error_pct"]
    out += [
        "",
        f"6-bit sharing costs {cost6:+.2f} pp (target ≤ 0.1 pp). Initialisation at 3 bits without fine-tuning: "
        + ", ".join(f"{n} {v:.2f}" for n, v in init.items())
        + f" — {best} best here "
        f"({'as' if best == 'linear' else 'where'} Han et al. found linear best).",
        f"`select_bits` with a {mp['tolerance_pp_on_validation']} pp tolerance on the validation split chose "
        + ", ".join(f"{n} {b} bits" for n, b in mp["per_layer"].items())
        + f" (validation {mp['val_error_pct']:.2f} % vs pruned {mp['val_error_pruned_pct']:.2f} %; test error "
        f"{mp['test_error_pct']:.2f} %; a 0.1 pp tolerance is {round(data['validation'] * 0.001)} validation images, "
        "so the choice is noisy).",
        "",
        f"**LeNet-5, uniform quantization** (float {B['float_error_pct']:.2f} %):",
        "",
        "| configuration | test error % | drop (pp) |",
        "|---|---|---|",
    ]
    for key, row in B["ptq"].items():
        out.append(f"| {PTQ_LABELS.get(key, key)} | {row['error_pct']:.2f} | {row['drop_pp']:+.2f} |")
    q, lsq = B["qat"]["W4A8_QAT_ste"], B["qat"]["W2A8_LSQ"]
    out.append(f"| W4A8 + QAT (STE, {q['epochs']} epoch) | {q['error_pct']:.2f} | {q['drop_pp']:+.2f} |")
    out.append(
        f"| W2A8 + LSQ ({lsq['epochs']} epochs; {B['qat']['W2A8_LSQ_before_training_error_pct']:.2f} before) "
        f"| {lsq['error_pct']:.2f} | {lsq['drop_pp']:+.2f} |"
    )
    sq = [r["sqnr_db"] for r in B["ptq_W8A8_layers"]]
    w4 = {key: B["ptq"][key]["error_pct"] for key in B["ptq"] if key.startswith("W4_")}
    out += [
        "",
        f"Per-layer SQNR of W8A8 weights: {min(sq):.0f}–{max(sq):.0f} dB. Best 4-bit post-training weight "
        f"choice in this run: {PTQ_LABELS[min(w4, key=w4.get)]}. A QAT row below the float error means the "
        "extra epoch also trained the baseline further.",
        "",
    ]
    f8, clip = B["seed001_formula_8bit"], B["seed001_clipping_T_p99"]
    out.append(
        f'**The request\'s formulas as written**: its 8-bit "quantization" `{f8["formula"]}` zeroes '
        f"{100 * f8['weights_zeroed_fraction']:.0f} % of LeNet-5's weights ({f8['error_pct']:.2f} % error). Its "
        f"clipping at T = the 99th percentile of |w| ({clip['threshold']:g}) gives "
        f"{clip['saturate_sign_T_error_pct']:.2f} % error with saturation (`t = sign(w)·T`) and "
        f"{clip['literal_t_0_error_pct']:.2f} % with a literal `t = 0`: a fixed threshold that ignores the "
        "quantization grid removes the weights that matter most; choose the clipping ratio by quantization "
        "error instead."
    )
    return "\n".join(out) + "\n"


def write_docs(res: dict) -> None:
    """Replace docs/quantization.md's results section (from its heading to the next ``## `` or the end)."""
    from slimtorch.core.fileio import atomic_write_text

    doc = ROOT.parent / "docs" / "quantization.md"
    text = doc.read_text()
    head = "## Results (bench/quantization.py, real MNIST)\n"
    a = text.index(head) + len(head)
    b = text.find("\n## ", a)
    tail = text[b:] if b >= 0 else ""
    atomic_write_text(doc, text[:a] + "\n" + render_markdown(res) + tail)


if __name__ == "__main__":
    if sys.argv[1:] == ["--render"]:
        print(render_markdown(json.loads((ROOT / "results" / "quantization.json").read_text())))
    elif sys.argv[1:] == ["--render", "--write"]:
        write_docs(json.loads((ROOT / "results" / "quantization.json").read_text()))
    else:
        main()
