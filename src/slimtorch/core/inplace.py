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

from torch import nn


def working_model(model: nn.Module, inplace: bool) -> nn.Module:
    """The model a transform changes: ``model`` itself when ``inplace``, else a deep copy of it."""
    return model if inplace else copy.deepcopy(model)
