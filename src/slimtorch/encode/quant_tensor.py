"""Group-quantized, pruned weights in a ``.slim`` file: Deep Compression for weight-only LLM grids.

Deep Compression (Han, Mao & Dally, ICLR 2016) stores a pruned layer as entropy-coded
sparse indices plus entropy-coded codebook indices. A weight-only quantized language
model (GPTQ, SparseGPT's joint sparse + 4-bit mode) is not codebook-shared: each group
of columns has its own ``scale`` and integer ``zero``, and ``w = (code - zero) * scale``
(:mod:`slimtorch.quantize.wgrid`). A pruned weight is the code *equal to its group's
zero*, which dequantizes to exactly 0.0. So :class:`QuantTensor` is coded as:

* **positions** of the codes that differ from their group's zero, with the same index
  schemes as shared tensors (:mod:`slimtorch.encode.index_coding`: run lengths
  entropy-coded, or a bitmask), or ``dense``: no positions, every code is a symbol;
* **symbols** ``code - zero + maxq`` (the signed distance from the zero point, shifted
  to be non-negative): groups have different zeros, and the distance from the zero
  is what is distributed alike across groups (near-Laplacian around 0), so one
  entropy model fits the whole tensor better than the raw codes;
* **zeros** (integral codes) as one entropy-coded symbol stream; fractional zeros
  (HQQ) as float planes;
* **scales** losslessly: float16 when every scale is exactly a float16 (callers round
  scales to float16 before evaluating, :func:`slimtorch.encode.lm.half_scales`, so
  the file holds exactly what the model computes with), else float32; each byte
  plane (the sign/exponent byte and the mantissa byte(s)) entropy-coded on its own,
  since exponents within a layer take few values while low mantissa bytes are
  near-uniform.

Every stream goes through the coders of :mod:`slimtorch.encode.streams` (rANS or
Huffman, the smaller per stream, measured). Decoding is bit-exact: codes, zeros and
scales come back identical, so the dequantized weights do too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slimtorch.core.errors import FormatError
from slimtorch.encode.index_coding import (
    bitmask_encode,
    gap_decode,
    gap_encode,
    raw_gaps,
)
from slimtorch.encode.streams import (
    decode_stream,
    encode_stream,
    sections_nbytes,
    under_prefix,
    with_prefix,
)

QUANT_INDEX = ("dense", "gap-raw", "bitmask", "gap")


def _n_groups(cols: int, group_size: int | None) -> int:
    return 1 if group_size is None else -(-cols // group_size)


@dataclass(frozen=True, eq=False)
class QuantTensor:
    """``w[r, c] = (codes[r, c] - zeros[r, g(c)]) * scales[r, g(c)]`` with ``g(c) = c // group_size``.

    Attributes:
        codes: ``(out, in)`` uint8 in ``0 .. 2**bits - 1``.
        scales: ``(out, n_groups)`` float32.
        zeros: ``(out, n_groups)`` float32 (integral for every method but HQQ).
        bits: 2..8.
        group_size: columns per group (the last may be partial); ``None``: one group per row.
    """

    codes: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    bits: int
    group_size: int | None

    def __post_init__(self) -> None:
        codes = np.ascontiguousarray(self.codes)
        if codes.ndim != 2 or codes.dtype != np.uint8:
            raise ValueError(f"codes must be a 2-D uint8 array, got {codes.dtype} {codes.shape}")
        if not 1 <= int(self.bits) <= 8:
            raise ValueError(f"bits must be in 1..8, got {self.bits}")
        if self.group_size is not None and int(self.group_size) < 1:
            raise ValueError(f"group_size must be positive or None, got {self.group_size}")
        g = _n_groups(codes.shape[1], self.group_size)
        scales = np.ascontiguousarray(self.scales, dtype=np.float32)
        # + 0.0 turns a -0.0 zero (clamping -0.0 keeps its sign) into +0.0: the same value, and the same
        # dequantized weights bit for bit ((c - -0.0) * s == (c - 0.0) * s), but one bit pattern per value
        zeros = np.ascontiguousarray(self.zeros, dtype=np.float32) + np.float32(0.0)
        if scales.shape != (codes.shape[0], g) or zeros.shape != scales.shape:
            raise ValueError(f"scales {scales.shape} and zeros {zeros.shape} must both be {(codes.shape[0], g)}")
        if codes.size and int(codes.max()) > (1 << int(self.bits)) - 1:
            raise ValueError(f"a code exceeds {self.bits} bits")
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "zeros", zeros)
        object.__setattr__(self, "bits", int(self.bits))
        object.__setattr__(self, "group_size", None if self.group_size is None else int(self.group_size))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.codes.shape)  # type: ignore[return-value]

    @property
    def maxq(self) -> int:
        return (1 << self.bits) - 1

    @property
    def integral_zeros(self) -> bool:
        z = self.zeros
        return bool(np.array_equal(z, np.round(z)) and (z.size == 0 or (z.min() >= 0 and z.max() <= self.maxq)))

    def zeros_per_column(self) -> np.ndarray:
        """``(out, in)`` the zero of each element's group."""
        cols = self.codes.shape[1]
        reps = cols if self.group_size is None else self.group_size
        return np.repeat(self.zeros, reps, axis=1)[:, :cols]

    def nonzero_mask(self) -> np.ndarray:
        """Where the code differs from its group's zero, i.e. where the weight is not exactly 0."""
        return self.codes.astype(np.float32) != self.zeros_per_column()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantTensor):
            return NotImplemented
        return (
            self.bits == other.bits
            and self.group_size == other.group_size
            and np.array_equal(self.codes, other.codes)
            and np.array_equal(self.scales.view(np.uint32), other.scales.view(np.uint32))
            and np.array_equal(self.zeros.view(np.uint32), other.zeros.view(np.uint32))
        )

    __hash__ = None  # type: ignore[assignment]


