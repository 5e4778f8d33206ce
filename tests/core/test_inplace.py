"""``core.inplace.working_model``: the copy every transform makes unless ``inplace=True``."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from slimtorch.core.inplace import working_model


def test_inplace_is_the_model_and_the_default_is_an_independent_copy():
    m = nn.Linear(4, 3)
    assert working_model(m, inplace=True) is m
    c = working_model(m, inplace=False)
    assert c is not m and torch.equal(c.weight, m.weight)
    with torch.no_grad():
        c.weight.zero_()
    assert m.weight.abs().sum() > 0


def test_copies_models_deepcopy_refuses_torch_prune_hooks():
    """torch.nn.utils.prune keeps ``weight`` as a non-leaf tensor attribute: plain deepcopy raises on it."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    torch_prune.l1_unstructured(m[0], "weight", amount=0.5)
    x = torch.randn(3, 8)
    c = working_model(m, inplace=False)
    torch.testing.assert_close(c(x), m(x))
    with torch.no_grad():
        c[0].weight_orig.add_(1.0)  # the copy's hook recomputes its own weight from its own tensors
    c(x)
    assert not torch.equal(c[0].weight, m[0].weight)
    assert torch.all(c[0].weight[m[0].weight_mask == 0] == 0)
