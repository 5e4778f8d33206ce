"""Peers of slimtorch's LLM weight-only quantization and pruning, run on the same model and tokens.

Each ``peer_*`` function takes the float model (and, where the method calibrates,
calibration ids ``(N, L)``), lets the peer's *own* code quantize or prune every
``nn.Linear`` of the decoder blocks (``lm_head`` and the embeddings stay float),
and writes the peer's dequantized weights back into the model **in place**. It
returns ``(model, facts)``; ``facts`` always has ``peer``, ``version``, ``config``,
``calib_seconds``, ``peak_rss_mb``, ``size_bytes``, ``error`` and ``notes``. When
a peer fails, ``error`` holds its error text and the model is left untouched
(weights are only written back once every layer succeeded).

Peers (all 4-bit, group/block 128 unless the config says otherwise):

* ``hqq`` 0.2.8 (``HQQLinear``, CPU, float32 compute): ``default`` is
  ``hqq_base_quant_config(nbits=4, group_size=128)``, which for 4 bits already
  sets ``round_zero=True``; ``no_round_zero`` is the same with the zero left
  fractional (``Quantizer.quantize``'s own default). hqq groups with axis=1 by
  reshaping the *flattened* row-major weight to ``(-1, 128)``: on a 576-wide
  weight a group is 128 consecutive elements of the flattened matrix, so every
  other row's groups start 64 columns in and one group in 4.5 straddles two rows
  (4.5 groups per row, not 5 with a partial last one). It only needs
  ``out * in`` divisible by 128, which every SmolLM2 Linear satisfies.
* ONNX Runtime's ``matmul_nbits_quantizer`` (``ort_default_asym``,
  ``ort_default_sym``, ``ort_hqq``, ``ort_rtn``): each weight becomes the B of a
  one-node ``MatMul`` graph (``B = W.T``, ``(K=in, N=out)``), the real
  ``MatMulNBitsQuantizer(...).process()`` turns it into ``MatMulNBits``, and ORT
  itself dequantizes it by running that node on an identity input (``I_K @ B``).
  ``DefaultWeightOnlyQuantizer`` and ``HQQWeightOnlyQuantizer`` zero-pad K to a
  multiple of the block (576 -> 640) themselves; the neural-compressor ``RTN``
  config (``ort_rtn``, asymmetric) crashes on K=576: it pads K to 640 itself, but
  packs the ``N * k_blocks`` 4-bit zero points two per byte over the flattened array
  and reshapes them to ``(N, -1)``, which fails whenever a column has an odd number
  of blocks (576/128 -> 5). Zero-padding the weight more to a multiple of 128 cannot help (640 is
  still 5 blocks), so no padded run is made; its error is recorded, and
  ``ort_rtn_sym`` (no zero points) shows that the same RTN path works when symmetric.
* ``llmcompressor`` 0.14 (``gptq_w4g128``, ``gptq_w4g64``, ``sparsegpt_50``) runs
  in its own virtual environment (``bench/peers/setup_llmcompressor.sh``): a
  subprocess executes ``bench/peers/llmcompressor_run.py`` on the Hugging Face
  directory and the calibration ids, and its dequantized decoder weights are read
  back.

The in-process peers cannot measure their own peak memory apart from the process
(which holds the float model and whatever ran before), so their ``peak_rss_mb``
is ``None`` and ``process_peak_rss_mb`` says what the process had reached.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import resource
import subprocess
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimtorch.models.llm import decoder_blocks

REPO = Path(__file__).resolve().parent.parent
LLMC_VENV = REPO / ".venv-llmc"
LLMC_RUNNER = REPO / "bench" / "peers" / "llmcompressor_run.py"
LLMC_CONFIGS = ("gptq_w4g128", "gptq_w4g64", "sparsegpt_50")
HQQ_CONFIGS = ("default", "no_round_zero")
ORT_CONFIGS = ("default_asym", "default_sym", "hqq", "rtn", "rtn_sym")


# ---------------------------------------------------------------------------- helpers


def decoder_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """``(qualified name, module)`` of every ``nn.Linear`` inside the decoder blocks (not ``lm_head``)."""
    prefix, _ = decoder_blocks(model)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.startswith(prefix + ".")]


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _facts(peer: str, config: str, version: str | None, **extra) -> dict:
    facts = {
        "peer": peer,
        "version": version,
        "config": config,
        "calib_seconds": None,
        "peak_rss_mb": None,
        "size_bytes": None,
        "error": None,
        "notes": [],
        "threads": torch.get_num_threads(),
    }
    facts.update(extra)
    return facts


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()[:2000]


@torch.no_grad()
def _write_back(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    mods = dict(model.named_modules())
    for name, w in weights.items():
        lin = mods[name]
        if tuple(w.shape) != tuple(lin.weight.shape):
            raise ValueError(f"{name}: peer weight {tuple(w.shape)} != model weight {tuple(lin.weight.shape)}")
        lin.weight.copy_(w.to(lin.weight.dtype))


def _finish(model, facts, weights, t0) -> tuple[nn.Module, dict]:
    facts["calib_seconds"] = round(time.perf_counter() - t0, 3)
    facts["process_peak_rss_mb"] = round(_rss_mb(), 1)
    _write_back(model, weights)
    facts["layers"] = len(weights)
    return model, facts


# ---------------------------------------------------------------------------- hqq


def peer_hqq(
    model: nn.Module, config: str = "default", nbits: int = 4, group_size: int = 128
) -> tuple[nn.Module, dict]:
    """hqq 0.2.8's ``HQQLinear`` on every decoder Linear (CPU, float32); weights dequantized by hqq.

    Args:
        config: ``default`` (``hqq_base_quant_config``: for 4 bits ``round_zero=True``) or
            ``no_round_zero`` (fractional zero, as ``Quantizer.quantize``'s own default).
    """
    if config not in HQQ_CONFIGS:
        raise ValueError(f"hqq config must be one of {HQQ_CONFIGS}, got {config!r}")
    facts = _facts("hqq", f"w{nbits}g{group_size}_{config}", _version("hqq"))
    t0 = time.perf_counter()
    try:
        from hqq.core.quantize import HQQLinear, hqq_base_quant_config

        qcfg = hqq_base_quant_config(nbits=nbits, group_size=group_size)
        if config == "no_round_zero":
            qcfg["weight_quant_params"]["round_zero"] = False
        facts["quant_config"] = {k: v for k, v in qcfg["weight_quant_params"].items()}
        weights: dict[str, torch.Tensor] = {}
        size = size_fp16_meta = 0
        straddle = 0
        for name, lin in decoder_linears(model):
            dummy = nn.Linear(lin.in_features, lin.out_features, bias=lin.bias is not None)
            dummy.weight.data = lin.weight.detach().clone().float()
            if lin.bias is not None:
                dummy.bias.data = lin.bias.detach().clone().float()
            hl = HQQLinear(dummy, qcfg, compute_dtype=torch.float32, device="cpu", del_orig=True)
            weights[name] = hl.dequantize().float().reshape(lin.out_features, lin.in_features).clone()
            meta = hl.meta
            nq = hl.W_q.numel() * hl.W_q.element_size()
            nmeta = sum(meta[k].numel() * meta[k].element_size() for k in ("scale", "zero"))
            size += nq + nmeta
            size_fp16_meta += nq + sum(meta[k].numel() * 2 for k in ("scale", "zero"))
            if lin.in_features % group_size:
                straddle += 1
        facts["size_bytes"] = size
        facts["size_bytes_fp16_meta"] = size_fp16_meta
        facts["notes"].append(
            "size_bytes: packed 4-bit W_q plus float32 scale and zero per group as held with compute_dtype=float32; "
            "size_bytes_fp16_meta: the same with hqq's usual float16 scale/zero"
        )
        if straddle:
            facts["notes"].append(
                f"{straddle} Linears have in_features not a multiple of {group_size}: hqq groups the flattened "
                f"row-major weight (reshape(-1, {group_size})), so on a width of 576 groups straddle two rows and "
                "odd rows' groups start 64 columns in (4.5 groups per row, no partial group)"
            )
        return _finish(model, facts, weights, t0)
    except Exception as exc:  # noqa: BLE001 - a peer's failure is a result
        facts["error"] = _error_text(exc)
        facts["traceback"] = traceback.format_exc(limit=6)
        facts["calib_seconds"] = round(time.perf_counter() - t0, 3)
        return model, facts


# ---------------------------------------------------------------------------- ONNX Runtime


def _matmul_model(b: np.ndarray):
    from onnx import TensorProto, helper, numpy_helper

    k, n = b.shape
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["M", k])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "B"], ["Y"], name="linear")],
        "linear",
        [x],
        [y],
        [numpy_helper.from_array(np.ascontiguousarray(b, dtype=np.float32), "B")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _ort_symmetric(config: str) -> bool:
    return config in ("default_sym", "rtn_sym")


def _ort_config(config: str, block_size: int, bits: int):
    from onnxruntime.quantization import matmul_nbits_quantizer as mq

    if config == "default_asym":
        return mq.DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=False, bits=bits)
    if config == "default_sym":
        return mq.DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, bits=bits)
    if config == "hqq":
        return mq.HQQWeightOnlyQuantConfig(block_size=block_size, bits=bits)
    if config in ("rtn", "rtn_sym"):
        return mq.RTNWeightOnlyQuantConfig()
    raise ValueError(f"ONNX Runtime config must be one of {ORT_CONFIGS}, got {config!r}")


def ort_quantize_weight(
    w: torch.Tensor, config: str = "default_asym", block_size: int = 128, bits: int = 4
) -> tuple[torch.Tensor, int, dict]:
    """ONNX Runtime's weight-only quantizer on one Linear weight ``w (out, in)``.

    ``w.T`` is the ``B (K, N)`` of a one-node MatMul graph, exactly as the exported
    ``x @ W.T`` would hold it; ``MatMulNBitsQuantizer.process()`` replaces the node
    by ``MatMulNBits`` and ORT runs it on ``I_K`` to give the dequantized ``B``.

    Returns:
        (dequantized ``(out, in)`` float32, bytes of the quantized initializers, the node's attributes)
    """
    import onnxruntime as ort
    from onnx import helper, numpy_helper
    from onnxruntime.quantization import matmul_nbits_quantizer as mq

    b = w.detach().float().T.contiguous().numpy()
    k = b.shape[0]
    # block_size / is_symmetric also go to the quantizer itself: the RTN config reads them from there.
    quantizer = mq.MatMulNBitsQuantizer(
        _matmul_model(b),
        block_size=block_size,
        bits=bits,
        is_symmetric=_ort_symmetric(config),
        algo_config=_ort_config(config, block_size, bits),
    )
    quantizer.process()
    qmodel = quantizer.model.model
    nodes = [n for n in qmodel.graph.node if n.op_type == "MatMulNBits"]
    if len(nodes) != 1:
        raise RuntimeError(
            f"ONNX Runtime did not produce one MatMulNBits node (got {[n.op_type for n in qmodel.graph.node]})"
        )
    attrs = {a.name: helper.get_attribute_value(a) for a in nodes[0].attribute}
    size = sum(numpy_helper.to_array(t).nbytes for t in qmodel.graph.initializer if t.name in set(nodes[0].input))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3
    sess = ort.InferenceSession(qmodel.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    deq = sess.run(None, {"X": np.eye(k, dtype=np.float32)})[0]  # (K, N)
    return torch.from_numpy(np.ascontiguousarray(deq.T)), int(size), attrs


def _quiet_ort_logger():
    import logging

    for name in ("onnxruntime.quantization.matmul_nbits_quantizer", "onnxruntime.quantization.neural_compressor"):
        logging.getLogger(name).setLevel(logging.WARNING)


def peer_ort(
    model: nn.Module, config: str = "default_asym", block_size: int = 128, bits: int = 4
) -> tuple[nn.Module, dict]:
    """ONNX Runtime's ``matmul_nbits_quantizer`` on every decoder Linear (see :func:`ort_quantize_weight`).

    Args:
        config: ``default_asym`` / ``default_sym`` (``DefaultWeightOnlyQuantizer``, C++ RTN),
            ``hqq`` (``HQQWeightOnlyQuantizer``), ``rtn`` (the neural-compressor RTN config,
            asymmetric; crashes when a column has an odd number of blocks) and ``rtn_sym``.
    """
    if config not in ORT_CONFIGS:
        raise ValueError(f"ONNX Runtime config must be one of {ORT_CONFIGS}, got {config!r}")
    facts = _facts("onnxruntime", f"w{bits}b{block_size}_{config}", _version("onnxruntime"))
    _quiet_ort_logger()
    t0 = time.perf_counter()
    layer = None
    try:
        weights: dict[str, torch.Tensor] = {}
        size = 0
        padded = 0
        for layer, lin in decoder_linears(model):
            weights[layer], nbytes, attrs = ort_quantize_weight(lin.weight, config, block_size, bits)
            size += nbytes
            if lin.in_features % block_size:
                padded += 1
        facts["size_bytes"] = size
        facts["notes"].append(
            "size_bytes: the MatMulNBits initializers (packed 4-bit B incl. block padding, "
            "scales, zero points if any) as ORT writes them"
        )
        facts["notes"].append("dequantized by ONNX Runtime itself: the MatMulNBits node run on an identity input")
        if padded:
            facts["notes"].append(
                f"{padded} Linears with K % {block_size} != 0: K zero-padded to a multiple "
                "of the block by ORT's own quantizer (576 -> 640); MatMulNBits keeps K=576"
            )
        return _finish(model, facts, weights, t0)
    except Exception as exc:  # noqa: BLE001
        facts["error"] = f"{layer}: {_error_text(exc)}"
        if config == "rtn" and "reshape" in str(exc):
            facts["notes"].append(
                "ORT's neural-compressor RTN path pads K to whole blocks itself, then packs the N*k_blocks 4-bit "
                "zero points two per byte over the flattened array and reshapes to (N, -1): that fails when "
                "k_blocks is odd (K=576, block 128 -> 5 blocks). More zero padding to a multiple of the block "
                "would not change the block count, so no padded run was made."
            )
        facts["traceback"] = traceback.format_exc(limit=6)
        facts["calib_seconds"] = round(time.perf_counter() - t0, 3)
        return model, facts


# ---------------------------------------------------------------------------- llmcompressor (own venv)


def llmcompressor_python(venv: str | os.PathLike | None = None) -> Path | None:
    """The python of llmcompressor's virtual environment, or ``None`` if it is not set up."""
    py = Path(venv or os.environ.get("SLIMTORCH_LLMC_VENV", LLMC_VENV)) / "bin" / "python"
    return py if py.is_file() else None


def peer_llmcompressor(
    model: nn.Module,
    calib_ids: torch.Tensor,
    config: str = "gptq_w4g64",
    hf_dir: str | os.PathLike | None = None,
    timeout: float = 3600.0,
    venv: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    threads: int | None = None,
) -> tuple[nn.Module, dict]:
    """llmcompressor 0.14 ``oneshot`` in its own venv on the HF directory; its decoder weights loaded back.

    Args:
        calib_ids: ``(N, L)`` token ids (the same calibration windows slimtorch uses).
        config: ``gptq_w4g128`` (refused by llmcompressor on width 576: the refusal is the result),
            ``gptq_w4g64`` (symmetric, the closest group it accepts) or ``sparsegpt_50``.
        hf_dir: the model's Hugging Face directory (default: SmolLM2's, :func:`hf_directory`).
        threads: torch threads in the subprocess (default: this process's).

    Facts add the subprocess's own ``peak_rss_mb`` (``ru_maxrss`` of the runner) and
    ``calib_seconds`` (the runner's wall time around ``oneshot``), ``total_seconds`` (with start-up).
    """
    if config not in LLMC_CONFIGS:
        raise ValueError(f"llmcompressor config must be one of {LLMC_CONFIGS}, got {config!r}")
    facts = _facts("llmcompressor", config, None)
    py = llmcompressor_python(venv)
    if py is None:
        facts["error"] = "llmcompressor's venv is missing: bash bench/peers/setup_llmcompressor.sh"
        return model, facts
    if hf_dir is None:
        from slimtorch.models.llm import hf_directory

        hf_dir = hf_directory()
    from safetensors.torch import load_file, save_file

    t0 = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="llmc_", dir=workdir)
    try:
        out = Path(tmp.name)
        calib_path = out / "calib.safetensors"
        save_file({"input_ids": calib_ids.to(torch.long).contiguous()}, str(calib_path))
        cmd = [
            str(py),
            str(LLMC_RUNNER),
            "--model",
            str(hf_dir),
            "--calib",
            str(calib_path),
            "--config",
            config,
            "--out",
            str(out),
            "--threads",
            str(threads or torch.get_num_threads()),
        ]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(
            HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false"
        )
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as exc:
            facts["error"] = f"timed out after {timeout:.0f} s"
            facts["log_tail"] = (exc.stderr or b"")[-3000:] if isinstance(exc.stderr, str) else ""
            return model, facts
        facts["total_seconds"] = round(time.perf_counter() - t0, 3)
        facts_path = out / "facts.json"
        if facts_path.is_file():
            got = json.loads(facts_path.read_text())
            notes = facts["notes"] + got.pop("notes", [])
            facts.update(got)
            facts["notes"] = notes
        if proc.returncode != 0 and not facts.get("error"):
            facts["error"] = f"runner exited {proc.returncode}: " + (proc.stderr or proc.stdout)[-2000:]
        if facts.get("error"):
            facts["log_tail"] = (proc.stderr or "")[-3000:]
            return model, facts
        state = load_file(str(out / "weights.safetensors"))
        names = {n for n, _ in decoder_linears(model)}
        weights = {k[: -len(".weight")]: v.float() for k, v in state.items() if k[: -len(".weight")] in names}
        missing = names - set(weights)
        if missing:
            facts["error"] = f"runner wrote no weight for {len(missing)} decoder Linears, e.g. {sorted(missing)[0]}"
            return model, facts
        _write_back(model, weights)
        facts["layers"] = len(weights)
        return model, facts
    except Exception as exc:  # noqa: BLE001
        facts["error"] = _error_text(exc)
        facts["traceback"] = traceback.format_exc(limit=6)
        return model, facts
    finally:
        tmp.cleanup()


# ---------------------------------------------------------------------------- registry


def peers(include_llmcompressor: bool = True) -> dict[str, tuple]:
    """Row name (``peer_<name>_<config>``) -> ``(function, kwargs, needs_calibration)``, in run order."""
    rows: dict[str, tuple] = {
        "peer_hqq_w4g128": (peer_hqq, {"config": "default"}, False),
        "peer_hqq_w4g128_no_round_zero": (peer_hqq, {"config": "no_round_zero"}, False),
        "peer_ort_default_w4g128": (peer_ort, {"config": "default_asym"}, False),
        "peer_ort_default_sym_w4g128": (peer_ort, {"config": "default_sym"}, False),
        "peer_ort_hqq_w4g128": (peer_ort, {"config": "hqq"}, False),
        "peer_ort_rtn_w4g128": (peer_ort, {"config": "rtn"}, False),
        "peer_ort_rtn_sym_w4g128": (peer_ort, {"config": "rtn_sym"}, False),
    }
    if include_llmcompressor:
        rows.update(
            {
                "peer_llmcompressor_gptq_w4g128": (peer_llmcompressor, {"config": "gptq_w4g128"}, True),
                "peer_llmcompressor_gptq_w4g64": (peer_llmcompressor, {"config": "gptq_w4g64"}, True),
                "peer_llmcompressor_sparsegpt_50": (peer_llmcompressor, {"config": "sparsegpt_50"}, True),
            }
        )
    return rows


def run_peer(row: str, model: nn.Module, calib_ids: torch.Tensor | None = None, **kwargs) -> tuple[nn.Module, dict]:
    """Run one row of :func:`peers` on ``model`` (in place)."""
    fn, kw, needs_calib = peers()[row]
    if needs_calib:
        return fn(model, calib_ids, **kw, **kwargs)
    return fn(model, **kw, **kwargs)
