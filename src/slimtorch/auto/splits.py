"""The selection split of a search, carved from the training data.

A search makes hundreds of choices (sensitivity curves, whether a fine-tune pays, which
candidate meets the budget, which is smallest). Made on the data the result is then
reported on, they fit that data: the LeNet-5 bench once passed a 0.2 pp budget by two
MNIST test images. So the choices are made on a *selection* split held out of
``train_data`` (never trained on during the search), and ``eval_data`` is used once, for
the chosen model's reported figure.

The selection split is the *last* examples of ``train_data``: deterministic and easy to
keep out of the original model's own training (train it on ``train_data[:-n]``, see
:func:`selection_size`), which is what makes the selection figures unbiased.
"""

from __future__ import annotations

from torch.utils.data import Dataset, Subset

from slimtorch.auto.config import AutoConfig
from slimtorch.core.errors import ConfigError


def selection_size(n_train: int, cfg: AutoConfig) -> int:
    """How many of ``n_train`` training examples the selection split takes."""
    n = cfg.selection_samples if cfg.selection_samples is not None else round(n_train * cfg.selection_fraction)
    if n < 1 or n >= n_train:
        raise ConfigError(
            f"the selection split would take {n} of {n_train} training examples; it needs at least one "
            "and must leave some to fine-tune on: set selection_samples / selection_fraction",
            field="selection_samples",
        )
    return n


def selection_split(train_data: Dataset, cfg: AutoConfig) -> tuple[Dataset, Dataset]:
    """``(train, selection)``: the first ``len - n`` examples and the last ``n`` (:func:`selection_size`)."""
    total = len(train_data)
    n = selection_size(total, cfg)
    return Subset(train_data, range(total - n)), Subset(train_data, range(total - n, total))
