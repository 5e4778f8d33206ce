"""Deep Compression (Han, Mao & Dally, ICLR 2016) on real MNIST, pushed further, measured on the decoded files.

For each network the recipe (``recipes/deep_compression_lenet300.yaml``,
``recipes/deep_compression_lenet5.yaml``) holds 5,000 of the 60,000 training digits
out as a validation split (``data.validation_size``). The bench

1. trains the dense network once (the recipe's ``train`` stage);
2. runs the rest of the recipe (prune with fine-tuning → k-means sharing of weights
   and biases with centroid fine-tuning → entropy coding → decode) from that model
   once per *candidate* (a few overrides of the recipe: sparsity, bits), each
   evaluated on the validation split only;
3. chooses, on validation, the smallest ``.slim`` file whose decoded validation
   error is within ``TOLERANCE_PP`` of the dense model's validation error (fixed
   before any run); if none is, the most accurate candidate;
4. reports the chosen file's test error (the 10,000 test digits, read once for the
   figure), its per-layer table (the paper's Tables 2 and 3) and the size waterfall
   (:func:`slimtorch.encode.waterfall.size_waterfall`: which step buys how much).

The compression ratio is dense fp32 size / size of the whole ``.slim`` file
(codebooks, indices, biases, header included). Decode throughput and load time of the
``.slim`` vs the dense safetensors file are measured in the same process.

Run: ``.venv/bin/python bench/deep_compression.py [lenet300|lenet5 ...]``
(LeNet-300-100 about 15 min, LeNet-5 about an hour, on 2 quiet cores).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "deep_compression.json"

PAPER = {
    "lenet300": {"dense_kb": 1070, "compressed_kb": 27, "ratio": 40, "error_dense": 1.64, "error_compressed": 1.58},
    "lenet5": {"dense_kb": 1720, "compressed_kb": 44, "ratio": 39, "error_dense": 0.80, "error_compressed": 0.74},
}
RECIPES = {"lenet300": "deep_compression_lenet300.yaml", "lenet5": "deep_compression_lenet5.yaml"}
# Accuracy the compressed file may lose on the validation split, fixed before the bench
# ran: a quarter of a point for LeNet-300-100, whose dense error (about 1 % with
# jitter) leaves that much room under the paper's 1.64 %, and 0.15 pp for LeNet-5,
# whose dense error (about 0.6 %) leaves less under the paper's 0.80 %. (Exploratory
# runs before the bench, on validation, showed the validation error of a pruned network
# moving 2-4 times as much as its test error, so a tenth of a point is within noise.)
TOLERANCE_PP = {"lenet300": 0.25, "lenet5": 0.15}
# Overrides of the recipe tried per network (stage 0 is the dense training, shared).
# LeNet-300-100's list was first run on a recipe without the distillation stage: no
# candidate met the rule then (validation errors 1.38-1.62 % against a 1.37 % budget;
# kept in the results as "earlier_run"); an exploratory run of "fc1 96 % pruned" with the
# distillation stage, on validation only, is what added the stage. LeNet-5's first list
# (recipe, 4-bit, fc1 98 %, fc1 93 % + conv2 88 %; no distillation) met no candidate
# either (validation 0.84-1.14 % against 0.77 %); the stage was added the same way, and
# the list cut to two for time.
CANDIDATES = {
    "lenet300": {
        "recipe": [],
        "weights 4-bit": ["stages.3.bits=4", "stages.3.per_layer.fc3=5"],
        "fc1 96 % pruned": ["stages.1.prune.sparsity=0.96"],
        "fc1 97 %, fc2 94 % pruned": ["stages.1.prune.sparsity=0.97", "stages.1.prune.per_layer.fc2=0.94"],
    },
    "lenet5": {
        "recipe": [],
        "fc1 98 % pruned": ["stages.1.prune.sparsity=0.98"],
    },
}


def _median_seconds(fn, runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _run(data: dict, out: Path, verbose: bool = True):
    from slimtorch.pipeline import recipe_from_dict, run_recipe

    return run_recipe(recipe_from_dict(data), out, force=True, verbose=verbose)


def _dense(base: dict, out: Path) -> tuple[dict, Path]:
    """Train the dense network (the recipe's first stage), or reuse the run of the same stage config.

    Training is deterministic for a given config, seed and thread count, so a finished run
    whose resolved recipe matches is the same model; it saves LeNet-5 about ten minutes.
    """
    import hashlib

    spec = {**base, "stages": base["stages"][:1]}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    stamp, results = out / "dense_config.sha256", out / "results.json"
    if stamp.is_file() and stamp.read_text() == digest and results.is_file() and (out / "model.safetensors").is_file():
        print(f"reusing the dense run in {out} (same stage config)", flush=True)
        return json.loads(results.read_text())["records"][-1], out / "model.safetensors"
    run = _run(spec, out)
    stamp.write_text(digest)
    return run.records[-1], run.out_dir / "model.safetensors"


def _error(rec: dict, key: str) -> float:
    return 100 * (1 - rec[key])


def run_one(key: str, out_root: Path) -> dict:
    import slimtorch
    from slimtorch.encode.format import unpack_state
    from slimtorch.encode.waterfall import size_waterfall
    from slimtorch.io import load_model, save_model
    from slimtorch.pipeline import apply_overrides

    # One intra-op thread by default: on a shared 2-core machine, 2 OpenMP threads per
    # process stall at every barrier; accuracy and sizes do not depend on it.
    threads = int(os.environ.get("BENCH_THREADS", "1"))
    base = yaml.safe_load((ROOT / "recipes" / RECIPES[key]).read_text())
    base["threads"] = threads
    t0 = time.perf_counter()
    dense, dense_file = _dense(base, out_root / key / "dense")
    candidates = []
    for name, overrides in CANDIDATES[key].items():
        data = apply_overrides(copy.deepcopy(base), overrides)
        data.update(
            model={"path": str(dense_file)}, stages=data["stages"][1:], name=f"{base['name']}_{len(candidates)}"
        )
        # quiet: the runner's progress lines show test accuracy, which must not steer anything
        res = _run(data, out_root / key / f"candidate{len(candidates)}", verbose=False)
        final = res.records[-1]
        slim = Path(res.info["encode"]["file"])
        print(
            f"{key} candidate {name!r}: {slim.stat().st_size} B, validation error "
            f"{_error(final, 'val_accuracy'):.2f} %",
            flush=True,
        )
        candidates.append(
            {
                "name": name,
                "overrides": overrides,
                "val_error_pct": _error(final, "val_accuracy"),
                "slim_bytes": slim.stat().st_size,
                "ratio": dense["dense_bytes"] / slim.stat().st_size,
                "_res": res,
                "_slim": slim,
            }
        )
    wall = time.perf_counter() - t0
    tolerance = TOLERANCE_PP[key]
    budget = _error(dense, "val_accuracy") + tolerance
    passing = [c for c in candidates if c["val_error_pct"] <= budget + 1e-9]
    chosen = (
        min(passing, key=lambda c: c["slim_bytes"]) if passing else min(candidates, key=lambda c: c["val_error_pct"])
    )
    res, slim = chosen["_res"], chosen["_slim"]
    final = res.records[-1]
    data = slim.read_bytes()
    dense_copy = save_model(load_model(dense_file), out_root / f"{key}_dense.safetensors", sparse=False)
    n_weights = sum(v.numel() for v in slimtorch.load(slim).state_dict().values())
    decode_s = _median_seconds(lambda: unpack_state(data))
    load_slim_s = _median_seconds(lambda: slimtorch.load(slim))
    load_dense_s = _median_seconds(lambda: slimtorch.load(dense_copy))
    dense_bytes = dense["dense_bytes"]
    return {
        "recipe": RECIPES[key],
        "recipe_sha256": _recipe_sha(key),
        "wall_seconds": wall,
        "splits": {
            "train": 60000 - base["data"]["validation_size"],
            "validation": base["data"]["validation_size"],
            "validation_seed": base["data"].get("validation_seed", 0),
            "test": 10000,
        },
        "selection": {
            "rule": f"smallest .slim with decoded validation error <= dense validation error + {tolerance} pp",
            "tolerance_pp": tolerance,
            "dense_val_error_pct": _error(dense, "val_accuracy"),
            "chosen": chosen["name"],
            "met": bool(passing),
            "candidates": [{k: v for k, v in c.items() if not k.startswith("_")} for c in candidates],
        },
        "error_dense_pct": _error(dense, "accuracy"),
        "error_decoded_pct": _error(final, "accuracy"),
        "val_error_decoded_pct": _error(final, "val_accuracy"),
        "stages": [
            {k: r.get(k) for k in ("name", "accuracy", "val_accuracy", "params", "nonzero", "size_bytes", "file_bytes")}
            for r in [dense, *res.records[1:]]
        ],
        "dense_bytes": dense_bytes,
        "slim_bytes": len(data),
        "ratio": dense_bytes / len(data),
        "weights_kept_pct": 100 * final["nonzero"] / final["params"],
        "layers": res.info["encode"]["layers"],
        "waterfall": size_waterfall(data),
        "decode_weights_per_second": n_weights / decode_s,
        "load_seconds": {"slim": load_slim_s, "dense_safetensors": load_dense_s},
        "paper": PAPER[key],
    }


def _recipe_sha(key: str) -> str:
    import hashlib

    return hashlib.sha256((ROOT / "recipes" / RECIPES[key]).read_bytes()).hexdigest()


def _earlier_runs(old: dict | None, new_sha: str, env: dict | None) -> list[dict]:
    """Keep what a run with a different recipe chose (validation figures only), newest last, at most 3."""
    if not old:
        return []
    runs = list(old.get("earlier_runs", []))
    if old.get("selection") and old.get("recipe_sha256") != new_sha:
        runs.append(
            {
                "recipe_sha256": old.get("recipe_sha256"),
                "chosen": old["selection"]["chosen"],
                "met": old["selection"]["met"],
                "ratio": old["ratio"],
                "dense_val_error_pct": old["selection"]["dense_val_error_pct"],
                "candidates": old["selection"]["candidates"],
                "generated_at": old.get("generated_at") or (env or {}).get("generated_at"),
            }
        )
    return runs[-3:]


def main(keys: list[str]) -> None:
    from slimtorch.core.fileio import atomic_write_json
    from slimtorch.measure.env import environment

    out_root = Path("/tmp/slimtorch_bench_dc")
    for key in keys:
        network = run_one(key, out_root)
        # re-read just before writing: another run may have added the other network meanwhile
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        network["earlier_runs"] = _earlier_runs(
            results.get("networks", {}).get(key), network["recipe_sha256"], results.get("environment")
        )
        network["generated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        results.setdefault("networks", {})[key] = network
        results["environment"] = environment()
        atomic_write_json(RESULTS, results)
        n = results["networks"][key]
        print(
            f"{key}: {n['dense_bytes'] / 1024:.0f} KB -> {n['slim_bytes'] / 1024:.1f} KB ({n['ratio']:.1f}x), "
            f"test error {n['error_dense_pct']:.2f}% -> {n['error_decoded_pct']:.2f}% "
            f"(chosen on validation: {n['selection']['chosen']}; "
            f"paper {PAPER[key]['ratio']}x, {PAPER[key]['error_dense']}% -> {PAPER[key]['error_compressed']}%)"
        )


if __name__ == "__main__":
    main(sys.argv[1:] or list(RECIPES))
