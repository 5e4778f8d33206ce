"""Which layers a pruning call touches: ``layers: {include, exclude}`` over module names.

By default the weights of Linear and Conv{1,2,3}d layers are pruned; biases,
normalization layers and everything else are left alone (they are a tiny share
of the parameters and pruning them hurts accuracy far more than it saves).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.core.layers import FilterFn, LayerSelection, select

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def is_prunable(module: nn.Module, _name: str = "") -> bool:
    """A Linear / Conv layer with a weight: what unstructured pruning masks (a ``select`` kind)."""
    return isinstance(module, PRUNABLE_TYPES) and getattr(module, "weight", None) is not None


def prunable_layers(
    model: nn.Module, selection: LayerSelection | dict | None = None, filter_fn: FilterFn | None = None
) -> dict[str, nn.Module]:
    """fqn → module of the layers to prune, in model order (:func:`slimtorch.core.layers.select`).

    Raises:
        ConfigError: a pattern matches nothing, or nothing is left; lists the prunable layers.
    """
    return select(model, selection, is_prunable, filter_fn=filter_fn, what="Linear/Conv")


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
