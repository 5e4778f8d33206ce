"""Structured pruning: physically remove channels, neurons and heads across coupled layers.

``prune_channels(model, StructuredConfig(ratio=0.5, round_to=8), example_input)``
returns a model with smaller dense layers, which is what makes it faster.
The recipe stage lives in :mod:`slimtorch.prune.structured.stage`.
"""

from slimtorch.prune.structured.api import channel_groups, prune_channels, select_units
from slimtorch.prune.structured.config import StructuredConfig
from slimtorch.prune.structured.finetune import prune_finetune
from slimtorch.prune.structured.graph import build_graph
from slimtorch.prune.structured.slimming import BNL1Callback, bn_l1_loss

__all__ = [
    "BNL1Callback",
    "StructuredConfig",
    "bn_l1_loss",
    "build_graph",
    "channel_groups",
    "prune_channels",
    "prune_finetune",
    "select_units",
]
