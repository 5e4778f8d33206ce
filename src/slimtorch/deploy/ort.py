"""ONNX Runtime INT8: static QDQ (calibrated activations) and dynamic (per-batch activations).

Static path, in order:
1. fold BatchNorm into convs (exact), cross-layer equalization, optionally
   AdaRound (Nagel et al. 2020: weights set on ORT's grid, rounded up or down
   to reconstruct each layer's output) and bias correction in PyTorch (Nagel et
   al. 2019) — the weights ORT quantizes are the equalized (and rounded) ones;
2. export the prepared float model with ``torch.onnx``;
3. calibrate activation ranges once on the user's data (our
   ``CalibrationDataReader``; ranges cached to a JSON file so the fallback
   re-quantizes without re-calibrating). We run ORT's calibrator ourselves
   because ``quantize_static`` does not pass histogram sizes through: its
   ``Entropy`` method then runs with 128 bins and 128 quantized bins, which
   leaves a single candidate threshold, the full range, so "entropy" silently
   equals MinMax. We use TensorRT's 2048 bins → 128 quantized bins
   (Migacz 2017), and keep ORT's progress prints off the user's screen;
4. ``quantize_static`` to QDQ, u8 activations, s8 per-channel weights;
5. accuracy-aware fallback (:mod:`slimtorch.deploy.fallback`).

Dynamic path: export, ``quantize_dynamic`` of MatMul/Gemm with per-channel s8
weights (u8 activations quantized on the fly), same fallback. ``nn.LSTM`` layers
are exported as ONNX ``LSTM`` nodes (:mod:`slimtorch.export.onnx`) and become
``DynamicQuantizeLSTM`` with per-channel weights: one scale per gate row. With
one scale per tensor the gates of a trained LSTM share a grid set by their
largest weight, and the error compounds over time steps (Resemblyzer's speaker
encoder: embedding cosine 0.98 per tensor, 0.9988 per channel on
``bench/user_models.py``'s inputs). ONNX Runtime has no INT8 ``GRU`` / ``RNN``
kernel: those layers stay float there (``info["float_recurrent"]``); the
``torch_fx`` backend's dynamic mode quantizes ``nn.GRU`` (per tensor). Embedding tables
(``Gather`` of a constant) are stored as int8 too when ``quantize_embeddings``:
in a BERT-style encoder they are about half of the parameters (all-MiniLM-L6-v2:
the word table is 11.7 M of 22.7 M) and cost no speed, since a lookup
dequantizes only the rows it reads.
"""

from __future__ import annotations

import contextlib
import glob
import io
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimtorch.core.progress import track
from slimtorch.core.quiet import log_level
from slimtorch.deploy.artifact import Int8Model, reference_outputs
from slimtorch.deploy.bias_correction import CORRECTED_TYPES, bias_correct
from slimtorch.deploy.cle import cross_layer_equalize
from slimtorch.deploy.config import OrtInt8Config, OrtStaticInt8Config
from slimtorch.deploy.fallback import accuracy_aware_fallback
from slimtorch.deploy.fidelity import fidelity
from slimtorch.deploy.fold import fold_conv_bn
from slimtorch.deploy.regions import activation_regions
from slimtorch.deploy.selection import ort_float_nodes
from slimtorch.export.onnx import as_tuple, export_onnx, onnx_module_names, ort_session

# "mse" collects the same signed histograms as "entropy"; the ranges are then ours (slimtorch.deploy.mse_ranges)
_CALIB = {
    "minmax": "MinMax",
    "percentile": "Percentile",
    "entropy": "Entropy",
    "distribution": "Distribution",
    "mse": "Entropy",
}


def exact_float(model: nn.Module, cfg: OrtInt8Config) -> nn.Module:
    """The exact steps of :func:`prepare_float` (BN folding, CLE): what a layer kept in float computes.

    Bias correction and AdaRound adjust a layer for the rounding of its *int8* weights; a layer
    the fallback keeps in float must not carry that adjustment (on MobileNetV2 the corrected
    biases of float-kept early layers cost more fidelity than floating them gained).
    """
    m = model
    static = cfg.mode == "static"  # bias correction and AdaRound are static-mode settings
    if cfg.fold_bn or cfg.cle or (static and (cfg.bias_correction or cfg.adaround)):
        m = fold_conv_bn(model)
    if cfg.cle:
        m = cross_layer_equalize(m, relu6=cfg.cle_relu6, inplace=True)
    return m


