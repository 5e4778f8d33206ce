"""``to_int8``: one call from a float model and calibration data to a measured INT8 artifact."""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import statistics
import tempfile
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimtorch.core.config import coerce
from slimtorch.core.errors import ConfigError
from slimtorch.deploy.artifact import Int8Model
from slimtorch.deploy.backends import BACKENDS
from slimtorch.deploy.config import AUTO, Int8Config
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
    config: Int8Config | dict | None = None,
    calib_data: Any = None,
    check_data: Any = None,
    out_dir: str | os.PathLike | None = None,
) -> Int8Model:
    """Convert ``model`` to INT8 on the backend ``config.backend`` (or the best one, ``auto``).

    Args:
        model: any float ``nn.Module``; left as it is (converted in eval mode, its flags restored).
        config: the config of a backend and mode (:mod:`slimtorch.deploy.config`), its dict form
            (``backend`` and ``mode`` choose the class) or None (ONNX Runtime static, the defaults).
        calib_data: calibration inputs: a tensor, a Dataset of ``(x, y)`` or a DataLoader.
        check_data: data the fidelity target is checked on (default: ``calib_data``).
        out_dir: where artifacts are written. Default: a fresh temporary folder that the returned
            model owns: it is removed by ``Int8Model.close()``, at the end of a ``with`` block, or
            when the model is garbage-collected (its ``path`` is valid until then).

    Returns:
        The :class:`Int8Model` (callable; ``.path`` is the ONNX file for ONNX Runtime).

    Raises:
        ConfigError: the config names a field of another backend / mode, an unknown backend, a mode the
            backend does not have, or the calibration data is missing or empty.
    """
    _refuse_old_order(config, calib_data)
    cfg = coerce(Int8Config, config)
    with _eval_mode(model):
        return _convert(model, calib_data, cfg, check_data, out_dir)


def _refuse_old_order(config: Any, calib_data: Any) -> None:
    """``to_int8(model, calib_data, config)`` was the order before 0.x: say so instead of a type error."""
    from torch.utils.data import DataLoader, Dataset

    looks_like_data = isinstance(config, (torch.Tensor, Dataset, DataLoader)) or (
        isinstance(config, (list, tuple)) and len(config) > 0 and isinstance(config[0], (torch.Tensor, tuple, list))
    )
    if looks_like_data:
        raise ConfigError(
            f"to_int8(model, config, calib_data): the config comes before the data now, got a "
            f"{type(config).__name__} as config (the former order was to_int8(model, calib_data, config))",
            field="config",
        )


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
    try:
        if cfg.backend != AUTO:
            result = BACKENDS.get(cfg.backend).convert(model, calib, cfg, out / cfg.backend, check)
        else:
            result = _auto(model, calib, check, cfg, out)
    except BaseException:
        if out_dir is None:
            shutil.rmtree(out, ignore_errors=True)
        raise
    if out_dir is None:
        result.owns_folder(out)
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
    quantized model slower than the float one is not a result to hand back (it says so).

    ``cfg`` is the ONNX Runtime config of the mode (what ``backend: auto`` builds); the other
    backends get its shared fields (target, calibration data amount, threads) and their defaults.
    """
    results: dict[str, Int8Model] = {}
    errors: dict[str, str] = {}
    shared = {k: getattr(cfg, k) for k in Int8Config.model_fields}
    for name in BACKENDS.names():
        backend = BACKENDS.get(name)
        if cfg.mode not in backend.modes:
            continue
        if name in _backend_names(type(cfg)):
            sub = cfg.replace(backend=name)
        else:
            sub = backend.configs[cfg.mode].from_dict({**shared, "backend": name})
        try:
            results[name] = backend.convert(model, calib, sub, out / name, check)
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


def _backend_names(cls: type[Int8Config]) -> tuple[str, ...]:
    """The values a config class's ``backend`` field takes (a ``Literal``)."""
    return typing.get_args(cls.model_fields["backend"].annotation)


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
