"""Hooks into the training loop.

Transforms that act *during* training (gradual pruning schedules, QAT observers
freezing, KD temperature schedules) are callbacks rather than loop variants, so
there is one loop to keep correct.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class TrainState:
    """What a callback can see. ``step`` counts optimizer steps since the start of fit."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int = 0
    step: int = 0
    steps_per_epoch: int = 0
    epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


class Callback:
    """Base class; override what you need. State that must survive resume goes in state_dict."""

    def on_train_begin(self, state: TrainState) -> None: ...

    def on_step_begin(self, state: TrainState) -> None: ...

    def on_step_end(self, state: TrainState) -> None: ...

    def on_epoch_end(self, state: TrainState) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