# ---- streams ------------------------------------------------------------------------------------------------


def _best_stream(symbols: np.ndarray, coders: tuple[str, ...]) -> tuple[dict, dict[str, np.ndarray]]:
    best = None
    for coder in coders:
        meta, sections = encode_stream(symbols, coder)
        if best is None or sections_nbytes(sections) < sections_nbytes(best[1]):
            best = (meta, sections)
    assert best is not None
    return best


def _encode_planes(values: np.ndarray, coders: tuple[str, ...]) -> tuple[dict, dict[str, np.ndarray]]:
    """Float values losslessly: float16 if exact, else float32; each little-endian byte plane coded."""
    half = values.astype(np.float16)
    stored = half if np.array_equal(half.astype(np.float32).view(np.uint32), values.view(np.uint32)) else values
    raw = np.ascontiguousarray(stored.astype(stored.dtype.newbyteorder("<"))).view(np.uint8)
    planes = raw.reshape(-1, stored.dtype.itemsize)
    meta: dict = {"stored": stored.dtype.name, "planes": []}
    sections: dict[str, np.ndarray] = {}
    for k in range(planes.shape[1]):
        m, s = _best_stream(planes[:, k], coders)
        meta["planes"].append(m)
        sections.update(with_prefix(f"b{k}", s))
    return meta, sections


def _decode_planes(meta: dict, sections: dict[str, np.ndarray], count: int) -> np.ndarray:
    stored = meta.get("stored") if isinstance(meta, dict) else None
    if stored not in ("float16", "float32") or not isinstance(meta.get("planes"), list):
        raise FormatError(f"float planes stored as {stored!r}; expected float16 or float32")
    dt = np.dtype(stored)
    if len(meta["planes"]) != dt.itemsize:
        raise FormatError(f"{stored} values need {dt.itemsize} byte planes, the file declares {len(meta['planes'])}")
    raw = np.empty((count, dt.itemsize), dtype=np.uint8)
    for k, m in enumerate(meta["planes"]):
        plane = decode_stream(m, under_prefix(sections, f"b{k}"), count)
        if plane.size != count or (plane.size and int(plane.max()) > 255):
            raise FormatError(f"byte plane {k} has {plane.size} values (expected {count}) or a value above 255")
        raw[:, k] = plane
    return raw.reshape(-1).view(dt.newbyteorder("<")).astype(np.float32)


# ---- tensor -------------------------------------------------------------------------------------------------


