"""Stages that belong to no compression method: train, evaluate/measure, save."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from slimtorch.core.config import FrozenConfig
from slimtorch.core.stages import Context, StageResult, register_stage
from slimtorch.io.model_file import save_model
from slimtorch.train.config import TrainConfig
from slimtorch.train.loop import fit


@dataclass(frozen=True, kw_only=True)
class TrainResult(StageResult):
    """``history``: one dict per epoch (loss, accuracy, lr, seconds); ``resumed_from``: the epoch resumed after."""

    history: list[dict[str, Any]]
    resumed_from: int | None


@dataclass(frozen=True, kw_only=True)
class MeasureResult(StageResult):
    note: str


@dataclass(frozen=True, kw_only=True)
class StudentResult(StageResult):
    student: dict[str, Any]


@register_stage("train", TrainConfig, trains=True)
def train_stage(ctx: Context, cfg: TrainConfig) -> None:
    """Train (or fine-tune) ``ctx.model`` on the recipe's training data (on ``ctx.device``)."""
    ctx.model.to(ctx.device)
    result = fit(
        ctx.model,
        ctx.require_train_data(),
        cfg,
        eval_data=ctx.monitor_data,
        checkpoint_dir=ctx.stage_dir(),
        resume=ctx.resume,
        verbose=ctx.verbose,
    )
    ctx.model.to("cpu")  # measurement, encoding and export run on the CPU
    ctx.record(TrainResult(history=result.history, resumed_from=result.resumed_from))


class MeasureStageConfig(FrozenConfig):
    """A measurement point with no transform (the runner measures after every stage)."""

    note: str = ""


@register_stage("measure", MeasureStageConfig)
def measure_stage(ctx: Context, cfg: MeasureStageConfig) -> None:
    ctx.record(MeasureResult(note=cfg.note))


class StudentStageConfig(FrozenConfig):
    """Swap in a fresh (lightweight) student; the current model becomes the teacher (``ctx.reference``)."""

    name: str
    kwargs: dict[str, Any] = {}


@register_stage("student", StudentStageConfig)
def student_stage(ctx: Context, cfg: StudentStageConfig) -> None:
    import copy

    from slimtorch.models import create_model

    ctx.reference = copy.deepcopy(ctx.model).eval()
    ctx.model = create_model(cfg.name, **cfg.kwargs)
    ctx.record(StudentResult(student=cfg.to_dict()))


class SaveStageConfig(FrozenConfig):
    """Write the current model to ``filename`` in the run folder (safetensors + architecture)."""

    filename: str = Field("model.safetensors", pattern=r"^[\w.\-]+$")


@register_stage("save", SaveStageConfig)
def save_stage(ctx: Context, cfg: SaveStageConfig) -> None:
    from slimtorch.measure.lm import is_causal_lm

    if is_causal_lm(ctx.model):  # a language model is a folder (codes + scales, config, tokenizer): NN_label/model
        from slimtorch.quantize.lm_stage_base import save_stage_model

        ctx.artifacts[ctx.stage_name] = save_stage_model(ctx, ctx.stage_dir() / "model")
    else:
        ctx.artifacts[ctx.stage_name] = save_model(ctx.model, ctx.out_dir / cfg.filename)
    ctx.record(StageResult())  # the file is the result (ctx.artifacts)
