"""BN folding and cross-layer equalization are exact reparametrisations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.deploy import bias_correct, cross_layer_equalize, equalized_pairs, fold_conv_bn
from slimtorch.deploy.data import input_batches
from tests.deploy.int8_models import MLPUserNet, conv_net, scaled_dw_net

torch.set_num_threads(1)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max()) if not a.requires_grad else _rel(a.detach(), b.detach())


def test_fold_conv_bn_is_exact_and_removes_bn():
    model, x = conv_net(), torch.randn(4, 3, 12, 12)
    folded = fold_conv_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert _rel(folded(x), model(x)) < 1e-5
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "original model must be untouched"


def test_fold_conv_bn_sequential_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    model[1].running_var.fill_(3.0)
    model[1].running_mean.fill_(0.7)
    x = torch.randn(2, 3, 8, 8)
    assert _rel(fold_conv_bn(model)(x), model(x)) < 1e-5


@pytest.mark.parametrize("make", [conv_net, scaled_dw_net])
def test_cle_leaves_float_outputs_unchanged(make):
    model = fold_conv_bn(make())
    x = torch.randn(4, 3, 12, 12)
    eq = cross_layer_equalize(model)
    assert _rel(eq(x), model(x)) < 1e-5


def test_cle_equalizes_channel_ranges():
    model = fold_conv_bn(scaled_dw_net())
    eq = cross_layer_equalize(model)
    spread = lambda w: float(
        w.abs().reshape(w.shape[0], -1).amax(1).max() / w.abs().reshape(w.shape[0], -1).amax(1).min()
    )  # noqa: E731
    assert spread(eq.conv1.weight) < spread(model.conv1.weight) / 10
    assert ("conv1", "dw") in equalized_pairs(model)


def test_cle_on_mlp_is_exact():
    torch.manual_seed(1)
    model, x = MLPUserNet().eval(), torch.randn(8, 32)
    assert _rel(cross_layer_equalize(model)(x), model(x)) < 1e-5


def test_cle_relu6_skip_is_exact_and_replace_swaps_activation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU6(), nn.Conv2d(8, 4, 1)).eval()
    x = torch.randn(2, 3, 5, 5) * 10
    assert torch.equal(cross_layer_equalize(model, relu6="skip")(x), model(x))
    replaced = cross_layer_equalize(model, relu6="replace")
    assert isinstance(replaced[1], nn.ReLU)
    with pytest.raises(ConfigError, match="relu6"):
        cross_layer_equalize(model, relu6="clip")


def test_bias_correction_moves_mean_towards_float():
    model = fold_conv_bn(scaled_dw_net())
    batches = input_batches(torch.randn(32, 3, 12, 12) + 1.0, batch_size=16)
    corrected = bias_correct(model, batches, reduce_range=True)
    assert torch.equal(corrected.pw.weight, model.pw.weight)
    assert not torch.equal(corrected.pw.bias, model.pw.bias)


def test_empty_calibration_data_is_refused():
    with pytest.raises(ConfigError, match="empty"):
        input_batches(torch.empty(0, 3, 8, 8))
    with pytest.raises(ConfigError, match="empty"):
        input_batches([])
