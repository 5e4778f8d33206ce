"""CIFAR-10 readers on files written here in both official formats."""

import os
import pickle

import numpy as np
import pytest

from slimtorch.core.errors import DataNotFoundError, FormatError
from slimtorch.data import get_dataset, load_cifar10, read_cifar_python

N = 6  # records per batch in these tiny files


def make_batches(rng):
    return {
        name: (rng.integers(0, 256, (N, 3072), dtype=np.uint8), rng.integers(0, 10, N))
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    }


def write_binary(folder, batches):
    for name, (data, labels) in batches.items():
        records = np.concatenate([labels.astype(np.uint8)[:, None], data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())


def write_python(folder, batches, protocol=2):
    for name, (data, labels) in batches.items():
        obj = {b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": data}
        (folder / name).write_bytes(pickle.dumps(obj, protocol=protocol))


def check(train, test, batches):
    x, y = train.tensors
    assert x.shape == (5 * N, 3, 32, 32) and test.tensors[0].shape == (N, 3, 32, 32)
    data, labels = batches["data_batch_2"]
    # record layout is R plane, G plane, B plane of 32x32
    np.testing.assert_allclose(x[N : 2 * N].numpy(), data.reshape(N, 3, 32, 32) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y[N : 2 * N].numpy(), labels)
    np.testing.assert_array_equal(test.tensors[1].numpy(), batches["test_batch"][1])
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_binary_version(tmp_path):
    batches = make_batches(np.random.default_rng(0))
    write_binary(tmp_path, batches)
    check(*load_cifar10(tmp_path), batches)


@pytest.mark.parametrize("protocol", [2, 5])
def test_python_version(tmp_path, protocol):
    batches = make_batches(np.random.default_rng(1))
    sub = tmp_path / "cifar-10-batches-py"
    sub.mkdir()
    write_python(sub, batches, protocol)
    check(*get_dataset("cifar10", folder=tmp_path), batches)


def test_binary_truncated_record_is_refused(tmp_path):
    batches = make_batches(np.random.default_rng(2))
    write_binary(tmp_path, batches)
    path = tmp_path / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(FormatError, match="3073-byte"):
        load_cifar10(tmp_path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Evil(marker), b"labels": [0]}))
    with pytest.raises(FormatError, match="system"):
        read_cifar_python(path)
    assert not marker.exists()


def test_object_array_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": np.array([1, "x"], dtype=object), b"labels": [0]}))
    with pytest.raises(FormatError, match="object dtypes"):
        read_cifar_python(path)


def test_wrong_content_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(FormatError, match=r"\(N, 3072\)"):
        read_cifar_python(path)


def test_missing_folder_explains_where_files_go(tmp_path):
    with pytest.raises(DataNotFoundError, match="data_batch_1.bin"):
        load_cifar10(tmp_path)
