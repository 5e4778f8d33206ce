"""Canonical, length-limited Huffman coding with a vectorised (numpy) decoder.

The last stage of Deep Compression (Han, Mao & Dally, ICLR 2016, Sec. 4) Huffman-codes
the quantized weight indices and the sparse (relative) position indices of each layer.

Why hand-written: no maintained pip package gives a *canonical* Huffman code whose only
serialized state is a table of code lengths, with a length limit and a fast bulk
decoder. ``constriction.symbol.huffman`` builds (non-canonical) trees from float
probabilities, breaks ties by input order, has no length limit, and encodes/decodes one
symbol per Python call, far too slow for millions of symbols; so it is not used here.

Scheme:

* code lengths by Huffman's algorithm (Moffat & Katajainen's in-place O(m) variant on
  sorted frequencies), then limited to ``max_len`` bits with the JPEG (ITU T.81 Annex
  K.3) rebalancing of the length histogram, so decode tables have <= 2**max_len rows;
* canonical codes (sorted by length, then symbol), so the file stores lengths only;
* the bitstream is cut into chunks of ``chunk`` symbols whose bit lengths are stored:
  the decoder then runs all chunks in lock-step, one numpy table lookup per step
  over every chunk (the same idea as zstd's 4-stream Huffman, taken to many streams).
  The overhead is a few bytes per chunk of >= 512 symbols.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from slimtorch.core.errors import FormatError

DEFAULT_MAX_LEN = 16
_ENC_BLOCK = 1 << 20  # symbols per encoder block
MAX_CHUNK = 1 << 16  # symbols per chunk a file may declare (the encoder uses <= 16384)
HARD_MAX_LEN = 24  # a peek of max_len bits plus a 7-bit byte offset fits a 32-bit window


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise FormatError(f"corrupt Huffman stream: {what}")


def _sorted_huffman_lengths(freqs: list[int]) -> list[int]:
    """Huffman code lengths for ascending ``freqs`` (len >= 2), Moffat & Katajainen 1995."""
    a = list(freqs)
    n = len(a)
    s = r = 0
    for t in range(n - 1):  # phase 1: build the tree, parents stored in place
        if s >= n or (r < t and a[r] < a[s]):
            a[t] = a[r]
            a[r] = t
            r += 1
        else:
            a[t] = a[s]
            s += 1
        if s >= n or (r < t and a[r] < a[s]):
            a[t] += a[r]
            a[r] = t
            r += 1
        else:
            a[t] += a[s]
            s += 1
    a[n - 2] = 0  # phase 2: internal node depths
    for t in range(n - 3, -1, -1):
        a[t] = a[a[t]] + 1
    avail, used, depth, t, x = 1, 0, 0, n - 2, n - 1  # phase 3: leaf depths
    while avail > 0:
        while t >= 0 and a[t] == depth:
            used += 1
            t -= 1
        while avail > used:
            a[x] = depth
            x -= 1
            avail -= 1
        avail, depth, used = 2 * used, depth + 1, 0
    return a


def code_lengths(counts: np.ndarray, max_len: int = DEFAULT_MAX_LEN) -> np.ndarray:
    """Length-limited Huffman code lengths.

    Args:
        counts: ``(m,)`` positive symbol counts.
        max_len: longest allowed code, ``ceil(log2 m) <= max_len <= 24``.

    Returns:
        ``(m,)`` uint8 code lengths (all 0 when ``m == 1``: one symbol needs no bits).
    """
    counts = np.asarray(counts, dtype=np.int64)
    m = counts.size
    if m <= 1:
        return np.zeros(m, dtype=np.uint8)
    if not (math.ceil(math.log2(m)) <= max_len <= HARD_MAX_LEN):
        raise ValueError(f"max_len={max_len} cannot code {m} symbols (need {math.ceil(math.log2(m))}..{HARD_MAX_LEN})")
    order = np.argsort(counts, kind="stable")  # ascending frequency
    sorted_lens = np.array(_sorted_huffman_lengths(counts[order].tolist()), dtype=np.int64)
    hist = np.bincount(sorted_lens, minlength=max_len + 1).tolist()
    # JPEG Annex K.3: while a code is too long, move a pair of deepest leaves up: one
    # takes its parent's place, the other splits the deepest shorter leaf. Kraft sum and
    # symbol count are unchanged, so the code stays complete.
    for i in range(len(hist) - 1, max_len, -1):
        while hist[i] > 0:
            j = i - 2
            while hist[j] == 0:
                j -= 1
            hist[i] -= 2
            hist[i - 1] += 1
            hist[j + 1] += 2
            hist[j] -= 1
    # Most frequent symbols get the shortest codes.
    limited = np.repeat(np.arange(max_len + 1), hist[: max_len + 1])  # ascending lengths
    lengths = np.empty(m, dtype=np.uint8)
    lengths[order[::-1]] = limited
    return lengths


def canonical_codes(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical codes for ``lengths`` (>= 1 each, Kraft sum <= 1).

    Returns:
        ``(codes, order)``: ``codes[i]`` is symbol i's code (its ``lengths[i]`` low
        bits), ``order`` lists symbols in canonical order (by length, then symbol).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.lexsort((np.arange(lengths.size), lengths))
    top = int(lengths.max()) if lengths.size else 0
    span = np.left_shift(1, top - lengths[order])  # each code's share of the 2**top table
    start = np.concatenate(([0], np.cumsum(span)[:-1]))  # left-justified code values
    codes = np.empty(lengths.size, dtype=np.int64)
    codes[order] = start >> (top - lengths[order])
    return codes, order


@dataclass(frozen=True)
class HuffmanStream:
    """A Huffman-coded symbol sequence.

    Attributes:
        n: number of symbols.
        alphabet: ``(m,)`` sorted distinct symbol values (unsigned ints).
        lengths: ``(m,)`` uint8 code lengths of the alphabet.
        chunk: symbols per independently decodable chunk.
        chunk_bits: ``(C-1,)`` bit length of every chunk but the last.
        data: packed bitstream (MSB first), uint8.
        bits: number of valid bits in ``data``.
    """

    n: int
    alphabet: np.ndarray
    lengths: np.ndarray
    chunk: int
    chunk_bits: np.ndarray
    data: np.ndarray
    bits: int


def _alphabet(symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted distinct values, their counts, rank of each symbol) for non-negative ints."""
    if symbols.size and int(symbols.max()) < (1 << 20):
        counts = np.bincount(symbols)
        alphabet = np.flatnonzero(counts)
        rank_of = np.zeros(counts.size, dtype=np.int64)
        rank_of[alphabet] = np.arange(alphabet.size)
        return alphabet, counts[alphabet], rank_of[symbols]
    alphabet, ranks, counts = np.unique(symbols, return_inverse=True, return_counts=True)
    return alphabet, counts, ranks.reshape(-1)


