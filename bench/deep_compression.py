"""Deep Compression (Han, Mao & Dally, ICLR 2016) reproduced on real MNIST, measured on the decoded files.

Runs ``recipes/deep_compression_lenet300.yaml`` and ``recipes/deep_compression_lenet5.yaml``
(train → iterative prune → k-means share + centroid fine-tune → entropy-code →
decode → evaluate the decoded model) and writes ``bench/results/deep_compression.json``:
our per-layer table (like the paper's Tables 2 and 3) and totals next to the paper's.
The compression ratio is dense fp32 size / size of the whole ``.slim`` file
(codebooks, indices, biases, header included). Decode throughput (restored weights
per second) and load time of the ``.slim`` vs the dense safetensors file are measured
in the same process.

Run: ``.venv/bin/python bench/deep_compression.py [lenet300|lenet5 ...]``
(about 10 min per network on 2 quiet cores).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "deep_compression.json"

PAPER = {
    "lenet300": {"dense_kb": 1070, "compressed_kb": 27, "ratio": 40, "error_dense": 1.64, "error_compressed": 1.58},
    "lenet5": {"dense_kb": 1720, "compressed_kb": 44, "ratio": 39, "error_dense": 0.80, "error_compressed": 0.74},
}
RECIPES = {"lenet300": "deep_compression_lenet300.yaml", "lenet5": "deep_compression_lenet5.yaml"}


def _median_seconds(fn, runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def run_one(key: str, out_root: Path) -> dict:
    import slimtorch
    from slimtorch.encode.format import unpack_state
    from slimtorch.io import load_model, save_model
    from slimtorch.pipeline import load_recipe, run_recipe

    # One intra-op thread by default: on a shared 2-core machine, 2 OpenMP threads per
    # process stall at every barrier; accuracy and sizes do not depend on it.
    threads = os.environ.get("BENCH_THREADS", "1")
    recipe = load_recipe(ROOT / "recipes" / RECIPES[key], [f"threads={threads}"])
    t0 = time.perf_counter()
    res = run_recipe(recipe, out_root / key, force=True, verbose=True)
    wall = time.perf_counter() - t0
    recs = {r["name"]: r for r in res.records}
    trained, final = recs["train"], res.records[-1]
    slim = Path(res.info["encode"]["file"])
    data = slim.read_bytes()
    dense_file = save_model(load_model(res.out_dir / "model.safetensors"), out_root / f"{key}_dense.safetensors", sparse=False)
    n_weights = sum(v.numel() for v in slimtorch.load(slim).state_dict().values())
    decode_s = _median_seconds(lambda: unpack_state(data))
    load_slim_s = _median_seconds(lambda: slimtorch.load(slim))
    load_dense_s = _median_seconds(lambda: slimtorch.load(dense_file))
    dense_bytes = trained["dense_bytes"]
    return {
        "recipe": RECIPES[key],
        "wall_seconds": wall,
        "error_dense_pct": 100 * (1 - trained["accuracy"]),
        "error_decoded_pct": 100 * (1 - final["accuracy"]),
        "stages": [
            {k: r.get(k) for k in ("name", "accuracy", "params", "nonzero", "size_bytes", "file_bytes")} for r in res.records
        ],
        "dense_bytes": dense_bytes,
        "slim_bytes": len(data),
        "ratio": dense_bytes / len(data),
        "weights_kept_pct": 100 * final["nonzero"] / final["params"],
        "layers": res.info["encode"]["layers"],
        "decode_weights_per_second": n_weights / decode_s,
        "load_seconds": {"slim": load_slim_s, "dense_safetensors": load_dense_s},
        "paper": PAPER[key],
    }


def main(keys: list[str]) -> None:
    from slimtorch.core.fileio import atomic_write_json
    from slimtorch.measure.env import environment

    out_root = Path("/tmp/slimtorch_bench_dc")
    for key in keys:
        network = run_one(key, out_root)
        # re-read just before writing: another run may have added the other network meanwhile
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        results.setdefault("networks", {})[key] = network
        results["environment"] = environment()
        atomic_write_json(RESULTS, results)
        n = results["networks"][key]
        print(f"{key}: {n['dense_bytes'] / 1024:.0f} KB -> {n['slim_bytes'] / 1024:.1f} KB ({n['ratio']:.1f}x), "
              f"error {n['error_dense_pct']:.2f}% -> {n['error_decoded_pct']:.2f}% "
              f"(paper {PAPER[key]['ratio']}x, {PAPER[key]['error_dense']}% -> {PAPER[key]['error_compressed']}%)")


if __name__ == "__main__":
    main(sys.argv[1:] or list(RECIPES))
