"""Teacher outputs computed once and stored on disk, keyed by dataset index.

Without augmentation the teacher sees the same input for example ``i`` every
epoch, so its logits (and hint features) can be computed in one pass and read
back: each epoch then costs one student forward/backward instead of a teacher
forward too. The file is safetensors (tensors + string metadata, no pickle):
``logits`` is ``(len(dataset), C)`` in index order, ``feat.<fqn>`` the hint
features. A fingerprint of teacher weights and dataset in the metadata makes a
stale file be recomputed instead of silently reused.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from slimtorch.core.fileio import atomic_write_bytes
from slimtorch.distill.features import FeatureCapture

_FORMAT = "slimtorch.teacher_cache.v1"


class IndexedDataset(Dataset):
    """Wrap a dataset of ``(x, label)`` so it yields ``(x, [label, index])``.

    The index rides along in the target tensor because ``fit`` moves inputs and
    targets to the device as tensors and hands both to the loss untouched (jitter
    is off with a cache); the distillation loss splits them and looks the teacher's
    cached outputs up by index. Labels must be integer class indices.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y = self.dataset[i][:2]
        return x, torch.stack([torch.as_tensor(y, dtype=torch.long).reshape(()), torch.tensor(i)])


def with_indices(dataset: Dataset) -> Dataset:
    """``dataset`` with targets ``(N, 2)`` = ``[label, index]`` (a TensorDataset stays one, for fast batching)."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        x, y = dataset.tensors
        if y.ndim != 1 or y.is_floating_point():
            raise ValueError("cache_teacher needs integer class labels (N,); set alpha=1 data or disable the cache")
        return TensorDataset(x, torch.stack([y.long(), torch.arange(len(y))], dim=1))
    return IndexedDataset(dataset)


def _fingerprint(teacher: nn.Module, dataset: Dataset, features: Sequence[str]) -> str:
    h = hashlib.sha256()
    for name, t in teacher.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    n = len(dataset)
    h.update(str(n).encode())
    for i in sorted({0, n // 2, n - 1}):
        x = dataset[i][0]
        h.update(torch.as_tensor(x).cpu().contiguous().numpy().tobytes())
    h.update(",".join(features).encode())
    return h.hexdigest()


@torch.no_grad()
def build_teacher_cache(
    teacher: nn.Module,
    dataset: Dataset,
    path: str | os.PathLike,
    features: Sequence[str] = (),
    batch_size: int = 1000,
) -> dict[str, torch.Tensor]:
    """Teacher logits (and features) for every example of ``dataset``, reusing ``path`` if valid.

    The teacher must already be in eval mode (``distill`` takes care of it).

    Returns:
        ``{"logits": (N, C), "feat.<fqn>": (N, ...)}`` in dataset-index order.
    """
    path = Path(path)
    key = _fingerprint(teacher, dataset, features)
    if path.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
            if meta.get("format") == _FORMAT and meta.get("key") == key:
                return load_file(str(path))
        except (SafetensorError, OSError):
            pass  # unreadable cache: recompute below
    outputs: dict[str, list[torch.Tensor]] = {"logits": [], **{f"feat.{f}": [] for f in features}}
    with FeatureCapture(teacher, features, role="teacher") as cap:
        for x, *_ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            outputs["logits"].append(teacher(x).detach())
            for f in features:
                outputs[f"feat.{f}"].append(cap.captured[f].detach())
    tensors = {k: torch.cat(v).contiguous() for k, v in outputs.items()}
    atomic_write_bytes(path, save(tensors, metadata={"format": _FORMAT, "key": key}))
    return tensors
