"""Tiny synthetic classification data with a learnable signal, for tests and smoke runs."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from slimtorch.core.errors import ConfigError


def synthetic_classification(
    n: int = 256,
    shape: tuple[int, ...] = (1, 28, 28),
    num_classes: int = 10,
    seed: int = 0,
    noise: float = 0.5,
) -> TensorDataset:
    """Gaussian clusters: each class has its own mean image, plus noise.

    A linear model separates the classes well, so a short training run must
    reach high accuracy; that makes accuracy drops after a transform visible.

    Args:
        n: number of samples.
        shape: per-sample input shape, e.g. ``(1, 28, 28)``.
        num_classes: number of classes; labels cycle so every class appears.
        seed: the data depends only on this seed.
        noise: standard deviation of the per-sample noise.

    Returns:
        TensorDataset of inputs ``(n, *shape)`` float32 and labels ``(n,)`` int64.
    """
    if n < 1 or num_classes < 2:
        raise ConfigError(f"need n >= 1 and num_classes >= 2, got n={n}, num_classes={num_classes}", field="n")
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num_classes, *shape, generator=g)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    x = means[labels] + noise * torch.randn(n, *shape, generator=g)
    return TensorDataset(x, labels.long())
