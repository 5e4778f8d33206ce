"""Hand-written models for the structured-pruning tests (their own forward, control flow)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ResCatNet(nn.Module):
    """Residual add + torch.cat + flatten -> linear, with a data-dependent branch."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.a = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(16)
        self.b = nn.Conv2d(16, 8, 1)
        self.c = nn.Conv2d(16, 8, 3, padding=1)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.fc1 = nn.Linear(32 * 4 * 4, 24)
        self.fc2 = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        y = F.relu(self.bn_a(self.a(x)) + x)  # residual: stem, a, bn, bn_a coupled
        if y.shape[-1] > 8:  # Python control flow
            y = F.max_pool2d(y, 2)
        z = torch.cat([self.b(y), self.c(y), y], 1)  # offsets 0, 8, 16
        z = F.max_pool2d(F.relu(self.dw(z)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(z, 1))))


class ShuffleNet(nn.Module):
    """Channel shuffle: a view that mixes channels with groups."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = self.conv1(x)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.fc(self.conv2(x).mean((2, 3)))


class Scale(nn.Module):
    """A user layer with a per-channel parameter."""

    def __init__(self, c):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(c, 1, 1))

    def forward(self, x):
        return x * self.gamma


class ScaleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3)
        self.scale = Scale(8)
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.conv2(self.scale(self.conv1(x))).mean((2, 3)))


class InplaceNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = self.conv1(x)
        y = self.conv2(x)
        x.relu_()  # modifies a tensor conv2 already read
        return self.fc((x + y).mean((2, 3)))


def example(shape=(2, 3, 16, 16)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))
