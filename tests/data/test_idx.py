"""IDX reader on files written here in the real format."""

import gzip
import struct
import tracemalloc

import numpy as np
import pytest

from slimtorch.core.errors import DataNotFoundError, FormatError
from slimtorch.data import get_dataset, load_idx_folder, read_idx

_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, _CODES[arr.dtype.type], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path, arr, gz=False):
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_reads_uint8_images_and_labels(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    # a misleading extension: gzip is detected by magic bytes, not by name
    got_images = read_idx(write(tmp_path / "images.bin", images, gz))
    got_labels = read_idx(write(tmp_path / "labels.bin", labels, gz))
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.shape == (7, 28, 28)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.int32, np.int8])
def test_reads_big_endian_multibyte_types(tmp_path, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype) * 3
    got = read_idx(write(tmp_path / "a.idx", arr))
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, arr)


def test_truncated_payload_is_refused(tmp_path):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    (tmp_path / "t").write_bytes(data[:-10])
    with pytest.raises(FormatError, match="declares shape"):
        read_idx(tmp_path / "t")
    (tmp_path / "t.gz").write_bytes(gzip.compress(data[:-10]))
    with pytest.raises(FormatError, match="declares shape"):
        read_idx(tmp_path / "t.gz")


def test_truncated_header_is_refused(tmp_path):
    (tmp_path / "h").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(FormatError, match="truncated header"):
        read_idx(tmp_path / "h")


def test_wrong_magic_is_refused(tmp_path):
    (tmp_path / "m").write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(FormatError, match="not an IDX file"):
        read_idx(tmp_path / "m")
    (tmp_path / "d").write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(FormatError, match="dtype code 0x42"):
        read_idx(tmp_path / "d")


@pytest.mark.parametrize("gz", [False, True])
def test_huge_declared_size_fails_without_allocating(tmp_path, gz):
    # 2^31 x 2^31 float64 declared in a 20-byte file
    data = bytes([0, 0, 0x0E, 2]) + struct.pack(">2I", 2**31, 2**31) + bytes(8)
    assert len(data) == 20
    path = tmp_path / "huge"
    path.write_bytes(gzip.compress(data) if gz else data)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="declares shape"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


def test_load_idx_folder_pairs_files_like_mnist(tmp_path):
    rng = np.random.default_rng(1)
    for split, n in (("train", 12), ("t10k", 5)):
        write(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz=True)
        write(tmp_path / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    train, test = load_idx_folder(tmp_path)
    x, y = train.tensors
    assert x.shape == (12, 1, 28, 28) and len(test) == 5
    assert x.dtype.is_floating_point and 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9
    assert y.dtype.is_signed and not y.dtype.is_floating_point
    # same through the registry
    train2, _ = get_dataset("idx", folder=tmp_path)
    assert train2.tensors[0].equal(x)


def test_load_idx_folder_rejects_mismatched_counts(tmp_path):
    write(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    write(tmp_path / "t10k-images-idx3-ubyte", np.zeros((1, 28, 28), np.uint8))
    write(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(1, np.uint8))
    with pytest.raises(FormatError, match="do not pair up"):
        load_idx_folder(tmp_path)


def test_missing_folder_files_say_what_is_expected(tmp_path):
    with pytest.raises(DataNotFoundError, match="train-images-idx3-ubyte"):
        load_idx_folder(tmp_path)


def test_fashion_mnist_missing_says_how_to_install(tmp_path, monkeypatch):
    import slimtorch.data.idx as idx

    monkeypatch.setattr(idx, "_FASHION_DIRS", [str(tmp_path / "nope")])
    monkeypatch.setattr(idx.shutil, "which", lambda _: None)
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        idx.load_fashion_mnist()
