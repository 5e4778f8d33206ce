"""Int8 *storage* for layers that compute in float: weight-only INT8 after the fallback.

The accuracy-aware fallback keeps a layer float when quantizing its activations
costs too much fidelity; that says nothing about its weights. Rounding the
weights alone (s8, one scale per output row) is usually harmless, so such a
layer can still be stored as int8 and dequantized by a ``DequantizeLinear`` on
a constant, which ONNX Runtime folds once when the session loads: the file is
smaller, the computation is the float one.

Where it matters: an LSTM whose first layer sees a wide-range input (mel power
spectra) cannot quantize that input per tensor at run time, but its recurrent
weights ``R`` round fine (``bench/user_models.py``: 42 % -> 28 % of the fp32 file at
the same cosine); a GRU, which ONNX Runtime has no INT8 kernel for, is stored
int8 too. Each weight is tried on its own, largest first, and kept only if the
fidelity target still holds (the same greedy rule as the fallback).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RECURRENT = ("LSTM", "GRU", "RNN")


def candidates(proto, node_names: list[str]) -> list[tuple[str, int, int]]:
    """``(node name, input index, channel axis)`` of the float weights of ``node_names`` (largest first)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    out = []
    for node in proto.graph.node:
        if node.name not in node_names:
            continue
        if node.op_type in RECURRENT:
            slots = [(1, 1), (2, 1)]  # W, R: (directions, gates * hidden, in) -> one scale per gate row
        elif node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            slots = [(1, 0 if trans_b else 1)]
        elif node.op_type == "MatMul":
            slots = [(1, 1)]
        else:
            continue
        for k, axis in slots:
            name = node.input[k] if len(node.input) > k else ""
            init = inits.get(name)
            if init is None or init.data_type != 1 or (node.op_type == "MatMul" and len(init.dims) != 2):
                continue
            out.append((node.name, k, axis, int(numpy_helper.to_array(init).size)))
    return [(n, k, a) for n, k, a, _ in sorted(out, key=lambda c: -c[3])]


def store_int8(proto, node: str, k: int, axis: int) -> None:
    """Replace input ``k`` of ``node`` (a float initializer) by ``DequantizeLinear(int8, scale, 0)``, in place."""
    from onnx import helper, numpy_helper

    n = next(x for x in proto.graph.node if x.name == node)
    name = n.input[k]
    init = next(i for i in proto.graph.initializer if i.name == name)
    w = numpy_helper.to_array(init).astype(np.float32)
    reduce = tuple(d for d in range(w.ndim) if d != axis)
    scale = np.abs(w).max(axis=reduce) / 127.0
    scale[scale == 0] = 1.0
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    base = f"{name}__w8"
    proto.graph.initializer.remove(init)
    proto.graph.initializer.extend(
        [
            numpy_helper.from_array(q, base),
            numpy_helper.from_array(scale.astype(np.float32), base + "_scale"),
            numpy_helper.from_array(np.zeros(scale.shape, np.int8), base + "_zero"),
        ]
    )
    # the dequantized tensor keeps the initializer's name, so every consumer reads it unchanged
    proto.graph.node.insert(
        0,
        helper.make_node(
            "DequantizeLinear", [base, base + "_scale", base + "_zero"], [name], name=base + "_dequant", axis=axis
        ),
    )


def weight_only_int8(
    path: Path,
    nodes: list[str],
    evaluate: Callable[[Path], dict[str, Any]],
    ok: Callable[[dict[str, Any]], bool],
    modules: dict[str, str],
) -> tuple[Path, list[str], dict | None]:
    """Store the weights of the float ``nodes`` of ``path`` as int8 wherever ``ok(evaluate(...))`` still holds.

    Returns:
        ``(path of the result, "layer.W"-style names stored int8, metrics of the result or None if unchanged)``.
    """
    import onnx

    proto = onnx.load(str(path))
    trial_path = path.with_name(path.stem + "_w8try.onnx")
    kept, metrics = [], None
    for node, k, axis in candidates(proto, nodes):
        trial = onnx.ModelProto()
        trial.CopyFrom(proto)
        store_int8(trial, node, k, axis)
        onnx.save(trial, str(trial_path))
        m = evaluate(trial_path)
        if ok(m):
            proto, metrics = trial, m
            op = next(x.op_type for x in proto.graph.node if x.name == node)
            kept.append(f"{modules.get(node, node)}.{'WRB'[k - 1] if op in RECURRENT else 'weight'}")
    trial_path.unlink(missing_ok=True)
    if not kept:
        return path, [], None
    onnx.save(proto, str(path))
    return path, kept, metrics
