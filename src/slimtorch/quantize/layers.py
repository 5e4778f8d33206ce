"""The layers a quantization transform works on, and their bit widths (selection: :mod:`slimtorch.core.layers`)."""

from __future__ import annotations

import fnmatch

import torch
from torch import nn
from torch.nn.utils import parametrize

from slimtorch.core.layers import FilterFn  # noqa: F401  (the verbs' filter_fn type)

# The layers quantize_model, kmeans_share and clip_weights select among (slimtorch.core.layers.select).
QUANTIZABLE = (nn.Linear, nn.modules.conv._ConvNd)


def bits_for(name: str, default: int, per_layer: dict[str, int]) -> int:
    """Bit width of layer ``name``: an exact ``per_layer`` key wins, then the first matching pattern."""
    if name in per_layer:
        return per_layer[name]
    for pattern, bits in per_layer.items():
        if fnmatch.fnmatchcase(name, pattern):
            return bits
    return default


def check_per_layer(model: nn.Module, per_layer: dict[str, int], field: str = "per_layer") -> None:
    """Every ``per_layer`` key must name (or match) a layer: a typo must not silently do nothing."""
    from slimtorch.core.errors import ConfigError

    names = [n for n, m in model.named_modules() if isinstance(m, QUANTIZABLE)]
    for key in per_layer:
        if not any(n == key or fnmatch.fnmatchcase(n, key) for n in names):
            raise ConfigError(
                f"'{field}.{key}' matches no Linear/Conv layer; layers are: {', '.join(names)}", f"{field}.{key}"
            )


def pre_weight(module: nn.Module, stop_type: type) -> torch.Tensor:
    """The weight as it enters the first parametrization of type ``stop_type`` (the float weight it quantizes)."""
    if not parametrize.is_parametrized(module, "weight"):
        return module.weight
    plist = module.parametrizations.weight
    w = plist.original
    for p in plist:
        if isinstance(p, stop_type):
            break
        w = p(w)
    return w


def find_parametrization(module: nn.Module, kind: type):
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in module.parametrizations.weight:
        if isinstance(p, kind):
            return p
    return None
