"""The search's report: every candidate as a record, the Pareto front plotted, the chosen point marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimtorch.core.fileio import atomic_write_json

CHOSEN = " [chosen]"


def records(state: dict[str, Any], chosen: int | None) -> list[dict[str, Any]]:
    """``original`` first (the ratio column is relative to it), then the candidates in search order."""
    out = [dict(state["original"])]
    for i, e in enumerate(state["candidates"]):
        r = {k: v for k, v in e.items() if k not in ("key",)}
        if i == chosen:
            r["name"] = e["name"] + CHOSEN
        out.append(r)
    return out


def write_auto_report(out: Path, state: dict[str, Any], chosen: int | None) -> dict[str, Path]:
    """``results.json`` plus ``report.html/md/json`` via :func:`slimtorch.report.write_report`."""
    from slimtorch.report import write_report

    cfg = state["config"]
    results = {
        "recipe": f"auto ({cfg['target']}, max drop {cfg['max_drop']} pp)",
        "description": state.get("message", ""),
        "records": records(state, chosen),
        "stages": {"sensitivity": {"sensitivity": state["sensitivity"]}} if state.get("sensitivity") else {},
        "environment": state.get("environment"),
        "auto": {k: state.get(k) for k in ("baseline", "metric", "best", "stopped", "message", "elapsed_s")},
    }
    atomic_write_json(out / "results.json", results)
    return write_report(out, results)