def prepare_float(
    model: nn.Module, cfg: OrtInt8Config, batches: list[tuple[torch.Tensor, ...]]
) -> tuple[nn.Module, dict]:
    """BN folding, CLE and bias correction as ``cfg`` asks; returns the float model to export and what changed."""
    info: dict[str, Any] = {}
    m = exact_float(model, cfg)
    rounded: list[str] = []
    if cfg.mode == "static" and cfg.adaround:
        m, info["adaround"] = _adaround(m, cfg, batches)
        rounded = list(info["adaround"]["per_layer"])
    # layers AdaRound rounded keep their weights; when it rounded all of them there is nothing to correct
    left = [n for n, mod in m.named_modules() if isinstance(mod, CORRECTED_TYPES) and n not in rounded]
    if cfg.mode == "static" and cfg.bias_correction and left:  # dynamic configs have no bias_correction
        m = bias_correct(
            m,
            batches,
            per_channel=cfg.per_channel,
            reduce_range=cfg.reduce_range,
            inplace=True,
            layers={"exclude": [glob.escape(n) for n in rounded]},
        )
    if cfg.mode == "dynamic" and cfg.smooth_alpha is not None:
        from slimtorch.deploy.smooth import smooth_linears

        m = smooth_linears(m, batches, cfg.smooth_alpha, inplace=m is not model)
    if m is not model:
        ref, new = reference_outputs(model, batches[:4]), reference_outputs(m, batches[:4])
        info["prepared_vs_original"] = fidelity(ref, new)
    return m.eval(), info


def _adaround(
    m: nn.Module, cfg: OrtStaticInt8Config, batches: list[tuple[torch.Tensor, ...]]
) -> tuple[nn.Module, dict]:
    """AdaRound every layer ORT will quantize; layers the selection leaves float keep their weights as they are."""
    from slimtorch.deploy.adaround import LAYER_TYPES, adaround_report

    names = [n for n, mod in m.named_modules() if isinstance(mod, LAYER_TYPES) and cfg.layers.picks(n)]
    return adaround_report(
        m,
        batches,
        per_channel=cfg.per_channel,
        reduce_range=cfg.reduce_range,
        iters=cfg.adaround_iters,
        inplace=True,
        layers={"include": [glob.escape(n) for n in names]},
    )


class _Reader:
    """ONNX Runtime ``CalibrationDataReader`` over our input batches (with a progress bar if ``progress``)."""

    def __init__(self, names: list[str], batches: list[tuple[torch.Tensor, ...]], progress: str | None = None):
        self.names, self.batches, self.progress = names, batches, progress
        self._items = None

    def get_next(self):
        if self._items is None:
            self._items = iter(track(self.batches, self.progress) if self.progress else self.batches)
        b = next(self._items, None)
        if b is None:
            return None
        return {n: t.detach().cpu().numpy() for n, t in zip(self.names, b)}

    def rewind(self):
        self._items = None

    def __len__(self):
        return len(self.batches)


def quantizable_nodes(path: Path, mode: str) -> list[str]:
    """Names of the nodes ORT would quantize (Conv/Gemm/MatMul with a constant weight)."""
    import onnx

    proto = onnx.load(str(path))
    inits = {i.name for i in proto.graph.initializer}
    ops = ("Conv", "Gemm", "MatMul") if mode == "static" else ("Gemm", "MatMul", "LSTM")
    return [n.name for n in proto.graph.node if n.op_type in ops and len(n.input) > 1 and n.input[1] in inits]


def graph_node_names(path: Path) -> list[str]:
    """Every node name of the graph (what a ``layers`` pattern may name besides a module)."""
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.name]


def float_recurrent(path: Path) -> list[str]:
    """ONNX ``GRU`` / ``RNN`` nodes: ONNX Runtime has no INT8 kernel for them, so they stay float."""
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in ("GRU", "RNN")]


