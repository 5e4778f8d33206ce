"""SparseGPT 50 % on SmolLM2-135M: its settings compared on the SELECTION split only.

    python bench/llm_sparsegpt_select.py                 # every variant below
    python bench/llm_sparsegpt_select.py --variants ts_off,damp_0.001 --threads 1

``bench/llm.py``'s ``sparsegpt_50`` row missed the target of beating llmcompressor's
SparseGPT on the test split. Reading llmcompressor 0.14's implementation
(``modifiers/pruning/sparsegpt/sgpt_sparsify.py`` and ``pipelines/sequential``) next to
ours, the per-weight algorithm is the same (upper Cholesky factor of the damped inverse
Hessian, adaptive mask per 128 columns by ``w² / diag(H⁻¹)²``, lazy batch updates,
1 % damping, ``lm_head`` left dense, uniform 50 % per layer). What differs is the order
inside a decoder block: llmcompressor gathers every Linear's Hessian in one pass over
the *dense* block and prunes them all after it (each block is still calibrated on the
pruned earlier blocks' outputs), while ours is true-sequential (q/k/v, then o_proj on
the pruned q/k/v's outputs, ...). The variants here are that choice and the method's
two numbers (damping, mask block), each scored by perplexity on the selection windows
of ``bench/llm.py`` with its calibration windows — the test windows are never scored.

The ``refit`` variants keep the mask and re-solve the kept weights exactly
(``slimtorch.prune.refit``, Boža 2024), for SparseGPT's mask and for Wanda's
(``"method": "wanda"``), at two ridge strengths ``refit_damp``.
Writes ``bench/results/llm_sparsegpt_select.json`` (merged by variant).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results" / "llm_sparsegpt_select.json"

BASE = {"sparsity": 0.5}
VARIANTS: dict[str, dict] = {
    "default": {},  # true-sequential, damp 0.01, block 128 (the row's config)
    "ts_off": {"true_sequential": False},  # llmcompressor's order inside a block
    "damp_0.001": {"damp": 0.001},
    "damp_0.05": {"damp": 0.05},
    "block_64": {"block_size": 64},
    "block_576": {"block_size": 576},  # one mask over each layer's whole rows x 576 columns
    "damp_0.003": {"damp": 0.003},
    "damp_0.0003": {"damp": 0.0003},
    # the same settings, 4 sequences per forward instead of 8: only float32 summation orders change, so the
    # difference to its batch-8 twin is the noise any comparison of variants must exceed
    "default_b4": {"batch_size": 4},
    "damp_0.001_b4": {"damp": 0.001, "batch_size": 4},
    # exact refit of the kept weights once the mask is fixed (the mask: SparseGPT's at the chosen damping 0.003)
    "damp_0.003_refit": {"damp": 0.003, "refit": True},
    "damp_0.003_refit_0.001": {"damp": 0.003, "refit": True, "refit_damp": 0.001},
    "damp_0.003_refit_0.1": {"damp": 0.003, "refit": True, "refit_damp": 0.1},
    # Wanda's mask (|W|·‖X‖ per row, no OBS sweep), then the same refit
    "wanda_refit": {"method": "wanda", "refit": True},
    "wanda_refit_0.001": {"method": "wanda", "refit": True, "refit_damp": 0.001},
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", help="comma-separated (default: all)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    import torch

    from bench.llm import WINDOW, _git_commit, tokens
    from slimtorch.core.fileio import atomic_write_json
    from slimtorch.measure.env import environment
    from slimtorch.measure.perplexity import perplexity
    from slimtorch.models.llm import hf_directory, load_causal_lm
    from slimtorch.prune import prune_sparsegpt, prune_wanda

    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.variants.split(",") if args.variants else list(VARIANTS)
    info, calib, selection, _test = tokens()
    del _test  # never scored here
    for name in names:
        cfg = {**BASE, **VARIANTS[name]}
        method = cfg.pop("method", "sparsegpt")
        prune = prune_wanda if method == "wanda" else prune_sparsegpt
        model, _ = load_causal_lm(hf_directory())
        t0 = time.perf_counter()
        model = prune(model, cfg, calib, inplace=True)
        seconds = time.perf_counter() - t0
        sel = perplexity(model, selection, WINDOW, progress=False).perplexity
        row = {
            "method": method,
            "config": cfg,
            "selection_perplexity": round(sel, 3),
            "calib_seconds": round(seconds, 1),
            "threads": torch.get_num_threads(),
            "commit": _git_commit(),
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        print(f"[sparsegpt-select] {name}: selection perplexity {sel:.3f} ({seconds:.0f} s)", flush=True)
        current = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        current.setdefault("variants", {})[name] = row
        current.update(
            tokens={k: info[k] for k in ("window", "calib_windows", "selection_windows")},
            rule="lowest selection perplexity; the test split is not scored by this script",
            environment=environment(),
        )
        atomic_write_json(RESULTS, current)
        del model


if __name__ == "__main__":
    main()
