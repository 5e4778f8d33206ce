"""A user's own recurrent model through dynamic INT8: an LSTM speaker encoder (Resemblyzer's shape).

The model is ``examples/my_models.py:SpeakerEncoder`` loaded the way a user's model
is (``model: {class: ..., weights: ...}``): a 3-layer LSTM over 40 mel channels,
hidden 256, Linear 256 -> 256, ReLU, L2-normalised embedding (1.4 M parameters).
Its weights are the public ``Resemblyzer==0.1.4`` wheel's ``pretrained.pt`` read
with ``torch.load(weights_only=True)`` when the wheel is installed
(``pip install --no-deps Resemblyzer==0.1.4``; nothing of it is imported),
random otherwise (recorded in ``lstm.weights``).

Inputs are random mel spectrograms of 160 frames (Resemblyzer's partial
utterance, 1.6 s): a log-mel field smooth in time and frequency
(natural-log mean -4, std 2 per bin), exponentiated to the mel *power* that
Resemblyzer feeds its encoder. Calibration / check inputs and the held-out
inputs on which fidelity is reported come from different seeds.

Variants, all timed interleaved (round-robin, median, 1 thread) at batch 1 and 32:
eager fp32, ONNX Runtime fp32, ONNX Runtime ``DynamicQuantizeLSTM`` (per-channel
weights, the accuracy-aware fallback and int8 storage of float-computed weights:
slimtorch's default), the same per tensor without fallback, and PyTorch's fbgemm
``quantize_dynamic`` (per tensor). Speed-ups are against the *fastest* fp32
runtime at each batch size. Writes ``bench/results/user_models.json``.

    .venv/bin/python bench/user_models.py [--quick]
"""

from __future__ import annotations

import atexit
import importlib.metadata
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slimtorch.core.fileio import atomic_write_json  # noqa: E402
from slimtorch.deploy import Int8Config, fidelity, time_variants, to_int8  # noqa: E402
from slimtorch.export.onnx import export_onnx, ort_session  # noqa: E402
from slimtorch.measure import environment  # noqa: E402
from slimtorch.models.user import UserModelSource, build_user_model  # noqa: E402

torch.set_num_threads(1)
QUICK = "--quick" in sys.argv
ROUNDS = {1: 15 if QUICK else 60, 32: 5 if QUICK else 20}
FRAMES, MELS = 160, 40
OUT = ROOT / "bench" / "results" / "user_models.json"
WORK = Path(tempfile.mkdtemp(prefix="user_models_bench_"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)  # scratch files; results go to the JSON
TARGETS = {"int8_size_ratio_max": 0.30, "speedup_min": 1.5, "cosine_min": 0.998}


def mels(n: int, seed: int, std: float = 2.0) -> torch.Tensor:
    """``(n, 160, 40)`` mel power: exp of a log-mel field smoothed over 9 frames x 5 bins (mean -4, std ``std``).

    std 2 nats is about 8.7 dB: speech mel power (Resemblyzer normalises to -30 dBFS) spreads
    over more than that across bins and frames, so this is a mild, not a harsh, input.
    """
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, FRAMES + 8, MELS + 4, generator=g)
    field = torch.nn.functional.conv2d(noise, torch.ones(1, 1, 9, 5))[:, 0]
    field = field / field.std()
    return torch.exp(-4.0 + std * field)


def input_sensitivity(model: torch.nn.Module) -> dict:
    """Held-out cosine of all-INT8 per-channel (no float layer) and of the fallback result, per input spread.

    The first LSTM's input is quantized per tensor at run time (u8, one scale per call): a
    wide dynamic range of mel power leaves most frames on a few grid steps. Layers 1-2 see
    bounded LSTM outputs and are not affected.
    """
    out = {}
    for std in (0.5, 1.0, 2.0):
        calib, held = mels(64, 1, std), mels(128, 2, std)
        with torch.inference_mode():
            ref = model(held)
        row = {}
        for name, extra in {"all_int8": {"max_float_layers": 0}, "with_fallback": {}}.items():
            cfg = {"mode": "dynamic", "target": {"min_agreement": None, "max_kl": None, "min_cosine": 0.998}, **extra}
            q = to_int8(model, Int8Config.from_dict(cfg), calib, out_dir=WORK / f"sens_{std}_{name}")
            row[name] = {
                "cosine_mean": fidelity(ref, q.runner((held,)))["cosine_mean"],
                "float_layers": q.float_layers,
                "size_bytes": q.size_bytes,
            }
        out[f"log_std_{std}"] = row
    return out


def resemblyzer_weights() -> str | None:
    try:
        files = importlib.metadata.files("Resemblyzer") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [f.locate() for f in files if f.name == "pretrained.pt"]
    return str(found[0]) if found else None


def load_encoder() -> tuple[torch.nn.Module, str]:
    weights = resemblyzer_weights()
    fields = {"class": "examples/my_models.py:SpeakerEncoder"}
    if weights:
        # pretrained.pt is {"step", "model_state", "optimizer_state"}; model_state also holds the
        # GE2E loss's similarity_weight / similarity_bias, which are not the encoder's
        fields.update(weights=weights, ignore_keys=["similarity_*"])
    torch.manual_seed(0)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        model = build_user_model(UserModelSource.from_dict(fields))
    finally:
        os.chdir(cwd)
    return model.eval(), ("Resemblyzer==0.1.4 pretrained.pt" if weights else "random (Resemblyzer not installed)")