def untie_initializers(path: Path) -> int:
    """Give every node its own copy of an initializer that several nodes read (tied weights); returns copies made.

    A tied embedding / output layer shares one table between a ``Gather`` and a
    ``MatMul``; ONNX Runtime's quantizer then quantizes it once, per channel along one
    node's axis, and the other node fails at run time. Untied, each is quantized for
    its own use (the file holds the table twice, as int8).
    """
    import onnx

    proto = onnx.load(str(path))
    inits = {i.name: i for i in proto.graph.initializer}
    users: dict[str, int] = {}
    copies = 0
    for node in proto.graph.node:
        for k, name in enumerate(node.input):
            if name not in inits or inits[name].data_type != onnx.TensorProto.FLOAT or len(inits[name].dims) < 2:
                continue
            users[name] = users.get(name, 0) + 1
            if users[name] > 1:
                dup = onnx.TensorProto()
                dup.CopyFrom(inits[name])
                dup.name = f"{name}__tied{users[name] - 1}"
                proto.graph.initializer.append(dup)
                node.input[k] = dup.name
                copies += 1
    if copies:
        onnx.save(proto, str(path))
    return copies


def _runner(path: Path, threads: int):
    sess = ort_session(path, threads)
    names = [i.name for i in sess.get_inputs()]

    def run(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        feed = {n: t.detach().cpu().numpy() for n, t in zip(names, inputs)}
        return torch.from_numpy(np.asarray(sess.run(None, feed)[0])).float()

    return run


def _calibrate(
    fp32: Path, cfg: OrtStaticInt8Config, names: list[str], calib: list[tuple[torch.Tensor, ...]], cache: Path
) -> None:
    """Activation ranges of every tensor ORT will quantize, written to ORT's calibration cache."""
    from onnxruntime import quantization as q
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    opts: dict[str, Any] = {}
    if cfg.calibration in ("entropy", "mse"):
        opts.update(num_bins=2048, num_quantized_bins=128)
    elif cfg.calibration == "percentile":
        opts.update(num_bins=2048, percentile=cfg.percentile)
    ops = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))  # what quantize_static calibrates by default
    if len({b[0].shape[0] for b in calib}) > 1:
        # ORT's histogram collector stacks every batch's outputs, so a ragged last batch breaks it
        calib = [tuple(t[i : i + 1] for t in b) for b in calib for i in range(b[0].shape[0])]
    reader = _Reader(names, calib, progress=f"INT8 calibration ({cfg.calibration})")
    method = getattr(q.CalibrationMethod, _CALIB[cfg.calibration])
    with tempfile.TemporaryDirectory(prefix="slimtorch_calib_") as tmp, contextlib.redirect_stdout(io.StringIO()):
        cal = create_calibrator(
            fp32,
            ops,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=method,
            extra_options=opts,
        )
        cal.collect_data(reader)
        if cfg.calibration == "mse":
            ranges = _mse_tensors_data(cal.collector.histogram_dict)
        else:
            ranges = cal.compute_data()
        del cal
    save_tensors_data(ranges, cache)


def _mse_tensors_data(histograms: dict):
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        TensorData,
        TensorsData,
    )

    from slimtorch.deploy.mse_ranges import mse_ranges

    data = {
        name: TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
        for name, (lo, hi) in mse_ranges(histograms).items()
    }
    return TensorsData(CalibrationMethod.Entropy, data)


