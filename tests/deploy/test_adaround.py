"""AdaRound: weights exactly on ONNX Runtime's grid, kept by ORT, lower reconstruction error than RTN."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn import functional as F

from slimtorch.core.errors import ConfigError
from slimtorch.deploy import Int8Config, bias_correct, fold_conv_bn, prepare_float, to_int8
from slimtorch.deploy.adaround import LAYER_TYPES, adaround, adaround_report
from slimtorch.deploy.data import input_batches
from slimtorch.deploy.grid import grid_scale, ort_qmax
from tests.deploy.int8_models import conv_net
from tests.user_models import UserNet

torch.set_num_threads(1)


def _images(n=64, seed=0, shape=(3, 12, 12)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g) * 2 - 0.5


def _batches(n=64, seed=0, shape=(3, 12, 12)):
    return input_batches(_images(n, seed, shape), batch_size=16)  # 4 batches of 16


def _layers(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, LAYER_TYPES)}


def _rtn(model, per_channel=True, qmax=127):
    """The same model with round-to-nearest weights (what ORT does without AdaRound)."""
    import copy

    m = copy.deepcopy(model)
    with torch.no_grad():
        for mod in _layers(m).values():
            s = grid_scale(mod.weight, per_channel, qmax).view(-1, *[1] * (mod.weight.ndim - 1))
            mod.weight.copy_((mod.weight / s).round().clamp(-qmax, qmax) * s)
    return m


def _assert_on_grid(rounded, float_model, per_channel=True, qmax=127):
    for name, mod in _layers(rounded).items():
        w, w0 = mod.weight.detach(), float_model.get_submodule(name).weight.detach()
        s, s0 = grid_scale(w, per_channel, qmax), grid_scale(w0, per_channel, qmax)
        assert torch.allclose(s, s0, rtol=1e-6, atol=0), f"{name}: scale changed"
        q = w / s.view(-1, *[1] * (w.ndim - 1))
        assert float((q - q.round()).abs().max()) < 1e-4, f"{name}: off the grid"
        assert float(q.abs().max()) <= qmax + 1e-4


@pytest.mark.parametrize("per_channel,reduce_range", [(True, False), (False, False), (True, True)])
def test_weights_land_exactly_on_the_grid_with_unchanged_scales(per_channel, reduce_range):
    model = fold_conv_bn(conv_net())
    out = adaround(model, _batches(), per_channel=per_channel, reduce_range=reduce_range, iters=200)
    _assert_on_grid(out, model, per_channel, ort_qmax(reduce_range))
    assert not torch.equal(out.pw.weight, model.pw.weight), "a copy was rounded, the original is untouched"
    assert not any(torch.equal(out.get_submodule(n).weight, m.weight) for n, m in _layers(model).items())


def test_ort_keeps_the_adaround_integers(tmp_path):
    model, calib = conv_net(), _images()
    cfg = Int8Config(adaround=True, adaround_iters=200, max_float_layers=0, cle=False, calib_batches=4)
    q = to_int8(model, cfg, calib, out_dir=tmp_path)
    # the same preparation, deterministic: the weights ORT was handed
    prepared, _ = prepare_float(model, cfg, input_batches(calib, 1, cfg.calib_batch_size, cfg.calib_batches))
    graph = onnx.load(str(q.path)).graph
    int8 = [numpy_helper.to_array(i) for i in graph.initializer if i.data_type == onnx.TensorProto.INT8]
    moved = 0
    for name, mod in _layers(prepared).items():
        w = mod.weight.detach()
        ours = (w / grid_scale(w, True, 127).view(-1, *[1] * (w.ndim - 1))).round().to(torch.int8).numpy()
        assert any(a.shape == ours.shape and np.array_equal(a, ours) for a in int8) or any(
            a.shape == ours.T.shape and np.array_equal(a, ours.T) for a in int8
        ), f"{name}: ORT re-rounded it"
        w_float = fold_conv_bn(model).get_submodule(name).weight.detach()
        rtn = (w_float / grid_scale(w_float, True, 127).view(-1, *[1] * (w.ndim - 1))).round().to(torch.int8)
        moved += int((rtn.numpy() != ours).sum())
    assert moved > 0, "AdaRound chose some roundings other than nearest (else this test proves nothing)"


def _layer_errors(model, ref, batches):
    """Squared error of every layer's output (its own model's inputs) against the float model's, summed."""
    outs: dict[str, dict[str, torch.Tensor]] = {"m": {}, "r": {}}

    def hook(store, name):
        return lambda _m, _i, o: store.__setitem__(name, torch.cat([store[name], o]) if name in store else o)

    handles = [
        mod.register_forward_hook(hook(outs[k], n))
        for k, net in (("m", model), ("r", ref))
        for n, mod in _layers(net).items()
    ]
    with torch.no_grad():
        for b in batches:
            model(*b), ref(*b)
    for h in handles:
        h.remove()
    return {n: float((outs["m"][n] - outs["r"][n]).pow(2).mean()) for n in outs["r"]}


