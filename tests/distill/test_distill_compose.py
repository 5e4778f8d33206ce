"""KD composed with pruning masks and fake quantization."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as torch_prune

from slimtorch.data import synthetic_classification
from slimtorch.distill import DistillConfig, dense_copy, finetune_pruned_with_kd, qat_with_teacher
from slimtorch.distill.compose import is_compressed
from slimtorch.train import OptimizerConfig, TrainConfig, fit


class Mask(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w):
        return w * self.mask


class FakeQuant(nn.Module):
    """4-bit symmetric fake quantization with a straight-through estimator."""

    def forward(self, w):
        scale = w.detach().abs().max() / 7
        q = torch.clamp(torch.round(w / scale), -8, 7) * scale
        return w + (q - w).detach()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(64, 32)
        self.b = nn.Linear(32, 10)

    def forward(self, x):
        return self.b(torch.relu(self.a(x.flatten(1))))


def _data():
    return synthetic_classification(n=96, shape=(1, 8, 8), seed=0)


def _cfg():
    return DistillConfig(
        temperature=2.0, train=TrainConfig(epochs=2, batch_size=32, optimizer=OptimizerConfig(lr=0.05))
    )


def _trained():
    torch.manual_seed(0)
    net = Net()
    fit(net, _data(), TrainConfig(epochs=3, batch_size=32), verbose=False)
    return net


def test_pruned_finetune_with_kd_keeps_masks_applied_and_teacher_is_dense():
    net = _trained()
    dense_weight = net.a.weight.detach().clone()
    mask = (torch.rand_like(net.a.weight) > 0.7).float()
    parametrize.register_parametrization(net.a, "weight", Mask(mask))
    teacher = dense_copy(net)
    assert not is_compressed(teacher) and is_compressed(net)
    torch.testing.assert_close(teacher.a.weight, dense_weight)
    before = net.a.weight.detach().clone()
    out = finetune_pruned_with_kd(net, _cfg(), _data(), verbose=False)
    assert out is not net and torch.equal(net.a.weight, before)  # a copy: the input is left as it was
    assert parametrize.is_parametrized(out.a)
    assert torch.all(out.a.weight[mask == 0] == 0)
    assert not torch.equal(out.a.weight, before)


def test_pruned_finetune_works_with_torch_prune_models():
    net = _trained()
    torch_prune.l1_unstructured(net.a, "weight", amount=0.6)
    teacher = dense_copy(net)
    assert not hasattr(teacher.a, "weight_mask") and isinstance(teacher.a.weight, nn.Parameter)
    torch.testing.assert_close(teacher.a.weight, net.a.weight_orig)
    net = finetune_pruned_with_kd(net, _cfg(), _data(), verbose=False)
    assert float((net.a.weight == 0).float().mean()) >= 0.6


def test_qat_with_a_float_teacher_keeps_fake_quant_and_learns():
    net = _trained()
    teacher = copy.deepcopy(net)
    for layer in (net.a, net.b):
        parametrize.register_parametrization(layer, "weight", FakeQuant())
    before = copy.deepcopy(net.state_dict())
    net = qat_with_teacher(net, _cfg(), _data(), teacher=teacher, verbose=False)
    assert parametrize.is_parametrized(net.a) and parametrize.is_parametrized(net.b)
    assert net.a.weight.detach().unique().numel() <= 16  # still 4-bit values
    assert any(not torch.equal(v, before[k]) for k, v in net.state_dict().items())
    # the default teacher is the float weights under the fake quantizer
    auto = dense_copy(net)
    assert not is_compressed(auto)
    torch.testing.assert_close(auto.a.weight, net.a.parametrizations.weight.original)


@pytest.mark.parametrize("fn", [finetune_pruned_with_kd, qat_with_teacher])
def test_the_old_argument_order_is_a_type_error_showing_the_new_one(fn):
    """``fn(model, train_data, config)`` was the order before the config moved second."""
    with pytest.raises(TypeError, match=r"\(model, config, train_data\)"):
        fn(_trained(), _data(), _cfg(), teacher=_trained(), verbose=False)
