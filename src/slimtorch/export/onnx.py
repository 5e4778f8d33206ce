"""ONNX export that is checked: the file loads in ONNX Runtime and its outputs
are compared with PyTorch's (top-1 agreement for classifiers, max abs diff).

``torch.onnx.export`` (the ``torch.export``-based exporter) is used with a
dynamic batch dimension. Before exporting, every operator of the traced graph
is looked up in the exporter's registry so that an unsupported operator gives
one clear error naming it instead of a long exporter trace.

A model with recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``) goes through
the legacy TorchScript exporter instead: it keeps each layer as one ONNX
``LSTM`` / ``GRU`` / ``RNN`` node, which ONNX Runtime runs as a fused kernel and
its dynamic quantizer turns into ``DynamicQuantizeLSTM``; the ``torch.export``
exporter decomposes the recurrence into per-step matrix products.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimtorch.core.errors import UnsupportedModelError
from slimtorch.core.fileio import atomic_write_bytes
from slimtorch.core.quiet import log_level

Inputs = torch.Tensor | tuple[torch.Tensor, ...]


def as_tuple(x: Inputs) -> tuple[torch.Tensor, ...]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


@dataclass(frozen=True)
class Parity:
    """PyTorch vs ONNX Runtime on the same inputs."""

    max_abs_diff: float
    max_rel_diff: float
    top1_agreement: float | None  # None when the output is not (N, classes)
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        agree = "n/a" if self.top1_agreement is None else f"{100 * self.top1_agreement:.2f}%"
        return f"parity over {self.n} examples: max |diff| {self.max_abs_diff:.3g}, top-1 agreement {agree}"


@contextlib.contextmanager
def _quiet():
    """The exporter logs progress and torchvision warnings on every call; users see only errors."""
    with (
        log_level(logging.ERROR, "torch.onnx", "torch.export", "torch._export", "onnxscript"),
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        yield


def unsupported_ops(model: nn.Module, example_input: Inputs) -> list[str]:
    """Names of operators in ``model``'s traced graph that the ONNX exporter cannot translate."""
    from torch.onnx._internal.exporter import (
        _registration,  # the exporter's own op table
    )

    with _quiet():
        ep = torch.export.export(model, as_tuple(example_input), strict=False)
        ep = ep.run_decompositions()
        registry = _registration.ONNXRegistry.from_torchlib()
    missing = []
    for node in ep.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        if not registry.is_registered(node.target) and str(node.target) not in missing:
            missing.append(str(node.target))
    return missing


RECURRENT = (nn.LSTM, nn.GRU, nn.RNN)


def has_recurrent(model: nn.Module) -> bool:
    """Whether ``model`` holds an ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (exported by the legacy exporter)."""
    return any(isinstance(m, RECURRENT) for m in model.modules())


def _onnx_bytes(
    model: nn.Module, args: tuple[torch.Tensor, ...], opset: int, dynamic_batch: bool, input_names: list[str]
) -> bytes:
    if has_recurrent(model):
        return _legacy_onnx_bytes(model, args, opset, dynamic_batch, input_names)
    dyn = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=4096)
        dyn = tuple({0: batch} for _ in args)
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        f = Path(tmp) / "m.onnx"
        torch.onnx.export(
            model,
            args,
            f,
            input_names=input_names,
            output_names=["output"],
            opset_version=opset,
            dynamic_shapes=dyn,
            external_data=False,
            dynamo=True,
        )
        return f.read_bytes()


def _legacy_onnx_bytes(
    model: nn.Module, args: tuple[torch.Tensor, ...], opset: int, dynamic_batch: bool, input_names: list[str]
) -> bytes:
    """The TorchScript exporter (``dynamo=False``): recurrent layers stay single ONNX nodes."""
    axes = {n: {0: "batch"} for n in [*input_names, "output"]} if dynamic_batch else None
    with tempfile.TemporaryDirectory() as tmp, _quiet(), contextlib.redirect_stderr(io.StringIO()):
        f = Path(tmp) / "m.onnx"
        torch.onnx.export(
            model,
            args,
            f,
            input_names=input_names,
            output_names=["output"],
            opset_version=opset,
            dynamic_axes=axes,
            dynamo=False,
        )
        return f.read_bytes()


