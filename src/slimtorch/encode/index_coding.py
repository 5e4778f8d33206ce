"""Sparse index coding for pruned, weight-shared tensors.

Han, Mao & Dally (Deep Compression, ICLR 2016, Sec. 2 and Fig. 3) store a pruned layer
in compressed sparse form with *relative* indices: each non-zero records its distance
from the previous one in ``b`` bits (5 for fully connected, 8 for conv layers). When a
distance does not fit, a *filler zero* is inserted: an explicit entry whose weight is
zero, placed the largest representable distance further on, so the next distance fits.

Conventions here (they reproduce the filler of Fig. 3 exactly): the distance of an
entry is ``d = p_i - p_{i-1}`` with ``p_{-1} = -1``, so ``d >= 1`` and ``b`` bits store
``d - 1`` (the number of zeros skipped, 0..2**b-1). A distance ``d > 2**b`` takes
``(d - 1) // 2**b`` fillers. Fig. 3's non-zeros at 1, 4, 15 with 3-bit indices give
one filler at 12 (distances 2, 3, 8, 3; the paper prints the first as 1 because it
counts from position 0). The filler's weight index is ``K`` (one past the codebook),
meaning zero.

Alternatives, picked per tensor by measured size (:func:`best_encoding`):

* ``gap``: the paper's scheme above (``b`` searched over 2..8);
* ``gap-raw``: the skipped-zero counts entropy-coded directly, no filler and no limit
  (the coder's alphabet is sparse, so large gaps cost one table entry each);
* ``bitmask``: one bit per element (``numel / 8`` bytes), best for dense-ish tensors.

Both streams (index symbols and weight indices) go through an entropy coder from
:mod:`slimtorch.encode.streams` (Huffman as in the paper, or ANS, Duda 2013).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slimtorch.core.errors import FormatError
from slimtorch.encode.streams import (
    decode_stream,
    encode_stream,
    sections_nbytes,
    under_prefix,
    with_prefix,
)
from slimtorch.encode.tensor import MAX_CODEBOOK, SharedTensor

INDEX_SCHEMES = ("gap", "gap-raw", "bitmask")
GAP_BITS = tuple(range(2, 9))


def gap_encode(positions: np.ndarray, indices: np.ndarray, bits: int, filler: int) -> tuple[np.ndarray, np.ndarray]:
    """Relative indices with filler zeros (Han et al. 2016, Fig. 3).

    Args:
        positions: ``(nnz,)`` strictly increasing flat positions.
        indices: ``(nnz,)`` codebook indices of those positions.
        bits: bits per relative index ``b``; a stored symbol is ``d - 1 < 2**b``.
        filler: the weight index written for a filler (``K``: "zero").

    Returns:
        ``(gap_symbols, weight_symbols)``, both ``(nnz + fillers,)``.
    """
    span = 1 << bits
    skipped = np.diff(np.asarray(positions, dtype=np.int64), prepend=-1) - 1
    fillers = skipped // span  # each filler advances by the full span (2**b positions)
    slots = np.cumsum(fillers + 1) - 1  # where each real entry lands among all entries
    total = int(slots[-1]) + 1 if slots.size else 0
    gap_symbols = np.full(total, span - 1, dtype=np.int64)
    gap_symbols[slots] = skipped - fillers * span
    weight_symbols = np.full(total, filler, dtype=np.int64)
    weight_symbols[slots] = indices
    return gap_symbols, weight_symbols


def gap_decode(gap_symbols: np.ndarray, weight_symbols: np.ndarray, filler: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`gap_encode`: drop fillers, return ``(positions, indices)``."""
    positions = np.cumsum(gap_symbols.astype(np.int64) + 1) - 1
    keep = weight_symbols != filler
    return positions[keep], weight_symbols[keep]


def raw_gaps(positions: np.ndarray) -> np.ndarray:
    """Zeros skipped before each non-zero (no limit, no filler)."""
    return np.diff(np.asarray(positions, dtype=np.int64), prepend=-1) - 1


def bitmask_encode(positions: np.ndarray, numel: int) -> np.ndarray:
    """One bit per element (MSB first), ``ceil(numel / 8)`` bytes."""
    mask = np.zeros(numel, dtype=bool)
    mask[positions] = True
    return np.packbits(mask)


@dataclass(frozen=True)
class EncodedShared:
    """A coded :class:`SharedTensor`: JSON-able ``meta`` plus named arrays ``sections``."""

    meta: dict
    sections: dict[str, np.ndarray]

    @property
    def nbytes(self) -> int:
        return sections_nbytes(self.sections)


