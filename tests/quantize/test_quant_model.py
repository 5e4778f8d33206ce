import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import TensorDataset

from slimtorch.io import fold, load_model, save_model
from slimtorch.quantize import QuantConfig, layer_report, load_quantized, quant_params, quantize_model, save_quantized
from slimtorch.quantize.fake_quant import ActFakeQuant, WeightFakeQuant
from slimtorch.quantize.model import calibrate
from slimtorch.train import OptimizerConfig, TrainConfig, fit
from tests.user_models import ZeroMask


def _prune_half(model):
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            w = m.weight.detach()
            mask = (w.abs() > w.abs().median()).float()
            parametrize.register_parametrization(m, "weight", ZeroMask(mask))
    return model


def test_quantize_user_model_weights_only(user_net, image_data):
    x = image_data.tensors[0][:8]
    q = quantize_model(user_net, QuantConfig(weight_bits=4, act_bits=None))
    assert not parametrize.is_parametrized(user_net.conv)  # not in place by default
    for name in ("conv", "head"):
        w = getattr(q, name).weight
        for row in w:
            assert torch.unique(row).numel() <= 15  # symmetric 4 bits: 15 levels per channel
    out = q(x)
    assert out.shape == (8, 10) and torch.isfinite(out).all()
    rows = {r["layer"]: r for r in layer_report(q)}
    assert rows["conv"]["weight_bits"] == 4 and rows["conv"]["sqnr_db"] > 10


def test_pruned_zeros_stay_zero_under_quantization(mlp, vec_data):
    pruned = _prune_half(copy.deepcopy(mlp))
    for symmetric in (True, False):
        for method in ("ste", "lsq") if symmetric else ("ste",):
            q = quantize_model(
                pruned,
                QuantConfig(
                    weight_bits=3, act_bits=None, weight_symmetric=symmetric, method=method, per_channel=not symmetric
                ),
            )
            for name in ("fc1", "fc2"):
                mask = getattr(pruned, name).parametrizations.weight[0].mask
                w = getattr(q, name).weight
                assert torch.all(w[mask == 0] == 0)
                assert (w[mask == 1] != 0).float().mean() > 0.5


def test_activation_quantization_calibrates_and_exports(user_net, image_data):
    q = quantize_model(user_net, QuantConfig(weight_bits=8, act_bits=8, act_observer="minmax"), image_data)
    params = quant_params(q)
    assert set(params) == {"conv", "head"}
    p = params["conv"]
    assert p["weight_bits"] == 8 and len(p["weight_scale"]) == 4 and p["weight_zero_point"] == [0.0] * 4
    assert p["act_bits"] == 8 and p["act_zero_point"] == 0  # the input is in [0, 1]
    assert p["act_scale"] == pytest.approx(float(image_data.tensors[0].max()) / 255, rel=1e-5)
    assert isinstance(q.conv.input_quantizer, ActFakeQuant)
    # 8-bit simulation stays close to float
    x = image_data.tensors[0][:16]
    assert torch.allclose(q(x), user_net(x), atol=0.05)


@pytest.mark.parametrize("observer", ["minmax", "moving_average", "histogram", "mse"])
def test_every_observer_gives_a_range(mlp, vec_data, observer):
    q = quantize_model(
        mlp, QuantConfig(act_bits=4, act_observer=observer, calib_batches=2, calib_batch_size=32), vec_data
    )
    s, zp = q.fc1.input_quantizer.current_qparams()
    assert s > 0 and 0 <= zp <= 15
    x = vec_data.tensors[0][:4]
    assert torch.isfinite(q(x)).all()


def test_histogram_clips_outliers_minmax_does_not(mlp):
    x = torch.randn(4096, 16, generator=torch.Generator().manual_seed(0))
    x[0, 0] = 100.0
    scales = {}
    for obs in ("minmax", "histogram"):
        q = quantize_model(mlp, QuantConfig(act_bits=8, act_observer=obs, act_percentile=99.9), x)
        scales[obs] = q.fc1.input_quantizer.current_qparams()[0]
    assert scales["histogram"] < scales["minmax"] / 5


