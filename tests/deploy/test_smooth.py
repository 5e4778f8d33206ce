"""SmoothQuant for dynamic INT8: exact in float, and better INT8 fidelity when inputs have outlier channels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimtorch.deploy import FidelityTarget, Int8Config, to_int8
from slimtorch.deploy.smooth import SmoothedLinear, smooth_linears

torch.set_num_threads(1)


class OutlierMLP(nn.Module):
    """A user's block like a transformer FFN: LayerNorm -> Linear -> GELU -> Linear, with outlier channels."""

    def __init__(self, d: int = 64):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        with torch.no_grad():  # a few huge LayerNorm gains: the outlier channels transformers show
            self.norm.weight[:3] = 60.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(nn.functional.gelu(self.up(self.norm(x))))


def _data(n=256, seed=0):
    return torch.randn(n, 16, 64, generator=torch.Generator().manual_seed(seed))


def test_smoothing_is_exact_in_float_and_keeps_module_names():
    torch.manual_seed(0)
    model = OutlierMLP().eval()
    x = _data(32)
    smoothed = smooth_linears(model, [(x,)], alpha=0.7)
    assert isinstance(smoothed.up, SmoothedLinear) and isinstance(smoothed.down, SmoothedLinear)
    assert not isinstance(model.up, SmoothedLinear)  # the original is left alone
    with torch.no_grad():
        assert torch.allclose(smoothed(x), model(x), rtol=1e-4, atol=1e-4)
    # the outlier channels were scaled down on the activation side
    assert float(smoothed.up.inv_scale[:3].max()) < float(smoothed.up.inv_scale[3:].median())


def test_smoothing_improves_dynamic_int8_on_outlier_inputs(tmp_path):
    torch.manual_seed(0)
    model = OutlierMLP().eval()
    calib, x = _data(64), _data(64, seed=1)
    cos = {}
    for alpha in (None, 0.7):
        cfg = Int8Config(mode="dynamic", smooth_alpha=alpha, max_float_layers=0, target=FidelityTarget(min_cosine=None))
        q = to_int8(model, cfg, calib, out_dir=tmp_path / str(alpha))
        with torch.no_grad():
            ref = model(x)
        cos[alpha] = float(nn.functional.cosine_similarity(q(x).flatten(1), ref.flatten(1), dim=1).mean())
    assert cos[0.7] > cos[None], cos


def test_alpha_out_of_range_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        smooth_linears(OutlierMLP(), [(_data(4),)], alpha=1.5)
