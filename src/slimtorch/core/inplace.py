"""The one in-place rule every public transform follows (docs/api.md).

``fn(model, config, *data, inplace=False) -> model``: by default a transform
works on a deep copy and returns it, so the caller's model is untouched and a
dense or float baseline survives for comparison; ``inplace=True`` changes the
model itself and returns that same object, for callers that cannot hold two
copies (a language model) or that keep references into it (a training callback
built on the model). Written once here so every verb means the same thing by it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def working_model(model: nn.Module, inplace: bool) -> nn.Module:
    """The model a transform changes: ``model`` itself when ``inplace``, else a deep copy of it.

    The copy also works for models that ``copy.deepcopy`` refuses: ``torch.nn.utils.prune``
    and the old ``weight_norm`` keep the effective ``weight`` as a computed (non-leaf) tensor
    attribute, which the copy gets detached (their forward hook recomputes it on every call).
    """
    if inplace:
        return model
    memo: dict[int, object] = {}
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(model, memo)