def test_empty_calibration_data_is_a_clear_error(mlp):
    q = quantize_model(mlp, QuantConfig(act_bits=8))
    with pytest.raises(ValueError, match="calibration data is empty"):
        calibrate(q, TensorDataset(torch.empty(0, 16), torch.empty(0)))
    with pytest.raises(ValueError, match="calibration data is empty"):
        calibrate(q, [])
    with pytest.raises(RuntimeError, match="not calibrated"):
        q(torch.randn(2, 16))


def test_per_layer_bits_and_unknown_layer(mlp):
    q = quantize_model(mlp, QuantConfig(weight_bits=8, act_bits=None, per_layer={"fc1": 2}))
    p = quant_params(q)
    assert p["fc1"]["weight_bits"] == 2 and p["fc2"]["weight_bits"] == 8
    assert all(torch.unique(r).numel() <= 3 for r in q.fc1.weight)
    from slimtorch.core import ConfigError

    with pytest.raises(ConfigError, match="fc9"):
        quantize_model(mlp, QuantConfig(per_layer={"fc9": 4}))


def test_qat_trains_and_keeps_grid(mlp, vec_data):
    q = quantize_model(mlp, QuantConfig(weight_bits=4, act_bits=8, act_observer="minmax"), vec_data)
    before = q.fc1.parametrizations.weight.original.detach().clone()
    cfg = TrainConfig(epochs=2, batch_size=32, optimizer=OptimizerConfig(lr=0.05))
    fit(q, vec_data, cfg, verbose=False)
    assert not torch.equal(before, q.fc1.parametrizations.weight.original)
    for row in q.fc1.weight:
        assert torch.unique(row).numel() <= 15


def test_lsq_step_gets_scaled_gradient(mlp):
    q = quantize_model(mlp, QuantConfig(weight_bits=4, act_bits=None, method="lsq", per_channel=False))
    wq = q.fc1.parametrizations.weight[0]
    assert isinstance(wq, WeightFakeQuant) and wq.learn_scale
    assert wq.grad_scale == pytest.approx(1 / (q.fc1.weight.numel() * 7) ** 0.5)
    # reference gradient of the step without scaling, computed independently (LSQ eq. 3)
    w = q.fc1.parametrizations.weight.original.detach()
    s = wq.step.detach()
    v = w / s
    ref = torch.where(v < -7, torch.tensor(-7.0), torch.where(v > 7, torch.tensor(7.0), v.round() - v))
    q.fc1.weight.sum().backward()
    assert wq.step.grad.item() == pytest.approx(float(ref.sum()) * wq.grad_scale, rel=1e-4)


def test_fold_save_load_gives_same_outputs(tmp_path, user_net, image_data):
    x = image_data.tensors[0][:8]
    q = quantize_model(user_net, QuantConfig(weight_bits=4, act_bits=None, weight_range="mse"))
    expected = q(x)
    path = save_model(fold(q), tmp_path / "q.safetensors")
    loaded = load_model(path, model=type(user_net)())
    assert torch.equal(loaded(x), expected)
    assert torch.equal(q(x), expected)  # folding a copy leaves the simulated model working


def test_save_quantized_restores_activation_quantizers(tmp_path, user_net, image_data):
    x = image_data.tensors[0][:8]
    q = quantize_model(user_net, QuantConfig(weight_bits=4, act_bits=4), image_data)
    path = save_quantized(q, tmp_path / "q.safetensors")
    loaded = load_quantized(path, model=type(user_net)())
    assert torch.allclose(loaded(x), q(x), atol=1e-6)  # q itself still works after saving
    assert not torch.allclose(user_net(x), q(x), atol=1e-3)  # 4-bit activations do change the output


def test_identical_seeds_identical_results(mlp, vec_data):
    outs = []
    for _ in range(2):
        q = quantize_model(mlp, QuantConfig(weight_bits=4, act_bits=8, weight_range="mse"), vec_data)
        fit(q, vec_data, TrainConfig(epochs=1, batch_size=32, seed=3), verbose=False)
        outs.append(q(vec_data.tensors[0]))
    assert torch.equal(outs[0], outs[1])


def test_requantizing_is_an_error(mlp):
    q = quantize_model(mlp, QuantConfig(act_bits=None))
    with pytest.raises(ValueError, match="already quantized"):
        quantize_model(q, QuantConfig(act_bits=None))
