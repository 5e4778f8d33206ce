"""Pruning with a schedule: one-shot (+ fine-tuning), iterative (Han et al. 2015) or AGP (Zhu & Gupta 2017).

One function for the choice between the three, so the recipe stage ``prune`` and
``slimtorch auto``'s candidates run the same code: a schedule fixed in one place
behaves the same in a recipe and in a search.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

from pydantic import model_validator
from torch import nn
from torch.utils.data import Dataset

from slimtorch.core.config import FrozenConfig, coerce
from slimtorch.core.inplace import working_model
from slimtorch.prune.config import PruneConfig
from slimtorch.prune.criteria import LossFn
from slimtorch.prune.prune import prune
from slimtorch.prune.schedule import AGPCallback, AGPConfig, prune_iterative
from slimtorch.train import TrainConfig, fit


class PruneScheduleConfig(FrozenConfig):
    """What to prune and on which schedule.

    Attributes:
        prune: the (final) pruning target.
        schedule: ``one_shot`` (prune, then optionally fine-tune), ``iterative``
            (``steps`` rounds of prune → ``finetune``) or ``agp`` (gradual pruning
            during one ``finetune`` run, timed by ``agp``).
        steps: rounds (int) or list of sparsities, for ``iterative``.
        finetune: training config (per round for ``iterative``); required for
            ``iterative`` and ``agp``, optional for ``one_shot``.
        agp: AGP timing (begin/end epoch, update frequency).
    """

    prune: PruneConfig = PruneConfig()
    schedule: Literal["one_shot", "iterative", "agp"] = "one_shot"
    steps: int | list[float] = 3
    finetune: TrainConfig | None = None
    agp: AGPConfig = AGPConfig()

    @model_validator(mode="after")
    def _needs_finetune(self) -> PruneScheduleConfig:
        if self.schedule != "one_shot" and self.finetune is None:
            raise ValueError(f"schedule '{self.schedule}' trains while pruning: set 'finetune' (a training config)")
        return self


def prune_scheduled(
    model: nn.Module,
    config: PruneScheduleConfig | dict | None = None,
    train_data: Dataset | None = None,
    data: Any = None,
    *,
    eval_data: Dataset | None = None,
    loss_fn: LossFn | None = None,
    after_prune: Callable[[nn.Module], bool | None] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    verbose: bool = True,
    log: dict[str, Any] | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Prune ``model`` to ``config.prune`` on ``config.schedule``; masks stay on (later training keeps them).

    Args:
        train_data: what fine-tuning trains on (needed when ``config.finetune`` is set).
        data: scoring data for data-driven criteria (default ``train_data``).
        eval_data: monitored while fine-tuning.
        loss_fn: fine-tuning loss (e.g. a distillation loss); default cross-entropy.
        after_prune: called with the one-shot pruned model before any fine-tuning; returning
            ``False`` means it is good enough as it is: ``one_shot`` skips the fine-tuning,
            ``agp`` (which prunes a copy for this check) returns that copy instead of pruning
            gradually. Not called for ``iterative``.
        log: if given, filled with ``finetune_epochs`` and, by schedule, ``rounds``
            (iterative: one dict per round) or ``agp_updates``.
        inplace: prune and train ``model`` itself instead of a deep copy.
    """
    config = coerce(PruneScheduleConfig, config)
    log = {} if log is None else log
    model = working_model(model, inplace)
    data = train_data if data is None else data
    ft = config.finetune
    train = dict(eval_data=eval_data, loss_fn=loss_fn, checkpoint_dir=checkpoint_dir, resume=resume, verbose=verbose)
    if config.schedule == "one_shot":
        model = prune(model, config.prune, data, inplace=True)
        go_on = after_prune(model) if after_prune is not None else None
        epochs = 0
        if ft is not None and go_on is not False:
            fit(model, _train_data(train_data), ft, **train)
            epochs = ft.epochs
    elif config.schedule == "iterative":
        rounds: list[dict[str, Any]] = []
        model = prune_iterative(
            model, config.prune, _train_data(train_data), ft, config.steps, data=data, log=rounds, inplace=True, **train
        )
        log["rounds"] = rounds
        epochs = ft.epochs * len(rounds)
    else:
        if after_prune is not None:
            probe = prune(model, config.prune, data)  # a copy: model goes on to the gradual schedule if needed
            if after_prune(probe) is False:
                log["finetune_epochs"] = 0
                return probe
        cb = AGPCallback(model, config.prune, config.agp, data=data)
        fit(model, _train_data(train_data), ft, callbacks=[cb], **train)
        log["agp_updates"] = len(cb.history)
        epochs = ft.epochs
    log["finetune_epochs"] = epochs
    return model


def _train_data(train_data: Dataset | None) -> Dataset:
    if train_data is None:
        raise ValueError("pruning with fine-tuning needs training data")
    return train_data
