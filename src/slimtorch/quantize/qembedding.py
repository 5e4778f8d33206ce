"""``QuantEmbedding``: a token embedding held as b-bit codes with group scales/zeros.

In a small language model the embedding dominates the size once the decoder is
quantized: SmolLM2-135M's 49,152 x 576 table is 113 MB of its 538 MB in float32
and, tied to ``lm_head``, it is also the output projection. Every weight-only
method here quantizes the decoder Linears only, so a compact file must quantize
the table too. Rows (tokens) are cut into groups along the hidden dimension, as
a Linear's rows are along its inputs, and quantized round-to-nearest on the
shared grid (:mod:`slimtorch.quantize.wgrid`, range search per group), or on
a Q4_1-style grid with a fractional zero (:class:`EmbeddingGrid`): there is no
calibration signal for a lookup table's rows beyond their own values.

The module keeps the dequantized float table as its ``weight`` (so the tied
``lm_head`` and ``nn.Embedding``'s forward use it unchanged) and the codes as
non-persistent buffers: :func:`slimtorch.encode.lm.save_slim_lm` stores the
codes, ordinary ``state_dict`` users see a plain float embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from slimtorch.core.config import coerce
from slimtorch.core.errors import UnsupportedModelError
from slimtorch.core.inplace import working_model
from slimtorch.quantize.wgrid import (
    GridConfig,
    QuantizedWeight,
    group_bounds,
    rtn_weight,
)

ROWS_PER_CHUNK = 4096  # the range search holds ~20 candidate grids per weight: bound its memory


class QuantEmbedding(nn.Embedding):
    """An ``nn.Embedding`` whose table is ``dequant(codes, scales, zeros)`` (kept in ``weight``)."""

    def __init__(self, qw: QuantizedWeight, padding_idx: int | None = None):
        num, dim = qw.codes.shape
        super().__init__(num, dim, padding_idx=padding_idx, _weight=qw.dequantize(), _freeze=True)
        self.bits, self.group_size = qw.bits, qw.group_size
        self.register_buffer("codes", qw.codes.to(torch.uint8), persistent=False)
        self.register_buffer("scales", qw.scales.float(), persistent=False)
        self.register_buffer("zeros", qw.zeros.float(), persistent=False)

    def quantized(self) -> QuantizedWeight:
        return QuantizedWeight(self.codes, self.scales, self.zeros, self.bits, self.group_size)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, bits={self.bits}, group_size={self.group_size}"


class EmbeddingGrid(GridConfig):
    """A :class:`GridConfig` plus ``float_zero``.

    Attributes:
        float_zero: each group's grid spans exactly its ``[min, max]`` with a fractional
            zero point (``zero = -min / scale``), both rounded to float16 before the codes
            are chosen: the layout of llama.cpp's Q4_1 (a scale and a minimum per block),
            which reproduces a table that was itself Q4_1-quantized at the same group
            size. ``mse_search`` does not apply then; nothing is exactly 0.0 (fine for a
            table that is not pruned).
    """

    float_zero: bool = False


def _float_zero_weight(w: torch.Tensor, grid: GridConfig) -> QuantizedWeight:
    maxq = grid.maxq
    bounds = group_bounds(w.shape[1], grid.group_size)
    codes = torch.empty(w.shape, dtype=torch.uint8)
    scales = torch.empty(w.shape[0], len(bounds))
    zeros = torch.empty(w.shape[0], len(bounds))
    for k, (s, e) in enumerate(bounds):
        lo, hi = w[:, s:e].min(dim=1).values, w[:, s:e].max(dim=1).values
        scale = ((hi - lo) / maxq).half().float()
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = (-lo / scale).half().float()  # float16-exact: what the file stores
        codes[:, s:e] = torch.clamp(torch.round(w[:, s:e] / scale[:, None] + zero[:, None]), 0, maxq).to(torch.uint8)
        scales[:, k], zeros[:, k] = scale, zero
    return QuantizedWeight(codes, scales, zeros, grid.bits, grid.group_size)


def quantize_table(w: torch.Tensor, grid: GridConfig) -> QuantizedWeight:
    """Round-to-nearest of a ``(rows, dim)`` table on ``grid``, in row chunks (bounded memory)."""
    fn = _float_zero_weight if getattr(grid, "float_zero", False) else rtn_weight
    parts = [fn(w[i : i + ROWS_PER_CHUNK], grid) for i in range(0, w.shape[0], ROWS_PER_CHUNK)]
    return QuantizedWeight(
        torch.cat([p.codes for p in parts]),
        torch.cat([p.scales for p in parts]),
        torch.cat([p.zeros for p in parts]),
        grid.bits,
        grid.group_size,
    )


@torch.no_grad()
def quantize_embedding(
    model: nn.Module, config: EmbeddingGrid | GridConfig | dict | None = None, *, inplace: bool = False
) -> nn.Module:
    """Replace ``model.get_input_embeddings()`` by a :class:`QuantEmbedding`; re-ties ``lm_head``.

    Args:
        config: the grid: an :class:`EmbeddingGrid` (or any :class:`GridConfig`), its dict, or
            ``None`` (the defaults).
        inplace: change ``model`` itself instead of a deep copy.

    Raises:
        UnsupportedModelError: the model has no ``nn.Embedding`` input embedding.
    """
    grid = config if isinstance(config, GridConfig) else coerce(EmbeddingGrid, config)
    model = working_model(model, inplace)
    old = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if not isinstance(old, nn.Embedding):
        raise UnsupportedModelError(f"{type(model).__name__} has no nn.Embedding input embedding to quantize")
    new = QuantEmbedding(quantize_table(old.weight.detach().float(), grid), old.padding_idx)
    model.set_input_embeddings(new)
    tie(model)
    return model


def tie(model: nn.Module) -> None:
    """Point a tied ``lm_head`` at the (quantized) input embedding's table."""
    if getattr(getattr(model, "config", None), "tie_word_embeddings", False):
        out = model.get_output_embeddings()
        if out is not None:
            out.weight = model.get_input_embeddings().weight
