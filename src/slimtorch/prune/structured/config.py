"""Config of structured (channel) pruning."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from slimtorch.core.layers import SelectsLayers


class StructuredConfig(SelectsLayers):
    """What to remove and how to rank it.

    Attributes:
        ratio: fraction of each coupled group's channels to remove (``uniform``) or of
            all prunable channels (``global``), in [0, 1).
        scope: ``uniform`` (every group loses ``ratio``) or ``global`` (one ranking of
            group-normalised importances across the network, as in Torch-Pruning).
        importance: ``l1`` / ``l2`` (filter norm summed over the coupled group, Li et al.
            2017), ``bn`` (|BN gamma|, network slimming, Liu et al. 2017), ``taylor``
            (first-order Taylor, Molchanov et al. 2019; needs ``data``), ``random``;
            ``activation``: mean |input activation| x weight-column norm of every layer
            reading the unit, on ``data`` (for BERT-style encoders: each head's / neuron's
            mean contribution norm).
        compensate: fold the removed units' mean contribution (measured on ``data``) into
            the consuming layers' biases, so only their variation is lost; always on for
            ``activation`` on encoders.
        round_to: kept channel counts are multiples of this (8 suits SIMD kernels).
        max_group_ratio: no group loses more than this fraction (``global`` scope).
        layers: ``{include: [...], exclude: [...]}`` (:class:`~slimtorch.core.layers.LayerSelection`):
            the Conv / Linear / Embedding layers whose *outputs* may be pruned (default: all).
            Layers outside it keep their output channels; an excluded module of a type the
            graph does not know is treated as opaque (its inputs are kept too).
        ignore_classifier: never prune the output side of the last Linear (the logits).
        per_layer: pattern -> ratio overriding ``ratio`` for the groups whose producer matches.
        calib_batches: batches of ``data`` used for Taylor gradients, activation statistics
            and compensation.
        heads_ratio: fraction of attention heads to remove in BERT-style encoders
            (defaults to ``ratio``).
        seed: seed of the ``random`` criterion.
    """

    ratio: float = Field(0.5, ge=0.0, lt=1.0)
    scope: Literal["uniform", "global"] = "uniform"
    importance: Literal["l1", "l2", "bn", "taylor", "random", "activation"] = "l2"
    round_to: int = Field(1, ge=1)
    max_group_ratio: float = Field(0.9, gt=0.0, lt=1.0)
    ignore_classifier: bool = True
    per_layer: dict[str, float] = Field(default_factory=dict)
    calib_batches: int = Field(4, ge=1)
    compensate: bool = False
    heads_ratio: float | None = Field(None, ge=0.0, lt=1.0)
    seed: int = 0
