"""SmolLM2-135M deployed on ONNX Runtime: int4 / int8 MatMulNBits vs fp32, decode tokens/s, prefill, perplexity, size.

    python bench/llm_deploy.py                # the full run (GPTQ calibration, exports, perplexities, speed, peer)
    python bench/llm_deploy.py --quick        # RTN, one export candidate, 4 test windows, one round (smoke run)

One process, one run, so every figure in the ``deploy`` section of
``bench/results/llm.json`` comes from the same code and the same machine state:

1. The float32 model and part 1's GPTQ w4g128 (the ``gptq_w4g128`` row's config and
   calibration windows) are exported with :func:`slimtorch.deploy.lm.export_onnx`.
2. **Choices on the selection split**: the embedding / tied ``lm_head`` grid (bits,
   group) and the ``MatMulNBits`` accuracy level are chosen by perplexity on the
   selection windows: the smallest file, then the faster kernel, among candidates
   within ``SELECT_BUDGET`` of the exact export (float embedding, level 0).
3. **Figures on the test split**: perplexity of the chosen int4 file, of the exact
   export (which must equal part 1's GPTQ figure: same integers), of fp32 ONNX and int8.
4. **Speed**, batch 1, ``--threads`` intra-op threads for every runtime, interleaved
   rounds, median: greedy decode of ``--new-tokens`` after a ``--prompt-tokens`` prompt
   (decode tokens/s excludes the prefill step), and the latency of one
   ``--prefill-tokens`` forward. PyTorch fp32 ``generate`` (eager, KV cache) and the
   peer onnxruntime-genai (``bench/peers/genai_peer.py``: its model builder's fp32,
   int4 with fp32 ``lm_head``, int4 with quantized ``lm_head``) run in the same rounds.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results" / "llm.json"
SELECT_BUDGET = 0.5  # selection-perplexity points a smaller / faster export may cost over the exact one
EMBEDDING_CANDIDATES = [(8, 32, False), (8, 128, False), (4, 32, False), (4, 32, True), (4, 64, False)]
ACCURACY_LEVELS = [0, 4]


def _round(x: float, n: int = 3) -> float:
    return round(float(x), n)


def _perplexity(lm, stream, window: int) -> float:
    from slimtorch.measure.perplexity import perplexity

    return perplexity(lm.as_module(), stream, window, progress=False).perplexity


def _quantize(model, method: str, calib):
    from bench.llm import ROWS

    if method == "gptq":
        from slimtorch.quantize.gptq import quantize_gptq

        return quantize_gptq(model, ROWS["gptq_w4g128"][1], calib, inplace=True)
    from slimtorch.quantize.rtn import quantize_rtn

    return quantize_rtn(model, ROWS["rtn_w4g128"][1], inplace=True)


def choose_export(candidates: list[dict], reference: float, budget: float = SELECT_BUDGET) -> dict:
    """The smallest (then fastest-kernel) candidate whose selection perplexity is within ``budget`` of ``reference``."""
    ok = [c for c in candidates if c["selection_perplexity"] <= reference + budget]
    if not ok:
        return min(candidates, key=lambda c: c["selection_perplexity"])
    return min(ok, key=lambda c: (c["size_bytes"], -c["config"]["accuracy_level"], c["selection_perplexity"]))


def genai_runners(threads: int, test, window: int) -> tuple[dict, dict]:
    """The peer's three builds as speed runners, and its facts (build options, sizes, test perplexities)."""
    from bench.peers import genai_peer

    genai_peer.require_genai()
    windows = [test[i * window : (i + 1) * window] for i in range(test.numel() // window)]
    runners, info = {}, {"version": genai_peer.GENAI_VERSION, "builds": {}, "perplexity": {}, "size_bytes": {}}
    for kind in ("fp32", "int4", "int4_all"):
        facts = genai_peer.build(kind)
        name = f"genai_{kind}"
        print(f"[deploy] peer {name}: perplexity ...", flush=True)
        info["builds"][name] = {k: v for k, v in facts.items() if k != "ops"}
        info["size_bytes"][name] = facts["size_bytes"]
        info["perplexity"][name] = genai_peer.perplexity(facts["model_dir"], windows, threads=threads)["perplexity"]
        model = genai_peer.load_genai(facts["model_dir"], threads)

        def run(prompt, prefill, n, model=model, model_dir=facts["model_dir"]):
            d = genai_peer.decode_tokens_per_s(model_dir, prompt, n, threads, model=model)
            p = genai_peer.decode_tokens_per_s(model_dir, prefill, 2, threads, model=model)
            return {
                "decode_tokens_per_s": d["decode_tokens_per_s"],
                "prefill_ms": 1e3 * p["prefill_seconds"],
                "tokens": d["generated_ids"],
            }

        runners[name] = run
    return runners, info


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="RTN, 4 test windows, 1 round; results not written")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--prefill-tokens", type=int, default=512)
    ap.add_argument("--no-peer", action="store_true", help="skip onnxruntime-genai")
    ap.add_argument("--workdir", help="keep the exported models here (default: a temporary folder)")
    args = ap.parse_args(argv)

    import torch

    from bench.llm import WINDOW, _git_commit, _load_avg, tokens
    from slimtorch.deploy.lm import (
        LMExportConfig,
        OnnxCausalLM,
        export_onnx,
        onnx_size_bytes,
    )
    from slimtorch.deploy.lm.generate import speed_once
    from slimtorch.measure.env import environment
    from slimtorch.models.llm import hf_directory, load_causal_lm

    torch.set_num_threads(args.threads)
    load_before = _load_avg()
    test_windows = 4 if args.quick else 32
    info, calib, selection, test = tokens(test_windows)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="llm_deploy_"))
    work.mkdir(parents=True, exist_ok=True)
    method = "rtn" if args.quick else "gptq"
    res: dict = {
        "method": f"{method}_w4g128 (bench/llm.py row config)",
        "threads": args.threads,
        "select_budget": SELECT_BUDGET,
    }

    def export(model, name: str, **cfg) -> Path:
        path = work / name
        if not path.exists():
            export_onnx(model, path, LMExportConfig(**cfg))
        return path

    print("[deploy] fp32 export", flush=True)
    fp32_model, tok = load_causal_lm(hf_directory())
    fp32_dir = export(fp32_model, "fp32", embedding_bits=None, accuracy_level=0)
    res["fp32_size_bytes"] = onnx_size_bytes(fp32_dir)
    res["fp32_safetensors_bytes"] = sum(f.stat().st_size for f in hf_directory().glob("*.safetensors"))

    print(f"[deploy] {method} w4g128", flush=True)
    t0 = time.perf_counter()
    qmodel, _ = load_causal_lm(hf_directory())
    qmodel = _quantize(qmodel, method, calib)
    res["quantize_seconds"] = _round(time.perf_counter() - t0, 1)

    # ---- choose the embedding grid and kernel level on the selection split ----
    exact_dir = export(qmodel, "int4_exact", embedding_bits=None, accuracy_level=0)
    exact = OnnxCausalLM(exact_dir, threads=args.threads)
    reference = _perplexity(exact, selection, WINDOW)
    candidates = []
    for bits, group, float_zero in EMBEDDING_CANDIDATES[:1] if args.quick else EMBEDDING_CANDIDATES:
        for level in ACCURACY_LEVELS[-1:] if args.quick else ACCURACY_LEVELS:
            name = f"int4_e{bits}g{group}{'fz' if float_zero else ''}_a{level}"
            path = export(
                qmodel,
                name,
                embedding_bits=bits,
                embedding_group_size=group,
                accuracy_level=level,
                embedding_float_zero=float_zero,
            )
            p = _perplexity(OnnxCausalLM(path, threads=args.threads), selection, WINDOW)
            candidates.append(
                {
                    "name": name,
                    "config": {
                        "embedding_bits": bits,
                        "embedding_group_size": group,
                        "embedding_float_zero": float_zero,
                        "accuracy_level": level,
                    },
                    "size_bytes": onnx_size_bytes(path),
                    "selection_perplexity": _round(p),
                }
            )
            print(f"[deploy] {name}: selection perplexity {p:.3f}, {onnx_size_bytes(path) / 1e6:.1f} MB", flush=True)
    chosen = choose_export(candidates, reference)
    res.update(
        selection_reference_perplexity=_round(reference),
        candidates=candidates,
        chosen=chosen["name"],
        chosen_config=chosen["config"],
    )
    int4_dir = work / chosen["name"]

    print("[deploy] int8 export", flush=True)
    from slimtorch.quantize.rtn import quantize_rtn

    q8, _ = load_causal_lm(hf_directory())
    q8 = quantize_rtn(q8, {"grid": {"bits": 8, "group_size": 128}}, inplace=True)
    int8_dir = export(q8, "int8", embedding_bits=8, embedding_group_size=32, accuracy_level=4)
    del q8

    # ---- test-split figures (each file once) ----
    sessions = {
        "fp32": OnnxCausalLM(fp32_dir, threads=args.threads),
        "int4": OnnxCausalLM(int4_dir, threads=args.threads),
        "int8": OnnxCausalLM(int8_dir, threads=args.threads),
    }
    print("[deploy] test perplexities", flush=True)
    res["fp32_perplexity"] = _round(_perplexity(sessions["fp32"], test, WINDOW))
    res["int4_perplexity"] = _round(_perplexity(sessions["int4"], test, WINDOW))
    res["int4_exact_perplexity"] = _round(_perplexity(exact, test, WINDOW))
    res["int8_perplexity"] = _round(_perplexity(sessions["int8"], test, WINDOW))
    from slimtorch.measure.perplexity import perplexity

    res["pytorch_quantized_perplexity"] = _round(perplexity(qmodel, test, WINDOW, progress=False).perplexity)
    res["int4_size_bytes"] = onnx_size_bytes(int4_dir)
    res["int8_size_bytes"] = onnx_size_bytes(int8_dir)
    res["int4_size_fraction"] = _round(res["int4_size_bytes"] / res["fp32_size_bytes"], 4)
    del exact, qmodel

    # ---- speed: interleaved rounds, batch 1, same threads ----
    prompt = test[: args.prompt_tokens].tolist()
    prefill = test[: args.prefill_tokens].tolist()

    def onnx_runner(lm):
        return lambda prompt, prefill, n: speed_once(lm, prompt, prefill, n)

    def torch_runner(prompt, prefill, n):
        ids = torch.tensor([prompt])
        with torch.no_grad():
            t0 = time.perf_counter()
            out = fp32_model(ids, use_cache=True)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            gen = fp32_model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                do_sample=False,
                min_new_tokens=n,
                pad_token_id=tok.eos_token_id,
            )
            total = time.perf_counter() - t0
            t0 = time.perf_counter()
            fp32_model(torch.tensor([prefill]))
            pre = time.perf_counter() - t0
        del out
        # generate's time includes one prompt forward: subtract the measured one, leaving the n - 1 decode steps
        return {
            "decode_tokens_per_s": (n - 1) / max(total - first, 1e-9),
            "prefill_ms": 1e3 * pre,
            "tokens": gen[0, len(prompt) :].tolist(),
        }

    runners = {name: onnx_runner(lm) for name, lm in sessions.items()}
    runners["pytorch_fp32"] = torch_runner
    peer_info: dict = {}
    if not args.no_peer:
        try:
            if importlib.util.find_spec("onnxruntime_genai") is None:  # the peer installs into .venv, pinned
                subprocess.run(["bash", str(REPO / "bench" / "peers" / "setup_genai.sh")], check=True)
                importlib.invalidate_caches()
            peer_runners, peer_info = genai_runners(args.threads, test, WINDOW)
            runners.update(peer_runners)
        except Exception as exc:  # noqa: BLE001 - the peer is measured when it installs; a failure is recorded
            peer_info = {"error": f"{type(exc).__name__}: {exc}"}
    rounds = 1 if args.quick else args.rounds
    samples: dict[str, list[dict]] = {k: [] for k in runners}
    for r in range(rounds):
        for name, run in runners.items():
            one = run(prompt, prefill, args.new_tokens)
            samples[name].append(one)
            print(
                f"[deploy] round {r} {name}: {one['decode_tokens_per_s']:.1f} tok/s, prefill "
                f"{one['prefill_ms']:.0f} ms",
                flush=True,
            )
    speed = {
        name: {
            "decode_tokens_per_s": [_round(s["decode_tokens_per_s"], 2) for s in v],
            "prefill_ms": [_round(s["prefill_ms"], 1) for s in v],
            "decode_tokens_per_s_median": _round(statistics.median(s["decode_tokens_per_s"] for s in v), 2),
            "prefill_ms_median": _round(statistics.median(s["prefill_ms"] for s in v), 1),
        }
        for name, v in samples.items()
    }
    greedy_match = {name: samples[name][0]["tokens"] == samples["fp32"][0]["tokens"] for name in samples}
    res.update(speed=speed, greedy_tokens_equal_fp32_onnx=greedy_match)
    res["fp32_tokens_per_s"] = speed["fp32"]["decode_tokens_per_s_median"]
    res["int4_tokens_per_s"] = speed["int4"]["decode_tokens_per_s_median"]
    res["int8_tokens_per_s"] = speed["int8"]["decode_tokens_per_s_median"]
    res["pytorch_fp32_tokens_per_s"] = speed["pytorch_fp32"]["decode_tokens_per_s_median"]
    res["prefill_ms_fp32"] = speed["fp32"]["prefill_ms_median"]
    res["prefill_ms_int4"] = speed["int4"]["prefill_ms_median"]
    res["prefill_ms_int8"] = speed["int8"]["prefill_ms_median"]
    res["int4_speedup_vs_fp32"] = _round(res["int4_tokens_per_s"] / res["fp32_tokens_per_s"], 2)
    res["peer"] = peer_info
    for key, name in (
        ("peer_genai_fp32", "genai_fp32"),
        ("peer_genai_int4", "genai_int4"),
        ("peer_genai_int4_all", "genai_int4_all"),
    ):
        if name in speed:
            res[f"{key}_tokens_per_s"] = speed[name]["decode_tokens_per_s_median"]
            res[f"{key}_prefill_ms"] = speed[name]["prefill_ms_median"]
        if name in peer_info.get("perplexity", {}):
            res[f"{key}_perplexity"] = peer_info["perplexity"][name]
        if name in peer_info.get("size_bytes", {}):
            res[f"{key}_size_bytes"] = peer_info["size_bytes"][name]
    res.update(
        tokens=info,
        prompt_tokens=args.prompt_tokens,
        new_tokens=args.new_tokens,
        prefill_tokens=args.prefill_tokens,
        rounds=rounds,
        batch=1,
        environment={**environment(), "torch_threads": torch.get_num_threads()},
        load_average_before=load_before,
        load_average_after=_load_avg(),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        commit=_git_commit(),
    )
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, (dict, list))}, indent=1), flush=True)
    if args.quick:
        return
    from slimtorch.core.fileio import atomic_write_json

    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results["deploy"] = res
    atomic_write_json(RESULTS, results)


if __name__ == "__main__":
    main()
