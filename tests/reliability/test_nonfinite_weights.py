"""NaN / Inf weights: documented behaviour, not an error.

Decision: files store what the model holds, bit for bit (a diverged model must be
inspectable after saving it), and ``measure`` reports what it sees (loss NaN) rather
than refusing. Both are documented in docs/errors.md.
"""

from __future__ import annotations

import math

import torch

import slimtorch
from slimtorch.io.model_file import load_model, save_model
from slimtorch.models import create_model

torch.set_num_threads(1)


def _nonfinite_model():
    torch.manual_seed(0)
    m = create_model("mlp", hidden=[8], num_classes=3, in_features=4)
    with torch.no_grad():
        m.fc1.weight[0, 0] = float("nan")
        m.fc1.weight[1, 1] = float("inf")
        m.fc1.weight[2, 2] = float("-inf")
    return m


def test_model_file_keeps_nonfinite_weights_bit_exact(tmp_path):
    m = _nonfinite_model()
    back = load_model(save_model(m, tmp_path / "m.safetensors"))
    a, b = m.fc1.weight.detach(), back.fc1.weight.detach()
    assert torch.equal(a.view(torch.int32), b.view(torch.int32))


def test_slim_keeps_nonfinite_weights_bit_exact(tmp_path):
    m = _nonfinite_model()
    slimtorch.save(m, tmp_path / "m.slim")
    back = slimtorch.load(tmp_path / "m.slim")
    assert torch.equal(m.fc1.weight.detach().view(torch.int32), back.fc1.weight.detach().view(torch.int32))


def test_measure_reports_nan_loss_instead_of_raising():
    from torch.utils.data import TensorDataset

    from slimtorch.measure import measure

    ds = TensorDataset(torch.randn(16, 4), torch.randint(0, 3, (16,)))
    rec = measure(_nonfinite_model(), torch.randn(2, 4), data=ds, latency_batches=())
    assert math.isnan(rec.loss) and 0.0 <= rec.accuracy <= 1.0
    assert rec.params == 8 * 4 + 8 + 3 * 8 + 3
