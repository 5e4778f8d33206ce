"""ONNX / torch.export artifacts match PyTorch; unsupported operators are named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from slimtorch.core.errors import UnsupportedModelError
from slimtorch.export import export_onnx, export_pt2, ort_session
from slimtorch.export.onnx import onnx_module_names, run_session
from tests.deploy.int8_models import MLPUserNet, conv_net

torch.set_num_threads(1)


def test_exported_onnx_matches_pytorch_with_dynamic_batch(tmp_path, capsys):
    model, x = conv_net(), torch.randn(2, 3, 12, 12)
    parity = export_onnx(model, x, tmp_path / "m.onnx")
    assert "parity" in capsys.readouterr().out
    assert parity.max_abs_diff < 1e-4 and parity.top1_agreement == 1.0
    x5 = torch.randn(5, 3, 12, 12)  # another batch size than the example
    got = run_session(ort_session(tmp_path / "m.onnx"), x5)
    np.testing.assert_allclose(got, model(x5).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_onnx_nodes_map_back_to_module_names(tmp_path):
    export_onnx(MLPUserNet().eval(), torch.randn(2, 32), tmp_path / "m.onnx", check=False)
    assert {"fc1", "fc2", "fc3"} <= set(onnx_module_names(tmp_path / "m.onnx").values())


def test_pt2_roundtrip(tmp_path):
    model, x = conv_net(), torch.randn(3, 3, 12, 12)
    path = export_pt2(model, torch.randn(2, 3, 12, 12), tmp_path / "m.pt2")
    loaded = torch.export.load(str(path)).module()
    torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-6)


@torch.library.custom_op("slimtorch_test::mystery", mutates_args=())
def _mystery(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@_mystery.register_fake
def _(x):
    return torch.empty_like(x)


class _Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.ops.slimtorch_test.mystery(self.fc(x))


def test_unsupported_op_error_names_the_op(tmp_path):
    with pytest.raises(UnsupportedModelError, match="slimtorch_test.mystery"):
        export_onnx(_Unsupported(), torch.randn(2, 4), tmp_path / "u.onnx")
    assert not (tmp_path / "u.onnx").exists()
