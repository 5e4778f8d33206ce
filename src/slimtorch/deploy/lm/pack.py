"""Our weight-only grid in ONNX Runtime's ``MatMulNBits`` / ``GatherBlockQuantized`` layout, both ways.

``MatMulNBits`` (com.microsoft) stores ``B`` as ``(N, n_blocks, block_size * bits / 8)``
uint8: each output row cut into blocks along K, codes packed little-end first
(4-bit: low nibble = even column). Scales are ``(N * n_blocks,)`` float; zero points
are either packed like the codes (``ceil(n_blocks * bits / 8)`` bytes per row) or,
for HQQ's fractional zeros, float ``(N * n_blocks,)``. Both dequantize as
``(q - zero) * scale`` (checked against numpy in the tests), which is exactly
:class:`~slimtorch.quantize.wgrid.QuantizedWeight`'s rule, so the export carries
the integers part 1 chose, not a re-quantization.

Mapping our grid onto the kernel's:

* ``block_size`` must be a power of two >= 16. A partial last group (width 576 at
  group 128) becomes a last block zero-padded on the right: the padded columns meet
  no activation, so any code there is harmless (we write the group's zero point).
* Per-channel (``group_size=None``) is one block per row: the next power of two
  >= K, padded the same way.
* 3-bit codes go in the 4-bit container (values 0..7, same zeros): exact, but
  stored in 4 bits because ONNX Runtime's CPU kernel has no 3-bit path; the file
  says so (``stored_bits``).

The unpack functions read the integers back out of an exported graph, so a test
can compare them with the model's codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from slimtorch.core.errors import UnsupportedModelError
from slimtorch.quantize.wgrid import QuantizedWeight, group_bounds

KERNEL_BITS = (2, 4, 8)


def kernel_bits(bits: int) -> int:
    """The ``MatMulNBits`` container for ``bits``-bit codes (3 -> 4, 5..7 -> 8)."""
    for kb in KERNEL_BITS:
        if bits <= kb:
            return kb
    raise UnsupportedModelError(f"{bits}-bit codes do not fit ONNX Runtime's MatMulNBits (2, 4 or 8 bits)")


def block_size_for(in_features: int, group_size: int | None) -> int:
    """The kernel block size for our group size (per-channel: next power of two >= K)."""
    if group_size is None:
        return max(16, 1 << (in_features - 1).bit_length())
    if group_size < 16 or group_size & (group_size - 1):
        raise UnsupportedModelError(
            f"group size {group_size} cannot run on ONNX Runtime's MatMulNBits, whose blocks are powers of two "
            ">= 16; quantize with group_size 16, 32, 64, 128 or 256 (or per channel) to deploy"
        )
    return group_size


def _pack_rows(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack ``(rows, n)`` small unsigned ints (n a multiple of 8 / bits) along the last axis, low bits first."""
    if bits == 8:
        return values.astype(np.uint8)
    per = 8 // bits
    v = values.astype(np.uint8).reshape(values.shape[0], -1, per)
    out = np.zeros(v.shape[:2], dtype=np.uint8)
    for i in range(per):
        out |= v[..., i] << np.uint8(i * bits)
    return out


