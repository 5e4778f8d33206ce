"""Which layers a quantization transform touches, and their bit widths."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

FilterFn = Callable[[nn.Module, str], bool]

QUANTIZABLE = (nn.Linear, nn.modules.conv._ConvNd)


def _matches(name: str, patterns: list[str]) -> bool:
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def select_layers(
    model: nn.Module, layers: list[str] | None, skip: list[str], filter_fn: FilterFn | None = None
) -> Iterator[tuple[str, nn.Module]]:
    """(fqn, module) of every Linear / Conv layer selected by patterns and ``filter_fn``.

    Raises:
        ConfigError: ``layers`` was given and matches no Linear / Conv layer (as pruning's
            ``include`` does: a typo must not quietly quantize nothing); lists the layers.
    """
    from slimtorch.core.errors import ConfigError

    chosen = []
    for name, module in model.named_modules():
        if not isinstance(module, QUANTIZABLE):
            continue
        if layers is not None and not _matches(name, layers):
            continue
        if _matches(name, skip) or (filter_fn is not None and not filter_fn(module, name)):
            continue
        chosen.append((name, module))
    if layers is not None and not any(
        _matches(n, layers) for n, m in model.named_modules() if isinstance(m, QUANTIZABLE)
    ):
        names = [n for n, m in model.named_modules() if isinstance(m, QUANTIZABLE)]
        raise ConfigError(
            f"'layers' {layers} matches no Linear/Conv layer; layers are: {', '.join(names) or '(none)'}",
            field="layers",
        )
    return iter(chosen)


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
