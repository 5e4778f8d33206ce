"""Per-layer compression table in the style of Deep Compression's Tables 2-3.

Han, Mao & Dally (ICLR 2016) report per layer: weights, weights kept after pruning
(P), bits per weight after quantization (P+Q) and after Huffman coding (P+Q+H), index
bits, and the compression rate against the dense float32 layer. This module reads
those figures from a ``.slim`` file's manifest (measured payload bytes, not estimates).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from slimtorch.encode.format import read_manifest

COLUMNS = (
    "layer",
    "#weights",
    "weights kept %",
    "weight bits (P+Q)",
    "weight bits (P+Q+H)",
    "index bits",
    "compress rate %",
    "ratio",
    "coding",
)


def _payload_bytes(entry: dict) -> int:
    import numpy as np

    return sum(np.dtype(dt).itemsize * n for _, dt, n in entry["layout"])


def compression_report(data: bytes | str | os.PathLike) -> list[dict]:
    """One row per tensor plus a final ``total`` row.

    Bits are per stored non-zero: ``weight bits (P+Q)`` is the fixed-width index
    ``ceil(log2 K)``; ``(P+Q+H)`` and ``index bits`` are the coded bits actually
    written (codebook excluded; it is in the byte totals; for quantized tensors,
    kind ``quant``, P+Q is the grid's bit width and P+Q+H the coded codes alone,
    scales and zeros being in the byte totals). ``compress rate %`` is
    payload bytes / dense float32 bytes; the total row uses the whole file's size,
    container and manifest included.

    Args:
        data: ``.slim`` bytes or a path to a ``.slim`` file.
    """
    raw = data if isinstance(data, bytes | bytearray) else Path(data).read_bytes()
    entries, _, _ = read_manifest(bytes(raw))
    rows = []
    for e in entries:
        numel = math.prod(e["shape"])
        nbytes = _payload_bytes(e)
        if e["kind"] == "shared":
            nnz, k = e["nnz"], e["codebook_size"]
            scheme = e["index"] + (str(e["bits"]) if e["index"] == "gap" else "")
            row = {
                "weights kept %": 100.0 * nnz / numel if numel else 0.0,
                "weight bits (P+Q)": float(max(1, math.ceil(math.log2(k)))) if k else 0.0,
                "weight bits (P+Q+H)": 8.0 * e["weight_bytes"] / nnz if nnz else 0.0,
                "index bits": 8.0 * e["index_bytes"] / nnz if nnz else 0.0,
                "coding": f"{scheme}+{e['weight_stream']['coder']}",
                "_nnz": nnz,
                "_wbits": 8 * e["weight_bytes"],
                "_ibits": 8 * e["index_bytes"],
                "_qbits": nnz * max(1, math.ceil(math.log2(k))) if k else 0,
            }
        elif e["kind"] == "quant":  # group-quantized codes: per non-zero weight, as for shared tensors
            nnz = e["nnz"]
            row = {
                "weights kept %": 100.0 * nnz / numel if numel else 0.0,
                "weight bits (P+Q)": float(e["bits"]),
                "weight bits (P+Q+H)": 8.0 * e["code_bytes"] / nnz if nnz else 0.0,
                "index bits": 8.0 * e["index_bytes"] / nnz if nnz else 0.0,
                "coding": f"{e['index']}+{e['code_stream']['coder']} g{e['group_size']}",
                "_nnz": nnz,
                "_wbits": 8 * (e["code_bytes"] + e["scale_bytes"] + e["zero_bytes"]),
                "_ibits": 8 * e["index_bytes"],
                "_qbits": nnz * e["bits"],
            }
        else:
            bits = 8 * nbytes / numel if numel else 0.0
            row = {
                "weights kept %": 100.0,
                "weight bits (P+Q)": bits,
                "weight bits (P+Q+H)": bits,
                "index bits": 0.0,
                "coding": f"raw-{e['stored']}",
                "_nnz": numel,
                "_wbits": 8 * nbytes,
                "_ibits": 0,
                "_qbits": 8 * nbytes,
            }
        dense = 4 * numel
        row.update(
            {
                "layer": e["name"],
                "#weights": numel,
                "_bytes": nbytes,
                "compress rate %": 100.0 * nbytes / dense if dense else 0.0,
                "ratio": dense / nbytes if nbytes else math.inf,
            }
        )
        rows.append(row)
    n = sum(r["#weights"] for r in rows)
    nnz = sum(r["_nnz"] for r in rows)
    total = {
        "layer": "total",
        "#weights": n,
        "weights kept %": 100.0 * nnz / n if n else 0.0,
        "weight bits (P+Q)": sum(r["_qbits"] for r in rows) / nnz if nnz else 0.0,
        "weight bits (P+Q+H)": sum(r["_wbits"] for r in rows) / nnz if nnz else 0.0,
        "index bits": sum(r["_ibits"] for r in rows) / nnz if nnz else 0.0,
        "compress rate %": 100.0 * len(raw) / (4 * n) if n else 0.0,
        "ratio": 4 * n / len(raw),
        "coding": f"file {len(raw)} B",
    }
    out = [{c: r[c] for c in COLUMNS} | {"bytes": r["_bytes"]} for r in rows]
    return out + [total | {"bytes": len(raw)}]


def _fmt(v) -> str:
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.2f}"
    return str(v)


def render_report(rows: list[dict], columns: tuple[str, ...] = COLUMNS + ("bytes",)) -> str:
    """Render rows from :func:`compression_report` as a markdown table (plain text friendly)."""
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = lambda vals: (
        "| " + " | ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths))) + " |"
    )  # noqa: E731
    sep = "|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(list(columns)), sep] + [line(r) for r in cells])
