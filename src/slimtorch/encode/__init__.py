"""Entropy coding and the ``.slim`` file format: the third stage of Deep Compression.

Han, Mao & Dally, "Deep Compression" (ICLR 2016): after pruning and weight sharing,
each layer's weight indices and sparse position indices are entropy-coded. This
package does that losslessly (canonical Huffman as in the paper, or rANS after Duda,
2013, through ``constriction``) and writes the result as a checksummed safetensors
container (``.slim``), with a per-layer report in the style of the paper's Tables 2-3.
"""

from slimtorch.encode.format import (
    MAGIC,
    VERSION,
    load_slim,
    pack_state,
    read_manifest,
    save_slim,
    unpack_shared,
    unpack_state,
)
from slimtorch.encode.index_coding import (
    EncodedShared,
    best_encoding,
    bitmask_encode,
    decode_shared,
    encode_with,
    gap_decode,
    gap_encode,
    raw_gaps,
)
from slimtorch.encode.report import compression_report, render_report
from slimtorch.encode.streams import CODERS, decode_stream, encode_stream
from slimtorch.encode.tensor import SharedTensor

__all__ = [
    "CODERS",
    "MAGIC",
    "VERSION",
    "EncodedShared",
    "SharedTensor",
    "best_encoding",
    "bitmask_encode",
    "compression_report",
    "decode_shared",
    "decode_stream",
    "encode_stream",
    "encode_with",
    "gap_decode",
    "gap_encode",
    "load_slim",
    "pack_state",
    "raw_gaps",
    "read_manifest",
    "render_report",
    "save_slim",
    "unpack_shared",
    "unpack_state",
]