def encode_with(t: SharedTensor, scheme: str, coder: str, bits: int = 0) -> EncodedShared:
    """Code ``t`` with one index scheme and one entropy coder."""
    k = t.codebook.size
    meta = {"index": scheme, "bits": bits, "codebook_size": k, "nnz": t.nnz}
    sections: dict[str, np.ndarray] = {"codebook": t.codebook.astype("<f4")}
    if scheme == "gap":
        gaps, weights = gap_encode(t.positions, t.indices, bits, filler=k)
        meta["fillers"] = int(gaps.size - t.nnz)
    elif scheme == "gap-raw":
        gaps, weights = raw_gaps(t.positions), t.indices
    elif scheme == "bitmask":
        gaps, weights = None, t.indices
        sections["mask"] = bitmask_encode(t.positions, t.numel)
    else:
        raise ValueError(f"unknown index scheme '{scheme}'; choose one of {INDEX_SCHEMES}")
    if gaps is not None:
        meta["index_stream"], s = encode_stream(gaps, coder)
        sections.update(with_prefix("index", s))
    meta["weight_stream"], s = encode_stream(weights, coder)
    sections.update(with_prefix("weights", s))
    meta["index_bytes"] = sum(v.nbytes for n, v in sections.items() if n == "mask" or n.startswith("index."))
    meta["weight_bytes"] = sum(v.nbytes for n, v in sections.items() if n.startswith("weights."))
    return EncodedShared(meta, sections)


def best_encoding(
    t: SharedTensor,
    coders: tuple[str, ...] = ("huffman", "ans"),
    schemes: tuple[str, ...] = INDEX_SCHEMES,
    gap_bits: tuple[int, ...] = GAP_BITS,
) -> EncodedShared:
    """Encode ``t`` every requested way and keep the smallest (measured bytes, not estimated)."""
    best: EncodedShared | None = None
    for coder in coders:
        for scheme in schemes:
            for bits in gap_bits if scheme == "gap" else (0,):
                enc = encode_with(t, scheme, coder, bits)
                if best is None or enc.nbytes < best.nbytes:
                    best = enc
    if best is None:
        raise ValueError("no coder / index scheme to try")
    return best


def decode_shared(meta: dict, sections: dict[str, np.ndarray], shape: tuple[int, ...]) -> SharedTensor:
    """Rebuild a :class:`SharedTensor` from :func:`encode_with` output, validating as it goes.

    Raises:
        FormatError: any declared count, symbol or position that cannot be right.
    """
    numel = int(np.prod(shape, dtype=np.int64))
    codebook = sections.get("codebook")
    if codebook is None or codebook.dtype != np.float32 or codebook.size > MAX_CODEBOOK:
        raise FormatError("codebook section missing, not float32 or too large")
    k = codebook.size
    if meta.get("codebook_size") != k:
        raise FormatError("codebook size does not match the manifest")
    scheme, bits = meta.get("index"), meta.get("bits")
    if type(bits) is not int or not (1 <= bits <= 16 if scheme == "gap" else bits == 0):  # noqa: E721
        raise FormatError(f"index bits {bits!r} invalid for scheme {scheme!r} (gap: 1..16, others: 0)")
    sub = {p: under_prefix(sections, p) for p in ("index", "weights")}
    weights = decode_stream(meta.get("weight_stream"), sub["weights"], numel).astype(np.int64)
    if scheme == "gap":
        gaps = decode_stream(meta.get("index_stream"), sub["index"], numel)
        if gaps.size != weights.size or (gaps.size and int(gaps.max()) >= 1 << bits):
            raise FormatError("gap stream does not match the weight stream or exceeds its bit width")
        filler = k
        positions, indices = gap_decode(gaps, weights, filler)
        max_index = k  # the filler index K is legal here
    elif scheme == "gap-raw":
        gaps = decode_stream(meta.get("index_stream"), sub["index"], numel)
        if gaps.size != weights.size:
            raise FormatError("gap stream does not match the weight stream")
        positions, indices, max_index = np.cumsum(gaps.astype(np.int64) + 1) - 1, weights, k - 1
    elif scheme == "bitmask":
        mask = sections.get("mask")
        if mask is None or mask.dtype != np.uint8 or mask.size != -(-numel // 8):
            raise FormatError("bitmask section missing or of the wrong length")
        bits_ = np.unpackbits(mask)
        if bits_[numel:].any():
            raise FormatError("bitmask has bits set past the end of the tensor")
        positions, indices, max_index = np.flatnonzero(bits_[:numel]), weights, k - 1
        if positions.size != weights.size:
            raise FormatError("bitmask population does not match the weight stream")
    else:
        raise FormatError(f"unknown index scheme {scheme!r}; this version reads {INDEX_SCHEMES}")
    if weights.size and int(weights.max()) > max_index:
        raise FormatError("weight index outside the codebook")
    if positions.size and int(positions[-1]) >= numel:
        raise FormatError("sparse position past the end of the tensor")
    if meta.get("nnz") != positions.size:
        raise FormatError("decoded non-zero count does not match the manifest")
    return SharedTensor(shape, codebook, indices, positions)