def _unpack_rows(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    if bits == 8:
        return packed[:, :n].astype(np.uint8)
    per, mask = 8 // bits, (1 << bits) - 1
    out = np.stack([(packed >> np.uint8(i * bits)) & mask for i in range(per)], axis=-1)
    return out.reshape(packed.shape[0], -1)[:, :n].astype(np.uint8)


@dataclass
class NBitsTensors:
    """The initializers and attributes of one ``MatMulNBits`` node."""

    B: np.ndarray  # (N, n_blocks, blob) uint8
    scales: np.ndarray  # (N * n_blocks,) float32
    zero_points: np.ndarray  # packed uint8, or float32 (N * n_blocks,) for fractional zeros
    K: int
    N: int
    bits: int  # kernel container bits
    block_size: int
    code_bits: int  # bits of the codes themselves (3 for a 3-bit grid in the 4-bit container)

    @property
    def nbytes(self) -> int:
        return self.B.nbytes + self.scales.nbytes + self.zero_points.nbytes


def to_nbits(qw: QuantizedWeight) -> NBitsTensors:
    """``MatMulNBits`` tensors of ``qw`` (codes, scales, zeros carried exactly)."""
    N, K = qw.codes.shape
    bits = kernel_bits(qw.bits)
    block = block_size_for(K, qw.group_size)
    bounds = group_bounds(K, qw.group_size)
    n_blocks = -(-K // block)
    if len(bounds) != n_blocks:  # cannot happen for power-of-two groups; guards the mapping above
        raise UnsupportedModelError(f"{len(bounds)} groups do not map onto {n_blocks} blocks of {block}")
    zeros = qw.zeros.float().numpy()
    integral = qw.integral_zeros
    if bits == 8 and not integral:
        raise UnsupportedModelError(
            "ONNX Runtime's CPU MatMulNBits has no 8-bit kernel with fractional zero points (HQQ, or a Q4_1-style "
            "float-zero table at 8 bits); use 4 bits for that grid, or an integer-zero grid at 8 bits"
        )
    codes = np.empty((N, n_blocks * block), dtype=np.uint8)
    codes[:, :K] = qw.codes.numpy()
    if n_blocks * block > K:  # padding: the last group's zero point, i.e. weight 0
        codes[:, K:] = np.clip(np.round(zeros[:, -1:]), 0, 2**qw.bits - 1).astype(np.uint8)
    B = _pack_rows(codes, bits).reshape(N, n_blocks, block * bits // 8)
    scales = qw.scales.float().numpy().reshape(-1).astype(np.float32)
    if integral:
        per = 8 // bits
        zp = np.zeros((N, -(-n_blocks // per) * per), dtype=np.uint8)
        zp[:, :n_blocks] = zeros.astype(np.uint8)
        zero_points = _pack_rows(zp, bits).reshape(-1)
    else:
        zero_points = zeros.reshape(-1).astype(np.float32)
    return NBitsTensors(np.ascontiguousarray(B), scales, zero_points, K, N, bits, block, qw.bits)


def from_nbits(
    B: np.ndarray,
    scales: np.ndarray,
    zero_points: np.ndarray,
    K: int,
    N: int,
    bits: int,
    block_size: int,
    code_bits: int,
    group_size: int | None,
) -> QuantizedWeight:
    """Read a :class:`QuantizedWeight` back out of ``MatMulNBits`` tensors (inverse of :func:`to_nbits`)."""
    n_blocks = -(-K // block_size)
    codes = _unpack_rows(B.reshape(N, -1), bits, K)
    if zero_points.dtype == np.uint8:
        zeros = _unpack_rows(zero_points.reshape(N, -1), bits, n_blocks).astype(np.float32)
    else:
        zeros = zero_points.reshape(N, n_blocks).astype(np.float32)
    return QuantizedWeight(
        torch.from_numpy(codes.copy()),
        torch.from_numpy(scales.reshape(N, n_blocks).copy()),
        torch.from_numpy(zeros.copy()),
        code_bits,
        group_size,
    )


def concat_rows(parts: list[QuantizedWeight]) -> QuantizedWeight:
    """Stack weights that share K, bits and group size along N (one fused ``MatMulNBits`` for q/k/v or gate/up)."""
    first = parts[0]
    return QuantizedWeight(
        torch.cat([p.codes for p in parts]),
        torch.cat([p.scales for p in parts]),
        torch.cat([p.zeros for p in parts]),
        first.bits,
        first.group_size,
    )


def fusable(parts: list[QuantizedWeight]) -> bool:
    first = parts[0]
    return all(
        p.bits == first.bits
        and p.group_size == first.group_size
        and p.codes.shape[1] == first.codes.shape[1]
        and p.integral_zeros == first.integral_zeros
        for p in parts
    )
