"""Recipe stage ``prune``: one-shot, iterative (Han et al. 2015) or AGP (Zhu & Gupta 2017).

Recipe example::

    - type: prune
      prune: {method: magnitude, sparsity: 0.92, per_layer: {fc3: 0.74}}
      schedule: iterative
      steps: 3
      finetune: {epochs: 4, optimizer: {lr: 0.005}}

The stage calls the same functions a Python user calls and leaves the masks on
the model (so later fine-tuning stages keep the sparsity); saving folds them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from slimtorch.core.stages import Context, StageResult, optional, register_stage
from slimtorch.distill.config import DistillConfig
from slimtorch.prune.mask import finalize
from slimtorch.prune.prune import protected
from slimtorch.prune.report import sparsity_report, total_sparsity
from slimtorch.prune.scheduled import PruneScheduleConfig, prune_scheduled
from slimtorch.train import evaluate
from slimtorch.train.evaluate import FinetuneGate


class PruneStageConfig(PruneScheduleConfig):
    """Config of the ``prune`` recipe stage: :class:`PruneScheduleConfig` plus what the stage adds.

    Attributes:
        finalize: fold the masks into plain weights at the end of the stage
            (later training stages could then revive pruned weights).
        warn_drop: a ``one_shot`` prune that costs more than this much test accuracy
            (before any fine-tuning) prints a warning suggesting a gradual schedule or
            ``slimtorch auto``.
        distill: fine-tune with knowledge distillation from ``ctx.reference`` (the model
            before compression; ``temperature``, ``alpha``…) instead of plain cross-entropy.
        finetune_below: fine-tune only if the one-shot pruned model's accuracy on the
            validation data (``data.validation_size``) is below this; at or above it the
            pruned model is kept as it is (``agp`` tries the one-shot prune on a copy first).
            Not for ``iterative``.
    """

    finalize: bool = False
    warn_drop: float = Field(0.05, ge=0.0, le=1.0)
    distill: DistillConfig | None = None
    finetune_below: float | None = Field(None, ge=0.0, le=1.0)


@dataclass(frozen=True, kw_only=True)
class PruneResult(StageResult):
    """What the ``prune`` stage measured (accuracies on the test data, when the recipe has some).

    The totals (``weights`` … ``compression``) are :func:`~slimtorch.prune.report.total_sparsity`'s.
    """

    schedule: str
    accuracy_before: float | None = optional()
    protected: dict[str, dict[str, Any]] | None = optional()
    accuracy_pruned: float | None = optional()  # one_shot: before fine-tuning
    warnings: list[str] | None = optional()
    rounds: list[dict[str, Any]] | None = optional()  # iterative
    agp_updates: int | None = optional()  # agp
    accuracy_before_finetune: float | None = optional()  # finetune_below: the validation accuracy checked
    finetune_skipped: bool | None = optional()  # finetune_below: the pruned model was good enough
    finetune_epochs: int
    layers: dict[str, float]
    weights: int
    weights_nonzero: int
    weight_sparsity: float
    params: int
    params_nonzero: int
    param_sparsity: float
    compression: float
    accuracy_after: float | None = optional()


@register_stage("prune", PruneStageConfig, trains=True)
def prune_stage(ctx: Context, cfg: PruneStageConfig) -> None:
    """Prune ``ctx.model`` by ``cfg`` (:func:`~slimtorch.prune.scheduled.prune_scheduled`); record a PruneResult."""
    test = ctx.test_data
    before = evaluate(ctx.model, test).accuracy if test is not None else None
    caps = protected(ctx.model, cfg.prune)
    if caps and ctx.verbose and cfg.prune.sparsity > min(cap for cap, _ in caps.values()):
        capped = ", ".join(f"{f} <= {c:.0%} ({w})" for f, (c, w) in caps.items() if c < cfg.prune.sparsity)
        print(
            f"[prune] sensitive layers pruned less: {capped}; per_layer values or protect: false override",
            file=sys.stderr,
            flush=True,
        )
    pruned: dict[str, Any] = {}

    def check_drop(model) -> None:  # one_shot: the accuracy right after pruning, before any fine-tuning
        if test is None:
            return
        pruned["accuracy"] = acc = evaluate(model, test).accuracy
        if before - acc > cfg.warn_drop:
            msg = (
                f"one-shot pruning cost {(before - acc) * 100:.1f} pp of test accuracy "
                f"({before * 100:.2f} % -> {acc * 100:.2f} %) before "
                "fine-tuning; a gradual schedule (iterative / agp), lower sparsity or `slimtorch auto` "
                "usually keeps more"
            )
            pruned["warnings"] = [msg]
            if ctx.verbose:
                from slimtorch.deploy.regression import warn

                warn([msg], ctx.stage_name)

    gate = None
    if cfg.finetune_below is not None and cfg.finetune is not None and cfg.schedule != "iterative":
        gate = FinetuneGate(ctx.monitor_data, cfg.finetune_below)

    def after_prune(model) -> bool | None:
        if cfg.schedule == "one_shot":
            check_drop(model)
        return gate(model) if gate is not None else None

    loss_fn = None
    if cfg.distill is not None and cfg.finetune is not None:
        from slimtorch.distill.transform import teacher_loss

        loss_fn = teacher_loss(ctx.require_reference("distill"), cfg.distill)
    log: dict[str, Any] = {}
    model = prune_scheduled(
        ctx.model,
        cfg,
        ctx.require_train_data() if cfg.finetune is not None else ctx.train_data,
        ctx.score_data,
        eval_data=ctx.monitor_data,
        loss_fn=loss_fn,
        after_prune=after_prune if cfg.schedule == "one_shot" or gate is not None else None,
        checkpoint_dir=ctx.stage_dir(),
        resume=ctx.resume,
        verbose=ctx.verbose,
        log=log,
        inplace=True,  # the stage owns ctx.model: no second copy
    )
    result = PruneResult(
        schedule=cfg.schedule,
        accuracy_before=before,
        protected={fqn: {"max_sparsity": cap, "reason": why} for fqn, (cap, why) in caps.items()} or None,
        accuracy_pruned=pruned.get("accuracy"),
        warnings=pruned.get("warnings"),
        rounds=log.get("rounds"),
        agp_updates=log.get("agp_updates"),
        accuracy_before_finetune=gate.accuracy if gate is not None else None,
        finetune_skipped=gate.skipped if gate is not None else None,
        finetune_epochs=log["finetune_epochs"],
        layers={k: round(v["sparsity"], 6) for k, v in sparsity_report(model).items()},
        **total_sparsity(model),
        accuracy_after=evaluate(model, test).accuracy if test is not None else None,
    )
    ctx.model = finalize(model) if cfg.finalize else model
    ctx.record(result)
