"""Deterministic data loaders.

Epoch ``k`` of a shuffled loader visits samples in an order that depends only
on ``(seed, k)``: the sampler draws a fresh ``torch.Generator`` seeded with
``seed + epoch`` every time it is iterated. A run resumed at epoch ``k``
therefore sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, TensorDataset

from slimtorch.core.errors import ConfigError


class EpochSampler(Sampler[int]):
    """Random permutation of ``range(n)`` seeded with ``seed + epoch``; same order on every pass."""

    def __init__(self, n: int, seed: int, epoch: int = 0):
        self.n, self.seed, self.epoch = n, seed, epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    """A DataLoader whose order depends only on ``(seed, epoch)``.

    Args:
        dataset: any map-style dataset.
        batch_size: samples per batch (>= 1).
        shuffle: visit samples in a seeded random order.
        seed: base seed; epoch ``k`` uses ``seed + k``.
        epoch: which epoch's order to produce (``loader.sampler.set_epoch`` changes it later).
        drop_last: drop the last incomplete batch.
        num_workers: worker processes; their seeds also derive from ``seed + epoch``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}", field="batch_size")
    sampler = EpochSampler(len(dataset), seed, epoch) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed + epoch),  # worker base seeds
    )


def subset(dataset: Dataset, n: int, seed: int | None = None) -> Dataset:
    """The first ``n`` samples of ``dataset`` (or ``n`` random ones when ``seed`` is given).

    TensorDatasets are sliced into a new TensorDataset (fast indexing); other
    datasets are wrapped in a :class:`torch.utils.data.Subset`.
    """
    if n < 1:
        raise ConfigError(f"subset size must be >= 1, got {n}", field="n")
    total = len(dataset)
    n = min(n, total)
    if seed is None:
        idx = torch.arange(n)
    else:
        idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n]
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(t[idx] for t in dataset.tensors))
    return Subset(dataset, idx.tolist())


def holdout_split(
    dataset: Dataset, n: int, seed: int = 0, *, field: str = "validation_size"
) -> tuple[Dataset, Dataset]:
    """``(rest, held_out)``: ``n`` examples drawn by a seeded permutation, held out of ``dataset``.

    The rule (the first ``n`` indices of ``torch.randperm(len(dataset))`` seeded with
    ``seed``; both parts keep the original order) is the one recipes use for
    ``data.validation_size``, so a benchmark that holds out the same ``n`` with the
    same seed selects on exactly the images a recipe run monitors.
    """
    if n < 1:
        raise ConfigError(f"{field} must be >= 1 (got {n}); leave it out to hold nothing out", field=field)
    if n >= len(dataset):
        raise ConfigError(
            f"{field} {n} leaves no training data (the data has {len(dataset)} examples); hold out fewer", field=field
        )
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, sorted(order[n:])), Subset(dataset, sorted(order[:n]))