def _exact_initializers(fp32: Path, exact_path: Path, nodes: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per quantizable node, the weight / bias initializers of the exact model where they differ from ``fp32``.

    Both files come from the same module tree, so node and initializer names line up; a node whose
    names do not (an exporter that renamed something) is left out rather than patched wrongly.
    """
    import onnx
    from onnx import numpy_helper

    a, b = onnx.load(str(fp32)), onnx.load(str(exact_path))
    inits_a = {i.name: i for i in a.graph.initializer}
    inits_b = {i.name: i for i in b.graph.initializer}
    nodes_b = {n.name: n for n in b.graph.node}
    out: dict[str, dict[str, np.ndarray]] = {}
    for node in a.graph.node:
        if node.name not in nodes or node.name not in nodes_b or list(nodes_b[node.name].input) != list(node.input):
            continue
        diff = {}
        for name in node.input[1:]:
            if name in inits_a and name in inits_b:
                x, y = numpy_helper.to_array(inits_a[name]), numpy_helper.to_array(inits_b[name])
                if x.shape == y.shape and not np.array_equal(x, y):
                    diff[name] = y
        if diff:
            out[node.name] = diff
    return out


def _exact_patcher(fp32: Path, exact: dict[str, dict[str, np.ndarray]], dst: Path):
    """A function ``exclude -> path``: ``fp32`` with the float-kept layers' initializers replaced by the
    exact ones (``fp32`` itself if none). The model is parsed once, not once per fallback try."""
    import onnx
    from onnx import numpy_helper

    proto = None

    def patched(exclude: list[str]) -> Path:
        nonlocal proto
        patch = {name: arr for n in exclude for name, arr in exact.get(n, {}).items()}
        if not patch:
            return fp32
        proto = proto or onnx.load(str(fp32))
        saved = {}
        for init in proto.graph.initializer:
            if init.name in patch:
                saved[init.name] = onnx.TensorProto()
                saved[init.name].CopyFrom(init)
                init.CopyFrom(numpy_helper.from_array(patch[init.name], init.name))
        try:
            onnx.save(proto, str(dst))
        finally:  # back to the prepared weights for the next try
            for init in proto.graph.initializer:
                if init.name in saved:
                    init.CopyFrom(saved[init.name])
        return dst

    return patched


def _quantizer(
    fp32: Path,
    out_dir: Path,
    cfg: OrtInt8Config,
    calib: list[tuple[torch.Tensor, ...]],
    names: list[str],
    exact: dict[str, dict[str, np.ndarray]] | None = None,
):
    """A function ``exclude -> path of the INT8 file`` (calibrating once, on the first call).

    ``exact``: per node, the initializers an excluded (float) node takes instead of the prepared
    ones (:func:`exact_float`); the calibration ranges are those of the prepared model.
    """
    from onnxruntime import quantization as q

    cache = out_dir / "calibration_ranges.json"
    if cache.exists():
        cache.unlink()
    if cfg.mode == "static":
        with log_level(logging.ERROR):  # ORT logs through the root logger; restored after
            _calibrate(fp32, cfg, names, calib, cache)
    counter = [0]
    with_exact = _exact_patcher(fp32, exact or {}, out_dir / "fp32_float_layers_exact.onnx")

    def write(out: Path, exclude: list[str]) -> None:
        if cfg.mode == "dynamic":
            ops = ["MatMul", "Gemm", "LSTM", *(["Gather"] if cfg.quantize_embeddings else [])]
            q.quantize_dynamic(
                fp32,
                out,
                op_types_to_quantize=ops,
                per_channel=cfg.per_channel,
                reduce_range=cfg.reduce_range,
                weight_type=q.QuantType.QInt8,
                # the dynamic quantizer first rewrites each Gemm as "<name>_MatMul" + "<name>_Add" and then
                # compares names: a Gemm excluded by its own name would be quantized all the same
                nodes_to_exclude=[*exclude, *(f"{n}_MatMul" for n in exclude)],
                extra_options={"MatMulConstBOnly": True},
            )
        else:
            fmt = q.QuantFormat.QDQ if cfg.quant_format == "qdq" else q.QuantFormat.QOperator
            q.quantize_static(
                with_exact(exclude),
                out,
                _Reader(names, calib),
                quant_format=fmt,
                per_channel=cfg.per_channel,
                reduce_range=cfg.reduce_range,
                activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8,
                nodes_to_exclude=list(exclude),
                calibrate_method=getattr(q.CalibrationMethod, _CALIB[cfg.calibration]),
                extra_options={
                    "CalibPercentile": cfg.percentile,
                    "WeightSymmetric": True,
                    "ActivationSymmetric": False,
                },
                calibration_cache_path=cache,
            )

    def quantize(exclude: list[str]) -> Path:
        counter[0] += 1
        out = out_dir / f"int8_try{counter[0]}.onnx"
        with log_level(logging.ERROR):  # ORT logs every node it skips, through the root logger
            write(out, exclude)
        return out

    return quantize


def convert_onnxruntime(
    model: nn.Module,
    calib: list[tuple[torch.Tensor, ...]],
    cfg: OrtInt8Config,
    out_dir: Path,
    check: list[tuple[torch.Tensor, ...]] | None = None,
) -> Int8Model:
    """Convert ``model`` to an ONNX Runtime INT8 file in ``out_dir`` (see module docstring).

    Args:
        calib: calibration batches; ``check``: batches the fidelity target is checked on
            (default: the calibration batches).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check = check or calib
    prepared, info = prepare_float(model, cfg, calib)
    fp32 = out_dir / "fp32_prepared.onnx"
    export_onnx(prepared, calib[0], fp32, opset=cfg.opset, check=False)
    info["untied_initializers"] = untie_initializers(fp32)
    modules = onnx_module_names(fp32)
    nodes = quantizable_nodes(fp32, cfg.mode)
    keep = ort_float_nodes(cfg.layers, model, nodes, modules, graph_node_names(fp32))
    n_inputs = len(as_tuple(calib[0]))
    names = [f"input_{i}" for i in range(n_inputs)] if n_inputs > 1 else ["input"]
    exact = None
    if cfg.mode == "static" and (cfg.bias_correction or cfg.adaround):
        exact_path = out_dir / "fp32_exact.onnx"
        export_onnx(exact_float(model, cfg).eval(), calib[0], exact_path, opset=cfg.opset, check=False)
        untie_initializers(exact_path)
        exact = _exact_initializers(fp32, exact_path, nodes)
        exact_path.unlink()
    quantize = _quantizer(fp32, out_dir, cfg, calib, names, exact)
    regions = None
    if cfg.mode == "static" and cfg.fallback_regions:
        import onnx

        regions = activation_regions(onnx.load(str(fp32)), nodes)
    ref = reference_outputs(model, check)

    def evaluate(path: Path) -> dict[str, float]:
        run = _runner(path, cfg.threads)
        return fidelity(ref, torch.cat([run(b) for b in check]))

    result = accuracy_aware_fallback(quantize, evaluate, nodes, keep, cfg.target, cfg.max_float_layers, regions)
    final = out_dir / "int8.onnx"
    result.path.replace(final)
    if cfg.mode == "dynamic" and cfg.float_weights_int8:
        from slimtorch.deploy.fidelity import meets
        from slimtorch.deploy.weight_only import weight_only_int8

        float_compute = [n for n in result.excluded if n in nodes] + float_recurrent(fp32)
        # in the INT8 file a float Gemm is the dynamic quantizer's "<name>_MatMul" (see _quantizer)
        renamed = {f"{n}_MatMul": n for n in float_compute}
        float_compute += list(renamed)
        named = {**modules, **{a: modules.get(n, n) for a, n in renamed.items()}}
        _, stored, metrics = weight_only_int8(final, float_compute, evaluate, lambda m: meets(m, cfg.target), named)
        if stored:
            result.info["weights_int8_compute_float"] = stored
            result.info["fidelity_checked"] = metrics
    for f in [*out_dir.glob("int8_try*.onnx"), out_dir / "fp32_float_layers_exact.onnx"]:
        f.unlink(missing_ok=True)
    info.update(result.info)
    float_nodes = [n for n in result.excluded if n in nodes]
    info["quantized_layers"] = len(nodes) - len(float_nodes)
    info["float_nodes"] = list(result.excluded)  # layers plus the Clip / Add … of float activation regions
    info["float_layers_exact"] = sorted(modules.get(n, n) for n in float_nodes if n in (exact or {}))
    info["options"] = cfg.to_dict()
    float_layers = [modules.get(n, n) for n in float_nodes]
    if cfg.mode == "dynamic":
        stuck = float_recurrent(fp32)
        if stuck:
            info["float_recurrent"] = sorted({modules.get(n, n) for n in stuck})
            float_layers += [f for f in info["float_recurrent"] if f not in float_layers]
    return Int8Model(
        "onnxruntime", cfg.mode, _runner(final, cfg.threads), final, float_layers, info, final.stat().st_size
    )
