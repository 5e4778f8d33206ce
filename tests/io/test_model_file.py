import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from slimtorch.core import FormatError
from slimtorch.io import fold, load_model, save_model
from slimtorch.models import create_model


def test_zoo_model_round_trips_without_the_python_object(tmp_path):
    torch.manual_seed(0)
    model = create_model("lenet5").eval()
    path = save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(path)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(model(x), loaded(x))


def test_sparse_model_file_really_shrinks(tmp_path):
    torch.manual_seed(0)
    model = create_model("lenet300_100").eval()
    dense = save_model(model, tmp_path / "dense.safetensors").stat().st_size
    for m in model.modules():
        if isinstance(m, nn.Linear):
            torch_prune.l1_unstructured(m, "weight", amount=0.9)
    sparse_path = save_model(model, tmp_path / "sparse.safetensors")
    assert sparse_path.stat().st_size < 0.2 * dense
    loaded = load_model(sparse_path)
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(fold(model)(x), loaded(x))


def test_structurally_changed_model_is_rebuilt_from_stored_shapes(tmp_path):
    torch.manual_seed(0)
    model = create_model("lenet300_100").eval()
    # Remove 200 hidden units of fc1 by hand (what structured pruning does).
    keep = torch.arange(100)
    fc1, fc2 = model.fc1, model.fc2
    new1 = nn.Linear(fc1.in_features, 100)
    new1.weight.data, new1.bias.data = fc1.weight.data[keep].clone(), fc1.bias.data[keep].clone()
    new2 = nn.Linear(100, fc2.out_features)
    new2.weight.data, new2.bias.data = fc2.weight.data[:, keep].clone(), fc2.bias.data.clone()
    model.fc1, model.fc2 = new1, new2
    path = save_model(model, tmp_path / "pruned.safetensors")
    loaded = load_model(path)
    assert loaded.fc1.out_features == 100
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(model(x), loaded(x))


def test_user_model_loads_into_given_instance(tmp_path, user_net):
    user_net.eval()
    path = save_model(user_net, tmp_path / "u.safetensors")
    with pytest.raises(FormatError, match="model="):
        load_model(path)
    from tests.user_models import UserNet

    fresh = load_model(path, model=UserNet())
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(user_net(x), fresh(x))


@pytest.mark.parametrize("cut", [0, 5, 100, -10])
def test_truncated_file_is_rejected(tmp_path, cut):
    model = create_model("lenet300_100")
    data = save_model(model, tmp_path / "m.safetensors").read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(data[:cut] if cut >= 0 else data[:cut])
    with pytest.raises(FormatError):
        load_model(bad)


def test_pickle_file_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    p = tmp_path / "evil.safetensors"
    p.write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(FormatError, match="pickle"):
        load_model(p)
    torch.save({"w": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(FormatError):
        load_model(tmp_path / "evil.pt")
    assert not marker.exists()


def test_foreign_safetensors_file_is_rejected(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "x.safetensors")
    with pytest.raises(FormatError, match="not a slimtorch model file"):
        load_model(tmp_path / "x.safetensors")


def test_fold_of_a_copy_leaves_the_parametrized_original_working():
    from torch.nn.utils import parametrize

    class Double(nn.Module):
        def forward(self, w):
            return 2 * w

    model = nn.Sequential(nn.Linear(4, 3))
    parametrize.register_parametrization(model[0], "weight", Double())
    x = torch.randn(2, 4)
    before = model(x)
    folded = fold(model)
    assert torch.equal(folded(x), before)
    assert torch.equal(model(x), before)  # the original still has its parametrization
    assert parametrize.is_parametrized(model[0]) and not parametrize.is_parametrized(folded[0])
