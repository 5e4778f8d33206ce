"""The size waterfall: each step of Deep Compression measured on the same weights."""

import numpy as np

from slimtorch.encode.format import pack_state
from slimtorch.encode.waterfall import size_waterfall
from tests.encode.encode_strategies import make_shared


def test_waterfall_starts_dense_ends_at_the_file_and_each_coding_step_is_measured():
    state = {
        "fc1.weight": make_shared(1, (60, 90), 8, 0.07),
        "fc1.bias": np.random.default_rng(0).normal(size=60).astype(np.float32),
        "fc2.weight": make_shared(2, (10, 60), 16, 0.25),
    }
    data = pack_state(state, {"model": "x"})
    rows = {r["step"]: r for r in size_waterfall(data)}
    steps = list(rows)
    dense = 4 * (60 * 90 + 60 + 10 * 60)
    assert rows[steps[0]]["bytes"] == dense and rows[steps[0]]["ratio"] == 1.0
    assert rows[steps[-1]]["bytes"] == len(data)
    # pruning and sharing shrink the file; entropy coding shrinks it further (sparse, skewed codes)
    b = [rows[s]["bytes"] for s in steps]
    assert b[0] > b[1] > b[2] > b[3] >= b[4]
    # the version-1 container is the same payload with a bigger header
    assert rows["+ container (version 1 header)"]["bytes"] > len(data) > b[4]
    assert all(abs(r["ratio"] - dense / r["bytes"]) < 1e-9 for r in rows.values())


def test_raw_tensors_count_at_their_stored_size():
    exact = np.array([0.5, -2.0, 1024.0, 3.0], dtype=np.float32)  # float16 holds these exactly
    rows = size_waterfall(pack_state({"w": make_shared(3, (20, 20), 4, 0.1), "b": exact}))
    shared_only = size_waterfall(pack_state({"w": make_shared(3, (20, 20), 4, 0.1)}))
    assert rows[1]["bytes"] - shared_only[1]["bytes"] == exact.size * 2
