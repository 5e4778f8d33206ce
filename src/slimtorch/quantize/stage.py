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

Both record a typed result (:class:`QuantizeResult`, :class:`KMeansResult`): accuracy
before / after (and after fine-tuning), the per-layer report (bits, distinct values,
SQNR) and, for ``quantize``, the scales / zero points an exporter needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from slimtorch.core.stages import Context, StageResult, base_config, flattened, optional, register_stage
from slimtorch.distill.config import DistillConfig
from slimtorch.quantize.config import KMeansConfig, QuantConfig
from slimtorch.quantize.kmeans import kmeans_share, kmeans_skipped
from slimtorch.quantize.model import quant_params, quantize_model
from slimtorch.quantize.report import layer_report
from slimtorch.train.config import TrainConfig
from slimtorch.train.evaluate import FinetuneGate, evaluate
from slimtorch.train.loop import fit


class QuantizeStageConfig(QuantConfig):
    """:class:`QuantConfig` plus optional QAT fine-tuning and calibration size."""

    finetune: TrainConfig | None = None
    calib_examples: int = Field(2048, ge=1)


class KMeansStageConfig(KMeansConfig):
    """:class:`KMeansConfig` plus optional centroid fine-tuning.

    Attributes:
        distill: fine-tune the centroids with knowledge distillation from ``ctx.reference``
            (the model before compression) instead of plain cross-entropy.
        finetune_below: fine-tune only if the shared model's accuracy on the validation data
            (``data.validation_size``) is below this.
    """

    finetune: TrainConfig | None = None
    distill: DistillConfig | None = None
    finetune_below: float | None = Field(None, ge=0.0, le=1.0)


@dataclass(frozen=True, kw_only=True)
class FinetuneRun:
    """The optional fine-tuning after quantizing / sharing (QAT, centroid fine-tuning)."""

    history: list[dict[str, Any]]
    resumed_from: int | None
    accuracy_finetuned: float | None


@dataclass(frozen=True, kw_only=True)
class QuantizeResult(StageResult):
    """Accuracies (``None`` without test data), the config applied, per-layer report and quantizer parameters."""

    accuracy_before: float | None
    config: dict[str, Any]
    accuracy_quantized: float | None
    finetune: FinetuneRun | None = flattened()  # None: no fine-tuning (its keys are absent)
    layers: list[dict[str, Any]]
    quant_params: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class KMeansResult(StageResult):
    """Accuracies (``None`` without test data), the config applied, layers left alone, per-layer report."""

    accuracy_before: float | None
    config: dict[str, Any]
    skipped_layers: list[str]
    accuracy_shared: float | None
    accuracy_before_finetune: float | None = optional()  # finetune_below: the validation accuracy checked
    finetune_skipped: bool | None = optional()  # finetune_below: the shared model was good enough
    finetune: FinetuneRun | None = flattened()  # None: no fine-tuning (its keys are absent)
    layers: list[dict[str, Any]]


def _acc(ctx: Context, model) -> float | None:
    return evaluate(model, ctx.test_data).accuracy if ctx.test_data is not None else None


def _calib(ctx: Context, n: int):
    from torch.utils.data import Subset

    data = ctx.calib_data if ctx.calib_data is not None else ctx.require_train_data()
    return Subset(data, range(min(n, len(data))))


def _finetune(ctx: Context, model, cfg: TrainConfig | None, loss_fn=None) -> FinetuneRun | None:
    """Fine-tune when ``cfg`` is set."""
    if cfg is None:
        return None
    result = fit(
        model,
        ctx.require_train_data(),
        cfg,
        eval_data=ctx.monitor_data,
        loss_fn=loss_fn,
        checkpoint_dir=ctx.stage_dir(),
        resume=ctx.resume,
        verbose=ctx.verbose,
    )
    return FinetuneRun(history=result.history, resumed_from=result.resumed_from, accuracy_finetuned=_acc(ctx, model))


@register_stage("quantize", QuantizeStageConfig, trains=True)
def quantize_stage(ctx: Context, cfg: QuantizeStageConfig) -> None:
    qcfg = base_config(cfg, QuantConfig)
    before = _acc(ctx, ctx.model)
    calib = _calib(ctx, cfg.calib_examples) if qcfg.act_bits is not None else None
    ctx.model = quantize_model(ctx.model, qcfg, calib)
    quantized = _acc(ctx, ctx.model)
    tuned = _finetune(ctx, ctx.model, cfg.finetune)
    ctx.record(
        QuantizeResult(
            accuracy_before=before,
            config=qcfg.to_dict(),
            accuracy_quantized=quantized,
            finetune=tuned,
            layers=layer_report(ctx.model),
            quant_params=quant_params(ctx.model),
        )
    )


@register_stage("kmeans", KMeansStageConfig, trains=True)
def kmeans_stage(ctx: Context, cfg: KMeansStageConfig) -> None:
    kcfg = base_config(cfg, KMeansConfig)
    before = _acc(ctx, ctx.model)
    ctx.model = kmeans_share(ctx.model, kcfg)
    skipped, shared = kmeans_skipped(ctx.model), _acc(ctx, ctx.model)
    finetune, gate = cfg.finetune, None
    if finetune is not None and cfg.finetune_below is not None:
        gate = FinetuneGate(ctx.monitor_data, cfg.finetune_below)
        if not gate(ctx.model):
            finetune = None
    loss_fn = None
    if finetune is not None and cfg.distill is not None:
        from slimtorch.distill.transform import teacher_loss

        loss_fn = teacher_loss(ctx.require_reference("distill"), cfg.distill)
    tuned = _finetune(ctx, ctx.model, finetune, loss_fn)
    ctx.record(
        KMeansResult(
            accuracy_before=before,
            config=kcfg.to_dict(),
            skipped_layers=skipped,
            accuracy_shared=shared,
            accuracy_before_finetune=gate.accuracy if gate is not None else None,
            finetune_skipped=gate.skipped if gate is not None else None,
            finetune=tuned,
            layers=layer_report(ctx.model),
        )
    )
