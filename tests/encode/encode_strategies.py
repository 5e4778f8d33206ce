"""Shared strategies for the encode tests: random pruned, weight-shared tensors."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from slimtorch.encode.tensor import SharedTensor


def make_shared(seed: int, shape: tuple[int, ...], k: int, density: float) -> SharedTensor:
    """A random sparse tensor whose non-zeros take one of ``k`` shared values."""
    rng = np.random.default_rng(seed)
    numel = int(np.prod(shape))
    codebook = np.unique(rng.normal(size=k).astype(np.float32))
    codebook = codebook[codebook != 0]
    mask = rng.random(numel) < density
    positions = np.flatnonzero(mask)
    if codebook.size == 0:
        positions = positions[:0]
    # Skewed index distribution, like k-means clusters of a trained layer.
    p = rng.dirichlet(np.full(max(codebook.size, 1), 0.3))[: codebook.size]
    indices = rng.choice(codebook.size, size=positions.size, p=p / p.sum()) if positions.size else positions
    return SharedTensor(shape, codebook, indices, positions)


@st.composite
def shared_tensors(draw) -> SharedTensor:
    """Shapes incl. 0-size and scalars, all-zero, single value, very sparse (fillers), K 1..256."""
    kind = draw(st.sampled_from(["small", "sparse-long", "dense"]))
    if kind == "sparse-long":  # gaps far beyond 2**8: fillers for every gap width
        shape = (draw(st.integers(0, 5000)),)
        density = draw(st.sampled_from([0.0, 0.0005, 0.002, 0.01]))
    else:
        shape = tuple(draw(st.lists(st.integers(0, 12), min_size=0, max_size=3)))
        density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.9, 1.0]))
    k = draw(st.sampled_from([1, 2, 3, 17, 256]))
    return make_shared(draw(st.integers(0, 2**32 - 1)), shape, k, density)
