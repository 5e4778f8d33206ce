"""Models written the way users write them (own names, functional calls, residuals).

Transforms are tested on these as well as on the zoo.
"""

from __future__ import annotations

import torch
from torch import nn


class UserNet(nn.Module):
    """A model as a user writes it: own attribute names, functional calls, a residual add."""

    def __init__(self, width: int = 16, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(width * 7 * 7, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.nn.functional.max_pool2d(x, 2)
        x = x + self.block(x)  # residual
        x = torch.nn.functional.max_pool2d(x, 2)
        return self.head(torch.flatten(x, 1))


class ZeroMask(nn.Module):
    """Stand-in for a pruning-mask parametrization (``w * mask``), independent of slimtorch.prune."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask
