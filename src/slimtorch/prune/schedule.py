"""Pruning schedules: iterative prune → retrain, and gradual AGP during training.

* Iterative (Han et al. 2015, "Learning both weights and connections"): prune to
  an intermediate sparsity, retrain the survivors (Han retrain at 1/10 of the
  original learning rate: see :func:`retrain_config`), repeat. Masks are
  monotone, so each round only removes more.
* AGP, automated gradual pruning (Zhu & Gupta 2017, "To prune or not to
  prune"): during training, every Δt steps from t0 the sparsity target is

      s_t = s_f + (s_i − s_f) (1 − (t − t0) / (n Δt))³,

  which prunes fast while redundancy is high and slowly near the end. It is a
  training :class:`~slimtorch.train.Callback`, so it works with any loss (KD, QAT).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from torch import nn
from torch.utils.data import Dataset

from slimtorch.core.config import FrozenConfig, coerce
from slimtorch.core.errors import ConfigError
from slimtorch.core.inplace import working_model
from slimtorch.prune.config import PruneConfig
from slimtorch.prune.criteria import LossFn
from slimtorch.prune.mask import zero_optimizer_state
from slimtorch.prune.prune import attach_masks, prune
from slimtorch.prune.report import total_sparsity
from slimtorch.prune.select import FilterFn
from slimtorch.train import Callback, TrainConfig, TrainState, evaluate, fit


def cubic_progress(p: float) -> float:
    """Zhu & Gupta's schedule as a fraction of the way from s_i to s_f: ``1 − (1 − p)³``."""
    p = min(max(p, 0.0), 1.0)
    return 1.0 - (1.0 - p) ** 3


def agp_sparsity(step: int, final: float, initial: float, begin: int, end: int, frequency: int) -> float:
    """Target sparsity at optimizer step ``step`` (0 before ``begin``; held between updates).

    Updates happen at ``begin + k · frequency`` and at ``end``; ``end − begin`` is n Δt.
    """
    if step < begin:
        return 0.0
    if step >= end:
        return final
    t = begin + ((step - begin) // frequency) * frequency
    return final + (initial - final) * (1.0 - (t - begin) / (end - begin)) ** 3


class AGPConfig(FrozenConfig):
    """When gradual pruning runs, in epochs of the surrounding training run.

    Attributes:
        initial_sparsity: s_i, applied at ``begin_epoch``.
        begin_epoch / end_epoch: t0 and t0 + nΔt (fractions allowed); leave a few
            epochs after ``end_epoch`` for the network to recover at the final sparsity.
        frequency: Δt, optimizer steps between mask updates.
    """

    initial_sparsity: float = Field(0.0, ge=0, lt=1)
    begin_epoch: float = Field(0.0, ge=0)
    end_epoch: float = Field(1.0, gt=0)
    frequency: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _order(self) -> AGPConfig:
        if self.end_epoch <= self.begin_epoch:
            raise ValueError(f"end_epoch ({self.end_epoch}) must be after begin_epoch ({self.begin_epoch})")
        return self


class AGPCallback(Callback):
    """Gradual magnitude (or any criterion) pruning during :func:`slimtorch.train.fit`.

    Construct it *before* calling ``fit``: it installs all-ones masks on the selected
    layers right away so the optimizer and checkpoints see the final parameter
    structure (that is what makes ``fit(..., resume=True)`` work).

    Example::

        cb = AGPCallback(model, PruneConfig(sparsity=0.95), AGPConfig(end_epoch=6, frequency=50))
        fit(model, train, TrainConfig(epochs=10), callbacks=[cb])
    """

    def __init__(
        self,
        model: nn.Module,
        config: PruneConfig,
        agp: AGPConfig | None = None,
        data: Any = None,
        loss_fn: LossFn | None = None,
        filter_fn: FilterFn | None = None,
    ):
        self.model, self.config, self.agp = model, config, agp or AGPConfig()
        self.data, self.loss_fn, self.filter_fn = data, loss_fn, filter_fn
        self.begin = self.end = 0
        self.history: list[dict[str, float]] = []
        attach_masks(model, config, filter_fn)

    def on_train_begin(self, state: TrainState) -> None:
        spe = state.steps_per_epoch
        self.begin, self.end = round(self.agp.begin_epoch * spe), round(self.agp.end_epoch * spe)
        if self.end > state.epochs * spe:
            raise ConfigError(
                f"AGP end_epoch={self.agp.end_epoch} is after the end of training ({state.epochs} epochs); "
                "lower end_epoch or train longer",
                field="agp.end_epoch",
            )
        if state.step == self.begin:
            self._update(state)

    def on_step_end(self, state: TrainState) -> None:
        t = state.step
        if self.begin <= t <= self.end and ((t - self.begin) % self.agp.frequency == 0 or t == self.end):
            self._update(state)

    def progress(self, step: int) -> float:
        """Fraction c of the way from s_i to s_f (per layer) at ``step``."""
        # With s_i = 0 and s_f = 1 the schedule value *is* the progress 1 − (1 − p)³,
        # held between updates; each layer then interpolates to its own target.
        return agp_sparsity(step, 1.0, 0.0, self.begin, self.end, self.agp.frequency)

    def _update(self, state: TrainState) -> None:
        target = self.config.at_progress(self.progress(state.step), self.agp.initial_sparsity)
        prune(self.model, target, self.data, loss_fn=self.loss_fn, filter_fn=self.filter_fn, inplace=True)
        zero_optimizer_state(state.optimizer, self.model)
        self.history.append(
            {
                "step": state.step,
                "target": target.sparsity,
                "weight_sparsity": total_sparsity(self.model)["weight_sparsity"],
            }
        )

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))


