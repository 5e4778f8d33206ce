"""Where an ONNX model's time goes in ONNX Runtime: per-operator profiles, grouped by what the time buys.

A speed-up target for INT8 is only worth chasing once it is known which operators eat the
time: integer kernels (the part INT8 is for), the QuantizeLinear / DequantizeLinear pairs
around float islands, float layers kept by the fallback, depthwise convs (memory-bound, so
INT8 helps them little), layout changes (ORT runs its int8 convs channels-last and wraps
them in Transposes; its fp32 convs run in NCHWc blocks behind Reorder nodes) and the rest.

:func:`profile_onnx` runs the file in a session built exactly like
:func:`slimtorch.export.onnx.ort_session` plus ``enable_profiling``, reads ORT's JSON trace
(one ``cat == "Node"`` event ``<node>_kernel_time`` per node per run, ``dur`` in µs, the
operator in ``args.op_name``; one ``model_run`` session event per run), drops the warm-up
runs and averages the rest. The names in the trace are those of the *optimized* graph (fused
``QLinearConv``, ``nchwc`` convs), so depthwise convs are tagged from that graph's node
attributes (``group > 1`` and one input channel per group), read from a second session that
saves its optimized graph: the profiled session itself saves nothing.

Time outside every kernel (the executor, allocation, the profiler's own fences) is its own
category, ``between_kernels``, so the categories add up to the measured run time.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# what each category means; the order is the order of the report
CATEGORIES = {
    "integer_kernels": "integer compute (QLinearConv, MatMulInteger, QGemm, DynamicQuantizeMatMul, QLinearAdd, ...), "
    "depthwise convs excluded",
    "depthwise_int8": "depthwise convs on integer kernels (QLinearConv / ConvInteger with one input channel per group)",
    "quantize_dequantize": "QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear (activations quantized at "
    "run time)",
    "float_compute": "float Conv / MatMul / Gemm (fused variants included), depthwise convs excluded",
    "depthwise_float": "depthwise convs in float",
    "layout": "layout and shape changes (Transpose, Reorder*, Reshape, Concat, Slice, ...)",
    "elementwise_other": "everything else (activations, Add / Mul, normalization, Softmax, pooling, Gather, ...)",
    "between_kernels": "run time outside every kernel (executor, allocation, profiler fences)",
}

_INTEGER = {
    "ConvInteger",
    "MatMulInteger",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
    "QGemm",
    "QAttention",
    "DynamicQuantizeLSTM",
    "QEmbedLayerNormalization",
    "QOrderedMatMul",
    "MatMulNBits",
    "QuickGelu_Int8",
}
_QDQ = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
_FLOAT = {
    "Conv",
    "FusedConv",
    "NhwcFusedConv",
    "ConvTranspose",
    "MatMul",
    "FusedMatMul",
    "Gemm",
    "FusedGemm",
    "Attention",
    "MultiHeadAttention",
    "LSTM",
    "GRU",
    "RNN",
    "Einsum",
}
_CONVS = {"Conv", "FusedConv", "NhwcFusedConv", "QLinearConv", "ConvInteger", "NhwcConv"}
_LAYOUT = {
    "Transpose",
    "Reshape",
    "ReorderInput",
    "ReorderOutput",
    "Concat",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Slice",
    "Split",
    "Expand",
    "Shape",
    "Identity",
    "Tile",
    "Pad",
    "DepthToSpace",
    "SpaceToDepth",
}


def _category(op: str, depthwise: bool) -> str:
    integer = op in _INTEGER or op.startswith("QLinear")
    if depthwise:
        return "depthwise_int8" if integer else "depthwise_float"
    if integer:
        return "integer_kernels"
    if op in _QDQ:
        return "quantize_dequantize"
    if op in _FLOAT:
        return "float_compute"
    if op in _LAYOUT:
        return "layout"
    return "elementwise_other"


def _session(path: Path, threads: int, **extra: Any):
    from slimtorch.export.onnx import ort_session, session_options

    so = session_options(threads)
    for k, v in extra.items():
        setattr(so, k, v)
    return ort_session(path, threads, options=so)


def depthwise_nodes(path: str | os.PathLike, threads: int = 1) -> set[str]:
    """Names of the depthwise convs (``group > 1``, one input channel per group) of the graph ONNX Runtime
    runs for ``path`` (after its optimizations), float and quantized."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="slimtorch_ortopt_") as tmp:
        opt = Path(tmp) / "optimized.onnx"
        _session(Path(path), threads, optimized_model_filepath=str(opt))
        proto = onnx.load(str(opt))
    dims = {i.name: list(i.dims) for i in proto.graph.initializer}
    out = set()
    for node in proto.graph.node:
        if node.op_type not in _CONVS:
            continue
        group = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "group"), 1)
        weight = node.input[3] if node.op_type == "QLinearConv" else node.input[1]
        shape = dims.get(weight)
        if group > 1 and (shape is None or len(shape) < 2 or shape[1] == 1):
            out.add(node.name)
    return out


def _feed(sess, inputs: Any) -> dict[str, np.ndarray]:
    if isinstance(inputs, Mapping):
        return {k: np.asarray(v) for k, v in inputs.items()}
    seq = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    arrays = [t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t) for t in seq]
    return {i.name: a for i, a in zip(sess.get_inputs(), arrays)}


