"""CIFAR-10 readers (Krizhevsky, 2009, "Learning multiple layers of features from tiny images").

CIFAR-10 cannot be downloaded here, but users have the files. Both official
on-disk formats are read from a folder:

- the **binary version** (``data_batch_{1..5}.bin``, ``test_batch.bin``):
  records of 1 label byte followed by 3072 pixel bytes (R, G, B planes of 32x32);
- the **python version** (``data_batch_1`` … ``test_batch``): pickled dicts with
  ``b'data'`` uint8 ``(10000, 3072)`` and ``b'labels'``, read with the restricted
  unpickler (anything but numpy arrays is refused, never executed).

Images come back as ``(N, 3, 32, 32)`` float32 in [0, 1]; normalisation is left
to transforms or the model.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from slimtorch.core.errors import DataNotFoundError, FormatError
from slimtorch.data._safe_pickle import safe_load

_RECORD = 1 + 3 * 32 * 32
_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_TEST = ["test_batch"]


def read_cifar_binary(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one binary-version batch.

    Returns:
        ``(images, labels)``: uint8 ``(N, 3, 32, 32)`` and int64 ``(N,)``.
    """
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _RECORD:
        raise FormatError(f"{path}: {raw.size} bytes is not a whole number of {_RECORD}-byte CIFAR-10 records")
    records = raw.reshape(-1, _RECORD)
    labels = records[:, 0].astype(np.int64)
    _check_labels(labels, path)
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def read_cifar_python(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one python-version batch (a pickled dict) with the restricted unpickler.

    Returns:
        ``(images, labels)``: uint8 ``(N, 3, 32, 32)`` and int64 ``(N,)``.

    Raises:
        FormatError: the pickle names anything but numpy array helpers, or lacks
            ``data``/``labels`` of the right shapes.
    """
    path = Path(path)
    # encoding="bytes": the official batches are Python 2 pickles with bytes keys
    batch = safe_load(path.read_bytes(), str(path), encoding="bytes")
    if not isinstance(batch, dict):
        raise FormatError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    batch = {k.decode("utf-8", "replace") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = getattr(data, "shape", type(data).__name__)
        raise FormatError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {got}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise FormatError(f"{path}: 'labels' must be a list of integers in 0..9") from None
    if labels.shape != (len(data),):
        raise FormatError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
    _check_labels(labels, path)
    return data.reshape(-1, 3, 32, 32).copy(), labels


def _check_labels(labels: np.ndarray, path: Path) -> None:
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise FormatError(f"{path}: labels outside 0..9 (min {labels.min()}, max {labels.max()})")


def _locate(folder: Path) -> tuple[Path, str]:
    for sub in (folder, folder / "cifar-10-batches-bin", folder / "cifar-10-batches-py"):
        if (sub / "data_batch_1.bin").is_file():
            return sub, "binary"
        if (sub / "data_batch_1").is_file():
            return sub, "python"
    raise DataNotFoundError(
        f"CIFAR-10 not found in '{folder}': put the binary version (data_batch_1.bin … data_batch_5.bin, "
        "test_batch.bin) or the python version (data_batch_1 … data_batch_5, test_batch) there, or their "
        "unpacked 'cifar-10-batches-bin' / 'cifar-10-batches-py' folder (from https://www.cs.toronto.edu/~kriz/cifar.html)"
    )


def _dataset(parts: list[tuple[np.ndarray, np.ndarray]]) -> TensorDataset:
    x = torch.from_numpy(np.concatenate([p[0] for p in parts])).float().div_(255.0)
    return TensorDataset(x, torch.from_numpy(np.concatenate([p[1] for p in parts])))


def load_cifar10(folder: str | os.PathLike) -> tuple[TensorDataset, TensorDataset]:
    """Load CIFAR-10 from a folder holding either official format (detected automatically).

    Returns:
        ``(train, test)`` TensorDatasets: images ``(N, 3, 32, 32)`` float32 in [0, 1],
        labels ``(N,)`` int64 (50,000 / 10,000 rows for the full dataset).
    """
    root, kind = _locate(Path(folder))
    reader, suffix = (read_cifar_binary, ".bin") if kind == "binary" else (read_cifar_python, "")
    splits = []
    for names in (_TRAIN, _TEST):
        missing = [n + suffix for n in names if not (root / (n + suffix)).is_file()]
        if missing:
            raise DataNotFoundError(f"CIFAR-10 ({kind} version) in '{root}' lacks {', '.join(missing)}")
        splits.append(_dataset([reader(root / (n + suffix)) for n in names]))
    return splits[0], splits[1]