def encode_quant(
    t: QuantTensor, index: str, coders: tuple[str, ...] = ("ans",), gap_bits: int = 0
) -> tuple[dict, dict[str, np.ndarray]]:
    """Code ``t`` with one index scheme (``dense``, ``gap-raw``, ``bitmask``, ``gap``); returns (meta, sections)."""
    if index not in QUANT_INDEX:
        raise ValueError(f"unknown index scheme {index!r}; choose one of {QUANT_INDEX}")
    integral = t.integral_zeros
    meta: dict = {"bits": t.bits, "group_size": t.group_size, "index": index, "gap_bits": gap_bits}
    sections: dict[str, np.ndarray] = {}
    if integral:
        meta["zeros_kind"] = "codes"
        meta["zeros"], s = _best_stream(t.zeros.reshape(-1).astype(np.int64), coders)
    else:
        meta["zeros_kind"] = "float"
        meta["zeros"], s = _encode_planes(t.zeros.reshape(-1), coders)
    sections.update(with_prefix("zeros", s))
    meta["scales"], s = _encode_planes(t.scales.reshape(-1), coders)
    sections.update(with_prefix("scales", s))
    codes = t.codes.reshape(-1).astype(np.int64)
    if not integral:  # no exact-zero code to skip: the codes themselves
        if index != "dense":
            raise ValueError("fractional zeros (HQQ) have no exact-zero code; only index 'dense' applies")
        symbols = codes
    else:
        symbols = codes - t.zeros_per_column().reshape(-1).astype(np.int64) + t.maxq
    positions = None
    if index != "dense":
        positions = np.flatnonzero(symbols != t.maxq)
        symbols = symbols[positions]
    # weights that are not exactly 0.0 (fractional zeros: no exact-zero code, every weight counts)
    meta["nnz"] = (
        int(symbols.size)
        if positions is not None
        else int(np.count_nonzero(symbols != t.maxq))
        if integral
        else int(codes.size)
    )
    if index == "gap":
        gaps, symbols = gap_encode(positions, symbols, gap_bits, filler=t.maxq)  # filler = "zero point"
    elif index == "gap-raw":
        gaps = raw_gaps(positions)
    else:
        gaps = None
    if index == "bitmask":
        sections["mask"] = bitmask_encode(positions, codes.size)
    if gaps is not None:
        meta["index_stream"], s = _best_stream(gaps, coders)
        sections.update(with_prefix("index", s))
    meta["code_stream"], s = _best_stream(symbols, coders)
    sections.update(with_prefix("codes", s))
    meta["index_bytes"] = sum(v.nbytes for n, v in sections.items() if n == "mask" or n.startswith("index."))
    meta["code_bytes"] = sum(v.nbytes for n, v in sections.items() if n.startswith("codes."))
    meta["scale_bytes"] = sum(v.nbytes for n, v in sections.items() if n.startswith("scales."))
    meta["zero_bytes"] = sum(v.nbytes for n, v in sections.items() if n.startswith("zeros."))
    return meta, sections


def best_quant_encoding(
    t: QuantTensor, indexes: tuple[str, ...] = ("dense", "gap-raw", "bitmask"), coders: tuple[str, ...] = ("ans",)
) -> tuple[dict, dict[str, np.ndarray]]:
    """Every requested index scheme tried, the smallest kept (measured bytes)."""
    best = None
    for index in indexes if t.integral_zeros else ("dense",):
        for bits in range(2, 9) if index == "gap" else (0,):
            meta, sections = encode_quant(t, index, coders, bits)
            if best is None or sections_nbytes(sections) < sections_nbytes(best[1]):
                best = (meta, sections)
    if best is None:
        raise ValueError("no index scheme to try")
    return best


