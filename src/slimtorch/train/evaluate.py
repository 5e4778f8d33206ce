"""Evaluation: top-1 accuracy, loss, and agreement between two models."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


@dataclass(frozen=True)
class EvalResult:
    accuracy: float  # top-1, in [0, 1]
    loss: float  # mean cross-entropy
    n: int

    @property
    def error(self) -> float:
        return 1.0 - self.accuracy

    def to_dict(self) -> dict:
        return asdict(self)


def _loader(data: Dataset | DataLoader, batch_size: int):
    if isinstance(data, DataLoader):
        return data
    from slimtorch.train.batches import iterate_batches

    return iterate_batches(data, range(len(data)), batch_size)


@torch.no_grad()
def predict(model: nn.Module, data: Dataset | DataLoader, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``model`` on every example, in order (model put in eval mode, restored after)."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x) for x, *_ in _loader(data, batch_size)])
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset | DataLoader, batch_size: int = 1000) -> EvalResult:
    """Top-1 accuracy and mean cross-entropy of ``model`` on labelled ``data``."""
    was_training = model.training
    model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    try:
        for x, y in _loader(data, batch_size):
            logits = model(x)
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            n += len(y)
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluation data is empty")
    return EvalResult(accuracy=correct / n, loss=loss_sum / n, n=n)


@torch.no_grad()
def agreement(model: nn.Module, reference: nn.Module, data: Dataset | DataLoader, batch_size: int = 256) -> dict:
    """Fidelity of ``model`` to ``reference`` where no labels exist.

    Returns:
        ``top1_agreement`` (fraction of equal argmax) and ``mean_kl`` (KL(ref || model)
        of the softmax outputs, averaged over examples).
    """
    a = predict(model, data, batch_size)
    b = predict(reference, data, batch_size)
    kl = nn.functional.kl_div(a.log_softmax(1), b.log_softmax(1), log_target=True, reduction="batchmean")
    return {"top1_agreement": float((a.argmax(1) == b.argmax(1)).float().mean()), "mean_kl": float(kl)}


@dataclass
class FinetuneGate:
    """The ``finetune_below`` option of the recipe stages ``prune``, ``prune_channels`` and ``kmeans``.

    Called with the compressed model before its fine-tuning, it measures the model's accuracy on
    ``data`` (validation data, never the test set) and returns whether fine-tuning would still pay
    (accuracy below ``threshold``): ``False`` is the ``after_prune`` answer that skips it. It keeps
    what it saw for the stage's result (``accuracy``; ``skipped``: True, or None while fine-tuning
    goes ahead). ``slimtorch auto`` builds its candidates with this option.
    """

    data: Dataset | None
    threshold: float
    where: str = "finetune_below"  # the setting named in the error
    accuracy: float | None = None
    skipped: bool | None = None

    def __call__(self, model: nn.Module) -> bool:
        if self.data is None:
            from slimtorch.core.errors import ConfigError

            raise ConfigError(
                f"{self.where} compares accuracy on validation data; set data.validation_size in the recipe",
                field=self.where,
            )
        self.accuracy = evaluate(model, self.data).accuracy
        self.skipped = self.accuracy >= self.threshold or None
        return not self.skipped