def retrain_config(train_config: TrainConfig, lr_factor: float = 0.1, epochs: int | None = None) -> TrainConfig:
    """Han et al.'s retraining recipe: the same training at ``lr_factor`` × the learning rate."""
    opt = train_config.optimizer.replace(lr=train_config.optimizer.lr * lr_factor)
    return train_config.replace(optimizer=opt.to_dict(), epochs=epochs if epochs is not None else train_config.epochs)


def iterative_progress(config: PruneConfig, steps: int | Sequence[float]) -> list[float]:
    """Progress fractions (for :meth:`PruneConfig.at_progress`) of each prune → retrain round.

    ``steps`` is a number of rounds (targets follow the cubic AGP curve, ending at the
    config) or an increasing list of sparsities for ``config.sparsity`` (per-layer
    targets scale in proportion); the config's own target is appended if missing.
    """
    if isinstance(steps, int):
        if steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}", field="steps")
        return [cubic_progress(k / steps) for k in range(1, steps + 1)]
    values = [float(s) for s in steps]
    if not values or config.sparsity <= 0:
        raise ConfigError("steps must be a non-empty list of sparsities up to config.sparsity > 0", field="steps")
    if any(b <= a for a, b in itertools.pairwise(values)) or values[0] <= 0 or values[-1] > config.sparsity:
        raise ConfigError(
            f"steps must increase strictly within (0, sparsity={config.sparsity}], got {values}", field="steps"
        )
    fractions = [v / config.sparsity for v in values]
    return fractions if fractions[-1] == 1.0 else [*fractions, 1.0]


def prune_iterative(
    model: nn.Module,
    config: PruneConfig | dict | None,
    train_data: Dataset,
    finetune: TrainConfig | dict | None,
    steps: int | Sequence[float] = 3,
    *,
    data: Any = None,
    eval_data: Dataset | None = None,
    loss_fn: LossFn | None = None,
    filter_fn: FilterFn | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    verbose: bool = True,
    log: list[dict[str, Any]] | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Han et al.'s iterative pruning: (prune to the next target → fine-tune) × rounds.

    Args:
        config: the final target (sparsity, per-layer overrides, criterion).
        train_data: what each round fine-tunes on.
        finetune: training config of *each* round (see :func:`retrain_config`).
        steps: rounds, or a list of sparsities (see :func:`iterative_progress`).
        data: scoring data for data-driven criteria (default ``train_data``).
        eval_data: evaluated after every round (recorded in ``log``).
        checkpoint_dir: each round checkpoints under ``checkpoint_dir/round_K``;
            with ``resume=True`` finished rounds are skipped, bit-exactly.
        log: if given, one dict per round is appended (target, sparsity, accuracy, epochs).
        inplace: prune and train ``model`` itself instead of a deep copy.

    Returns:
        The pruned, fine-tuned model (``model`` itself when ``inplace``), still masked
        (call :func:`slimtorch.prune.finalize` when done).
    """
    config, finetune = coerce(PruneConfig, config), coerce(TrainConfig, finetune, "finetune")
    fractions = iterative_progress(config, steps)
    model = working_model(model, inplace)
    for k, c in enumerate(fractions, start=1):
        target = config.at_progress(c)
        prune(
            model, target, data if data is not None else train_data, loss_fn=loss_fn, filter_fn=filter_fn, inplace=True
        )
        ckpt = Path(checkpoint_dir) / f"round_{k}" if checkpoint_dir else None
        result = fit(
            model,
            train_data,
            finetune,
            eval_data=eval_data,
            loss_fn=loss_fn,
            checkpoint_dir=ckpt,
            resume=resume,
            verbose=verbose,
        )
        record: dict[str, Any] = {
            "round": k,
            "target_sparsity": target.sparsity,
            "weight_sparsity": total_sparsity(model)["weight_sparsity"],
            "epochs": finetune.epochs,
            "resumed_from": result.resumed_from,
        }
        if eval_data is not None:
            record["accuracy"] = evaluate(model, eval_data).accuracy
        if log is not None:
            log.append(record)
    return model
