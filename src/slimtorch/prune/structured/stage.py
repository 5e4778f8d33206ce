"""Recipe stage ``prune_channels``: structured pruning, then fine-tuning (optionally with KD).

Recipe example::

    - type: prune_channels
      prune: {ratio: 0.5, round_to: 8, importance: l2}
      steps: 2
      finetune: {epochs: 3, optimizer: {lr: 0.01}}
      distill: {temperature: 4, alpha: 0.7}    # KD from ctx.reference (the unpruned model)
      finetune_below: 0.9                      # steps: 1 only; validation accuracy at or above: no fine-tuning

Records MACs, parameters, accuracy and batch-1 latency before and after (:class:`PruneChannelsResult`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator, model_validator

from slimtorch.core.config import FrozenConfig
from slimtorch.core.stages import Context, StageResult, optional, register_stage
from slimtorch.distill.config import DistillConfig
from slimtorch.measure import count_macs, count_parameters
from slimtorch.prune.structured.api import prune_channels
from slimtorch.prune.structured.config import StructuredConfig
from slimtorch.prune.structured.finetune import prune_finetune
from slimtorch.train import TrainConfig, evaluate
from slimtorch.train.evaluate import FinetuneGate


class PruneChannelsStageConfig(FrozenConfig):
    """Config of the ``prune_channels`` stage.

    Attributes:
        prune: what to remove (ratio, importance, round_to, ignored layers).
        steps: prune/fine-tune rounds (needs ``finetune`` when > 1).
        finetune: training after each round; none: one-shot pruning only.
        distill: KD settings (a ``DistillConfig`` dict without ``train``) to fine-tune from
            ``ctx.reference``; none: plain cross-entropy fine-tuning.
        finetune_below: fine-tune only if the pruned model's accuracy on the validation data
            (``data.validation_size``) is below this; at or above it the pruned model is kept
            as it is (as in the ``prune`` and ``kmeans`` stages). Needs ``steps: 1``.
    """

    prune: StructuredConfig = StructuredConfig()
    steps: int = 1
    finetune: TrainConfig | None = None
    distill: DistillConfig | None = None
    finetune_below: float | None = Field(None, ge=0.0, le=1.0)

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: int) -> int:
        if v < 1:
            raise ValueError("steps must be >= 1")
        return v

    @model_validator(mode="after")
    def _gate_one_round(self) -> PruneChannelsStageConfig:
        if self.finetune_below is not None and self.steps > 1:
            raise ValueError("finetune_below checks the pruned model before its fine-tuning: it needs steps: 1")
        return self


@dataclass(frozen=True, kw_only=True)
class PruneChannelsResult(StageResult):
    """``layers``: channels kept per layer; ``latency_ms_b1``: eager median ms, ``before`` / ``pruned``."""

    macs_before: int
    params_before: int
    accuracy_before: float | None = optional()
    rounds: list[dict[str, Any]] | None = optional()
    macs_after: int
    params_after: int
    layers: dict[str, Any]
    accuracy_after: float | None = optional()
    accuracy_before_finetune: float | None = optional()  # finetune_below: the validation accuracy checked
    finetune_skipped: bool | None = optional()  # finetune_below: the pruned model was good enough
    latency_ms_b1: dict[str, float]
    warnings: list[str] | None = optional()


@register_stage("prune_channels", PruneChannelsStageConfig, trains=True)
def prune_channels_stage(ctx: Context, cfg: PruneChannelsStageConfig) -> None:
    """Prune ``ctx.model``'s channels by ``cfg`` and record sizes and accuracy."""
    import copy

    model, x, test = ctx.model, ctx.example_input, ctx.test_data
    before = copy.deepcopy(model).eval()  # timed beside the pruned model: no speed-up is reported, not hidden
    macs_before, params_before = count_macs(model, x), count_parameters(model)
    acc_before = evaluate(model, test).accuracy if test is not None else None
    rounds: list | None = None
    gate = FinetuneGate(ctx.monitor_data, cfg.finetune_below) if cfg.finetune_below is not None else None
    if cfg.finetune is None:
        if cfg.steps > 1:
            raise ValueError(f"stage '{ctx.stage_name}': steps > 1 needs 'finetune'")
        model = prune_channels(model, cfg.prune, x, data=ctx.score_data, inplace=True)  # the stage owns ctx.model
    else:
        rounds = []
        model = prune_finetune(
            model,
            cfg.prune,
            x,
            ctx.require_train_data(),
            cfg.finetune,
            steps=cfg.steps,
            distill=cfg.distill,
            teacher=ctx.reference if cfg.distill is not None else None,
            eval_data=ctx.monitor_data,
            after_prune=gate,
            checkpoint_dir=ctx.stage_dir(),
            resume=ctx.resume,
            verbose=ctx.verbose,
            log=rounds,
            inplace=True,
        )
    macs_after = count_macs(model, x)
    lat = _timed(before, model.eval(), x)
    warnings = None
    if lat["pruned"] >= lat["before"]:
        warnings = [
            f"structured pruning made the model no faster in eager PyTorch at batch 1: "
            f"{lat['pruned']:.3g} ms vs {lat['before']:.3g} ms before (MACs "
            f"{macs_before} -> {macs_after})"
        ]
        if ctx.verbose:
            from slimtorch.deploy.regression import warn

            warn(warnings, ctx.stage_name)
    ctx.model = model
    ctx.record(
        PruneChannelsResult(
            macs_before=macs_before,
            params_before=params_before,
            accuracy_before=acc_before,
            rounds=rounds,
            macs_after=macs_after,
            params_after=count_parameters(model),
            layers=getattr(model, "slimtorch_structured", {}),
            accuracy_after=evaluate(model, test).accuracy if test is not None else None,
            accuracy_before_finetune=gate.accuracy if gate is not None else None,
            finetune_skipped=gate.skipped if gate is not None else None,
            latency_ms_b1=lat,
            warnings=warnings,
        )
    )


def _timed(before, after, x, rounds: int = 20) -> dict[str, float]:
    """Median ms of both models at batch 1, timed interleaved (load hits both alike)."""
    import torch

    from slimtorch.deploy.convert import time_variants

    def run(m):
        @torch.inference_mode()
        def f(inputs):
            return m(*inputs)

        return f

    return time_variants({"before": run(before), "pruned": run(after)}, (x,), rounds=rounds)
