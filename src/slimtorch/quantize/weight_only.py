"""What the weight-only quantizers (RTN, GPTQ, AWQ, HQQ) share: which Linears, on which grid, copy or in place.

Each method has its own config class (one per method, as every other
transform), all deriving from :class:`WeightOnlyConfig`; this module only
selects layers and prepares the model, so the methods' files hold just their
algorithm.
"""

from __future__ import annotations

import pydantic
from torch import nn

from slimtorch.core.config import coerce  # noqa: F401  (re-exported for the methods)
from slimtorch.core.inplace import working_model
from slimtorch.core.layers import LayerSelection, SelectsLayers, select
from slimtorch.core.progress import track
from slimtorch.quantize.qlinear import QuantLinear, replace_linear
from slimtorch.quantize.wgrid import GridConfig

# Left in float unless a selection says otherwise: the output head is often tied to the embedding.
DEFAULT_EXCLUDE = ("lm_head",)


def default_selection() -> LayerSelection:
    return LayerSelection(exclude=list(DEFAULT_EXCLUDE))


class WeightOnlyConfig(SelectsLayers):
    """Common fields.

    Attributes:
        grid: bits, group size, symmetry, range search.
        layers: ``{include: [...], exclude: [...]}`` over the ``nn.Linear`` names; default
            ``{exclude: [lm_head]}`` (every Linear but the often tied output head). A
            ``layers`` you give replaces the default whole: keep ``lm_head`` in its
            ``exclude`` if the head should stay float.
    """

    grid: GridConfig = pydantic.Field(default_factory=GridConfig)
    layers: LayerSelection = pydantic.Field(default_factory=default_selection)


def selected_linears(model: nn.Module, config: WeightOnlyConfig) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` layers ``config.layers`` selects, by qualified name.

    Raises:
        ConfigError: a pattern matches nothing, or nothing is selected (:func:`slimtorch.core.layers.select`).
    """
    return select(
        model,
        config.layers,
        lambda m, _n: isinstance(m, nn.Linear) and not isinstance(m, QuantLinear),
        what="nn.Linear",
        may_miss=DEFAULT_EXCLUDE,
    )


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
