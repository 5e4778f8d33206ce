"""Range-variant Asymmetric Numeral Systems (rANS) coding through ``constriction``.

Huffman coding (the last stage of Han, Mao & Dally, ICLR 2016) wastes up to one bit
per symbol because every code word is a whole number of bits; that hurts exactly in
the low-entropy regime of pruned, weight-shared layers. ANS (Duda, "Asymmetric numeral
systems: entropy coding combining speed of Huffman coding with compression rate of
arithmetic coding", arXiv:1311.2540, 2013) reaches the Shannon bound up to a small
constant. We use ``constriction.stream.stack.AnsCoder`` with a
``constriction.stream.model.Categorical`` entropy model (Bamler, 2022).

The model is the empirical symbol distribution, quantized to ``PRECISION``-bit integer
frequencies that are stored with the stream: encoder and decoder build the
``Categorical`` from the *same* stored integers, so its internal fixed-point model is
identical on both sides (the quantization costs ~1e-4 bits/symbol on real data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from slimtorch.core.errors import FormatError
from slimtorch.encode.huffman import _alphabet, uint_dtype

PRECISION = 16  # stored frequency bits; frequencies are uint16


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise FormatError(f"corrupt ANS stream: {what}")


def _constriction():
    try:
        import constriction
    except ImportError as exc:  # optional dependency (extra "encode")
        raise ImportError("ANS coding needs the 'constriction' package: pip install 'slimtorch[encode]'") from exc
    return constriction


def quantize_frequencies(counts: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Scale positive ``counts`` to integers in ``[1, 2**precision - 1]`` (sum ~ 2**precision)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size == 0:
        return np.zeros(0, np.uint16)
    scaled = np.rint(counts * ((1 << precision) / counts.sum()))
    # Every present symbol keeps a non-zero frequency, or it could not be coded at all.
    return np.clip(scaled, 1, (1 << precision) - 1).astype(np.uint16)


@dataclass(frozen=True)
class AnsStream:
    """An ANS-coded symbol sequence.

    Attributes:
        n: number of symbols.
        alphabet: ``(m,)`` sorted distinct symbol values (unsigned ints).
        freqs: ``(m,)`` uint16 quantized frequencies of the alphabet.
        words: ``(w,)`` uint32 compressed words (stored little-endian).
    """

    n: int
    alphabet: np.ndarray
    freqs: np.ndarray
    words: np.ndarray


def _model(freqs: np.ndarray):
    c = _constriction()
    # perfect=False: the fast, deterministic quantizer (must match on both sides).
    return c.stream.model.Categorical(freqs.astype(np.float64), perfect=False)


def encode(symbols: np.ndarray) -> AnsStream:
    """ANS-code non-negative integer ``symbols`` with their quantized empirical distribution."""
    symbols = np.asarray(symbols).reshape(-1)
    if symbols.size and (not np.issubdtype(symbols.dtype, np.integer) or symbols.min() < 0):
        raise ValueError("ANS symbols must be non-negative integers")
    symbols = symbols.astype(np.int64, copy=False)
    alphabet, counts, ranks = _alphabet(symbols)
    alphabet = alphabet.astype(uint_dtype(int(alphabet[-1]) if alphabet.size else 0))
    freqs = quantize_frequencies(counts)
    if alphabet.size <= 1:  # nothing to code: the count and the symbol say it all
        return AnsStream(symbols.size, alphabet, freqs, np.zeros(0, np.uint32))
    coder = _constriction().stream.stack.AnsCoder()
    coder.encode_reverse(ranks.astype(np.int32), _model(freqs))
    return AnsStream(symbols.size, alphabet, freqs, coder.get_compressed().astype("<u4"))


def validate(stream: AnsStream) -> None:
    """Check declared sizes for consistency before decoding.

    Raises:
        FormatError: naming the inconsistent field.
    """
    m = stream.alphabet.size
    _require(stream.n >= 0 and stream.freqs.size == m, "alphabet and frequency table differ in size")
    _require(stream.freqs.dtype == np.uint16 and stream.alphabet.dtype.kind == "u", "unexpected table dtypes")
    _require((m == 0) == (stream.n == 0), "symbol count and alphabet disagree")
    _require(m == 0 or bool(np.all(np.diff(stream.alphabet.astype(np.int64)) > 0)), "alphabet not sorted")
    if m <= 1:
        _require(stream.words.size == 0, "stray data")
        return
    _require(m <= (1 << PRECISION) and bool(np.all(stream.freqs > 0)), "zero frequency in the table")
    _require(stream.words.size > 0, "no data")
    # Each symbol carries at least -log2(p_max) bits of information, which the words must
    # hold (up to the coder's 64-bit state); this bounds n by the payload size.
    f = stream.freqs.astype(np.float64)
    min_bits = -math.log2(min(1.0, f.max() / f.sum() * 1.01))
    _require(stream.n * min_bits <= 32 * stream.words.size + 64, "symbol count too large for the data")


def decode(stream: AnsStream) -> np.ndarray:
    """Decode an :class:`AnsStream` to its symbols (dtype of the alphabet).

    Raises:
        FormatError: the stream is inconsistent or the coder rejects the data.
    """
    validate(stream)
    m = stream.alphabet.size
    if m <= 1:
        return np.full(stream.n, stream.alphabet[0] if m else 0, dtype=stream.alphabet.dtype)
    c = _constriction()
    try:
        coder = c.stream.stack.AnsCoder(np.ascontiguousarray(stream.words, dtype=np.uint32))
        ranks = coder.decode(_model(stream.freqs), stream.n)
    except (ValueError, RuntimeError, OverflowError) as exc:
        raise FormatError(f"corrupt ANS stream: {exc}") from None
    # A correct stream is consumed exactly; leftovers mean the data or count is wrong.
    _require(coder.is_empty(), "data left over after decoding")
    _require(ranks.size == stream.n and (ranks.size == 0 or int(ranks.max()) < m), "decoded symbol out of range")
    return stream.alphabet[ranks]
