"""Whole-model .slim files: bit-exact decode, CLI pack/unpack, the encode recipe stage."""

import pytest
import torch

import slimtorch
from slimtorch.cli import main
from slimtorch.core import FormatError
from slimtorch.encode.model import is_slim, load_packed, pack_model
from slimtorch.io import fold, save_model
from slimtorch.models import create_model
from slimtorch.prune import PruneConfig, prune
from slimtorch.quantize import KMeansConfig, kmeans_share


def _compressed(name="lenet300_100", sparsity=0.9, bits=4):
    torch.manual_seed(0)
    model = create_model(name)
    model = prune(model, PruneConfig(sparsity=sparsity))
    return kmeans_share(model, KMeansConfig(bits=bits))


def test_decoded_model_is_bitwise_identical_to_the_quantized_one(tmp_path):
    model = _compressed()
    path = tmp_path / "m.slim"
    data = pack_model(model, path)
    assert is_slim(data)
    decoded = slimtorch.load(path)
    x = torch.randn(8, 1, 28, 28)
    assert torch.equal(fold(model).eval()(x), decoded(x))
    for k, v in fold(model).state_dict().items():
        assert torch.equal(v, decoded.state_dict()[k]), k


def test_slim_file_is_much_smaller_than_the_dense_file(tmp_path):
    model = _compressed(sparsity=0.92, bits=5)
    dense = save_model(create_model("lenet300_100"), tmp_path / "dense.safetensors", sparse=False).stat().st_size
    slim = len(pack_model(model))
    assert dense / slim > 25


def test_conv_model_round_trips(tmp_path):
    model = _compressed("lenet5", 0.8, 5)
    decoded = load_packed(pack_model(model))
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(fold(model).eval()(x), decoded(x))


def test_user_model_without_spec_needs_an_instance(user_net):
    from tests.user_models import UserNet

    shared = kmeans_share(user_net, KMeansConfig(bits=3))
    data = pack_model(shared)
    with pytest.raises(FormatError, match="model"):
        load_packed(data)
    decoded = load_packed(data, model=UserNet())
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(fold(shared).eval()(x), decoded(x))


def test_cli_pack_then_unpack(tmp_path, capsys):
    model = fold(_compressed())
    src = save_model(model, tmp_path / "q.safetensors")
    slim = tmp_path / "q.slim"
    assert main(["pack", str(src), "-o", str(slim)]) == 0
    assert "total" in capsys.readouterr().out
    assert main(["pack", str(src), "-o", str(slim)]) == 2  # no overwrite without --force
    out = tmp_path / "back.safetensors"
    assert main(["unpack", str(slim), "-o", str(out)]) == 0
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(model.eval()(x), slimtorch.load(out)(x))


def test_truncated_slim_is_rejected_by_load(tmp_path):
    data = pack_model(_compressed())
    p = tmp_path / "bad.slim"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError):
        slimtorch.load(p)
