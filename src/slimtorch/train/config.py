"""Training configs: optimizer, learning-rate schedule and the loop itself."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from slimtorch.core.config import FrozenConfig


class OptimizerConfig(FrozenConfig):
    """Optimizer choice and hyper-parameters."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    nesterov: bool = False


class ScheduleConfig(FrozenConfig):
    """Learning-rate schedule, stepped once per batch.

    ``cosine`` decays to ``min_lr_ratio`` × lr over the run; ``step`` multiplies by
    ``gamma`` every ``step_epochs``; ``constant`` keeps the lr. ``warmup_epochs``
    ramps linearly from 0 first.
    """

    name: Literal["constant", "cosine", "step"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    step_epochs: int = Field(10, ge=1)
    gamma: float = Field(0.1, gt=0, le=1)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)


class TrainConfig(FrozenConfig):
    """Everything that decides a training run's result.

    Attributes:
        epochs: passes over the training set.
        batch_size: examples per optimizer step.
        seed: seeds parameter init done *inside* fit (none), shuffling and dropout.
        jitter: random translation of images by up to this many pixels (Hinton et al.
            2015 use ±2 on MNIST); 0 disables it.
        label_smoothing: passed to cross-entropy.
        freeze_bn: keep BatchNorm layers in eval mode (running statistics frozen; their
            affine weights still train). For short fine-tuning on little data, whose batch
            statistics would overwrite those learned on the full training set.
        grad_clip: max global gradient norm, or None.
        max_norm: after every optimizer step, rescale each unit's incoming weight vector
            (a row of a ``Linear`` weight, one output filter of a ``Conv`` weight) whose L2
            norm exceeds this value back onto the ball of that radius; None disables it.
            The max-norm constraint of Srivastava et al. 2014 ("Dropout", section 5.1, c of
            about 3-4) that Hinton et al. 2015 used for their MNIST teacher: it bounds the
            weights, so dropout nets can train with a high learning rate without diverging.
        eval_every: evaluate on the eval set every N epochs (0: only at the end).
    """

    epochs: int = Field(10, ge=0)
    batch_size: int = Field(128, ge=1)
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    seed: int = 0
    jitter: int = Field(0, ge=0, le=8)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    freeze_bn: bool = False
    grad_clip: float | None = Field(None, gt=0)
    max_norm: float | None = Field(None, gt=0)
    eval_every: int = Field(1, ge=0)
    eval_batch_size: int = Field(1000, ge=1)
