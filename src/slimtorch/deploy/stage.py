"""Recipe stages ``int8`` (convert + measure on ONNX Runtime / torchao / torch.ao) and ``export``.

Recipe examples::

    - type: int8
      mode: static            # or dynamic for transformers / MLPs
      backend: auto           # fastest backend meeting the target on the calibration data
      calibration: percentile
      target: {min_agreement: 0.95, max_kl: 0.05}
      # baseline: false        # time the INT8 runtime alone (no fp32 ONNX export, no fp32 timings)
      # selection_from: validation   # check the fallback on data.validation_size's examples

    - type: export
      formats: [onnx, pt2]

The ``int8`` stage takes the flat fields of its backend and mode's config
(:mod:`slimtorch.deploy.config`: a field of another backend is an error naming it)
plus its own (:class:`Int8StageConfig`). It sets ``ctx.artifacts[stage] = <int8 .onnx>`` (when the backend writes
one), checks its fallback on a selection split of the calibration data (the
``selection_examples`` after the ``calib_examples``, or, with ``selection_from:
validation``, the first of the validation split; never the test data) and
records fidelity on the test data, latency of the INT8 runtime next to
ONNX Runtime fp32 and eager PyTorch (``baseline: false``: the INT8 runtime alone,
as ``slimtorch auto``'s candidates, which are all timed alike afterwards, need), and the
layers kept float (an :class:`Int8Result`, whose ``deployed`` figures the runner reports
in the stage's row). The float ``ctx.model`` is left as it was: the INT8 artifact is a
deployment file, and the result keeps the converted model in memory (``int8_model``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field
from torch.utils.data import Subset

from slimtorch.core.config import FrozenConfig
from slimtorch.core.errors import ConfigError
from slimtorch.core.stages import Context, Deployed, StageResult, flattened, live, optional, register_stage
from slimtorch.deploy.artifact import Int8Model
from slimtorch.deploy.config import Int8Config, OrtInt8Config
from slimtorch.deploy.convert import time_variants, to_int8
from slimtorch.deploy.data import input_batches
from slimtorch.deploy.fidelity import evaluate_int8
from slimtorch.deploy.regression import regressions, warn
from slimtorch.export.onnx import export_onnx, export_pt2, ort_session, run_session


class Int8StageConfig(Int8Config):
    """The config of the stage's backend and mode (:mod:`slimtorch.deploy.config`, the same flat fields as in
    ``to_int8``'s dict) plus how much data the stage reads and times.

    Like :class:`Int8Config`, building it builds the class of ``backend`` and ``mode``: a subclass of both
    that backend's config and this one (:func:`stage_config_class`).
    """

    calib_examples: int = Field(512, ge=1)
    # the fallback's ranking and its target check run on the next examples of the calibration data (a
    # selection split), never on the test data; with too few examples they run on the calibration ones
    selection_examples: int = Field(256, ge=0)
    selection_from: Literal["calibration", "validation"] = Field(
        "calibration",
        description="the selection examples: those after the calibration ones, or the first of the validation split",
    )
    test_examples: int = Field(1000, ge=1)
    timing_rounds: int = Field(20, ge=1)
    timing_batch: int = Field(
        32, ge=1, description="the larger batch timed besides batch 1 (from calibration data; 1: batch 1 only)"
    )
    baseline: bool = Field(
        True, description="also export the float model to ONNX and time it (ONNX Runtime fp32, eager PyTorch)"
    )

    @classmethod
    def concrete_class(cls, data: dict[str, Any]) -> type[Int8Config]:
        if cls is not Int8StageConfig:
            return super().concrete_class(data)
        return stage_config_class(Int8Config.concrete_class(data))


_STAGE_CLASSES: dict[type[Int8Config], type[Int8StageConfig]] = {}


def stage_config_class(config_cls: type[Int8Config]) -> type[Int8StageConfig]:
    """The stage config of one backend / mode config class: its fields plus the stage's (made once per class)."""
    if config_cls not in _STAGE_CLASSES:
        name = config_cls.__name__.replace("Int8Config", "Int8StageConfig")
        doc = f":class:`{config_cls.__name__}` plus the fields of :class:`Int8StageConfig`."
        _STAGE_CLASSES[config_cls] = type(name, (config_cls, Int8StageConfig), {"__doc__": doc, "__module__": __name__})
    return _STAGE_CLASSES[config_cls]


