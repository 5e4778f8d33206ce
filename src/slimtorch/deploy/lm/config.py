"""What an exported language model looks like: embedding / ``lm_head`` bits, kernel accuracy level, cache length."""

from __future__ import annotations

from typing import Literal

import pydantic

from slimtorch.core.config import FrozenConfig


class LMExportConfig(FrozenConfig):
    """Options of :func:`~slimtorch.deploy.lm.export_onnx`.

    Attributes:
        embedding_bits: bits of the token embedding table, which the tied ``lm_head``
            shares (one ``MatMulNBits`` / ``GatherBlockQuantized`` initializer). ``None``
            keeps it float32: 113 MB of SmolLM2's 538 MB, and the largest matmul of a
            decode step. Ignored when the model's ``lm_head`` is already a ``QuantLinear``
            (its codes are exported as they are).
        embedding_group_size: columns per group of the embedding grid (a power of two >= 16).
        embedding_mse_search: fit each group's range by rounding error (as GPTQ's ``mse``), not min/max.
        embedding_float_zero: llama.cpp Q4_1's layout instead: each group spans exactly its
            ``[min, max]`` with a fractional zero point (:class:`~slimtorch.quantize.qembedding.EmbeddingGrid`).
            For a table that was itself Q4_1-quantized at this group size (SmolLM2's GGUF) this
            reproduces it exactly. A model whose embedding is already a ``QuantEmbedding`` is
            exported with its own codes whatever these fields say.
        accuracy_level: ONNX Runtime's ``MatMulNBits`` compute mode: 0 = float activations
            (exact to the stored weights), 4 = activations quantized to int8 per block on the fly
            (VNNI integer kernels; faster, a small extra error). Choose by measured perplexity.
        fuse: one ``MatMulNBits`` for q/k/v and one for gate/up where their grids agree (fewer,
            larger kernels per decode step).
        max_positions: rotary cache length (the longest prompt + generation); default the
            model's ``max_position_embeddings``, capped at 8192.
    """

    embedding_bits: Literal[4, 8] | None = 8
    embedding_group_size: int = pydantic.Field(32, ge=16)
    embedding_mse_search: bool = True
    embedding_float_zero: bool = False
    accuracy_level: Literal[0, 1, 2, 3, 4] = 4
    fuse: bool = True
    max_positions: int | None = pydantic.Field(None, ge=16)

    @pydantic.field_validator("embedding_group_size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(
                f"embedding_group_size {v} is not a power of two (ONNX Runtime blocks are 16, 32, 64, ...)"
            )
        return v
