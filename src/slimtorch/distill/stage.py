"""Recipe stage ``distill``: fine-tune ``ctx.model`` with knowledge distillation.

The teacher is, by default, ``ctx.reference`` (the model before the first
compression stage), so a recipe ``prune -> distill`` fine-tunes the pruned model
towards its unpruned self; ``quantize(qat) -> distill`` does QAT with a float
teacher. A model file, a zoo spec with weights, the user's own class
(``{class: "pkg.mod:Net", kwargs: {...}, weights: w.pth}``, which imports and runs
that code) or a Hugging Face directory (``{hf: dir, task: ...}``) can be named
instead, in the same forms as the recipe's ``model:``.

Recipe example::

    - type: distill
      teacher: reference            # or "teacher.safetensors", {name: lenet5}, {class: ..., weights: ...}
      temperature: 4
      alpha: 0.9
      train: {epochs: 3, optimizer: {lr: 0.01}}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from slimtorch.core.errors import ConfigError
from slimtorch.core.stages import Context, StageResult, base_config, optional, register_stage
from slimtorch.distill.config import DistillConfig
from slimtorch.distill.transform import CACHE_NAME, distill_fit
from slimtorch.train.evaluate import evaluate


class DistillStageConfig(DistillConfig):
    """:class:`DistillConfig` plus where the teacher comes from.

    Attributes:
        teacher: ``"reference"`` (the uncompressed model), a model-file path
            (``*.safetensors``, relative to the working directory), or a zoo spec
            ``{"name": ..., "kwargs": {...}}`` whose weights come from ``teacher_weights``, your
            class ``{"class": ..., "kwargs": ..., "weights": ...}`` or ``{"hf": dir, "task": ...}``
            (validated when the recipe is read, as ``model:`` is).
        teacher_weights: model file loaded into a zoo-spec teacher.
    """

    teacher: str | dict[str, Any] = "reference"
    teacher_weights: str | None = Field(None, min_length=1)

    @field_validator("teacher", mode="before")
    @classmethod
    def _teacher_source(cls, v: Any) -> Any:
        if isinstance(v, dict) and ("class" in v or "hf" in v):
            from slimtorch.models.hf import HFModelSource
            from slimtorch.models.user import UserModelSource

            src = UserModelSource if "class" in v else HFModelSource
            return src.from_dict(v, "teacher").to_dict()  # checked now; built when the stage runs
        return v


def resolve_teacher(ctx: Context, cfg: DistillStageConfig):
    """The teacher module named by ``cfg.teacher``, and a short description of it."""
    from slimtorch.io.model_file import load_model

    t = cfg.teacher
    if t == "reference":
        if ctx.reference is None:
            raise ConfigError(
                f"stage '{ctx.stage_name}': teacher 'reference' needs a model before compression; "
                "put distill after a compression stage or name a teacher file",
                field="teacher",
            )
        return ctx.reference, "reference"
    if isinstance(t, str):
        if not Path(t).is_file():
            raise ConfigError(
                f"stage '{ctx.stage_name}': teacher '{t}' is neither 'reference' nor an existing model file",
                field="teacher",
            )
        return load_model(t), t
    from slimtorch.models import create_model

    if "class" in t:  # the user's own class (the recipe names it, so its code runs)
        from slimtorch.models.user import UserModelSource, build_user_model

        return build_user_model(UserModelSource.from_dict(t, "teacher")).eval(), f"{t['class']}"
    if "hf" in t:
        from slimtorch.models.hf import HFModelSource, build_hf_model

        return build_hf_model(HFModelSource.from_dict(t, "teacher")).eval(), f"hf {t['hf']}"
    if "name" not in t or set(t) - {"name", "kwargs"}:
        raise ConfigError(
            "teacher spec must be {name: ..., kwargs: {...}}, {class: ..., weights: ...} or {hf: dir, task: ...}",
            field="teacher",
        )
    model = create_model(t["name"], **t.get("kwargs", {}))
    if cfg.teacher_weights is None:
        raise ConfigError(
            "a zoo-spec teacher needs trained weights: set teacher_weights to its model file", field="teacher_weights"
        )
    return load_model(cfg.teacher_weights, model=model), f"{t['name']} ({cfg.teacher_weights})"


@dataclass(frozen=True, kw_only=True)
class DistillResult(StageResult):
    """The teacher used, the KD settings, the training history and both accuracies on the test data."""

    teacher: str
    loss: str
    temperature: float
    alpha: float
    history: list[dict[str, Any]]
    resumed_from: int | None
    teacher_accuracy: float | None = optional()
    student_accuracy: float | None = optional()


@register_stage("distill", DistillStageConfig, trains=True)
def distill_stage(ctx: Context, cfg: DistillStageConfig) -> None:
    """Fine-tune ``ctx.model`` with KD from the configured teacher; record a :class:`DistillResult`."""
    teacher, desc = resolve_teacher(ctx, cfg)
    if teacher is ctx.model:
        raise ConfigError(f"stage '{ctx.stage_name}': the teacher is the model being trained", field="teacher")
    kd_cfg = base_config(cfg, DistillConfig)
    out = ctx.stage_dir()
    result = distill_fit(
        ctx.model,
        kd_cfg,
        teacher,
        ctx.require_train_data(),
        eval_data=ctx.monitor_data,
        checkpoint_dir=out,
        resume=ctx.resume,
        cache_path=out / CACHE_NAME,
        verbose=ctx.verbose,
    )
    test = ctx.test_data
    ctx.record(
        DistillResult(
            teacher=desc,
            loss=cfg.loss,
            temperature=cfg.temperature,
            alpha=cfg.alpha,
            history=result.history,
            resumed_from=result.resumed_from,
            teacher_accuracy=evaluate(teacher, test).accuracy if test is not None else None,
            student_accuracy=evaluate(ctx.model, test).accuracy if test is not None else None,
        )
    )
