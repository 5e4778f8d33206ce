"""N:M semi-structured sparsity: at most N non-zeros in every group of M along the input dimension."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimtorch.core.errors import UnsupportedModelError
from slimtorch.prune import PruneConfig, prune
from slimtorch.prune.mask import get_mask
from slimtorch.prune.prune import nm_keep
from tests.prune.prune_helpers import make


def groups_nonzero(w: torch.Tensor, m: int) -> torch.Tensor:
    return (w.reshape(w.shape[0], -1, m) != 0).sum(-1)


@pytest.mark.parametrize(("n", "m"), [(2, 4), (4, 8), (1, 4)])
def test_pattern_holds_in_every_group(n, m):
    model = prune(make(), PruneConfig(pattern=f"{n}:{m}"))
    for layer in (model.encoder[0], model.mix, model.head):
        counts = groups_nonzero(layer.weight, m)
        assert torch.all(counts == n)


def test_nm_keeps_the_largest_in_each_group():
    w = torch.tensor([[0.1, -0.9, 0.3, 0.05, 1.0, 2.0, -3.0, 0.0]])
    keep = nm_keep(w.abs(), 2, 4)
    assert keep.tolist() == [[False, True, True, False, False, True, True, False]]


def test_conv_groups_run_along_flattened_input():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 2), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 3 * 3, 8))
    model = prune(model, PruneConfig(pattern="2:4", layers={"exclude": ["3"]}))
    assert torch.all(groups_nonzero(model[0].weight, 4) == 2)  # 4*2*2 = 16 inputs per output


def test_repeated_nm_after_unstructured_stays_monotone():
    model = prune(make(), PruneConfig(sparsity=0.6))
    before = get_mask(model.mix).mask.clone()
    model = prune(model, PruneConfig(pattern="2:4"))
    after = get_mask(model.mix).mask
    assert not torch.any(after & ~before)
    assert torch.all(groups_nonzero(model.mix.weight, 4) <= 2)


def test_incompatible_width_is_named():
    model = nn.Sequential(nn.Linear(6, 4))
    with pytest.raises(UnsupportedModelError, match="'0'.*multiple of M=4"):
        prune(model, PruneConfig(pattern="2:4"))
