"""Distillation config: which loss, temperature, mixing weight, feature hints, caching.

Convention (Hinton, Vinyals & Dean, 2015, "Distilling the knowledge in a neural
network"): ``alpha`` weights the *soft* (teacher) term, ``1 - alpha`` the hard-label
cross-entropy::

    loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

The ``T^2`` factor keeps the soft term's gradient magnitude roughly independent of
``T`` (its gradient scales as ``1 / T^2`` otherwise), so ``alpha`` means the same
thing at every temperature. ``loss="mse"`` is seed 000's objective, mean squared
error between the logits (no temperature): ``alpha * MSE(s, t) + (1 - alpha) * CE``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from slimtorch.core.config import FrozenConfig
from slimtorch.train.config import TrainConfig


class FeaturePair(FrozenConfig):
    """One hint: match the student's ``student`` layer output to the teacher's ``teacher`` layer.

    Layers are named by their fully qualified name (``model.get_submodule(fqn)``). A
    learned adapter (1x1 conv for ``(N, C, H, W)`` features, linear for ``(N, C)``)
    maps student features to the teacher's width; it is trained with the student and
    discarded afterwards (Romero et al., 2015, "FitNets: hints for thin deep nets").
    """

    student: str = Field(min_length=1)
    teacher: str = Field(min_length=1)
    weight: float = Field(1.0, ge=0)


class DistillConfig(FrozenConfig):
    """Knowledge-distillation settings.

    Attributes:
        loss: ``"kl"`` (Hinton soft targets, default) or ``"mse"`` (logit matching, seed 000).
        temperature: softmax temperature ``T`` of the ``"kl"`` loss (ignored by ``"mse"``).
        alpha: weight of the soft term; ``1 - alpha`` weights hard-label cross-entropy.
        features: hint pairs added as ``weight * MSE(adapter(student_feat), teacher_feat)``.
        cache_teacher: compute teacher outputs once, store them in a safetensors file keyed
            by dataset index, and read them back each epoch. Needs identical inputs every
            epoch, so it cannot be combined with ``train.jitter``.
        train: the training run (epochs, optimizer, schedule, seed, jitter).
    """

    loss: Literal["kl", "mse"] = "kl"
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1)
    features: tuple[FeaturePair, ...] = ()
    cache_teacher: bool = False
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _cache_needs_fixed_inputs(self) -> DistillConfig:
        if self.cache_teacher and self.train.jitter:
            raise ValueError(
                f"cache_teacher=True needs the same inputs every epoch but train.jitter={self.train.jitter} "
                "augments them; set train.jitter=0 or cache_teacher=False"
            )
        return self
