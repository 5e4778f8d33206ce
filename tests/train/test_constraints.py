"""Max-norm weight constraint (``TrainConfig.max_norm``, :func:`slimtorch.train.constraints.apply_max_norm`)."""

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from slimtorch.core.errors import ConfigError
from slimtorch.train import OptimizerConfig, TrainConfig, fit
from slimtorch.train.constraints import apply_max_norm


def _row_norms(layer: nn.Module) -> torch.Tensor:
    return layer.weight.detach().flatten(1).norm(dim=1)


def test_rescales_only_the_units_over_the_limit_and_keeps_their_direction():
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 4.0, 0, 0], [0.1, 0, 0, 0], [0, 0, 6.0, 8.0]]))  # norms 5, 0.1, 10
    bias = lin.bias.detach().clone()
    assert apply_max_norm(nn.Sequential(lin), 2.0) == 2
    assert torch.allclose(_row_norms(lin), torch.tensor([2.0, 0.1, 2.0]))
    assert torch.allclose(lin.weight[0], torch.tensor([1.2, 1.6, 0, 0]))  # 2 * (3, 4) / 5
    assert torch.equal(lin.bias, bias)  # biases are not constrained


def test_a_conv_filter_is_one_unit():
    conv = nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        conv.weight.mul_(100)
    apply_max_norm(conv, 1.5)
    assert torch.all(_row_norms(conv) <= 1.5 + 1e-5)
    assert torch.allclose(_row_norms(conv), torch.full((3,), 1.5))  # every filter was over, so each sits on the ball


def test_a_masked_weight_keeps_its_zeros():
    from slimtorch.prune.mask import set_mask

    lin = nn.Linear(5, 2)
    with torch.no_grad():
        lin.weight.fill_(3.0)
    keep = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    set_mask(lin, keep)
    apply_max_norm(lin, 1.0)
    orig = lin.parametrizations.weight.original
    assert torch.all(orig[~keep] == 0)
    assert torch.allclose(orig.flatten(1).norm(dim=1), torch.ones(2))


def test_rejects_a_non_positive_limit():
    with pytest.raises(ValueError, match="positive"):
        apply_max_norm(nn.Linear(2, 2), 0.0)
    with pytest.raises(ConfigError):
        TrainConfig.from_dict({"max_norm": -1.0})


def test_fit_keeps_every_unit_inside_the_ball():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 1, 4, 4, generator=g)
    y = (x.flatten(1).sum(1) > 0).long()
    data = TensorDataset(x, y)

    def trained(max_norm):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
        cfg = TrainConfig(epochs=3, batch_size=16, optimizer=OptimizerConfig(lr=0.5), max_norm=max_norm)
        fit(net, data, cfg, verbose=False)
        return torch.cat([_row_norms(net[1]), _row_norms(net[3])])

    free, bound = trained(None), trained(0.8)
    assert free.max() > 0.8  # without the constraint this lr grows weights past the limit...
    assert bound.max() <= 0.8 + 1e-5  # ...with it, no unit leaves the ball
