"""The quantized sparse tensor that the coding stage of Deep Compression consumes.

Deep Compression (Han, Mao & Dally, "Deep Compression: Compressing Deep Neural
Networks with Pruning, Trained Quantization and Huffman Coding", ICLR 2016) prunes a
layer (most weights become exactly zero) and then shares the surviving weights: each
non-zero weight is replaced by an index into a small codebook of K shared values.
:class:`SharedTensor` is that result, in the form the entropy coders want: a codebook,
the flat positions of the non-zeros, and one codebook index per non-zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# A codebook index must fit in 16 bits: the paper uses at most 8 bits (256 shared
# values) per layer; 2^16 leaves room for finer sharing while keeping the entropy
# coders' alphabets (and their lookup tables) small.
MAX_CODEBOOK = 1 << 16


def _float32_bits(w: np.ndarray) -> np.ndarray:
    """The IEEE-754 bit patterns of ``w`` as uint32 (so NaN payloads compare exactly)."""
    return np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)


@dataclass(frozen=True, eq=False)
class SharedTensor:
    """A pruned, weight-shared tensor: ``dense.flat[positions[i]] == codebook[indices[i]]``.

    Attributes:
        shape: shape of the dense tensor.
        codebook: ``(K,)`` float32 shared values, ``K <= 2**16`` (may be empty).
        indices: ``(nnz,)`` unsigned codebook indices, one per stored position.
        positions: ``(nnz,)`` int64 flat (row-major) positions, strictly increasing.
    """

    shape: tuple[int, ...]
    codebook: np.ndarray
    indices: np.ndarray
    positions: np.ndarray

    def __post_init__(self) -> None:
        # Normalise dtypes once so every coder can rely on them; frozen dataclasses need
        # object.__setattr__ for that.
        shape = tuple(int(d) for d in self.shape)
        if any(d < 0 for d in shape):
            raise ValueError(f"shape must have non-negative dimensions, got {shape}")
        codebook = np.ascontiguousarray(self.codebook, dtype=np.float32).reshape(-1)
        if codebook.size > MAX_CODEBOOK:
            raise ValueError(f"codebook has {codebook.size} entries; at most {MAX_CODEBOOK} are supported")
        indices = np.asarray(self.indices).reshape(-1)
        positions = np.asarray(self.positions).reshape(-1)
        if indices.shape != positions.shape:
            raise ValueError(f"indices ({indices.size}) and positions ({positions.size}) differ in length")
        if indices.size and (
            not np.issubdtype(indices.dtype, np.integer) or indices.min() < 0 or indices.max() >= codebook.size
        ):
            raise ValueError(f"indices must be integers in [0, {codebook.size})")
        if positions.size:
            if not np.issubdtype(positions.dtype, np.integer):
                raise ValueError("positions must be integers")
            if positions[0] < 0 or positions[-1] >= math.prod(shape) or np.any(np.diff(positions) <= 0):
                raise ValueError(f"positions must be strictly increasing flat offsets in [0, {math.prod(shape)})")
        idx_dtype = np.uint8 if codebook.size <= 256 else np.uint16
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "codebook", codebook)
        object.__setattr__(self, "indices", indices.astype(idx_dtype))
        object.__setattr__(self, "positions", positions.astype(np.int64))

    @property
    def numel(self) -> int:
        """Number of elements of the dense tensor."""
        return math.prod(self.shape)

    @property
    def nnz(self) -> int:
        """Number of stored (non-zero) entries."""
        return int(self.positions.size)

    @classmethod
    def from_dense(cls, w) -> SharedTensor:
        """Build the exact shared form of a dense tensor (numpy array or torch tensor).

        The codebook is the set of distinct non-zero float32 values (compared by bit
        pattern, so the round trip is bit-exact). Both +0.0 and -0.0 count as zero and
        come back as +0.0: pruning masks often leave -0.0 (negative weight times 0).

        Raises:
            ValueError: more than 2**16 distinct non-zero values: the tensor is not
                weight-shared yet; run k-means weight sharing / quantization first.
        """
        if hasattr(w, "detach"):  # torch.Tensor, without importing torch here
            w = w.detach().to("cpu").float().numpy()
        arr = np.asarray(w)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise ValueError(f"expected a numeric tensor, got dtype {arr.dtype}")
        bits = _float32_bits(arr.astype(np.float32, copy=False)).reshape(-1)
        positions = np.flatnonzero(bits & np.uint32(0x7FFFFFFF))
        values = bits[positions]
        codebook_bits, indices = np.unique(values, return_inverse=True)
        if codebook_bits.size > MAX_CODEBOOK:
            raise ValueError(
                f"tensor has {codebook_bits.size} distinct non-zero values; at most {MAX_CODEBOOK} "
                "can be coded: quantize / weight-share it first (e.g. k-means weight sharing)"
            )
        return cls(arr.shape, codebook_bits.view(np.float32), indices.reshape(-1), positions)

    def to_dense(self) -> np.ndarray:
        """The dense float32 tensor, bit-exact to what :meth:`from_dense` was given (up to -0.0)."""
        out = np.zeros(self.numel, dtype=np.float32)
        if self.nnz:
            out[self.positions] = self.codebook[self.indices]
        return out.reshape(self.shape)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SharedTensor):
            return NotImplemented
        return (
            self.shape == other.shape
            and np.array_equal(self.codebook.view(np.uint32), other.codebook.view(np.uint32))
            and np.array_equal(self.indices, other.indices)
            and np.array_equal(self.positions, other.positions)
        )

    __hash__ = None  # type: ignore[assignment]  # holds mutable arrays