def uint_dtype(max_value: int) -> np.dtype:
    """Narrowest unsigned dtype holding ``max_value``."""
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_value <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"value {max_value} does not fit 64 bits")


def default_chunk(n: int) -> int:
    """Symbols per chunk: ~2*sqrt(n) balances Python steps against per-chunk overhead."""
    return int(min(16384, max(512, 1 << math.ceil(math.log2(max(1.0, 2 * math.sqrt(n)))))))


def encode(symbols: np.ndarray, max_len: int = DEFAULT_MAX_LEN, chunk: int | None = None) -> HuffmanStream:
    """Huffman-code non-negative integer ``symbols`` with a code built from their counts."""
    symbols = np.asarray(symbols).reshape(-1)
    if symbols.size and (not np.issubdtype(symbols.dtype, np.integer) or symbols.min() < 0):
        raise ValueError("Huffman symbols must be non-negative integers")
    symbols = symbols.astype(np.int64, copy=False)
    n = symbols.size
    chunk = chunk or default_chunk(n)
    alphabet, counts, ranks = _alphabet(symbols)
    adt = uint_dtype(int(alphabet[-1]) if alphabet.size else 0)
    max_len = max(max_len, math.ceil(math.log2(max(alphabet.size, 2))))
    lengths = code_lengths(counts, max_len)
    if alphabet.size <= 1:  # empty or one symbol: the count alone says everything
        empty = np.zeros(0, np.uint8)
        return HuffmanStream(n, alphabet.astype(adt), lengths, chunk, np.zeros(0, np.uint16), empty, 0)
    codes, _ = canonical_codes(lengths)
    sym_len = lengths.astype(np.int64)[ranks]
    ends = np.cumsum(sym_len)
    total = int(ends[-1])
    # Left-align each code in 32 bits, unpack to a (n, 32) bit matrix and keep the first
    # len bits of every row: boolean indexing is row-major, so that is the bitstream.
    left = (codes << (32 - lengths.astype(np.int64)))[ranks].astype(">u4")
    parts = []
    for lo in range(0, n, _ENC_BLOCK):  # blocks bound the (block, 32) temporaries
        hi = min(n, lo + _ENC_BLOCK)
        mat = np.unpackbits(left[lo:hi].view(np.uint8).reshape(-1, 4), axis=1)
        parts.append(mat[np.arange(32) < sym_len[lo:hi, None]])
    bits = parts[0] if len(parts) == 1 else np.concatenate(parts)
    chunk_ends = ends[chunk - 1 :: chunk][: (n - 1) // chunk]  # bit end of each full chunk
    chunk_bits = np.diff(np.concatenate(([0], chunk_ends)))
    cdt = np.uint16 if chunk_bits.size == 0 or chunk_bits.max() < (1 << 16) else np.uint32
    return HuffmanStream(n, alphabet.astype(adt), lengths, chunk, chunk_bits.astype(cdt), np.packbits(bits), total)


def validate(stream: HuffmanStream) -> None:
    """Check a stream's declared sizes against each other before anything is allocated.

    Raises:
        FormatError: naming the inconsistent field.
    """
    n, m = stream.n, stream.alphabet.size
    _require(n >= 0 and stream.lengths.size == m, "alphabet and code-length table differ in size")
    _require(stream.lengths.dtype == np.uint8 and stream.alphabet.dtype.kind == "u", "unexpected table dtypes")
    _require(m == 0 or bool(np.all(np.diff(stream.alphabet.astype(np.int64)) > 0)), "alphabet not sorted")
    _require((m == 0) == (n == 0), "symbol count and alphabet disagree")
    if m <= 1:
        _require(stream.bits == 0 and stream.data.size == 0 and stream.chunk_bits.size == 0, "stray data")
        _require(m == 0 or int(stream.lengths[0]) == 0, "single-symbol code must be empty")
        return
    lens = stream.lengths.astype(np.int64)
    _require(int(lens.min()) >= 1 and int(lens.max()) <= HARD_MAX_LEN, f"code lengths outside 1..{HARD_MAX_LEN}")
    top = int(lens.max())
    # A complete prefix code has Kraft sum exactly 1; the encoder only writes those, so
    # anything else is corruption (and would leave holes in the decode table).
    _require(int(np.sum(np.left_shift(1, top - lens))) == (1 << top), "code lengths are not a complete prefix code")
    # The decoder takes one Python step per symbol of a chunk: a bounded chunk bounds time.
    _require(1 <= stream.chunk <= MAX_CHUNK, "chunk size out of range")
    n_chunks = -(-n // stream.chunk)
    _require(stream.chunk_bits.size == n_chunks - 1, "chunk table has the wrong length")
    _require(stream.data.size == -(-stream.bits // 8), "bit count does not match data length")
    # Every symbol costs at least min(len) bits: bounds n by the payload size.
    _require(n * int(lens.min()) <= stream.bits <= n * top, "symbol count does not match bit count")
    if stream.chunk_bits.size:
        cb = stream.chunk_bits.astype(np.int64)
        _require(
            bool(np.all(cb >= stream.chunk * int(lens.min()))) and bool(np.all(cb <= stream.chunk * top)),
            "chunk bit lengths out of range",
        )
        _require(int(cb.sum()) <= stream.bits, "chunk bit lengths exceed the stream")


def decode(stream: HuffmanStream) -> np.ndarray:
    """Decode a :class:`HuffmanStream` to its symbols (dtype of the alphabet).

    All chunks advance together: at step t every chunk peeks ``top`` bits at its bit
    position, looks up (symbol, length) in a 2**top-row table, and moves on.

    Raises:
        FormatError: the stream is inconsistent or its bits do not decode exactly.
    """
    validate(stream)
    n, m = stream.n, stream.alphabet.size
    if m <= 1:
        return np.full(n, stream.alphabet[0] if m else 0, dtype=stream.alphabet.dtype)
    lens = stream.lengths.astype(np.int64)
    top = int(lens.max())
    _, order = canonical_codes(lens)
    reps = np.left_shift(1, top - lens[order])
    rank_dt = np.uint16 if m <= (1 << 16) else np.uint32
    table_sym = np.repeat(order.astype(rank_dt), reps)
    table_len = np.repeat(lens[order], reps)
    chunk = min(stream.chunk, n)  # a lone chunk shorter than declared: size buffers by n
    n_chunks = -(-n // chunk)
    starts = np.concatenate(([0], np.cumsum(stream.chunk_bits.astype(np.int64))))
    ends = np.append(starts[1:], stream.bits)
    # Pad so a corrupt chunk that runs past the end still reads in-bounds bytes; the
    # end-position check below then rejects it.
    pad = (chunk * top) // 8 + 8
    d = np.concatenate((stream.data, np.zeros(pad, np.uint8))).astype(np.int64)
    window = (d[:-3] << 24) | (d[1:-2] << 16) | (d[2:-1] << 8) | d[3:]  # 32 bits from each byte
    shift, mask = 32 - top, (1 << top) - 1
    last = n - (n_chunks - 1) * chunk
    out = np.empty((chunk, n_chunks), dtype=rank_dt)
    pos = starts.copy()
    for t in range(chunk):
        if t == last:  # the last chunk is shorter: drop it from the lock-step
            pos = pos[:-1]
            if pos.size == 0:
                break
        peek = (window[pos >> 3] >> (shift - (pos & 7))) & mask
        out[t, : pos.size] = table_sym[peek]
        pos += table_len[peek]
    n_full = n_chunks if last == chunk else n_chunks - 1
    _require(bool(np.array_equal(pos, ends[:n_full])) if pos.size else True, "chunk did not end where declared")
    if last != chunk:
        # The last chunk's lock-step position was dropped; re-derive its end from lengths.
        tail = out[:last, -1].astype(np.int64)
        _require(int(starts[-1] + lens[tail].sum()) == stream.bits, "last chunk did not end where declared")
    ranks = out.T.reshape(-1)[:n] if last == chunk else np.concatenate((out[:, :-1].T.reshape(-1), out[:last, -1]))
    return stream.alphabet[ranks]
