import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from slimtorch.core import ConfigError
from slimtorch.io import fold, load_model, save_model
from slimtorch.quantize import (
    ClipConfig,
    KMeansConfig,
    QuantConfig,
    clip_weights,
    kmeans_share,
    layer_report,
    select_bits,
    shared_state,
)
from slimtorch.quantize.kmeans import KMeansShare, kmeans_1d, kmeans_skipped, shared_tensors, to_shared_tensor
from tests.user_models import ZeroMask


def _prune(model, keep=0.3):
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            w = m.weight.detach()
            thr = w.abs().flatten().kthvalue(int(w.numel() * (1 - keep))).values
            parametrize.register_parametrization(m, "weight", ZeroMask((w.abs() > thr).float()))
    return model


@pytest.mark.parametrize("init", ["linear", "density", "kmeans++"])
@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_kmeans_keeps_zeros_and_at_most_2b_values(user_net, init, bits):
    pruned = _prune(copy.deepcopy(user_net))
    shared = kmeans_share(pruned, KMeansConfig(bits=bits, init=init))
    for name in ("conv", "head"):
        before = getattr(pruned, name).weight.detach()
        after = getattr(shared, name).weight.detach()
        assert torch.all(after[before == 0] == 0)
        assert torch.all(after[before != 0] != 0)
        assert torch.unique(after[after != 0]).numel() <= 2**bits


def test_kmeans_1d_matches_independent_lloyd():
    g = torch.Generator().manual_seed(0)
    v = torch.cat([torch.randn(300, generator=g) * 0.1 - 1, torch.randn(300, generator=g) * 0.1 + 2])
    c, a = kmeans_1d(v, 2, "linear")
    assert torch.allclose(c, torch.stack([v[:300].mean(), v[300:].mean()]), atol=1e-5)
    assert torch.equal(a, torch.cat([torch.zeros(300), torch.ones(300)]).long())
    # brute force check: every value is assigned to its nearest centroid, centroids are cluster means
    v = torch.randn(1000, generator=torch.Generator().manual_seed(5))
    for init in ("linear", "density", "kmeans++"):
        c, a = kmeans_1d(v, 8, init, seed=1)
        assert torch.equal(a, (v[:, None] - c[None, :]).abs().argmin(1))
        for k in a.unique():
            assert torch.isclose(c[k], v[a == k].mean(), atol=1e-5)


def test_centroid_gradient_is_sum_of_member_gradients(mlp, vec_data):
    shared = kmeans_share(_prune(copy.deepcopy(mlp)), KMeansConfig(bits=2))
    km = shared.fc1.parametrizations.weight[-1]
    assert isinstance(km, KMeansShare)
    x, y = vec_data.tensors
    # dL/dW of the shared weight, captured through a hook
    captured = {}
    w = shared.fc1.weight
    w.register_hook(lambda g: captured.setdefault("g", g))
    out = torch.nn.functional.linear(
        torch.relu(torch.nn.functional.linear(x, w, shared.fc1.bias)), shared.fc2.weight, shared.fc2.bias
    )
    torch.nn.functional.cross_entropy(out, y).backward()
    g = captured["g"]
    expected = torch.stack([g[km.indices == i + 1].sum() for i in range(km.codebook.numel())])
    assert torch.allclose(km.codebook.grad, expected, atol=1e-6)
    assert km.codebook.grad.abs().sum() > 0


def test_finetuning_moves_centroids_not_the_pattern(mlp, vec_data):
    from slimtorch.train import OptimizerConfig, TrainConfig, fit

    shared = kmeans_share(_prune(copy.deepcopy(mlp)), KMeansConfig(bits=3))
    km = shared.fc1.parametrizations.weight[-1]
    c0, idx0 = km.codebook.detach().clone(), km.indices.clone()
    zeros0 = shared.fc1.weight.detach() == 0
    fit(shared, vec_data, TrainConfig(epochs=2, batch_size=32, optimizer=OptimizerConfig(lr=0.1)), verbose=False)
    assert not torch.equal(c0, km.codebook.detach())
    assert torch.equal(idx0, km.indices)
    w = shared.fc1.weight.detach()
    assert torch.equal(w == 0, zeros0)
    assert torch.unique(w[w != 0]).numel() <= 8


def test_identical_seeds_identical_codebooks(user_net):
    a = kmeans_share(user_net, KMeansConfig(bits=4, init="kmeans++", seed=7))
    b = kmeans_share(user_net, KMeansConfig(bits=4, init="kmeans++", seed=7))
    c = kmeans_share(user_net, KMeansConfig(bits=4, init="kmeans++", seed=8))
    sa, sb, sc = shared_tensors(a), shared_tensors(b), shared_tensors(c)
    assert torch.equal(sa["head"].codebook, sb["head"].codebook)
    assert torch.equal(sa["head"].indices, sb["head"].indices)
    assert not torch.equal(sa["head"].codebook, sc["head"].codebook)


