"""Every transform takes its config as an object, a dict or None (one rule: ``slimtorch.core.config.coerce``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.quantize import KMeansConfig, kmeans_share
from slimtorch.quantize.model import quantize_model


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def test_quantize_model_and_kmeans_accept_dicts_like_objects():
    x = torch.randn(5, 8)
    from slimtorch.quantize import QuantConfig

    a = quantize_model(_mlp(), {"weight_bits": 4, "act_bits": None})
    b = quantize_model(_mlp(), QuantConfig(weight_bits=4, act_bits=None))
    assert torch.equal(a(x), b(x))
    c = kmeans_share(_mlp(), {"bits": 2})
    d = kmeans_share(_mlp(), KMeansConfig(bits=2))
    assert torch.equal(c(x), d(x))
    assert len(torch.unique(c[0].weight)) <= 4


def test_wrong_fields_and_types_are_named():
    with pytest.raises(ConfigError, match="bitz"):
        kmeans_share(_mlp(), {"bitz": 2})
    with pytest.raises(ConfigError, match="expected a KMeansConfig or a dict"):
        kmeans_share(_mlp(), 3)


def test_a_layers_pattern_that_matches_nothing_is_an_error_not_a_no_op():
    with pytest.raises(ConfigError, match="matches no Linear/Conv; the model's Linear/Conv layers: 0, 2"):
        kmeans_share(_mlp(), {"bits": 2, "layers": {"include": ["fc*"]}})
    with pytest.raises(ConfigError, match="matches no Linear/Conv"):
        quantize_model(_mlp(), {"weight_bits": 4, "act_bits": None, "layers": {"include": ["encoder.*"]}})
