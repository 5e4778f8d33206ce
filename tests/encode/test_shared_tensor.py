"""SharedTensor: exact dense <-> shared conversion."""

import numpy as np
import pytest
import torch

from slimtorch.encode import SharedTensor


def test_from_dense_round_trip_is_bit_exact():
    rng = np.random.default_rng(0)
    cb = np.array([-1.5, 0.25, 3.0, np.float32(1e-30)], dtype=np.float32)
    w = np.where(rng.random((7, 9)) < 0.4, cb[rng.integers(0, 4, (7, 9))], 0).astype(np.float32)
    t = SharedTensor.from_dense(w)
    assert t.codebook.size == 4 and t.nnz == np.count_nonzero(w)
    assert np.array_equal(t.to_dense().view(np.uint32), w.view(np.uint32))


def test_from_dense_accepts_torch_and_treats_negative_zero_as_zero():
    w = torch.tensor([[0.0, -0.0, 2.0], [2.0, 0.0, -1.0]])
    t = SharedTensor.from_dense(w)
    assert t.nnz == 3 and t.shape == (2, 3)
    assert np.array_equal(t.to_dense(), w.numpy())


def test_from_dense_refuses_unquantized_tensor():
    w = np.arange(1, 70_000, dtype=np.float32)
    with pytest.raises(ValueError, match="quantize"):
        SharedTensor.from_dense(w)


def test_constructor_rejects_bad_positions():
    with pytest.raises(ValueError):
        SharedTensor((4,), np.ones(1, np.float32), [0, 0], [2, 1])
    with pytest.raises(ValueError):
        SharedTensor((4,), np.ones(1, np.float32), [0], [4])
    with pytest.raises(ValueError):
        SharedTensor((4,), np.ones(1, np.float32), [1], [0])
