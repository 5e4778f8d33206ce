"""Network slimming's sparsity on BatchNorm scales (Liu et al., 2017).

Training with an L1 penalty on every BN ``gamma`` drives unimportant channels'
scales towards zero, so the ``bn`` importance then removes channels that carry
almost nothing. Two equivalent ways in: a loss wrapper for :func:`slimtorch.train.fit`,
or a callback applying the L1 proximal step after each optimizer step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.train import Callback, TrainState

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _bn_scales(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]


def bn_l1_loss(penalty: float = 1e-4, base: LossFn | None = None) -> LossFn:
    """``base(model, x, y) + penalty * sum(|gamma|)`` over all BatchNorm layers (base: cross-entropy)."""
    if penalty < 0:
        raise ConfigError(f"penalty must be >= 0, got {penalty}", field="penalty")

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        main = base(model, x, y) if base else nn.functional.cross_entropy(model(x), y)
        return main + penalty * sum(g.abs().sum() for g in _bn_scales(model))

    return loss


class BNL1Callback(Callback):
    """After each step, shrink BN scales towards 0 by ``lr * penalty`` (L1 proximal step)."""

    def __init__(self, penalty: float = 1e-4):
        if penalty < 0:
            raise ConfigError(f"penalty must be >= 0, got {penalty}", field="penalty")
        self.penalty = penalty

    @torch.no_grad()
    def on_step_end(self, state: TrainState) -> None:
        step = state.optimizer.param_groups[0]["lr"] * self.penalty
        for g in _bn_scales(state.model):
            g.copy_(g.sign() * (g.abs() - step).clamp_min(0))
