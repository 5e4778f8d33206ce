"""Deterministic loaders, subsets, synthetic data and the dataset registry."""

import pytest
import torch
from torch.utils.data import TensorDataset

from slimtorch.core.errors import ConfigError
from slimtorch.data import dataset_info, get_dataset, list_datasets, make_loader, subset, synthetic_classification


def order(loader):
    return torch.cat([y for _, y in loader]).tolist()


def indexed(n=50):
    return TensorDataset(torch.zeros(n, 1), torch.arange(n))


def test_same_seed_and_epoch_give_same_order():
    ds = indexed()
    a = order(make_loader(ds, 8, shuffle=True, seed=3, epoch=2))
    b = order(make_loader(ds, 8, shuffle=True, seed=3, epoch=2))
    assert a == b and sorted(a) == list(range(50)) and a != list(range(50))


def test_order_depends_on_epoch_not_on_history():
    ds = indexed()
    loader = make_loader(ds, 8, shuffle=True, seed=3, epoch=0)
    first, second = order(loader), order(loader)
    assert first == second  # iterating again repeats the epoch
    loader.sampler.set_epoch(1)
    assert order(loader) == order(make_loader(ds, 8, shuffle=True, seed=3, epoch=1))
    assert order(loader) != first


def test_unshuffled_is_sequential_and_drop_last():
    loader = make_loader(indexed(10), 4, drop_last=True)
    assert order(loader) == list(range(8))


def test_subset_first_and_random():
    ds = indexed(20)
    assert subset(ds, 5).tensors[1].tolist() == [0, 1, 2, 3, 4]
    r = subset(ds, 5, seed=1).tensors[1].tolist()
    assert len(set(r)) == 5 and r == subset(ds, 5, seed=1).tensors[1].tolist()
    with pytest.raises(ConfigError):
        subset(ds, 0)


def test_synthetic_is_learnable_and_seeded():
    ds = synthetic_classification(n=200, shape=(1, 8, 8), num_classes=4, seed=0)
    x, y = ds.tensors
    assert x.shape == (200, 1, 8, 8) and set(y.tolist()) == {0, 1, 2, 3}
    assert torch.equal(x, synthetic_classification(n=200, shape=(1, 8, 8), num_classes=4, seed=0).tensors[0])
    # nearest class mean classifies almost perfectly: the signal is there
    means = torch.stack([x[y == c].mean(0) for c in range(4)]).flatten(1)
    pred = torch.cdist(x.flatten(1), means).argmin(1)
    assert (pred == y).float().mean() > 0.95


def test_registry_names_metadata_and_errors():
    assert {"mnist", "fashion_mnist", "idx", "cifar10", "synthetic"} <= set(list_datasets())
    assert dataset_info("cifar10").input_shape == (3, 32, 32)
    assert dataset_info("mnist").num_classes == 10
    train, test = get_dataset("synthetic", n_train=40, n_test=10, shape=(3, 4, 4))
    assert train.tensors[0].shape == (40, 3, 4, 4) and len(test) == 10
    with pytest.raises(ConfigError, match="available"):
        get_dataset("imagenet")
    with pytest.raises(ConfigError, match="batchsize"):
        get_dataset("synthetic", batchsize=3)


def test_holdout_split_is_seeded_disjoint_and_complete():
    from slimtorch.data import holdout_split

    data = list(range(100))
    rest, held = holdout_split(data, 20, seed=0)
    assert len(held) == 20 and len(rest) == 80 and not set(held.indices) & set(rest.indices)
    assert set(held.indices) | set(rest.indices) == set(range(100))
    assert held.indices == holdout_split(data, 20, seed=0)[1].indices  # the seed decides it...
    assert held.indices != holdout_split(data, 20, seed=1)[1].indices  # ...another seed moves it
    assert held.indices == sorted(held.indices)


@pytest.mark.parametrize("n, message", [(0, "must be >= 1"), (100, "leaves no training data")])
def test_holdout_split_refuses_an_empty_side(n, message):
    from slimtorch.data import holdout_split

    with pytest.raises(ConfigError, match=message):
        holdout_split(list(range(100)), n)
