"""Human-readable tables of measurement records (rich in a terminal, Markdown in files)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

COLUMNS = ("stage", "top-1 %", "params", "non-zero", "MACs", "size", "ratio", "lat b1 ms", "lat b32 ms")
# Language models (records with kind "causal-lm", see slimtorch.measure.lm): perplexity instead of accuracy,
# calibration time instead of MACs and latency.
LM_COLUMNS = (
    "stage",
    "perplexity",
    "params",
    "non-zero",
    "decoder sparsity %",
    "size",
    "ratio",
    "calib s",
    "eval ms/window",
    "decode tok/s",
)


def is_lm(records: Sequence[dict[str, Any]]) -> bool:
    """Whether the records are of a causal language model (their table has the LM columns)."""
    return bool(records) and all(r.get("kind") == "causal-lm" for r in records)


def columns(records: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """The table header for ``records``: :data:`LM_COLUMNS` for language models, else :data:`COLUMNS`."""
    return LM_COLUMNS if is_lm(records) else COLUMNS


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _fmt_count(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1e9:
        return f"{n / 1e9:.2f}G"
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}K"
    return str(n)


def rows(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Table rows from record dicts (``MeasureRecord.to_dict``); ratio is vs the first record's dense size."""
    if not records:
        return []
    base = records[0]["dense_bytes"]
    if is_lm(records):
        return _lm_rows(records, base)
    out = []
    for r in records:
        lat = r.get("latency", {})
        acc = r.get("accuracy")
        out.append(
            [
                r["name"],
                f"{acc * 100:.2f}" if acc is not None else "-",
                _fmt_count(r["params"]),
                _fmt_count(r["nonzero"]),
                _fmt_count(r["macs"]),
                _fmt_bytes(r["size_bytes"]),
                f"{base / r['size_bytes']:.1f}x" if r["size_bytes"] else "-",
                f"{lat['b1']['median_ms']:.3f}" if "b1" in lat else "-",
                f"{lat['b32']['median_ms']:.3f}" if "b32" in lat else "-",
            ]
        )
    return out


def _lm_rows(records: Sequence[dict[str, Any]], base: int) -> list[list[str]]:
    out = []
    for r in records:
        ppl, calib, ms = r.get("perplexity"), r.get("calib_seconds"), r.get("eval_ms_per_window")
        sp = r.get("decoder_sparsity")
        out.append(
            [
                r["name"],
                f"{ppl:.3f}" if ppl is not None else "-",
                _fmt_count(r["params"]),
                _fmt_count(r["nonzero"]),
                f"{sp * 100:.1f}" if sp is not None else "-",
                _fmt_bytes(r["size_bytes"]),
                f"{base / r['size_bytes']:.1f}x" if r["size_bytes"] else "-",
                f"{calib:.1f}" if calib is not None else "-",
                f"{ms:.0f}" if ms is not None else "-",
                f"{r['decode_tokens_per_s']:.1f}" if r.get("decode_tokens_per_s") is not None else "-",
            ]
        )
    return out


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    cols = columns(records)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(records)]
    return "\n".join(lines) + "\n"


def print_table(records: Sequence[dict[str, Any]], title: str | None = None) -> None:
    """Print the stage table with rich (plain text when not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns(records):
        table.add_column(c, justify="left" if c == "stage" else "right")
    for r in rows(records):
        table.add_row(*r)
    Console(width=140).print(table)
