"""Sparse index coding: the paper's relative indices with fillers, raw gaps, bitmask."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slimtorch.encode.index_coding import best_encoding, decode_shared, encode_with, gap_decode, gap_encode
from tests.encode.encode_strategies import make_shared, shared_tensors

SCHEMES = [("gap", 2), ("gap", 3), ("gap", 5), ("gap", 8), ("gap-raw", 0), ("bitmask", 0)]


def test_paper_figure_3_three_bit_filler():
    # Han et al. 2016, Fig. 3: non-zeros at 1, 4, 15 with 3-bit relative indices:
    # the 11-position jump overflows, one filler zero lands at 12.
    gaps, weights = gap_encode(np.array([1, 4, 15]), np.array([0, 1, 2]), bits=3, filler=3)
    assert (gaps + 1).tolist() == [2, 3, 8, 3]  # distances; the filler's is 8
    assert weights.tolist() == [0, 1, 3, 2]  # 3 = filler index, meaning zero
    positions, indices = gap_decode(gaps, weights, filler=3)
    assert positions.tolist() == [1, 4, 15] and indices.tolist() == [0, 1, 2]


def test_gap_of_40_with_5_bits_needs_exactly_one_filler():
    gaps, weights = gap_encode(np.array([0, 40]), np.array([1, 1]), bits=5, filler=9)
    assert int(np.sum(weights == 9)) == 1
    assert gaps.max() < 32


@pytest.mark.parametrize("gap,fillers", [(32, 0), (33, 1), (64, 1), (65, 2)])
def test_filler_count_at_the_boundaries(gap, fillers):
    _, weights = gap_encode(np.array([0, gap]), np.array([0, 0]), bits=5, filler=7)
    assert int(np.sum(weights == 7)) == fillers


@settings(max_examples=80, deadline=None)
@given(shared_tensors(), st.sampled_from(["huffman", "ans"]))
def test_every_scheme_round_trips_bit_exact(t, coder):
    dense = t.to_dense()
    for scheme, bits in SCHEMES:
        enc = encode_with(t, scheme, coder, bits)
        back = decode_shared(enc.meta, enc.sections, t.shape)
        assert back == t, (scheme, bits)
        assert np.array_equal(back.to_dense().view(np.uint32), dense.view(np.uint32))


def test_best_encoding_is_the_smallest_measured():
    t = make_shared(0, (200, 300), 32, 0.08)
    sizes = {(s, b, c): encode_with(t, s, c, b).nbytes for s, b in SCHEMES for c in ("huffman", "ans")}
    best = best_encoding(t, gap_bits=(2, 3, 5, 8))
    assert best.nbytes == min(sizes.values())


def test_fully_dense_tensor_costs_no_index_bytes_and_sparse_avoids_bitmask():
    full = make_shared(1, (100, 100), 8, 1.0)
    sparse = make_shared(2, (100, 100), 8, 0.01)
    assert best_encoding(full).meta["index_bytes"] <= 3  # one-symbol gap stream: its table, no bits
    assert best_encoding(sparse).meta["index"] != "bitmask"