def test_empty_layer_is_skipped_and_reported_or_errors(mlp):
    m = copy.deepcopy(mlp)
    with torch.no_grad():
        m.fc2.weight.zero_()
    with pytest.warns(UserWarning, match="fc2"):
        shared = kmeans_share(m, KMeansConfig(bits=3))
    assert kmeans_skipped(shared) == ["fc2"]
    assert set(shared_tensors(shared)) == {"fc1"}
    with pytest.raises(ValueError, match="fc2.*no non-zero"):
        kmeans_share(m, KMeansConfig(bits=3, empty_layers="error"))


@pytest.mark.parametrize("bits", [0, 17, -1])
def test_invalid_kmeans_bits(bits):
    with pytest.raises(ConfigError) as e:
        KMeansConfig(bits=bits)
    assert e.value.field == "bits" and "1..16" in str(e.value)


def test_shared_tensor_round_trip_and_fold_save_load(tmp_path, user_net, image_data):
    shared = kmeans_share(_prune(copy.deepcopy(user_net)), KMeansConfig(bits=4))
    x = image_data.tensors[0][:8]
    expected = shared(x)
    layers = shared_tensors(shared)
    st = to_shared_tensor(layers["head"])
    assert np.array_equal(st.to_dense(), shared.head.weight.detach().numpy())
    state = shared_state(shared)
    assert type(state["conv.weight"]).__name__ == "SharedTensor" and "conv.bias" in state
    assert torch.equal(shared(x), expected)  # building the state left the model intact
    path = save_model(fold(shared, inplace=True), tmp_path / "k.safetensors")
    loaded = load_model(path, model=type(user_net)())
    assert torch.equal(loaded(x), expected)


def test_report_counts_distinct_values_and_sqnr(user_net):
    shared = kmeans_share(user_net, KMeansConfig(bits=3))
    rows = {r["layer"]: r for r in layer_report(shared)}
    assert rows["head"]["kind"] == "kmeans" and rows["head"]["distinct_values"] <= 8
    assert 5 < rows["head"]["sqnr_db"] < 40
    assert layer_report(user_net)[0]["kind"] == "float"


def test_clip_weights_follows_seed_formula(mlp):
    w = mlp.fc1.weight.detach()
    t = float(w.abs().quantile(0.9))
    sat = clip_weights(mlp, ClipConfig(threshold=t))
    lit = clip_weights(mlp, ClipConfig(threshold=t, value=0.0, layers={"include": ["fc1"]}))
    big = w.abs() > t
    assert torch.equal(sat.fc1.weight[big], torch.sign(w[big]) * t)
    assert torch.equal(sat.fc1.weight[~big], w[~big])
    assert torch.all(lit.fc1.weight[big] == 0) and torch.equal(lit.fc2.weight, mlp.fc2.weight)
    with pytest.raises(ConfigError) as e:
        ClipConfig(threshold=-1)
    assert e.value.field == "threshold"


def test_select_bits_respects_tolerance(mlp, vec_data):
    res = select_bits(mlp, QuantConfig(act_bits=None), vec_data, tolerance=0.02, bits_options=(8, 4, 2))
    assert set(res.per_layer) == {"fc1", "fc2"}
    assert res.accuracy >= res.baseline - 0.02
    assert all(b in (8, 4, 2) for b in res.per_layer.values())
    assert set(res.sensitivity["fc1"]) == {8, 4, 2}


def test_bias_bits_share_biases_which_the_slim_file_then_codes(mlp):
    from slimtorch.encode import SharedTensor
    from slimtorch.encode.format import pack_state, unpack_state
    from slimtorch.quantize.kmeans import shared_biases

    big = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 3))
    shared = kmeans_share(big, {"bits": 3, "bias_bits": 2})
    biases = shared_biases(shared)
    # the 64-wide bias is shared; the 3-wide one has no more values than centroids: left float
    assert set(biases) == {"0"} and not parametrize.is_parametrized(shared[2], "bias")
    assert torch.unique(shared[0].bias.detach()).numel() <= 4
    assert torch.equal(big[0].bias, copy.deepcopy(big)[0].bias)  # the input model is untouched
    state = shared_state(shared)
    assert isinstance(state["0.bias"], SharedTensor) and not isinstance(state["2.bias"], SharedTensor)
    decoded, _ = unpack_state(pack_state(state))
    assert np.array_equal(decoded["0.bias"], shared[0].bias.detach().numpy())
    plain = pack_state(shared_state(kmeans_share(big, {"bits": 3})))
    assert len(pack_state(state)) < len(plain)


def test_bias_codebook_trains_like_the_weights():
    torch.manual_seed(0)
    layer = kmeans_share(nn.Linear(4, 40), {"bits": 2, "bias_bits": 2})
    names = {n for n, p in layer.named_parameters() if p.requires_grad}
    assert "parametrizations.bias.0.codebook" in names
    layer(torch.randn(5, 4)).sum().backward()
    assert layer.parametrizations.bias[0].codebook.grad.abs().sum() > 0


@pytest.mark.parametrize("bits", [0, 17, "x"])
def test_invalid_bias_bits(bits):
    with pytest.raises(ConfigError, match="bias_bits"):
        KMeansConfig(bias_bits=bits)
