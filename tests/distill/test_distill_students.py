"""Lightweight students and thinner(): shapes, widths, specs that rebuild."""

import pytest
import torch

from slimtorch.core import ConfigError, UnsupportedModelError
from slimtorch.distill import mobilenet_v2_student, separable_lenet5, small_lenet5, small_mlp, thinner
from slimtorch.distill.students import thinner_spec
from slimtorch.models import create_model


def _params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "name, factor, expected",
    [
        ("lenet5", 0.3, {"name": "lenet5_slim", "kwargs": {"conv1": 6, "conv2": 15, "fc": 150}}),
        ("mlp_1200x2", 0.5, {"name": "mlp", "kwargs": {"hidden": [600, 600], "dropout": 0.5, "input_dropout": 0.2}}),
        ("lenet300_100", 0.5, {"name": "mlp", "kwargs": {"hidden": [150, 50]}}),
        ({"name": "mlp", "kwargs": {"hidden": [64, 32]}}, 0.25, {"name": "mlp", "kwargs": {"hidden": [16, 8]}}),
        ("resnet20", 0.5, {"name": "resnet_cifar", "kwargs": {"depth": 20, "width": 8}}),
        (
            {"name": "mobilenet_v2", "kwargs": {"width_mult": 1.0, "pretrained": True}},
            0.5,
            {"name": "mobilenet_v2", "kwargs": {"width_mult": 0.5}},
        ),
    ],
)
def test_thinner_spec_scales_widths(name, factor, expected):
    assert thinner_spec(name, factor) == expected


def test_thinner_lenet5_runs_and_is_smaller():
    base, thin = create_model("lenet5"), thinner("lenet5", 0.3)
    x = torch.randn(2, 1, 28, 28)
    assert thin(x).shape == base(x).shape == (2, 10)
    assert _params(thin) < 0.15 * _params(base)
    assert thin.slimtorch_spec == {"name": "lenet5_slim", "kwargs": {"conv1": 6, "conv2": 15, "fc": 150}}


def test_thinner_accepts_a_zoo_model_and_rejects_user_models():
    assert thinner(create_model("mlp_800x2"), 0.5).fc1.out_features == 400
    with pytest.raises(UnsupportedModelError, match="spec"):
        thinner(torch.nn.Linear(2, 2), 0.5)
    with pytest.raises(UnsupportedModelError, match="resnet_cifar"):
        thinner("not_a_family", 0.5)


@pytest.mark.parametrize("factor", [0, -0.5, 1.5])
def test_thinner_rejects_bad_factors(factor):
    with pytest.raises(ConfigError, match="factor"):
        thinner("lenet5", factor)


def test_full_width_lenet5_slim_loads_a_zoo_lenet5_state_dict():
    base = create_model("lenet5")
    slim = create_model("lenet5_slim")
    slim.load_state_dict(base.state_dict())
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(slim(x), base(x))


def test_separable_lenet5_factorises_conv2():
    sep, full = separable_lenet5(), create_model("lenet5")
    assert sep.conv2_dw.groups == 20 and sep.conv2_pw.kernel_size == (1, 1)
    # conv2: 20*50*25 + 50 = 25,050 weights -> 20*25 + 20 + 20*50 + 50 = 1,570
    assert _params(full) - _params(sep) == 25_050 - 1_570
    assert sep(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_small_students_have_the_requested_widths():
    assert [m.out_features for m in small_mlp((800, 800)).modules() if isinstance(m, torch.nn.Linear)] == [800, 800, 10]
    lenet = small_lenet5(4, 8, 32)
    assert (lenet.conv1.out_channels, lenet.conv2.out_channels, lenet.fc1.out_features) == (4, 8, 32)
    mb = mobilenet_v2_student(0.35, num_classes=10)
    assert _params(mb) < 0.25 * _params(create_model("mobilenet_v2", num_classes=10))
    assert mb.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_student_rebuilds_from_its_saved_file(tmp_path):
    from slimtorch.io import load_model, save_model

    m = separable_lenet5(conv1=8, conv2=16, fc=32)
    save_model(m, tmp_path / "s.safetensors")
    back = load_model(tmp_path / "s.safetensors")
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(back(x), m.eval()(x))
