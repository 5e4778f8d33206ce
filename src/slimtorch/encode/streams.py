"""One interface over the entropy coders: symbols -> (JSON meta, named arrays) and back.

Deep Compression (Han, Mao & Dally, ICLR 2016) entropy-codes two symbol streams per
layer (weight indices and sparse position indices). Each coder here turns a stream of
non-negative integers into a small JSON-able ``meta`` dict plus named numpy
``sections``; the file format lays sections out as bytes and hands them back with the
dtypes it declared. Coders are looked up by name in :data:`CODERS`; Huffman is the
paper's coder, ANS (Duda 2013) the near-optimal alternative.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from slimtorch.core.errors import FormatError
from slimtorch.core.registry import Registry
from slimtorch.encode import ans, huffman


@dataclass(frozen=True)
class Coder:
    """An entropy coder: ``encode(symbols) -> (meta, sections)``, ``decode(meta, sections) -> symbols``."""

    encode: Callable[[np.ndarray], tuple[dict, dict[str, np.ndarray]]]
    decode: Callable[[dict, dict[str, np.ndarray]], np.ndarray]


CODERS: Registry[Coder] = Registry("entropy coder")


def _int(meta: dict, key: str, lo: int = 0, hi: int = 1 << 62) -> int:
    v = meta.get(key)
    if type(v) is not int or not lo <= v <= hi:  # noqa: E721 - bool is not a count
        raise FormatError(f"stream field '{key}' must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _section(sections: dict, key: str) -> np.ndarray:
    if key not in sections:
        raise FormatError(f"stream section '{key}' is missing")
    return sections[key]


def _huffman_encode(symbols: np.ndarray) -> tuple[dict, dict[str, np.ndarray]]:
    s = huffman.encode(symbols)
    meta = {"n": s.n, "chunk": s.chunk, "bits": s.bits}
    return meta, {"alphabet": s.alphabet, "lengths": s.lengths, "chunks": s.chunk_bits, "data": s.data}


def _huffman_decode(meta: dict, sections: dict) -> np.ndarray:
    s = huffman.HuffmanStream(
        n=_int(meta, "n"),
        alphabet=_section(sections, "alphabet"),
        lengths=_section(sections, "lengths"),
        chunk=_int(meta, "chunk", 1, huffman.MAX_CHUNK),
        chunk_bits=_section(sections, "chunks").astype(np.int64),
        data=_section(sections, "data"),
        bits=_int(meta, "bits"),
    )
    if s.data.dtype != np.uint8 or sections["chunks"].dtype.kind != "u":
        raise FormatError("corrupt Huffman stream: unexpected section dtypes")
    return huffman.decode(s)


def _ans_encode(symbols: np.ndarray) -> tuple[dict, dict[str, np.ndarray]]:
    s = ans.encode(symbols)
    return {"n": s.n}, {"alphabet": s.alphabet, "freqs": s.freqs, "data": s.words}


def _ans_decode(meta: dict, sections: dict) -> np.ndarray:
    words = _section(sections, "data")
    if words.dtype != np.uint32:
        raise FormatError("corrupt ANS stream: data must be uint32 words")
    s = ans.AnsStream(_int(meta, "n"), _section(sections, "alphabet"), _section(sections, "freqs"), words)
    return ans.decode(s)


CODERS.register("huffman", Coder(_huffman_encode, _huffman_decode))
CODERS.register("ans", Coder(_ans_encode, _ans_decode))


def sections_nbytes(sections: dict[str, np.ndarray]) -> int:
    """Bytes the sections take on disk."""
    return sum(a.nbytes for a in sections.values())


def encode_stream(symbols: np.ndarray, coder: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Entropy-code ``symbols`` with the named coder; ``meta`` records the coder's name."""
    meta, sections = CODERS.get(coder).encode(symbols)
    return {"coder": coder, **meta}, sections


def with_prefix(prefix: str, sections: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``sections`` renamed ``prefix.name``: several streams stored side by side in one payload."""
    return {f"{prefix}.{k}": v for k, v in sections.items()}


def under_prefix(sections: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The sections stored by :func:`with_prefix` under ``prefix``, with their own names back."""
    return {n[len(prefix) + 1 :]: v for n, v in sections.items() if n.startswith(prefix + ".")}


def decode_stream(meta: dict, sections: dict[str, np.ndarray], n_max: int) -> np.ndarray:
    """Decode a stream after checking its declared symbol count against ``n_max``.

    Raises:
        FormatError: unknown coder, count above ``n_max``, or corrupt data.
    """
    if not isinstance(meta, dict) or not isinstance(meta.get("coder"), str) or meta["coder"] not in CODERS:
        raise FormatError(f"unknown entropy coder {meta.get('coder') if isinstance(meta, dict) else meta!r}")
    _int(meta, "n", 0, n_max)
    return CODERS.get(meta["coder"]).decode(meta, sections)
