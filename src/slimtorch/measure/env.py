"""The environment a measurement was taken in, recorded beside every benchmark figure.

Beside versions and CPU features (VNNI decides whether INT8 pays on a CPU), it records
what makes a speed figure trustworthy or not: the thread settings, the load average when
the process started and when the record was taken (other work on a shared machine slows
every variant, unevenly), when it was generated and from which commit.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import torch

LOADED = 2.0  # a 1-minute load average above this on the machine: speed figures are suspect


def loaded(start: list[float] | None, now: list[float] | None, threads: int, cores: int | None = None) -> bool:
    """Whether speed figures were taken on a busy machine.

    Busy: at the start, other work already held half the cores (1-minute load average), or at
    the end the load exceeds what this process's own threads explain by more than :data:`LOADED`
    (a 2-thread benchmark alone brings a 2-core machine's load to about 2).
    """
    cores = cores or os.cpu_count() or 1
    return bool((start and start[0] > cores / 2) or (now and now[0] > LOADED + threads))


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# taken when the measuring process imports this module, which is before it measures anything
_PROCESS_START = {"at": _utc_now(), "loadavg": _loadavg()}


def provenance() -> dict:
    """The git commit of the source tree slimtorch runs from (None outside a checkout) and whether
    ``src/`` or ``bench/`` had uncommitted changes (the figures may come from code not in that commit)."""
    root = Path(__file__).resolve().parents[3]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = (git("rev-parse", "HEAD") or "").strip() or None
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src", "bench") if commit else None
    return {
        "commit": commit,
        "uncommitted_changes": None
        if dirty is None
        else sorted(line[3:] for line in dirty.splitlines() if line.strip()),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """Versions, threads, CPU, load average (process start and now), time and commit, as a JSON-able dict."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    flags = " ".join(
                        f
                        for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
                        if f in have
                    )
                    break
    except OSError:
        pass
    now = _loadavg()
    return {
        "generated_at": _utc_now(),
        **provenance(),
        "loadavg": {"process_start": _PROCESS_START["loadavg"], "process_started_at": _PROCESS_START["at"], "now": now},
        # speed figures taken under load are suspect: other work at the start, or more load at the end than this
        # process's own threads account for (a 2-thread benchmark alone brings a 2-core machine's load to ~2)
        "loaded_machine": loaded(_PROCESS_START["loadavg"], now, torch.get_num_threads()),
        "threads": {
            "torch": torch.get_num_threads(),
            "torch_interop": torch.get_num_interop_threads(),
            **{k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        },
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_flags": flags,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": {
            p: _version(p)
            for p in (
                "slimtorch",
                "torch",
                "numpy",
                "onnxruntime",
                "onnx",
                "torchao",
                "constriction",
                "safetensors",
                "transformers",
                "scikit-image",
            )
        },
    }