def export_onnx(
    model: nn.Module,
    example_input: Inputs,
    path: str | os.PathLike,
    opset: int = 18,
    dynamic_batch: bool = True,
    check: bool = True,
    check_inputs: Inputs | None = None,
    input_names: list[str] | None = None,
    verbose: bool = True,
) -> Parity | None:
    """Export ``model`` to an fp32 ONNX file and check it in ONNX Runtime.

    Args:
        model: any ``nn.Module`` (put in eval mode).
        example_input: a tensor or tuple of tensors with a batch dimension first.
        path: the ``.onnx`` file to write (atomically, weights inside the file).
        opset: ONNX opset.
        dynamic_batch: export the batch dimension as symbolic.
        check: run the file in ONNX Runtime on ``check_inputs`` (default: the
            example input) and print / return the parity.
        input_names: graph input names (default ``input`` or ``input_0``…).

    Returns:
        :class:`Parity` (or None when ``check`` is false).

    Raises:
        UnsupportedModelError: an operator has no ONNX translation; the message names it.
    """
    model = model.eval()
    args = as_tuple(example_input)
    names = input_names or (["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))])
    try:
        data = _onnx_bytes(model, args, opset, dynamic_batch, names)
    except Exception as exc:
        try:
            missing = unsupported_ops(model, args)
        except Exception:  # noqa: BLE001 - the model does not even trace
            missing = []
        if missing:
            raise UnsupportedModelError(
                f"cannot export to ONNX: no ONNX translation for operator(s) {', '.join(missing)}; "
                "replace them with supported ops or register a custom translation"
            ) from exc
        raise UnsupportedModelError(f"cannot export to ONNX: {type(exc).__name__}: {str(exc)[:500]}") from exc
    atomic_write_bytes(path, data)
    if not check:
        return None
    parity = check_parity(model, path, check_inputs if check_inputs is not None else args)
    if verbose:
        print(f"[slimtorch.export] {Path(path).name}: {parity}")
    return parity


def session_options(threads: int = 1):
    """The options of every slimtorch ONNX Runtime session: all graph optimizations, ``threads`` intra-op
    threads, sequential execution, warnings off (profiling adds to these, :mod:`slimtorch.measure.ort_profile`)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


def ort_session(path: str | os.PathLike, threads: int = 1, options=None):
    """An ONNX Runtime CPU session with :func:`session_options` (or ``options``, built from them)."""
    import onnxruntime as ort

    so = options if options is not None else session_options(threads)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_session(sess, inputs: Inputs) -> np.ndarray:
    feed = {i.name: t.detach().cpu().numpy() for i, t in zip(sess.get_inputs(), as_tuple(inputs))}
    return sess.run(None, feed)[0]


@torch.no_grad()
def check_parity(model: nn.Module, path: str | os.PathLike, inputs: Inputs) -> Parity:
    """Compare PyTorch outputs with ONNX Runtime's on ``inputs``."""
    sess = ort_session(path)
    ref = model.eval()(*as_tuple(inputs))
    ref = (ref[0] if isinstance(ref, (tuple, list)) else ref).float().numpy()
    got = run_session(sess, inputs)
    diff = np.abs(ref - got)
    rel = float(diff.max() / max(np.abs(ref).max(), 1e-12))
    top1 = float((ref.argmax(-1) == got.argmax(-1)).mean()) if ref.ndim == 2 and ref.shape[1] > 1 else None
    return Parity(float(diff.max()), rel, top1, int(ref.shape[0]))


def export_pt2(model: nn.Module, example_input: Inputs, path: str | os.PathLike, dynamic_batch: bool = True) -> Path:
    """Save a ``torch.export`` program (``.pt2``) that ``torch.export.load(path).module()`` runs."""
    args = as_tuple(example_input)
    dyn = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=4096)
        dyn = tuple({0: batch} for _ in args)
    with _quiet():
        ep = torch.export.export(model.eval(), args, dynamic_shapes=dyn, strict=False)
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    return atomic_write_bytes(path, buf.getvalue())


def onnx_module_names(path_or_proto: Any) -> dict[str, str]:
    """ONNX node name → the PyTorch module it came from (from the exporter's metadata)."""
    import onnx

    proto = path_or_proto if isinstance(path_or_proto, onnx.ModelProto) else onnx.load(str(path_or_proto))
    out = {}
    for node in proto.graph.node:
        for p in node.metadata_props:
            if p.key == "pkg.torch.onnx.name_scopes":
                scopes = json.loads(p.value.replace("'", '"'))
                if len(scopes) >= 2:
                    out[node.name] = scopes[-2]
        if node.name not in out and node.name.startswith("/") and node.name.count("/") >= 2:
            module = ".".join(node.name.split("/")[1:-1])  # legacy exporter: /lstm/LSTM -> lstm
            if node.op_type in ("LSTM", "GRU", "RNN"):
                # one node per layer of a stacked nn.LSTM: /lstm/LSTM, /lstm/LSTM_1, ...
                tail = node.name.rsplit("/", 1)[1]
                k = tail.rsplit("_", 1)[1] if "_" in tail and tail.rsplit("_", 1)[1].isdigit() else "0"
                module = f"{module}[layer {k}]"
            out[node.name] = module
    return out
