"""Fuzz every reader of user-supplied files; write ``bench/results/fuzz.json``.

Usage: ``python bench/fuzz.py [--n 100000] [--budget-s 1800] [--only slim idx ...]``

Each format gets ``--n`` mutated inputs (see ``tests/reliability/fuzz_harness.py`` for
the seeds and mutation strategies), run in sequence in this process. A format that
cannot reach ``--n`` inside its share of ``--budget-s`` records the count it reached.
Recorded per format: inputs, successes, the error-type histogram (documented errors by
name, anything else as ``CRASH <type>``), crash samples (hex of the input), the
slowest input and every input over 1 s. Peak RSS comes from ``resource.getrusage``.
Not run in CI; ``tests/reliability/test_fuzz_readers.py`` runs a few hundred per format.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from slimtorch.measure import environment  # noqa: E402
from tests.reliability.fuzz_harness import fuzz, targets  # noqa: E402


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="inputs per format")
    ap.add_argument("--budget-s", type=float, default=1800.0, help="total seconds, shared equally by formats")
    ap.add_argument("--only", nargs="*", help="format names (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fuzz.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # k-means/empty-layer warnings on mutated files are expected
    all_targets = targets()
    names = args.only or list(all_targets)
    pool = [s for t in all_targets.values() for s in t.seeds]
    out_path = Path(args.out)
    previous = json.loads(out_path.read_text()) if out_path.exists() and args.only else {}
    results = previous.get("formats", {})
    per_format = args.budget_s / len(names)
    for name in names:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            o = fuzz(all_targets[name], args.n, seed=args.seed, others=pool, tmp=Path(tmp), budget_s=per_format)
        wall = time.perf_counter() - t0
        crashes = sum(v for k, v in o.errors.items() if k.startswith("CRASH"))
        results[name] = {
            "inputs": o.inputs,
            "target_inputs": args.n,
            "reached_target": o.inputs >= args.n,
            "ok": o.ok,
            "errors": dict(sorted(o.errors.items())),
            "crashes": crashes,
            "crash_samples": o.crashes[:10],
            "hangs_over_1s": len(o.slow),
            "slow_samples": o.slow[:5],
            "slowest_input_s": round(o.slowest_s, 4),
            "wall_s": round(wall, 1),
            "inputs_per_s": round(o.inputs / wall, 1),
            "peak_rss_mib_so_far": round(_rss_mib(), 1),
        }
        print(
            f"{name}: {o.inputs} inputs, {crashes} crashes, {len(o.slow)} over 1 s, slowest {o.slowest_s:.3f} s, "
            f"{o.errors}, {wall:.0f} s, peak RSS {_rss_mib():.0f} MiB",
            flush=True,
        )
        summary = {
            "benchmark": "fuzz",
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
            "formats": results,
            "total_inputs": sum(r["inputs"] for r in results.values()),
            "total_crashes": sum(r["crashes"] for r in results.values()),
            "total_hangs_over_1s": sum(r["hangs_over_1s"] for r in results.values()),
            "slowest_input_s": max(r["slowest_input_s"] for r in results.values()),
            "peak_rss_mib": round(max(_rss_mib(), previous.get("peak_rss_mib", 0.0)), 1),
            "environment": environment(),
        }
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(summary, indent=2) + "\n")  # after every format: partial runs survive


if __name__ == "__main__":
    main()