def parse_trace(events: Sequence[dict], warmup: int, depthwise: set[str] | frozenset = frozenset()) -> dict[str, Any]:
    """Aggregate an ORT profile (the trace's event list): mean ms per run per category and per operator.

    Runs are the ``model_run`` session events in time order; the first ``warmup`` are dropped and
    each node event is assigned to the run whose span holds its start.
    """
    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"), key=lambda e: e["ts"]
    )[warmup:]
    if not runs:
        raise ValueError(f"the profile holds no run after the {warmup} warm-up run(s); profile more runs")
    spans = [(r["ts"], r["ts"] + r["dur"]) for r in runs]
    kernels = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    ops: dict[str, dict[str, Any]] = {}
    per_node: dict[str, list] = {}
    for e in kernels:
        if not any(a <= e["ts"] <= b for a, b in spans):
            continue  # a warm-up run's node
        node = e["name"][: -len("_kernel_time")]
        op = e.get("args", {}).get("op_name", "?")
        dw = node in depthwise
        label = f"{op} (depthwise)" if dw else op
        row = ops.setdefault(label, {"us": 0.0, "nodes": set(), "category": _category(op, dw)})
        row["us"] += e["dur"]
        row["nodes"].add(node)
        per_node.setdefault(node, [label, 0.0])[1] += e["dur"]
    n = len(runs)
    total_ms = sum(r["dur"] for r in runs) / n / 1e3
    cats = {c: {"ms": 0.0, "nodes": 0} for c in CATEGORIES}
    for row in ops.values():
        cats[row["category"]]["ms"] += row["us"] / n / 1e3
        cats[row["category"]]["nodes"] += len(row["nodes"])
    kernel_ms = sum(c["ms"] for c in cats.values())
    cats["between_kernels"]["ms"] = total_ms - kernel_ms

    def pct(ms: float) -> float:
        return 100 * ms / total_ms if total_ms else 0.0

    return {
        "runs": n,
        "total_ms": total_ms,
        "kernel_ms": kernel_ms,
        "categories": {c: {"ms": v["ms"], "pct": pct(v["ms"]), "nodes": v["nodes"]} for c, v in cats.items()},
        "ops": {
            k: {
                "ms": r["us"] / n / 1e3,
                "pct": pct(r["us"] / n / 1e3),
                "nodes": len(r["nodes"]),
                "category": r["category"],
            }
            for k, r in sorted(ops.items(), key=lambda kv: -kv[1]["us"])
        },
        "slowest_nodes": [
            {"node": k, "op": lab, "ms": us / n / 1e3, "pct": pct(us / n / 1e3)}
            for k, (lab, us) in sorted(per_node.items(), key=lambda kv: -kv[1][1])[:12]
        ],
    }


def profile_onnx(
    path: str | os.PathLike, inputs: Any, runs: int = 20, threads: int = 1, warmup: int = 3
) -> dict[str, Any]:
    """Per-operator ONNX Runtime profile of ``path`` on ``inputs``, averaged over ``runs`` runs.

    Args:
        path: an ``.onnx`` file.
        inputs: a tensor / array, a tuple of them (in the graph's input order) or a dict name → array.
        runs: profiled runs averaged (after ``warmup`` runs that are profiled too, then dropped).
        threads: intra-op threads of the session (as :func:`slimtorch.export.onnx.ort_session`).

    Returns:
        ``total_ms`` (mean ``model_run`` time), ``kernel_ms``, ``categories`` (:data:`CATEGORIES`
        → ``ms`` per run, ``pct`` of ``total_ms``, ``nodes``; they sum to ``total_ms``), ``ops`` (operator,
        ``"(depthwise)"`` appended for depthwise convs → ``ms``, ``pct``, ``nodes``, ``category``; slowest
        first), ``slowest_nodes`` and what was run (``runs``, ``warmup``, ``threads``, ``inputs`` shapes).
        The profiler adds a few µs per node, so totals read somewhat above unprofiled latency.

    Raises:
        ValueError: ``runs < 1`` or ``warmup < 0``.
    """
    import onnxruntime as ort

    if runs < 1 or warmup < 0:
        raise ValueError(f"profile_onnx needs runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="slimtorch_ortprof_") as tmp:
        sess = _session(path, threads, enable_profiling=True, profile_file_prefix=str(Path(tmp) / "profile"))
        feed = _feed(sess, inputs)
        for _ in range(warmup + runs):
            sess.run(None, feed)
        trace = Path(sess.end_profiling())
        try:
            events = json.loads(trace.read_text())
        finally:  # ORT honours the prefix's folder; should a build not, the file goes anyway
            trace.unlink(missing_ok=True)
        del sess
    out = parse_trace(events, warmup, depthwise_nodes(path, threads))
    return {
        **out,
        "warmup": warmup,
        "threads": threads,
        "onnxruntime": ort.__version__,
        "inputs": {k: list(v.shape) for k, v in feed.items()},
    }


def amdahl(profile: Mapping[str, Any], faster: Mapping[str, float], speedup: float = 1.0) -> float:
    """What ``speedup`` (this model's, over some baseline) becomes when categories of ``profile`` get faster.

    ``faster`` maps a category to the factor its time shrinks by (``math.inf``: removed). The other
    categories keep their share of ``profile["total_ms"]``: Amdahl's law, so the result is an upper bound
    for a change that only touches those categories.
    """
    cats = profile["categories"]
    unknown = set(faster) - set(cats)
    if unknown:
        raise ValueError(f"unknown profile categories {sorted(unknown)}; known: {', '.join(cats)}")
    left = sum(c["ms"] / faster.get(name, 1.0) for name, c in cats.items())
    return speedup * profile["total_ms"] / left
