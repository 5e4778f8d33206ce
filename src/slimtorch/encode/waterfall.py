"""Which step of Deep Compression buys how much: a size waterfall read from a ``.slim`` file.

Han, Mao & Dally (ICLR 2016) credit pruning, weight sharing and Huffman coding with
their share of the 40x; a reviewer of a smaller file wants the same split for every
step we add. :func:`size_waterfall` rebuilds each intermediate representation of the
*same* weights from the file alone and measures it (the entropy-coded rows are real
re-encodings, not estimates):

1. ``dense float32``: every tensor at 4 bytes per element (other dtypes at their size);
2. ``pruned (float32 values + fixed-width relative indices)``: the non-zeros with the
   paper's relative indices at the best fixed width b in 2..8 (filler entries
   counted), 32 + b bits each;
3. ``+ weight sharing (fixed-width codes)``: ceil(log2(K + 1)) + b bits per entry plus
   the float32 codebook (the +1 is the filler code);
4. ``+ Huffman, as in the paper``: Huffman-coded weight indices and gap symbols,
   the container's header excluded;
5. ``+ best coder and index scheme per tensor``: Huffman or ANS; gap, gap-raw or
   bitmask positions (what slimtorch writes), header excluded;
6. ``+ container (version 1 header)``: the whole file as version 1 wrote it (JSON
   manifest, arch and checksums in the safetensors header);
7. ``+ container (version 2 header)``: the whole file with the compressed manifest.

Tensors that are not shared (stored raw) count at their stored size from row 2 on.
"""

from __future__ import annotations

import math

import numpy as np

from slimtorch.encode.format import _raw_entry, pack_state, read_manifest, unpack_shared
from slimtorch.encode.index_coding import gap_encode
from slimtorch.encode.report import _payload_bytes
from slimtorch.encode.tensor import SharedTensor


def _fixed_width_bits(t: SharedTensor, value_bits: int | None) -> int:
    """Bits of ``t`` as fixed-width (relative index, value) pairs at the best gap width."""
    k = len(t.codebook)
    w = value_bits if value_bits is not None else max(1, math.ceil(math.log2(k + 1)))
    codebook = 32 * k if value_bits is None else 0
    entries = (len(gap_encode(np.asarray(t.positions), np.asarray(t.indices), b, k)[0]) for b in range(2, 9))
    return min(n * (b + w) for n, b in zip(entries, range(2, 9), strict=True)) + codebook


def _payload(data: bytes) -> int:
    entries, _, _ = read_manifest(data)
    return sum(_payload_bytes(e) for e in entries)


def size_waterfall(data: bytes) -> list[dict]:
    """Rows ``{"step", "bytes", "ratio"}`` (ratio = dense float32 bytes / bytes) for a ``.slim`` file's bytes."""
    state, arch = unpack_shared(data)
    dense = raw = 0
    pruned_bits = shared_bits = 0
    for value in state.values():
        if isinstance(value, SharedTensor):
            dense += 4 * math.prod(value.shape)
            pruned_bits += _fixed_width_bits(value, 32)
            shared_bits += _fixed_width_bits(value, None)
        else:
            arr = np.asarray(value)
            dense += arr.size * (4 if arr.dtype.kind == "f" else arr.dtype.itemsize)
            raw += _raw_entry(arr)[1]["data"].nbytes  # as the file stores it (float16 when exact)
    paper = pack_state(state, arch, "huffman", index="gap", version=1)
    ours_v1 = pack_state(state, arch, "auto", index="auto", version=1)
    steps = [
        ("dense float32", dense),
        ("pruned (float32 values + fixed-width relative indices)", raw + math.ceil(pruned_bits / 8)),
        ("+ weight sharing (fixed-width codes)", raw + math.ceil(shared_bits / 8)),
        ("+ Huffman, as in the paper", _payload(paper)),
        ("+ best coder and index scheme per tensor", _payload(ours_v1)),
        ("+ container (version 1 header)", len(ours_v1)),
        ("+ container (version 2 header)", len(data)),
    ]
    return [{"step": s, "bytes": int(b), "ratio": dense / b if b else float("inf")} for s, b in steps]
