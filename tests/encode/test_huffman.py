"""Canonical, length-limited Huffman coding."""

import heapq

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slimtorch.core.errors import FormatError
from slimtorch.encode import huffman


def reference_cost(counts) -> int:
    """Optimal total code length by the textbook heap algorithm (independent check)."""
    heap = list(map(int, counts))
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, a + b)
    return cost


@given(st.lists(st.integers(1, 10_000), min_size=2, max_size=60))
def test_unlimited_lengths_are_optimal(counts):
    lengths = huffman.code_lengths(np.array(counts), max_len=24)
    assert int(np.dot(lengths.astype(np.int64), counts)) == reference_cost(counts)


@given(st.lists(st.integers(1, 2**40), min_size=2, max_size=300), st.integers(9, 16))
def test_lengths_respect_limit_and_form_complete_prefix_code(counts, limit):
    lengths = huffman.code_lengths(np.array(counts), max_len=limit)
    assert lengths.max() <= limit
    assert sum(2.0 ** -int(n) for n in lengths) == pytest.approx(1.0, abs=0)


def test_fibonacci_counts_get_limited():
    fib = [1, 1]
    while len(fib) < 40:
        fib.append(fib[-1] + fib[-2])
    lengths = huffman.code_lengths(np.array(fib), max_len=16)
    assert lengths.max() == 16
    assert huffman.code_lengths(np.array(fib), max_len=24).max() == 24


@given(st.lists(st.integers(1, 1000), min_size=2, max_size=100))
def test_canonical_code_is_prefix_free(counts):
    lengths = huffman.code_lengths(np.array(counts))
    codes, _ = huffman.canonical_codes(lengths)
    words = sorted(format(int(c), f"0{int(n)}b") for c, n in zip(codes, lengths))
    for a, b in zip(words, words[1:]):  # in sorted order a prefix would sit right before
        assert not b.startswith(a)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 300), max_size=3000), st.sampled_from([None, 1, 7, 512]))
def test_round_trip(symbols, chunk):
    s = np.array(symbols, dtype=np.int64)
    out = huffman.decode(huffman.encode(s, chunk=chunk))
    assert np.array_equal(out, s)


@pytest.mark.parametrize("symbols", [[], [5], [7] * 1000, [0, 2**31]])
def test_edge_cases_round_trip(symbols):
    s = np.array(symbols, dtype=np.int64)
    stream = huffman.encode(s)
    assert np.array_equal(huffman.decode(stream), s)
    if len(set(symbols)) <= 1:
        assert stream.data.size == 0  # one symbol needs no bits


def test_average_length_within_entropy_plus_one():
    rng = np.random.default_rng(1)
    s = rng.zipf(1.6, size=50_000) % 300
    _, counts = np.unique(s, return_counts=True)
    p = counts / counts.sum()
    h = -(p * np.log2(p)).sum()
    stream = huffman.encode(s)
    assert h <= stream.bits / s.size < h + 1


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_flipped_bits_never_crash(seed):
    # Huffman codes carry no redundancy, so a flip may decode to other symbols; what
    # must hold is: either FormatError, or the declared number of symbols.
    rng = np.random.default_rng(seed)
    stream = huffman.encode(rng.geometric(0.3, size=3000), chunk=512)
    bad = stream.data.copy()
    bad[rng.integers(bad.size)] ^= np.uint8(1 << rng.integers(8))
    try:
        out = huffman.decode(stream.__class__(**{**stream.__dict__, "data": bad}))
    except FormatError:
        return
    assert out.size == stream.n


def test_wrong_declared_bit_count_is_rejected():
    stream = huffman.encode(np.random.default_rng(3).geometric(0.3, size=3000), chunk=512)
    with pytest.raises(FormatError):
        huffman.decode(stream.__class__(**{**stream.__dict__, "bits": stream.bits - 1}))
    wrong_chunks = stream.chunk_bits.astype(np.int64)
    wrong_chunks[0] += 1
    with pytest.raises(FormatError, match="chunk"):
        huffman.decode(stream.__class__(**{**stream.__dict__, "chunk_bits": wrong_chunks}))


def test_incomplete_code_table_is_rejected():
    stream = huffman.encode(np.array([0, 1, 2, 2]))
    lengths = stream.lengths.copy()
    lengths[:] = 3
    with pytest.raises(FormatError, match="complete prefix code"):
        huffman.decode(stream.__class__(**{**stream.__dict__, "lengths": lengths}))
