"""Regenerate every results file in ``bench/results/`` with one command, then the docs from them.

    .venv/bin/python bench/run_all.py              # every benchmark, full size (hours on 2 cores)
    .venv/bin/python bench/run_all.py --quick      # smoke run of every script that has a small mode
    .venv/bin/python bench/run_all.py --only int8 auto

Each benchmark runs in its own process, one after another, under ``nice`` with one
intra-op thread where the script allows (speed figures from two benchmarks sharing 2
cores would be worth nothing), and writes its own results file with its environment
(``slimtorch.measure.environment``: CPU flags, threads, load average at process start and
at writing, versions, ``generated_at``, commit). ``bench/summarize.py`` then renders
``docs/results.md`` and the README's headline tables from the files.

``--quick`` never touches ``bench/results/``: it copies ``bench/``, ``recipes/``,
``docs/``, ``tests/``, ``examples/`` and ``README.md`` to a scratch folder (``--workdir``, default a temporary one)
and runs each script's small mode there, so its figures are checks that the scripts run,
not results. Scripts without a small mode are listed as skipped, with the reason.
``run_all.json`` in the results folder records what ran, its exit status and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (results file, full command, quick command or the reason there is none); order: cheap first
BENCHES: dict[str, tuple[str, list[str], list[str] | str]] = {
    "fuzz": ("fuzz.json", ["fuzz.py"], ["fuzz.py", "--n", "300", "--budget-s", "60"]),
    "int8": ("int8.json", ["int8.py"], ["int8.py", "--quick", "gemm", "minilm"]),
    "user_models": ("user_models.json", ["user_models.py"], ["user_models.py", "--quick"]),
    "distill": ("distill.json", ["distill.py"], ["distill.py", "--quick"]),
    "pruning": ("pruning.json", ["pruning.py"], ["pruning.py"]),  # PRUNING_BENCH_SMOKE=1 in quick mode
    "deep_compression": (
        "deep_compression.json",
        ["deep_compression.py"],
        "no small mode: it trains and retrains two networks to the paper's recipe (~20 min)",
    ),
    "structured": (
        "structured.json",
        ["structured.py"],
        "no small mode: trains LeNet-5 and times three models (~30 min)",
    ),
    "quantization": ("quantization.json", ["quantization.py"], "no small mode: trains and fine-tunes (~40 min)"),
    "auto": ("auto.json", ["auto.py", "lenet5", "--budget", "50m"], ["auto.py", "lenet5", "--quick"]),
    "distributed": ("distributed.json", ["distributed.py"], "no small mode: DDP training under torchrun"),
    "llm": (
        "llm.json",
        ["llm.py"],
        ["llm.py", "--quick", "--no-peers", "--rows", "fp32,rtn_w4g128", "--test-windows", "2"],
    ),
    "llm_sparsegpt_select": (
        "llm_sparsegpt_select.json",
        ["llm_sparsegpt_select.py"],
        "no small mode: eight SparseGPT runs on SmolLM2 scored on the selection split (~1 h)",
    ),
    # the deploy section of llm.json (installs the onnxruntime-genai peer into .venv when missing)
    "llm_deploy": ("llm.json", ["llm_deploy.py"], ["llm_deploy.py", "--quick", "--no-peer"]),
}
QUICK_ENV = {"pruning": {"PRUNING_BENCH_SMOKE": "1"}}
QUICK_OUT = {"pruning": Path("/tmp/pruning_bench_smoke/pruning.json")}  # where its smoke mode writes


def _scratch(workdir: Path) -> Path:
    """A copy of what the scripts read and write, so a smoke run cannot overwrite a result."""
    # tests: fuzz.py imports its harness from there; examples: user_models.py builds its model from there
    for part in ("bench", "recipes", "docs", "tests", "examples"):
        if (ROOT / part).is_dir():
            shutil.copytree(
                ROOT / part, workdir / part, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.png")
            )
    shutil.copy2(ROOT / "README.md", workdir / "README.md")
    return workdir


def run(names: list[str], quick: bool, workdir: Path | None, nice: int) -> dict:
    base = _scratch(workdir or Path(tempfile.mkdtemp(prefix="slimtorch_bench_quick_"))) if quick else ROOT
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    log = {
        "quick": quick,
        "root": str(base),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_start": os.getloadavg(),
        "benches": {},
    }
    for name in names:
        results, full, small = BENCHES[name]
        cmd = small if quick else full
        if isinstance(cmd, str):
            log["benches"][name] = {"skipped": cmd}
            print(f"[run_all] {name}: skipped ({cmd})", flush=True)
            continue
        argv = ["nice", "-n", str(nice), sys.executable, str(base / "bench" / cmd[0]), *cmd[1:]]
        print(f"[run_all] {name}: {' '.join(argv[3:])}", flush=True)
        t0 = time.time()
        rc = subprocess.call(argv, cwd=base, env={**env, **(QUICK_ENV.get(name, {}) if quick else {})})
        out = QUICK_OUT[name] if quick and name in QUICK_OUT else base / "bench" / "results" / results
        log["benches"][name] = {
            "command": argv[3:],
            "returncode": rc,
            "seconds": round(time.time() - t0, 1),
            "results": str(out),
            "written": out.is_file() and out.stat().st_mtime >= t0,
        }
        print(f"[run_all] {name}: exit {rc} after {time.time() - t0:.0f} s", flush=True)
    log["loadavg_end"] = os.getloadavg()
    subprocess.call([sys.executable, str(base / "bench" / "summarize.py")], cwd=base, env=env)
    (base / "bench" / "results" / "run_all.json").write_text(json.dumps(log, indent=1) + "\n")
    return log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run in a scratch copy (results untouched)")
    ap.add_argument("--only", nargs="*", choices=list(BENCHES), help="these benchmarks only")
    ap.add_argument("--workdir", type=Path, help="--quick: the scratch folder (default: a temporary one)")
    ap.add_argument("--nice", type=int, default=10)
    args = ap.parse_args(argv)
    log = run(args.only or list(BENCHES), args.quick, args.workdir, args.nice)
    failed = [k for k, v in log["benches"].items() if v.get("returncode")]
    print(
        f"[run_all] done: {len(log['benches'])} benchmarks, failed: {failed or 'none'}; log in "
        f"{log['root']}/bench/results/run_all.json",
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
