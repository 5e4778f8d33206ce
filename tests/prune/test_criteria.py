"""Criteria against hand computations on tiny models."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from slimtorch.prune import CRITERIA, PruneConfig, prune
from slimtorch.prune.criteria import activation_scores, taylor_scores
from slimtorch.prune.mask import get_mask
from tests.prune.prune_helpers import TinyConv, make, vector_data


def tiny_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def test_registry_lists_every_criterion():
    assert {"magnitude", "han", "random", "taylor", "activation"} <= set(CRITERIA.names())


def test_taylor_scores_equal_hand_computation():
    model = tiny_mlp()
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(5, 3, generator=g), torch.randint(0, 2, (5,), generator=g)) for _ in range(3)]
    layers = {"0": model[0], "2": model[2]}
    got = taylor_scores(model, layers, PruneConfig(method="taylor", batches=3), batches)

    w1, b1, w2, b2 = (
        p.detach().clone().requires_grad_(True)
        for p in (model[0].weight, model[0].bias, model[2].weight, model[2].bias)
    )
    expected = {"0": torch.zeros(4, 3), "2": torch.zeros(2, 4)}
    for x, y in batches:
        logits = torch.tanh(x @ w1.T + b1) @ w2.T + b2
        gw1, gw2 = torch.autograd.grad(nn.functional.cross_entropy(logits, y), (w1, w2))
        expected["0"] += (w1 * gw1).abs().detach()
        expected["2"] += (w2 * gw2).abs().detach()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k])
    assert model[0].weight.grad is None  # the model's .grad is left alone


def test_taylor_prune_keeps_highest_taylor_scores():
    model = tiny_mlp()
    data = [(torch.randn(8, 3), torch.randint(0, 2, (8,)))]
    scores = taylor_scores(model, {"0": model[0]}, PruneConfig(method="taylor"), data)["0"]
    model = prune(model, PruneConfig(method="taylor", sparsity=0.5, layers={"include": ["0"]}), data)
    keep = get_mask(model[0]).mask
    assert float(scores[keep].min()) >= float(scores[~keep].max())


def test_activation_scores_linear_hand_computation():
    model = tiny_mlp()
    x = torch.randn(10, 3)
    x[:, 1] *= 1e-4  # a nearly silent input feature
    got = activation_scores(model, {"0": model[0]}, PruneConfig(method="activation", batch_size=4), x)["0"]
    expected = model[0].weight.detach().abs() * x.norm(dim=0)  # |W_ij| * ||X_j||
    torch.testing.assert_close(got, expected)
    model = prune(model, PruneConfig(method="activation", sparsity=1 / 3, layers={"include": ["0"]}), TensorDataset(x))
    assert torch.all(model[0].weight[:, 1] == 0)  # the silent input's weights go first


def test_activation_scores_conv_match_im2col():
    model = TinyConv().eval()
    x = torch.rand(6, 1, 8, 8)
    got = activation_scores(model, {"conv1": model.conv1, "conv2": model.conv2}, PruneConfig(), x)
    cols = nn.functional.unfold(x, 3, padding=1)  # (N, 1*3*3, L)
    norms = cols.transpose(1, 2).reshape(-1, 9).norm(dim=0)
    torch.testing.assert_close(got["conv1"], model.conv1.weight.detach().abs() * norms.reshape(1, 1, 3, 3))
    # grouped conv2: output channels of group g only see input channels of group g
    h = nn.functional.max_pool2d(torch.relu(model.bn1(model.conv1(x))), 2).detach()
    cols2 = nn.functional.unfold(h, 3, padding=1).transpose(1, 2).reshape(-1, 36).norm(dim=0).reshape(4, 3, 3)
    w = model.conv2.weight.detach().abs()
    torch.testing.assert_close(got["conv2"][:4], w[:4] * cols2[:2])
    torch.testing.assert_close(got["conv2"][4:], w[4:] * cols2[2:])


def test_random_is_seeded_and_unlike_magnitude():
    a = prune(make(), PruneConfig(method="random", sparsity=0.5, seed=3))
    b = prune(make(), PruneConfig(method="random", sparsity=0.5, seed=3))
    c = prune(make(), PruneConfig(method="random", sparsity=0.5, seed=4))
    m = prune(make(), PruneConfig(method="magnitude", sparsity=0.5))
    ma, mb, mc, mm = (get_mask(x.mix).mask for x in (a, b, c, m))
    assert torch.equal(ma, mb) and not torch.equal(ma, mc) and not torch.equal(ma, mm)
    assert int((~ma).sum()) == 512


def test_magnitude_keeps_largest():
    model = make()
    w = model.mix.weight.detach().abs().clone()
    model = prune(model, PruneConfig(sparsity=0.75, layers={"include": ["mix"]}))
    keep = get_mask(model.mix).mask
    assert float(w[keep].min()) >= float(w[~keep].max())


@pytest.mark.parametrize("q", [0.5, 1.0, 1.5])
def test_han_threshold_is_quality_times_std(q):
    model = make()
    w = model.mix.weight.detach().clone()
    model = prune(model, PruneConfig(method="han", quality=q, per_layer_quality={"head": 0.0}))
    assert torch.equal(get_mask(model.mix).mask, w.abs() > q * w.std())
    assert get_mask(model.head) is None  # quality 0 prunes nothing


def test_data_driven_criteria_run_on_a_user_model():
    data = vector_data(64)
    for method in ("taylor", "activation"):
        model = prune(make(), PruneConfig(method=method, sparsity=0.6, batches=2, batch_size=16, protect=False), data)
        assert int((model.mix.weight == 0).sum()) == round(0.6 * 1024)
