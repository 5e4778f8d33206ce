"""What the search keeps on disk: ``state.json`` (resume), ``pareto.json`` (the front so far), ``best.*``.

Every file is written atomically after every candidate, so killing the search at
any moment leaves a consistent folder: the candidates evaluated so far, the Pareto
set among them and the best model meeting the budget (or the closest one).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from slimtorch.core.errors import ConfigError, FormatError
from slimtorch.core.fileio import atomic_write_json
from slimtorch.report.plots import pareto_front

STATE_VERSION = 1


def objective(entry: dict[str, Any], target: str) -> float:
    """What the search minimises: bytes of the artifact, or median batch-1 latency (ms)."""
    if target == "size":
        return float(entry["size_bytes"])
    return float(entry["latency"]["b1"]["median_ms"])


def meets(entry: dict[str, Any], baseline: float, max_drop: float) -> bool:
    # a hair of slack so an accuracy equal to the bound is not lost to float rounding
    return entry["accuracy"] >= baseline - max_drop / 100 - 1e-9


def choose(entries: list[dict[str, Any]], target: str, baseline: float, max_drop: float) -> tuple[int | None, bool]:
    """Index of the best entry meeting the budget (smallest objective), else of the closest (most accurate)."""
    if not entries:
        return None, False
    ok = [i for i, e in enumerate(entries) if meets(e, baseline, max_drop)]
    if ok:
        return min(ok, key=lambda i: (objective(entries[i], target), -entries[i]["accuracy"], i)), True
    return max(range(len(entries)), key=lambda i: (entries[i]["accuracy"], -objective(entries[i], target), -i)), False


def front(entries: list[dict[str, Any]], target: str) -> list[int]:
    """Indices of the Pareto-optimal entries (smaller objective, higher accuracy), by objective."""
    return pareto_front([(objective(e, target), e["accuracy"]) for e in entries])


def load_state(out: Path, target: str) -> dict[str, Any] | None:
    path = out / "state.json"
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path} is corrupt ({exc}); start again with --force") from None
    if state.get("version") != STATE_VERSION:
        raise FormatError(f"{path} was written by another version of the search; start again with --force")
    if state["config"]["target"] != target:
        raise ConfigError(
            f"{out} holds a search with target '{state['config']['target']}', not '{target}'; "
            "resume with the same target or start a new folder",
            field="target",
        )
    return state


def save_state(out: Path, state: dict[str, Any]) -> None:
    atomic_write_json(out / "state.json", state)


def save_pareto(out: Path, state: dict[str, Any]) -> None:
    target, entries = state["config"]["target"], state["candidates"]
    idx = front(entries, target)
    atomic_write_json(
        out / "pareto.json",
        {
            "target": target,
            "objective": "size_bytes" if target == "size" else "latency b1 median_ms",
            "baseline": state["baseline"],
            "max_drop_pp": state["config"]["max_drop"],
            "front": [entries[i] for i in idx],
            "candidates": entries,
        },
    )


def promote(
    out: Path, entry: dict[str, Any], met: bool, message: str, state: dict[str, Any], model_for_load=None
) -> None:
    """Copy a candidate's artifacts to ``best.slim`` (+ ``best.onnx``), write ``best.safetensors`` and ``best.json``."""
    import slimtorch

    src = out / entry["files"]["slim"]
    shutil.copyfile(src, out / ".best.slim.tmp")
    (out / ".best.slim.tmp").replace(out / "best.slim")
    if entry["files"].get("onnx"):
        shutil.copyfile(out / entry["files"]["onnx"], out / ".best.onnx.tmp")
        (out / ".best.onnx.tmp").replace(out / "best.onnx")
    else:
        (out / "best.onnx").unlink(missing_ok=True)
    model = slimtorch.load(out / "best.slim", model_for_load)
    slimtorch.save(model, out / "best.safetensors")
    atomic_write_json(
        out / "best.json",
        {
            "met": met,
            "message": message,
            "target": state["config"]["target"],
            "baseline": state["baseline"],
            "metric": state["metric"],
            "max_drop_pp": state["config"]["max_drop"],
            "candidate": entry,
        },
    )
