"""Batches from a dataset for given indices, without per-example Python overhead when possible.

``DataLoader`` fetches examples one by one and collates them, which costs more than
a LeNet's forward pass on MNIST. For in-memory ``TensorDataset``s (and ``Subset``s of
them) a batch is one fancy-indexing call instead; any other dataset goes through a
``DataLoader`` with the same indices, so results are identical either way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset


def _resolve(dataset: Dataset) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None] | None:
    """(tensors, index map) if ``dataset`` is a TensorDataset or nested Subsets of one."""
    index: torch.Tensor | None = None
    while isinstance(dataset, Subset):
        sub = torch.as_tensor(list(dataset.indices) if not torch.is_tensor(dataset.indices) else dataset.indices)
        index = sub if index is None else sub[index]
        dataset = dataset.dataset
    if isinstance(dataset, TensorDataset):
        return dataset.tensors, index
    return None


def iterate_batches(dataset: Dataset, indices: Sequence[int] | torch.Tensor, batch_size: int) -> Iterator[tuple]:
    """Yield ``(inputs, targets, ...)`` batches of ``dataset[indices]`` in order."""
    fast = _resolve(dataset)
    idx = torch.as_tensor(indices, dtype=torch.long)
    if fast is None:
        loader = DataLoader(dataset, batch_size=batch_size, sampler=idx.tolist())
        yield from loader
        return
    tensors, index_map = fast
    if index_map is not None:
        idx = index_map[idx]
    for start in range(0, len(idx), batch_size):
        b = idx[start : start + batch_size]
        yield tuple(t[b] for t in tensors)
