"""The IDX file format of MNIST (LeCun et al., 1998), Fashion-MNIST and KMNIST.

Layout: magic ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32
dimensions, then the big-endian payload. Files may be gzipped (detected by the
``1f 8b`` magic, not the extension). The declared size is checked against the
real payload *before* anything is allocated, so a corrupt header cannot make us
allocate gigabytes.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from slimtorch.core.errors import DataNotFoundError, FormatError

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CHUNK = 1 << 20

# (train images, train labels, test images, test labels); the dotted variant is
# how the files are often named after unpacking (e.g. Kaggle's MNIST). KMNIST's
# IDX release uses the standard names.
_NAME_SETS = [
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ("train-images.idx3-ubyte", "train-labels.idx1-ubyte", "t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte"),
]
_FASHION_DIRS = ["/usr/share/dataset-fashion-mnist", "/usr/share/fashion-mnist", "/usr/share/datasets/fashion-mnist"]


def _read_exact(fh, n: int) -> bytes:
    """Read up to ``n + 1`` bytes in chunks, so memory follows the real data, not the header."""
    buf = bytearray()
    while len(buf) <= n:
        chunk = fh.read(min(_CHUNK, n + 1 - len(buf)))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or plain) into a native-endian numpy array.

    Raises:
        FormatError: bad magic, unknown dtype code, truncated header, or a payload
            whose length differs from what the header declares.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
    except FileNotFoundError:
        raise DataNotFoundError(f"IDX file not found: {path}") from None
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc})") from None
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise FormatError(
                    f"{path}: not an IDX file (magic {head.hex() or 'empty'}, expected 0000<dtype><ndim>)"
                )
            if head[2] not in _DTYPES:
                raise FormatError(f"{path}: unknown IDX dtype code 0x{head[2]:02x}")
            dtype, ndim = np.dtype(_DTYPES[head[2]]), head[3]
            dims_raw = fh.read(4 * ndim)
            if len(dims_raw) != 4 * ndim:
                raise FormatError(f"{path}: truncated header ({ndim} dimensions declared)")
            dims = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
            expected = math.prod(dims) * dtype.itemsize
            if not gz:  # cheap check before reading anything
                remaining = path.stat().st_size - 4 - 4 * ndim
                if remaining != expected:
                    raise FormatError(
                        f"{path}: header declares shape {dims} ({expected} bytes) but {remaining} bytes follow"
                    )
            payload = _read_exact(fh, expected)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise DataNotFoundError(f"IDX file not found: {path}") from None
        raise FormatError(f"{path}: cannot read ({exc})") from None
    if len(payload) != expected:
        got = f"{len(payload)}" if len(payload) <= expected else "more than that"
        raise FormatError(f"{path}: header declares shape {dims} ({expected} bytes) but {got} bytes follow")
    return np.frombuffer(payload, dtype=dtype).astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _to_dataset(images: np.ndarray, labels: np.ndarray, where: str) -> TensorDataset:
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise FormatError(
            f"{where}: images {images.shape} and labels {labels.shape} do not pair up as (N,H,W) and (N,)"
        )
    x = torch.from_numpy(images.astype(np.float32))
    if images.dtype == np.uint8:
        x = x / 255.0
    return TensorDataset(x.unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


def load_idx_folder(folder: str | os.PathLike, name: str = "idx") -> tuple[TensorDataset, TensorDataset]:
    """Load an MNIST-style dataset (MNIST, Fashion-MNIST, KMNIST) from a folder of IDX files.

    Args:
        folder: holds ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
            ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``.
        name: dataset name used in error messages.

    Returns:
        ``(train, test)`` TensorDatasets: images ``(N, 1, H, W)`` float32 in [0, 1]
        (uint8 pixels are divided by 255), labels ``(N,)`` int64.
    """
    folder = Path(folder)
    for names in _NAME_SETS:
        paths = [_find(folder, n) for n in names]
        if all(paths):
            arrays = [read_idx(p) for p in paths]
            return (
                _to_dataset(arrays[0], arrays[1], f"{name} train ({folder})"),
                _to_dataset(arrays[2], arrays[3], f"{name} test ({folder})"),
            )
    raise DataNotFoundError(
        f"{name}: no IDX files in '{folder}'; expected {', '.join(n + '[.gz]' for n in _NAME_SETS[0])}"
    )


def fashion_mnist_folder() -> Path:
    """Folder of the Debian ``dataset-fashion-mnist`` package's IDX files."""
    candidates: list[Path] = []
    if shutil.which("dpkg"):
        out = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True, check=False)
        candidates += [Path(line).parent for line in out.stdout.splitlines() if "train-images-idx3-ubyte" in line]
    candidates += [Path(d) for d in _FASHION_DIRS]
    for folder in candidates:
        if _find(folder, _NAME_SETS[0][0]):
            return folder
    raise DataNotFoundError(
        "Fashion-MNIST not found: run `apt-get install dataset-fashion-mnist`, "
        "or pass folder=... pointing at its IDX files"
    )


def load_fashion_mnist(folder: str | os.PathLike | None = None) -> tuple[TensorDataset, TensorDataset]:
    """Load Fashion-MNIST (Xiao et al., 2017) from ``folder`` or the Debian package location."""
    return load_idx_folder(folder if folder is not None else fashion_mnist_folder(), name="fashion_mnist")
