"""Write ``report.md``, ``report.html`` and ``report.json`` for a run folder from its ``results.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slimtorch.core.errors import FormatError
from slimtorch.core.fileio import atomic_write_json, atomic_write_text
from slimtorch.measure.table import columns, is_lm, markdown_table, rows
from slimtorch.report import plots
from slimtorch.report.html import render_html


def read_results(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"'{run_dir}' is not a finished slimtorch run (no results.json)")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path} is corrupt: {exc}") from None
    if not isinstance(results, dict) or "records" not in results:
        raise FormatError(f"{path} has no 'records'; it was not written by slimtorch")
    env = Path(run_dir) / "environment.json"
    if env.is_file() and "environment" not in results:
        results["environment"] = json.loads(env.read_text())
    return results


def _layer_table(results: dict[str, Any]) -> tuple[list[str], list[list[Any]]] | None:
    """The Deep Compression per-layer table, if an ``encode`` stage ran."""
    for info in results.get("stages", {}).values():
        layers = info.get("layers") if isinstance(info, dict) else None
        if layers and isinstance(layers, list) and layers and "#weights" in layers[0]:
            header = list(layers[0].keys())
            return header, [[_fmt(r.get(h)) for h in header] for r in layers]
    return None


def _warnings(results: dict[str, Any]) -> list[list[str]]:
    """``[stage, message]`` for every stage that reported a regression or a layer left as it was."""
    return [
        [stage, w]
        for stage, info in results.get("stages", {}).items()
        if isinstance(info, dict)
        for w in info.get("warnings", [])
    ]


def _note(results: dict[str, Any]) -> str:
    """What the stage table's size and speed columns mean for these records."""
    if is_lm(results["records"]):
        from slimtorch.measure.lm import LM_NOTE

        resumed = [
            f"{stage} (after block {info['resumed_after_block']})"
            for stage, info in results.get("stages", {}).items()
            if isinstance(info, dict) and "resumed_after_block" in info
        ]
        note = (
            f" Resumed calibration: {', '.join(resumed)}; its calib s counts only the blocks run after the resume."
            if resumed
            else ""
        )
        return LM_NOTE + _text_note(results) + note
    return (
        "Size: the stage's artifact if it wrote one, else the sparse-aware model file. Latency: median ms, "
        "eager PyTorch; each stage is timed right after it ran, so compare speed only via the side-by-side "
        "runs in `bench/`."
    )


def _text_note(results: dict[str, Any]) -> str:
    text = results.get("text") or {}
    if not text:
        return ""
    return (
        f" Text: {', '.join(text.get('sources', []))} (seed {text.get('seed')}); calibration "
        f"{text.get('calib_windows')} x {text.get('window')} tokens, test {text.get('test_tokens')} tokens "
        f"in windows of {text.get('window')} (stride {text.get('stride')}); disjoint: {text.get('disjoint')}."
    )


def _fmt(v: Any) -> Any:
    return f"{v:.3g}" if isinstance(v, float) else v


def _sensitivity_curves(results: dict[str, Any]) -> dict[str, list]:
    for info in results.get("stages", {}).values():
        if isinstance(info, dict) and isinstance(info.get("sensitivity"), dict):
            return info["sensitivity"]
    return {}


def figures(results: dict[str, Any]) -> list[tuple[str, bytes]]:
    recs = results["records"]
    candidates = [
        ("accuracy vs size (Pareto front)", plots.tradeoff(recs, "size", "size (KB, log)")),
        ("accuracy vs latency, batch 1", plots.tradeoff(recs, "b1", "latency b1 (ms)", logx=False)),
        ("per-layer sparsity and index bits", plots.layer_bars(recs)),
        ("weight histograms, first vs last stage", plots.histograms(recs)),
        ("sensitivity", plots.sensitivity(_sensitivity_curves(results))),
    ]
    return [(c, png) for c, png in candidates if png]


def write_report(run_dir: str | Path, results: dict[str, Any] | None = None) -> dict[str, Path]:
    """(Re-)render the report files of ``run_dir``; returns their paths."""
    run_dir = Path(run_dir)
    results = results if results is not None else read_results(run_dir)
    layer_table = _layer_table(results)
    md = [f"# {results['recipe']}\n", markdown_table(results["records"]), "\n" + _note(results) + "\n"]
    warns = _warnings(results)
    if warns:
        md += ["\n## Warnings\n"] + [f"* **{stage}**: {w}" for stage, w in warns]
    if layer_table:
        header, body = layer_table
        md += ["\n## Compressed file, per layer\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    summary = {
        "recipe": results["recipe"],
        "columns": list(columns(results["records"])),
        "table": rows(results["records"]),
        "records": [{k: v for k, v in r.items() if k not in ("layers", "weights")} for r in results["records"]],
        "warnings": [{"stage": stage, "message": w} for stage, w in warns],
    }
    extra = [("Warnings", ["stage", "warning"], warns)] if warns else []
    extra += [("Compressed file, per layer", *layer_table)] if layer_table else []
    out = {
        "md": atomic_write_text(run_dir / "report.md", "\n".join(md) + "\n"),
        "json": atomic_write_json(run_dir / "report.json", summary),
        "html": atomic_write_text(run_dir / "report.html", render_html(results, figures(results), extra)),
    }
    return out


def compare_runs(run_a: str | Path, run_b: str | Path) -> str:
    """A Markdown table of the final records of two runs side by side, with B/A ratios."""
    a, b = read_results(run_a)["records"][-1], read_results(run_b)["records"][-1]

    def lat(r):
        return r.get("latency", {}).get("b1", {}).get("median_ms")

    metrics = (
        [("perplexity", a.get("perplexity"), b.get("perplexity"))] if "perplexity" in a or "perplexity" in b else []
    )
    metrics += [
        ("top-1 accuracy", a.get("accuracy"), b.get("accuracy")),
        ("parameters", a["params"], b["params"]),
        ("non-zeros", a["nonzero"], b["nonzero"]),
        ("MACs", a["macs"], b["macs"]),
        ("size (bytes)", a["size_bytes"], b["size_bytes"]),
        ("latency b1 (ms)", lat(a), lat(b)),
    ]
    lines = [f"| metric | {run_a} | {run_b} | B/A |", "|---|---|---|---|"]
    for name, va, vb in metrics:
        ratio = f"{vb / va:.3f}" if isinstance(va, int | float) and isinstance(vb, int | float) and va else "-"
        lines.append(f"| {name} | {_fmt(va)} | {_fmt(vb)} | {ratio} |")
    return "\n".join(lines) + "\n"