# the opset of the fp32 baseline file when the backend writes no ONNX (torchao, torch_fx)
DEFAULT_OPSET = OrtInt8Config.model_fields["opset"].default


class ExportStageConfig(FrozenConfig):
    formats: tuple[Literal["onnx", "pt2"], ...] = ("onnx",)
    opset: int = Field(18, ge=13)


@dataclass(frozen=True, kw_only=True)
class Int8Result(StageResult):
    """What the ``int8`` stage measured.

    ``conversion`` is :meth:`~slimtorch.deploy.artifact.Int8Model.summary` (backend, mode,
    path, size, float layers and the conversion's own figures), flattened into the JSON.
    Latencies are median ms per variant (``ort_fp32``, ``torch_fp32``, ``int8``; ``int8`` alone
    with ``baseline: false``, which leaves the speed-ups and ``fp32_onnx_bytes`` out); ``deployed``
    is what the run's record of this stage reports; ``int8_model`` is the converted model itself
    (in memory only, not in the JSON).
    """

    conversion: dict[str, Any] = flattened(required=True)
    fallback_checked_on: str
    fidelity_test: dict[str, Any] | None = optional()
    accuracy_int8: float | None = optional()
    accuracy_float: float | None = optional()
    latency_ms_batch1: dict[str, float]
    latency_ms: dict[str, dict[str, float]]
    speedup_vs_ort_fp32: float | None = optional()
    speedup_vs_fastest_fp32: dict[str, float] | None = optional()
    fp32_onnx_bytes: int | None = optional()
    warnings: list[str] | None = optional()
    deployed: Deployed
    int8_model: Int8Model | None = live()


@dataclass(frozen=True, kw_only=True)
class ExportResult(StageResult):
    """``onnx_parity``: the ONNX export's check against PyTorch; ``pt2``: the exported program's path."""

    onnx_parity: dict[str, Any] | None = optional()
    pt2: str | None = optional()


def _eager(model, threads: int):
    """Eager PyTorch at the runtime session's thread count, so every fp32 baseline is timed alike."""
    import torch

    @torch.inference_mode()
    def run(inputs):
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            out = model(*inputs)
        finally:
            torch.set_num_threads(old)
        return out[0] if isinstance(out, (tuple, list)) else out

    return run


def _subset(data, n):
    return Subset(data, range(min(n, len(data)))) if data is not None else None