def ort_fp32_runner(model: torch.nn.Module, x: torch.Tensor):
    path = WORK / "fp32.onnx"
    export_onnx(model, x[:2], path, check=False)
    sess = ort_session(path, 1)
    return (lambda b: torch.from_numpy(sess.run(None, {"input": b[0].numpy()})[0])), path.stat().st_size


def main() -> None:
    load_start = os.getloadavg()
    model, weights = load_encoder()
    calib, held_out = mels(64, seed=1), mels(256, seed=2)
    params = sum(p.numel() for p in model.parameters())

    @torch.inference_mode()
    def eager(b):
        return model(*b)

    ort_fp32, fp32_onnx_bytes = ort_fp32_runner(model, calib)
    target = {"min_agreement": None, "max_kl": None, "min_cosine": TARGETS["cosine_min"]}
    variants, sizes, infos = {}, {}, {}
    for name, cfg in {
        "ort_int8_per_channel": {"backend": "onnxruntime", "per_channel": True},
        "ort_int8_per_tensor": {"backend": "onnxruntime", "per_channel": False, "max_float_layers": 0},
        "torch_int8_fbgemm": {"backend": "torch_fx"},
    }.items():
        t0 = time.perf_counter()
        q = to_int8(
            model,
            Int8Config.from_dict({"mode": "dynamic", "target": target, **cfg}),
            calib,
            check_data=calib,
            out_dir=WORK / name,
        )
        variants[name], sizes[name] = q.runner, q.size_bytes
        infos[name] = {
            "float_layers": q.float_layers,
            "convert_s": round(time.perf_counter() - t0, 1),
            "fidelity_calib": q.info["fidelity_checked"],
        }

    ref = eager((held_out,))
    fid = {
        k: fidelity(ref, torch.cat([run((held_out[i : i + 32],)) for i in range(0, len(held_out), 32)]))
        for k, run in {"ort_fp32": ort_fp32, **variants}.items()
    }
    fp32_runs = {"torch_fp32": eager, "ort_fp32": ort_fp32}
    latency = {}
    for bs, rounds in ROUNDS.items():
        x = (held_out[:bs],)
        latency[f"b{bs}"] = time_variants({**fp32_runs, **variants}, x, rounds=rounds, warmup=3)
    fp32_state_bytes = params * 4

    def row(name: str) -> dict:
        out = {"size_bytes": sizes.get(name), "fidelity_held_out": fid.get(name), **infos.get(name, {})}
        out["latency_ms"] = {b: lat[name] for b, lat in latency.items()}
        return out

    main_variant = "ort_int8_per_channel"
    best_fp32 = {b: min(fp32_runs, key=lat.get) for b, lat in latency.items()}
    speedup = {b: latency[b][best_fp32[b]] / latency[b][main_variant] for b in latency}
    lstm = {
        "model": "examples/my_models.py:SpeakerEncoder (Resemblyzer VoiceEncoder shape)",
        "weights": weights,
        "params": params,
        "inputs": f"mel power exp(log-mel field), {FRAMES} frames x {MELS} mels; "
        "calib 64 (seed 1), held out 256 (seed 2)",
        "int8_variant": main_variant,
        "fp32_onnx_bytes": fp32_onnx_bytes,
        "fp32_state_bytes": fp32_state_bytes,
        "int8_bytes": sizes[main_variant],
        "int8_size_ratio": sizes[main_variant] / fp32_onnx_bytes,
        "fastest_fp32": best_fp32,
        "speedup_b1": speedup["b1"],
        "speedup_b32": speedup["b32"],
        "cosine_mean": fid[main_variant]["cosine_mean"],
        "cosine_min": fid[main_variant]["cosine_min"],
        "latency_ms": latency,
        "variants": {k: row(k) for k in ["torch_fp32", "ort_fp32", *variants]},
    }
    lstm["input_sensitivity"] = input_sensitivity(model)
    lstm["meets_targets"] = {
        "size": lstm["int8_size_ratio"] <= TARGETS["int8_size_ratio_max"],
        "speedup_b1": lstm["speedup_b1"] >= TARGETS["speedup_min"],
        "speedup_b32": lstm["speedup_b32"] >= TARGETS["speedup_min"],
        "cosine": lstm["cosine_mean"] >= TARGETS["cosine_min"],
    }
    load_end = os.getloadavg()
    result = {
        "lstm": lstm,
        "targets": TARGETS,
        "rounds": ROUNDS,
        "threads": 1,
        "environment": environment(),
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "load_note": (
            "machine busy during timing (1-min load average above 1.5 on 2 cores): latencies are noisier than usual"
            if max(load_start[0], load_end[0]) > 1.5
            else "machine quiet during timing"
        ),
    }
    atomic_write_json(OUT, result)
    print(
        f"lstm: size {lstm['int8_size_ratio']:.1%} of fp32, speed-up b1 {speedup['b1']:.2f}x / b32 "
        f"{speedup['b32']:.2f}x vs fastest fp32 ({best_fp32['b1']} / {best_fp32['b32']}), cosine "
        f"{lstm['cosine_mean']:.5f} (min {lstm['cosine_min']:.5f}); load {load_start[0]:.2f} -> {load_end[0]:.2f}"
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