def _int(meta: dict, key: str, lo: int, hi: int) -> int:
    v = meta.get(key)
    if type(v) is not int or not lo <= v <= hi:
        raise FormatError(f"field '{key}' must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def decode_quant(meta: dict, sections: dict[str, np.ndarray], shape: tuple[int, ...]) -> QuantTensor:
    """Rebuild a :class:`QuantTensor` from :func:`encode_quant` output, validating every count and symbol.

    Raises:
        FormatError: naming the inconsistent field or stream.
    """
    if len(shape) != 2:
        raise FormatError(f"a quantized tensor is 2-D, the manifest declares shape {list(shape)}")
    rows, cols = shape
    numel = rows * cols
    bits = _int(meta, "bits", 1, 8)
    maxq = (1 << bits) - 1
    gs = meta.get("group_size")
    if gs is not None and (type(gs) is not int or gs < 1):
        raise FormatError(f"group_size must be a positive integer or null, got {gs!r}")
    ngroups = rows * (_n_groups(cols, gs) if cols else 0)
    index = meta.get("index")
    if index not in QUANT_INDEX:
        raise FormatError(f"unknown index scheme {index!r}; this version reads {QUANT_INDEX}")
    if meta.get("zeros_kind") == "codes":
        zeros = decode_stream(meta.get("zeros"), under_prefix(sections, "zeros"), ngroups).astype(np.int64)
        if zeros.size != ngroups or (zeros.size and int(zeros.max()) > maxq):
            raise FormatError(f"zero stream has {zeros.size} values (expected {ngroups}) or a zero above {maxq}")
        zeros = zeros.astype(np.float32)
    elif meta.get("zeros_kind") == "float":
        if index != "dense":
            raise FormatError("fractional zeros come with index 'dense' only")
        zeros = _decode_planes(meta.get("zeros"), under_prefix(sections, "zeros"), ngroups)
    else:
        raise FormatError(f"unknown zeros kind {meta.get('zeros_kind')!r}")
    scales = _decode_planes(meta.get("scales"), under_prefix(sections, "scales"), ngroups)
    g = _n_groups(cols, gs) if cols else 0
    zeros, scales = zeros.reshape(rows, g), scales.reshape(rows, g)
    integral = meta["zeros_kind"] == "codes"
    symbols = decode_stream(meta.get("code_stream"), under_prefix(sections, "codes"), 2 * numel + 1).astype(np.int64)
    if index == "dense":
        if symbols.size != numel:
            raise FormatError(f"code stream has {symbols.size} symbols for {numel} weights")
        dense = symbols
    else:
        if index == "bitmask":
            mask = sections.get("mask")
            if mask is None or mask.dtype != np.uint8 or mask.size != -(-numel // 8):
                raise FormatError("bitmask section missing or of the wrong length")
            bits_ = np.unpackbits(mask)
            if bits_[numel:].any():
                raise FormatError("bitmask has bits set past the end of the tensor")
            positions = np.flatnonzero(bits_[:numel])
        else:
            gaps = decode_stream(meta.get("index_stream"), under_prefix(sections, "index"), 2 * numel + 1)
            if gaps.size != symbols.size:
                raise FormatError("index stream and code stream differ in length")
            if index == "gap":
                gb = _int(meta, "gap_bits", 1, 16)
                if gaps.size and int(gaps.max()) >= 1 << gb:
                    raise FormatError("a relative index exceeds its bit width")
                positions, symbols = gap_decode(gaps, symbols, filler=maxq)
            else:
                positions = np.cumsum(gaps.astype(np.int64) + 1) - 1
        if positions.size != symbols.size:
            raise FormatError("sparse position count does not match the code stream")
        if positions.size and int(positions[-1]) >= numel:
            raise FormatError("sparse position past the end of the tensor")
        dense = np.full(numel, maxq, dtype=np.int64)
        dense[positions] = symbols
        if symbols.size and bool(np.any(symbols == maxq)):
            raise FormatError("a stored sparse code equals the zero point (it would not be stored)")
    if dense.size and (int(dense.min()) < 0 or int(dense.max()) > 2 * maxq):
        raise FormatError(f"code symbol outside 0..{2 * maxq}")
    if integral:
        reps = cols if gs is None else gs
        zcol = np.repeat(zeros.astype(np.int64), reps, axis=1)[:, :cols].reshape(-1)
        codes = dense - maxq + zcol
    else:
        codes = dense
    if codes.size and (int(codes.min()) < 0 or int(codes.max()) > maxq):
        raise FormatError(f"decoded code outside 0..{maxq} (corrupt zeros or code stream)")
    if integral and meta.get("nnz") != int(np.count_nonzero(dense != maxq)):
        raise FormatError("decoded non-zero count does not match the manifest")
    return QuantTensor(codes.astype(np.uint8).reshape(rows, cols), scales, zeros, bits, gs)