def test_reconstruction_error_is_lower_than_round_to_nearest():
    # what is compared: each layer's output in the rounded model (inputs from the rounded earlier
    # layers) against the float model's, on the 4 calibration batches AdaRound saw and on 4 unseen
    # batches of the same distribution; RTN is the grid ORT uses, rounded to nearest
    model, calib, held_out = fold_conv_bn(conv_net()), _batches(), _batches(seed=5)
    ada, report = adaround_report(model, calib, iters=500)
    rtn = _rtn(model)
    for data in (calib, held_out):
        e_ada, e_rtn = _layer_errors(ada, model, data), _layer_errors(rtn, model, data)
        for name in e_rtn:
            assert e_ada[name] < e_rtn[name], (name, e_ada[name], e_rtn[name])
    assert report["layers"] == 4 and report["iters"] == 500
    assert all(v["mse_adaround"] < v["mse_rtn"] for v in report["per_layer"].values())
    assert report["mean_mse_adaround"] < report["mean_mse_rtn"]


@pytest.mark.parametrize(
    "conv", [nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Conv2d(4, 4, (3, 2), padding=(1, 2), dilation=2, groups=2)]
)
def test_sampled_patches_are_unfold_rows(conv):
    from slimtorch.deploy.adaround import input_rows, output_positions

    x = _images(2, shape=(4, 9, 7))
    n = output_positions(conv, x)
    cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # [B, C*k, L]
    idx = torch.tensor([0, 3, n // 2, n - 1])
    assert torch.equal(input_rows(conv, x, idx), cols.transpose(1, 2).reshape(n, -1)[idx])


class _Depthwise(nn.Module):
    """Depthwise + grouped 2-D convs (stride, dilation), a reflect-padded 1-D conv, a layer called twice."""

    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6)
        self.grouped = nn.Conv2d(6, 4, 3, padding=2, dilation=2, groups=2)
        self.seq = nn.Conv1d(4, 4, 3, padding="same", padding_mode="reflect")
        self.shared = nn.Linear(4, 4)

    def forward(self, x):
        x = F.relu(self.grouped(F.relu(self.dw(x))))
        x = self.seq(x.flatten(2)).mean(2)
        return self.shared(F.relu(self.shared(x)))


def test_depthwise_grouped_conv1d_and_shared_layer():
    torch.manual_seed(0)
    model, calib = _Depthwise().eval(), _batches(shape=(6, 10, 10))
    ada, report = adaround_report(model, calib, iters=300)
    _assert_on_grid(ada, model)
    assert list(report["per_layer"]) == ["dw", "grouped", "seq", "shared"]  # the order forward calls them
    assert report["per_layer"]["dw"]["mse_adaround"] < report["per_layer"]["dw"]["mse_rtn"]
    x = _images(8, seed=3, shape=(6, 10, 10))
    assert torch.allclose(ada(x), model(x), atol=0.05)


def test_user_model_with_own_forward_and_batchnorm():
    torch.manual_seed(0)
    model = UserNet().eval()
    with torch.no_grad():
        model.bn.running_var.uniform_(0.5, 2.0)
    calib = _batches(shape=(1, 28, 28))
    ada = adaround(model, calib, iters=200, layers={"include": ["stem", "block.*"]})
    folded = fold_conv_bn(model)
    assert isinstance(ada.bn, nn.Identity), "BN folded first: the exporter would fold it and move the weights"
    _assert_on_grid(
        nn.ModuleDict({"stem": ada.stem, "block": ada.block}),
        nn.ModuleDict({"stem": folded.stem, "block": folded.block}),
    )
    assert torch.equal(ada.head.weight, model.head.weight), "layers outside `layers` are left alone"
    x = _images(8, seed=3, shape=(1, 28, 28))
    assert F.cosine_similarity(ada(x), model(x), dim=1).min() > 0.99


def test_bias_correction_sees_no_error_on_rounded_layers():
    model, calib = fold_conv_bn(conv_net()), _batches()
    ada = adaround(model, calib, iters=100)
    corrected = bias_correct(ada, calib)
    for name, mod in _layers(ada).items():
        assert torch.allclose(corrected.get_submodule(name).bias, mod.bias, atol=1e-6), name


def test_prepare_float_records_adaround_and_keeps_float_layers_untouched():
    model, calib = conv_net(), _batches()
    cfg = Int8Config(adaround=True, adaround_iters=100, cle=False, layers={"exclude": ["head"]})
    prepared, info = prepare_float(model, cfg, calib)
    rec = info["adaround"]
    assert set(rec["per_layer"]) == {"conv1", "dw", "pw"} and rec["iters"] == 100
    assert rec["mean_mse_adaround"] < rec["mean_mse_rtn"]
    assert torch.equal(prepared.head.weight, model.head.weight)


def test_bad_input_is_refused():
    model = fold_conv_bn(conv_net())
    with pytest.raises(ConfigError, match="empty"):
        adaround(model, [])
    with pytest.raises(ConfigError, match="empty"):
        adaround(model, [(torch.empty(0, 3, 12, 12),)])
    with pytest.raises(ConfigError, match="adaround_iters"):
        Int8Config.from_dict({"adaround": True, "adaround_iters": 0})
    with pytest.raises(ConfigError, match="static"):
        Int8Config.from_dict({"adaround": True, "mode": "dynamic"})
