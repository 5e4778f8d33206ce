"""``to_int8``'s ``layers`` selection on each backend: which layers stay float.

The torch backends quantize modules, so their selection is :func:`slimtorch.core.layers.select`
over the module types they quantize; the layers it leaves out are handed to torch as
"no qconfig" (torch.ao) or filtered out (torchao's ``filter_fn``).

ONNX Runtime quantizes nodes of the exported graph, and some of them have no module of their
own (a ``MatMul`` written as ``x @ w`` in ``forward``): there a pattern may match a node's
module name (from the exporter's metadata) or its ONNX node name. The rule of every other
technique holds: an ``include`` pattern must match a quantizable layer, an ``exclude``
pattern must match a module of the model or a node of the graph, and the message lists real
names to pick from.
"""

from __future__ import annotations

from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.core.layers import Kinds, LayerSelection, few, matches, select

FIELD = "layers"


def is_default(sel: LayerSelection) -> bool:
    """Every layer, nothing excluded: the backend's own choice of layers, unchecked."""
    return sel.include is None and not sel.exclude


def torch_unselected(model: nn.Module, sel: LayerSelection, kinds: Kinds, what: str) -> list[str]:
    """Names of the modules of ``kinds`` the selection leaves float (none for the default selection).

    Raises:
        ConfigError: a pattern matches nothing, or nothing is left to quantize.
    """
    if is_default(sel):
        return []
    chosen = select(model, sel, kinds, what=what, field=FIELD)
    return [n for n, m in model.named_modules() if n and isinstance(m, kinds) and n not in chosen]


def ort_float_nodes(
    sel: LayerSelection, model: nn.Module, nodes: list[str], modules: dict[str, str], all_nodes: list[str]
) -> list[str]:
    """The quantizable ONNX nodes the selection leaves float, in graph order.

    Args:
        nodes: the nodes ONNX Runtime would quantize; ``modules``: node name -> module name
            (:func:`slimtorch.export.onnx.onnx_module_names`); ``all_nodes``: every node of the graph.

    Raises:
        ConfigError: an ``include`` pattern matches no quantizable node, an ``exclude`` pattern
            matches no module nor node, or the selection leaves nothing to quantize.
    """
    if is_default(sel):
        return []

    def names(n: str) -> list[str]:
        return [n, modules[n]] if modules.get(n) else [n]

    layer_names = [modules.get(n) or n for n in nodes]
    for p in sel.include or []:
        if not any(matches(x, [p]) for n in nodes for x in names(n)):
            raise ConfigError(
                f"'{FIELD}.include' pattern '{p}' matches no layer INT8 quantizes (by module or ONNX node "
                f"name); the model's quantizable layers: {few(layer_names)}",
                field=f"{FIELD}.include",
            )
    known = [n for n, _ in model.named_modules() if n] + list(all_nodes) + list(modules.values())
    for p in sel.exclude:
        if not any(matches(x, [p]) for x in known):
            raise ConfigError(
                f"'{FIELD}.exclude' pattern '{p}' matches no module of the model nor ONNX node of its graph "
                f"(a typo here would quantize the layer it meant to keep float); the model's quantizable "
                f"layers: {few(layer_names)}; ONNX nodes: {few(nodes, 4)}",
                field=f"{FIELD}.exclude",
            )

    keep = [n for n in nodes if not sel.picks(*names(n))]
    if nodes and len(keep) == len(nodes):
        include = "all" if sel.include is None else sel.include
        raise ConfigError(
            f"'{FIELD}' selects no layer to quantize (include={include}, exclude={sel.exclude}); "
            f"the model's quantizable layers: {few(layer_names)}",
            field=FIELD,
        )
    return keep
