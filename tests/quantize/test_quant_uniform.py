import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from slimtorch.core import ConfigError
from slimtorch.quantize import QuantConfig, UniformConfig
from slimtorch.quantize.uniform import (
    compute_qparams,
    dequantize,
    fake_quantize,
    mse_clip_ratio,
    qrange,
    quantize,
    quantize_tensor,
)


@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(2, 8),
    symmetric=st.booleans(),
    per_channel=st.booleans(),
    seed=st.integers(0, 10_000),
    shift=st.floats(-2, 2),
)
def test_error_within_half_step_inside_clipping_range(bits, symmetric, per_channel, seed, shift):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 20, generator=g) + shift
    cfg = UniformConfig(bits=bits, symmetric=symmetric, per_channel=per_channel)
    scale, zp = compute_qparams(x, cfg)
    qmin, qmax = qrange(bits, symmetric)
    axis = 0 if per_channel else None
    xq = dequantize(quantize(x, scale, zp, qmin, qmax, axis), scale, zp, axis)
    s = scale.reshape(-1, 1) if per_channel else scale
    z = zp.reshape(-1, 1) if per_channel else zp
    lo, hi = (qmin - z) * s, (qmax - z) * s
    inside = (x >= lo) & (x <= hi)
    assert inside.float().mean() > 0.8  # min-max: nearly everything is inside
    err = (x - xq).abs()
    half = (s / 2 * (1 + 1e-5) + 1e-7).expand_as(x)
    assert torch.all(err[inside] <= half[inside])
    # min-max: the integer zero point shifts the grid by < s/2, so even edge values stay within s/2
    assert torch.all(err <= half)
    # the number of distinct levels (per channel when per-channel) never exceeds 2^b
    for row in xq if per_channel else [xq]:
        assert torch.unique(row).numel() <= 2**bits


def test_zero_is_exactly_representable_asymmetric():
    x = torch.tensor([0.0, 0.3, 1.7, 2.5, 0.0])  # all >= 0 except the zeros: range [0, 2.5]
    for bits in range(2, 9):
        out = quantize_tensor(x, UniformConfig(bits=bits, symmetric=False))
        assert out[0] == 0.0 and out[-1] == 0.0
    x = torch.tensor([-1.3, 0.0, 0.7, 5.1])
    out = quantize_tensor(x, UniformConfig(bits=3, symmetric=False))
    assert out[1] == 0.0


def test_per_channel_scales_computed_per_channel():
    w = torch.stack([torch.linspace(-1, 1, 10), torch.linspace(-10, 10, 10), torch.zeros(10)])
    scale, zp = compute_qparams(w, UniformConfig(bits=8, per_channel=True))
    assert scale.shape == (3,)
    assert torch.allclose(scale[:2], torch.tensor([1 / 127, 10 / 127]))
    assert torch.all(zp == 0)
    assert scale[2] > 0  # an all-zero channel gets a usable scale
    per_tensor, _ = compute_qparams(w, UniformConfig(bits=8, per_channel=False))
    assert per_tensor.ndim == 0 and torch.isclose(per_tensor, torch.tensor(10 / 127))
    q = quantize_tensor(w, UniformConfig(bits=8, per_channel=True))
    # the small channel is resolved finely per-channel, coarsely per-tensor
    assert (q[0] - w[0]).abs().max() <= 0.5 / 127 + 1e-7
    assert torch.all(q[2] == 0)


def test_ste_passes_gradient_inside_and_zeroes_outside():
    x = torch.tensor([-3.0, -0.5, 0.0, 0.4, 0.99, 2.0], requires_grad=True)
    scale, zp = torch.tensor(1.0 / 127), torch.tensor(0.0)  # range [-1, 1]
    y = fake_quantize(x, scale, zp, -127, 127)
    y.backward(torch.ones_like(y))
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert y[0].item() == pytest.approx(-1.0) and y[-1].item() == pytest.approx(1.0)


def test_mse_clipping_beats_minmax_with_outliers():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10_000, generator=g)
    x[0] = 40.0  # one outlier stretches the min-max range
    ratio = mse_clip_ratio(x, bits=4, symmetric=True)
    assert 0 < float(ratio) < 0.5
    err = {
        m: float(((quantize_tensor(x, UniformConfig(bits=4, range_method=m)) - x) ** 2).sum())
        for m in ("minmax", "percentile", "mse")
    }
    assert err["mse"] < err["minmax"]
    assert err["percentile"] < err["minmax"]


def test_mse_ratio_is_per_channel():
    w = torch.randn(4, 500, generator=torch.Generator().manual_seed(3))
    w[1, 0] = 30.0
    r = mse_clip_ratio(w, bits=4, symmetric=True, axis=0)
    assert r.shape == (4,)
    assert r[1] < r[[0, 2, 3]].min()


@pytest.mark.parametrize("bits", [0, 1, 9, 16])
def test_invalid_bits_name_the_field(bits):
    with pytest.raises(ConfigError) as e:
        UniformConfig(bits=bits)
    assert e.value.field == "bits"
    with pytest.raises(ConfigError) as e:
        QuantConfig(weight_bits=bits)
    assert e.value.field == "weight_bits" and "2..8" in str(e.value)
    with pytest.raises(ConfigError) as e:
        QuantConfig(act_bits=bits)
    assert e.value.field == "act_bits"
    with pytest.raises(ConfigError) as e:
        QuantConfig(per_layer={"fc1": bits})
    assert e.value.field == "per_layer.fc1"


def test_config_round_trip_and_unknown_keys():
    cfg = QuantConfig(weight_bits=4, per_layer={"fc*": 3}, act_observer="mse", method="lsq")
    assert QuantConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError) as e:
        QuantConfig.from_dict({"wieght_bits": 4})
    assert "wieght_bits" in str(e.value)
