"""Tiny models written the way users write them (own forward, functional ops)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvUserNet(nn.Module):
    """conv-bn-relu blocks with a depthwise conv, attributes used in forward (no Sequential)."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.bn2 = nn.BatchNorm2d(8)
        self.pw = nn.Conv2d(8, 16, 1)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.dw(x)))
        x = self.pw(x).relu()
        return self.head(x.mean((2, 3)))


class MLPUserNet(nn.Module):
    def __init__(self, d: int = 32, num_classes: int = 4):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(d, 64), nn.Linear(64, 64), nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics so folding has something to get wrong."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def conv_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_bn(ConvUserNet(), seed)


def scaled_dw_net(seed: int = 0) -> nn.Module:
    """A net whose depthwise channels have ranges 1000x apart: per-tensor grids need CLE."""
    m = conv_net(seed)
    with torch.no_grad():
        m.conv1.weight.mul_(torch.logspace(-2, 1, 8).view(8, 1, 1, 1))
    return m
