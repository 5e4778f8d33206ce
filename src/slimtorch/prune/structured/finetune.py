"""Iterative structured pruning: prune a step, fine-tune, repeat (Li et al., 2017; Molchanov et al., 2019).

Fine-tuning uses knowledge distillation from the unpruned model when a
:class:`slimtorch.distill.DistillConfig` is given (Hinton et al., 2015): the
dense network's soft outputs guide the thinner one back.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from slimtorch.core.config import coerce
from slimtorch.core.errors import ConfigError
from slimtorch.core.inplace import working_model
from slimtorch.prune.structured.api import prune_channels
from slimtorch.prune.structured.config import StructuredConfig
from slimtorch.train import TrainConfig, evaluate, fit


def step_ratios(ratio: float, steps: int) -> list[float]:
    """Per-step ratios (of the channels left) whose product keeps ``1 - ratio`` after ``steps``."""
    if steps == 1:
        return [ratio]  # exactly: 1 - (1 - ratio) can differ in the last bit, and so round a layer's count apart
    kept = [1 - ratio * i / steps for i in range(steps + 1)]
    return [1 - kept[i + 1] / kept[i] for i in range(steps)]


def prune_finetune(
    model: nn.Module,
    config: StructuredConfig | dict | None,
    example_input: torch.Tensor,
    train_data: Dataset,
    train: TrainConfig | dict | None,
    *,
    steps: int = 1,
    distill: Any = None,
    teacher: nn.Module | None = None,
    eval_data: Dataset | None = None,
    after_prune: Callable[[nn.Module], bool | None] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    verbose: bool = True,
    log: list | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Prune ``config.ratio`` of the channels in ``steps`` rounds, fine-tuning after each.

    Args:
        distill: a ``DistillConfig`` (or dict) to fine-tune with KD; its ``train`` is replaced
            by ``train``. The teacher is ``teacher`` or a copy of ``model`` before pruning.
        after_prune: called with the model after each round's pruning, before that round's
            fine-tuning; returning ``False`` means it is good enough as it is, and the round is
            not fine-tuned (e.g. a :class:`~slimtorch.train.evaluate.FinetuneGate`).
        log: if given, one dict per round (sizes, accuracy; ``finetuned``: False for a round
            ``after_prune`` left as it was) is appended.
        inplace: prune and train ``model`` itself instead of a deep copy.

    Returns:
        The pruned, fine-tuned model (``model`` itself when ``inplace``).
    """
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}", field="steps")
    config, train = coerce(StructuredConfig, config), coerce(TrainConfig, train, "train")
    if distill is not None:
        from slimtorch.distill import DistillConfig
        from slimtorch.distill import distill as run_distill

        kd = DistillConfig.from_dict(distill, "distill") if isinstance(distill, dict) else distill
        kd = kd.replace(train=train.to_dict())
        teacher = teacher if teacher is not None else copy.deepcopy(model).eval()
    model = working_model(model, inplace)
    for i, r in enumerate(step_ratios(config.ratio, steps)):
        model = prune_channels(model, config.replace(ratio=r), example_input, data=train_data, inplace=True)
        tune = after_prune is None or after_prune(model) is not False
        ckpt = Path(checkpoint_dir) / f"round{i}" if checkpoint_dir and tune else None
        if ckpt is not None:
            ckpt.mkdir(parents=True, exist_ok=True)
        if tune and distill is not None:
            model = run_distill(
                model,
                kd,
                teacher,
                train_data,
                eval_data=eval_data,
                checkpoint_dir=ckpt,
                resume=resume,
                verbose=verbose,
                inplace=True,
            )
        elif tune:
            fit(model, train_data, train, eval_data=eval_data, checkpoint_dir=ckpt, resume=resume, verbose=verbose)
        if log is not None:
            rec = {"round": i + 1, "step_ratio": r, "sizes": getattr(model, "slimtorch_structured", {})}
            if not tune:
                rec["finetuned"] = False
            if eval_data is not None:
                rec["accuracy"] = evaluate(model, eval_data).accuracy
            log.append(rec)
    return model
