"""Recipe stages ``quantize`` (uniform fake-quant PTQ / QAT) and ``kmeans`` (weight sharing).

Recipe examples::

    - type: quantize
      weight_bits: 4
      act_bits: 8
      per_channel: true
      weight_range: mse
      finetune: {epochs: 2, optimizer: {lr: 0.005}}   # QAT; omit for post-training only

    - type: kmeans
      bits: 5
      init: linear
      finetune: {epochs: 2, optimizer: {lr: 0.001}}   # centroid fine-tuning

Both write into ``ctx.info[stage_name]``: accuracy before / after (and after
fine-tuning), the per-layer report (bits, distinct values, SQNR) and, for
``quantize``, the scales / zero points an exporter needs.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from slimtorch.pipeline.context import Context
from slimtorch.pipeline.registry import register_stage
from slimtorch.quantize.config import KMeansConfig, QuantConfig
from slimtorch.quantize.kmeans import kmeans_share, kmeans_skipped
from slimtorch.quantize.model import quant_params, quantize_model
from slimtorch.quantize.report import layer_report
from slimtorch.train.config import TrainConfig
from slimtorch.train.evaluate import evaluate
from slimtorch.train.loop import fit


class QuantizeStageConfig(QuantConfig):
    """:class:`QuantConfig` plus optional QAT fine-tuning and calibration size."""

    finetune: TrainConfig | None = None
    calib_examples: int = Field(2048, ge=1)


class KMeansStageConfig(KMeansConfig):
    """:class:`KMeansConfig` plus optional centroid fine-tuning."""

    finetune: TrainConfig | None = None


def _acc(ctx: Context, model) -> float | None:
    return evaluate(model, ctx.test_data).accuracy if ctx.test_data is not None else None


def _calib(ctx: Context, n: int):
    from torch.utils.data import Subset

    data = ctx.calib_data if ctx.calib_data is not None else ctx.require_train_data()
    return Subset(data, range(min(n, len(data))))


def _finetune(ctx: Context, model, cfg: TrainConfig | None, info: dict[str, Any]) -> None:
    if cfg is None:
        return
    result = fit(
        model,
        ctx.require_train_data(),
        cfg,
        eval_data=ctx.monitor_data,
        checkpoint_dir=ctx.stage_dir(),
        resume=ctx.resume,
        verbose=ctx.verbose,
    )
    info["history"] = result.history
    info["resumed_from"] = result.resumed_from
    info["accuracy_finetuned"] = _acc(ctx, model)


@register_stage("quantize", QuantizeStageConfig, trains=True)
def quantize_stage(ctx: Context, cfg: QuantizeStageConfig) -> None:
    qcfg = QuantConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k in QuantConfig.model_fields})
    info: dict[str, Any] = {"accuracy_before": _acc(ctx, ctx.model), "config": qcfg.to_dict()}
    calib = _calib(ctx, cfg.calib_examples) if qcfg.act_bits is not None else None
    ctx.model = quantize_model(ctx.model, qcfg, calib)
    info["accuracy_quantized"] = _acc(ctx, ctx.model)
    _finetune(ctx, ctx.model, cfg.finetune, info)
    info["layers"] = layer_report(ctx.model)
    info["quant_params"] = quant_params(ctx.model)
    ctx.info[ctx.stage_name] = info


@register_stage("kmeans", KMeansStageConfig, trains=True)
def kmeans_stage(ctx: Context, cfg: KMeansStageConfig) -> None:
    kcfg = KMeansConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k in KMeansConfig.model_fields})
    info: dict[str, Any] = {"accuracy_before": _acc(ctx, ctx.model), "config": kcfg.to_dict()}
    ctx.model = kmeans_share(ctx.model, kcfg)
    info["skipped_layers"] = kmeans_skipped(ctx.model)
    info["accuracy_shared"] = _acc(ctx, ctx.model)
    _finetune(ctx, ctx.model, cfg.finetune, info)
    info["layers"] = layer_report(ctx.model)
    ctx.info[ctx.stage_name] = info
