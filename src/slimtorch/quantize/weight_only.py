"""What the weight-only quantizers (RTN, GPTQ, AWQ, HQQ) share: which Linears, on which grid, copy or in place.

Each method has its own config class (one per method, as every other
transform), all deriving from :class:`WeightOnlyConfig`; this module only
selects layers and prepares the model, so the methods' files hold just their
algorithm.
"""

from __future__ import annotations

import fnmatch

import pydantic
from torch import nn

from slimtorch.core.config import FrozenConfig, coerce  # noqa: F401  (re-exported for the methods)
from slimtorch.core.errors import ConfigError
from slimtorch.core.inplace import working_model
from slimtorch.core.progress import track
from slimtorch.quantize.qlinear import QuantLinear, replace_linear
from slimtorch.quantize.wgrid import GridConfig


class WeightOnlyConfig(FrozenConfig):
    """Common fields.

    Attributes:
        grid: bits, group size, symmetry, range search.
        layers: fnmatch patterns of the Linear layers to quantize (``None``: every ``nn.Linear``).
        exclude: patterns left in float; by default the (often tied) ``lm_head``.
    """

    grid: GridConfig = pydantic.Field(default_factory=GridConfig)
    layers: list[str] | None = None
    exclude: list[str] = pydantic.Field(default_factory=lambda: ["lm_head"])


def _match(name: str, patterns: list[str]) -> bool:
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def selected_linears(model: nn.Module, config: WeightOnlyConfig) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` layers ``config`` selects, by qualified name.

    Raises:
        ConfigError: a ``layers`` pattern matches nothing, or nothing is selected.
    """
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and not isinstance(m, QuantLinear)]
    if config.layers is not None:
        for p in config.layers:
            if not any(_match(n, [p]) for n in names):
                raise ConfigError(
                    f"layers pattern '{p}' matches no nn.Linear; there are: {', '.join(names[:12])}…", field="layers"
                )
    chosen = {
        n: model.get_submodule(n)
        for n in names
        if (config.layers is None or _match(n, config.layers)) and not _match(n, config.exclude)
    }
    if not chosen:
        raise ConfigError(
            "no nn.Linear layer is selected for quantization; check 'layers' and 'exclude'", field="layers"
        )
    return chosen


def target(model: nn.Module, inplace: bool) -> nn.Module:
    """The model to change: ``model`` itself, or a deep copy (the default of every transform)."""
    return working_model(model, inplace)


def quantize_each(model: nn.Module, config: WeightOnlyConfig, inplace: bool, quantize_weight, label: str) -> nn.Module:
    """Replace every selected Linear by ``quantize_weight(weight) -> QuantizedWeight`` (data-free methods)."""
    model = target(model, inplace)
    # Names only: holding the modules would keep each replaced float weight alive until the end.
    for name in track(list(selected_linears(model, config)), label):
        replace_linear(model, name, quantize_weight(model.get_submodule(name).weight))
    return model