@register_stage("int8", Int8StageConfig)
def int8_stage(ctx: Context, cfg: Int8StageConfig) -> None:
    calib = ctx.calib_data if ctx.calib_data is not None else ctx.train_data
    selection = None
    if cfg.selection_from == "validation":
        if ctx.validation_data is None:
            raise ConfigError(
                f"stage '{ctx.stage_name}': selection_from: validation checks the fallback on validation data; "
                "set data.validation_size in the recipe",
                field="selection_from",
            )
        selection = _subset(ctx.validation_data, cfg.selection_examples) if cfg.selection_examples else None
    elif calib is not None and cfg.selection_examples and len(calib) > cfg.calib_examples:
        selection = Subset(
            calib, range(cfg.calib_examples, min(len(calib), cfg.calib_examples + cfg.selection_examples))
        )
    ctx.model.eval()  # the float model is the reference, exported and timed below (to_int8 leaves its mode alone)
    # the stage config is the backend's config (plus the stage's fields, which to_int8 does not read)
    q = to_int8(ctx.model, cfg, _subset(calib, cfg.calib_examples), check_data=selection, out_dir=ctx.stage_dir())
    info: dict[str, Any] = {}
    if selection is None:
        info["fallback_checked_on"] = "the calibration examples (no more data for a separate selection split)"
    elif cfg.selection_from == "validation":
        info["fallback_checked_on"] = f"selection: the first {len(selection)} examples of the validation split"
    else:
        info["fallback_checked_on"] = f"selection: {len(selection)} examples after the calibration ones"
    test = _subset(ctx.test_data, cfg.test_examples)
    if test is not None:
        ev = evaluate_int8(q, test, ctx.reference or ctx.model, batch_size=cfg.calib_batch_size)
        info["fidelity_test"] = ev.fidelity
        if ev.accuracy is not None:  # unlabelled photos: fidelity only
            info["accuracy_int8"], info["accuracy_float"] = ev.accuracy, ev.accuracy_float
    variants: dict[str, Any] = {"int8": q.runner}
    if cfg.baseline:
        fp32 = ctx.stage_dir() / "fp32.onnx"
        export_onnx(
            ctx.model,
            ctx.example_input,
            fp32,
            opset=cfg.opset if isinstance(cfg, OrtInt8Config) else DEFAULT_OPSET,
            check=False,
        )
        sess = ort_session(fp32, cfg.threads)
        variants = {
            "ort_fp32": lambda b: run_session(sess, b),
            "torch_fp32": _eager(ctx.model, cfg.threads),
            **variants,
        }
    big = input_batches(calib, 1, cfg.timing_batch, 1)[0][0] if calib is not None else None
    lat_by_batch = {1: time_variants(variants, (ctx.example_input,), rounds=cfg.timing_rounds)}
    if big is not None and big.shape[0] > 1:
        lat_by_batch[int(big.shape[0])] = time_variants(variants, (big,), rounds=max(3, cfg.timing_rounds // 2))
    lat = lat_by_batch[1]
    info["latency_ms_batch1"] = lat
    info["latency_ms"] = {f"b{b}": v for b, v in lat_by_batch.items()}
    warnings: list[str] = []
    if cfg.baseline:
        info["speedup_vs_ort_fp32"] = lat["ort_fp32"] / lat["int8"]
        info["speedup_vs_fastest_fp32"] = {
            f"b{b}": min(v["ort_fp32"], v["torch_fp32"]) / v["int8"] for b, v in lat_by_batch.items()
        }
        info["fp32_onnx_bytes"] = fp32.stat().st_size
        warnings = regressions(
            f"int8 ({q.backend})",
            lat_by_batch,
            "int8",
            ("torch_fp32", "ort_fp32"),
            q.size_bytes,
            info["fp32_onnx_bytes"],
        )
    if q.info.get("float_recurrent"):
        warnings.append(
            f"int8 ({q.backend}): recurrent layers {', '.join(q.info['float_recurrent'])} stay float "
            "(no INT8 kernel there); try backend: torch_fx or auto"
        )
    if warnings and ctx.verbose:
        warn(warnings, ctx.stage_name)
    # what the run's record of this stage shows: the deployed INT8 artifact, not the float module
    deployed = Deployed(
        runtime=f"{q.backend} int8",
        latency_b1_ms=lat["int8"],
        agreement=info.get("fidelity_test", {}).get("top1_agreement"),
        accuracy=info.get("accuracy_int8"),
    )
    if q.path is not None:
        ctx.artifacts[ctx.stage_name] = q.path
    ctx.record(Int8Result(conversion=q.summary(), **info, warnings=warnings or None, deployed=deployed, int8_model=q))


@register_stage("export", ExportStageConfig)
def export_stage(ctx: Context, cfg: ExportStageConfig) -> None:
    parity = pt2 = None
    if "onnx" in cfg.formats:
        path = ctx.stage_dir() / "model.onnx"
        parity = export_onnx(ctx.model, ctx.example_input, path, opset=cfg.opset, verbose=ctx.verbose).to_dict()
        ctx.artifacts[ctx.stage_name] = path
    if "pt2" in cfg.formats:
        pt2 = export_pt2(ctx.model, ctx.example_input, ctx.stage_dir() / "model.pt2")
        ctx.artifacts.setdefault(ctx.stage_name, pt2)
    ctx.record(ExportResult(onnx_parity=parity, pt2=str(pt2) if pt2 is not None else None))
