"""Datasets (real MNIST, IDX folders, CIFAR-10, synthetic) and deterministic loaders."""

from slimtorch.data.cifar import load_cifar10, read_cifar_binary, read_cifar_python
from slimtorch.data.idx import load_fashion_mnist, load_idx_folder, read_idx
from slimtorch.data.loaders import EpochSampler, holdout_split, make_loader, subset
from slimtorch.data.mnist import load_mnist
from slimtorch.data.photos import UNLABELLED, is_unlabelled, load_photos
from slimtorch.data.registry import (
    DATASETS,
    DatasetInfo,
    dataset_info,
    get_dataset,
    list_datasets,
    register_dataset,
)
from slimtorch.data.synthetic import synthetic_classification

__all__ = [
    "UNLABELLED",
    "is_unlabelled",
    "load_photos",
    "DATASETS",
    "DatasetInfo",
    "EpochSampler",
    "dataset_info",
    "get_dataset",
    "holdout_split",
    "list_datasets",
    "load_cifar10",
    "load_fashion_mnist",
    "load_idx_folder",
    "load_mnist",
    "make_loader",
    "read_cifar_binary",
    "read_cifar_python",
    "read_idx",
    "register_dataset",
    "subset",
    "synthetic_classification",
]
