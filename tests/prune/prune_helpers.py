"""Tiny models and data for the pruning tests."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset


class Encoded(nn.Module):
    """Written the way a user writes a model: an encoder block, a residual add, own forward."""

    def __init__(self, d_in: int = 16, width: int = 32, n_out: int = 4):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.LayerNorm(width))
        self.mix = nn.Linear(width, width)
        self.head = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        h = h + torch.relu(self.mix(h))  # residual
        return self.head(h)

    def example_inputs(self) -> torch.Tensor:
        return torch.randn(8, 16)


class TinyConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.fc = nn.Linear(8 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(nn.functional.max_pool2d(x, 2)))
        return self.fc(torch.flatten(x, 1))


def vector_data(n: int = 128, d_in: int = 16, n_out: int = 4, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    w = torch.randn(d_in, n_out, generator=g)
    return TensorDataset(x, (x @ w).argmax(1))


def image_data(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g))


def make(cls=Encoded, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cls()
