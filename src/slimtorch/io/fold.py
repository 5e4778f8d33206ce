"""Fold weight-level transforms into plain tensors.

slimtorch implements every weight-level transform (pruning masks, fake
quantization, k-means weight sharing) as a ``torch.nn.utils.parametrize``
parametrization, so they compose, survive fine-tuning and are removed the same
way. Models pruned with ``torch.nn.utils.prune`` (``weight_orig`` +
``weight_mask`` + a forward pre-hook) are folded too, because users bring them.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as torch_prune


def fold(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Return a model whose parameters are the effective (masked / quantized) weights.

    Args:
        model: any module, possibly carrying parametrizations or torch pruning hooks.
        inplace: fold ``model`` itself instead of a deep copy.
    """
    if not inplace:
        # torch.nn.utils.prune stores the masked weight as a non-leaf tensor attribute,
        # which deepcopy refuses; its pre-hook recomputes it on every forward anyway,
        # so replacing it with a detached copy changes nothing the user can observe.
        for module in model.modules():
            for hook in module._forward_pre_hooks.values():
                if isinstance(hook, torch_prune.BasePruningMethod):
                    setattr(module, hook._tensor_name, getattr(module, hook._tensor_name).detach())
    out = model if inplace else copy.deepcopy(model)
    if not inplace:
        # A deep copy shares each parametrized module's dynamically created class with
        # the original; removing the copy's parametrization deletes the weight property
        # from that shared class and would break the original. Give copies their own class.
        for module in out.modules():
            if parametrize.is_parametrized(module):
                cls = module.__class__
                module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
    for module in out.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
    return out


def is_transformed(model: nn.Module) -> bool:
    """Whether ``model`` carries parametrizations or ``torch.nn.utils.prune`` hooks (what :func:`fold` removes)."""
    return any(
        parametrize.is_parametrized(m)
        or any(isinstance(h, torch_prune.BasePruningMethod) for h in m._forward_pre_hooks.values())
        for m in model.modules()
    )


def effective_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with transforms folded in, without touching ``model``."""
    src = fold(model) if is_transformed(model) else model
    return {k: v.detach() for k, v in src.state_dict().items()}
