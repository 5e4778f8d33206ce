"""Entropy coding and the ``.slim`` file format: the third stage of Deep Compression.

Han, Mao & Dally, "Deep Compression" (ICLR 2016): after pruning and weight sharing,
each layer's weight indices and sparse position indices are entropy-coded. This
package does that losslessly (canonical Huffman as in the paper, or rANS after Duda,
2013, through ``constriction``) and writes the result as a checksummed safetensors
container (``.slim``), with a per-layer report in the style of the paper's Tables 2-3.
"""

from slimtorch.encode.format import load_slim, pack_state, read_manifest, save_slim, unpack_state
from slimtorch.encode.report import compression_report, render_report
from slimtorch.encode.streams import CODERS, decode_stream, encode_stream
from slimtorch.encode.tensor import SharedTensor

__all__ = [
    "CODERS",
    "SharedTensor",
    "compression_report",
    "decode_stream",
    "encode_stream",
    "load_slim",
    "pack_state",
    "read_manifest",
    "render_report",
    "save_slim",
    "unpack_state",
]
