"""Which layers a pruning call touches: fnmatch patterns over module names.

By default the weights of Linear and Conv{1,2,3}d layers are pruned; biases,
normalization layers and everything else are left alone (they are a tiny share
of the parameters and pruning them hurts accuracy far more than it saves).
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase

from torch import nn

from slimtorch.core.errors import ConfigError, UnsupportedModelError

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
FilterFn = Callable[[nn.Module, str], bool]


def _is_prunable(module: nn.Module) -> bool:
    return isinstance(module, PRUNABLE_TYPES) and getattr(module, "weight", None) is not None


def _matches(fqn: str, patterns: list[str]) -> bool:
    return any(fnmatchcase(fqn, p) for p in patterns)


def select_layers(
    model: nn.Module,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    filter_fn: FilterFn | None = None,
) -> dict[str, nn.Module]:
    """fqn → module of the layers to prune, in model order.

    Args:
        include: fnmatch patterns over module fqns (``"fc*"``, ``"encoder.0"``); default all.
        exclude: patterns removed from the selection.
        filter_fn: ``filter_fn(module, fqn) -> bool``, applied on top of the patterns.

    Raises:
        UnsupportedModelError: a pattern without wildcards names a layer whose type
            cannot be pruned (e.g. a BatchNorm or a container).
        ConfigError: nothing matches; the message lists the prunable layer names.
    """
    include = include or ["*"]
    exclude = exclude or []
    chosen: dict[str, nn.Module] = {}
    for fqn, module in model.named_modules():
        if not fqn or not _matches(fqn, include) or _matches(fqn, exclude):
            continue
        if not _is_prunable(module):
            # A wildcard legitimately sweeps over containers / norms; an exact name must not.
            if fqn in include:
                raise UnsupportedModelError(
                    f"layer '{fqn}' is a {type(module).__name__}; unstructured pruning supports "
                    f"{', '.join(t.__name__ for t in PRUNABLE_TYPES)} weights only. "
                    "Remove it from 'include' or pass a filter_fn."
                )
            continue
        if filter_fn is not None and not filter_fn(module, fqn):
            continue
        chosen[fqn] = module
    if not chosen:
        available = [fqn for fqn, m in model.named_modules() if fqn and _is_prunable(m)]
        raise ConfigError(
            f"no prunable layer matches include={include} exclude={exclude}; "
            f"available layers: {', '.join(available) or '(none: the model has no Linear/Conv layer)'}",
            field="include",
        )
    return chosen


def layer_value(fqn: str, overrides: dict[str, float], default: float) -> float:
    """The first override whose pattern matches ``fqn`` (exact names first), else ``default``."""
    if fqn in overrides:
        return overrides[fqn]
    for pattern, value in overrides.items():
        if fnmatchcase(fqn, pattern):
            return value
    return default


def check_overrides(layers: dict[str, nn.Module], overrides: dict[str, float], field: str) -> None:
    """Every per-layer pattern must match at least one selected layer (typos fail loudly)."""
    for pattern in overrides:
        if not any(fnmatchcase(fqn, pattern) for fqn in layers):
            raise ConfigError(
                f"'{field}' pattern '{pattern}' matches none of the selected layers: {', '.join(layers)}",
                field=f"{field}.{pattern}",
            )
