"""Rebuild layers to the shapes stored in a file.

Structured pruning changes layer shapes. Instead of recording a list of edits,
a model file stores every tensor with its new shape; on load, the model is built
from its zoo spec and each standard layer whose stored shapes differ is
replaced by a layer of the same type and the new sizes. This keeps files pure
data and works for any model made of standard layers.
"""

from __future__ import annotations

import torch
from torch import nn

from slimtorch.core.errors import UnsupportedModelError


def _new_layer(module: nn.Module, shapes: dict[str, tuple[int, ...]], fqn: str) -> nn.Module:
    w = shapes.get("weight")
    has_bias = "bias" in shapes
    if isinstance(module, nn.Linear) and w is not None:
        return nn.Linear(w[1], w[0], bias=has_bias)
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d) and w is not None:
        out_c, in_per_group = w[0], w[1]
        groups = module.groups
        if groups > 1 and module.groups == module.in_channels == module.out_channels:
            groups = out_c  # depthwise stays depthwise
            in_c = out_c * in_per_group
        else:
            in_c = in_per_group * groups
        return type(module)(
            in_c,
            out_c,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=groups,
            bias=has_bias,
            padding_mode=module.padding_mode,
        )
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        n = (shapes.get("weight") or shapes.get("running_mean"))[0]
        return type(module)(
            n,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
        )
    if isinstance(module, nn.LayerNorm) and w is not None:
        return nn.LayerNorm(w, eps=module.eps, elementwise_affine=True, bias=has_bias)
    if isinstance(module, nn.Embedding) and w is not None:
        return nn.Embedding(w[0], w[1], padding_idx=module.padding_idx)
    raise UnsupportedModelError(
        f"layer '{fqn}' ({type(module).__name__}) has different tensor shapes in the file "
        "and slimtorch does not know how to rebuild this layer type; "
        "build the model with the pruned shapes yourself and pass it as load_model(path, model=...)"
    )


def resize_to_shapes(model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> nn.Module:
    """Replace every direct-parameter layer whose shapes differ from ``shapes`` (name → shape)."""
    current = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for fqn, module in list(model.named_modules()):
        prefix = f"{fqn}." if fqn else ""
        own = {k: v for k, v in current.items() if k.startswith(prefix) and "." not in k[len(prefix) :]}
        want = {k[len(prefix) :]: tuple(shapes[k]) for k in own if k in shapes}
        if not own or all(tuple(shapes.get(k, v)) == v for k, v in own.items()):
            continue
        new = _new_layer(module, want, fqn or "<root>")
        if not fqn:
            raise UnsupportedModelError("the root module itself changed shape; cannot rebuild")
        parent_name, _, child = fqn.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    return model


@torch.no_grad()
def state_shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}
