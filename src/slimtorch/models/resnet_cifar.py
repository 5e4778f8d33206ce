"""ResNet for CIFAR-10 (He et al., 2016, "Deep residual learning for image recognition", Sec. 4.2).

Depth ``6n + 2``: a 3x3 stem, three stages of ``n`` basic blocks at widths
16/32/64 (times ``width / 16``) and feature maps 32/16/8, global average
pooling and one linear layer. ResNet-20 is n=3, ResNet-56 n=9.

Shortcuts use the paper's **option B** (1x1 conv + BN where the shape changes)
instead of option A (zero-padded identity): option A's padding ties the block's
output channels to the input's in a parameter-free way that structured pruning
cannot express, while a 1x1 projection is an ordinary layer whose channels can
be removed like any other. It adds ~1% parameters (ResNet-20: 0.27M → 0.28M).
"""

from __future__ import annotations

import torch
from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.models.registry import register_model


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, inp: int, oup: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, oup, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(oup)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(oup, oup, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(oup)
        self.relu2 = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or inp != oup:  # option B projection
            self.downsample = nn.Sequential(nn.Conv2d(inp, oup, 1, stride, bias=False), nn.BatchNorm2d(oup))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + identity)


class ResNetCifar(nn.Module):
    """CIFAR ResNet on ``(N, 3, 32, 32)`` images; outputs ``(N, num_classes)`` logits."""

    example_input_shape = (1, 3, 32, 32)

    def __init__(self, depth: int = 20, num_classes: int = 10, width: int = 16):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110…), got {depth}", field="depth")
        if width < 1 or num_classes < 1:
            raise ConfigError(f"need width >= 1 and num_classes >= 1, got {width}, {num_classes}", field="width")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        widths = (width, 2 * width, 4 * width)
        inp = width
        for i, w in enumerate(widths, start=1):
            blocks = [BasicBlock(inp if j == 0 else w, w, stride=1 if (i == 1 or j) else 2) for j in range(n)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            inp = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


@register_model("resnet_cifar")
def resnet_cifar(depth: int = 20, num_classes: int = 10, width: int = 16) -> ResNetCifar:
    """CIFAR ResNet of depth ``6n+2`` with option-B shortcuts; ``width`` is the first stage's channels."""
    return ResNetCifar(depth=depth, num_classes=num_classes, width=width)


@register_model("resnet20")
def resnet20() -> ResNetCifar:
    """ResNet-20 for CIFAR-10 (3 blocks per stage)."""
    return resnet_cifar(20)


@register_model("resnet56")
def resnet56() -> ResNetCifar:
    """ResNet-56 for CIFAR-10 (9 blocks per stage)."""
    return resnet_cifar(56)
