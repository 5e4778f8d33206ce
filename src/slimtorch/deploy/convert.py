"""``to_int8``: one call from a float model and calibration data to a measured INT8 artifact."""

from __future__ import annotations

import contextlib
import inspect
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimtorch.core.config import coerce
from slimtorch.core.errors import ConfigError
from slimtorch.deploy.artifact import Int8Model
from slimtorch.deploy.backends import BACKENDS
from slimtorch.deploy.config import Int8Config
from slimtorch.deploy.data import input_batches
from slimtorch.deploy.fidelity import meets, score


def time_variants(
    fns: dict[str, Any], inputs: tuple[torch.Tensor, ...], rounds: int = 20, warmup: int = 3, inner: int = 1
) -> dict[str, float]:
    """Median ms per call of each ``fn(inputs)``, timed round-robin so load changes hit all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn(inputs)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn(inputs)
            times[k].append((time.perf_counter() - t0) / inner * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def required_inputs(model: nn.Module) -> int:
    """Positional inputs ``forward`` requires (a dataset's extra fields, e.g. labels, are dropped)."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return max(1, sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty))


def to_int8(
    model: nn.Module,
    calib_data: Any,
    config: Int8Config | dict | None = None,
    check_data: Any = None,
    out_dir: str | os.PathLike | None = None,
) -> Int8Model:
    """Convert ``model`` to INT8 on the backend ``config.backend`` (or the best one, ``auto``).

    Args:
        model: any float ``nn.Module``; left as it is (converted in eval mode, its flags restored).
        calib_data: calibration inputs: a tensor, a Dataset of ``(x, y)`` or a DataLoader.
        config: :class:`Int8Config` or its dict form.
        check_data: data the fidelity target is checked on (default: ``calib_data``).
        out_dir: where artifacts are written (default: a fresh temporary folder).

    Returns:
        The :class:`Int8Model` (callable; ``.path`` is the ONNX file for ONNX Runtime).

    Raises:
        ConfigError: empty calibration data, unknown backend, or a backend without ``config.mode``.
    """
    cfg = coerce(Int8Config, config)
    with _eval_mode(model):
        return _convert(model, calib_data, cfg, check_data, out_dir)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode while converting, each module's train / eval flag given back afterwards: the input is untouched."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


def _convert(
    model: nn.Module, calib_data: Any, cfg: Int8Config, check_data: Any, out_dir: str | os.PathLike | None
) -> Int8Model:
    n_inputs = required_inputs(model)
    calib = input_batches(calib_data, n_inputs, cfg.calib_batch_size, cfg.calib_batches)
    check = (
        input_batches(check_data, n_inputs, cfg.calib_batch_size, what="check data") if check_data is not None else None
    )
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="slimtorch_int8_"))
    if cfg.backend != "auto":
        backend = BACKENDS.get(cfg.backend)
        if cfg.mode not in backend.modes:
            raise ConfigError(
                f"backend '{cfg.backend}' has no {cfg.mode} mode; it supports {', '.join(backend.modes)}",
                field="backend",
            )
        result = backend.convert(model, calib, cfg, out / cfg.backend, check)
    else:
        result = _auto(model, calib, check, cfg, out)
    warn_not_smaller(result, model)
    return result


def float_bytes(model: nn.Module) -> int:
    """Bytes of the float model's tensors (tied ones once): what an INT8 file must beat."""
    seen, total = set(), 0
    for t in model.state_dict().values():
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def warn_not_smaller(result: Int8Model, model: nn.Module) -> list[str]:
    """One line on stderr when the INT8 artifact is not smaller than the float tensors (never silent)."""
    from slimtorch.deploy.regression import regressions, warn

    if result.size_bytes is None or result.backend == "ort_fp32":
        return []
    msgs = regressions(f"int8 ({result.backend})", {}, "int8", (), result.size_bytes, float_bytes(model))
    warn(msgs)
    result.info.setdefault("warnings", []).extend(msgs)
    return msgs


def _auto(model, calib, check, cfg, out) -> Int8Model:
    """Every backend with this mode, and fp32 on ONNX Runtime: the fastest meeting the target
    (else the most faithful INT8 one). fp32 wins when no INT8 variant is faster than it: a
    quantized model slower than the float one is not a result to hand back (it says so)."""
    results: dict[str, Int8Model] = {}
    errors: dict[str, str] = {}
    for name in BACKENDS.names():
        backend = BACKENDS.get(name)
        if cfg.mode not in backend.modes:
            continue
        try:
            results[name] = backend.convert(model, calib, cfg.replace(backend=name), out / name, check)
        except Exception as exc:  # noqa: BLE001 - one backend failing must not stop the others
            errors[name] = f"{type(exc).__name__}: {exc}"
    if not results:
        raise ConfigError(f"no backend could convert the model: {errors}", field="backend")
    fp32 = _ort_fp32(model, calib, cfg, out / "ort_fp32")
    x = calib[0]
    lat = time_variants({**{k: r.runner for k, r in results.items()}, "ort_fp32": fp32.runner}, x)
    ok = [k for k, r in results.items() if meets(r.info["fidelity_checked"], cfg.target)]
    pick = min(ok, key=lat.get) if ok else min(results, key=lambda k: score(results[k].info["fidelity_checked"]))
    if lat["ort_fp32"] < lat[pick]:
        import sys

        print(
            f"slimtorch: warning: no INT8 backend is faster than fp32 on ONNX Runtime here "
            f"({pick}: {lat[pick]:.3g} ms vs {lat['ort_fp32']:.3g} ms at batch {x[0].shape[0]}); keeping fp32",
            file=sys.stderr,
            flush=True,
        )
        pick, results["ort_fp32"] = "ort_fp32", fp32
    chosen = results[pick]
    chosen.info["auto"] = {
        "latency_ms": lat,
        "meets_target": ok,
        "errors": errors,
        "picked": pick,
        "fidelity": {k: r.info["fidelity_checked"] for k, r in results.items()},
    }
    return chosen


def _ort_fp32(model, calib, cfg: Int8Config, out: Path) -> Int8Model:
    """The float model on ONNX Runtime: the baseline ``auto`` must beat (returned when nothing does)."""
    from slimtorch.deploy.artifact import reference_outputs
    from slimtorch.deploy.fidelity import fidelity
    from slimtorch.export.onnx import export_onnx, ort_session

    out.mkdir(parents=True, exist_ok=True)
    path = export_onnx(model, calib[0], out / "fp32.onnx", opset=cfg.opset, check=False) or out / "fp32.onnx"
    sess = ort_session(path, cfg.threads)
    names = [i.name for i in sess.get_inputs()]

    def run(inputs):
        return torch.from_numpy(sess.run(None, {n: t.detach().cpu().numpy() for n, t in zip(names, inputs)})[0]).float()

    metrics = fidelity(reference_outputs(model, calib[:4]), torch.cat([run(b) for b in calib[:4]]))
    return Int8Model("onnxruntime", "fp32", run, path, ["*"], {"fidelity_checked": metrics}, path.stat().st_size)
