"""Lightweight students: smaller MLPs and LeNets, separable convolutions, thinner zoo models.

* Thinner networks as distillation students: Hinton et al., 2015 (784-800-800-10
  distilled from 784-1200-1200-10); Romero et al., 2015 (FitNets).
* Depthwise-separable convolutions: Howard et al., 2017, "MobileNets": a k x k
  convolution ``Cin -> Cout`` (``k^2 Cin Cout`` weights) becomes a depthwise
  ``k x k`` per-channel filter plus a pointwise ``1 x 1`` mix (``k^2 Cin + Cin Cout``).
* Width multipliers: Sandler et al., 2018, "MobileNetV2".

Every builder returns a model made by :func:`slimtorch.models.create_model`, so it
carries a zoo spec and can be saved and rebuilt from its file (LeNet-5
students of any width are the zoo's ``lenet5_slim``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from slimtorch.core.errors import ConfigError, UnsupportedModelError
from slimtorch.models import create_model

MNIST_SHAPE = (1, 1, 28, 28)


def small_mlp(hidden: Sequence[int] = (800, 800), dropout: float = 0.0, num_classes: int = 10) -> nn.Module:
    """An MLP student, e.g. Hinton et al.'s 784-800-800-10 (the default)."""
    return create_model("mlp", hidden=list(hidden), dropout=dropout, num_classes=num_classes)


def small_lenet5(conv1: int = 6, conv2: int = 15, fc: int = 150, num_classes: int = 10) -> nn.Module:
    """A narrow LeNet-5 (default: 30 % of the Caffe widths)."""
    return create_model("lenet5_slim", conv1=conv1, conv2=conv2, fc=fc, num_classes=num_classes)


def separable_lenet5(conv1: int = 20, conv2: int = 50, fc: int = 500, num_classes: int = 10) -> nn.Module:
    """LeNet-5 with its second convolution depthwise-separable (25,000 -> 1,520 conv2 weights)."""
    return create_model("lenet5_slim", conv1=conv1, conv2=conv2, fc=fc, separable=True, num_classes=num_classes)


def mobilenet_v2_student(width_mult: float = 0.5, num_classes: int = 1000) -> nn.Module:
    """MobileNetV2 with a width multiplier (channels scaled, rounded to multiples of 8)."""
    return create_model("mobilenet_v2", width_mult=width_mult, num_classes=num_classes)


def _scale(width: int, factor: float) -> int:
    return max(1, round(width * factor))


# Zero-argument presets expressed as their parametric builder's arguments.
_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "mlp_784_128_10": ("mlp", {"hidden": [128]}),
    "lenet300_100": ("mlp", {"hidden": [300, 100]}),
    "mlp_1200x2": ("mlp", {"hidden": [1200, 1200], "dropout": 0.5, "input_dropout": 0.2}),
    "mlp_800x2": ("mlp", {"hidden": [800, 800]}),
    "lenet5": ("lenet5_slim", {}),
    "resnet20": ("resnet_cifar", {"depth": 20}),
    "resnet56": ("resnet_cifar", {"depth": 56}),
}


def thinner_spec(model_name_or_spec: str | dict | nn.Module, factor: float) -> dict[str, Any]:
    """The zoo spec of a model ``factor`` times as wide (see :func:`thinner`)."""
    if not 0 < factor <= 1:
        raise ConfigError(f"thinner: factor must be in (0, 1], got {factor!r}", field="factor")
    spec = model_name_or_spec
    if isinstance(spec, nn.Module):
        spec = getattr(spec, "slimtorch_spec", None)
        if spec is None:
            raise UnsupportedModelError(
                "thinner: the model has no zoo spec (slimtorch_spec); build the student yourself or "
                "pass a zoo name such as 'lenet5'"
            )
    if isinstance(spec, str):
        spec = {"name": spec, "kwargs": {}}
    name, kwargs = spec["name"], dict(spec.get("kwargs", {}))
    if name in _PRESETS:
        if kwargs and name != "lenet5":
            raise ConfigError(f"thinner: preset '{name}' takes no arguments, got {sorted(kwargs)}", field="kwargs")
        base_name, base_kwargs = _PRESETS[name]
        if name == "lenet5":
            if not kwargs.pop("conv_relu", True):
                raise UnsupportedModelError("thinner: lenet5(conv_relu=False) has no slim variant")
        name, kwargs = base_name, {**base_kwargs, **kwargs}
    if name == "mlp":
        kwargs["hidden"] = [_scale(h, factor) for h in kwargs.get("hidden", [128])]
    elif name == "lenet5_slim":
        for key, default in (("conv1", 20), ("conv2", 50), ("fc", 500)):
            kwargs[key] = _scale(kwargs.get(key, default), factor)
    elif name == "mobilenet_v2":
        kwargs["width_mult"] = kwargs.get("width_mult", 1.0) * factor
        kwargs.pop("pretrained", None)
    elif name == "resnet_cifar":
        kwargs["width"] = _scale(kwargs.get("width", 16), factor)
    else:
        raise UnsupportedModelError(
            f"thinner: don't know how to thin zoo model '{name}'; supported: mlp, lenet5(_slim), "
            f"mobilenet_v2, resnet_cifar and the presets {', '.join(sorted(_PRESETS))}"
        )
    return {"name": name, "kwargs": kwargs}


def thinner(model_name_or_spec: str | dict | nn.Module, factor: float) -> nn.Module:
    """A freshly initialised, ``factor`` times thinner version of a zoo model.

    Hidden widths (MLP), channels (LeNet-5, CIFAR ResNet) or ``width_mult``
    (MobileNetV2) are multiplied by ``factor`` and rounded; input and output sizes
    are kept. ``thinner("lenet5", 0.3)`` keeps 30 % of the channels (6-15-150).

    Args:
        model_name_or_spec: a zoo name (``"lenet5"``), a spec ``{"name", "kwargs"}``,
            or a model built by ``create_model`` (its ``slimtorch_spec`` is used).
        factor: width multiplier in (0, 1].
    """
    spec = thinner_spec(model_name_or_spec, factor)
    return create_model(spec["name"], **spec["kwargs"])
